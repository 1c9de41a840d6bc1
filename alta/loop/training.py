"""The training step and the loops of ALTA, built only from alta's public pieces.

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023 (reference code github.com/vijaylee/ALTA, ``main.py``).

- :func:`train_step` is one step: sample the buffer -> loss -> backward -> optimiser step ->
  offer the batch to the buffer -> advance the schedule. A dozen lines to copy into your loop.
- :func:`fit_experience` trains on one experience (the reference protocol: ``epochs`` passes,
  batch 32, the learning rate stepped once per epoch); :func:`run_stream` runs a whole stream,
  evaluating every ``eval_every`` epochs and filling the accuracy matrices. Their settings are one
  :class:`LoopConfig`; what happens around them (progress bars, logs, result files, checkpoints,
  loggers) is :mod:`alta.loop.callbacks`.

Training batches come from :func:`epoch_batches`, which supports three feature-cache modes:

- ``"none"``: images are loaded and augmented every epoch and encoded by the frozen image
  encoder at every step (faithful to the reference);
- ``"fixed"``: each training image is encoded once under the experience's deterministic test
  transform (no augmentation), then only the small heads run (exact for that protocol);
- ``"views:K"``: K augmented views per image are encoded once; every epoch draws one of them per
  image (an approximation of per-epoch augmentation).

Randomness (shuffling, augmentation, view choice) is derived from ``(seed, experience, epoch)``,
so a run resumed at an epoch boundary repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import distributed as _dist
from .cache import FeatureCache, parse_cache_mode
from .callbacks import Callback, as_callback_list
from ..config import MAX_BATCH_SIZE, ConfigSection, check_int, check_seed, in_section
from .divergence import DivergenceMonitor, check_step
from ..errors import ConfigError
from .evaluation import EvaluationResult, evaluate
from ..metrics import old_new_accuracy
from ..replay import check_buffer_fields
from ..schedule import AlternatingSchedule
from ..seeding import SeededItems, derive_seed

__all__ = ["LoopConfig", "train_step", "epoch_batches", "fit_experience", "ExperienceTrainer", "run_stream",
           "StreamResult", "TrainConfig", "derive_seed"]

logger = logging.getLogger(__name__)




MAX_CACHE_VIEWS = 1000  # K views of every training image are encoded up front


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the training loops (:func:`fit_experience`, :func:`run_stream`), validated once.

    The defaults are the reference protocol (METHOD.md Sec. 4): 30 epochs per experience, batch
    32, evaluation every 10 epochs.

    Attributes:
        epochs: Epochs per experience (30 in the paper; 100 for the joint upper bound).
        batch_size: Training batch size B (32).
        seed: Run seed: shuffling, augmentation and cached views derive from
            ``(seed, experience, epoch, sample)``.
        train_cache: Training-feature cache mode: ``"none"`` (faithful: images encoded every
            step), ``"fixed"`` or ``"views:K"`` (see :mod:`alta.loop.training`).
        eval_every: Evaluate the experiences seen so far every this many epochs (0: only at
            experience ends).
        eval_batch_size: Test batch size.
        num_workers: DataLoader workers (never changes results).
        eval_before_snapshot: Evaluate the experience just trained before
            ``learner.end_experience`` snapshots its prompts, as the reference code does
            (``main.py`` evaluates inside its epoch loop; default ``False``: after).
        distributed: Run data-parallel over the ranks of the process group (torchrun; see
            :mod:`alta.distributed`): each rank trains on its shard of every global batch of
            ``batch_size``, features are cached and evaluations counted on shards. The results
            are those of one process. Without a process group it changes nothing.

    Raises:
        ConfigError: a value out of range (the message names the field).

    Examples:
        >>> LoopConfig(epochs=5, train_cache="fixed").batch_size
        32
    """

    epochs: int = 30
    batch_size: int = 32
    seed: int = 0
    train_cache: str = "none"
    eval_every: int = 10
    eval_batch_size: int = 256
    num_workers: int = 0
    eval_before_snapshot: bool = False
    distributed: bool = False

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs", low=1)
        check_int(self.batch_size, "batch_size", low=1, high=MAX_BATCH_SIZE,
                  why="images per training step (the paper uses 32)")
        check_seed(self.seed, "seed")
        try:
            kind, views = parse_cache_mode(self.train_cache)
        except ConfigError as exc:
            raise ConfigError(f"config key 'train_cache': {exc}") from None
        if kind == "views" and views > MAX_CACHE_VIEWS:
            raise ConfigError(
                f"config key 'train_cache' is {self.train_cache!r}: K views of every training image are encoded up "
                f"front, so K must be in [1, {MAX_CACHE_VIEWS}] (e.g. 'views:4')"
            )
        check_int(self.eval_every, "eval_every", low=0)
        check_int(self.eval_batch_size, "eval_batch_size", low=1, high=MAX_BATCH_SIZE,
                  why="test images per forward pass (default 256; it does not change results)")
        check_int(self.num_workers, "num_workers", low=0)
        for name in ("eval_before_snapshot", "distributed"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config key {name!r} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "LoopConfig":
        """Build from a mapping, refusing unknown keys by name (with the closest valid one).

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        data = dict(data or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown loop setting {key!r}{hint} Valid: {', '.join(valid)}")
        return cls(**data)


_NO_REPLAY_LOGGED: set[str] = set()


def check_step_objects(optimizer, buffer) -> None:
    """The checks of a training step's optimizer and buffer (shared with :mod:`alta.distributed`).

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
    if buffer is not None and not learner.method.replay and learner.method.name not in _NO_REPLAY_LOGGED:
        logger.info("method %s does not replay; the buffer is ignored (as in the reference code)", learner.method.name)
        _NO_REPLAY_LOGGED.add(learner.method.name)


def train_step(
    learner,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    buffer=None,
    schedule=None,
    check_finite: bool = True,
) -> dict[str, torch.Tensor]:
    """One optimisation step of the method, then offer the batch to the buffer.

    sample the memory -> :meth:`~alta.CrossModalLearner.loss` -> backward -> ``optimizer.step()``
    -> ``buffer.add`` (every sample of the batch, with its label, frozen image feature f1,
    pre-step logits and experience id) -> ``schedule.step()`` (reference ``main.py``; DER++,
    Buzzega et al., NeurIPS 2020). Replay only when the method replays and ``buffer`` is not empty.

    Args:
        learner: The :class:`~alta.CrossModalLearner`.
        inputs: Images (B, 3, R, R) or precomputed frozen image features (B, D).
        labels: Class ids in ``[0, C)``.
        optimizer: Optimises ``learner.trainable_parameters()`` (see :func:`alta.build_optimizer`).
        buffer: Memory buffer for replay, or ``None`` (no replay: the sgd lower bound).
        schedule: Which branch learns (:class:`~alta.AlternatingSchedule`; default: both, the
            reference behaviour).
        check_finite: Refuse a non-finite loss or gradient (the update is not made: parameters,
            optimiser, buffer and schedule stay as they were) and check the parameters after the
            update, raising :class:`~alta.errors.TrainingError` (see :mod:`alta.loop.divergence`).
            Two host-device syncs per step; the loops pass ``False`` and check once per epoch.

    Returns:
        Detached 0-dim tensors (no host-device sync with ``check_finite=False``): ``loss``,
        ``ce``, ``replay_ce``, ``replay_mse`` (0 without replay) and ``correct`` (right
        predictions in the batch).

    Raises:
        TrainingError: with ``check_finite``, a non-finite loss, gradient or updated parameter.
        StateError: before ``learner.begin_experience``.
        ConfigError: a bad optimizer, buffer or schedule; a method that trains nothing.
        ShapeError: wrong image size, feature dimension or label shape; a buffer of other fields.

    Shape:
        inputs: (B, 3, R, R) or (B, D); labels: (B,).
    """
    check_step_objects(optimizer, buffer)
    branches = learner.active_branches(schedule)
    replay = buffer is not None and learner.method.replay
    _log_ignored_buffer(learner, buffer)
    if replay:
        check_buffer_fields(buffer.fields)
    memory = buffer.sample(learner.replay_batch_size) if replay and not buffer.is_empty() else None

    out = learner.loss(inputs, labels, memory=memory, branches=branches)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if check_finite:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        lr = optimizer.param_groups[0]["lr"]
        try:
            check_step("gradients", loss=out.loss.detach(), tensors=[p.grad for p in params if p.grad is not None],
                       lr=lr)
        except Exception:
            optimizer.zero_grad(set_to_none=True)
            raise
    optimizer.step()  # parameters of inactive branches have no gradient: SGD leaves them untouched
    if check_finite:
        check_step("parameters", loss=out.loss.detach(), tensors=[p.detach() for p in params], lr=lr)

    if replay:
        buffer.add(**out.memory_items())  # the pre-step logits, as the reference stores them
    if schedule is not None:
        schedule.step()
    return out.stats()


def epoch_batches(
    experience,
    *,
    backbone,
    epoch: int,
    batch_size: int = LoopConfig.batch_size,
    seed: int = LoopConfig.seed,
    train_cache: str = LoopConfig.train_cache,
    cache: FeatureCache | None = None,
    num_workers: int = LoopConfig.num_workers,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled training batches of one epoch of ``experience``.

    With ``world_size`` N > 1, the part of every global batch that rank ``rank`` trains on
    (:func:`alta.distributed.shard_range`: contiguous, in rank order): the shards of all ranks
    concatenate to the single-process batch, and a rank loads only its own images.

    Args:
        experience: An :class:`~alta.data.Experience`.
        backbone: The learner's frozen backbone (used by the cached modes).
        epoch: Epoch index within the experience (seeds the shuffle and augmentation).
        batch_size: Samples per batch (32 in the paper).
        seed: Run seed.
        train_cache: ``"none"``, ``"fixed"`` or ``"views:K"`` (see the module docstring).
        cache: Where cached features live (a new in-memory cache if ``None``; pass one to reuse
            it across epochs, which is the point).
        num_workers: DataLoader workers (``"none"`` mode and cache filling).
        drop_last: Drop a last incomplete batch.
        rank: This process's rank (data-parallel training).
        world_size: N, the number of processes; 1: the whole batch.

    Yields:
        ``(inputs, labels)``: images (B, 3, R, R) in mode ``"none"``, frozen image features
        (B, D) otherwise; labels (B,). With N > 1, b = this rank's part of B rows (possibly 0).

    Raises:
        ConfigError: a bad value (checked by :class:`LoopConfig`), or an experience without
            training samples.
    """
    LoopConfig(batch_size=batch_size, seed=seed, train_cache=train_cache, num_workers=num_workers)  # the checks
    kind, views = parse_cache_mode(train_cache)
    check_int(epoch, "epoch", low=0)
    if len(experience.train) == 0:
        raise ConfigError(f"experience {experience.index} has no training samples; there is nothing to train on")
    epoch_seed = derive_seed(seed, int(experience.index), epoch)
    generator = torch.Generator().manual_seed(epoch_seed)
    pin = backbone.device.type == "cuda"
    if kind == "none":
        items = _SeededItems(experience.train, epoch_seed)
        if world_size == 1:
            loader = DataLoader(items, batch_size=batch_size, shuffle=True, generator=generator,
                                num_workers=num_workers, drop_last=drop_last, pin_memory=pin)
        else:  # the single-process loader's order, from a loader of indices (same sampler, same draws)
            order = DataLoader(range(len(items)), batch_size=batch_size, shuffle=True, generator=generator,
                               drop_last=drop_last)
            local = [_local_part(batch.tolist(), rank, world_size) for batch in order]
            loader = _ShardLoader(items, local, num_workers=num_workers, pin_memory=pin)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed)  # random transforms in the main process use the global RNG
            yield from loader
        return
    if cache is None:
        cache = FeatureCache()
    if kind == "fixed":
        dataset = experience.train.with_transform(experience.test.transform)
        stored = cache.features(backbone, dataset, num_workers=num_workers)
        features = stored.features  # (N, D)
    else:
        stored = cache.features(backbone, experience.train, views=views, seed=derive_seed(seed, int(experience.index)),
                                num_workers=num_workers)
        choice = torch.randint(views, (stored.features.shape[1],), generator=generator)  # a view per image
        features = stored.features[choice, torch.arange(stored.features.shape[1])]  # (N, D)
    labels = stored.labels
    order = torch.randperm(labels.shape[0], generator=generator)
    stop = labels.shape[0] - (labels.shape[0] % batch_size if drop_last else 0)
    device = backbone.device
    if device.type == "cuda":  # one copy per epoch instead of one per step
        features = features[order].to(device, non_blocking=True)
        labels = labels[order].to(device, non_blocking=True)
        order = torch.arange(labels.shape[0], device=device)
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        if world_size > 1:
            idx = _local_part(idx, rank, world_size)
        yield features[idx], labels[idx]


def _local_part(batch, rank: int, world_size: int):
    """Rank ``rank``'s contiguous part of a global batch (a list or a tensor of indices)."""
    from ..distributed import shard_range

    part = shard_range(len(batch), rank=rank, world_size=world_size)
    return batch[part.start : part.stop]


class _ShardLoader:
    """Loads one rank's parts of the global batches; an empty part (a last global batch smaller
    than N) is yielded as empty tensors shaped like the samples."""

    def __init__(self, dataset: Dataset, parts: list[list[int]], *, num_workers: int, pin_memory: bool) -> None:
        self.dataset, self.parts = dataset, parts
        # its own generator: without one, a DataLoader draws its workers' seed from the global RNG
        self.loader = DataLoader(dataset, batch_sampler=[p for p in parts if p], num_workers=num_workers,
                                 pin_memory=pin_memory, generator=torch.Generator().manual_seed(0))

    def __iter__(self):
        loaded = iter(self.loader)
        example = None
        for part in self.parts:
            if part:
                example = next(loaded)
                yield example
                continue
            if example is None:
                image, _ = self.dataset[0]
                example = (torch.as_tensor(image).unsqueeze(0), torch.zeros(1, dtype=torch.long))
            yield example[0][:0], example[1][:0]


class _SeededItems(SeededItems):
    """Training items of one epoch: the augmentation of item i is drawn from
    ``derive_seed(epoch_seed, i)`` in every RNG a transform may use (torch, Python's ``random``,
    NumPy), so any ``num_workers`` gives the same run (see :class:`alta.seeding.SeededItems`)."""


@dataclass
class StreamResult:
    """Accuracy matrices and evaluation records of a run over a stream.

    Attributes:
        class_il: R[t, k] class-IL accuracy (%) on experience k after experience t, (T, T);
            NaN where not measured. With separate evaluation experiences (the joint upper
            bound) it is (T, K): T training experiences, K evaluation experiences.
        task_il: The same for task-IL.
        evaluations: One record per evaluation (``experience``, ``epoch``, the
            :class:`~alta.loop.evaluation.EvaluationResult` as a dict, and the epoch's loss).
        history: Per-epoch training statistics, one list per experience begun (the list of the
            current experience grows epoch by epoch).
        confusion: The class-IL confusion matrix of the evaluation at the end of each experience
            (over the test samples of every experience of the stream; rows: true class, columns:
            predicted), or ``None`` where not measured. See :mod:`alta.metrics` for per-class
            and old/new-class accuracies.

    Shape:
        class_il, task_il: (T, T); confusion: T entries of (C, C) int64.
    """

    class_il: np.ndarray
    task_il: np.ndarray
    evaluations: list[dict] = field(default_factory=list)
    history: list[list[dict]] = field(default_factory=list)
    confusion: list[np.ndarray | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = self.class_il.shape[0] - len(self.confusion)
        if missing > 0:  # e.g. restored from a checkpoint that did not keep them
            self.confusion = list(self.confusion) + [None] * missing

    @classmethod
    def empty(cls, num_experiences: int, num_eval_experiences: int | None = None) -> "StreamResult":
        """NaN matrices of shape (T, K), K = ``num_eval_experiences`` (T when omitted)."""
        columns = num_experiences if num_eval_experiences is None else num_eval_experiences
        nan = np.full((num_experiences, columns), np.nan)
        return cls(class_il=nan.copy(), task_il=nan.copy())


def _epoch_stats(sums: dict[str, torch.Tensor], *, epoch: int, steps: int, seen: int, lr: float) -> dict:
    stats = {"epoch": epoch, "steps": steps, "samples": seen, "lr": lr}
    for key in ("loss", "ce", "replay_ce", "replay_mse"):
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
        batches = epoch_batches(experience, backbone=learner.backbone, epoch=epoch, batch_size=loop.batch_size,
                                seed=loop.seed, train_cache=loop.train_cache, cache=cache, num_workers=loop.num_workers,
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

    :func:`fit_experience` drives one of them over the batches of :func:`epoch_batches`;
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
        self._num_steps = math.ceil(self._num_samples / self.loop.batch_size)
        self.callbacks.on_experience_start(experience=t, start_epoch=start_epoch)

    def begin_epoch(self, epoch: int) -> None:
        """``on_epoch_start``; the statistics of epoch ``epoch`` start from zero."""
        self._epoch = epoch
        self._sums: dict[str, torch.Tensor] = {}
        self._steps, self._seen = 0, 0
        self._monitor = DivergenceMonitor()
        self._lr = self.optimizer.param_groups[0]["lr"]
        self.callbacks.on_epoch_start(experience=self._experience, epoch=epoch, num_epochs=self.loop.epochs,
                                      num_steps=self._num_steps)

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One :func:`train_step` on a batch (images (B, 3, R, R) or frozen features (B, D)), then
        ``on_step_end``; returns the step's detached statistics.

        With ``loop.distributed`` under torchrun the batch is this rank's shard of the global batch
        (:func:`epoch_batches` with :attr:`rank` and :attr:`world_size`) and the step is
        :func:`alta.distributed.train_step`. The loss is checked once per epoch (:meth:`end_epoch`),
        not per step (:mod:`alta.loop.divergence`)."""
        global_size = min(self.loop.batch_size, self._num_samples - self._steps * self.loop.batch_size)
        if self.parallel:
            out = _dist.train_step(self.learner, inputs, labels, optimizer=self.optimizer, buffer=self.buffer,
                                   schedule=self.schedule, shard_sizes=_dist.split_sizes(global_size, self.world_size))
        else:
            out = train_step(self.learner, inputs, labels, optimizer=self.optimizer, buffer=self.buffer,
                             schedule=self.schedule, check_finite=False)
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
                            epoch=self._epoch, lr=self._lr)
        self.history.append(stats)
        if self.scheduler is not None:
            self.scheduler.step()
        if self.schedule is not None:
            self.schedule.end_epoch()
        self.callbacks.on_epoch_end(experience=self._experience, epoch=self._epoch, stats=stats, result=self.result)
        return stats


class _PeriodicEvaluation(Callback):
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
        _check_ranks_agree(learner, buffer)
    covered = _covered_evaluations(experiences, evals)
    periodic = _PeriodicEvaluation(learner, evals, covered, loop=loop, cache=cache, callbacks=callbacks)
    epoch_callbacks = [periodic, *callbacks]
    callbacks.on_run_start(num_experiences=num, start_experience=start_experience, start_epoch=start_epoch,
                           result=result)
    for t in range(start_experience, num):
        history = fit_experience(
            learner, experiences[t], optimizer=optimizer, scheduler=scheduler, buffer=buffer, schedule=schedule,
            loop=loop, cache=cache, callbacks=epoch_callbacks, start_epoch=start_epoch if t == start_experience else 0,
            result=result, end_experience=not loop.eval_before_snapshot,
        )
        _finish_experience(learner, evals, experiences[t], t, covered=covered[t], loop=loop, cache=cache,
                           result=result, history=history, callbacks=callbacks)
    callbacks.on_run_end(result=result)
    return result


def _finish_experience(learner, evals: Sequence, experience, t: int, *, covered: int, loop: LoopConfig,
                       cache: FeatureCache | None, result: StreamResult, history: list[dict], callbacks) -> None:
    """The end of training experience ``t`` (``experience``) in :func:`run_stream`: evaluate every
    evaluation experience (row t of the accuracy matrices and the confusion matrix; sharded over
    the ranks with ``loop.distributed``), ``learner.end_experience`` first or, with
    ``loop.eval_before_snapshot``, after; record the evaluation of the ``covered`` leading
    evaluation experiences with the old/new-class accuracy; ``on_experience_end``."""
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
    callbacks.on_experience_end(experience=t, result=result)


def _check_ranks_agree(learner, buffer) -> None:
    """Refuse a data-parallel run whose ranks start from different states (other seeds, another
    checkpoint): they would train apart silently."""
    params = [p.detach().double().reshape(-1) for p in learner.trainable_parameters()]
    flat = torch.cat(params) if params else torch.zeros(1, dtype=torch.float64)
    summary = [float(flat.sum()), float(flat.pow(2).sum()), float(int(learner.experience_index))]
    if buffer is not None:
        summary += [float(len(buffer)), float(buffer.num_seen), float(buffer.seed % 2**31)]
    _dist.check_same_on_all_ranks(torch.tensor(summary, dtype=torch.float64),
                                  what="the learner's trainable parameters or the buffer (its seed, its contents)")


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


def _covered_evaluations(experiences: Sequence, evals: Sequence) -> list[int]:
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


@dataclass(frozen=True)
class TrainConfig(ConfigSection):
    """The training loop of a run (YAML section ``train``): :func:`run_stream` and its
    :class:`~alta.AlternatingSchedule`.

    Attributes:
        epochs: Epochs per experience (30; joint training 100).
        batch_size: Training batch size (32).
        schedule: ``crossed`` (both branches every step: the reference) or ``alternate``
            (text and image branch in turns).
        schedule_period: Length of one turn (``alternate``).
        schedule_unit: ``step`` or ``epoch``: what the period counts.
        schedule_start: Branch of the first turn, ``text`` or ``image``.
        train_cache: ``none`` (images augmented and encoded at every step: faithful),
            ``fixed`` (each training image encoded once without augmentation) or ``views:K``
            (K augmented views encoded once; an approximation).
    """

    _SECTION: ClassVar[str] = "train"

    epochs: int = 30
    batch_size: int = 32
    schedule: str = "crossed"
    schedule_period: int = 1
    schedule_unit: str = "step"
    schedule_start: str = "text"
    train_cache: str = "none"

    def __post_init__(self) -> None:
        with in_section("train", "epochs", "batch_size", "train_cache"):  # the loop checks its values
            LoopConfig(epochs=self.epochs, batch_size=self.batch_size, train_cache=self.train_cache)
        try:
            self.build_schedule()  # the schedule checks its own values
        except ConfigError as exc:
            words = str(exc).split()  # "schedule mode|unit|start|period must ..."
            key = {"mode": "schedule"}.get(words[1], f"schedule_{words[1]}")
            raise ConfigError(f"config key 'train.{key}': {exc}") from None

    def loop(self, *, seed: int, evaluation, num_workers: int = 0) -> "LoopConfig":
        """The :class:`LoopConfig` of a run with these values, its ``seed``, its
        :class:`~alta.loop.evaluation.EvalConfig` and its DataLoader workers."""
        return LoopConfig(epochs=self.epochs, batch_size=self.batch_size, seed=seed, train_cache=self.train_cache,
                          eval_every=evaluation.every, eval_batch_size=evaluation.batch_size, num_workers=num_workers,
                          eval_before_snapshot=evaluation.before_snapshot)

    def build_schedule(self) -> AlternatingSchedule:
        """A fresh :class:`~alta.AlternatingSchedule` with these values."""
        return AlternatingSchedule(self.schedule, period=self.schedule_period, unit=self.schedule_unit,
                                   start=self.schedule_start)
