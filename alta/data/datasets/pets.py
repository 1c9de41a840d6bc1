"""Oxford-IIIT Pet (37 breeds) with its official split (``trainval`` / ``test``), as ZSCL's MTIL
uses it.

References:
    O. M. Parkhi et al., "Cats and Dogs", CVPR 2012.
    Z. Zheng et al. (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``OxfordPet``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import DataError
from .base import ImageFileSource, register
from .folders import check_listed, index_lines, locate, need_root, require
from .names import check_class_ids, shipped_classes

logger = logging.getLogger("alta.data.datasets")


_PETS_LAYOUT = (
    "  root/oxford-iiit-pet/ (torchvision's layout; root may be that folder itself) with images/<image id>.jpg "
    "(images.tar.gz) and annotations/trainval.txt, annotations/test.txt ('<image id> <class id> <species> "
    "<breed id>' lines; annotations.tar.gz).\n  alta cannot download Oxford-IIIT Pet: fetch images.tar.gz and "
    "annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/"
)


@register("oxford-pet", None, "Oxford-IIIT Pet, 37 breeds, official trainval / test split (as ZSCL's MTIL)",
          aliases=("oxford-pets", "oxford-iiit-pet"))
def _load_oxford_pet(root: Path | None, *, download: bool):
    """Oxford-IIIT Pet (Parkhi et al., CVPR 2012): labels = class id - 1 of the annotation files,
    names as torchvision's ``OxfordIIITPet`` spells them and ZSCL feeds CLIP
    (``alta/data/class_names/oxford-pet.tsv``: "American Pit Bull Terrier"); the official
    ``trainval`` (3,680 images) for training and ``test`` (3,669)."""
    root = need_root("oxford-pet", root, _PETS_LAYOUT, can_download=False)
    base = locate(root, ("oxford-iiit-pet",), "annotations")
    require("oxford-pet", root, base, ("images", "annotations/trainval.txt", "annotations/test.txt"), _PETS_LAYOUT)
    classes = shipped_classes("oxford-pet")
    sources = []
    for side, split in (("train", "trainval"), ("test", "test")):
        index = base / "annotations" / f"{split}.txt"
        paths, targets = [], []
        breeds: dict[int, str] = {}
        for number, line in index_lines("oxford-pet", index):
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(classes.ids):
                raise DataError(f"oxford-pet: {index} line {number} is {line!r}; expected '<image id> <class id> "
                                f"<species> <breed id>' with a class id in 1..{len(classes.ids)}. Fix: restore the "
                                "file from annotations.tar.gz")
            label = int(fields[1]) - 1
            breeds.setdefault(label, fields[0].rsplit("_", 1)[0])  # Abyssinian_100 -> Abyssinian
            paths.append(str(base / "images" / f"{fields[0]}.jpg"))
            targets.append(label)
        found = [breeds[label] for label in sorted(breeds)]
        check_class_ids("oxford-pet", found, classes.ids, where=str(index), layouts=_PETS_LAYOUT)
        check_listed("oxford-pet", root, base, paths, index, _PETS_LAYOUT)
        sources.append(ImageFileSource(paths, targets, classes.names, identity=f"oxford-pet|{base}|{split}|{side}",
                                       class_ids=classes.ids))
    return sources[0], sources[1]
