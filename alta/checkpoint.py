"""Checkpoints of a run: everything needed to continue it after the last finished epoch.

A checkpoint is written (atomically, with :func:`alta.io.save_torch`) after every epoch and
every experience of a run of ALTA (Li et al., IEEE TMM 2023) by the
:class:`~alta.experiment.Checkpointer` callback, so an interrupted run loses at most one epoch. It holds the learner's trainable state (context vectors,
adapter, prompt snapshots, stream position), the buffer, the alternating schedule's counters, the
optimiser and learning-rate scheduler, the partial :class:`alta.StreamResult`, the zero-shot
baseline, where to continue (experience, epoch) and the fingerprint of the resolved configuration.
:func:`alta.run_stream` derives every per-epoch random choice from ``(seed, experience, epoch)``
and the buffer's generator state is saved, so a run resumed from a checkpoint repeats the
uninterrupted run exactly (on the same device and software).

Everything is stored as tensors and plain Python values, so the file is read back with
``torch.load(..., weights_only=True)``: loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError
from .io import save_torch
from .training import StreamResult  # noqa: F401 - the type of results

__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "read_checkpoint", "restore_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "alta.run-checkpoint"
_VERSION = 2  # 2: adds next_epoch (epoch-level checkpoints); version 1 files are read as next_epoch 0
_READABLE = (1, 2)
# the run objects whose states a checkpoint holds (None where a run has none)
STATE_KEYS = ("learner", "buffer", "schedule", "optimizer", "scheduler")


def _matrix_to_list(matrix: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in np.asarray(matrix, dtype=float)]


def _result_state(result: StreamResult) -> dict[str, Any]:
    return {
        "class_il": _matrix_to_list(result.class_il),
        "task_il": _matrix_to_list(result.task_il),
        "evaluations": list(result.evaluations),
        "history": [list(h) for h in result.history],
    }


def _result_from_state(state: dict[str, Any]) -> StreamResult:
    return StreamResult(
        class_il=np.array(state["class_il"], dtype=float),
        task_il=np.array(state["task_il"], dtype=float),
        evaluations=list(state["evaluations"]),
        history=[list(h) for h in state["history"]],
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
        config_hash: :meth:`~alta.experiment.RunConfig.fingerprint` of the run.
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
    return save_torch(path, state)


def read_checkpoint(path: str | os.PathLike, *, config_hash: str, num_experiences: int) -> dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: The checkpoint file.
        config_hash: Fingerprint of the configuration the run is resumed with.
        num_experiences: T of the stream the run is resumed on.

    Returns:
        The checkpoint's contents.

    Raises:
        CheckpointError: unreadable or damaged file, not an alta run checkpoint, another
            checkpoint version, or a checkpoint of a different run (configuration or stream).
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
    missing = [k for k in ("config_hash", "next_experience", "num_experiences", "learner", "result", "elapsed_s")
               if k not in state]
    if missing:
        raise CheckpointError(f"{path} is incomplete: it lacks {', '.join(missing)}. {fix}")
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
    state.setdefault("next_epoch", 0)
    return state


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
