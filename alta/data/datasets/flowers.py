"""Oxford Flowers-102 (102 classes) from its official ``.mat`` files, with the split ZSCL's MTIL
uses (``trnid`` for training, ``tstid`` for test; ``valid`` unused).

References:
    M.-E. Nilsback, A. Zisserman, "Automated Flower Classification over a Large Number of
    Classes", ICVGIP 2008.
    Z. Zheng et al. (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``Flowers``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...errors import DataError
from .base import ImageFileSource, register
from .folders import check_listed, check_option_choice, load_mat, locate, need_root, require
from .names import shipped_classes

logger = logging.getLogger("alta.data.datasets")


_FLOWERS_LAYOUT = (
    "  root/flowers-102/ (torchvision's layout; root may be that folder itself) with jpg/image_NNNNN.jpg (as "
    "102flowers.tgz unpacks), imagelabels.mat and setid.mat.\n  alta cannot download Flowers-102: fetch "
    "102flowers.tgz, imagelabels.mat and setid.mat from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
)
FLOWERS_TRAIN_SPLITS = ("train", "trainval")


@register("flowers102", None, "Oxford Flowers-102, 102 classes, official split (trnid / tstid, as ZSCL's MTIL)",
          options=("train_split",), aliases=("oxford-flowers",))
def _load_flowers102(root: Path | None, *, download: bool, train_split: str = "train"):
    """Flowers-102 (Nilsback & Zisserman, 2008): labels ``imagelabels.mat`` - 1, ZSCL's
    hand-written class names (``alta/data/class_names/flowers102.tsv``), the official split of
    ``setid.mat``: ``trnid`` (10 images per class, 1,020) for training as in ZSCL, or ``trnid`` +
    ``valid`` with ``train_split="trainval"`` (2,040); ``tstid`` (6,149) for test."""
    check_option_choice("flowers102", "train_split", train_split, FLOWERS_TRAIN_SPLITS)
    root = need_root("flowers102", root, _FLOWERS_LAYOUT, can_download=False)
    base = locate(root, ("flowers-102",), "imagelabels.mat")
    require("flowers102", root, base, ("jpg", "imagelabels.mat", "setid.mat"), _FLOWERS_LAYOUT)
    classes = shipped_classes("flowers102")
    labels = np.atleast_1d(load_mat("flowers102", base / "imagelabels.mat", ["labels"])["labels"]).astype(np.int64)
    if labels.ndim != 1 or labels.min() < 1 or labels.max() > len(classes.ids):
        raise DataError(f"flowers102: {base / 'imagelabels.mat'} 'labels' must hold one label in 1..{len(classes.ids)} "
                        f"per image, got shape {labels.shape} in [{labels.min()}, {labels.max()}]. Fix: restore it")
    ids = load_mat("flowers102", base / "setid.mat", ["trnid", "valid", "tstid"])
    sides = {"train": ["trnid"] + (["valid"] if train_split == "trainval" else []), "test": ["tstid"]}
    sources = []
    for side, keys in sides.items():
        image_ids = np.concatenate([np.atleast_1d(ids[k]).astype(np.int64) for k in keys])
        if image_ids.size and (image_ids.min() < 1 or image_ids.max() > labels.size):
            raise DataError(f"flowers102: {base / 'setid.mat'} {'+'.join(keys)} holds image ids outside "
                            f"1..{labels.size} (the images of imagelabels.mat). Fix: restore both .mat files")
        paths = [str(base / "jpg" / f"image_{i:05d}.jpg") for i in image_ids.tolist()]
        check_listed("flowers102", root, base, paths, base / "setid.mat", _FLOWERS_LAYOUT)
        sources.append(ImageFileSource(paths, (labels[image_ids - 1] - 1).tolist(), classes.names,
                                       identity=f"flowers102|{base}|{'+'.join(keys)}|{side}", class_ids=classes.ids))
    return sources[0], sources[1]
