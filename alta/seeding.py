"""Seeds derived from several integers, so that every random choice of a run is reproducible.

alta never touches the global RNG in library code: shuffles, augmentation, buffer draws and
random weights each use a ``torch.Generator`` (or a forked RNG) seeded from the run seed and the
position in the run, e.g. ``derive_seed(seed, experience, epoch)``.

Transforms are the exception alta cannot rewrite: torchvision's draw from torch's global CPU
generator, ``RandomChoice``/``RandomOrder`` from Python's :mod:`random`, custom ones often from
NumPy's global RNG. :class:`SeededItems` therefore seeds all three per sample (from the sample's
index) around each item and restores the caller's states afterwards, so an augmentation depends
only on the seed and the sample, never on the worker that loads it or on what ran before.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

__all__ = ["derive_seed", "seeded_global_rngs", "SeededItems"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers with NumPy's ``SeedSequence``.

    Different ``parts`` give statistically independent streams; the result is a valid argument
    of ``torch.Generator.manual_seed`` and ``torch.manual_seed``.

    Args:
        *parts: Non-negative integers, e.g. ``(seed, experience, epoch)``.

    Returns:
        An integer in ``[0, 2**63)``.
    """
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _seed_global_rngs(seed: int) -> None:
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed the global RNGs a transform may draw from, and restore the caller's states on exit.

    Seeds torch's default CPU generator with ``seed`` (CUDA generators are left alone:
    reseeding them costs ~100x more and transforms run on the CPU), Python's :mod:`random` with
    ``seed`` and NumPy's legacy global RNG with ``seed mod 2**32`` (the range it accepts).

    Args:
        seed: A non-negative integer, e.g. from :func:`derive_seed`.

    Example:
        >>> with seeded_global_rngs(derive_seed(0, 7)):  # doctest: +SKIP
        ...     view = transform(image)
    """
    torch_state = torch.default_generator.get_state()
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    _seed_global_rngs(seed)
    try:
        yield
    finally:
        torch.default_generator.set_state(torch_state)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class SeededItems(Dataset):
    """``dataset[i]`` drawn under :func:`seeded_global_rngs` with ``derive_seed(seed, i)``.

    The random transform of a sample then depends only on ``seed`` and the sample's index,
    never on which DataLoader worker loads it or on the caller's RNG states (which are restored
    in the main process; a worker's own states are simply reseeded for every item): any
    ``num_workers`` gives the same items.

    Args:
        dataset: A map-style dataset whose ``__getitem__`` applies the (random) transform.
        seed: Seed of this pass over the data (e.g. ``derive_seed(seed, experience, epoch)``).
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        seed = derive_seed(self.seed, index)
        if get_worker_info() is not None:
            # a DataLoader worker's RNGs are its own and reseeded for every item: nothing to
            # restore, and saving NumPy's state costs ~0.1 ms per item
            _seed_global_rngs(seed)
            return self.dataset[index]
        with seeded_global_rngs(seed):
            return self.dataset[index]
