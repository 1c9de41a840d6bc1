"""CUB-200-2011 birds with its official train/test split.

References:
    C. Wah et al., "The Caltech-UCSD Birds-200-2011 Dataset", CNS-TR-2011-001, 2011.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ...classnames import readable
from ...errors import DataError
from ...io import file_sha256
from .base import ImageFileSource, register
from .folders import check_listed, layout_error, need_root, read_index_text

logger = logging.getLogger("alta.data.datasets")



_CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
_CUB_LAYOUT = (
    "  root/CUB_200_2011/ (or root itself) with images.txt, image_class_labels.txt, "
    "train_test_split.txt, classes.txt and images/<NNN.Class_name>/*.jpg, as CUB_200_2011.tgz "
    "unpacks.\n  alta cannot download CUB-200-2011: fetch it from "
    "https://www.vision.caltech.edu/datasets/cub_200_2011/"
)


def read_index(path: Path, dataset: str, fields: int) -> dict[str, list[str]]:
    """``id field...`` lines of a CUB index file, keyed by id."""
    rows: dict[str, list[str]] = {}
    for number, line in enumerate(read_index_text(dataset, path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != fields + 1 or parts[0] in rows or not parts[0].isdigit():
            raise DataError(
                f"{dataset}: {path} line {number} is {line.strip()!r}; expected one "
                f"'<id> {' '.join(['<value>'] * fields)}' line per id (a positive integer), each id once"
            )
        rows[parts[0]] = parts[1:]
    return rows


@register("cub200", 20, "CUB-200-2011 birds, 200 classes, official train/test split, 10 x 20")
def _load_cub200(root: Path | None, *, download: bool):
    """CUB-200-2011 (Wah et al., 2011) from its index files: ``classes.txt`` gives the label
    order and the names (``001.Black_footed_Albatross`` -> "Black footed Albatross"),
    ``train_test_split.txt`` the official split."""
    root = need_root("cub200", root, _CUB_LAYOUT, can_download=False)
    found = read_cub200("cub200", root)
    assert found is not None
    return found[1], found[2]


def read_cub200(dataset: str, root: Path, *, required: bool = True):
    """``(base, train, test)`` of CUB-200-2011's official layout under ``root`` (``None`` when it is
    absent and not ``required``).

    Raises:
        DataRootError: (``required``) index files or images missing; DataError: damaged index files.
    """
    base = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
    absent = [f for f in (*_CUB_FILES, "images") if not (base / f).exists()]
    if absent:
        if not required:
            return None
        raise layout_error(dataset, root, f"missing {', '.join(absent)}", _CUB_LAYOUT, can_download=False)
    classes = read_index(base / "classes.txt", dataset, 1)
    numbers = sorted(int(k) for k in classes)
    if numbers != list(range(1, len(numbers) + 1)):
        raise DataError(f"{dataset}: {base / 'classes.txt'} must number its classes 1..K, got {numbers[:5]}...")
    folders = [classes[str(k)][0] for k in numbers]
    names = [readable(re.sub(r"^\d+\.", "", f)) for f in folders]
    images = read_index(base / "images.txt", dataset, 1)
    labels = read_index(base / "image_class_labels.txt", dataset, 1)
    is_train = read_index(base / "train_test_split.txt", dataset, 1)
    if not (images.keys() == labels.keys() == is_train.keys()):
        raise DataError(
            f"{dataset}: images.txt, image_class_labels.txt and train_test_split.txt of {str(base)!r} list "
            f"different image ids ({len(images)}, {len(labels)}, {len(is_train)} ids); expected the same ids"
        )
    sides: dict[bool, tuple[list[str], list[int]]] = {True: ([], []), False: ([], [])}
    for image_id in sorted(images, key=int):
        label = int(labels[image_id][0]) - 1 if labels[image_id][0].isdigit() else -1
        if not 0 <= label < len(folders):
            raise DataError(f"{dataset}: image_class_labels.txt gives image {image_id} the label "
                            f"{labels[image_id][0]!r}, outside 1..{len(folders)} (the class ids of classes.txt). "
                            "Fix: restore the file from CUB_200_2011.tgz")
        flag = is_train[image_id][0]
        if flag not in ("0", "1"):
            raise DataError(f"{dataset}: train_test_split.txt gives image {image_id} the flag {flag!r}; expected 0 or 1")
        paths, targets = sides[flag == "1"]
        paths.append(str(base / "images" / images[image_id][0]))
        targets.append(label)
    check_listed(dataset, root, base, [p for paths, _ in sides.values() for p in paths], base / "images.txt",
                 _CUB_LAYOUT)
    train = ImageFileSource(*sides[True], names, identity=f"{dataset}|{base}|train", class_ids=folders)
    test = ImageFileSource(*sides[False], names, identity=f"{dataset}|{base}|test", class_ids=folders)
    train.split_info = test.split_info = {"kind": "official", "name": "train_test_split.txt",
                                          "sha256": file_sha256(base / "train_test_split.txt")}
    return base, train, test


