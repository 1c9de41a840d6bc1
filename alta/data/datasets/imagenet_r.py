"""ImageNet-R (200 classes, 30,000 renditions): no official split, so a split file (RAPF's, shipped
with alta, or your own) or a seeded 80/20 split per class.

The CLIP class-incremental papers do not agree on one split (L2P/DualPrompt draw theirs in
TFDS, CODA-Prompt with a seeded permutation, the PROOF line ships pre-split folders, RAPF and
MG-CLIP a file list), and numbers move with it. alta ships RAPF's list as
``alta/data/split_files/imagenet_r_rapf.txt`` (source and SHA-256 in ``SOURCES.json`` beside it):
``split_file="rapf"`` uses it, a path uses a file of the same format, and every run records which
split it used (:attr:`~alta.data.datasets.LabelledSource.split_info`).

References:
    D. Hendrycks et al., "The Many Faces of Robustness", ICCV 2021.
    L. Huang et al., "Class-Incremental Learning with CLIP: Adaptive Representation Adjustment and
    Parameter Fusion" (RAPF), ECCV 2024; github.com/linlany/RAPF ``imgr_split/imgr_train_test_split.txt``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Sequence

from ...errors import ConfigError, DataError
from ...io import file_sha256
from .base import IMAGE_EXTENSIONS, DataRootError, ImageFileSource, register
from .folders import (
    check_path_option,
    check_split_options,
    class_folders,
    file_list_sha256,
    find_test_dir,
    folder_split,
    folders_split_info,
    layout_error,
    list_images,
    need_root,
    read_index_text,
    report_skipped,
    seeded_split,
)
from .names import packaged_name_map

logger = logging.getLogger("alta.data.datasets")


_IMAGENET_R_LAYOUT = (
    "  (a) root/imagenet-r/<wnid>/*.jpg: the 200 WordNet-id folders as imagenet-r.tar unpacks "
    "(root may be imagenet-r itself); alta splits every class 80/20 with split_seed, or as a split "
    "file says (split_file='rapf': RAPF's list, shipped with alta; or the path of a file in its format)\n"
    "  (b) root/imagenet-r/train/<wnid>/ + test/<wnid>/ (or val/): a split you made yourself.\n"
    "  alta cannot download ImageNet-R: fetch https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"
)

#: Split files shipped with alta (``alta/data/split_files/``), by the name ``split_file=`` takes.
SPLIT_FILES = {"rapf": "imagenet_r_rapf.txt"}


@functools.lru_cache(maxsize=None)
def packaged_split_sources() -> dict[str, dict]:
    """``SOURCES.json`` of the shipped split files: file name -> where it comes from and its SHA-256."""
    text = (resources.files("alta.data") / "split_files" / "SOURCES.json").read_text(encoding="utf-8")
    return json.loads(text)


def resolve_split_file(split_file: object, *, dataset: str) -> tuple[Path, dict]:
    """The path of a split file and what a run records about it (``name``, ``sha256``, ``source``).

    Args:
        split_file: A shipped name (``"rapf"``) or the path of a file.
        dataset: For messages.

    Raises:
        ConfigError: neither a shipped name nor an existing file.
    """
    check_path_option(dataset, "split_file", split_file)
    text = os.fspath(split_file)
    if text in SPLIT_FILES:
        name = SPLIT_FILES[text]
        with resources.as_file(resources.files("alta.data") / "split_files" / name) as path:
            path = Path(path)
        known = packaged_split_sources()[name]
        return path, {"kind": "file", "name": name, "sha256": file_sha256(path), "source": known["source"],
                      "shipped_with": "alta (alta/data/split_files)"}
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{dataset}: split_file {text!r} is neither a split file shipped with alta ({', '.join(SPLIT_FILES)}) "
            f"nor an existing file; pass 'rapf' (RAPF's ImageNet-R list) or the path of a file with a line 'train', "
            f"the training images, a line 'test', the test images (paths relative to the imagenet-r folder)"
        )
    path = path.resolve()
    return path, {"kind": "file", "name": path.name, "path": str(path), "sha256": file_sha256(path)}


def read_split_file(path: Path, *, dataset: str) -> tuple[list[str], list[str], list[str]]:
    """The (training, test) relative paths of a split file in RAPF's format: a line ``train``, one
    path per line, a line ``test``, one path per line; blank lines skipped.

    Returns:
        ``(train, test, skipped)``: entries without an image extension (RAPF's list holds one,
        ``n02437616/test_img_R.py``) are left out and returned in ``skipped``.

    Raises:
        DataError: no ``train``/``test`` header, a path on both sides or twice, or an absolute path.
    """
    sides: dict[str, list[str]] = {}
    current = None
    skipped: list[str] = []
    for number, line in enumerate(read_index_text(dataset, path).splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        if entry in ("train", "test"):
            if entry in sides:
                raise DataError(f"{dataset}: split file {str(path)!r} line {number} starts the {entry!r} list a "
                                f"second time; expected one 'train' and one 'test' line")
            current = sides.setdefault(entry, [])
            continue
        if current is None:
            raise DataError(f"{dataset}: split file {str(path)!r} line {number} is {entry!r} before any 'train' "
                            f"or 'test' line; expected a line 'train', its paths, a line 'test', its paths")
        if os.path.isabs(entry) or ".." in entry.split("/"):
            raise DataError(f"{dataset}: split file {str(path)!r} line {number} is {entry!r}; expected a path "
                            f"relative to the imagenet-r folder such as n01443537/art_0.jpg")
        if not entry.lower().endswith(IMAGE_EXTENSIONS):
            skipped.append(entry)
            continue
        current.append(entry)
    if set(sides) != {"train", "test"}:
        raise DataError(f"{dataset}: split file {str(path)!r} lacks a {'train' if 'train' not in sides else 'test'!r} "
                        f"line; expected a line 'train', the training images, a line 'test', the test images")
    both = set(sides["train"]) & set(sides["test"])
    twice = len(sides["train"]) + len(sides["test"]) - len(set(sides["train"]) | set(sides["test"])) - len(both)
    if both or twice:
        raise DataError(f"{dataset}: split file {str(path)!r} lists {len(both)} image(s) on both sides (e.g. "
                        f"{sorted(both)[:3]}) and {twice} twice on one side; a split puts every image on one side once")
    return sides["train"], sides["test"], skipped


def split_file_sources(dataset: str, base: Path, folders: Sequence[str], class_names: Sequence[str],
                       split_file: object) -> tuple[ImageFileSource, ImageFileSource]:
    """The (train, test) sources of ``base/<wnid>/`` images as a split file lists them.

    Raises:
        ConfigError: an unknown split file.
        DataRootError: images the file lists that are not under ``base`` (a different copy of the
            dataset), or classes of the file that have no folder.
    """
    path, info = resolve_split_file(split_file, dataset=dataset)
    train, test, skipped = read_split_file(path, dataset=dataset)
    if skipped:
        logger.info("%s: split file %s: %d entr%s without an image extension left out (%s)", dataset, path.name,
                    len(skipped), "y" if len(skipped) == 1 else "ies", ", ".join(skipped[:3]))
    label_of = {folder: k for k, folder in enumerate(folders)}
    out = []
    for side, entries in (("train", train), ("test", test)):
        unknown = sorted({e.split("/", 1)[0] for e in entries} - set(label_of))
        if unknown:
            raise DataRootError(
                f"{dataset}: split file {path.name} lists {side} images of {len(unknown)} class folder(s) that "
                f"{str(base)!r} does not hold, e.g. {unknown[:5]}; expected the 200 wnid folders of ImageNet-R there")
        missing = [e for e in entries if not (base / e).is_file()]
        if missing:
            raise DataRootError(
                f"{dataset}: split file {path.name} lists {len(missing)} {side} image(s) that are not under "
                f"{str(base)!r}, e.g. {missing[:3]}; this copy of ImageNet-R differs from the one the split was "
                f"made for. Fix: use the original imagenet-r.tar, or a split file of your copy")
        empty = sorted(set(folders) - {e.split("/", 1)[0] for e in entries})
        if empty:
            role = "training" if side == "train" else "test"
            raise DataError(
                f"{dataset}: split file {path.name} lists no {side} image of {len(empty)} class(es) of "
                f"{str(base)!r}, e.g. {[class_names[label_of[f]] for f in empty[:5]]} ({empty[:5]}). Every class "
                f"needs at least one training and one test image (a class without {role} images would "
                f"{'never be learned' if side == 'train' else 'never be evaluated'}). Fix: a split file that lists "
                "both sides of every class folder, or remove the folders it leaves out")
        out.append(ImageFileSource([base / e for e in entries], [label_of[e.split("/", 1)[0]] for e in entries],
                                   class_names, identity=f"{dataset}|{base}|split_file={info['sha256'][:16]}|{side}",
                                   class_ids=folders))
    listed = len(train) + len(test)
    on_disk = sum(len(list_images(base / f)) for f in folders)
    if on_disk > listed:
        logger.info("%s: %d of the %d images under %s are not in the split file and are not used", dataset,
                    on_disk - listed, on_disk, base)
    for source in out:
        source.split_info = {**info, "num_train": len(train), "num_test": len(test)}
    return out[0], out[1]


def imagenet_r_base(root: Path) -> Path:
    """The ``imagenet-r`` folder under ``root`` (or ``root`` itself)."""
    return root / "imagenet-r" if (root / "imagenet-r").is_dir() else root


@register("imagenet-r", 20, "ImageNet-R, 200 classes, seeded 80/20 split per class or a split file, 10 x 20",
          options=("split_seed", "test_fraction", "split_file"))
def _load_imagenet_r(root: Path | None, *, download: bool, split_seed: int = 0,
                     test_fraction: float = 0.2, split_file: str | None = None):
    """ImageNet-R (Hendrycks et al., ICCV 2021) as L2P/DualPrompt/CODA-Prompt use it: 200 classes,
    no official split, so every class is split 80/20 (seeded), or the images are split as
    ``split_file`` lists them (``"rapf"``: RAPF's list, shipped with alta); readable names from
    the packaged ``imagenet_r_classes.tsv``."""
    split_seed, test_fraction = check_split_options("imagenet-r", split_seed, test_fraction)
    root = need_root("imagenet-r", root, _IMAGENET_R_LAYOUT, can_download=False)
    base = imagenet_r_base(root)
    names = packaged_name_map("imagenet_r_classes.tsv")
    presplit = (base / "train").is_dir() and find_test_dir(base) is not None
    folders = class_folders(base / "train" if presplit else base)
    if not folders:
        raise layout_error("imagenet-r", root, "no class folders found", _IMAGENET_R_LAYOUT,
                            can_download=False)
    unknown = [f for f in folders if f not in names]
    if unknown:
        raise DataRootError(
            f"imagenet-r: {len(unknown)} class folder(s) of {str(base)!r} are not ImageNet-R WordNet "
            f"ids, e.g. {unknown[:5]}; expected folders named by the 200 wnids of ImageNet-R "
            f"(n01443537 ...).\nLayouts:\n{_IMAGENET_R_LAYOUT}"
        )
    if len(folders) != len(names):
        logger.warning("imagenet-r: %s holds %d of the %d ImageNet-R classes", base, len(folders), len(names))
    class_names = [names[f] for f in folders]
    if presplit:
        if split_file is not None:
            raise ConfigError(f"imagenet-r: split_file={split_file!r} but {str(base)!r} is already split into "
                              f"train/ and test/ folders; drop split_file, or point root at the unsplit imagenet-r folder")
        test_dir = find_test_dir(base)
        assert test_dir is not None
        if class_folders(test_dir) != folders:
            raise DataRootError(
                f"imagenet-r: the class folders of {str(test_dir)!r} differ from those of "
                f"{str(base / 'train')!r}; expected the same wnid folders on both sides"
            )
        train = folder_split(base / "train", folders, identity=f"imagenet-r|{base}|train",
                             class_names=class_names, dataset="imagenet-r")
        test = folder_split(test_dir, folders, identity=f"imagenet-r|{base}|{test_dir.name}",
                            class_names=class_names, dataset="imagenet-r")
        train.split_info = test.split_info = folders_split_info(train, test, base, test_dir)
        return train, test
    if split_file is not None:
        if (split_seed, test_fraction) != (0, 0.2):
            raise ConfigError(f"imagenet-r: split_file={split_file!r} and split_seed/test_fraction are alternatives "
                              f"(a listed split or a seeded one); give one of them")
        return split_file_sources("imagenet-r", base, folders, class_names, split_file)
    skipped: list[tuple[str, str]] = []
    files = [list_images(base / f, skipped) for f in folders]
    report_skipped("imagenet-r", base, skipped, kept=sum(len(f) for f in files))
    train_p, train_t, test_p, test_t = seeded_split("imagenet-r", files, folders, seed=split_seed,
                                                     test_fraction=test_fraction)
    tag = f"imagenet-r|{base}|seed={split_seed}|test={test_fraction}"
    train = ImageFileSource(train_p, train_t, class_names, identity=f"{tag}|train", class_ids=folders)
    test = ImageFileSource(test_p, test_t, class_names, identity=f"{tag}|test", class_ids=folders)
    train.split_info = test.split_info = {
        "kind": "seeded", "name": f"per class, split_seed={split_seed}, test_fraction={test_fraction}",
        "num_train": len(train_p), "num_test": len(test_p), "sha256": file_list_sha256(train, test, base)}
    return train, test
