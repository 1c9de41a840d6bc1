"""Any ``train/<class>/`` + ``test/<class>/`` tree, read with torchvision's ImageFolder rules."""

from __future__ import annotations

import logging
from pathlib import Path

from ...classnames import readable
from ...errors import DataError
from .base import DataRootError, register
from .folders import class_folders, find_test_dir, folder_split, layout_error, need_root

logger = logging.getLogger("alta.data.datasets")



_FOLDER_LAYOUT = (
    "  root/train/<class>/**/*.jpg|png|... and root/test/<class>/** (or root/val/<class>/**), the "
    "same class folders on both sides (images in subfolders of a class folder belong to it, as in "
    "torchvision's ImageFolder);\n  classes are ordered by sorted folder name, underscores in "
    "folder names become spaces in class names"
)


def _level_hint(root: Path) -> str:
    """Where the ``train/`` folder is when ``root`` is one level off: ``root`` is a split folder
    itself, or a folder holding the dataset's folder."""
    if root.name in ("train", "test", "val") and (root.parent / "train").is_dir():
        return f"; {str(root)!r} is a split folder itself: root is the folder above it ({str(root.parent)!r})"
    if root.is_dir():
        below = sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "train").is_dir())
        if below:
            return (f"; {str(root)!r} holds {', '.join(f'{d}/train/' for d in below[:3])}: root is one level "
                    f"deeper (e.g. {str(root / below[0])!r})")
    return ""


@register("image-folder", None, "any train/<class>/ + test/<class>/ tree (sorted class folders)")
def _load_image_folder(root: Path | None, *, download: bool):
    root = need_root("image-folder", root, _FOLDER_LAYOUT, can_download=False)
    if not (root / "train").is_dir():
        raise layout_error("image-folder", root, "no train/ folder" + _level_hint(root), _FOLDER_LAYOUT,
                           can_download=False)
    test_dir = find_test_dir(root)
    if test_dir is None:
        raise layout_error("image-folder", root, "no test/ or val/ folder beside train/",
                            _FOLDER_LAYOUT, can_download=False)
    folders = class_folders(root / "train")
    if not folders:
        raise layout_error("image-folder", root, "train/ holds no class folders", _FOLDER_LAYOUT,
                            can_download=False)
    test_folders = class_folders(test_dir)
    if test_folders != folders:
        raise DataRootError(
            f"image-folder: the class folders of {str(test_dir)!r} differ from those of "
            f"{str(root / 'train')!r}: only in train: {sorted(set(folders) - set(test_folders))[:10]}, "
            f"only in {test_dir.name}: {sorted(set(test_folders) - set(folders))[:10]}. Expected the "
            "same class folders on both sides; add or remove folders so they match"
        )
    names = [readable(f) for f in folders]
    empty = [f for f, n in zip(folders, names) if not n]
    if empty:
        raise DataError(
            f"image-folder: class folder(s) {empty[:5]} in {str(root / 'train')!r} give an empty "
            "class name once underscores become spaces; CLIP prompts need a readable name for "
            "every class. Fix: rename those folders in train/ and "
            f"{test_dir.name}/ to the class names (e.g. 'golden_retriever')"
        )
    train = folder_split(root / "train", folders, identity=f"image-folder|{root}|train",
                          class_names=names, dataset="image-folder")
    test = folder_split(test_dir, folders, identity=f"image-folder|{root}|{test_dir.name}",
                         class_names=names, dataset="image-folder")
    return train, test
