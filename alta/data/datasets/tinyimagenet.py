"""Tiny-ImageNet-200 (Seq-TinyImageNet, 10 x 20) in its official layout; test = the official val split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from ...errors import DataError
from .base import ImageFileSource, register
from .folders import check_listed, layout_error, list_images, need_root, read_index_text, report_skipped

logger = logging.getLogger("alta.data.datasets")



_TINY_LAYOUT = (
    "  tiny-imagenet-200/wnids.txt, words.txt, train/<wnid>/images/*.JPEG,\n"
    "  val/images/*.JPEG and val/val_annotations.txt (root may be tiny-imagenet-200 itself or its "
    "parent).\n  alta cannot download Tiny-ImageNet: fetch "
    "http://cs231n.stanford.edu/tiny-imagenet-200.zip yourself and unzip it"
)


def _tiny_names(words: Path, wnids: Sequence[str]) -> list[str]:
    wanted = set(wnids)
    names: dict[str, str] = {}
    for line in read_index_text("seq-tinyimagenet", words).splitlines():
        wnid, _, text = line.partition("\t")
        if wnid in wanted:
            names[wnid] = text.split(",")[0].strip()
    missing = [w for w in wnids if not names.get(w)]
    if missing:
        raise DataError(
            f"seq-tinyimagenet: {words} has no name for wnids {missing[:5]}; expected one "
            "'wnid<TAB>name, synonym, ...' line per wnid of wnids.txt"
        )
    return [names[w] for w in wnids]


@register("seq-tinyimagenet", 20, "Tiny-ImageNet-200, 10 experiences x 20 classes, wnids.txt order")
def _load_tinyimagenet(root: Path | None, *, download: bool):
    root = need_root("seq-tinyimagenet", root, _TINY_LAYOUT, can_download=False)
    if not (root / "wnids.txt").is_file() and (root / "tiny-imagenet-200" / "wnids.txt").is_file():
        root = root / "tiny-imagenet-200"
    needed = ["wnids.txt", "words.txt", "train", "val/images", "val/val_annotations.txt"]
    absent = [n for n in needed if not (root / n).exists()]
    if absent:
        extra = " (download=True is not supported for Tiny-ImageNet)" if download else ""
        raise layout_error("seq-tinyimagenet", root, f"missing {', '.join(absent)}{extra}",
                            _TINY_LAYOUT, can_download=False)
    wnids = read_index_text("seq-tinyimagenet", root / "wnids.txt").split()
    if len(set(wnids)) != len(wnids):
        raise DataError(f"seq-tinyimagenet: {root / 'wnids.txt'} lists a wnid twice")
    names = _tiny_names(root / "words.txt", wnids)
    label = {w: k for k, w in enumerate(wnids)}

    paths: list[str] = []
    targets: list[int] = []
    skipped: list[tuple[str, str]] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise layout_error("seq-tinyimagenet", root, f"missing {folder}", _TINY_LAYOUT,
                                can_download=False)
        files = list_images(folder, skipped)
        if not files:
            raise DataError(
                f"seq-tinyimagenet: class {wnid} ({names[label[wnid]]!r}) has no training images: "
                f"{str(folder)!r} holds no image files. Every class needs training images. Fix: "
                "restore that folder from tiny-imagenet-200.zip"
            )
        paths.extend(files)
        targets.extend([label[wnid]] * len(files))
    report_skipped("seq-tinyimagenet", root / "train", skipped, kept=len(paths))
    train = ImageFileSource(paths, targets, names, identity=f"seq-tinyimagenet|{root}|train",
                            class_ids=wnids)

    val_paths: list[str] = []
    val_targets: list[int] = []
    annotations = root / "val" / "val_annotations.txt"
    for number, line in enumerate(read_index_text("seq-tinyimagenet", annotations).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label:
            raise DataError(
                f"seq-tinyimagenet: {annotations} line {number} is {line.strip()!r}; expected "
                "'file<TAB>wnid<TAB>box...' with a wnid listed in wnids.txt"
            )
        val_paths.append(str(root / "val" / "images" / fields[0]))
        val_targets.append(label[fields[1]])
    absent = sorted(set(wnids) - {wnids[t] for t in val_targets}, key=label.get)
    if absent:
        raise DataError(
            f"seq-tinyimagenet: {len(absent)} class(es) have no validation (test) images: "
            f"{annotations} lists no file for {', '.join(f'{w} ({names[label[w]]!r})' for w in absent[:5])}"
            f"{' ...' if len(absent) > 5 else ''}. Every class needs test images (a class without "
            "them would be scored on nothing). Fix: restore val/ from tiny-imagenet-200.zip"
        )
    check_listed("seq-tinyimagenet", root, root, val_paths, annotations, _TINY_LAYOUT)
    test = ImageFileSource(val_paths, val_targets, names, identity=f"seq-tinyimagenet|{root}|val",
                           class_ids=wnids)
    return train, test
