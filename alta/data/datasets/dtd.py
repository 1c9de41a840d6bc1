"""The Describable Textures Dataset (47 classes) with its official partitions (ZSCL's MTIL: the
first, ``train1`` / ``test1``).

References:
    M. Cimpoi et al., "Describing Textures in the Wild", CVPR 2014.
    Z. Zheng et al. (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``DTD``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import DataError
from .base import ImageFileSource, register
from .folders import check_listed, check_option_choice, class_folders, index_lines, locate, need_root, require
from .names import check_class_ids, shipped_classes

logger = logging.getLogger("alta.data.datasets")


_DTD_LAYOUT = (
    "  root/dtd/dtd/ (torchvision's layout) or root/dtd/ (as dtd-r1.0.1.tar.gz unpacks; root may be that "
    "folder itself) with images/<class>/<class>_NNNN.jpg and labels/{train,val,test}<1..10>.txt "
    "('<class>/<file>' lines).\n  alta cannot download DTD: fetch "
    "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"
)
DTD_TRAIN_SPLITS = ("train", "trainval")


@register("dtd", None, "Describable Textures, 47 classes, official partition 1 (train1 / test1, as ZSCL's MTIL)",
          options=("partition", "train_split"))
def _load_dtd(root: Path | None, *, download: bool, partition: int = 1, train_split: str = "train"):
    """DTD (Cimpoi et al., CVPR 2014): classes in sorted folder order (as torchvision's ``DTD``),
    one of its ten official partitions (``partition``, 1 by default as in ZSCL): 40 training
    images per class in ``train<p>.txt`` (``train_split="trainval"`` adds the 40 of
    ``val<p>.txt``), 40 test images in ``test<p>.txt``."""
    check_option_choice("dtd", "partition", partition, tuple(range(1, 11)))
    check_option_choice("dtd", "train_split", train_split, DTD_TRAIN_SPLITS)
    root = need_root("dtd", root, _DTD_LAYOUT, can_download=False)
    base = locate(root, ("dtd/dtd", "dtd"), "labels")
    splits = {"train": [f"train{partition}"], "trainval": [f"train{partition}", f"val{partition}"]}[train_split]
    require("dtd", root, base, ("images", *[f"labels/{s}.txt" for s in splits], f"labels/test{partition}.txt"),
            _DTD_LAYOUT)
    classes = shipped_classes("dtd")
    folders = class_folders(base / "images")
    check_class_ids("dtd", folders, classes.ids, where=str(base / "images"), layouts=_DTD_LAYOUT)
    label = {folder: k for k, folder in enumerate(folders)}
    sources = []
    for side, files in (("train", splits), ("test", [f"test{partition}"])):
        paths, targets = [], []
        for name in files:
            index = base / "labels" / f"{name}.txt"
            first = len(paths)  # this file's entries: each list is checked once, against its own file
            for number, line in index_lines("dtd", index):
                folder, _, file = line.partition("/")
                if folder not in label or not file:
                    raise DataError(f"dtd: {index} line {number} is {line!r}; expected '<class>/<file>' with a "
                                    f"class folder of {base / 'images'}. Fix: restore the file from the DTD archive")
                paths.append(str(base / "images" / folder / file))
                targets.append(label[folder])
            check_listed("dtd", root, base, paths[first:], index, _DTD_LAYOUT)
        tag = "+".join(files)
        sources.append(ImageFileSource(paths, targets, classes.names, identity=f"dtd|{base}|{tag}|{side}",
                                       class_ids=classes.ids))
    return sources[0], sources[1]
