"""The nine datasets of the CLIP class-incremental suite, as the PROOF / C3Box line reads them.

PROOF (Zhou et al., TPAMI 2025), ENGINE (ICCV 2025), BOFA (AAAI 2026), MG-CLIP (ICCV 2025) and
C3Box, the toolbox gathering them, report on CIFAR-100, CUB-200, ImageNet-R, ObjectNet, Stanford
Cars, UCF-101, FGVC-Aircraft, Food-101 and SUN397, most of them as *class subsets* distributed
pre-split: ``<name>/train/<class>/`` + ``<name>/test/<class>/`` (C3Box: ``val/``), read with
torchvision's ``ImageFolder``, so label i is the i-th class folder in sorted order and its name is
entry i of the authors' ``utils/labels.json``. alta reads those archives as ``cil-<key>`` (aliases:
the PROOF keys), with the suite's class counts and names (shipped in ``alta/data/cil_suite/``, one
``folder<TAB>name<TAB>official`` line per label, with their source):

=================  ======  =========  =====================================================
dataset            alias   classes    the suite's subset
=================  ======  =========  =====================================================
``cil-cifar100``   -       100        all (torchvision's ``cifar-100-python/`` or folders)
``cil-cub``        cub     200        all (an 80/20 re-split of all 11,788 images)
``cil-imagenet-r`` -       200        all (pre-split folders, or the raw folder + a split file)
``cil-objectnet``  -       200        the first 200 of 313 class folders (sorted)
``cil-cars``       cars    100        classes 1-100 of 196 (``cars_meta.mat`` order)
``cil-ucf``        ucf     100        the first 100 of 101 (Yo Yo dropped)
``cil-aircraft``   -       100        all 100 variants (``variants.txt`` order)
``cil-food``       food    100        the first 100 of 101 (waffles dropped)
``cil-sun``        sun     300        the first 300 of SUN397's 362 first-level categories
=================  ======  =========  =====================================================

Where only the official layout is at hand, each reads the suite's classes from it, with the suite's
names and another image split than the archive's, which the run records
(:attr:`~alta.data.datasets.LabelledSource.split_info`): ``cil-imagenet-r`` the raw
``imagenet-r/<wnid>/`` folder with a split file (RAPF's by default, shipped with alta),
``cil-objectnet`` the first 200 classes of ObjectNet 1.0 (seeded 80/20 split), ``cil-ucf`` the first
100 classes of CoOp's UCF-101 middle frames (its split file or UCF's list), ``cil-cub``
CUB-200-2011, ``cil-cars`` Stanford Cars' devkit layout, ``cil-aircraft`` FGVC-Aircraft 2013b,
``cil-food`` Food-101 and ``cil-sun`` SUN397 (its 325 categories merged into the suite's 300 names),
each with its official dataset's reader and split. The full official datasets are datasets of
their own, with their own counts (``stanford-cars`` 196, ``food101`` 101, ``sun397`` 397,
``aircraft`` 100, ``objectnet`` 313, ``ucf101`` 101, ``cub200`` and ``imagenet-r`` 200).

The suite's splits (B0-Inc10 / B50-Inc10, B0-Inc20 / B100-Inc20, B0-Inc30 / B150-Inc30), its
class order and its protocol are in :attr:`SuiteDataset.splits` and :mod:`alta.run.presets`.

References:
    D.-W. Zhou et al., "Learning without Forgetting for Vision-Language Models" (PROOF), TPAMI
    2025; github.com/zhoudw-zdw/PROOF@0bb20520 ``utils/data.py``, ``utils/labels.json``.
    LAMDA-CL/C3Box@1378ab21 (the same readers and names).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import DataError
from .base import DATASETS, DataRootError, ImageFileSource, LabelledSource, load_sources, register
from .cifar import CIFAR100_CLASSES, cifar_sources
from .cub import read_cub200
from .folders import (
    check_split_options,
    class_folders,
    file_list_sha256,
    find_test_dir,
    folder_split,
    folders_split_info,
    layout_error,
    need_root,
)
from .imagenet_r import imagenet_r_base, split_file_sources
from .objectnet import objectnet_base, read_objectnet, seeded_sources
from .ucf101 import read_ucf101, ucf_base, ucf_sources

__all__ = ["SUITE", "SuiteDataset", "SuiteClass", "is_suite_dataset", "suite_dataset", "suite_classes",
           "suite_templates"]

logger = logging.getLogger("alta.data.datasets")

_ARCHIVES = "the archives linked from the READMEs of github.com/zhoudw-zdw/PROOF and github.com/LAMDA-CL/C3Box"


@dataclass(frozen=True)
class SuiteClass:
    """One class of a suite dataset: its folder in the pre-split archive, its name, and its id in
    the official dataset (folder, wnid, index or categories, as the data file's header says)."""

    folder: str
    name: str
    official: str


@dataclass(frozen=True)
class SuiteDataset:
    """One dataset of the suite.

    Attributes:
        key: The suite's key (``cars``), the name of its data files in ``alta/data/cil_suite/``.
        name: alta's dataset name (``cil-cars``).
        title: Readable name.
        num_classes: C of the suite's subset.
        splits: The suite's two splits, ``B0-Inc<k>`` and ``B<C/2>-Inc<k>``.
        folders: Folder names of the archive tried under the data root (PROOF's first).
        aliases: Other names (PROOF's keys).
        options: Options of the official-layout reader (``split_file``, ``split_seed``, ...).
    """

    key: str
    name: str
    title: str
    num_classes: int
    splits: tuple[str, str]
    folders: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @property
    def classes(self) -> tuple[SuiteClass, ...]:
        """The suite's classes in label order."""
        return suite_classes(self.key)

    @property
    def templates(self) -> list[str]:
        """PROOF's prompt templates for this dataset (``templates[0]`` is the one it trains with)."""
        return suite_templates(self.key)


SUITE: dict[str, SuiteDataset] = {
    spec.name: spec
    for spec in (
        SuiteDataset("cifar100", "cil-cifar100", "CIFAR-100", 100, ("B0-Inc10", "B50-Inc10"),
                     ("cifar100", "cifar-100", "CIFAR100"), ("cifar224",)),
        SuiteDataset("cub", "cil-cub", "CUB-200", 200, ("B0-Inc20", "B100-Inc20"), ("cub", "cub200"), ("cub",)),
        SuiteDataset("imagenet_r", "cil-imagenet-r", "ImageNet-R", 200, ("B0-Inc20", "B100-Inc20"),
                     ("imagenet-r", "imagenetr"), ("imagenetr",), options=("split_file",)),
        SuiteDataset("objectnet", "cil-objectnet", "ObjectNet (200 classes)", 200, ("B0-Inc20", "B100-Inc20"),
                     ("objectnet", "objnet"), options=("split_seed", "test_fraction")),
        SuiteDataset("cars", "cil-cars", "Stanford Cars (100 classes)", 100, ("B0-Inc10", "B50-Inc10"),
                     ("cars", "stanford_cars", "stanford-cars"), ("cars",)),
        SuiteDataset("ucf", "cil-ucf", "UCF-101 (100 classes)", 100, ("B0-Inc10", "B50-Inc10"), ("ucf", "ucf101"),
                     ("ucf",), options=("official_split",)),
        SuiteDataset("aircraft", "cil-aircraft", "FGVC-Aircraft", 100, ("B0-Inc10", "B50-Inc10"),
                     ("aircraft", "fgvc_aircraft", "fgvc-aircraft")),
        SuiteDataset("food", "cil-food", "Food-101 (100 classes)", 100, ("B0-Inc10", "B50-Inc10"),
                     ("food101", "food", "food-101"), ("food",)),
        SuiteDataset("sun", "cil-sun", "SUN397 (300 classes)", 300, ("B0-Inc30", "B150-Inc30"),
                     ("sun", "sun397", "SUN397"), ("sun",)),
    )
}


def is_suite_dataset(name: object) -> bool:
    """Whether ``name`` (or an alias) is one of the suite's datasets."""
    return isinstance(name, str) and name in DATASETS and DATASETS.resolve(name) in SUITE


def suite_dataset(name: str) -> SuiteDataset:
    """The :class:`SuiteDataset` of a name or alias (``cars``, ``cil-cars``).

    Raises:
        ConfigError: an unknown dataset; DataError: a dataset that is not one of the suite's.
    """
    canonical = DATASETS.resolve(name)
    if canonical not in SUITE:
        raise DataError(f"dataset {name!r} is not one of the class-incremental suite's: {', '.join(SUITE)}")
    return SUITE[canonical]


def _data_file(name: str) -> str:
    return (resources.files("alta.data") / "cil_suite" / name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def suite_classes(key: str) -> tuple[SuiteClass, ...]:
    """The classes of a suite dataset in label order, read from ``alta/data/cil_suite/<key>.tsv``.

    Raises:
        FileNotFoundError: ``key`` is not a suite dataset alta ships (``cifar100``, ``cub``, ...).
    """
    rows = []
    for line in _data_file(f"{key}.tsv").splitlines():
        if line and not line.startswith("#"):
            folder, name, official = line.split("\t")
            rows.append(SuiteClass(folder, name, official))
    return tuple(rows)


@functools.lru_cache(maxsize=None)
def _templates() -> dict:
    return json.loads(_data_file("templates.json"))


def suite_templates(key: str) -> list[str]:
    """PROOF's prompt templates of a suite dataset (``utils/templates.json``; the first is the one
    PROOF trains with, all of them averaged are its evaluation and zero-shot classifier).

    Raises:
        KeyError: ``key`` is not a suite dataset alta ships.
    """
    return list(_templates()[key]["templates"])


def _norm(text: str) -> str:
    """Folder and class spellings compared without case, spaces, underscores or punctuation."""
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _layouts(spec: SuiteDataset, official: str = "") -> str:
    return (f"  (a) the suite's pre-split archive: root/{spec.folders[0]}/train/<class>/ + test/<class>/ (or val/), "
            f"{spec.num_classes} class folders (root may be that folder itself), from {_ARCHIVES}"
            + (f"\n  (b) {official}" if official else ""))


def _archive_base(spec: SuiteDataset, root: Path) -> Path | None:
    """The folder holding the archive's ``train/`` + ``test/`` (or ``val/``) under ``root``."""
    for base in (root, *(root / f for f in spec.folders)):
        if (base / "train").is_dir() and find_test_dir(base) is not None:
            return base
    return None


def archive_sources(spec: SuiteDataset, base: Path) -> tuple[ImageFileSource, ImageFileSource]:
    """The (train, test) sources of a pre-split archive: class folders in sorted order, named by
    position with the suite's names (as PROOF's ImageFolder + labels.json do).

    Raises:
        DataRootError: train and test folders that differ, or a number of classes other than the suite's.
    """
    test_dir = find_test_dir(base)
    assert test_dir is not None
    folders, test_folders = class_folders(base / "train"), class_folders(test_dir)
    if folders != test_folders:
        raise DataRootError(
            f"{spec.name}: the class folders of {str(test_dir)!r} differ from those of {str(base / 'train')!r} (only in "
            f"train: {sorted(set(folders) - set(test_folders))[:5]}, only in {test_dir.name}: "
            f"{sorted(set(test_folders) - set(folders))[:5]}); expected the same {spec.num_classes} folders on both sides")
    if len(folders) != spec.num_classes:
        raise DataRootError(
            f"{spec.name}: {str(base / 'train')!r} holds {len(folders)} class folders, but the suite's {spec.title} has "
            f"{spec.num_classes} (its sampled archive). Is this the suite's archive? The full official dataset is a "
            f"dataset of its own (`alta list datasets`).\nLayouts:\n{_layouts(spec)}")
    classes = spec.classes
    differ = [(f, c.folder) for f, c in zip(folders, classes) if _norm(f) != _norm(c.folder) and _norm(f) != _norm(c.name)]
    if differ:
        logger.warning("%s: %d of the %d class folders of %s are not spelled as the suite's classes at the same "
                       "position (e.g. folder %r where %r was expected); they are named by position, as PROOF's "
                       "ImageFolder + labels.json read them. Check that this is the suite's archive", spec.name,
                       len(differ), len(folders), base / "train", differ[0][0], differ[0][1])
    names = [c.name for c in classes]
    train = folder_split(base / "train", folders, identity=f"{spec.name}|{base}|train", class_names=names,
                         dataset=spec.name)
    test = folder_split(test_dir, folders, identity=f"{spec.name}|{base}|{test_dir.name}", class_names=names,
                        dataset=spec.name)
    train.split_info = test.split_info = {**folders_split_info(train, test, base, test_dir),
                                          "source": "the suite's pre-split archive"}
    return train, test


def subset(spec: SuiteDataset, train: ImageFileSource, test: ImageFileSource, label_of: dict[int, int],
           base: Path) -> tuple[ImageFileSource, ImageFileSource]:
    """The suite's classes of an official dataset's sources: official label -> suite label
    (``label_of``; several official classes may become one suite class), other classes dropped."""
    missing = sorted(set(range(spec.num_classes)) - set(label_of.values()))
    if missing:
        raise DataRootError(f"{spec.name}: the official data under {str(base)!r} lacks {len(missing)} of the suite's "
                            f"classes, e.g. {[spec.classes[k].name for k in missing[:5]]}")
    names, ids = [c.name for c in spec.classes], [c.folder for c in spec.classes]
    out = []
    for source in (train, test):
        keep = [(p, label_of[y]) for p, y in zip(source.paths, source.targets.tolist()) if y in label_of]
        part = ImageFileSource([p for p, _ in keep], [y for _, y in keep], names,
                               identity=f"{spec.name}|official|{source.identity.split('|', 1)[1]}", class_ids=ids)
        out.append(part)
    info = dict(train.split_info or {"kind": "dataset", "name": "the split of " + train.identity.split("|", 1)[0] + (
        " (" + "|".join(train.identity.split("|")[2:-1]) + ")" if len(train.identity.split("|")) > 3 else "")})
    info.update(source=f"the official layout, the suite's {spec.num_classes} classes",
                files_sha256=file_list_sha256(out[0], out[1], base), num_train=len(out[0]), num_test=len(out[1]))
    info.setdefault("sha256", info["files_sha256"])
    out[0].split_info = out[1].split_info = info
    return out[0], out[1]


# ---- the official layouts the suite's subsets can be taken from ------------------------------

def _official_imagenet_r(spec: SuiteDataset, root: Path, split_file: str = "rapf", **_) -> tuple:
    base = imagenet_r_base(root)
    folders = class_folders(base) if base.is_dir() else []
    wnids = [c.folder for c in spec.classes]
    if not folders or any(f not in set(wnids) for f in folders):
        return None
    return split_file_sources(spec.name, base, wnids, [c.name for c in spec.classes], split_file)


def _official_objectnet(spec: SuiteDataset, root: Path, split_seed: int = 0, test_fraction: float = 0.2, **_):
    if objectnet_base(root) is None:
        return None
    split_seed, test_fraction = check_split_options(spec.name, split_seed, test_fraction)
    base, folders, _, files = read_objectnet(spec.name, root)
    wanted = [c.folder for c in spec.classes]
    index = {f: k for k, f in enumerate(folders)}
    absent = [f for f in wanted if f not in index]
    if absent:
        raise DataRootError(f"{spec.name}: ObjectNet under {str(base)!r} lacks {len(absent)} of the suite's class "
                            f"folders, e.g. {absent[:5]}")
    train, test = seeded_sources(spec.name, base, [files[index[f]] for f in wanted], wanted,
                                 [c.name for c in spec.classes], split_seed=split_seed, test_fraction=test_fraction)
    for source in (train, test):
        source.split_info = {**source.split_info, "source": f"ObjectNet 1.0, the suite's {spec.num_classes} classes"}
    return train, test


def _official_ucf(spec: SuiteDataset, root: Path, official_split: int = 1, **_):
    if ucf_base(root) is None:
        return None
    base, folders, sides, info = read_ucf101(spec.name, root, official_split=official_split)
    wanted = {_norm(c.official): k for k, c in enumerate(spec.classes)}
    label_of = {k: wanted[_norm(f)] for k, f in enumerate(folders) if _norm(f) in wanted}
    full = ucf_sources(spec.name, base, folders, folders, sides, info)
    return subset(spec, *full, label_of, base)


def _official_cub(spec: SuiteDataset, root: Path, **_):
    found = read_cub200(spec.name, root, required=False)
    if found is None:
        return None
    base, train, test = found
    wanted = {c.official: k for k, c in enumerate(spec.classes)}
    label_of = {k: wanted[f] for k, f in enumerate(train.class_ids) if f in wanted}
    logger.warning("%s: reading CUB-200-2011's official layout with its official split (5,994 / 5,794 images); the "
                   "suite's archive is an 80/20 re-split of all 11,788, so the numbers are not the suite's", spec.name)
    return subset(spec, train, test, label_of, base)


def _by_official_reader(dataset: str, markers: tuple[str, ...], key: Callable[[int, str], str]):
    """A fallback that reads an official layout with that dataset's own reader (``dataset``) when
    one of ``markers`` is under the root, and keeps the suite's classes: official class ``k`` with
    id ``class_id`` is the suite's class whose ``official`` ids (comma-separated: SUN's merged
    categories) hold ``key(k, class_id)``."""

    def read(spec: SuiteDataset, root: Path, **_):
        if not any((root / m).exists() for m in markers):
            return None
        train, test = load_sources(dataset, root=root)
        wanted = {part: k for k, c in enumerate(spec.classes) for part in c.official.split(",")}
        label_of = {k: wanted[key(k, cid)] for k, cid in enumerate(train.class_ids) if key(k, cid) in wanted}
        logger.info("%s: the suite's %d classes from the official %s layout under %s, with that dataset's split",
                    spec.name, spec.num_classes, dataset, root)
        return subset(spec, train, test, label_of, root)

    return read


_OFFICIAL: dict[str, tuple[Callable, str]] = {
    "imagenet_r": (_official_imagenet_r, "root/imagenet-r/<wnid>/*.jpg (imagenet-r.tar), split as split_file lists "
                                         "it ('rapf': RAPF's list, shipped with alta; or a path)"),
    "objectnet": (_official_objectnet, "ObjectNet 1.0 (objectnet-1.0/images/ + mappings/): the suite's 200 classes, "
                                       "each split 80/20 with split_seed"),
    "ucf": (_official_ucf, "CoOp's UCF-101 middle frames (ucf101/UCF-101-midframes/ + split_zhou_UCF101.json or "
                           "ucfTrainTestlist/): the suite's 100 classes"),
    "cub": (_official_cub, "CUB_200_2011/ with its index files (official 5,994 / 5,794 split, not the suite's)"),
    "cars": (_by_official_reader("stanford-cars", ("stanford_cars/devkit", "devkit"), lambda k, cid: str(k + 1)),
             "Stanford Cars' devkit layout (stanford_cars/): classes 1-100 of 196 (cars_meta.mat order), the official "
             "split"),
    "aircraft": (_by_official_reader("aircraft", ("fgvc-aircraft-2013b", "data/variants.txt"), lambda k, cid: cid),
                 "FGVC-Aircraft 2013b (fgvc-aircraft-2013b/data/): the 100 variants, the official split"),
    "food": (_by_official_reader("food101", ("food-101/meta", "meta/classes.txt"), lambda k, cid: cid),
             "Food-101 (food-101/meta/ + images/): the first 100 classes, the official split"),
    "sun": (_by_official_reader("sun397", ("SUN397/ClassName.txt", "ClassName.txt"), lambda k, cid: cid),
            "SUN397 (SUN397/ClassName.txt + images): the suite's 300 names merge 325 of its categories; that "
            "dataset's split (ZSCL's 80/20, seed 42)"),
}


def _load(spec: SuiteDataset, root: Path | None, *, download: bool, **options) -> tuple[LabelledSource, LabelledSource]:
    if spec.key == "cifar100":
        if root is not None:  # root, or the dataset's folder under it
            root = next((c for c in (root, *(root / f for f in spec.folders))
                         if (c / "train").is_dir() or (c / "cifar-100-python").is_dir()), root)
        train, test = cifar_sources(spec.name, root, download=download, torchvision_dir="cifar-100-python",
                                    tv_class="CIFAR100", known=CIFAR100_CLASSES)
        digest = hashlib.sha256()
        for side, source in (("train", train), ("test", test)):
            source.class_names = [c.name for c in spec.classes]
            if isinstance(source, ImageFileSource):
                continue
            for part in (side.encode(), source.targets.numpy(), source.images):  # the same digest, no 150 MB copy
                digest.update(memoryview(np.ascontiguousarray(part)) if not isinstance(part, bytes) else part)
        info = {"kind": "official", "name": "CIFAR-100 train (50,000) / test (10,000)",
                "num_train": len(train), "num_test": len(test)}
        if isinstance(train, ImageFileSource):
            info.update(kind="folders", sha256=file_list_sha256(train, test, Path(os.path.commonpath(train.paths[:1]
                                                                                                      + test.paths[:1]))))
        else:
            info.update(sha256=digest.hexdigest(), hashed="labels and pixels of both sides")
        train.split_info = test.split_info = info
        return train, test
    reader, official = _OFFICIAL.get(spec.key, (None, ""))
    root = need_root(spec.name, root, _layouts(spec, official), can_download=False)
    base = _archive_base(spec, root)
    if base is not None:
        if options:
            raise DataError(f"{spec.name}: options {sorted(options)} apply to the official layout, but {str(base)!r} is "
                            f"the suite's pre-split archive; drop them")
        return archive_sources(spec, base)
    if reader is not None:
        for candidate in (root, *(root / f for f in spec.folders)):
            if candidate.is_dir():
                found = reader(spec, candidate, **options)
                if found is not None:
                    return found
    raise layout_error(spec.name, root, "no train/ + test/ (or val/) folders of the suite's archive found",
                       _layouts(spec, official), can_download=False)


def _register(spec: SuiteDataset) -> None:
    increment = int(spec.splits[0].split("Inc")[1])
    description = (f"{spec.title}: the CLIP class-incremental suite's {spec.num_classes} classes (PROOF/C3Box archive), "
                   f"{spec.splits[0]} / {spec.splits[1]}")

    def load(root: Path | None, *, download: bool, **options):
        return _load(spec, root, download=download, **options)

    register(spec.name, increment, description, options=spec.options, aliases=spec.aliases,
             can_download=spec.key == "cifar100")(load)


for _spec in SUITE.values():
    _register(_spec)
