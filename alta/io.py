"""Atomic file writing: results and checkpoints are never left half-written.

Every write goes to a temporary file in the same directory, is flushed and fsynced, then
renamed over the destination with :func:`os.replace` (atomic on POSIX and Windows). An
interrupted run (Ctrl-C, a killed job) therefore leaves either the old file or the new one.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["atomic_write", "write_text", "write_json", "append_jsonl", "save_torch"]


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once: reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, writer: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file atomically.

    Args:
        path: Destination file. Its parent directory is created if needed.
        writer: Called with a binary file object open on a temporary file beside ``path``.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> Path:
    """Append one JSON line to ``path``, atomically (the whole file is rewritten).

    JSON-lines files written by alta are small (one line per evaluation), so rewriting the file
    keeps the all-or-nothing guarantee at negligible cost.
    """
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    line = (json.dumps(record) + "\n").encode("utf-8")
    return atomic_write(path, lambda f: f.write(old + line))


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f))
