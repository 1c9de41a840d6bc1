"""scikit-learn's 1,797 8x8 handwritten digits, bundled in the wheel (offline, 5 x 2)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from .base import ArraySource, register

logger = logging.getLogger("alta.data.datasets")


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")



@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    # Deterministic split without an RNG: within each class, every 5th sample is a test sample.
    rank = np.zeros_like(labels)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(members.size)
    test = rank % 5 == 4
    out = (images[~test], labels[~test], images[test], labels[test])
    for array in out:
        array.setflags(write=False)
    return out


@register("digits", 2, "scikit-learn's 1,797 8x8 digits (offline, no files), 5 x 2", takes_root=False)
def _load_digits(root: Path | None, *, download: bool):
    train_x, train_y, test_x, test_y = digits_arrays()
    return (
        ArraySource(train_x, train_y, DIGIT_NAMES, identity="digits|sklearn|train"),
        ArraySource(test_x, test_y, DIGIT_NAMES, identity="digits|sklearn|test"),
    )
