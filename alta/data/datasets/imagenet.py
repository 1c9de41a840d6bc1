"""ILSVRC-2012 train/val folders restricted to a class list (ImageNet-100 and other subsets).

References:
    O. Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", IJCV 2015.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Sequence

from ...errors import DataError
from ..splits import read_name_map
from .base import DataRootError, ImageFileSource, register
from .folders import check_path_option, class_folders, folder_split, layout_error, need_root, read_index_text

logger = logging.getLogger("alta.data.datasets")



WNID_RE = re.compile(r"n\d{8}")
_IMAGENET_LAYOUT = (
    "  root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (ILSVRC-2012 with the validation images "
    "sorted into class folders), or the Kaggle ILSVRC layout root/ILSVRC/Data/CLS-LOC/{train,val}/ "
    "with val/ flat and LOC_val_solution.csv beside it;\n  class_list: a file with one wnid per line "
    "(e.g. ImageNet-100's 100 wnids) or a DyTox/PODNet split file ('train/<wnid>/<file> <label>' "
    "lines); readable names from LOC_synset_mapping.txt or words.txt when found in or above root"
)


def read_class_list(path: str | os.PathLike, dataset: str) -> list[str]:
    """WordNet ids of a class-list file, in label order."""
    check_path_option(dataset, "class_list", path)
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{dataset}: class_list={os.fspath(path)!r} is not a file; expected one wnid per line")
    plain: list[str] = []
    labelled: dict[str, int] = {}
    for number, line in enumerate(read_index_text(dataset, file).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens = line.split()
        found = WNID_RE.search(tokens[0])
        if found is None:
            raise DataError(
                f"{dataset}: class_list {str(file)!r} line {number} is {line.strip()!r}; expected a "
                "WordNet id (n01440764) or a 'train/<wnid>/<file> <label>' line"
            )
        if "/" in tokens[0] and len(tokens) >= 2 and tokens[1].isdigit():
            previous = labelled.setdefault(found.group(0), int(tokens[1]))
            if previous != int(tokens[1]):
                raise DataError(f"{dataset}: class_list {str(file)!r} gives {found.group(0)} labels "
                                f"{previous} and {tokens[1]}; expected one label per class")
        elif found.group(0) not in plain:
            plain.append(found.group(0))
    if labelled:
        return sorted(labelled, key=lambda w: (labelled[w], w))
    return sorted(plain)


def synset_names(root: Path) -> dict[str, str] | None:
    """wnid -> readable name from ``LOC_synset_mapping.txt`` (space) or ``words.txt`` (tab)
    in ``root`` or up to three folders above it."""
    for folder in (root, *list(root.parents)[:3]):
        mapping_file = folder / "LOC_synset_mapping.txt"
        if mapping_file.is_file():
            names = {}
            for line in read_index_text("imagenet-subset", mapping_file).splitlines():
                wnid, _, text = line.strip().partition(" ")
                if wnid:
                    names[wnid] = text.split(",")[0].strip()
            return names
        if (folder / "words.txt").is_file():

            return read_name_map(folder / "words.txt")
    return None


@register("imagenet-subset", None, "ILSVRC-2012 train/val folders restricted to a class list (ImageNet-100)",
           options=("class_list",))
def _load_imagenet_subset(root: Path | None, *, download: bool, class_list: str | os.PathLike | None = None):
    """ImageNet (ILSVRC-2012) or a subset of its classes, e.g. ImageNet-100 (PODNet, DyTox,
    PyCIL): the wnids of ``class_list`` (all of ``train/`` without one), labels in sorted wnid
    order (as torchvision's ImageFolder on the subset) or in the labels of a split file."""
    if class_list is not None:
        check_path_option("imagenet-subset", "class_list", class_list)
    root = need_root("imagenet-subset", root, _IMAGENET_LAYOUT, can_download=False)
    for base in (root, root / "ILSVRC" / "Data" / "CLS-LOC", root / "Data" / "CLS-LOC"):
        if (base / "train").is_dir() and (base / "val").is_dir():
            break
    else:
        raise layout_error("imagenet-subset", root, "no train/ and val/ folders", _IMAGENET_LAYOUT,
                            can_download=False)
    available = class_folders(base / "train")
    wnids = read_class_list(class_list, "imagenet-subset") if class_list is not None else available
    missing = sorted(set(wnids) - set(available))
    if not wnids or missing:
        raise DataRootError(
            f"imagenet-subset: {str(base / 'train')!r} has no folder for {len(missing)} class(es) of the "
            f"class list, e.g. {missing[:5]}; expected one train/<wnid>/ folder per class.\n"
            f"Layouts:\n{_IMAGENET_LAYOUT}"
        )
    known = synset_names(base) or {}
    names = [known.get(w) or w for w in wnids]
    tag = f"imagenet-subset|{base}|classes={digest(wnids)}"
    train = folder_split(base / "train", wnids, identity=f"{tag}|train", class_names=names,
                          dataset="imagenet-subset")
    if all((base / "val" / w).is_dir() for w in wnids):
        test = folder_split(base / "val", wnids, identity=f"{tag}|val", class_names=names,
                             dataset="imagenet-subset")
        return train, test
    solution = next((p for p in (base / "LOC_val_solution.csv", *[q / "LOC_val_solution.csv" for q in list(base.parents)[:3]])
                     if p.is_file()), None)
    if solution is None:
        raise layout_error("imagenet-subset", root, "val/ has no <wnid>/ folders and no LOC_val_solution.csv "
                            "was found", _IMAGENET_LAYOUT, can_download=False)
    label = {w: k for k, w in enumerate(wnids)}
    paths, targets = [], []
    for line in read_index_text("imagenet-subset", solution).splitlines()[1:]:
        image_id, _, prediction = line.partition(",")
        wnid = prediction.split(" ")[0] if prediction else ""
        if wnid in label:
            paths.append(str(base / "val" / f"{image_id}.JPEG"))
            targets.append(label[wnid])
    absent = sorted(set(wnids) - {wnids[t] for t in targets})
    if absent:
        raise DataError(f"imagenet-subset: {solution} lists no validation image for {absent[:5]}; every "
                        "class needs test images")
    return train, ImageFileSource(paths, targets, names, identity=f"{tag}|val", class_ids=wnids)


def digest(items: Sequence[str]) -> str:
    """Short SHA-256 digest of a list of strings (keys a class subset in cache identities)."""
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]
