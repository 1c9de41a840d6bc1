"""Atomic file writing: results and checkpoints are never left half-written.

Every write goes to a temporary file in the same directory, is flushed and fsynced, then
renamed over the destination with :func:`os.replace` (atomic on POSIX and Windows). An
interrupted run (Ctrl-C, a killed job) therefore leaves either the old file or the new one, plus
at worst a temporary file ``.<name>.XXXXXXXX.tmp`` when the process was killed mid-write
(:func:`clean_temp_files` removes those; ``alta run --resume`` does).

JSON is always valid JSON: NaN and infinities are written as ``null`` (:func:`json_safe`).
A write that fails (a full disk, a folder that is gone) raises :class:`~alta.errors.OutputError`
naming the file; the previous version of the file is left intact.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .errors import OutputError

__all__ = ["atomic_write", "write_text", "write_json", "append_jsonl", "save_torch", "json_safe", "json_line",
           "clean_temp_files", "file_sha256"]

# mkstemp(prefix=".<name>.", suffix=".tmp") names: 8 random characters from [a-z0-9_]
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once: reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, writer: Callable[[io.BufferedWriter], None], *,
                 parents: bool = True) -> Path:
    """Write a file atomically.

    Args:
        path: Destination file.
        writer: Called with a binary file object open on a temporary file beside ``path``.
        parents: Create the parent folder if needed. ``False`` for the files of a run: its
            folder must exist, and a folder deleted or renamed mid-run is an error, never
            silently re-created.

    Returns:
        The destination path.

    Raises:
        OutputError: the file cannot be written (a full disk, a missing folder with
            ``parents=False``, no permission); the previous file, if any, is intact.
    """
    path = Path(path)
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc, written=None) from exc
    written = None
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                writer(handle)
                handle.flush()
                os.fsync(handle.fileno())
            except BaseException:
                written = _size_of(handle)
                raise
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        cause = _os_error_in(exc) if isinstance(exc, (OSError, RuntimeError)) else None
        if cause is not None and not isinstance(exc, OutputError):
            raise _write_error(path, cause, written=written) from exc
        raise
    return path


def _size_of(handle) -> int | None:
    """Bytes written to ``handle`` so far (buffered ones included)."""
    try:
        return handle.tell()
    except (OSError, ValueError):
        return None


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or the one a RuntimeError of ``torch.save`` wraps
    (torch's stream writer reports a failed ``write`` as ``RuntimeError: ... unexpected pos``)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _write_error(path: Path, exc: OSError, *, written: int | None) -> OutputError:
    if isinstance(exc, OutputError):
        return exc
    if exc.errno == errno.ENOENT and not path.parent.is_dir():
        return OutputError(f"cannot write {path}: its folder {path.parent} does not exist (deleted or renamed while "
                           f"alta was writing to it?)")
    reason = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}.get(
        exc.errno, exc.strerror or str(exc))
    size = f" after {written:,} bytes" if written else ""
    fix = ("free some space (or choose an --output-dir on another disk) and try again" if exc.errno in
           (errno.ENOSPC, errno.EDQUOT) else "check the folder's permissions and file system")
    return OutputError(f"cannot write {path}: {reason}{size}; the previous {path.name}, if there was one, is intact. "
                       f"To go on, {fix}")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in blocks of 1 MiB (hex digest, 64 characters).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that is valid JSON: NaN and infinities become ``None`` (``null``).

    JSON has no NaN; Python's ``json`` would write a bare ``NaN`` that other readers refuse.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_line(record: Any) -> str:
    """One line of a JSON-lines file (non-finite numbers as ``null``), with its newline."""
    return json.dumps(json_safe(record), allow_nan=False) + "\n"


def write_text(path: str | os.PathLike, text: str, *, parents: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (``parents``: see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), parents=parents)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2, parents: bool = True) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (NaN and infinities as ``null``)."""
    return write_text(path, json.dumps(json_safe(obj), indent=indent, sort_keys=False, allow_nan=False) + "\n",
                      parents=parents)


def append_jsonl(path: str | os.PathLike, record: dict, *, parents: bool = True) -> Path:
    """Append one JSON line to ``path``, atomically (the whole file is rewritten; NaN and
    infinities as ``null``).

    JSON-lines files written by alta are small (one line per evaluation), so rewriting the file
    keeps the all-or-nothing guarantee at negligible cost.
    """
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    line = json_line(record).encode("utf-8")
    return atomic_write(path, lambda f: f.write(old + line), parents=parents)


def save_torch(path: str | os.PathLike, obj: Any, *, parents: bool = True) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (``parents``: see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f), parents=parents)


def clean_temp_files(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files that writes of ``names`` left in ``folder`` when a process was
    killed in the middle of them (``.<name>.XXXXXXXX.tmp``).

    Only call it on a folder no other process writes to (a claimed run folder).

    Args:
        folder: The folder.
        names: The file names whose temporary files may be removed (e.g. ``checkpoint.pt``).

    Returns:
        The files removed.
    """
    wanted, removed = set(names), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match is None or match.group("name") not in wanted:
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed
