"""The loops of ALTA, built only from alta's public pieces: one experience, a whole stream.

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023 (reference code github.com/vijaylee/ALTA, ``main.py``).

- :func:`fit_experience` trains on one experience (the reference protocol: ``epochs`` passes,
  batch 32, the learning rate stepped once per epoch) with :func:`~alta.loop.step.train_step`;
- :func:`run_stream` runs a whole stream, evaluating every ``eval_every`` epochs and filling the
  accuracy matrices.

Their settings are one :class:`~alta.loop.config.LoopConfig`; what happens around them
(progress bars, logs, result files, checkpoints, loggers) is :mod:`alta.loop.callbacks`. A
learner is anything of the :class:`~alta.loop.protocol.Learner` protocol;
:class:`ExperienceTrainer` is one learner's part of the loop, shared with the run groups of
:mod:`alta.loop.group`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .. import distributed as _dist
from ..errors import ConfigError
from ..losses import loss_terms_of
from ..metrics import old_new_accuracy
from .batches import round_steps, training_batches
from .cache import FeatureCache
from .callbacks import Callback, as_callback_list
from .config import LoopConfig
from .divergence import DivergenceMonitor
from .evaluation import EvaluationResult, evaluate
from .exemplars import offer_experience
from .parallel import DataParallelStep, check_ranks_agree
from .protocol import check_learner
from .result import StreamResult
from .step import train_step

__all__ = ["fit_experience", "run_stream", "evaluate_stream", "ExperienceTrainer", "stream_experiences"]


def _epoch_stats(sums: dict[str, torch.Tensor], *, epoch: int, steps: int, seen: int, lr: float) -> dict:
    stats = {"epoch": epoch, "steps": steps, "samples": seen, "lr": lr}
    for key in [k for k in sums if k != "correct"] or ["loss"]:  # the loss, then each loss term
        stats[key] = float(sums[key]) / steps if steps else float("nan")
    stats["train_accuracy"] = 100.0 * float(sums["correct"]) / seen if seen else float("nan")
    return stats


def fit_experience(
    learner,
    experience,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    buffer=None,
    schedule=None,
    loop: LoopConfig | None = None,
    cache: FeatureCache | None = None,
    callbacks: Sequence[Callback] | Callback | None = None,
    start_epoch: int = 0,
    result: StreamResult | None = None,
    end_experience: bool = True,
) -> list[dict]:
    """Train ``learner`` on one experience: ``begin_experience``, epochs of :func:`train_step`,
    ``end_experience``.

    Args:
        learner: The :class:`~alta.CrossModalLearner`.
        experience: The :class:`~alta.data.Experience` to learn.
        optimizer: From :func:`alta.build_optimizer`, created once per run.
        scheduler: Its learning-rate scheduler, stepped once per epoch (or ``None``).
        buffer: Memory buffer for replay, or ``None``.
        schedule: An :class:`~alta.AlternatingSchedule`, or ``None`` (both branches).
        loop: Epochs, batch size, seed, cache mode, workers (default :class:`LoopConfig`).
        cache: Feature cache for the cached modes.
        callbacks: :class:`~alta.loop.callbacks.Callback` s; they get ``on_experience_start``,
            ``on_epoch_start``, ``on_step_end`` and ``on_epoch_end``.
        start_epoch: First epoch to run (the epochs before it are done: resume).
        result: The run's partial :class:`StreamResult` (from :func:`run_stream`): the epoch
            statistics go to ``result.history[experience.index]`` and ``on_epoch_end`` gets it.
        end_experience: Call ``learner.end_experience`` after the last epoch (``False``: the
            caller does, e.g. after evaluating first as the reference code does).

    Returns:
        The experience's statistics, one dict per epoch: ``epoch``, ``loss`` (mean over steps),
        ``ce``, ``replay_ce``, ``replay_mse``, ``train_accuracy`` (%), ``lr``, ``steps``, ``samples``.

    Raises:
        ConfigError: ``start_epoch`` outside ``[0, epochs]``; a ``result`` without the history
            of the experiences before this one.
        TrainingError: a non-finite loss or parameter in an epoch (checked once per epoch,
            before ``on_epoch_end``; see :mod:`alta.loop.divergence`).
    """
    loop = LoopConfig() if loop is None else loop
    trainer = ExperienceTrainer(learner, optimizer=optimizer, scheduler=scheduler, buffer=buffer, schedule=schedule,
                                loop=loop, callbacks=callbacks, result=result)
    trainer.begin(experience, start_epoch=start_epoch)
    if cache is None and loop.train_cache != "none":
        cache = FeatureCache(distributed=loop.distributed)
    for epoch in range(start_epoch, loop.epochs):
        trainer.begin_epoch(epoch)
        batches = training_batches(experience, backbone=learner.backbone, epoch=epoch, loop=loop, cache=cache,
                                   rank=trainer.rank, world_size=trainer.world_size)
        for inputs, labels in batches:
            trainer.step(inputs, labels)
        trainer.end_epoch()
    if end_experience:
        learner.end_experience(experience)
    return trainer.history


class ExperienceTrainer:
    """One learner's part of the loop over an experience, in the order :func:`fit_experience`
    calls them: :meth:`begin`, then per epoch :meth:`begin_epoch`, :meth:`step` per batch and
    :meth:`end_epoch`.

    :func:`fit_experience` drives one of them over the batches of
    :func:`~alta.loop.batches.training_batches` (epochs, or rounds of an iteration budget);
    :func:`alta.loop.group.run_group` drives K of them over the same batches (one image-encoder
    forward per step for all K), so both loops are the same code.

    Args:
        learner: The :class:`~alta.CrossModalLearner`.
        optimizer: Its optimizer (see :func:`train_step`).
        scheduler: Its learning-rate scheduler, stepped at every :meth:`end_epoch`, or ``None``.
        buffer: Its memory buffer, or ``None``.
        schedule: Its :class:`~alta.AlternatingSchedule`, or ``None``.
        loop: The loop's settings (epochs, batch size).
        callbacks: Get ``on_experience_start``, ``on_epoch_start``, ``on_step_end``, ``on_epoch_end``.
        result: The run's partial :class:`StreamResult` (statistics go to its ``history``), or ``None``.
    """

    def __init__(self, learner, *, optimizer, scheduler=None, buffer=None, schedule=None, loop: LoopConfig,
                 callbacks: Sequence[Callback] | Callback | None = None, result: StreamResult | None = None) -> None:
        check_learner(learner)
        self.learner, self.optimizer, self.scheduler = learner, optimizer, scheduler
        self.buffer, self.schedule, self.loop, self.result = buffer, schedule, loop, result
        self.callbacks = as_callback_list(callbacks)
        self.history: list[dict] = []
        self._experience = self._epoch = -1
        self._num_steps = self._num_samples = 0
        self.parallel = loop.distributed and _dist.is_distributed()
        self.rank, self.world_size = (_dist.get_rank(), _dist.get_world_size()) if self.parallel else (0, 1)

    def begin(self, experience, *, start_epoch: int = 0) -> None:
        """``learner.begin_experience`` and ``on_experience_start``; ``start_epoch`` > 0 on resume.

        Raises:
            ConfigError: ``start_epoch`` outside ``[0, epochs]``; a ``result`` without the history
                of the experiences before this one.
        """
        epochs = self.loop.epochs
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or not 0 <= start_epoch <= epochs:
            raise ConfigError(f"start_epoch must be an integer in [0, {epochs}] (epochs), got {start_epoch!r}")
        t = int(experience.index)
        if self.result is None:
            self.history = []
        else:
            history = self.result.history
            if len(history) == t:
                history.append([])
            if len(history) != t + 1:
                raise ConfigError(
                    f"result holds the history of {len(history)} experience(s) but experience {t} is next; pass "
                    f"the StreamResult of this run (resumed from its checkpoint)"
                )
            self.history = history[t]
        self.learner.train()
        self.learner.begin_experience(experience)
        self._experience = t
        self._num_samples = len(experience.train)
        self._per_pass = math.ceil(self._num_samples / self.loop.batch_size)  # batches per pass over the data
        self._num_steps = self._per_pass
        self._first_step = 0  # the epoch's (round's) first step, counted from the experience's first
        self.callbacks.on_experience_start(experience=t, start_epoch=start_epoch)

    def begin_epoch(self, epoch: int) -> None:
        """``on_epoch_start``; the statistics of epoch ``epoch`` start from zero."""
        self._epoch = epoch
        self._sums: dict[str, torch.Tensor] = {}
        self._steps, self._seen = 0, 0
        if self.loop.iterations is not None:  # a round of the iteration budget
            steps = round_steps(round_index=epoch, loop=self.loop)
            self._num_steps, self._first_step = len(steps), steps.start
        self._monitor = DivergenceMonitor()
        self._lr = self.optimizer.param_groups[0]["lr"]
        self.callbacks.on_epoch_start(experience=self._experience, epoch=epoch, num_epochs=self.loop.epochs,
                                      num_steps=self._num_steps)

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One :func:`train_step` on a batch (images (B, 3, R, R) or frozen features (B, D)), then
        ``on_step_end``; returns the step's detached statistics.

        With ``loop.distributed`` under torchrun the batch is this rank's shard of the global batch
        (:func:`epoch_batches` with :attr:`rank` and :attr:`world_size`) and the step runs with a
        :class:`~alta.loop.parallel.DataParallelStep`. The loss is checked once per epoch (:meth:`end_epoch`),
        not per step (:mod:`alta.loop.divergence`)."""
        position = (self._first_step + self._steps) % self._per_pass  # the batch's place in its pass
        global_size = min(self.loop.batch_size, self._num_samples - position * self.loop.batch_size)
        parallel = DataParallelStep(shard_sizes=_dist.split_sizes(global_size, self.world_size)) if self.parallel \
            else None
        out = train_step(self.learner, inputs, labels, optimizer=self.optimizer, buffer=self.buffer,
                         schedule=self.schedule, check_finite=False, parallel=parallel)
        self._monitor.update(self._steps, out["loss"])
        for key, value in out.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value  # on device: no sync per step
        self.callbacks.on_step_end(experience=self._experience, epoch=self._epoch, step=self._steps, outputs=out)
        self._steps += 1
        self._seen += global_size
        return out

    def end_epoch(self) -> dict:
        """The epoch's statistics checked for divergence (:class:`~alta.TrainingError` on a
        non-finite loss or parameter), into the history, the learning rate and schedule stepped,
        then ``on_epoch_end``; returns the statistics."""
        stats = _epoch_stats(self._sums, epoch=self._epoch, steps=self._steps, seen=self._seen, lr=self._lr)
        # before the epoch-end callbacks: no checkpoint of a diverged epoch (alta.loop.divergence)
        self._monitor.check(mean_loss=stats["loss"] if self._steps else 0.0,
                            parameters=self.learner.trainable_parameters(), experience=self._experience,
                            epoch=self._epoch, lr=self._lr,
                            terms=loss_terms_of(stats))
        self.history.append(stats)
        if self.scheduler is not None:
            self.scheduler.step()
        if self.schedule is not None:
            self.schedule.end_epoch()
        self.callbacks.on_epoch_end(experience=self._experience, epoch=self._epoch, stats=stats, result=self.result)
        return stats


class PeriodicEvaluation(Callback):
    """``run_stream``'s evaluation every ``eval_every`` epochs (the last epoch excepted: the
    end-of-experience evaluation covers it), dispatched before the user's ``on_epoch_end``."""

    def __init__(self, learner, evals: list, covered: list[int], *, loop: LoopConfig, cache: FeatureCache,
                 callbacks) -> None:
        self.learner, self.evals, self.covered = learner, evals, covered
        self.loop, self.cache, self.callbacks = loop, cache, callbacks

    def on_epoch_end(self, *, experience: int, epoch: int, stats: dict, result: StreamResult) -> None:
        every, epochs = self.loop.eval_every, self.loop.epochs
        if every and (epoch + 1) % every == 0 and epoch + 1 < epochs:
            seen = evaluate(self.learner, self.evals[: self.covered[experience]],
                            batch_size=self.loop.eval_batch_size, num_workers=self.loop.num_workers, cache=self.cache,
                            distributed=self.loop.distributed)
            _record(result, experience, epoch, seen, stats, self.callbacks)


def run_stream(
    learner,
    experiences: Sequence,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    buffer=None,
    schedule=None,
    loop: LoopConfig | None = None,
    cache: FeatureCache | None = None,
    callbacks: Sequence[Callback] | Callback | None = None,
    result: StreamResult | None = None,
    start_experience: int = 0,
    start_epoch: int = 0,
    eval_experiences: Sequence | None = None,
) -> StreamResult:
    """Train through a stream and measure the accuracy matrices.

    After every ``loop.eval_every`` epochs the experiences seen so far are evaluated (the
    reference protocol); after each experience all experiences are evaluated, which fills row t
    of the accuracy matrices (the entries k > t feed forward transfer). Test features are cached
    (exact), so evaluations after the first cost only the heads. With
    ``loop.eval_before_snapshot`` the end-of-experience evaluation comes before
    ``learner.end_experience`` (the reference code's order). Each record holds the top-1 and
    top-5 accuracies; the end-of-experience record also the old-class and new-class accuracy
    (``old_class_accuracy``, ``new_class_accuracy``; ``None`` where there are no such classes),
    and ``result.confusion[t]`` its confusion matrix.

    Args:
        learner: The :class:`~alta.CrossModalLearner`.
        experiences: The stream (or any sequence of experiences).
        optimizer: From :func:`alta.build_optimizer`, created once per run.
        scheduler: Its learning-rate scheduler (stepped once per epoch), or ``None``.
        buffer: Memory buffer (``None``: no replay).
        schedule: :class:`~alta.AlternatingSchedule` or ``None``.
        loop: The loop's settings (default :class:`LoopConfig`: the reference protocol).
        cache: Feature cache shared by training (cached modes) and evaluation; a new
            in-memory cache when ``None``.
        callbacks: :class:`~alta.loop.callbacks.Callback` s receiving every event of the run.
        result: A partial result to continue (resume); ``start_experience`` and
            ``start_epoch`` say where.
        start_experience: First experience to train (earlier ones are done).
        start_epoch: First epoch of ``start_experience`` to run (earlier ones are done; their
            statistics are in ``result.history``).
        eval_experiences: The experiences to evaluate on; by default the stream's
            ``eval_experiences`` when ``experiences`` is a :class:`~alta.data.ScenarioStream`
            (for a joint stream, the sequential split: its row of R holds per-experience
            accuracies comparable with a continual run's), else ``experiences``. Periodic
            evaluations cover the evaluation experiences whose classes have all been trained.

    Returns:
        The :class:`StreamResult`, with (T, K) matrices for K evaluation experiences.

    Raises:
        ConfigError: no experience or evaluation experience, or a start position outside the stream.
    """
    loop = LoopConfig() if loop is None else loop
    callbacks = as_callback_list(callbacks)
    experiences, evals = stream_experiences(experiences, eval_experiences, start_experience=start_experience,
                                            caller="run_stream")
    num = len(experiences)
    if result is None:
        result = StreamResult.empty(num, len(evals))
    if cache is None:
        cache = FeatureCache(distributed=loop.distributed)
    if loop.distributed and _dist.is_distributed():
        check_ranks_agree(learner, buffer)
    covered = covered_evaluations(experiences, evals)
    periodic = PeriodicEvaluation(learner, evals, covered, loop=loop, cache=cache, callbacks=callbacks)
    epoch_callbacks = [periodic, *callbacks]
    callbacks.on_run_start(num_experiences=num, start_experience=start_experience, start_epoch=start_epoch,
                           result=result)
    for t in range(start_experience, num):
        history = fit_experience(
            learner, experiences[t], optimizer=optimizer, scheduler=scheduler, buffer=buffer, schedule=schedule,
            loop=loop, cache=cache, callbacks=epoch_callbacks, start_epoch=start_epoch if t == start_experience else 0,
            result=result, end_experience=not loop.eval_before_snapshot,
        )
        finish_experience(learner, evals, experiences[t], t, covered=covered[t], loop=loop, cache=cache,
                           result=result, history=history, callbacks=callbacks, buffer=buffer)
    callbacks.on_run_end(result=result)
    return result


def finish_experience(learner, evals: Sequence, experience, t: int, *, covered: int, loop: LoopConfig,
                       cache: FeatureCache | None, result: StreamResult, history: list[dict], callbacks,
                       buffer=None) -> None:
    """The end of training experience ``t`` (``experience``) in :func:`run_stream`: evaluate every
    evaluation experience (row t of the accuracy matrices and the confusion matrix; sharded over
    the ranks with ``loop.distributed``), ``learner.end_experience`` first or, with
    ``loop.eval_before_snapshot``, after; record the evaluation of the ``covered`` leading
    evaluation experiences with the old/new-class accuracy; offer the experience to a ``buffer``
    that keeps exemplars per experience (herding, :func:`~alta.loop.exemplars.offer_experience`);
    ``on_experience_end``."""
    full = evaluate(learner, evals, batch_size=loop.eval_batch_size, num_workers=loop.num_workers, cache=cache,
                    distributed=loop.distributed)
    if loop.eval_before_snapshot:
        learner.end_experience(experience)
    result.class_il[t, :] = full.class_il
    result.task_il[t, :] = full.task_il
    result.confusion[t] = full.confusion
    split = {k: None if math.isnan(v) else v  # JSON null: no old classes at t = 0
             for k, v in old_new_accuracy(full.confusion, experience.class_to_experience, t).items()}
    _record(result, t, loop.epochs - 1, full.first(covered), history[-1] if history else {}, callbacks,
            old_class_accuracy=split["old"], new_class_accuracy=split["new"])
    offer_experience(learner, experience, buffer, loop=loop, cache=cache)
    callbacks.on_experience_end(experience=t, result=result)


def stream_experiences(experiences: Sequence, eval_experiences: Sequence | None, *, start_experience: int,
                       caller: str) -> tuple[list, list]:
    """The training and evaluation experiences of a loop over a stream (:func:`run_stream`,
    :func:`alta.loop.group.run_group`), checked once.

    Args:
        experiences: The stream (or any sequence of experiences).
        eval_experiences: The experiences to evaluate on, or ``None``: the stream's
            ``eval_experiences`` (a joint stream's sequential split) when it has them, else
            ``experiences``.
        start_experience: First experience to train.
        caller: The loop's name, for the messages.

    Returns:
        ``(experiences, evals)`` as lists.

    Raises:
        ConfigError: no experience or evaluation experience, or ``start_experience`` outside
            ``[0, T)``.
    """
    if eval_experiences is None:
        eval_experiences = getattr(experiences, "eval_experiences", None)
    experiences = list(experiences)
    num = len(experiences)
    evals = experiences if eval_experiences is None else list(eval_experiences)
    if num == 0:
        raise ConfigError(f"{caller} needs at least one experience, got none")
    if isinstance(start_experience, bool) or not isinstance(start_experience, int) or not 0 <= start_experience < num:
        raise ConfigError(f"start_experience must be an integer in [0, {num}), got {start_experience!r}")
    if not evals:
        raise ConfigError(f"{caller} needs at least one evaluation experience, got none")
    return experiences, evals


def covered_evaluations(experiences: Sequence, evals: Sequence) -> list[int]:
    """For every training experience t, how many leading evaluation experiences have all their
    classes trained by the end of t (t + 1 when both are the same split; K for the joint bound)."""
    seen: set[int] = set()
    covered = []
    for experience in experiences:
        seen.update(int(c) for c in experience.classes)
        k = 0
        while k < len(evals) and {int(c) for c in evals[k].classes} <= seen:
            k += 1
        covered.append(max(k, 1))
    return covered


def _record(result: StreamResult, experience: int, epoch: int, evaluation: EvaluationResult, stats: dict,
            callbacks, **extra) -> None:
    record = {"experience": experience, "epoch": epoch + 1, **evaluation.as_dict(), "loss": stats.get("loss"), **extra}
    result.evaluations.append(record)
    callbacks.on_evaluation(record=record)


def evaluate_stream(
    learner,
    experiences: Sequence,
    *,
    loop: LoopConfig | None = None,
    cache: FeatureCache | None = None,
    callbacks: Sequence[Callback] | Callback | None = None,
    result: StreamResult | None = None,
    start_experience: int = 0,
    eval_experiences: Sequence | None = None,
    progress: bool = False,
) -> StreamResult:
    """The loop of a learner that trains nothing (zero-shot CLIP): every experience is begun and
    ended without a step and evaluated, with the events of :func:`run_stream` (no epoch events).

    Args:
        learner: A learner (e.g. ``CrossModalLearner(..., method="zeroshot")``).
        experiences: The stream (or any sequence of experiences).
        loop: The loop's settings (evaluation batch size, workers, ``distributed``).
        cache: Feature cache of the test features; a new in-memory one when ``None``.
        callbacks: Callbacks receiving the events.
        result: A partial result to continue (resume), or ``None``.
        start_experience: First experience to evaluate after.
        eval_experiences: The experiences to evaluate on (as in :func:`run_stream`).
        progress: Show a progress bar per evaluation.

    Returns:
        The :class:`StreamResult` (its row t: the accuracies after experience t).

    Raises:
        ConfigError: no experience or evaluation experience, or a start position outside the stream.
    """
    loop = LoopConfig() if loop is None else loop
    callbacks = as_callback_list(callbacks)
    experiences, evals = stream_experiences(experiences, eval_experiences, start_experience=start_experience,
                                            caller="evaluate_stream")
    if result is None:
        result = StreamResult.empty(len(experiences), len(evals))
    if cache is None:
        cache = FeatureCache(distributed=loop.distributed)
    covered = covered_evaluations(experiences, evals)
    callbacks.on_run_start(num_experiences=len(experiences), start_experience=start_experience, start_epoch=0,
                           result=result)
    for t in range(start_experience, len(experiences)):
        learner.begin_experience(experiences[t])
        callbacks.on_experience_start(experience=t, start_epoch=0)
        learner.end_experience(experiences[t])
        full = evaluate(learner, evals, batch_size=loop.eval_batch_size, num_workers=loop.num_workers, cache=cache,
                        progress=progress, distributed=loop.distributed)
        result.class_il[t, :] = full.class_il
        result.task_il[t, :] = full.task_il
        result.history.append([])
        result.confusion[t] = full.confusion
        split = {key: None if math.isnan(v) else v
                 for key, v in old_new_accuracy(full.confusion, experiences[t].class_to_experience, t).items()}
        _record(result, t, -1, full.first(covered[t]), {}, callbacks,  # epoch 0: nothing trained
                old_class_accuracy=split["old"], new_class_accuracy=split["new"])
        callbacks.on_experience_end(experience=t, result=result)
    callbacks.on_run_end(result=result)
    return result
