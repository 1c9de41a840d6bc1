"""SUN397 (397 scene classes, 108,754 images) with ZSCL's 80/20 split seeded 42 or one of the ten
official partitions.

ZSCL's MTIL splits the whole dataset with ``random_split`` 80/20 and
``torch.Generator().manual_seed(42)`` over torchvision's ``SUN397`` sample order, which is
``Path.rglob("sun_*.jpg")``: the order the file system lists directory entries in. That order
differs between machines and file systems, so **ZSCL's own SUN397 split cannot be reproduced
elsewhere**. alta draws the same permutation over the images sorted by their path under
``SUN397/``: the same split on every machine, ZSCL's procedure but not necessarily ZSCL's images.
The official partitions (``partition=1`` ... ``10``: 50 training and 50 test images per class,
``Training_0N.txt`` / ``Testing_0N.txt``) are the alternative a paper can name exactly.

References:
    J. Xiao et al., "SUN Database: Large-scale Scene Recognition from Abbey to Zoo", CVPR 2010.
    Z. Zheng et al. (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``SUN397``, ``ClassificationDataset.split_dataset``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ...errors import ConfigError, DataError
from .base import ImageFileSource, register
from .folders import (
    ZSCL_SPLIT_SEED,
    check_listed,
    check_option_choice,
    check_split_options,
    index_lines,
    layout_error,
    locate,
    need_root,
    require,
    zscl_split_sources,
)
from .names import check_class_ids, shipped_classes

logger = logging.getLogger("alta.data.datasets")


_SUN_LAYOUT = (
    "  root/SUN397/ (torchvision's layout; root may be that folder itself) with ClassName.txt and "
    "<letter>/<class>/sun_*.jpg (e.g. a/abbey/, a/apartment_building/outdoor/), as SUN397.tar.gz unpacks;\n"
    "  for partition=N also Training_0N.txt and Testing_0N.txt (from Partitions.zip) in SUN397/, "
    "SUN397/Partitions/ or root/Partitions/.\n  alta cannot download SUN397: fetch "
    "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz (and Partitions.zip from the same page)"
)


def partition_folder(base: Path, root: Path, partition: int) -> Path:
    """The folder holding ``Training_0N.txt``: ``SUN397/``, ``SUN397/Partitions/`` or ``root/Partitions/``."""
    name = f"Training_{partition:02d}.txt"
    for folder in (base, base / "Partitions", root / "Partitions"):
        if (folder / name).is_file():
            return folder
    raise layout_error("sun397", root, f"missing {name} (looked in {base}, {base / 'Partitions'} and "
                       f"{root / 'Partitions'})", _SUN_LAYOUT, can_download=False, base=base)


def class_images(base: Path, class_ids, root: Path) -> tuple[list[str], list[int]]:
    """Every ``sun_*.jpg`` of every class folder (the files torchvision's ``SUN397`` finds),
    sorted by path under ``base``."""
    found: list[tuple[str, int]] = []
    for label, class_id in enumerate(class_ids):
        folder = base / class_id.lstrip("/")
        if not folder.is_dir():
            raise layout_error("sun397", root, f"missing the class folder {folder}", _SUN_LAYOUT,
                               can_download=False, base=base)
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.startswith("sun_") and e.name.endswith(".jpg")]
        if not names:
            raise layout_error("sun397", root, f"the class folder {folder} holds no sun_*.jpg image", _SUN_LAYOUT,
                               can_download=False, base=base)
        found.extend((f"{class_id.lstrip('/')}/{name}", label) for name in names)
    found.sort()
    return [str(base / relative) for relative, _ in found], [label for _, label in found]


@register("sun397", None, "SUN397, 397 scenes, ZSCL's 80/20 split seeded 42 (files sorted) or an official partition",
          options=("partition", "split_seed"))
def _load_sun397(root: Path | None, *, download: bool, partition: int | None = None, split_seed: int | None = None):
    """SUN397 (Xiao et al., CVPR 2010): labels in ``ClassName.txt`` order, names as ZSCL feeds
    CLIP (``alta/data/class_names/sun397.tsv``: "apartment building/outdoor"). By default ZSCL's
    split: ``random_split`` 80/20 with a generator seeded ``split_seed`` (42) over the images
    sorted by path (ZSCL's order is the file system's; see the module docstring). With
    ``partition=N`` (1..10) the official ``Training_0N.txt`` / ``Testing_0N.txt`` instead."""
    if partition is not None:
        check_option_choice("sun397", "partition", partition, tuple(range(1, 11)))
        if split_seed is not None:
            raise ConfigError(f"sun397: options partition={partition} and split_seed={split_seed} are both set; "
                              "split_seed seeds ZSCL's 80/20 split, which an official partition replaces: give one")
    seed, _ = check_split_options("sun397", ZSCL_SPLIT_SEED if split_seed is None else split_seed, 0.2)
    root = need_root("sun397", root, _SUN_LAYOUT, can_download=False)
    base = locate(root, ("SUN397",), "ClassName.txt")
    require("sun397", root, base, ("ClassName.txt",), _SUN_LAYOUT)
    classes = shipped_classes("sun397")
    class_ids = [line for _, line in index_lines("sun397", base / "ClassName.txt")]
    check_class_ids("sun397", class_ids, classes.ids, where=str(base / "ClassName.txt"), layouts=_SUN_LAYOUT)
    if partition is None:
        paths, targets = class_images(base, class_ids, root)
        return zscl_split_sources(paths, targets, classes.names, classes.ids, seed=seed, tag=f"sun397|{base}")
    folder = partition_folder(base, root, partition)
    label = {class_id: k for k, class_id in enumerate(class_ids)}
    sources = []
    for side, prefix in (("train", "Training"), ("test", "Testing")):
        index = folder / f"{prefix}_{partition:02d}.txt"
        require("sun397", root, folder, (index.name,), _SUN_LAYOUT)
        paths, targets = [], []
        for number, line in index_lines("sun397", index):
            class_id = line.rsplit("/", 1)[0]
            if class_id not in label:
                raise DataError(f"sun397: {index} line {number} is {line!r}; expected '/<letter>/<class>/sun_*.jpg' "
                                "with a class of ClassName.txt. Fix: restore the file from Partitions.zip")
            paths.append(str(base / line.lstrip("/")))
            targets.append(label[class_id])
        check_listed("sun397", root, base, paths, index, _SUN_LAYOUT)
        sources.append(ImageFileSource(paths, targets, classes.names,
                                       identity=f"sun397|{base}|partition={partition}|{side}",
                                       class_ids=classes.ids))
    return sources[0], sources[1]
