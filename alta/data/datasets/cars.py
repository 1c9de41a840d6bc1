"""Stanford Cars (196 classes) from its devkit ``.mat`` files, with the official train / test
split ZSCL's MTIL uses.

The test labels are not in the devkit: ``devkit/cars_test_annos.mat`` has no ``class`` field.
torchvision (and so ZSCL) reads them from ``stanford_cars/cars_test_annos_withlabels.mat``, a file
Stanford published separately and whose original URL is dead (pytorch/vision#7545); a missing
copy is reported with where it must go. Since the Stanford URLs are gone, most copies come from
Kaggle, whose archive nests the image folders (``cars_train/cars_train/``): alta reads that too.

References:
    J. Krause et al., "3D Object Representations for Fine-Grained Categorization", 3dRR 2013.
    Z. Zheng et al. (ZSCL), ICCV 2023 (github.com/Thunderbeee/ZSCL,
    ``mtil/src/datasets/collections.py``: ``StanfordCars``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...errors import DataError
from .base import ImageFileSource, register
from .folders import check_listed, layout_error, load_mat, locate, need_root, require
from .names import check_class_ids, shipped_classes

logger = logging.getLogger("alta.data.datasets")


TEST_ANNOTATIONS = "cars_test_annos_withlabels.mat"
_CARS_LAYOUT = (
    "  root/stanford_cars/ (torchvision's layout; root may be that folder itself) with\n"
    "    devkit/cars_meta.mat, devkit/cars_train_annos.mat (car_devkit.tgz),\n"
    "    cars_train/*.jpg, cars_test/*.jpg (Kaggle's nested cars_train/cars_train/ is read too),\n"
    f"    {TEST_ANNOTATIONS} (the test labels; beside devkit/, not in it, though devkit/ is searched too).\n"
    "  alta cannot download Stanford Cars (the Stanford URLs are dead): the images are on Kaggle "
    "(jessicali9530/stanford-cars-dataset), car_devkit.tgz and the test labels are linked from "
    "https://github.com/pytorch/vision/issues/7545"
)


def find_test_annotations(base: Path, root: Path) -> Path:
    """Where ``cars_test_annos_withlabels.mat`` is: beside ``devkit/`` (torchvision's place) or in it.

    Raises:
        DataRootError: in neither place, saying what the file is and where it goes.
    """
    for path in (base / TEST_ANNOTATIONS, base / "devkit" / TEST_ANNOTATIONS):
        if path.is_file():
            return path
    unlabelled = (base / "devkit" / "cars_test_annos.mat").is_file()
    raise layout_error(
        "stanford-cars", root,
        f"missing {base / TEST_ANNOTATIONS}: the labels of the test images. The devkit does not hold them"
        + (f" ({base / 'devkit' / 'cars_test_annos.mat'} has no labels)" if unlabelled else "")
        + f"; get {TEST_ANNOTATIONS} (linked from https://github.com/pytorch/vision/issues/7545"
        f"#issuecomment-1631441616) and put it at {base / TEST_ANNOTATIONS}",
        _CARS_LAYOUT, can_download=False, base=base)


def image_folder(base: Path, name: str) -> Path:
    """``cars_train/`` (or ``cars_test/``), or Kaggle's nested ``cars_train/cars_train/``."""
    nested = base / name / name
    return nested if nested.is_dir() else base / name


def read_annotations(path: Path, folder: Path, num_classes: int) -> tuple[list[str], list[int]]:
    """Image paths and labels (``class`` - 1) of a devkit annotation file (``fname``, ``class``)."""
    annotations = np.atleast_1d(load_mat("stanford-cars", path, ["annotations"])["annotations"])
    fields = annotations.dtype.names or ()
    if "fname" not in fields or "class" not in fields:
        raise DataError(
            f"stanford-cars: {path} annotations have the fields {list(fields)}; expected 'fname' and 'class' (the "
            f"labels). An annotation file without 'class' holds no labels (as devkit/cars_test_annos.mat); for the "
            f"test split use {TEST_ANNOTATIONS}"
        )
    paths = [str(folder / str(a["fname"])) for a in annotations]
    targets = [int(a["class"]) - 1 for a in annotations]
    if targets and not 0 <= min(targets) <= max(targets) < num_classes:
        raise DataError(f"stanford-cars: {path} holds classes outside 1..{num_classes}. Fix: restore the file")
    return paths, targets


@register("stanford-cars", None, "Stanford Cars, 196 classes, official train / test split (as ZSCL's MTIL)",
          aliases=("stanford_cars",))
def _load_stanford_cars(root: Path | None, *, download: bool):
    """Stanford Cars (Krause et al., 2013): 8,144 training and 8,041 test images, labels =
    ``class`` - 1 of the annotations, names from ``devkit/cars_meta.mat`` as ZSCL feeds CLIP
    (``alta/data/class_names/stanford-cars.tsv``: "AM General Hummer SUV 2000")."""
    root = need_root("stanford-cars", root, _CARS_LAYOUT, can_download=False)
    base = locate(root, ("stanford_cars",), "devkit")
    require("stanford-cars", root, base, ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_train",
                                          "cars_test"), _CARS_LAYOUT)
    test_file = find_test_annotations(base, root)
    classes = shipped_classes("stanford-cars")
    meta = np.atleast_1d(load_mat("stanford-cars", base / "devkit" / "cars_meta.mat", ["class_names"])["class_names"])
    check_class_ids("stanford-cars", [str(n) for n in meta.tolist()], classes.ids,
                    where=str(base / "devkit" / "cars_meta.mat"), layouts=_CARS_LAYOUT)
    sources = []
    for split, index, folder in (("train", base / "devkit" / "cars_train_annos.mat", image_folder(base, "cars_train")),
                                 ("test", test_file, image_folder(base, "cars_test"))):
        paths, targets = read_annotations(index, folder, len(classes.ids))
        check_listed("stanford-cars", root, base, paths, index, _CARS_LAYOUT)
        sources.append(ImageFileSource(paths, targets, classes.names, identity=f"stanford-cars|{base}|{split}",
                                       class_ids=classes.ids))
    return sources[0], sources[1]
