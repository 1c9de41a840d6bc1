"""Fashion-MNIST (5 x 2) from torchvision's layout or the four original idx files.

References:
    H. Xiao et al., "Fashion-MNIST", arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np

from ...errors import DataError
from .base import ArraySource, register
from .folders import layout_error, need_root

logger = logging.getLogger("alta.data.datasets")


FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip

# Where the Debian package ``dataset-fashion-mnist`` installs the original idx files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

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


#: The four idx files of MNIST and Fashion-MNIST (the same names), per split: (images, labels).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_LAYOUT = (
    "  (a) torchvision: root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte\n"
    "  (b) the four original files (.gz or not) directly in root, e.g. "
    f"{DEBIAN_FASHION_MNIST} from the Debian package dataset-fashion-mnist"
)


def find_idx(folder: Path, stem: str) -> Path | None:
    """The idx file ``stem`` in ``folder``, plain or gzip-compressed (``stem.gz``); ``None`` when
    neither is there."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def idx_sources(dataset: str, found: dict[str, list[Path]], class_names,
                folder: Path) -> tuple[ArraySource, ArraySource]:
    """The (train, test) sources of the idx files ``found[split] = [images, labels]`` in ``folder``.

    Raises:
        DataError: images that are not (N, 28, 28) beside (N,) labels, or a label with no class name.
    """
    sources = []
    for split, (images_path, labels_path) in found.items():
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(f"{dataset}: {images_path} has shape {images.shape} and {labels_path} {labels.shape}; "
                            "expected (N, 28, 28) images and (N,) labels")
        if labels.size and int(labels.max()) >= len(class_names):
            raise DataError(f"{dataset}: {labels_path} holds label {int(labels.max())}; expected labels "
                            f"0..{len(class_names) - 1}")
        sources.append(ArraySource(images, labels, class_names, identity=f"{dataset}|idx|{folder}|{split}"))
    return sources[0], sources[1]


@register("fashion-mnist", 2, "Fashion-MNIST, 5 experiences x 2 classes", can_download=True)
def _load_fashion_mnist(root: Path | None, *, download: bool):
    if root is None and DEBIAN_FASHION_MNIST.is_dir():
        root = DEBIAN_FASHION_MNIST
    root = need_root("fashion-mnist", root, _FASHION_LAYOUT, can_download=True)
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        found = {s: [find_idx(folder, f) for f in files] for s, files in IDX_FILES.items()}
        if all(p is not None for files in found.values() for p in files):
            return idx_sources("fashion-mnist", found, FASHION_MNIST_CLASSES, folder)
    if download:
        import torchvision.datasets as tvd

        sources = []
        for split, train in (("train", True), ("test", False)):
            tv = tvd.FashionMNIST(str(root), train=train, download=True)
            sources.append(ArraySource(tv.data.numpy(), tv.targets, FASHION_MNIST_CLASSES,
                                       identity=f"fashion-mnist|idx|{root / 'FashionMNIST' / 'raw'}|{split}"))
        return sources[0], sources[1]
    raise layout_error("fashion-mnist", root, "the four idx files were not found", _FASHION_LAYOUT,
                        can_download=True)
