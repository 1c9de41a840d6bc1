"""Class names shipped with alta: the reference code's names per stream and packaged name maps.

References:
    github.com/vijaylee/ALTA, ``datasets/__init__.py`` (``get_classnames``), commit aae43b0.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from typing import NamedTuple, Sequence

from ...errors import DataError
from ..splits import read_name_map
from .base import DATASETS, DataRootError, class_key
from .cifar import CIFAR10_CLASSES, CIFAR100_CLASSES

logger = logging.getLogger("alta.data.datasets")


# The class names the ALTA reference code prompts with (github.com/vijaylee/ALTA,
# datasets/__init__.py, get_classnames): the dataset's own spelling for CIFAR (underscores kept)
# and a curated list for Tiny-ImageNet, shipped as a data file with its source in its header.
REFERENCE_NAMES_FILES = {"seq-tinyimagenet": "tinyimagenet_reference_names.txt"}


@functools.lru_cache(maxsize=None)
def reference_names_file(filename: str) -> tuple[str, ...]:
    """The lines of the shipped file ``alta/data/<filename>``, comments (``#``) and blank lines
    left out (cached)."""
    text = (resources.files("alta.data") / filename).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line and not line.startswith("#"))


def reference_class_names(name: str) -> list[str] | None:
    """The class names the ALTA reference code uses for a stream, one per original label.

    CIFAR-10 and CIFAR-100 keep the dataset's spelling (``"aquarium_fish"``: the reference's
    hand-written prompt w1 keeps the underscore, its learned prompt replaces it); Tiny-ImageNet
    uses the reference's 200 curated names in ``wnids.txt`` order (``"Egyptian Mau"``, where
    alta's loader reads the first ``words.txt`` synonym, ``"Egyptian cat"``).

    Args:
        name: A stream name of :func:`list_datasets` (aliases accepted).

    Returns:
        The names in original label order, or ``None`` for a stream the reference code does
        not have (``digits``, ``fashion-mnist``, ``image-folder``).

    Raises:
        ConfigError: an unknown stream name (the message lists the valid ones).

    References:
        github.com/vijaylee/ALTA, ``datasets/__init__.py`` (``get_classnames``), commit aae43b0.
    """
    canonical = DATASETS.resolve(name)
    if canonical == "seq-cifar10":
        return list(CIFAR10_CLASSES)
    if canonical == "seq-cifar100":
        return list(CIFAR100_CLASSES)
    if canonical in REFERENCE_NAMES_FILES:
        return list(reference_names_file(REFERENCE_NAMES_FILES[canonical]))
    return None


class ClassList(NamedTuple):
    """The classes of a dataset as shipped in ``alta/data/class_names/<key>.tsv``, in label order.

    Attributes:
        ids: What the data calls each label (a folder, a line of an index file, a number).
        names: The name CLIP reads for it.
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def shipped_classes(key: str) -> ClassList:
    """The class list ``alta/data/class_names/<key>.tsv``: ``<id><TAB><name>`` lines in label
    order after a ``#`` header that names the source. Names are kept exactly as written (ZSCL's
    ``"head of a  crocodile"`` keeps its two spaces).

    Raises:
        FileNotFoundError: no such shipped list (``key`` is alta's own, not a user's input).
        DataError: a line that is not ``<id><TAB><name>`` (a damaged installation).
    """
    text = (resources.files("alta.data") / "class_names" / f"{key}.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    bad = next((row for row in rows if len(row) != 2), None)
    if bad is not None:
        raise DataError(f"alta/data/class_names/{key}.tsv: the line {chr(9).join(bad)!r} is not <id><TAB><name>; "
                        "the installation is damaged: reinstall alta")
    return ClassList(tuple(row[0] for row in rows), tuple(row[1] for row in rows))


def check_class_ids(dataset: str, found: Sequence[str], expected: Sequence[str], *, where: str,
                    layouts: str) -> None:
    """Refuse data whose classes are not the shipped ones, in the shipped order (compared with
    :func:`~alta.data.datasets.class_key`, so case, ``_``/space/``-`` differences pass).

    Raises:
        DataRootError: naming the missing and unexpected classes, the classes listed twice, or
            the first position where the order differs, and ``where`` the classes were read.
    """
    found_keys = [class_key(f) for f in found]
    expected_keys = [class_key(e) for e in expected]
    if found_keys == expected_keys:
        return
    found_set, expected_set = set(found_keys), set(expected_keys)
    missing = [e for e, k in zip(expected, expected_keys) if k not in found_set]
    extra = [f for f, k in zip(found, found_keys) if k not in expected_set]
    repeated = sorted({f for f, k in zip(found, found_keys) if found_keys.count(k) > 1})
    if repeated and not missing and not extra:
        what = f"{len(repeated)} listed more than once: {repeated[:5]}{' ...' if len(repeated) > 5 else ''}"
    elif missing or extra or len(found) != len(expected):
        what = (f"missing {len(missing)}: {missing[:5]}{' ...' if len(missing) > 5 else ''}; unexpected "
                f"{len(extra)}: {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    else:
        first = next(k for k, (a, b) in enumerate(zip(found_keys, expected_keys)) if a != b)
        what = f"the same classes in another order: position {first} is {found[first]!r}, expected {expected[first]!r}"
    raise DataRootError(
        f"{dataset}: the classes in {where} are not the {len(expected)} classes of {dataset} ({what}). Is root "
        f"holding another dataset or another version of it? Fix: point root at the official {dataset} files.\n"
        f"Layouts:\n{layouts}"
    )


def packaged_name_map(filename: str) -> dict[str, str]:

    with resources.as_file(resources.files("alta.data") / filename) as path:
        return read_name_map(path)


