"""MNIST (10 digits) from torchvision's layout or the four original idx files, with ZSCL's class
names ("0 - zero", torchvision's ``MNIST.classes``).

References:
    Y. LeCun et al., "Gradient-Based Learning Applied to Document Recognition", Proc. IEEE 1998.
    Z. Zheng et al. (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``MNIST``).
"""

from __future__ import annotations

from pathlib import Path

from .base import register
from .fashion_mnist import IDX_FILES, find_idx, idx_sources
from .folders import layout_error, need_root
from .names import shipped_classes

_MNIST_LAYOUT = (
    "  (a) torchvision: root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (.gz or not)\n"
    "  (b) the four original files directly in root (or in root/raw/).\n"
    "  alta cannot download MNIST: fetch the four files of https://yann.lecun.com/exdb/mnist/ (or a mirror)"
)


@register("mnist", 2, "MNIST, 10 digits, official 60k / 10k split (Split-MNIST default 5 x 2)")
def _load_mnist(root: Path | None, *, download: bool):
    """MNIST (LeCun et al., 1998): the official 60,000 / 10,000 split, names as ZSCL gives them to
    CLIP (``alta/data/class_names/mnist.tsv``: "0 - zero" ... "9 - nine"). Its default split is
    Split-MNIST's 5 x 2."""
    root = need_root("mnist", root, _MNIST_LAYOUT, can_download=False)
    classes = shipped_classes("mnist")
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        found = {split: [find_idx(folder, f) for f in files] for split, files in IDX_FILES.items()}
        present = [p for files in found.values() for p in files if p is not None]
        if len(present) == 4:
            break
        if present:  # a partial folder: name what is missing there
            absent = [str(folder / f) for split, files in IDX_FILES.items()
                      for f, p in zip(files, found[split]) if p is None]
            raise layout_error("mnist", root, f"missing {', '.join(absent)} (.gz or not)", _MNIST_LAYOUT,
                               can_download=False, base=folder)
    else:
        raise layout_error("mnist", root, "the four idx files were not found", _MNIST_LAYOUT, can_download=False)
    return idx_sources("mnist", found, classes.names, folder)
