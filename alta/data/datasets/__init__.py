"""Raw labelled image sources and the registry of named continual-learning streams, one module per
dataset family.

The benchmarks of ALTA (Li et al., IEEE TMM 2023) are the mammoth class-incremental streams
Seq-CIFAR-10 (5 x 2), Seq-CIFAR-100 (10 x 10) and Seq-TinyImageNet (10 x 20), with classes in the
dataset's native order. This module reads those datasets (and a few small offline ones) from
disk into *raw sources*: datasets that return ``(PIL RGB image, original label)`` with no
transform, know their human-readable class names (the words CLIP's prompts need) and have a
stable ``identity`` string for cache keys. :class:`~alta.data.ScenarioStream` splits a pair of
sources (train, test) into experiences and applies the transforms.

Named streams live in the :data:`DATASETS` registry (``list_datasets()``):

========================  ======  ============================================================
name                      split   layouts read under ``root``
========================  ======  ============================================================
``seq-cifar10``           5 x 2   torchvision (``cifar-10-batches-py/``) or image folders
``seq-cifar100``          10 x 10 torchvision (``cifar-100-python/``) or image folders
``seq-tinyimagenet``      10 x 20 official ``tiny-imagenet-200`` (no download)
``digits``                5 x 2   none: scikit-learn's bundled 8x8 digits (root ignored)
``fashion-mnist``         5 x 2   torchvision (``FashionMNIST/raw/``) or the four idx files
``image-folder``          --      ``train/<class>/**`` + ``test/<class>/**`` (or ``val/``), recursed
                                  with torchvision's ImageFolder rules
``imagenet-r``            10 x 20 ``imagenet-r/<wnid>/`` (seeded 80/20 split per class)
``cub200``                10 x 20 ``CUB_200_2011/`` index files (official split)
``caltech101``            --      ``101_ObjectCategories/`` (no background; seeded or listed split)
``imagenet-subset``       --      ILSVRC-2012 ``train/<wnid>/`` + ``val/<wnid>/`` and a class list
========================  ======  ============================================================

Files read from image folders: every file under a class folder (sub-folders walked, as
torchvision's ImageFolder does) with an image extension (``IMAGE_EXTENSIONS``) that is, or links
to, a regular file. Any other entry (a dangling symlink, ``notes.txt``) is skipped and reported:
one warning per split gives the count, the reasons and the first few paths. Class folders whose names start with ``.`` are
ignored; a class folder whose name is not valid UTF-8 is refused (``DataError``).

References:
    W. Li et al., IEEE Transactions on Multimedia, 2023; reference code github.com/vijaylee/ALTA.
    P. Buzzega et al., "Dark Experience for General Continual Learning" (mammoth), NeurIPS 2020.
    A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009 (CIFAR).
    H. Xiao et al., "Fashion-MNIST", arXiv:1708.07747, 2017.
    D. Hendrycks et al., "The Many Faces of Robustness", ICCV 2021 (ImageNet-R).
    C. Wah et al., "The Caltech-UCSD Birds-200-2011 Dataset", CNS-TR-2011-001, 2011.
    L. Fei-Fei et al., "Learning Generative Visual Models from Few Training Examples", CVPR
    Workshops 2004 (Caltech-101).
    O. Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", IJCV 2015.
"""

# the families register their datasets when imported: this order is the order of `alta list datasets`
from . import cifar, tinyimagenet, digits, fashion_mnist, image_folder, imagenet_r, cub, caltech, imagenet  # noqa: F401, I001  # isort: skip
from .base import (
    DATASETS,
    IMAGE_EXTENSIONS,
    ArraySource,
    DataRootError,
    DatasetSpec,
    ImageFileSource,
    LabelledSource,
    class_key,
    list_datasets,
    load_sources,
    register,
)
from .cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from .digits import DIGIT_NAMES
from .fashion_mnist import DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES, read_idx
from .names import reference_class_names

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "DIGIT_NAMES",
    "DataRootError",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "ArraySource",
    "DatasetSpec",
    "ImageFileSource",
    "LabelledSource",
    "class_key",
    "list_datasets",
    "load_sources",
    "read_idx",
    "reference_class_names",
    "register",
]
