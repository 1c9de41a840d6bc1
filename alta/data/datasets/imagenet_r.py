"""ImageNet-R (200 classes, 30,000 renditions) with a seeded 80/20 split per class.

References:
    D. Hendrycks et al., "The Many Faces of Robustness", ICCV 2021.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import DataRootError, ImageFileSource, register
from .folders import (
    check_split_options,
    class_folders,
    find_test_dir,
    folder_split,
    layout_error,
    list_images,
    need_root,
    report_skipped,
    seeded_split,
)
from .names import packaged_name_map

logger = logging.getLogger("alta.data.datasets")


_IMAGENET_R_LAYOUT = (
    "  (a) root/imagenet-r/<wnid>/*.jpg: the 200 WordNet-id folders as imagenet-r.tar unpacks "
    "(root may be imagenet-r itself); alta splits every class 80/20 with split_seed\n"
    "  (b) root/imagenet-r/train/<wnid>/ + test/<wnid>/ (or val/): a split you made yourself.\n"
    "  alta cannot download ImageNet-R: fetch https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"
)


@register("imagenet-r", 20, "ImageNet-R, 200 classes, seeded 80/20 split per class, 10 x 20",
           options=("split_seed", "test_fraction"))
def _load_imagenet_r(root: Path | None, *, download: bool, split_seed: int = 0,
                     test_fraction: float = 0.2):
    """ImageNet-R (Hendrycks et al., ICCV 2021) as L2P/DualPrompt/CODA-Prompt use it: 200 classes,
    no official split, so every class is split 80/20 (seeded); readable names from the packaged
    ``imagenet_r_classes.tsv``."""
    split_seed, test_fraction = check_split_options("imagenet-r", split_seed, test_fraction)
    root = need_root("imagenet-r", root, _IMAGENET_R_LAYOUT, can_download=False)
    base = root / "imagenet-r" if (root / "imagenet-r").is_dir() else root
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
        test_dir = find_test_dir(base)
        assert test_dir is not None
        if class_folders(test_dir) != folders:
            raise DataRootError(
                f"imagenet-r: the class folders of {str(test_dir)!r} differ from those of "
                f"{str(base / 'train')!r}; expected the same wnid folders on both sides"
            )
        return (
            folder_split(base / "train", folders, identity=f"imagenet-r|{base}|train",
                          class_names=class_names, dataset="imagenet-r"),
            folder_split(test_dir, folders, identity=f"imagenet-r|{base}|{test_dir.name}",
                          class_names=class_names, dataset="imagenet-r"),
        )
    skipped: list[tuple[str, str]] = []
    files = [list_images(base / f, skipped) for f in folders]
    report_skipped("imagenet-r", base, skipped, kept=sum(len(f) for f in files))
    train_p, train_t, test_p, test_t = seeded_split("imagenet-r", files, folders, seed=split_seed,
                                                     test_fraction=test_fraction)
    tag = f"imagenet-r|{base}|seed={split_seed}|test={test_fraction}"
    return (
        ImageFileSource(train_p, train_t, class_names, identity=f"{tag}|train", class_ids=folders),
        ImageFileSource(test_p, test_t, class_names, identity=f"{tag}|test", class_ids=folders),
    )


