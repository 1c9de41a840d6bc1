"""ObjectNet 1.0 (313 classes) from its official layout, with a seeded per-class split (the
dataset is a test set and defines none).

Layout (``objectnet-1.0.zip`` unpacked): ``objectnet-1.0/images/<folder>/*.png`` and
``objectnet-1.0/mappings/folder_to_objectnet_label.json`` (313 entries such as
``"bills_money": "Bills (money)"``), the map the readers of WiSE-FT and model soups use. Class
order is the sorted folder order; class names are the map's labels.

References:
    A. Barbu et al., "ObjectNet: A large-scale bias-controlled dataset for pushing the limits of
    object recognition models", NeurIPS 2019.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ...errors import DataError
from .base import DataRootError, ImageFileSource, register
from .folders import (
    check_split_options,
    class_folders,
    file_list_sha256,
    layout_error,
    list_images,
    need_root,
    report_skipped,
    seeded_split,
)

logger = logging.getLogger("alta.data.datasets")

OBJECTNET_CLASSES = 313
MAPPING = "mappings/folder_to_objectnet_label.json"
_OBJECTNET_LAYOUT = (
    "  root/objectnet-1.0/ (or root itself) with images/<folder>/*.png (313 class folders) and "
    f"{MAPPING}, as objectnet-1.0.zip unpacks;\n  alta cannot download ObjectNet: fetch it from "
    "https://objectnet.dev (it needs a licence agreement)"
)


def objectnet_base(root: Path) -> Path | None:
    """The folder holding ``images/`` and ``mappings/`` under ``root`` (``None`` if absent)."""
    for base in (root / "objectnet-1.0", root):
        if (base / "images").is_dir() and (base / MAPPING).is_file():
            return base
    return None


def read_objectnet(dataset: str, root: Path) -> tuple[Path, list[str], dict[str, str], list[list[str]]]:
    """The official layout: ``(base, folders, folder -> label map, image files per folder)``.

    Raises:
        DataRootError: no ObjectNet layout under ``root``, or class folders the map does not name.
        DataError: a map that is not a JSON object of strings.
    """
    base = objectnet_base(root)
    if base is None:
        raise layout_error(dataset, root, f"no images/ folder with {MAPPING} beside it", _OBJECTNET_LAYOUT,
                           can_download=False)
    try:
        mapping = json.loads((base / MAPPING).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{dataset}: cannot read {base / MAPPING} ({err}); expected ObjectNet's JSON map of class "
                        f"folders to labels") from err
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                for k, v in mapping.items()):
        raise DataError(f"{dataset}: {base / MAPPING} must map every class folder to its label (a JSON object of "
                        f"strings), got {type(mapping).__name__}")
    folders = class_folders(base / "images")
    unknown = [f for f in folders if f not in mapping]
    if unknown:
        raise DataRootError(f"{dataset}: {len(unknown)} folder(s) of {str(base / 'images')!r} are not in {MAPPING}, "
                            f"e.g. {unknown[:5]}; expected ObjectNet's class folders (air_freshener, ...)")
    if len(folders) != len(mapping):
        logger.warning("%s: %s holds %d of the %d ObjectNet class folders", dataset, base / "images", len(folders),
                       len(mapping))
    skipped: list[tuple[str, str]] = []
    files = [list_images(base / "images" / f, skipped) for f in folders]
    report_skipped(dataset, base / "images", skipped, kept=sum(len(f) for f in files))
    return base, folders, mapping, files


def seeded_sources(dataset: str, base: Path, files: list[list[str]], folders: list[str], names: list[str], *,
                   split_seed: int, test_fraction: float) -> tuple[ImageFileSource, ImageFileSource]:
    """A seeded per-class split of ``files`` (one list per class) as (train, test) sources."""
    train_p, train_t, test_p, test_t = seeded_split(dataset, files, folders, seed=split_seed,
                                                     test_fraction=test_fraction)
    tag = f"{dataset}|{base}|seed={split_seed}|test={test_fraction}"
    train = ImageFileSource(train_p, train_t, names, identity=f"{tag}|train", class_ids=folders)
    test = ImageFileSource(test_p, test_t, names, identity=f"{tag}|test", class_ids=folders)
    train.split_info = test.split_info = {
        "kind": "seeded", "name": f"{round(100 * (1 - test_fraction))}/{round(100 * test_fraction)} per class, "
                                  f"split_seed={split_seed}", "num_train": len(train_p), "num_test": len(test_p),
        "sha256": file_list_sha256(train, test, base)}
    return train, test


@register("objectnet", None, "ObjectNet 1.0, 313 classes, seeded 80/20 split per class",
          options=("split_seed", "test_fraction"))
def _load_objectnet(root: Path | None, *, download: bool, split_seed: int = 0, test_fraction: float = 0.2):
    """ObjectNet 1.0 (Barbu et al., NeurIPS 2019), every class split 80/20 with ``split_seed``."""
    split_seed, test_fraction = check_split_options("objectnet", split_seed, test_fraction)
    root = need_root("objectnet", root, _OBJECTNET_LAYOUT, can_download=False)
    base, folders, mapping, files = read_objectnet("objectnet", root)
    names = [mapping[f] for f in folders]
    return seeded_sources("objectnet", base, files, folders, names, split_seed=split_seed,
                          test_fraction=test_fraction)
