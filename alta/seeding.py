"""Seeds derived from several integers, so that every random choice of a run is reproducible.

alta never touches the global RNG in library code: shuffles, augmentation, buffer draws and
random weights each use a ``torch.Generator`` (or a forked RNG) seeded from the run seed and the
position in the run, e.g. ``derive_seed(seed, experience, epoch)``. Same seed, same result on
one machine; on a GPU, bit-identical reruns also need deterministic kernels:
:func:`set_deterministic`.

Transforms are the exception alta cannot rewrite: torchvision's draw from torch's global CPU
generator, ``RandomChoice``/``RandomOrder`` from Python's :mod:`random`, custom ones often from
NumPy's global RNG. :class:`SeededItems` therefore seeds all three per sample (from the sample's
index) around each item and restores the caller's states afterwards, so an augmentation depends
only on the seed and the sample, never on the worker that loads it or on what ran before.
"""

from __future__ import annotations

import logging
import os
import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

__all__ = ["derive_seed", "seeded_global_rngs", "SeededItems", "set_deterministic", "determinism_state",
           "CUBLAS_WORKSPACE_CONFIG"]

logger = logging.getLogger(__name__)

# What cuBLAS needs for deterministic results (CUDA >= 10.2; PyTorch docs, "Reproducibility").
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


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

    Examples:
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


def determinism_state() -> dict[str, Any]:
    """PyTorch's settings that decide whether kernels are deterministic, as a JSON-ready dict.

    Returns:
        ``deterministic_algorithms`` (``torch.use_deterministic_algorithms``), ``warn_only``,
        ``cudnn_deterministic``, ``cudnn_benchmark`` and ``cublas_workspace_config`` (the
        environment variable, ``None`` when unset).
    """
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def set_deterministic(enabled: bool = True, *, warn_only: bool = False) -> dict[str, Any]:
    """Make PyTorch use deterministic kernels (or stop requiring them), process-wide.

    The reference code sets ``torch.backends.cudnn.deterministic = True`` and
    ``torch.backends.cudnn.benchmark = False`` (``arguments.py``, ``set_deterministic``). This
    does the same and also calls ``torch.use_deterministic_algorithms`` (an operation without a
    deterministic implementation then raises, or warns with ``warn_only``) and sets
    ``CUBLAS_WORKSPACE_CONFIG`` for cuBLAS when it is unset. Set it before the first CUDA
    operation: cuBLAS reads the variable when it starts. Unlike the reference, it does not seed
    the global RNGs: alta seeds every random choice itself.

    Deterministic kernels can be slower on a GPU; on a CPU alta's runs are already
    reproducible and this changes nothing measurable.

    Args:
        enabled: ``True`` to require deterministic kernels, ``False`` to lift the requirement
            (cuDNN back to PyTorch's defaults; the environment variable is left as it is).
        warn_only: Warn instead of raising on an operation without a deterministic kernel.

    Returns:
        The settings now in force (:func:`determinism_state`), to record beside the results.
    """
    torch.use_deterministic_algorithms(bool(enabled), warn_only=bool(warn_only))
    torch.backends.cudnn.deterministic = bool(enabled)
    torch.backends.cudnn.benchmark = False  # benchmark mode picks kernels by timing: not reproducible
    if enabled and not os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
    state = determinism_state()
    logger.info("deterministic mode %s: %s", "on" if enabled else "off", state)
    return state
