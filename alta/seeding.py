"""Seeds derived from several integers, so that every random choice of a run is reproducible.

alta never touches the global RNG in library code: shuffles, augmentation, buffer draws and
random weights each use a ``torch.Generator`` (or a forked RNG) seeded from the run seed and the
position in the run, e.g. ``derive_seed(seed, experience, epoch)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["derive_seed", "SeededItems"]


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


class SeededItems(Dataset):
    """Draw the random transform of item i from ``derive_seed(seed, i)``.

    The augmentation of a sample then depends only on the seed and the sample, never on which
    DataLoader worker, or which rank of a distributed run, loads it: any ``num_workers`` and any
    number of processes give the same images.

    Args:
        dataset: A map-style dataset whose transform draws from torch's default CPU generator.
        seed: The seed the per-item seeds derive from.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        # the CPU generator random transforms draw from: the worker's own, or the main process's
        # (forked by the caller); torch.manual_seed would also reseed CUDA, 100x slower
        torch.default_generator.manual_seed(derive_seed(self.seed, index))
        return self.dataset[index]
