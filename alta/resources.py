"""Memory that cannot be allocated, said in words instead of torch's ``RuntimeError``.

torch reports a failed allocation as ``RuntimeError: DefaultCPUAllocator: can't allocate memory:
you tried to allocate N bytes`` (CPU) or ``torch.OutOfMemoryError`` (CUDA). alta turns those into
:class:`~alta.errors.ResourceError` naming what was being allocated, its size, and what to
change; every other ``RuntimeError`` passes unchanged.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Iterator

import torch

from .errors import ResourceError

__all__ = ["is_allocation_failure", "format_bytes", "allocate_zeros", "translate_allocation_errors"]

_ALLOCATION = re.compile(r"can't allocate memory|not enough memory|out of memory|failed to allocate", re.IGNORECASE)


def is_allocation_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's report of an allocation that failed."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and bool(_ALLOCATION.search(str(exc)))


def format_bytes(num: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num) < 1024 or unit == "TiB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} TiB"  # pragma: no cover


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def allocate_zeros(shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device | str, what: str,
                   fix: str) -> torch.Tensor:
    """``torch.zeros(shape)``, or a :class:`~alta.errors.ResourceError` saying what did not fit.

    Args:
        shape: The tensor's shape.
        dtype: Its dtype.
        device: Where it lives.
        what: What it is, for the message (e.g. ``"the memory buffer's field 'f1'"``).
        fix: What to change (e.g. ``"use a smaller buffer.size"``).

    Raises:
        ResourceError: the allocation failed.
    """
    try:
        return torch.zeros(shape, dtype=dtype, device=device)
    except RuntimeError as exc:
        if not is_allocation_failure(exc):
            raise
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        raise ResourceError(
            f"cannot allocate {what}: {' x '.join(map(str, shape))} {str(dtype).replace('torch.', '')} = "
            f"{format_bytes(size)} on {device} ({_first_line(exc)}); {fix}"
        ) from None


@contextlib.contextmanager
def translate_allocation_errors(where: str) -> Iterator[None]:
    """Turn a failed allocation inside the block into a :class:`~alta.errors.ResourceError`.

    Args:
        where: What was running, for the message (e.g. ``"the run in runs/x"``).

    Raises:
        ResourceError: an allocation in the block failed.
    """
    try:
        yield
    except RuntimeError as exc:
        if not is_allocation_failure(exc):
            raise
        raise ResourceError(
            f"out of memory in {where}: {_first_line(exc)}. Its last checkpoint is intact and can be resumed "
            f"once there is memory enough: use a machine with more memory, or a smaller model, training batch or "
            f"buffer (a new run), or fewer data workers"
        ) from None
