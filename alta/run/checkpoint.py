"""Checkpoints of a run: everything needed to continue it after the last finished epoch.

A checkpoint is written (atomically, with :func:`alta.io.save_torch`) after every epoch and
every experience of a run of ALTA (Li et al., IEEE TMM 2023) by the
:class:`~alta.run.writers.Checkpointer` callback, so an interrupted run loses at most one epoch. It holds the learner's trainable state (context vectors,
adapter, prompt snapshots, stream position), the buffer, the alternating schedule's counters, the
optimiser and learning-rate scheduler, the partial :class:`alta.StreamResult`, the zero-shot
baseline, where to continue (experience, epoch) and the fingerprint of the resolved configuration.
:func:`alta.run_stream` derives every per-epoch random choice from ``(seed, experience, epoch)``
and the buffer's generator state is saved, so a run resumed from a checkpoint repeats the
uninterrupted run exactly (on the same device and software).

Everything is stored as tensors and plain Python values, so the file is read back with
``torch.load(..., weights_only=True)``: loading a checkpoint never runs code from it.

Integrity: a checkpoint stores the SHA-256 digest of its payload (every tensor's dtype, shape and
bytes, every value and key; :func:`payload_digest`), so flipped bits inside a stored tensor are
refused on resume even when the zip container is intact. Restored floating-point state (the
learner's context vectors, adapter and prompt snapshots, the buffer's features and logits, the
optimiser's moments) must be finite (stored logits may be -inf: a ``seen`` head masks the classes
not seen yet). A checkpoint is never written with non-finite state: the
training loops stop before (:class:`~alta.errors.TrainingError`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import save_torch
from ..loop.result import StreamResult

__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "read_checkpoint", "restore_checkpoint", "payload_digest"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "alta.run-checkpoint"
# 2: adds next_epoch (epoch-level checkpoints); version 1 files are read as next_epoch 0
# 3: adds digest (SHA-256 of the payload); versions 1 and 2 are read unverified, with a warning
# 4: confusion matrices stored sparsely (their nonzero counts): a C x C matrix per experience
#    of a 1,201-class MTIL stream was 127 MB, rewritten at every epoch; version 3 reads as before
_VERSION = 4
_READABLE = (1, 2, 3, 4)
_FINITE_KEYS = ("learner", "buffer", "optimizer")  # floating-point state that must be finite
# the run objects whose states a checkpoint holds (None where a run has none)
STATE_KEYS = ("learner", "buffer", "schedule", "optimizer", "scheduler")


def _matrix_to_list(matrix: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in np.asarray(matrix, dtype=float)]


def _sparse_confusion(matrix: np.ndarray) -> dict[str, torch.Tensor]:
    """A confusion matrix as its nonzero counts: ``shape`` (2,), flat ``index`` (nnz,) and
    ``count`` (nnz,) int64; a matrix of C x C counts holds at most one entry per test sample."""
    matrix = np.asarray(matrix)
    flat = matrix.reshape(-1)
    index = np.flatnonzero(flat)
    return {"shape": torch.tensor(matrix.shape, dtype=torch.long), "index": torch.from_numpy(index.astype(np.int64)),
            "count": torch.from_numpy(flat[index].astype(np.int64))}


def _dense_confusion(stored: Any) -> np.ndarray:
    """The matrix :func:`_sparse_confusion` stored (or a version-3 dense tensor), int64."""
    if isinstance(stored, torch.Tensor):
        return stored.numpy()
    shape = tuple(int(n) for n in stored["shape"].tolist())
    matrix = np.zeros(int(np.prod(shape)), dtype=np.int64)
    matrix[stored["index"].numpy()] = stored["count"].numpy()
    return matrix.reshape(shape)


def _is_confusion(value: Any) -> bool:
    if value is None or isinstance(value, torch.Tensor):
        return True
    if not (isinstance(value, dict) and set(value) == {"shape", "index", "count"}
            and all(isinstance(v, torch.Tensor) for v in value.values())):
        return False
    shape, index, count = value["shape"], value["index"], value["count"]
    return (shape.shape == (2,) and index.ndim == count.ndim == 1 and index.shape == count.shape
            and not index.is_floating_point() and not count.is_floating_point()
            and bool(((index >= 0) & (index < int(shape.prod()))).all()))


def _result_state(result: StreamResult) -> dict[str, Any]:
    return {
        "class_il": _matrix_to_list(result.class_il),
        "task_il": _matrix_to_list(result.task_il),
        "evaluations": list(result.evaluations),
        "history": [list(h) for h in result.history],
        "confusion": [None if m is None else _sparse_confusion(m) for m in result.confusion],
    }


def _result_from_state(state: dict[str, Any]) -> StreamResult:
    return StreamResult(
        class_il=np.array(state["class_il"], dtype=float),
        task_il=np.array(state["task_il"], dtype=float),
        evaluations=list(state["evaluations"]),
        history=[list(h) for h in state["history"]],
        confusion=[None if m is None else _dense_confusion(m) for m in state.get("confusion", [])],
    )


def _feed(h, obj: Any) -> None:
    """Hash ``obj`` (tensors, containers and plain values of a checkpoint) into ``h``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for value in obj:
            _feed(h, value)
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    elif obj is None or isinstance(obj, (bool, int, str)):
        text = repr(obj).encode("utf-8", "surrogatepass")
        h.update(f"{type(obj).__name__[0]}{len(text)}:".encode() + text)
    else:
        raise TypeError(f"a checkpoint holds tensors and plain values only, got {type(obj).__name__}")


def payload_digest(state: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's payload: everything in ``state`` but its ``digest`` entry.

    Tensors are hashed by dtype, shape and raw bytes, so any changed bit changes the digest.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def _named_tensors(obj: Any, prefix: str):
    """``(name, tensor)`` for every tensor in nested dicts and lists."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _named_tensors(value, f"{prefix}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _named_tensors(value, f"{prefix}[{i}]")


def _check_finite(state: dict[str, Any], path: Path, fix: str) -> None:
    """Refuse NaN or infinite floating-point values in the learner, buffer and optimiser states."""
    for key in _FINITE_KEYS:
        for name, tensor in _named_tensors(state.get(key), key):
            if tensor.is_floating_point() or tensor.is_complex():
                if name.startswith("buffer.") and name.endswith(".logits") and tensor.is_floating_point():
                    # stored logits of a head over seen classes are -inf for classes not yet seen (masked)
                    bad = int((torch.isnan(tensor) | torch.isposinf(tensor)).sum())
                else:
                    bad = int((~torch.isfinite(tensor)).sum())
                if bad:
                    raise CheckpointError(
                        f"{path} holds non-finite state: {name} has {bad} NaN or infinite value(s) of "
                        f"{tensor.numel()}; resuming would continue from a diverged or damaged model. {fix}"
                    )


def save_checkpoint(
    path: str | os.PathLike,
    *,
    config_hash: str,
    next_experience: int,
    next_epoch: int = 0,
    num_experiences: int,
    objects: dict[str, Any],
    result: StreamResult,
    zeroshot: dict[str, list[float]] | None,
    elapsed_s: float,
) -> Path:
    """Write a checkpoint atomically (the previous one stays intact until the new one is complete).

    Args:
        path: Checkpoint file (``<output_dir>/checkpoint.pt``).
        config_hash: :meth:`~alta.run.config.RunConfig.fingerprint` of the run.
        next_experience: The experience to continue with.
        next_epoch: The epoch of ``next_experience`` to continue with (0: its start).
        num_experiences: T.
        objects: The run's ``learner``, ``buffer``, ``schedule``, ``optimizer`` and
            ``scheduler`` (:data:`STATE_KEYS`; ``None`` where the run has none).
        result: The partial :class:`alta.StreamResult`.
        zeroshot: Zero-shot accuracies per experience (``{"class_il": [...], "task_il": [...]}``).
        elapsed_s: Wall time spent so far, over all sessions of the run.

    Returns:
        The path written.

    Raises:
        OutputError: the file cannot be written (full disk, the folder is gone); the previous
            checkpoint is intact.
    """
    states = {key: objects[key].state_dict() if objects.get(key) is not None else None for key in STATE_KEYS}
    states["learner"] = {k: v.detach().cpu() for k, v in states["learner"].items()}
    state = {
        "format": _FORMAT,
        "version": _VERSION,
        "config_hash": config_hash,
        "next_experience": int(next_experience),
        "next_epoch": int(next_epoch),
        "num_experiences": int(num_experiences),
        **states,
        "result": _result_state(result),
        "zeroshot": zeroshot,
        "elapsed_s": float(elapsed_s),
    }
    state["digest"] = payload_digest(state)
    return save_torch(path, state, parents=False)  # the run folder must exist: never re-created


def read_checkpoint(path: str | os.PathLike, *, config_hash: str, num_experiences: int) -> dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: The checkpoint file.
        config_hash: Fingerprint of the configuration the run is resumed with.
        num_experiences: T of the stream the run is resumed on.

    Returns:
        The checkpoint's contents.

    Raises:
        CheckpointError: unreadable or damaged file (its digest does not match its contents),
            not an alta run checkpoint, another checkpoint version, non-finite learner, buffer or
            optimiser state, or a checkpoint of a different run (configuration or stream).
    """
    path = Path(path)
    fix = (f"Delete {path} to restart the run from its first experience, or start a new run in another "
           f"--output-dir")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means a damaged file
        raise CheckpointError(
            f"cannot read the checkpoint {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"it is damaged or was not written by alta. {fix}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of `alta run` (expected format {_FORMAT!r}). {fix}")
    if state.get("version") not in _READABLE:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}; this alta reads versions {', '.join(map(str, _READABLE))}. "
            f"Resume it with the alta version that wrote it. {fix}"
        )
    if state["version"] >= 3:
        if not isinstance(state.get("digest"), str):
            raise CheckpointError(f"{path} lacks the digest of its contents, so they cannot be verified. {fix}")
        try:
            actual = payload_digest(state)
        except TypeError as exc:
            raise CheckpointError(f"{path} holds unexpected contents ({exc}). {fix}") from None
        if actual != state["digest"]:
            raise CheckpointError(
                f"{path} is damaged: the SHA-256 digest of its contents is {actual[:12]}, but it was written with "
                f"{state['digest'][:12]} (flipped bits on the disk, or a file edited by hand). {fix}"
            )
    else:
        logger.warning("%s was written by an older alta (checkpoint version %s) without a digest: its contents "
                       "cannot be verified", path, state["version"])
    missing = [k for k in ("config_hash", "next_experience", "num_experiences", "learner", "result", "elapsed_s")
               if k not in state]
    if missing:
        raise CheckpointError(f"{path} is incomplete: it lacks {', '.join(missing)}. {fix}")
    state.setdefault("next_epoch", 0)
    _check_types(state, path, fix)
    if state["config_hash"] != config_hash:
        raise CheckpointError(
            f"{path} belongs to a different run: its configuration fingerprint {state['config_hash'][:12]} differs "
            f"from this run's {config_hash[:12]} (config.yaml was edited after the run started?). {fix}"
        )
    done, total = state["next_experience"], state["num_experiences"]
    if total != num_experiences or not 0 <= done <= total:
        raise CheckpointError(
            f"{path} was written for a stream of {total} experiences ({done} done) but this run's stream has "
            f"{num_experiences}; the data changed since the run started. {fix}"
        )
    _check_finite(state, path, fix)
    return state


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_state(value: Any) -> bool:
    """A state dict as ``state_dict()`` returns it: string keys."""
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _is_matrix(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(row, list) and all(_is_number(v) for v in row) for row in value)


def _is_zeroshot(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and set(value) == {"class_il", "task_il"} and all(
        isinstance(v, list) and all(_is_number(x) for x in v) for v in value.values()))


# every field a checkpoint restores: (what it must be, how the message says it)
_FIELD_TYPES = {
    "config_hash": (lambda v: isinstance(v, str), "a string (a SHA-256 in hex)"),
    "next_experience": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "next_epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "num_experiences": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "elapsed_s": (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a finite number of seconds >= 0"),
    "zeroshot": (_is_zeroshot, "null or {'class_il': [numbers], 'task_il': [numbers]}"),
    "learner": (lambda v: _is_state(v) and all(isinstance(t, torch.Tensor) for t in v.values()),
                "a state dict of tensors"),
    **{key: (lambda v: v is None or _is_state(v), "null or a state dict") for key in STATE_KEYS[1:]},
    "result": (lambda v: _is_state(v) and {"class_il", "task_il", "evaluations", "history"} <= set(v),
               "a mapping with class_il, task_il, evaluations and history"),
    "result.class_il": (_is_matrix, "a list of rows of numbers"),
    "result.task_il": (_is_matrix, "a list of rows of numbers"),
    "result.evaluations": (lambda v: isinstance(v, list) and all(_is_state(r) for r in v), "a list of records"),
    "result.history": (lambda v: isinstance(v, list) and all(isinstance(h, list) and all(_is_state(e) for e in h)
                                                             for h in v), "a list of lists of epoch records"),
    "result.confusion": (lambda v: isinstance(v, list) and all(_is_confusion(m) for m in v),
                         "a list of nulls and confusion matrices (their shape, flat indices and counts)"),
}


def _check_types(state: dict[str, Any], path: Path, fix: str) -> None:
    """Refuse a field of the wrong type (a file edited by hand, its digest recomputed): every
    field a resume reads is checked here, so none fails later with a traceback."""
    for name, (ok, expected) in _FIELD_TYPES.items():
        outer, _, inner = name.partition(".")
        if inner and (not isinstance(state.get(outer), dict) or inner not in state[outer]):
            continue  # an optional part (result.confusion), or a result already refused
        value = state[outer][inner] if inner else state.get(outer)
        if not ok(value):
            shown = repr(value) if not isinstance(value, (dict, list)) else f"a {type(value).__name__}"
            raise CheckpointError(f"{path} is damaged: its {name} is {type(value).__name__} {shown[:80]}, expected "
                                  f"{expected}. {fix}")


def restore_checkpoint(state: dict[str, Any], *, objects: dict[str, Any]) -> StreamResult:
    """Load a checkpoint's states into freshly built run objects.

    Args:
        state: From :func:`read_checkpoint`.
        objects: The run's objects, as for :func:`save_checkpoint`.

    Returns:
        The partial :class:`alta.StreamResult` to continue.

    Raises:
        CheckpointError: a state that does not fit (another method, backbone, buffer size, ...).
    """
    objects["learner"].load_state_dict(state["learner"])  # raises CheckpointError itself
    for key in STATE_KEYS[1:]:
        target = objects.get(key)
        saved = state.get(key)
        if (saved is None) != (target is None):
            raise CheckpointError(
                f"the checkpoint {'has no' if saved is None else 'has a'} {key} state but this run "
                f"{'needs one' if saved is None else 'has none'}; it belongs to a different configuration"
            )
        if target is None:
            continue
        try:
            target.load_state_dict(saved)
        except CheckpointError:
            raise
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"the checkpoint's {key} state does not fit this run: {exc}") from None
    try:
        result = _result_from_state(state["result"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's partial results are malformed ({exc!r})") from None
    if not all(math.isfinite(v) for row in result.class_il[: state["next_experience"]] for v in row):
        raise CheckpointError("the checkpoint's accuracy matrix misses rows of completed experiences")
    return result
