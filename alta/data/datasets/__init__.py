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
``imagenet-r``            10 x 20 ``imagenet-r/<wnid>/`` (seeded 80/20 split per class, or a split
                                  file: ``split_file="rapf"``, RAPF's list shipped with alta)
``cub200``                10 x 20 ``CUB_200_2011/`` index files (official split)
``caltech101``            --      ``101_ObjectCategories/`` (no background; seeded or listed split)
``imagenet-subset``       --      ILSVRC-2012 ``train/<wnid>/`` + ``val/<wnid>/`` and a class list
``caltech101-zscl``       --      ``101_ObjectCategories/`` as ZSCL's MTIL reads it (80/20, seed 42)
``aircraft``              --      ``fgvc-aircraft-2013b/data/`` index files (official split)
``dtd``                   --      ``dtd/dtd/`` or ``dtd/`` (official partition 1)
``eurosat``               --      ``eurosat/2750/<class>/`` (ZSCL's 80/20 split, seed 42)
``flowers102``            --      ``flowers-102/`` ``jpg/`` + ``.mat`` files (official split)
``food101``               --      ``food-101/`` ``meta/`` + ``images/`` (official split)
``mnist``                 5 x 2   torchvision (``MNIST/raw/``) or the four idx files
``oxford-pet``            --      ``oxford-iiit-pet/`` ``annotations/`` + ``images/`` (official)
``stanford-cars``         --      ``stanford_cars/`` devkit ``.mat`` files (official split)
``sun397``                --      ``SUN397/`` (ZSCL's 80/20 split, or an official partition)
``domainnet``             --      ``domainnet/<domain>/`` + ``<domain>_{train,test}.txt``
``objectnet``             --      ``objectnet-1.0/images/<folder>/`` + ``mappings/`` (313 classes,
                                  seeded 80/20 split per class)
``ucf101``                --      CoOp's ``ucf101/UCF-101-midframes/`` + its split file or UCF's
                                  ``ucfTrainTestlist/`` (101 classes)
``cil-<key>``             suite   the CLIP class-incremental suite's nine datasets (PROOF/C3Box
                                  pre-split archives ``<key>/train/`` + ``test/``; see
                                  :mod:`alta.data.datasets.cil_suite`)
========================  ======  ============================================================

The eleven datasets of MTIL (ZSCL, Zheng et al., ICCV 2023) carry ZSCL's class names, shipped as
``alta/data/class_names/<name>.tsv`` with their source; CIFAR-100 is ``seq-cifar100``; Caltech-101
as ZSCL reads it is ``caltech101-zscl``. docs/datasets.md shows where each dataset's files go.

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
    A. Barbu et al., "ObjectNet", NeurIPS 2019; K. Soomro et al., "UCF101", CRCV-TR-12-01, 2012.
    D.-W. Zhou et al., "Learning without Forgetting for Vision-Language Models" (PROOF), TPAMI 2025.
    C. Wah et al., "The Caltech-UCSD Birds-200-2011 Dataset", CNS-TR-2011-001, 2011.
    L. Fei-Fei et al., "Learning Generative Visual Models from Few Training Examples", CVPR
    Workshops 2004 (Caltech-101).
    O. Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", IJCV 2015.
    Z. Zheng et al., "Preventing Zero-Shot Transfer Degradation in Continual Learning of
    Vision-Language Models" (ZSCL, MTIL), ICCV 2023 (github.com/Thunderbeee/ZSCL).
    X. Peng et al., "Moment Matching for Multi-Source Domain Adaptation" (DomainNet), ICCV 2019.
"""

# the families register their datasets when imported: this order is the order of `alta list datasets`
from . import cifar, tinyimagenet, digits, fashion_mnist, image_folder, imagenet_r, cub, caltech, imagenet  # noqa: F401, I001  # isort: skip
# the datasets of MTIL (ZSCL, ICCV 2023) and DomainNet
from . import aircraft, dtd, eurosat, flowers, food, mnist, pets, cars, sun397, domainnet  # noqa: F401, I001  # isort: skip
from . import objectnet, ucf101, cil_suite  # noqa: F401, I001  # isort: skip
from .base import (
    DATASETS,
    IMAGE_EXTENSIONS,
    ArraySource,
    DataRootError,
    DatasetSpec,
    ImageFileSource,
    LabelledSource,
    SubsetSource,
    class_key,
    list_datasets,
    load_sources,
    register,
)
from .cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from .digits import DIGIT_NAMES
from .domainnet import DOMAINNET_DOMAINS, MultiDomainSource, load_domainnet_domain
from .fashion_mnist import DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES, read_idx
from .folders import random_split_indices
from .names import ClassList, reference_class_names, shipped_classes

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "ClassList",
    "DATASETS",
    "DOMAINNET_DOMAINS",
    "DEBIAN_FASHION_MNIST",
    "DIGIT_NAMES",
    "DataRootError",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "ArraySource",
    "DatasetSpec",
    "ImageFileSource",
    "LabelledSource",
    "MultiDomainSource",
    "SubsetSource",
    "class_key",
    "list_datasets",
    "load_domainnet_domain",
    "load_sources",
    "random_split_indices",
    "read_idx",
    "reference_class_names",
    "register",
    "shipped_classes",
]
