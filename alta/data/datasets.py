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

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..classnames import check_utf8
from ..errors import ConfigError, DataError
from ..registry import Registry
from .transforms import to_rgb8
from .splits import read_name_map

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

# torchvision's ImageFolder extensions (torchvision.datasets.folder.IMG_EXTENSIONS), matched
# case-insensitively at the end of the file name as ImageFolder does; a test pins the equality.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

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
    image), ``class_names`` (human-readable, one per original label), ``class_ids`` (what the
    data calls each label: folder names, WordNet ids; the keys of a ``folder<TAB>name`` map) and
    ``identity`` (a stable string naming dataset, root and split, used in cache keys).
    """

    targets: torch.Tensor
    class_names: list[str]
    class_ids: list[str]
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
        class_ids: What the data calls each label (e.g. its folder name); ``class_names`` when
            omitted.

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
        class_ids: Sequence[str] | None = None,
    ) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
        if len(self.paths) != self.targets.shape[0]:
            raise DataError(
                f"{identity}: got {len(self.paths)} image paths but {self.targets.shape[0]} labels; "
                "expected one label per image"
            )
        self.class_names = check_class_names(class_names, what=identity)
        self.class_ids = list(class_ids) if class_ids is not None else list(self.class_names)
        if len(self.class_ids) != len(self.class_names):
            raise DataError(
                f"{identity}: got {len(self.class_ids)} class ids for {len(self.class_names)} class "
                "names; expected one id per class"
            )
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
        self.class_ids = list(self.class_names)
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
        load: ``load(root: Path | None, *, download: bool, **options) -> (train, test)`` raw
            sources.
        classes_per_experience: Default split of the benchmark (``None``: the caller must choose).
        description: One line for listings.
        options: Names of the dataset-specific options ``load`` accepts (e.g. ``split_seed``).
        takes_root: Whether ``load`` reads a data root (``digits`` does not: a root given to it
            would be ignored, so a run refuses one).
        can_download: Whether ``download=True`` does anything (torchvision's CIFAR-10/100 and
            Fashion-MNIST); a run refuses ``download`` elsewhere.
    """

    name: str
    load: Callable[..., tuple[LabelledSource, LabelledSource]]
    classes_per_experience: int | None
    description: str = ""
    options: tuple[str, ...] = ()
    takes_root: bool = True
    can_download: bool = False

    def check_options(self, options: Mapping[str, object] | None) -> None:
        """Refuse options this dataset does not take.

        Raises:
            ConfigError: an unknown option (names the dataset's options and the closest one).
        """
        unknown = sorted(set(options or {}) - set(self.options))
        if unknown:
            import difflib

            close = [difflib.get_close_matches(k, self.options, n=1) for k in unknown]
            hint = "; ".join(f"did you mean {c[0]!r}?" for c in close if c)
            raise ConfigError(
                f"dataset {self.name!r} takes no option {', '.join(map(repr, unknown))}; its options: "
                f"{list(self.options) or 'none'}{'; ' + hint if hint else ''}"
            )


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def list_datasets() -> list[str]:
    """Names of the registered streams, for :meth:`alta.data.ScenarioStream.from_name`."""
    return DATASETS.names()


def load_sources(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    options: Mapping[str, object] | None = None,
) -> tuple[LabelledSource, LabelledSource]:
    """Read the raw (train, test) sources of a registered dataset.

    Args:
        name: A name from :func:`list_datasets`.
        root: Folder holding the data (see each dataset's layouts); ignored by ``digits``.
        download: Let torchvision download CIFAR-10/100 or Fashion-MNIST into ``root``.
        options: Dataset-specific options (``DATASETS.get(name).options`` lists them), e.g.
            ``{"split_seed": 1}`` for ImageNet-R or ``{"class_list": "imagenet100.txt"}`` for
            ``imagenet-subset``.

    Returns:
        ``(train, test)``: raw sources returning ``(PIL RGB image, original label)``.

    Raises:
        ConfigError: unknown name (lists the valid ones), or an option the dataset does not take
            (lists those it takes).
        DataError: missing or wrongly laid out ``root`` (the message shows the expected layout).
    """
    spec = DATASETS.get(name)
    options = dict(options or {})
    spec.check_options(options)
    path = None if root is None else Path(root).expanduser().resolve()
    return spec.load(path, download=bool(download), **options)


def _register(name: str, classes_per_experience: int | None, description: str,
              options: tuple[str, ...] = (), *, takes_root: bool = True, can_download: bool = False):
    def decorator(load):
        DATASETS.add(name, DatasetSpec(name, load, classes_per_experience, description, options,
                                       takes_root=takes_root, can_download=can_download))
        return load

    return decorator


# --------------------------------------------------------------------------------------------
# Helpers for folder layouts
# --------------------------------------------------------------------------------------------


def _layout_error(
    name: str, root: Path | None, problem: str, layouts: str, *, can_download: bool
) -> DataRootError:
    hint = " Or pass download=True to let torchvision download it into root." if can_download else ""
    if root is not None and not root.is_dir():
        problem += f"; {root} {'is a file, not a folder' if root.exists() else 'does not exist'}"
    inside = _dataset_subfolders(name, root)
    if inside:
        hint += f" {root} holds {', '.join(inside)}: is the data in there (root={str(root / inside[0])!r})?"
    return DataRootError(
        f"{name}: {problem} (root={str(root) if root is not None else None!r}). "
        f"Expected one of these layouts under root:\n{layouts}\nFix: pass root= pointing at the "
        f"folder that holds that layout.{hint}"
    )


def _dataset_subfolders(name: str, root: Path | None) -> list[str]:
    """Subfolders of ``root`` named like the dataset (``cifar10/`` for ``seq-cifar10``,
    ``tiny-imagenet-200/`` for ``seq-tinyimagenet``): a root given one level too high."""
    if root is None or not root.is_dir():
        return []
    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    key = norm(name.removeprefix("seq-"))
    try:
        children = sorted(p.name for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    # the key not followed by a digit (cifar10 is not cifar100); the exact name first
    pattern = re.escape(key) + (r"(?!\d)" if key[-1:].isdigit() else "")
    found = [c for c in children if key and re.search(pattern, norm(c))]
    return sorted(found, key=lambda c: (norm(c) != key, c))[:3]


def _need_root(name: str, root: Path | None, layouts: str, *, can_download: bool) -> Path:
    if root is None:
        raise _layout_error(name, root, "no root given", layouts, can_download=can_download)
    return root


SKIPPED_SHOWN = 5  # paths a skipped-files warning lists


def _list_images(folder: Path, skipped: list[tuple[str, str]] | None = None) -> list[str]:
    """Image files under ``folder``, subfolders included, as torchvision's ImageFolder finds
    them (``torchvision.datasets.folder.make_dataset``): ``os.walk`` following links, in sorted
    order, names ending in one of :data:`IMAGE_EXTENSIONS` case-insensitively. Written out
    rather than called because torchvision < 0.17 refuses empty folders, which alta reports
    itself, naming the class.

    An entry is read when it has an image extension and is (or links to) a regular file.
    Anything else (a dangling symlink, ``notes.txt``) is appended to ``skipped`` with its reason,
    for :func:`_report_skipped`.
    """
    paths: list[str] = []
    for directory, _, names in sorted(os.walk(folder, followlinks=True)):
        for name in sorted(names):
            path = os.path.join(directory, name)
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                reason = "no image extension"
            elif not os.path.isfile(path):
                reason = "dangling symlink" if os.path.islink(path) else "not a regular file"
            else:
                paths.append(path)
                continue
            if skipped is not None:
                skipped.append((path, reason))
    return paths


def _report_skipped(dataset: str, where: Path, skipped: list[tuple[str, str]], *, kept: int) -> None:
    """Log one warning naming how many entries were left out of ``where`` and the first few."""
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for _, reason in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    shown = ", ".join(f"{path} ({reason})" for path, reason in sorted(skipped)[:SKIPPED_SHOWN])
    logger.warning(
        "%s: skipped %d entr%s of %s that %s not image files (%s; %d images kept): %s%s. Only files "
        "with an image extension (%s) that are, or link to, regular files are read",
        dataset, len(skipped), "y" if len(skipped) == 1 else "ies", where, "is" if len(skipped) == 1 else "are",
        ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())), kept, shown,
        " ..." if len(skipped) > SKIPPED_SHOWN else "", ", ".join(IMAGE_EXTENSIONS),
    )


def _class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the class folders of ``split_dir`` (hidden entries are ignored).

    Raises:
        DataError: a folder name that is not valid UTF-8 (it could not become a class name).
    """
    with os.scandir(split_dir) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for name in folders:
        check_utf8(name, what=f"class folder {str(split_dir / name)!r}", error=DataError)
    return folders


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
    class_ids: Sequence[str] | None = None,
) -> ImageFileSource:
    """Image files under ``split_dir/<folders[k]>/`` (subfolders included) labelled k; every
    class needs an image.

    Raises:
        DataError: a class folder holding no image file (naming the class and the folder).
    """
    paths: list[str] = []
    targets: list[int] = []
    skipped: list[tuple[str, str]] = []
    for label, folder in enumerate(folders):
        files = _list_images(split_dir / folder, skipped)
        if not files:
            role = "training" if split_dir.name == "train" else "test"
            raise DataError(
                f"{dataset}: class {class_names[label]!r} has no {role} images: the folder "
                f"{str(split_dir / folder)!r} holds no images, subfolders included (extensions read: "
                f"{', '.join(IMAGE_EXTENSIONS)}). Every class needs at least one training and one "
                f"test image (a class without {role} images would "
                f"{'never be learned' if role == 'training' else 'never be evaluated'}). Fix: add "
                "images to that folder, or remove the class's folder from every split"
            )
        paths.extend(files)
        targets.extend([label] * len(files))
    _report_skipped(dataset, split_dir, skipped, kept=len(paths))
    return ImageFileSource(paths, targets, class_names, identity=identity,
                           class_ids=list(folders) if class_ids is None else class_ids)


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


@_register("seq-cifar10", 2, "CIFAR-10, 5 experiences x 2 classes, native class order", can_download=True)
def _load_cifar10(root: Path | None, *, download: bool):
    return _cifar("seq-cifar10", root, download=download, torchvision_dir="cifar-10-batches-py",
                  tv_class="CIFAR10", known=CIFAR10_CLASSES)


@_register("seq-cifar100", 10, "CIFAR-100 fine labels, 10 experiences x 10 classes", can_download=True)
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
    skipped: list[tuple[str, str]] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise _layout_error("seq-tinyimagenet", root, f"missing {folder}", _TINY_LAYOUT,
                                can_download=False)
        files = _list_images(folder, skipped)
        if not files:
            raise DataError(
                f"seq-tinyimagenet: class {wnid} ({names[label[wnid]]!r}) has no training images: "
                f"{str(folder)!r} holds no image files. Every class needs training images. Fix: "
                "restore that folder from tiny-imagenet-200.zip"
            )
        paths.extend(files)
        targets.extend([label[wnid]] * len(files))
    _report_skipped("seq-tinyimagenet", root / "train", skipped, kept=len(paths))
    train = ImageFileSource(paths, targets, names, identity=f"seq-tinyimagenet|{root}|train",
                            class_ids=wnids)

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
    test = ImageFileSource(val_paths, val_targets, names, identity=f"seq-tinyimagenet|{root}|val",
                           class_ids=wnids)
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


@_register("digits", 2, "scikit-learn's 1,797 8x8 digits (offline, no files), 5 x 2", takes_root=False)
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


@_register("fashion-mnist", 2, "Fashion-MNIST, 5 experiences x 2 classes", can_download=True)
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
    "  root/train/<class>/**/*.jpg|png|... and root/test/<class>/** (or root/val/<class>/**), the "
    "same class folders on both sides (images in subfolders of a class folder belong to it, as in "
    "torchvision's ImageFolder);\n  classes are ordered by sorted folder name, underscores in "
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


# --------------------------------------------------------------------------------------------
# Seeded per-class train/test splits (datasets without an official one)
# --------------------------------------------------------------------------------------------


def _check_split_options(dataset: str, split_seed: object, test_fraction: object) -> tuple[int, float]:
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or int(split_seed) < 0:
        raise ConfigError(
            f"{dataset}: split_seed must be an int >= 0 (the seed of the per-class train/test split), "
            f"got {split_seed!r}"
        )
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ConfigError(
            f"{dataset}: test_fraction must be a number in (0, 1) (share of every class's images "
            f"held out for test), got {test_fraction!r}"
        )
    return int(split_seed), float(test_fraction)


def _seeded_split(
    dataset: str,
    files_per_class: Sequence[Sequence[str]],
    class_ids: Sequence[str],
    *,
    seed: int,
    test_fraction: float | None = None,
    train_per_class: int | None = None,
) -> tuple[list[str], list[int], list[str], list[int]]:
    """Split every class's files into train and test with a generator seeded by (seed, label).

    Each class draws its own permutation from ``np.random.default_rng([seed, label])``, so a
    class's split does not depend on the other classes. ``train_per_class`` keeps that many
    training images per class (the rest is test); otherwise ``round(test_fraction * n)`` images
    (at least one) are test images. Files keep their sorted order inside each side.

    Raises:
        DataError: a class with fewer than two images (it cannot be on both sides).
    """
    train_paths: list[str] = []
    train_targets: list[int] = []
    test_paths: list[str] = []
    test_targets: list[int] = []
    for label, files in enumerate(files_per_class):
        n = len(files)
        if n < 2:
            raise DataError(
                f"{dataset}: class {class_ids[label]!r} has {n} image(s); the seeded train/test "
                "split needs at least two per class (one on each side). Fix: add images or remove "
                "that class folder"
            )
        if train_per_class is not None:
            num_test = n - min(train_per_class, n - 1)
        else:
            assert test_fraction is not None
            num_test = min(max(1, round(test_fraction * n)), n - 1)
        permutation = np.random.default_rng([seed, label]).permutation(n)
        is_test = np.zeros(n, dtype=bool)
        is_test[permutation[:num_test]] = True
        for index, path in enumerate(files):
            if is_test[index]:
                test_paths.append(path)
                test_targets.append(label)
            else:
                train_paths.append(path)
                train_targets.append(label)
    return train_paths, train_targets, test_paths, test_targets


def _check_path_option(dataset: str, option: str, value: object) -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(
            f"{dataset}: option {option} must be the path of a file, got {type(value).__name__} {value!r}"[:300]
        )


def _packaged_name_map(filename: str) -> dict[str, str]:
    from importlib import resources


    with resources.as_file(resources.files("alta.data") / filename) as path:
        return read_name_map(path)


# --------------------------------------------------------------------------------------------
# ImageNet-R
# --------------------------------------------------------------------------------------------

_IMAGENET_R_LAYOUT = (
    "  (a) root/imagenet-r/<wnid>/*.jpg: the 200 WordNet-id folders as imagenet-r.tar unpacks "
    "(root may be imagenet-r itself); alta splits every class 80/20 with split_seed\n"
    "  (b) root/imagenet-r/train/<wnid>/ + test/<wnid>/ (or val/): a split you made yourself.\n"
    "  alta cannot download ImageNet-R: fetch https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"
)


@_register("imagenet-r", 20, "ImageNet-R, 200 classes, seeded 80/20 split per class, 10 x 20",
           options=("split_seed", "test_fraction"))
def _load_imagenet_r(root: Path | None, *, download: bool, split_seed: int = 0,
                     test_fraction: float = 0.2):
    """ImageNet-R (Hendrycks et al., ICCV 2021) as L2P/DualPrompt/CODA-Prompt use it: 200 classes,
    no official split, so every class is split 80/20 (seeded); readable names from the packaged
    ``imagenet_r_classes.tsv``."""
    split_seed, test_fraction = _check_split_options("imagenet-r", split_seed, test_fraction)
    root = _need_root("imagenet-r", root, _IMAGENET_R_LAYOUT, can_download=False)
    base = root / "imagenet-r" if (root / "imagenet-r").is_dir() else root
    names = _packaged_name_map("imagenet_r_classes.tsv")
    presplit = (base / "train").is_dir() and _test_dir(base) is not None
    folders = _class_folders(base / "train" if presplit else base)
    if not folders:
        raise _layout_error("imagenet-r", root, "no class folders found", _IMAGENET_R_LAYOUT,
                            can_download=False)
    unknown = [f for f in folders if f not in names]
    if unknown:
        raise DataRootError(
            f"imagenet-r: {len(unknown)} class folder(s) of {str(base)!r} are not ImageNet-R WordNet "
            f"ids, e.g. {unknown[:5]}; expected folders named by the 200 wnids of ImageNet-R "
            f"(n01443537 ...).\nLayouts:\n{_IMAGENET_R_LAYOUT}"
        )
    if len(folders) != len(names):
        logger.warning("imagenet-r: %s holds %d of the %d ImageNet-R classes", base, len(folders), len(names))
    class_names = [names[f] for f in folders]
    if presplit:
        test_dir = _test_dir(base)
        assert test_dir is not None
        if _class_folders(test_dir) != folders:
            raise DataRootError(
                f"imagenet-r: the class folders of {str(test_dir)!r} differ from those of "
                f"{str(base / 'train')!r}; expected the same wnid folders on both sides"
            )
        return (
            _folder_split(base / "train", folders, identity=f"imagenet-r|{base}|train",
                          class_names=class_names, dataset="imagenet-r"),
            _folder_split(test_dir, folders, identity=f"imagenet-r|{base}|{test_dir.name}",
                          class_names=class_names, dataset="imagenet-r"),
        )
    skipped: list[tuple[str, str]] = []
    files = [_list_images(base / f, skipped) for f in folders]
    _report_skipped("imagenet-r", base, skipped, kept=sum(len(f) for f in files))
    train_p, train_t, test_p, test_t = _seeded_split("imagenet-r", files, folders, seed=split_seed,
                                                     test_fraction=test_fraction)
    tag = f"imagenet-r|{base}|seed={split_seed}|test={test_fraction}"
    return (
        ImageFileSource(train_p, train_t, class_names, identity=f"{tag}|train", class_ids=folders),
        ImageFileSource(test_p, test_t, class_names, identity=f"{tag}|test", class_ids=folders),
    )


# --------------------------------------------------------------------------------------------
# CUB-200-2011
# --------------------------------------------------------------------------------------------

_CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
_CUB_LAYOUT = (
    "  root/CUB_200_2011/ (or root itself) with images.txt, image_class_labels.txt, "
    "train_test_split.txt, classes.txt and images/<NNN.Class_name>/*.jpg, as CUB_200_2011.tgz "
    "unpacks.\n  alta cannot download CUB-200-2011: fetch it from "
    "https://www.vision.caltech.edu/datasets/cub_200_2011/"
)


def _read_index(path: Path, dataset: str, fields: int) -> dict[str, list[str]]:
    """``id field...`` lines of a CUB index file, keyed by id."""
    rows: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != fields + 1 or parts[0] in rows:
                raise DataError(
                    f"{dataset}: {path} line {number} is {line.strip()!r}; expected one "
                    f"'<id> {' '.join(['<value>'] * fields)}' line per id, each id once"
                )
            rows[parts[0]] = parts[1:]
    return rows


@_register("cub200", 20, "CUB-200-2011 birds, 200 classes, official train/test split, 10 x 20")
def _load_cub200(root: Path | None, *, download: bool):
    """CUB-200-2011 (Wah et al., 2011) from its index files: ``classes.txt`` gives the label
    order and the names (``001.Black_footed_Albatross`` -> "Black footed Albatross"),
    ``train_test_split.txt`` the official split."""
    root = _need_root("cub200", root, _CUB_LAYOUT, can_download=False)
    base = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
    absent = [f for f in (*_CUB_FILES, "images") if not (base / f).exists()]
    if absent:
        raise _layout_error("cub200", root, f"missing {', '.join(absent)}", _CUB_LAYOUT, can_download=False)
    classes = _read_index(base / "classes.txt", "cub200", 1)
    numbers = sorted(int(k) for k in classes)
    if numbers != list(range(1, len(numbers) + 1)):
        raise DataError(f"cub200: {base / 'classes.txt'} must number its classes 1..K, got {numbers[:5]}...")
    folders = [classes[str(k)][0] for k in numbers]
    names = [readable(re.sub(r"^\d+\.", "", f)) for f in folders]
    images = _read_index(base / "images.txt", "cub200", 1)
    labels = _read_index(base / "image_class_labels.txt", "cub200", 1)
    is_train = _read_index(base / "train_test_split.txt", "cub200", 1)
    if not (images.keys() == labels.keys() == is_train.keys()):
        raise DataError(
            f"cub200: images.txt, image_class_labels.txt and train_test_split.txt of {str(base)!r} list "
            f"different image ids ({len(images)}, {len(labels)}, {len(is_train)} ids); expected the same ids"
        )
    sides: dict[bool, tuple[list[str], list[int]]] = {True: ([], []), False: ([], [])}
    for image_id in sorted(images, key=int):
        label = int(labels[image_id][0]) - 1
        if not 0 <= label < len(folders):
            raise DataError(f"cub200: image {image_id} has label {label + 1}, outside 1..{len(folders)}")
        flag = is_train[image_id][0]
        if flag not in ("0", "1"):
            raise DataError(f"cub200: train_test_split.txt gives image {image_id} the flag {flag!r}; expected 0 or 1")
        paths, targets = sides[flag == "1"]
        paths.append(str(base / "images" / images[image_id][0]))
        targets.append(label)
    return (
        ImageFileSource(*sides[True], names, identity=f"cub200|{base}|train", class_ids=folders),
        ImageFileSource(*sides[False], names, identity=f"cub200|{base}|test", class_ids=folders),
    )


# --------------------------------------------------------------------------------------------
# Caltech-101
# --------------------------------------------------------------------------------------------

_CALTECH_LAYOUT = (
    "  root/101_ObjectCategories/<class>/image_*.jpg (as 101_ObjectCategories.tar.gz unpacks; root "
    "may be that folder itself, or torchvision's root/caltech101/101_ObjectCategories/)"
)
# The class names CoOp and the CLIP continual-learning code give the four plural folder names.
_CALTECH_NAMES = {"airplanes": "airplane", "Faces": "face", "Faces_easy": "face easy",
                  "Leopards": "leopard", "Motorbikes": "motorbike"}
_CALTECH_BACKGROUND = "BACKGROUND_Google"


def _read_split_list(path: str | os.PathLike, base: Path, folders: Sequence[str], what: str
                     ) -> tuple[list[str], list[int]]:
    """Image paths of a user split file (one path per line, relative to ``base``), labelled by
    their class folder."""
    _check_path_option("caltech101", what, path)
    label = {f: k for k, f in enumerate(folders)}
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"caltech101: {what}={os.fspath(path)!r} is not a file; expected one image path per line")
    paths, targets = [], []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rel = Path(line.split()[0])
        parts = rel.parts[1:] if rel.parts and rel.parts[0] == base.name else rel.parts
        if len(parts) < 2 or parts[0] not in label:
            raise DataError(
                f"caltech101: {file} line {number} is {line.strip()!r}; expected '<class>/<image>' "
                f"relative to {str(base)!r} with a class folder of the dataset"
            )
        paths.append(str(base.joinpath(*parts)))
        targets.append(label[parts[0]])
    return paths, targets


@_register("caltech101", None, "Caltech-101, 101 classes (background excluded), seeded per-class split",
           options=("split_seed", "test_fraction", "train_per_class", "train_list", "test_list",
                    "include_background"))
def _load_caltech101(root: Path | None, *, download: bool, split_seed: int = 0, test_fraction: float = 0.2,
                     train_per_class: int | None = None, train_list: str | os.PathLike | None = None,
                     test_list: str | os.PathLike | None = None, include_background: bool = False):
    """Caltech-101 (Fei-Fei et al., 2004): 101 object classes in sorted folder order (as
    torchvision's ``Caltech101``), ``BACKGROUND_Google`` left out unless ``include_background``.
    There is no official split: each class is split with ``split_seed`` (``test_fraction`` of its
    images, or all but ``train_per_class``), or ``train_list``/``test_list`` files give it."""
    split_seed, test_fraction = _check_split_options("caltech101", split_seed, test_fraction)
    if train_per_class is not None and (isinstance(train_per_class, bool) or not isinstance(train_per_class, int)
                                        or train_per_class < 1):
        raise ConfigError(f"caltech101: train_per_class must be an int >= 1 or None, got {train_per_class!r}")
    if not isinstance(include_background, bool):
        raise ConfigError(f"caltech101: include_background must be True or False, got {include_background!r}")
    if (train_list is None) != (test_list is None):
        raise ConfigError("caltech101: give both train_list and test_list (user split files), or neither")
    root = _need_root("caltech101", root, _CALTECH_LAYOUT, can_download=False)
    for base in (root / "101_ObjectCategories", root / "caltech101" / "101_ObjectCategories", root):
        if base.is_dir() and (base.name == "101_ObjectCategories" or (base / "airplanes").is_dir()):
            break
    else:
        raise _layout_error("caltech101", root, "no 101_ObjectCategories folder", _CALTECH_LAYOUT,
                            can_download=False)
    folders = [f for f in _class_folders(base) if include_background or f != _CALTECH_BACKGROUND]
    if not folders:
        raise _layout_error("caltech101", root, f"{base} holds no class folders", _CALTECH_LAYOUT,
                            can_download=False)
    names = [_CALTECH_NAMES.get(f, readable(f)) for f in folders]
    tag = f"caltech101|{base}|background={bool(include_background)}"
    if train_list is not None and test_list is not None:
        train_p, train_t = _read_split_list(train_list, base, folders, "train_list")
        test_p, test_t = _read_split_list(test_list, base, folders, "test_list")
        overlap = set(train_p) & set(test_p)
        if overlap:
            raise DataError(
                f"caltech101: {len(overlap)} image(s) are in both train_list and test_list, e.g. "
                f"{sorted(overlap)[:3]}; expected disjoint split files"
            )
        tag += f"|lists={Path(train_list).resolve()},{Path(test_list).resolve()}"
    else:
        skipped: list[tuple[str, str]] = []
        files = [_list_images(base / f, skipped) for f in folders]
        _report_skipped("caltech101", base, skipped, kept=sum(len(f) for f in files))
        train_p, train_t, test_p, test_t = _seeded_split(
            "caltech101", files, folders, seed=split_seed, test_fraction=test_fraction,
            train_per_class=train_per_class)
        tag += f"|seed={split_seed}|" + (f"train={train_per_class}" if train_per_class else f"test={test_fraction}")
    return (
        ImageFileSource(train_p, train_t, names, identity=f"{tag}|train", class_ids=folders),
        ImageFileSource(test_p, test_t, names, identity=f"{tag}|test", class_ids=folders),
    )


# --------------------------------------------------------------------------------------------
# ImageNet subsets (ImageNet-100, ...)
# --------------------------------------------------------------------------------------------

_WNID_RE = re.compile(r"n\d{8}")
_IMAGENET_LAYOUT = (
    "  root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (ILSVRC-2012 with the validation images "
    "sorted into class folders), or the Kaggle ILSVRC layout root/ILSVRC/Data/CLS-LOC/{train,val}/ "
    "with val/ flat and LOC_val_solution.csv beside it;\n  class_list: a file with one wnid per line "
    "(e.g. ImageNet-100's 100 wnids) or a DyTox/PODNet split file ('train/<wnid>/<file> <label>' "
    "lines); readable names from LOC_synset_mapping.txt or words.txt when found in or above root"
)


def _read_class_list(path: str | os.PathLike, dataset: str) -> list[str]:
    """WordNet ids of a class-list file, in label order."""
    _check_path_option(dataset, "class_list", path)
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{dataset}: class_list={os.fspath(path)!r} is not a file; expected one wnid per line")
    plain: list[str] = []
    labelled: dict[str, int] = {}
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens = line.split()
        found = _WNID_RE.search(tokens[0])
        if found is None:
            raise DataError(
                f"{dataset}: class_list {str(file)!r} line {number} is {line.strip()!r}; expected a "
                "WordNet id (n01440764) or a 'train/<wnid>/<file> <label>' line"
            )
        if "/" in tokens[0] and len(tokens) >= 2 and tokens[1].isdigit():
            previous = labelled.setdefault(found.group(0), int(tokens[1]))
            if previous != int(tokens[1]):
                raise DataError(f"{dataset}: class_list {str(file)!r} gives {found.group(0)} labels "
                                f"{previous} and {tokens[1]}; expected one label per class")
        elif found.group(0) not in plain:
            plain.append(found.group(0))
    if labelled:
        return sorted(labelled, key=lambda w: (labelled[w], w))
    return sorted(plain)


def _synset_names(root: Path) -> dict[str, str] | None:
    """wnid -> readable name from ``LOC_synset_mapping.txt`` (space) or ``words.txt`` (tab)
    in ``root`` or up to three folders above it."""
    for folder in (root, *list(root.parents)[:3]):
        mapping_file = folder / "LOC_synset_mapping.txt"
        if mapping_file.is_file():
            names = {}
            for line in mapping_file.read_text(encoding="utf-8").splitlines():
                wnid, _, text = line.strip().partition(" ")
                if wnid:
                    names[wnid] = text.split(",")[0].strip()
            return names
        if (folder / "words.txt").is_file():

            return read_name_map(folder / "words.txt")
    return None


@_register("imagenet-subset", None, "ILSVRC-2012 train/val folders restricted to a class list (ImageNet-100)",
           options=("class_list",))
def _load_imagenet_subset(root: Path | None, *, download: bool, class_list: str | os.PathLike | None = None):
    """ImageNet (ILSVRC-2012) or a subset of its classes, e.g. ImageNet-100 (PODNet, DyTox,
    PyCIL): the wnids of ``class_list`` (all of ``train/`` without one), labels in sorted wnid
    order (as torchvision's ImageFolder on the subset) or in the labels of a split file."""
    if class_list is not None:
        _check_path_option("imagenet-subset", "class_list", class_list)
    root = _need_root("imagenet-subset", root, _IMAGENET_LAYOUT, can_download=False)
    for base in (root, root / "ILSVRC" / "Data" / "CLS-LOC", root / "Data" / "CLS-LOC"):
        if (base / "train").is_dir() and (base / "val").is_dir():
            break
    else:
        raise _layout_error("imagenet-subset", root, "no train/ and val/ folders", _IMAGENET_LAYOUT,
                            can_download=False)
    available = _class_folders(base / "train")
    wnids = _read_class_list(class_list, "imagenet-subset") if class_list is not None else available
    missing = sorted(set(wnids) - set(available))
    if not wnids or missing:
        raise DataRootError(
            f"imagenet-subset: {str(base / 'train')!r} has no folder for {len(missing)} class(es) of the "
            f"class list, e.g. {missing[:5]}; expected one train/<wnid>/ folder per class.\n"
            f"Layouts:\n{_IMAGENET_LAYOUT}"
        )
    known = _synset_names(base) or {}
    names = [known.get(w) or w for w in wnids]
    tag = f"imagenet-subset|{base}|classes={_digest(wnids)}"
    train = _folder_split(base / "train", wnids, identity=f"{tag}|train", class_names=names,
                          dataset="imagenet-subset")
    if all((base / "val" / w).is_dir() for w in wnids):
        test = _folder_split(base / "val", wnids, identity=f"{tag}|val", class_names=names,
                             dataset="imagenet-subset")
        return train, test
    solution = next((p for p in (base / "LOC_val_solution.csv", *[q / "LOC_val_solution.csv" for q in list(base.parents)[:3]])
                     if p.is_file()), None)
    if solution is None:
        raise _layout_error("imagenet-subset", root, "val/ has no <wnid>/ folders and no LOC_val_solution.csv "
                            "was found", _IMAGENET_LAYOUT, can_download=False)
    label = {w: k for k, w in enumerate(wnids)}
    paths, targets = [], []
    for line in solution.read_text(encoding="utf-8").splitlines()[1:]:
        image_id, _, prediction = line.partition(",")
        wnid = prediction.split(" ")[0] if prediction else ""
        if wnid in label:
            paths.append(str(base / "val" / f"{image_id}.JPEG"))
            targets.append(label[wnid])
    absent = sorted(set(wnids) - {wnids[t] for t in targets})
    if absent:
        raise DataError(f"imagenet-subset: {solution} lists no validation image for {absent[:5]}; every "
                        "class needs test images")
    return train, ImageFileSource(paths, targets, names, identity=f"{tag}|val", class_ids=wnids)


def _digest(items: Sequence[str]) -> str:
    """Short SHA-256 digest of a list of strings (keys a class subset in cache identities)."""
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]
