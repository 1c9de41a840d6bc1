"""EuroSAT RGB (10 land-use classes, 27,000 images) with ZSCL's 80/20 split seeded 42.

EuroSAT has no official split. ZSCL splits the whole dataset (torchvision's ``ImageFolder``
order: sorted class folders, sorted files) with ``random_split`` 80/20 and
``torch.Generator().manual_seed(42)``; alta draws the same permutation over the same order, so
its train and test sets are ZSCL's (21,600 / 5,400 images on the full dataset).

References:
    P. Helber et al., "EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land
    Cover Classification", IEEE JSTARS 2019.
    Z. Zheng et al. (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``EuroSAT``, ``ClassificationDataset.split_dataset``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import register
from .folders import (
    ZSCL_SPLIT_SEED,
    check_split_options,
    class_folders,
    layout_error,
    list_images,
    locate,
    need_root,
    report_skipped,
    zscl_split_sources,
)
from .names import check_class_ids, shipped_classes

logger = logging.getLogger("alta.data.datasets")


_EUROSAT_LAYOUT = (
    "  root/eurosat/2750/<class>/<class>_N.jpg (torchvision's layout; root may also be 2750/ itself, or the "
    "EuroSAT_RGB/ folder of the newer zip) with the ten class folders AnnualCrop, Forest, HerbaceousVegetation, "
    "Highway, Industrial, Pasture, PermanentCrop, Residential, River, SeaLake (the RGB JPEG version, not the "
    "13-band TIFFs).\n  alta cannot download EuroSAT: fetch https://madm.dfki.de/files/sentinel/EuroSAT.zip"
)
@register("eurosat", None, "EuroSAT RGB, 10 classes, ZSCL's 80/20 split seeded 42 (as ZSCL's MTIL)",
          options=("split_seed",))
def _load_eurosat(root: Path | None, *, download: bool, split_seed: int = ZSCL_SPLIT_SEED):
    """EuroSAT RGB (Helber et al., 2019): the ten class folders in sorted order, ZSCL's hand-written
    class names (``alta/data/class_names/eurosat.tsv``), and ZSCL's split: ``random_split`` 80/20
    over all images with a generator seeded ``split_seed`` (42, ZSCL's; another seed gives
    another split that no paper used)."""
    split_seed, _ = check_split_options("eurosat", split_seed, 0.2)
    root = need_root("eurosat", root, _EUROSAT_LAYOUT, can_download=False)
    base = locate(root, ("eurosat/2750", "2750", "EuroSAT_RGB", "eurosat/EuroSAT_RGB", "eurosat"), "AnnualCrop")
    classes = shipped_classes("eurosat")
    if not any((base / folder).is_dir() for folder in classes.ids):
        raise layout_error("eurosat", root, "no EuroSAT class folder found", _EUROSAT_LAYOUT, can_download=False)
    folders = class_folders(base)
    check_class_ids("eurosat", folders, classes.ids, where=str(base), layouts=_EUROSAT_LAYOUT)
    skipped: list[tuple[str, str]] = []
    files = [list_images(base / folder, skipped) for folder in folders]
    report_skipped("eurosat", base, skipped, kept=sum(map(len, files)))
    empty = [str(base / folder) for folder, found in zip(folders, files) if not found]
    if empty:
        raise layout_error("eurosat", root, f"the class folder(s) {', '.join(empty)} hold no images", _EUROSAT_LAYOUT,
                           can_download=False, base=base)
    paths = [path for found in files for path in found]
    targets = [label for label, found in enumerate(files) for _ in found]
    return zscl_split_sources(paths, targets, classes.names, classes.ids, seed=split_seed, tag=f"eurosat|{base}")
