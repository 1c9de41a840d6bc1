"""Caltech-101 (101 classes, background excluded) with a seeded or listed per-class split.

References:
    L. Fei-Fei et al., "Learning Generative Visual Models from Few Training Examples", CVPR
    Workshops 2004.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from ...classnames import readable
from ...errors import ConfigError, DataError
from .base import ImageFileSource, register
from .folders import (
    ZSCL_SPLIT_SEED,
    check_path_option,
    check_split_options,
    class_folders,
    layout_error,
    list_images,
    need_root,
    read_index_text,
    report_skipped,
    seeded_split,
    zscl_split_sources,
)
from .names import check_class_ids, shipped_classes

logger = logging.getLogger("alta.data.datasets")



_CALTECH_LAYOUT = (
    "  root/101_ObjectCategories/<class>/image_*.jpg (as 101_ObjectCategories.tar.gz unpacks; root "
    "may be that folder itself, or torchvision's root/caltech101/101_ObjectCategories/)"
)
# The class names CoOp and the CLIP continual-learning code give the four plural folder names.
_CALTECH_NAMES = {"airplanes": "airplane", "Faces": "face", "Faces_easy": "face easy",
                  "Leopards": "leopard", "Motorbikes": "motorbike"}
_CALTECH_BACKGROUND = "BACKGROUND_Google"


def caltech_base(dataset: str, root: Path) -> Path:
    """The ``101_ObjectCategories`` folder under ``root`` (or ``root`` itself holding the class folders).

    Raises:
        DataRootError: none found.
    """
    for base in (root / "101_ObjectCategories", root / "caltech101" / "101_ObjectCategories", root):
        if base.is_dir() and (base.name == "101_ObjectCategories" or (base / "airplanes").is_dir()):
            return base
    raise layout_error(dataset, root, "no 101_ObjectCategories folder", _CALTECH_LAYOUT, can_download=False)


def read_split_list(path: str | os.PathLike, base: Path, folders: Sequence[str], what: str
                     ) -> tuple[list[str], list[int]]:
    """Image paths of a user split file (one path per line, relative to ``base``), labelled by
    their class folder."""
    check_path_option("caltech101", what, path)
    label = {f: k for k, f in enumerate(folders)}
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"caltech101: {what}={os.fspath(path)!r} is not a file; expected one image path per line")
    paths, targets = [], []
    for number, line in enumerate(read_index_text("caltech101", file).splitlines(), start=1):
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


@register("caltech101", None, "Caltech-101, 101 classes (background excluded), seeded per-class split",
           options=("split_seed", "test_fraction", "train_per_class", "train_list", "test_list",
                    "include_background"))
def _load_caltech101(root: Path | None, *, download: bool, split_seed: int = 0, test_fraction: float = 0.2,
                     train_per_class: int | None = None, train_list: str | os.PathLike | None = None,
                     test_list: str | os.PathLike | None = None, include_background: bool = False):
    """Caltech-101 (Fei-Fei et al., 2004): 101 object classes in sorted folder order (as
    torchvision's ``Caltech101``), ``BACKGROUND_Google`` left out unless ``include_background``.
    There is no official split: each class is split with ``split_seed`` (``test_fraction`` of its
    images, or all but ``train_per_class``), or ``train_list``/``test_list`` files give it."""
    split_seed, test_fraction = check_split_options("caltech101", split_seed, test_fraction)
    if train_per_class is not None and (isinstance(train_per_class, bool) or not isinstance(train_per_class, int)
                                        or train_per_class < 1):
        raise ConfigError(f"caltech101: train_per_class must be an int >= 1 or None, got {train_per_class!r}")
    if not isinstance(include_background, bool):
        raise ConfigError(f"caltech101: include_background must be True or False, got {include_background!r}")
    if (train_list is None) != (test_list is None):
        raise ConfigError("caltech101: give both train_list and test_list (user split files), or neither")
    root = need_root("caltech101", root, _CALTECH_LAYOUT, can_download=False)
    base = caltech_base("caltech101", root)
    folders = [f for f in class_folders(base) if include_background or f != _CALTECH_BACKGROUND]
    if not folders:
        raise layout_error("caltech101", root, f"{base} holds no class folders", _CALTECH_LAYOUT,
                            can_download=False)
    names = [_CALTECH_NAMES.get(f, readable(f)) for f in folders]
    tag = f"caltech101|{base}|background={bool(include_background)}"
    if train_list is not None and test_list is not None:
        train_p, train_t = read_split_list(train_list, base, folders, "train_list")
        test_p, test_t = read_split_list(test_list, base, folders, "test_list")
        overlap = set(train_p) & set(test_p)
        if overlap:
            raise DataError(
                f"caltech101: {len(overlap)} image(s) are in both train_list and test_list, e.g. "
                f"{sorted(overlap)[:3]}; expected disjoint split files"
            )
        tag += f"|lists={Path(train_list).resolve()},{Path(test_list).resolve()}"
    else:
        skipped: list[tuple[str, str]] = []
        files = [list_images(base / f, skipped) for f in folders]
        report_skipped("caltech101", base, skipped, kept=sum(len(f) for f in files))
        train_p, train_t, test_p, test_t = seeded_split(
            "caltech101", files, folders, seed=split_seed, test_fraction=test_fraction,
            train_per_class=train_per_class)
        tag += f"|seed={split_seed}|" + (f"train={train_per_class}" if train_per_class else f"test={test_fraction}")
    return (
        ImageFileSource(train_p, train_t, names, identity=f"{tag}|train", class_ids=folders),
        ImageFileSource(test_p, test_t, names, identity=f"{tag}|test", class_ids=folders),
    )


@register("caltech101-zscl", None, "Caltech-101 as ZSCL's MTIL: 101 classes, ZSCL's names, 80/20 split seeded 42",
          options=("split_seed",), aliases=("caltech101-mtil",))
def _load_caltech101_zscl(root: Path | None, *, download: bool, split_seed: int = ZSCL_SPLIT_SEED):
    """Caltech-101 as ZSCL (Zheng et al., ICCV 2023) reads it for MTIL: torchvision's
    ``Caltech101`` classes (the sorted folders without ``BACKGROUND_Google``; ``Faces`` and
    ``Faces_easy`` both kept, 101 classes), ZSCL's hand-written class names
    (``alta/data/class_names/caltech101-zscl.tsv``: ``Faces`` -> "off-center face", ``car_side``
    -> "side of a car") and ZSCL's split: ``random_split`` 80/20 of all images, generator seeded
    ``split_seed`` (42, ZSCL's), over torchvision's sample order (classes in order,
    ``image_0001.jpg`` ... within each; alta lists the image files of each folder, sorted, which is
    the same order on the official archive). ``caltech101`` is the same images with alta's
    per-class split and CoOp's names."""
    split_seed, _ = check_split_options("caltech101-zscl", split_seed, 0.2)
    root = need_root("caltech101-zscl", root, _CALTECH_LAYOUT, can_download=False)
    base = caltech_base("caltech101-zscl", root)
    classes = shipped_classes("caltech101-zscl")
    folders = [f for f in class_folders(base) if f != _CALTECH_BACKGROUND]
    check_class_ids("caltech101-zscl", folders, classes.ids, where=str(base), layouts=_CALTECH_LAYOUT)
    skipped: list[tuple[str, str]] = []
    files = [list_images(base / folder, skipped) for folder in folders]
    report_skipped("caltech101-zscl", base, skipped, kept=sum(map(len, files)))
    empty = [str(base / folder) for folder, found in zip(folders, files) if not found]
    if empty:
        raise layout_error("caltech101-zscl", root, f"the class folder(s) {', '.join(empty)} hold no images",
                           _CALTECH_LAYOUT, can_download=False, base=base)
    paths = [path for found in files for path in found]
    targets = [label for label, found in enumerate(files) for _ in found]
    return zscl_split_sources(paths, targets, classes.names, classes.ids, seed=split_seed,
                              tag=f"caltech101-zscl|{base}")
