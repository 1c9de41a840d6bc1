"""The training step of ALTA: one function for one process and for torchrun.

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023 (reference code github.com/vijaylee/ALTA, ``main.py``); the loss is
DER++'s (Buzzega et al., NeurIPS 2020).

:func:`train_step` is the whole step, a dozen lines to copy into your own loop::

    sample the memory -> learner.loss -> backward -> optimizer.step() -> buffer.add -> schedule.step()

Where a data-parallel run differs (how the memory is sampled, how the shards' losses are
weighed and their gradients reduced, how the batch's items reach the buffer) is a small hook,
``parallel``: :class:`LocalStep` (one process, the default) or
:class:`~alta.loop.parallel.DataParallelStep` (torchrun). The learner's loss knows nothing of
processes.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from ..errors import ConfigError
from ..losses import loss_terms_of
from .divergence import check_step

__all__ = ["train_step", "LocalStep", "check_step_objects"]

logger = logging.getLogger(__name__)

_NO_REPLAY_LOGGED: set[str] = set()


class LocalStep:
    """The parts of :func:`train_step` that a data-parallel step does otherwise, as one process
    does them: the memory as the buffer samples it, the learner's own loss, its gradients as
    computed, the batch's items as they are.

    :class:`~alta.loop.parallel.DataParallelStep` overrides each part (a shard of the memory, the
    shards' losses weighed by their global counts, one all-reduce, the gathered batch).
    """

    def sample_memory(self, buffer, size: int) -> Mapping[str, torch.Tensor]:
        """``size`` items drawn from ``buffer`` (uniformly, without replacement)."""
        return buffer.sample(size)

    def loss(self, learner, inputs: torch.Tensor, labels: torch.Tensor, *, memory, branches):
        """``(out, objective)``: the learner's :class:`~alta.losses.StepLoss` and the tensor to
        call ``backward`` on (its loss)."""
        out = learner.loss(inputs, labels, memory=memory, branches=branches)
        return out, out.loss

    def reduce(self, learner, branches, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step's statistics once the gradients are final (one process: as they are)."""
        return stats

    def gather_items(self, items: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the buffer is offered: this batch's items."""
        return items


_LOCAL = LocalStep()


def check_step_objects(optimizer, buffer) -> None:
    """The checks of a training step's optimizer and buffer.

    Raises:
        ConfigError: not an optimizer; a buffer that is not a :class:`~alta.MemoryBuffer`.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer must be a torch.optim.Optimizer over learner.trainable_parameters(), got "
            f"{type(optimizer).__name__}; build one with alta.build_optimizer(learner)"
        )
    if buffer is not None and not all(hasattr(buffer, a) for a in ("add", "sample", "is_empty", "fields")):
        raise ConfigError(f"buffer must be an alta.MemoryBuffer or None, got {type(buffer).__name__}")


def _log_ignored_buffer(learner, buffer) -> None:
    name = getattr(learner, "name", type(learner).__name__)
    if buffer is not None and not learner.replays and name not in _NO_REPLAY_LOGGED:
        logger.info("method %s does not replay; the buffer is ignored (as in the reference code)", name)
        _NO_REPLAY_LOGGED.add(name)


def train_step(
    learner,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    buffer=None,
    schedule=None,
    check_finite: bool = True,
    parallel: LocalStep | None = None,
) -> dict[str, torch.Tensor]:
    """One optimisation step of the method, then offer the batch to the buffer.

    sample the memory -> :meth:`~alta.CrossModalLearner.loss` -> backward -> ``optimizer.step()``
    -> ``buffer.add`` (every sample of the batch, with its label, frozen image feature f1,
    pre-step logits and experience id) -> ``schedule.step()`` (reference ``main.py``; DER++,
    Buzzega et al., NeurIPS 2020). Replay only when the learner replays and ``buffer`` is not
    empty.

    Args:
        learner: The learner: a :class:`~alta.CrossModalLearner`, or any object of the
            :class:`~alta.loop.protocol.Learner` protocol.
        inputs: Images (B, 3, R, R) or precomputed frozen image features (B, D).
        labels: Class ids of classes whose experience has begun.
        optimizer: Optimises ``learner.trainable_parameters()`` (see :func:`alta.build_optimizer`).
        buffer: Memory buffer for replay, or ``None`` (no replay: the sgd lower bound).
        schedule: Which branch learns (:class:`~alta.AlternatingSchedule`; default: both, the
            reference behaviour).
        check_finite: Refuse a non-finite loss or gradient (the update is not made: parameters,
            optimiser, buffer and schedule stay as they were) and check the parameters after the
            update, raising :class:`~alta.errors.TrainingError` (see :mod:`alta.loop.divergence`).
            Two host-device syncs per step; the loops pass ``False`` and check once per epoch.
        parallel: How the step runs over processes: ``None`` (one process) or a
            :class:`~alta.loop.parallel.DataParallelStep` under torchrun, where ``inputs`` and
            ``labels`` are this rank's shard of the global batch and every rank must call the
            step.

    Returns:
        Detached 0-dim tensors (no host-device sync with ``check_finite=False``): ``loss``, each
        loss term by name (ALTA: ``ce``, ``replay_ce``, ``replay_mse``; 0 without replay) and
        ``correct`` (right predictions in the batch); of the global batch under torchrun.

    Raises:
        TrainingError: with ``check_finite``, a non-finite loss, gradient or updated parameter.
        StateError: before ``learner.begin_experience``; labels of classes not begun yet.
        ConfigError: a bad optimizer, buffer or schedule; a method that trains nothing.
        ShapeError: wrong image size, feature dimension or label shape; a buffer of other fields.

    Shape:
        inputs: (B, 3, R, R) or (B, D); labels: (B,).
    """
    hook = _LOCAL if parallel is None else parallel
    check_step_objects(optimizer, buffer)
    branches = learner.active_branches(schedule)
    replay = buffer is not None and learner.replays
    _log_ignored_buffer(learner, buffer)
    if replay:
        learner.check_buffer(buffer)
    memory = hook.sample_memory(buffer, learner.replay_batch_size) if replay and not buffer.is_empty() else None

    out, objective = hook.loss(learner, inputs, labels, memory=memory, branches=branches)
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    stats = hook.reduce(learner, branches, out.stats())
    if check_finite:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        lr = optimizer.param_groups[0]["lr"]
        try:
            check_step("gradients", loss=stats["loss"], tensors=[p.grad for p in params if p.grad is not None],
                       lr=lr, terms=loss_terms_of(stats))
        except Exception:
            optimizer.zero_grad(set_to_none=True)
            raise
    optimizer.step()  # parameters of inactive branches have no gradient: SGD leaves them untouched
    if check_finite:
        check_step("parameters", loss=stats["loss"], tensors=[p.detach() for p in params], lr=lr)

    if replay and getattr(buffer, "offered_per", "step") == "step":  # herding is offered whole experiences instead
        buffer.add(**hook.gather_items(out.memory_items()))  # the pre-step logits, as the reference stores them
    if schedule is not None:
        schedule.step()
    return stats
