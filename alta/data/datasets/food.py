"""Food-101 (101 classes, 101,000 images) with its official split (``meta/train.txt`` /
``meta/test.txt``), as ZSCL's MTIL uses it.

References:
    L. Bossard et al., "Food-101 -- Mining Discriminative Components with Random Forests", ECCV 2014.
    Z. Zheng et al. (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``Food``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ...errors import DataError
from .base import ImageFileSource, register
from .folders import check_listed, index_lines, locate, need_root, require
from .names import check_class_ids, shipped_classes

logger = logging.getLogger("alta.data.datasets")


_FOOD_LAYOUT = (
    "  root/food-101/ (torchvision's layout; root may be that folder itself) with images/<class>/<id>.jpg and "
    "meta/train.txt, meta/test.txt ('<class>/<id>' lines; meta/train.json and test.json are read when the .txt "
    "files are absent) and meta/classes.txt, as food-101.tar.gz unpacks.\n  alta cannot download Food-101: "
    "fetch http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz"
)


def food_split_file(base: Path, split: str) -> Path:
    """``meta/<split>.txt``, or ``meta/<split>.json`` (the file torchvision reads) when only it is there."""
    text_file, json_file = base / "meta" / f"{split}.txt", base / "meta" / f"{split}.json"
    return json_file if json_file.is_file() and not text_file.is_file() else text_file


def read_food_split(index: Path) -> list[tuple[int, str]]:
    """``(line number, "<class>/<id>")`` of a split file (line 0 for the entries of a ``.json``
    file, ``{class: ["<class>/<id>", ...]}``)."""
    if index.suffix != ".json":
        return index_lines("food101", index)
    try:
        content = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"food101: cannot read {index} ({type(err).__name__}: {err}). Fix: restore it "
                        "from food-101.tar.gz") from err
    if not isinstance(content, dict):
        raise DataError(f"food101: {index} must map each class to its '<class>/<id>' entries. Fix: restore it")
    return [(0, str(entry)) for entries in content.values() for entry in entries]


@register("food101", None, "Food-101, 101 classes, official split (meta/train.txt / test.txt, as ZSCL's MTIL)",
          aliases=("food-101",))
def _load_food101(root: Path | None, *, download: bool):
    """Food-101 (Bossard et al., ECCV 2014): 750 training and 250 test images per class (the
    official ``meta/`` lists); labels in Python's sorted order of the class ids (as torchvision's
    ``Food101``, which ZSCL reads), names with ``_`` as spaces
    (``alta/data/class_names/food101.tsv``)."""
    root = need_root("food101", root, _FOOD_LAYOUT, can_download=False)
    base = locate(root, ("food-101",), "meta")
    indexes = {split: food_split_file(base, split) for split in ("train", "test")}
    require("food101", root, base, ("images", *[str(i.relative_to(base)) for i in indexes.values()]), _FOOD_LAYOUT)
    classes = shipped_classes("food101")
    label = {c: k for k, c in enumerate(classes.ids)}
    sources = []
    for split, index in indexes.items():
        paths, targets = [], []
        for number, entry in read_food_split(index):
            folder, _, image_id = entry.partition("/")
            if folder not in label or not image_id:
                raise DataError(f"food101: {index} {'line ' + str(number) + ' ' if number else ''}holds {entry!r}; "
                                "expected '<class>/<id>' with one of the 101 Food-101 classes. Fix: restore the file "
                                "from food-101.tar.gz")
            paths.append(str(base / "images" / folder / f"{image_id}.jpg"))
            targets.append(label[folder])
        found = sorted({classes.ids[t] for t in targets})
        check_class_ids("food101", found, classes.ids, where=str(index), layouts=_FOOD_LAYOUT)
        check_listed("food101", root, base, paths, index, _FOOD_LAYOUT)
        sources.append(ImageFileSource(paths, targets, classes.names, identity=f"food101|{base}|{split}",
                                       class_ids=classes.ids))
    return sources[0], sources[1]
