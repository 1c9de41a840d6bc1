"""Raw labelled image sources and the registry of named continual-learning streams.

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
``image-folder``          --      ``train/<class>/*`` + ``test/<class>/*`` (or ``val/``)
========================  ======  ============================================================

References:
    W. Li et al., IEEE Transactions on Multimedia, 2023; reference code github.com/vijaylee/ALTA.
    P. Buzzega et al., "Dark Experience for General Continual Learning" (mammoth), NeurIPS 2020.
    A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009 (CIFAR).
    H. Xiao et al., "Fashion-MNIST", arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from ..registry import Registry
from .transforms import to_rgb8

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "DATASETS",
    "DIGIT_NAMES",
    "DataRootError",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "ArraySource",
    "DatasetSpec",
    "ImageFileSource",
    "LabelledSource",
    "list_datasets",
    "load_sources",
    "read_idx",
    "reference_class_names",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# CIFAR-100 fine labels in their native label order (alphabetical), with the dataset's spelling.
CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
    crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
    lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
    oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
    possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
    spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
    train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
)

FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Where the Debian package ``dataset-fashion-mnist`` installs the original idx files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# The class names the ALTA reference code prompts with (github.com/vijaylee/ALTA,
# datasets/__init__.py, get_classnames): the dataset's own spelling for CIFAR (underscores kept)
# and a curated list for Tiny-ImageNet, shipped as a data file with its source in its header.
_REFERENCE_NAMES_FILES = {"seq-tinyimagenet": "tinyimagenet_reference_names.txt"}


@functools.lru_cache(maxsize=None)
def _reference_names_file(filename: str) -> tuple[str, ...]:
    from importlib import resources

    text = (resources.files("alta.data") / filename).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line and not line.startswith("#"))


def reference_class_names(name: str) -> list[str] | None:
    """The class names the ALTA reference code uses for a stream, one per original label.

    CIFAR-10 and CIFAR-100 keep the dataset's spelling (``"aquarium_fish"``: the reference's
    hand-written prompt w1 keeps the underscore, its learned prompt replaces it); Tiny-ImageNet
    uses the reference's 200 curated names in ``wnids.txt`` order (``"Egyptian Mau"``, where
    alta's loader reads the first ``words.txt`` synonym, ``"Egyptian cat"``).

    Args:
        name: A stream name of :func:`list_datasets` (aliases accepted).

    Returns:
        The names in original label order, or ``None`` for a stream the reference code does
        not have (``digits``, ``fashion-mnist``, ``image-folder``).

    Raises:
        ConfigError: an unknown stream name (the message lists the valid ones).

    References:
        github.com/vijaylee/ALTA, ``datasets/__init__.py`` (``get_classnames``), commit aae43b0.
    """
    canonical = DATASETS.resolve(name)
    if canonical == "seq-cifar10":
        return list(CIFAR10_CLASSES)
    if canonical == "seq-cifar100":
        return list(CIFAR100_CLASSES)
    if canonical in _REFERENCE_NAMES_FILES:
        return list(_reference_names_file(_REFERENCE_NAMES_FILES[canonical]))
    return None


class DataRootError(DataError):
    """The data root is missing or not laid out as the dataset expects.

    Raised (instead of a plain :class:`~alta.errors.DataError`) only for problems that pointing
    ``root`` elsewhere or downloading can fix: no root, missing folders or files, class folders
    that do not match the dataset, data torchvision cannot find. Front ends append their "where
    to put the data" hint (e.g. the CLI's ``--data-root``/``--download``) to these errors only, not
    to errors about class orders, class names or corrupt files.
    """


def readable(name: str) -> str:
    """A class folder/label name as CLIP prompts need it: underscores become spaces."""
    return " ".join(name.replace("_", " ").split())


def check_class_names(class_names: object, *, what: str) -> list[str]:
    """``class_names`` as a list, refusing unordered containers.

    Raises:
        DataError: a set, dict, string or other non-sequence (their order is not reproducible or
            not what the labels mean).
    """
    if isinstance(class_names, np.ndarray) and class_names.ndim == 1:
        class_names = class_names.tolist()
    if isinstance(class_names, (set, frozenset)):
        raise DataError(
            f"{what}: class_names is a {type(class_names).__name__}, whose order is arbitrary, so "
            "names would not line up with labels reproducibly; expected a list or tuple with "
            "class_names[label] naming each label. Fix: pass a list in label order (e.g. "
            "sorted(names) if the labels follow sorted order)"
        )
    if isinstance(class_names, Mapping):
        raise DataError(
            f"{what}: class_names is a {type(class_names).__name__}; expected a list or tuple with "
            "class_names[label] naming each label. Fix: for a {label: name} dict pass "
            "[names[k] for k in range(len(names))]; for {name: label} pass "
            "sorted(names, key=names.get)"
        )
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise DataError(
            f"{what}: class_names must be a list of strings (or a tuple; one per label), got "
            f"{type(class_names).__name__} {class_names!r}"[:300]
        )
    return list(class_names)


def _key(name: str) -> str:
    """Normalised spelling used to match folder names to known class names."""
    return "_".join(name.lower().replace("-", "_").replace(" ", "_").split("_"))


# --------------------------------------------------------------------------------------------
# Raw sources
# --------------------------------------------------------------------------------------------


class LabelledSource(Dataset):
    """A raw labelled dataset: ``source[i] -> (PIL RGB image, original label)``, no transform.

    Subclasses set ``targets`` (LongTensor (N,), original labels, readable without loading any
    image), ``class_names`` (human-readable, one per original label) and ``identity`` (a stable
    string naming dataset, root and split, used in cache keys).
    """

    targets: torch.Tensor
    class_names: list[str]
    identity: str

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identity!r}, n={len(self)}, classes={len(self.class_names)})"


class ImageFileSource(LabelledSource):
    """Images read from files, converted to RGB on load.

    Args:
        paths: One image file per sample.
        targets: Original label of each sample.
        class_names: Human-readable name of each original label.
        identity: Stable description (dataset, root, split) for cache keys.

    Raises:
        DataError: if ``paths`` and ``targets`` differ in length.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        targets: Sequence[int] | torch.Tensor,
        class_names: Sequence[str],
        *,
        identity: str,
    ) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
        if len(self.paths) != self.targets.shape[0]:
            raise DataError(
                f"{identity}: got {len(self.paths)} image paths but {self.targets.shape[0]} labels; "
                "expected one label per image"
            )
        self.class_names = check_class_names(class_names, what=identity)
        self.identity = identity

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image.load()
                rgb = to_rgb8(image, where=f"image file {path!r}")
                if rgb is image:
                    rgb = image.copy()  # the opened image is unusable once its file is closed
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
            raise DataError(
                f"cannot read image file {path!r} (sample {index} of {self.identity}): "
                f"{type(err).__name__}: {err}. Expected a readable image; the file is corrupt, "
                "truncated or not an image. Fix: replace or delete that file"
            ) from err
        return rgb, int(self.targets[index])


class ArraySource(LabelledSource):
    """Images held in memory as a uint8 array, returned as PIL RGB images.

    Args:
        images: uint8 array (N, H, W) (grayscale) or (N, H, W, 3) (RGB).
        targets: Original label of each sample.
        class_names: Human-readable name of each original label.
        identity: Stable description (dataset, root, split) for cache keys.

    Raises:
        DataError: wrong dtype/rank, or ``images`` and ``targets`` differ in length.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: Sequence[int] | np.ndarray | torch.Tensor,
        class_names: Sequence[str],
        *,
        identity: str,
    ) -> None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (
            images.ndim == 4 and images.shape[-1] != 3
        ):
            raise DataError(
                f"{identity}: images must be a uint8 array (N, H, W) or (N, H, W, 3), got "
                f"{images.dtype} {images.shape}"
            )
        self.images = images
        self.targets = torch.tensor(np.asarray(targets, dtype=np.int64)).reshape(-1)
        if images.shape[0] != self.targets.shape[0]:
            raise DataError(
                f"{identity}: got {images.shape[0]} images but {self.targets.shape[0]} labels; "
                "expected one label per image"
            )
        self.class_names = check_class_names(class_names, what=identity)
        self.identity = identity

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        image = Image.fromarray(self.images[index])
        if image.mode != "RGB":
            image = image.convert("RGB")
        return image, int(self.targets[index])


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """A named stream: how to read its sources and its default split.

    Args:
        name: Registry name (e.g. ``"seq-cifar10"``).
        load: ``load(root: Path | None, *, download: bool) -> (train, test)`` raw sources.
        classes_per_experience: Default split of the benchmark (``None``: the caller must choose).
        description: One line for listings.
    """

    name: str
    load: Callable[..., tuple[LabelledSource, LabelledSource]]
    classes_per_experience: int | None
    description: str = ""


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def list_datasets() -> list[str]:
    """Names of the registered streams, for :meth:`alta.data.ScenarioStream.from_name`."""
    return DATASETS.names()


def load_sources(
    name: str, *, root: str | os.PathLike | None = None, download: bool = False
) -> tuple[LabelledSource, LabelledSource]:
    """Read the raw (train, test) sources of a registered dataset.

    Args:
        name: A name from :func:`list_datasets`.
        root: Folder holding the data (see each dataset's layouts); ignored by ``digits``.
        download: Let torchvision download CIFAR-10/100 or Fashion-MNIST into ``root``.

    Returns:
        ``(train, test)``: raw sources returning ``(PIL RGB image, original label)``.

    Raises:
        ConfigError: unknown name (lists the valid ones).
        DataError: missing or wrongly laid out ``root`` (the message shows the expected layout).
    """
    spec = DATASETS.get(name)
    path = None if root is None else Path(root).expanduser().resolve()
    return spec.load(path, download=bool(download))


def _register(name: str, classes_per_experience: int | None, description: str):
    def decorator(load):
        DATASETS.add(name, DatasetSpec(name, load, classes_per_experience, description))
        return load

    return decorator


# --------------------------------------------------------------------------------------------
# Helpers for folder layouts
# --------------------------------------------------------------------------------------------


def _layout_error(
    name: str, root: Path | None, problem: str, layouts: str, *, can_download: bool
) -> DataRootError:
    hint = " Or pass download=True to let torchvision download it into root." if can_download else ""
    return DataRootError(
        f"{name}: {problem} (root={str(root) if root is not None else None!r}). "
        f"Expected one of these layouts under root:\n{layouts}\nFix: pass root= pointing at the "
        f"folder that holds that layout.{hint}"
    )


def _need_root(name: str, root: Path | None, layouts: str, *, can_download: bool) -> Path:
    if root is None:
        raise _layout_error(name, root, "no root given", layouts, can_download=can_download)
    return root


def _list_images(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        files = [
            e.path
            for e in entries
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        ]
    return sorted(files)


def _class_folders(split_dir: Path) -> list[str]:
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _test_dir(root: Path) -> Path | None:
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    return None


def _folder_split(
    split_dir: Path,
    folders: Sequence[str],
    *,
    identity: str,
    class_names: Sequence[str],
    dataset: str,
) -> ImageFileSource:
    """Image files of ``split_dir/<folders[k]>/*`` labelled k; every class needs an image.

    Raises:
        DataError: a class folder holding no image file (naming the class and the folder).
    """
    paths: list[str] = []
    targets: list[int] = []
    for label, folder in enumerate(folders):
        files = _list_images(split_dir / folder)
        if not files:
            role = "training" if split_dir.name == "train" else "test"
            raise DataError(
                f"{dataset}: class {class_names[label]!r} has no {role} images: the folder "
                f"{str(split_dir / folder)!r} holds no images (extensions read: "
                f"{', '.join(IMAGE_EXTENSIONS)}). Every class needs at least one training and one "
                f"test image (a class without {role} images would "
                f"{'never be learned' if role == 'training' else 'never be evaluated'}). Fix: add "
                "images to that folder, or remove the class's folder from every split"
            )
        paths.extend(files)
        targets.extend([label] * len(files))
    return ImageFileSource(paths, targets, class_names, identity=identity)


def _match_folders(
    dataset: str, split_dir: Path, known: Sequence[str], layouts: str
) -> list[str]:
    """Folder name of each known class (in the known, native order), matched by name."""
    found = _class_folders(split_dir)
    by_key = {_key(f): f for f in found}
    missing = [c for c in known if _key(c) not in by_key]
    extra = sorted(set(by_key) - {_key(c) for c in known})
    if missing or extra:
        raise DataRootError(
            f"{dataset}: class folders in {str(split_dir)!r} do not match the dataset's classes; "
            f"missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}, unexpected: "
            f"{[by_key[k] for k in extra[:10]]}. Expected one folder per class named "
            f"{', '.join(known[:10])}{' ...' if len(known) > 10 else ''} (underscores or spaces).\n"
            f"Layouts:\n{layouts}"
        )
    return [by_key[_key(c)] for c in known]


def _named_folder_sources(
    dataset: str, root: Path, known: Sequence[str], layouts: str
) -> tuple[ImageFileSource, ImageFileSource]:
    test_dir = _test_dir(root)
    if test_dir is None:
        raise _layout_error(dataset, root, "found train/ but no test/ or val/ beside it", layouts,
                            can_download=False)
    names = [readable(c) for c in known]
    out = []
    for split_dir in (root / "train", test_dir):
        folders = _match_folders(dataset, split_dir, known, layouts)
        out.append(
            _folder_split(
                split_dir,
                folders,
                identity=f"{dataset}|folders|{root}|{split_dir.name}",
                class_names=names,
                dataset=dataset,
            )
        )
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------------


def _cifar_layouts(torchvision_dir: str) -> str:
    return (
        f"  (a) torchvision: root/{torchvision_dir}/... (what torchvision downloads)\n"
        "  (b) image folders: root/train/<class>/*.png|jpg and root/test/<class>/* "
        "(or root/val/<class>/*), one folder per class named as the dataset's class"
    )


def _cifar(
    dataset: str,
    root: Path | None,
    *,
    download: bool,
    torchvision_dir: str,
    tv_class: str,
    known: Sequence[str],
) -> tuple[LabelledSource, LabelledSource]:
    layouts = _cifar_layouts(torchvision_dir)
    root = _need_root(dataset, root, layouts, can_download=True)
    if root.name == torchvision_dir:
        root = root.parent
    if (root / "train").is_dir():
        return _named_folder_sources(dataset, root, known, layouts)
    if (root / torchvision_dir).is_dir() or download:
        import torchvision.datasets as tvd

        sources = []
        for split, train in (("train", True), ("test", False)):
            try:
                tv = getattr(tvd, tv_class)(str(root), train=train, download=download)
            except (RuntimeError, OSError) as err:  # "Dataset not found or corrupted"; offline download
                what = "the download failed" if download else "torchvision could not read it"
                raise _layout_error(dataset, root, f"{what} ({err})", layouts, can_download=True) from err
            names = [readable(c) for c in tv.classes]
            if [_key(c) for c in tv.classes] != [_key(c) for c in known]:
                raise DataRootError(
                    f"{dataset}: torchvision's class list {tv.classes[:5]}... differs from the "
                    f"expected {list(known[:5])}...; is root holding the right dataset? Fix: point "
                    f"root at the {dataset} data"
                )
            sources.append(
                ArraySource(tv.data, tv.targets, names,
                            identity=f"{dataset}|torchvision|{root}|{split}")
            )
        return sources[0], sources[1]
    raise _layout_error(dataset, root, "no CIFAR data found", layouts, can_download=True)


@_register("seq-cifar10", 2, "CIFAR-10, 5 experiences x 2 classes, native class order")
def _load_cifar10(root: Path | None, *, download: bool):
    return _cifar("seq-cifar10", root, download=download, torchvision_dir="cifar-10-batches-py",
                  tv_class="CIFAR10", known=CIFAR10_CLASSES)


@_register("seq-cifar100", 10, "CIFAR-100 fine labels, 10 experiences x 10 classes")
def _load_cifar100(root: Path | None, *, download: bool):
    return _cifar("seq-cifar100", root, download=download, torchvision_dir="cifar-100-python",
                  tv_class="CIFAR100", known=CIFAR100_CLASSES)


# --------------------------------------------------------------------------------------------
# Tiny-ImageNet-200
# --------------------------------------------------------------------------------------------

_TINY_LAYOUT = (
    "  tiny-imagenet-200/wnids.txt, words.txt, train/<wnid>/images/*.JPEG,\n"
    "  val/images/*.JPEG and val/val_annotations.txt (root may be tiny-imagenet-200 itself or its "
    "parent).\n  alta cannot download Tiny-ImageNet: fetch "
    "http://cs231n.stanford.edu/tiny-imagenet-200.zip yourself and unzip it"
)


def _tiny_names(words: Path, wnids: Sequence[str]) -> list[str]:
    wanted = set(wnids)
    names: dict[str, str] = {}
    with open(words, encoding="utf-8") as handle:
        for line in handle:
            wnid, _, text = line.rstrip("\n").partition("\t")
            if wnid in wanted:
                names[wnid] = text.split(",")[0].strip()
    missing = [w for w in wnids if not names.get(w)]
    if missing:
        raise DataError(
            f"seq-tinyimagenet: {words} has no name for wnids {missing[:5]}; expected one "
            "'wnid<TAB>name, synonym, ...' line per wnid of wnids.txt"
        )
    return [names[w] for w in wnids]


@_register("seq-tinyimagenet", 20, "Tiny-ImageNet-200, 10 experiences x 20 classes, wnids.txt order")
def _load_tinyimagenet(root: Path | None, *, download: bool):
    root = _need_root("seq-tinyimagenet", root, _TINY_LAYOUT, can_download=False)
    if not (root / "wnids.txt").is_file() and (root / "tiny-imagenet-200" / "wnids.txt").is_file():
        root = root / "tiny-imagenet-200"
    needed = ["wnids.txt", "words.txt", "train", "val/images", "val/val_annotations.txt"]
    absent = [n for n in needed if not (root / n).exists()]
    if absent:
        extra = " (download=True is not supported for Tiny-ImageNet)" if download else ""
        raise _layout_error("seq-tinyimagenet", root, f"missing {', '.join(absent)}{extra}",
                            _TINY_LAYOUT, can_download=False)
    wnids = (root / "wnids.txt").read_text(encoding="utf-8").split()
    if len(set(wnids)) != len(wnids):
        raise DataError(f"seq-tinyimagenet: {root / 'wnids.txt'} lists a wnid twice")
    names = _tiny_names(root / "words.txt", wnids)
    label = {w: k for k, w in enumerate(wnids)}

    paths: list[str] = []
    targets: list[int] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise _layout_error("seq-tinyimagenet", root, f"missing {folder}", _TINY_LAYOUT,
                                can_download=False)
        files = _list_images(folder)
        if not files:
            raise DataError(
                f"seq-tinyimagenet: class {wnid} ({names[label[wnid]]!r}) has no training images: "
                f"{str(folder)!r} holds no image files. Every class needs training images. Fix: "
                "restore that folder from tiny-imagenet-200.zip"
            )
        paths.extend(files)
        targets.extend([label[wnid]] * len(files))
    train = ImageFileSource(paths, targets, names, identity=f"seq-tinyimagenet|{root}|train")

    val_paths: list[str] = []
    val_targets: list[int] = []
    annotations = root / "val" / "val_annotations.txt"
    with open(annotations, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or fields[1] not in label:
                raise DataError(
                    f"seq-tinyimagenet: {annotations} line {number} is {line.strip()!r}; expected "
                    "'file<TAB>wnid<TAB>box...' with a wnid listed in wnids.txt"
                )
            val_paths.append(str(root / "val" / "images" / fields[0]))
            val_targets.append(label[fields[1]])
    absent = sorted(set(wnids) - {wnids[t] for t in val_targets}, key=label.get)
    if absent:
        raise DataError(
            f"seq-tinyimagenet: {len(absent)} class(es) have no validation (test) images: "
            f"{annotations} lists no file for {', '.join(f'{w} ({names[label[w]]!r})' for w in absent[:5])}"
            f"{' ...' if len(absent) > 5 else ''}. Every class needs test images (a class without "
            "them would be scored on nothing). Fix: restore val/ from tiny-imagenet-200.zip"
        )
    test = ImageFileSource(val_paths, val_targets, names, identity=f"seq-tinyimagenet|{root}|val")
    return train, test


# --------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    # Deterministic split without an RNG: within each class, every 5th sample is a test sample.
    rank = np.zeros_like(labels)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(members.size)
    test = rank % 5 == 4
    out = (images[~test], labels[~test], images[test], labels[test])
    for array in out:
        array.setflags(write=False)
    return out


@_register("digits", 2, "scikit-learn's 1,797 8x8 digits (offline, no files), 5 x 2")
def _load_digits(root: Path | None, *, download: bool):
    train_x, train_y, test_x, test_y = _digits_arrays()
    return (
        ArraySource(train_x, train_y, DIGIT_NAMES, identity="digits|sklearn|train"),
        ArraySource(test_x, test_y, DIGIT_NAMES, identity="digits|sklearn|test"),
    )


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (the MNIST/Fashion-MNIST format), gzip-compressed or not.

    The format: two zero bytes, a dtype code, the number of dimensions d, then d big-endian
    uint32 sizes and the data in C order.

    Args:
        path: ``*-idx?-ubyte`` or ``*-idx?-ubyte.gz`` file.

    Returns:
        The array, in native byte order.

    Raises:
        DataError: if the file is not a valid idx file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read idx file {str(path)!r} ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{str(path)!r} is not an idx file: expected the magic 00 00 <dtype> <ndim>, got "
            f"{raw[:4].hex(' ')}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">u4"))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) != header + count * dtype.itemsize:
        raise DataError(
            f"{str(path)!r}: header says shape {shape} ({count * dtype.itemsize} data bytes) but "
            f"the file holds {len(raw) - header}; the file is truncated or corrupt"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False)


_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_LAYOUT = (
    "  (a) torchvision: root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte\n"
    "  (b) the four original files (.gz or not) directly in root, e.g. "
    f"{DEBIAN_FASHION_MNIST} from the Debian package dataset-fashion-mnist"
)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


@_register("fashion-mnist", 2, "Fashion-MNIST, 5 experiences x 2 classes")
def _load_fashion_mnist(root: Path | None, *, download: bool):
    if root is None and DEBIAN_FASHION_MNIST.is_dir():
        root = DEBIAN_FASHION_MNIST
    root = _need_root("fashion-mnist", root, _FASHION_LAYOUT, can_download=True)
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        found = {s: [_find_idx(folder, f) for f in files] for s, files in _FASHION_FILES.items()}
        if all(p is not None for files in found.values() for p in files):
            sources = []
            for split, (images_path, labels_path) in found.items():
                images, labels = read_idx(images_path), read_idx(labels_path)
                if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
                    raise DataError(
                        f"fashion-mnist: {images_path} has shape {images.shape} and {labels_path} "
                        f"{labels.shape}; expected (N, 28, 28) images and (N,) labels"
                    )
                sources.append(ArraySource(images, labels, FASHION_MNIST_CLASSES,
                                           identity=f"fashion-mnist|idx|{folder}|{split}"))
            return sources[0], sources[1]
    if download:
        import torchvision.datasets as tvd

        sources = []
        for split, train in (("train", True), ("test", False)):
            tv = tvd.FashionMNIST(str(root), train=train, download=True)
            sources.append(ArraySource(tv.data.numpy(), tv.targets, FASHION_MNIST_CLASSES,
                                       identity=f"fashion-mnist|idx|{root / 'FashionMNIST' / 'raw'}|{split}"))
        return sources[0], sources[1]
    raise _layout_error("fashion-mnist", root, "the four idx files were not found", _FASHION_LAYOUT,
                        can_download=True)


# --------------------------------------------------------------------------------------------
# Generic image folders
# --------------------------------------------------------------------------------------------

_FOLDER_LAYOUT = (
    "  root/train/<class>/*.jpg|png|... and root/test/<class>/* (or root/val/<class>/*), the same "
    "class folders on both sides;\n  classes are ordered by sorted folder name, underscores in "
    "folder names become spaces in class names"
)


@_register("image-folder", None, "any train/<class>/ + test/<class>/ tree (sorted class folders)")
def _load_image_folder(root: Path | None, *, download: bool):
    root = _need_root("image-folder", root, _FOLDER_LAYOUT, can_download=False)
    if not (root / "train").is_dir():
        raise _layout_error("image-folder", root, "no train/ folder", _FOLDER_LAYOUT, can_download=False)
    test_dir = _test_dir(root)
    if test_dir is None:
        raise _layout_error("image-folder", root, "no test/ or val/ folder beside train/",
                            _FOLDER_LAYOUT, can_download=False)
    folders = _class_folders(root / "train")
    if not folders:
        raise _layout_error("image-folder", root, "train/ holds no class folders", _FOLDER_LAYOUT,
                            can_download=False)
    test_folders = _class_folders(test_dir)
    if test_folders != folders:
        raise DataRootError(
            f"image-folder: the class folders of {str(test_dir)!r} differ from those of "
            f"{str(root / 'train')!r}: only in train: {sorted(set(folders) - set(test_folders))[:10]}, "
            f"only in {test_dir.name}: {sorted(set(test_folders) - set(folders))[:10]}. Expected the "
            "same class folders on both sides; add or remove folders so they match"
        )
    names = [readable(f) for f in folders]
    empty = [f for f, n in zip(folders, names) if not n]
    if empty:
        raise DataError(
            f"image-folder: class folder(s) {empty[:5]} in {str(root / 'train')!r} give an empty "
            "class name once underscores become spaces; CLIP prompts need a readable name for "
            "every class. Fix: rename those folders in train/ and "
            f"{test_dir.name}/ to the class names (e.g. 'golden_retriever')"
        )
    train = _folder_split(root / "train", folders, identity=f"image-folder|{root}|train",
                          class_names=names, dataset="image-folder")
    test = _folder_split(test_dir, folders, identity=f"image-folder|{root}|{test_dir.name}",
                         class_names=names, dataset="image-folder")
    return train, test
