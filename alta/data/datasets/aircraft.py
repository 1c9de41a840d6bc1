"""FGVC-Aircraft (100 variants) from its official index files, with the train/test split ZSCL's
MTIL uses (``train``, not ``trainval``).

References:
    S. Maji et al., "Fine-Grained Visual Classification of Aircraft", arXiv:1306.5151, 2013.
    Z. Zheng et al., "Preventing Zero-Shot Transfer Degradation in Continual Learning of
    Vision-Language Models" (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``Aircraft``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import DataError
from .base import ImageFileSource, register
from .folders import check_listed, check_option_choice, index_lines, locate, need_root, require
from .names import check_class_ids, shipped_classes

logger = logging.getLogger("alta.data.datasets")


_AIRCRAFT_LAYOUT = (
    "  root/fgvc-aircraft-2013b/data/ (torchvision's layout; root may also be fgvc-aircraft-2013b/ or data/ "
    "itself) with variants.txt, images_variant_{train,val,trainval,test}.txt ('<image id> <variant>' lines) and "
    "images/<image id>.jpg, as fgvc-aircraft-2013b.tar.gz unpacks.\n  alta cannot download FGVC-Aircraft: fetch "
    "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"
)
AIRCRAFT_TRAIN_SPLITS = ("train", "trainval")


def read_aircraft_split(base: Path, split: str, label: dict[str, int], root: Path) -> tuple[list[str], list[int]]:
    """Image paths and labels of ``images_variant_<split>.txt`` (``<image id> <variant>`` lines;
    variants may hold spaces, as ``BAE 146-200``)."""
    index = base / f"images_variant_{split}.txt"
    paths, targets = [], []
    for number, line in index_lines("aircraft", index):
        image_id, _, variant = line.partition(" ")
        if variant not in label:
            raise DataError(
                f"aircraft: {index} line {number} is {line!r}; expected '<image id> <variant>' with a variant "
                f"listed in {base / 'variants.txt'}. Fix: restore the file from fgvc-aircraft-2013b.tar.gz"
            )
        paths.append(str(base / "images" / f"{image_id}.jpg"))
        targets.append(label[variant])
    check_listed("aircraft", root, base, paths, index, _AIRCRAFT_LAYOUT)
    return paths, targets


@register("aircraft", None, "FGVC-Aircraft, 100 variants, official train / test split (as ZSCL's MTIL)",
          options=("train_split",), aliases=("fgvc-aircraft",))
def _load_aircraft(root: Path | None, *, download: bool, train_split: str = "train"):
    """FGVC-Aircraft (Maji et al., 2013) at the variant level: labels in ``variants.txt`` order,
    names as ZSCL gives them to CLIP (``alta/data/class_names/aircraft.tsv``). ZSCL trains on the
    official ``train`` split (3,334 images) and tests on ``test`` (3,333); ``train_split="trainval"``
    trains on train + val (6,667) instead."""
    check_option_choice("aircraft", "train_split", train_split, AIRCRAFT_TRAIN_SPLITS)
    root = need_root("aircraft", root, _AIRCRAFT_LAYOUT, can_download=False)
    base = locate(root, ("fgvc-aircraft-2013b/data", "data"), "variants.txt")
    require("aircraft", root, base, ("variants.txt", f"images_variant_{train_split}.txt",
                                     "images_variant_test.txt", "images"), _AIRCRAFT_LAYOUT)
    classes = shipped_classes("aircraft")
    variants = [line for _, line in index_lines("aircraft", base / "variants.txt")]
    check_class_ids("aircraft", variants, classes.ids, where=str(base / "variants.txt"), layouts=_AIRCRAFT_LAYOUT)
    label = {variant: k for k, variant in enumerate(variants)}
    sources = []
    for side, split in (("train", train_split), ("test", "test")):
        paths, targets = read_aircraft_split(base, split, label, root)
        sources.append(ImageFileSource(paths, targets, classes.names, identity=f"aircraft|{base}|{split}|{side}",
                                       class_ids=classes.ids))
    return sources[0], sources[1]
