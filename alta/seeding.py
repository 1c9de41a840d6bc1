"""Seeds derived from several integers, so that every random choice of a run is reproducible.

alta never touches the global RNG in library code: shuffles, augmentation, buffer draws and
random weights each use a ``torch.Generator`` (or a forked RNG) seeded from the run seed and the
position in the run, e.g. ``derive_seed(seed, experience, epoch)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed"]


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
