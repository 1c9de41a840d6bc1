"""Readers of folder layouts shared by the dataset loaders: image files under class folders, the
layout errors that say where the data must go, and seeded per-class train/test splits for
datasets without an official one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...classnames import check_utf8, readable
from ...errors import ConfigError, DataError
from .base import IMAGE_EXTENSIONS, DataRootError, ImageFileSource, class_key

logger = logging.getLogger("alta.data.datasets")




def layout_error(
    name: str, root: Path | None, problem: str, layouts: str, *, can_download: bool, base: Path | None = None
) -> DataRootError:
    """The error for data that is not where, or not as, ``layouts`` says (``base``: the dataset's
    folder found under ``root``, when the problem is inside it)."""
    hint = " Or pass download=True to let torchvision download it into root." if can_download else ""
    if root is not None and not root.is_dir():
        problem += f"; {root} {'is a file, not a folder' if root.exists() else 'does not exist'}"
    inside = dataset_subfolders(name, root) if base is None or base == root else []
    if inside:
        hint += f" {root} holds {', '.join(inside)}: is the data in there (root={str(root / inside[0])!r})?"
    return DataRootError(
        f"{name}: {problem} (root={str(root) if root is not None else None!r}). "
        f"Expected one of these layouts under root:\n{layouts}\nFix: pass root= pointing at the "
        f"folder that holds that layout.{hint}",
        can_download=can_download,
    )


def dataset_subfolders(name: str, root: Path | None) -> list[str]:
    """Subfolders of ``root`` named like the dataset (``cifar10/`` for ``seq-cifar10``,
    ``tiny-imagenet-200/`` for ``seq-tinyimagenet``): a root given one level too high."""
    if root is None or not root.is_dir():
        return []
    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    key = norm(name.removeprefix("seq-"))
    try:
        children = sorted(p.name for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    # the key not followed by a digit (cifar10 is not cifar100); the exact name first
    pattern = re.escape(key) + (r"(?!\d)" if key[-1:].isdigit() else "")
    found = [c for c in children if key and re.search(pattern, norm(c))]
    return sorted(found, key=lambda c: (norm(c) != key, c))[:3]


def need_root(name: str, root: Path | None, layouts: str, *, can_download: bool) -> Path:
    if root is None:
        raise layout_error(name, root, "no root given", layouts, can_download=can_download)
    return root


SKIPPED_SHOWN = 5  # paths a skipped-files warning lists


def list_images(folder: Path, skipped: list[tuple[str, str]] | None = None) -> list[str]:
    """Image files under ``folder``, subfolders included, in the order torchvision's ImageFolder
    lists them (``torchvision.datasets.folder.make_dataset``: ``os.walk`` in sorted order, names
    ending in one of :data:`IMAGE_EXTENSIONS` case-insensitively). Written out rather than called
    because torchvision < 0.17 refuses empty folders, which alta reports itself, naming the class.

    An entry is read when it has an image extension and is (or links to) a regular file.
    Anything else (a dangling symlink, ``notes.txt``) is appended to ``skipped`` with its reason,
    for :func:`report_skipped`.

    Unlike torchvision, links to folders are not followed below ``folder`` (see
    :func:`check_folder_links`): every image under a class folder must be that class's own, so a
    link that would loop back (``cat/up -> ..``), reach another class (``cat/dogs -> ../dog``) or
    pull in a tree from elsewhere is refused, naming the link. ``folder`` itself may be a link
    (a class folder linked from another disk), but not to its own split folder, one of its
    ancestors or another folder inside it.

    Raises:
        DataError: a link to a folder inside ``folder``, or ``folder`` a link that loops back or
            points into its own split folder.
    """
    check_folder_links(folder)
    paths: list[str] = []
    for directory, subfolders, names in sorted(os.walk(folder)):  # links to folders are not entered
        linked = [d for d in sorted(subfolders) if os.path.islink(os.path.join(directory, d))]
        if linked:
            link = os.path.join(directory, linked[0])
            raise DataError(
                f"{link} is a symbolic link to the folder {os.path.realpath(link)!r}{_link_kind(link, folder)}; "
                f"alta does not follow links to folders inside a class folder ({folder}): their images would "
                f"all be labelled with this class, and a link back up would loop. Fix: remove the link, or "
                f"put (or link) the image files themselves in the class folder"
            )
        for name in sorted(names):
            path = os.path.join(directory, name)
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                reason = "no image extension"
            elif not os.path.isfile(path):
                reason = "dangling symlink" if os.path.islink(path) else "not a regular file"
            else:
                paths.append(path)
                continue
            if skipped is not None:
                skipped.append((path, reason))
    return paths


def _link_kind(link: str, folder: Path) -> str:
    """What a link to a folder found under ``folder`` would do if followed, for messages."""
    target, here = os.path.realpath(link), os.path.realpath(os.path.dirname(link))
    top = os.path.realpath(folder)
    if _inside(here, target):
        return " (a loop: it points to its own folder or one above it)"
    if _inside(target, top):
        return " inside the same class folder (its images would be read twice)"
    if _inside(target, os.path.dirname(top)):
        return " (another class's folder: its images would be labelled with this class too)"
    return " outside the class folder"


def _inside(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_folder_links(folder: Path) -> None:
    """Refuse a class folder that is a link back into its own split folder: to that folder or one
    above it (``train/loop -> ../train``: a loop, every class read again as one fake class) or to
    another folder inside it (``train/cat -> dog``: one class's images under two labels). A link
    to a folder elsewhere (a class folder kept on another disk) is read.

    Raises:
        DataError: such a link, naming it and its target.
    """
    if not os.path.islink(folder):
        return
    target, parent = os.path.realpath(folder), os.path.realpath(folder.parent)
    if _inside(parent, target):
        problem = "its own parent folder or one above it: a loop, every class would be read again under this label"
    elif _inside(target, parent):
        problem = "a folder inside the same parent: those images would carry two labels"
    else:
        return
    raise DataError(
        f"the class folder {folder} is a symbolic link to {target!r}, {problem}. Fix: remove the link (a class "
        f"folder may link to a folder elsewhere, not back into {folder.parent})"
    )


def report_skipped(dataset: str, where: Path, skipped: list[tuple[str, str]], *, kept: int) -> None:
    """Log one warning naming how many entries were left out of ``where`` and the first few."""
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for _, reason in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    shown = ", ".join(f"{path} ({reason})" for path, reason in sorted(skipped)[:SKIPPED_SHOWN])
    logger.warning(
        "%s: skipped %d entr%s of %s that %s not image files (%s; %d images kept): %s%s. Only files "
        "with an image extension (%s) that are, or link to, regular files are read",
        dataset, len(skipped), "y" if len(skipped) == 1 else "ies", where, "is" if len(skipped) == 1 else "are",
        ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())), kept, shown,
        " ..." if len(skipped) > SKIPPED_SHOWN else "", ", ".join(IMAGE_EXTENSIONS),
    )


def class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the class folders of ``split_dir`` (hidden entries are ignored).

    Raises:
        DataError: a folder name that is not valid UTF-8 (it could not become a class name); a
            class folder linked back into ``split_dir`` (:func:`check_folder_links`).
    """
    with os.scandir(split_dir) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for name in folders:
        check_utf8(name, what=f"class folder {str(split_dir / name)!r}", error=DataError)
        check_folder_links(split_dir / name)
    return folders


def find_test_dir(root: Path) -> Path | None:
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    return None


def folder_split(
    split_dir: Path,
    folders: Sequence[str],
    *,
    identity: str,
    class_names: Sequence[str],
    dataset: str,
    class_ids: Sequence[str] | None = None,
) -> ImageFileSource:
    """Image files under ``split_dir/<folders[k]>/`` (subfolders included) labelled k; every
    class needs an image.

    Raises:
        DataError: a class folder holding no image file (naming the class and the folder).
    """
    paths: list[str] = []
    targets: list[int] = []
    skipped: list[tuple[str, str]] = []
    nested = 0  # images found below a class folder's own level
    for label, folder in enumerate(folders):
        files = list_images(split_dir / folder, skipped)
        if not files:
            role = "training" if split_dir.name == "train" else "test"
            raise DataError(
                f"{dataset}: class {class_names[label]!r} has no {role} images: the folder "
                f"{str(split_dir / folder)!r} holds no images, subfolders included (extensions read: "
                f"{', '.join(IMAGE_EXTENSIONS)}). Every class needs at least one training and one "
                f"test image (a class without {role} images would "
                f"{'never be learned' if role == 'training' else 'never be evaluated'}). Fix: add "
                "images to that folder, or remove the class's folder from every split"
            )
        paths.extend(files)
        targets.extend([label] * len(files))
        nested += sum(os.path.dirname(f) != os.path.join(split_dir, folder) for f in files)
    report_skipped(dataset, split_dir, skipped, kept=len(paths))
    if nested:  # read as torchvision's ImageFolder reads them: said, since a stray folder changes the data
        logger.info("%s: %d of the %d images of %s are in sub-folders of their class folders and are read as that "
                    "class (as torchvision's ImageFolder does)", dataset, nested, len(paths), split_dir)
    return ImageFileSource(paths, targets, class_names, identity=identity,
                           class_ids=list(folders) if class_ids is None else class_ids)


def match_folders(
    dataset: str, split_dir: Path, known: Sequence[str], layouts: str
) -> list[str]:
    """Folder name of each known class (in the known, native order), matched by name."""
    found = class_folders(split_dir)
    by_key = {class_key(f): f for f in found}
    missing = [c for c in known if class_key(c) not in by_key]
    extra = sorted(set(by_key) - {class_key(c) for c in known})
    if missing or extra:
        raise DataRootError(
            f"{dataset}: class folders in {str(split_dir)!r} do not match the dataset's classes; "
            f"missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}, unexpected: "
            f"{[by_key[k] for k in extra[:10]]}. Expected one folder per class named "
            f"{', '.join(known[:10])}{' ...' if len(known) > 10 else ''} (underscores or spaces).\n"
            f"Layouts:\n{layouts}"
        )
    return [by_key[class_key(c)] for c in known]


def named_folder_sources(
    dataset: str, root: Path, known: Sequence[str], layouts: str
) -> tuple[ImageFileSource, ImageFileSource]:
    test_dir = find_test_dir(root)
    if test_dir is None:
        raise layout_error(dataset, root, "found train/ but no test/ or val/ beside it", layouts,
                            can_download=False)
    names = [readable(c) for c in known]
    out = []
    for split_dir in (root / "train", test_dir):
        folders = match_folders(dataset, split_dir, known, layouts)
        out.append(
            folder_split(
                split_dir,
                folders,
                identity=f"{dataset}|folders|{root}|{split_dir.name}",
                class_names=names,
                dataset=dataset,
            )
        )
    return out[0], out[1]


def check_split_options(dataset: str, split_seed: object, test_fraction: object) -> tuple[int, float]:
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or int(split_seed) < 0:
        raise ConfigError(
            f"{dataset}: split_seed must be an int >= 0 (the seed of the per-class train/test split), "
            f"got {split_seed!r}"
        )
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ConfigError(
            f"{dataset}: test_fraction must be a number in (0, 1) (share of every class's images "
            f"held out for test), got {test_fraction!r}"
        )
    return int(split_seed), float(test_fraction)


def seeded_split(
    dataset: str,
    files_per_class: Sequence[Sequence[str]],
    class_ids: Sequence[str],
    *,
    seed: int,
    test_fraction: float | None = None,
    train_per_class: int | None = None,
) -> tuple[list[str], list[int], list[str], list[int]]:
    """Split every class's files into train and test with a generator seeded by (seed, label).

    Each class draws its own permutation from ``np.random.default_rng([seed, label])``, so a
    class's split does not depend on the other classes. ``train_per_class`` keeps that many
    training images per class (the rest is test); otherwise ``round(test_fraction * n)`` images
    (at least one) are test images. Files keep their sorted order inside each side.

    Raises:
        DataError: a class with fewer than two images (it cannot be on both sides).
    """
    train_paths: list[str] = []
    train_targets: list[int] = []
    test_paths: list[str] = []
    test_targets: list[int] = []
    for label, files in enumerate(files_per_class):
        n = len(files)
        if n < 2:
            raise DataError(
                f"{dataset}: class {class_ids[label]!r} has {n} image(s); the seeded train/test "
                "split needs at least two per class (one on each side). Fix: add images or remove "
                "that class folder"
            )
        if train_per_class is not None:
            num_test = n - min(train_per_class, n - 1)
        else:
            assert test_fraction is not None
            num_test = min(max(1, round(test_fraction * n)), n - 1)
        permutation = np.random.default_rng([seed, label]).permutation(n)
        is_test = np.zeros(n, dtype=bool)
        is_test[permutation[:num_test]] = True
        for index, path in enumerate(files):
            if is_test[index]:
                test_paths.append(path)
                test_targets.append(label)
            else:
                train_paths.append(path)
                train_targets.append(label)
    return train_paths, train_targets, test_paths, test_targets


def check_path_option(dataset: str, option: str, value: object) -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(
            f"{dataset}: option {option} must be the path of a file, got {type(value).__name__} {value!r}"[:300]
        )


def locate(root: Path, subfolders: Sequence[str], marker: str) -> Path:
    """The folder of a dataset under ``root``: the first of ``root/<subfolder>`` (in the given
    order, e.g. torchvision's folder name first) and ``root`` itself that holds ``marker``.

    When none holds it, the first of those folders that exists (so that a partial folder is
    reported by what it lacks), else ``root``.
    """
    candidates = [root / s for s in subfolders] + [root]
    for folder in candidates:
        if (folder / marker).exists():
            return folder
    return next((folder for folder in candidates[:-1] if folder.is_dir()), root)


def require(dataset: str, root: Path, base: Path, names: Sequence[str], layouts: str, *,
            can_download: bool = False) -> None:
    """Refuse a dataset folder that lacks any of ``names`` (files or folders, relative to ``base``).

    Raises:
        DataRootError: naming every missing path in full and the layouts expected.
    """
    absent = [str(base / n) for n in names if not (base / n).exists()]
    if absent and len(absent) == len(names) > 1:
        raise layout_error(dataset, root, f"no {dataset} data found: {base} holds none of {', '.join(names)}",
                           layouts, can_download=can_download, base=base)
    if absent:
        raise layout_error(dataset, root, f"missing {', '.join(absent)}", layouts, can_download=can_download,
                           base=base)


CHECKED_PATHS = 64  # listed image files whose existence a loader checks, spread over the list


def check_listed(dataset: str, root: Path, base: Path, paths: Sequence[str], index: Path | str,
                 layouts: str) -> None:
    """Check that image files an index file lists are there: ``CHECKED_PATHS`` of them, evenly
    spread over the list (first and last included), so that a missing or half-extracted image
    folder is reported at once, without a stat of every file of a large dataset. A file missing
    elsewhere is reported when it is read (:class:`~alta.data.datasets.ImageFileSource`).

    Raises:
        DataRootError: a listed file that does not exist (named, with the index file listing it).
    """
    if not paths:
        return
    step = max(1, (len(paths) - 1) // (CHECKED_PATHS - 1))
    for position in sorted({*range(0, len(paths), step), len(paths) - 1}):
        if not os.path.isfile(paths[position]):
            raise layout_error(
                dataset, root, f"{paths[position]} is listed in {index} but is not there (is the image "
                "folder missing or only partly extracted?)", layouts, can_download=False, base=base)


def random_split_indices(num_samples: int, *, seed: int, train_fraction: float = 0.8) -> tuple[list[int], list[int]]:
    """The train and test sample indices of ``torch.utils.data.random_split(dataset, [n_train,
    n - n_train], generator=torch.Generator().manual_seed(seed))`` with ``n_train =
    int(train_fraction * n)``: ZSCL's ``split_dataset`` (80/20, seed 42) for Caltech-101, EuroSAT
    and SUN397, over the samples in the order the dataset lists them. Both lists come back sorted
    (the subsets' members; ``random_split`` itself yields them in permutation order).

    Source: Thunderbeee/ZSCL, ``mtil/src/datasets/collections.py`` (``ClassificationDataset.split_dataset``).
    ``random_split`` draws ``torch.randperm(n, generator=...)``; so does this function, so the two
    agree for the installed torch (tests/test_mtil_datasets.py checks it).
    """
    generator = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(num_samples, generator=generator).tolist()
    num_train = int(train_fraction * num_samples)
    return sorted(permutation[:num_train]), sorted(permutation[num_train:])


def read_index_text(dataset: str, path: str | os.PathLike) -> str:
    """The text of an index, split or class-list file of a dataset, read as UTF-8: every loader
    reads its text files through here, so a damaged or binary file is a :class:`DataError` naming
    it, never a bare ``UnicodeDecodeError``.

    Raises:
        DataError: the file cannot be read, or is not UTF-8 text.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{dataset}: cannot read {os.fspath(path)} ({type(err).__name__}: {err}); expected a "
                        "UTF-8 text file (an index or split file of the dataset). Fix: restore it from the "
                        "dataset's archive, or rewrite it as UTF-8 text") from err


def index_lines(dataset: str, path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines of an index file, stripped.

    Raises:
        DataError: the file cannot be read as UTF-8 text.
    """
    text = read_index_text(dataset, path)
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def load_mat(dataset: str, path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of a MATLAB file (scipy's ``loadmat``, ``squeeze_me=True``; scipy comes
    with scikit-learn).

    Raises:
        DataError: the file is not a readable MATLAB file or lacks one of ``keys``.
    """
    import scipy.io

    try:
        content = scipy.io.loadmat(path, squeeze_me=True)
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise DataError(f"{dataset}: cannot read {path} as a MATLAB file ({type(err).__name__}: {err}); the "
                        "file is corrupt or truncated. Fix: restore it from the dataset's archive") from err
    absent = [k for k in keys if k not in content]
    if absent:
        present = sorted(k for k in content if not k.startswith("__"))
        raise DataError(f"{dataset}: {path} holds no {', '.join(map(repr, absent))} (it holds {present}); "
                        "is it the right file of the dataset? Fix: restore it from the dataset's archive")
    return {k: content[k] for k in keys}


def check_option_choice(dataset: str, option: str, value: object, choices: Sequence[object]) -> None:
    """Refuse a dataset option outside ``choices``.

    Raises:
        ConfigError: naming the option, what was given and the valid values.
    """
    if isinstance(value, bool) or value not in choices:
        raise ConfigError(f"{dataset}: option {option} is {value!r}; expected one of "
                          f"{', '.join(map(repr, choices))}"[:400])


ZSCL_SPLIT_SEED = 42  # ZSCL's split_dataset: torch.Generator().manual_seed(42)
ZSCL_TRAIN_FRACTION = 0.8  # ZSCL's split_dataset(ratio=0.8)


def zscl_split_sources(paths: Sequence[str], targets: Sequence[int], class_names: Sequence[str],
                       class_ids: Sequence[str], *, seed: int, tag: str) -> tuple[ImageFileSource, ImageFileSource]:
    """Train and test sources of ZSCL's split of a dataset without an official one:
    ``random_split`` 80/20 over ``paths`` in the given order (:func:`random_split_indices`),
    identities ``<tag>|zscl-split|seed=<seed>|train`` and ``...|test``."""
    train, test = random_split_indices(len(paths), seed=seed, train_fraction=ZSCL_TRAIN_FRACTION)
    tag = f"{tag}|zscl-split|seed={seed}"
    return (
        ImageFileSource([paths[i] for i in train], [targets[i] for i in train], class_names,
                        identity=f"{tag}|train", class_ids=class_ids),
        ImageFileSource([paths[i] for i in test], [targets[i] for i in test], class_names,
                        identity=f"{tag}|test", class_ids=class_ids),
    )




def file_list_sha256(train: ImageFileSource, test: ImageFileSource, base: Path) -> str:
    """SHA-256 of a split as the files it holds: one line ``<side>\t<path relative to base>\t<label>``
    per image, training images first, each side in the order read. Two copies of a dataset laid
    out with the same split give the same value wherever they are.
    """
    digest = hashlib.sha256()
    for side, source in (("train", train), ("test", test)):
        for path, label in zip(source.paths, source.targets.tolist()):
            relative = os.path.relpath(path, base).replace(os.sep, "/")
            digest.update(f"{side}\t{relative}\t{label}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def folders_split_info(train: ImageFileSource, test: ImageFileSource, base: Path, test_dir: Path) -> dict:
    """What a run records about a split given by ``train/`` and ``test/`` folders: the folders and
    the SHA-256 of the file list (:func:`file_list_sha256`)."""
    return {"kind": "folders", "name": f"{base.name}/train + {base.name}/{test_dir.name}",
            "sha256": file_list_sha256(train, test, base), "num_train": len(train), "num_test": len(test),
            "hashed": "one line '<train|test>\\t<path relative to the dataset folder>\\t<label>' per image"}
