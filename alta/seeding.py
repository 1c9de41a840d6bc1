"""Seeds derived from several integers, so that every random choice of a run is reproducible, and
PyTorch's deterministic mode.

alta never touches the global RNG in library code: shuffles, augmentation, buffer draws and
random weights each use a ``torch.Generator`` (or a forked RNG) seeded from the run seed and the
position in the run, e.g. ``derive_seed(seed, experience, epoch)``. Same seed, same result on
one machine; on a GPU, bit-identical reruns also need deterministic kernels:
:func:`set_deterministic`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch

__all__ = ["derive_seed", "set_deterministic", "determinism_state", "CUBLAS_WORKSPACE_CONFIG"]

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
