"""Class names shipped with alta: the reference code's names per stream and packaged name maps.

References:
    github.com/vijaylee/ALTA, ``datasets/__init__.py`` (``get_classnames``), commit aae43b0.
"""

from __future__ import annotations

import functools
import logging

from ..splits import read_name_map
from .base import DATASETS
from .cifar import CIFAR10_CLASSES, CIFAR100_CLASSES

logger = logging.getLogger("alta.data.datasets")


# The class names the ALTA reference code prompts with (github.com/vijaylee/ALTA,
# datasets/__init__.py, get_classnames): the dataset's own spelling for CIFAR (underscores kept)
# and a curated list for Tiny-ImageNet, shipped as a data file with its source in its header.
REFERENCE_NAMES_FILES = {"seq-tinyimagenet": "tinyimagenet_reference_names.txt"}


@functools.lru_cache(maxsize=None)
def reference_names_file(filename: str) -> tuple[str, ...]:
    from importlib import resources

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


def packaged_name_map(filename: str) -> dict[str, str]:
    from importlib import resources


    with resources.as_file(resources.files("alta.data") / filename) as path:
        return read_name_map(path)


