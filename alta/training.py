"""Convenience loops built only from alta's public pieces.

:func:`fit_experience` trains a :class:`~alta.CrossModalLearner` on one experience (the
reference protocol: ``epochs`` passes, batch 32, the learning rate stepped once per epoch);
:func:`run_stream` runs a whole stream, evaluating every ``eval_every`` epochs and filling the
accuracy matrices. Both are short on purpose: copy them into your own loop when you need
something else. The training step itself is :meth:`~alta.CrossModalLearner.training_step`.

Training batches come from :func:`epoch_batches`, which supports three feature-cache modes:

- ``"none"``: images are loaded and augmented every epoch and encoded by the frozen image
  encoder at every step (faithful to the reference);
- ``"fixed"``: each training image is encoded once under the experience's deterministic test
  transform (no augmentation), then only the small heads run (exact for that protocol);
- ``"views:K"``: K augmented views per image are encoded once; every epoch draws one of them per
  image (an approximation of per-epoch augmentation).

Randomness (shuffling, augmentation, view choice) is derived from ``(seed, experience, epoch)``,
so a run resumed at an experience boundary repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .cache import FeatureCache, parse_cache_mode
from .config import MAX_BATCH_SIZE, ConfigSection, check_int
from .errors import ConfigError
from .evaluation import EvaluationResult, evaluate
from .schedule import AlternatingSchedule
from .seeding import derive_seed

__all__ = ["epoch_batches", "fit_experience", "run_stream", "StreamResult", "TrainConfig", "derive_seed"]

logger = logging.getLogger(__name__)


def epoch_batches(
    experience,
    *,
    backbone,
    epoch: int,
    batch_size: int = 32,
    seed: int = 0,
    train_cache: str = "none",
    cache: FeatureCache | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled training batches of one epoch of ``experience``.

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

    Yields:
        ``(inputs, labels)``: images (B, 3, R, R) in mode ``"none"``, frozen image features
        (B, D) otherwise; labels (B,).
    """
    kind, views = parse_cache_mode(train_cache)
    _check_int("batch_size", batch_size, low=1)
    _check_int("seed", seed, low=0)
    _check_int("epoch", epoch, low=0)
    if len(experience.train) == 0:
        raise ConfigError(f"experience {experience.index} has no training samples; there is nothing to train on")
    epoch_seed = derive_seed(seed, int(experience.index), epoch)
    generator = torch.Generator().manual_seed(epoch_seed)
    if kind == "none":
        loader = DataLoader(_SeededItems(experience.train, epoch_seed), batch_size=batch_size, shuffle=True,
                            generator=generator,
                            num_workers=num_workers, drop_last=drop_last,
                            pin_memory=backbone.device.type == "cuda")
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
        yield features[idx], labels[idx]


class _SeededItems(Dataset):
    """Draw the random transform of item i from ``derive_seed(seed, i)``.

    The augmentation of a sample then depends only on the run seed, the experience, the epoch and
    the sample, never on which DataLoader worker loads it: any ``num_workers`` gives the same run.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        # the CPU generator random transforms draw from: the worker's own, or the main process's
        # (forked by epoch_batches); torch.manual_seed would also reseed CUDA, 100x slower
        torch.default_generator.manual_seed(derive_seed(self.seed, index))
        return self.dataset[index]


def fit_experience(
    learner,
    experience,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    epochs: int,
    batch_size: int = 32,
    buffer=None,
    schedule=None,
    seed: int = 0,
    train_cache: str = "none",
    cache: FeatureCache | None = None,
    num_workers: int = 0,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    progress: bool = False,
) -> list[dict]:
    """Train ``learner`` on one experience: ``begin_experience``, epochs of
    :meth:`~alta.CrossModalLearner.training_step`, ``end_experience``.

    Args:
        learner: The :class:`~alta.CrossModalLearner`.
        experience: The :class:`~alta.data.Experience` to learn.
        optimizer: From :func:`alta.build_optimizer`, created once per run.
        scheduler: Its learning-rate scheduler, stepped once per epoch (or ``None``).
        epochs: Epochs on this experience (30 in the paper).
        batch_size: Batch size (32).
        buffer: Memory buffer for replay, or ``None``.
        schedule: An :class:`~alta.AlternatingSchedule`, or ``None`` (both branches).
        seed: Run seed (shuffling, augmentation).
        train_cache: ``"none"``, ``"fixed"`` or ``"views:K"``.
        cache: Feature cache for the cached modes.
        num_workers: DataLoader workers.
        start_epoch: First epoch to run (epochs before it are skipped).
        on_epoch_end: Called as ``on_epoch_end(epoch, stats)`` after each epoch.
        progress: Show tqdm progress bars.

    Returns:
        One dict per epoch: ``epoch``, ``loss`` (mean over steps), ``ce``, ``replay_ce``,
        ``replay_mse``, ``train_accuracy`` (%), ``lr``, ``steps``, ``samples``.
    """
    from tqdm.auto import tqdm

    _check_int("epochs", epochs, low=1)
    _check_int("start_epoch", start_epoch, low=0)
    learner.train()
    learner.begin_experience(experience)
    history = []
    if cache is None and train_cache != "none":
        cache = FeatureCache()
    for epoch in range(start_epoch, epochs):
        sums: dict[str, torch.Tensor] = {}
        steps, seen = 0, 0
        lr = optimizer.param_groups[0]["lr"]
        batches = epoch_batches(experience, backbone=learner.backbone, epoch=epoch, batch_size=batch_size, seed=seed,
                                train_cache=train_cache, cache=cache, num_workers=num_workers)
        total = math.ceil(len(experience.train) / batch_size)
        bar = tqdm(batches, total=total, desc=f"experience {experience.index + 1} epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False, unit="batch")
        for inputs, labels in bar:
            out = learner.training_step(inputs, labels, optimizer=optimizer, buffer=buffer, schedule=schedule)
            for key, value in out.items():
                sums[key] = sums[key] + value if key in sums else value  # stays on device: no sync per step
            steps += 1
            seen += int(labels.shape[0])
        stats = {"epoch": epoch, "steps": steps, "samples": seen, "lr": lr}
        for key in ("loss", "ce", "replay_ce", "replay_mse"):
            stats[key] = float(sums[key]) / steps if steps else float("nan")
        stats["train_accuracy"] = 100.0 * float(sums["correct"]) / seen if seen else float("nan")
        history.append(stats)
        if scheduler is not None:
            scheduler.step()
        if schedule is not None:
            schedule.end_epoch()
        if on_epoch_end is not None:
            on_epoch_end(epoch, stats)
    learner.end_experience(experience)
    return history


@dataclass
class StreamResult:
    """Accuracy matrices and evaluation records of a run over a stream.

    Attributes:
        class_il: R[t, k] class-IL accuracy (%) on experience k after experience t, (T, T);
            NaN where not measured.
        task_il: The same for task-IL.
        evaluations: One record per periodic evaluation (``experience``, ``epoch``, the
            :class:`~alta.evaluation.EvaluationResult` as a dict, and the epoch's loss).
        history: Per-epoch training statistics, one list per experience.
    """

    class_il: np.ndarray
    task_il: np.ndarray
    evaluations: list[dict] = field(default_factory=list)
    history: list[list[dict]] = field(default_factory=list)

    @classmethod
    def empty(cls, num_experiences: int) -> "StreamResult":
        nan = np.full((num_experiences, num_experiences), np.nan)
        return cls(class_il=nan.copy(), task_il=nan.copy())


def run_stream(
    learner,
    experiences: Sequence,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    epochs: int,
    batch_size: int = 32,
    buffer=None,
    schedule=None,
    seed: int = 0,
    train_cache: str = "none",
    cache: FeatureCache | None = None,
    eval_every: int = 10,
    eval_batch_size: int = 256,
    num_workers: int = 0,
    result: StreamResult | None = None,
    start_experience: int = 0,
    on_evaluation: Callable[[dict], None] | None = None,
    on_experience_end: Callable[[int, StreamResult], None] | None = None,
    progress: bool = False,
) -> StreamResult:
    """Train through a stream and measure the accuracy matrices.

    After every ``eval_every`` epochs the experiences seen so far are evaluated (the
    reference protocol); after each experience all experiences are evaluated, which fills row t
    of the accuracy matrices (the entries k > t feed forward transfer). Test features are cached
    (exact), so evaluations after the first cost only the heads.

    Args:
        learner: The :class:`~alta.CrossModalLearner`.
        experiences: The stream (or any sequence of experiences).
        optimizer: From :func:`alta.build_optimizer`, created once per run.
        scheduler: Its learning-rate scheduler (stepped once per epoch), or ``None``.
        epochs: Epochs per experience.
        batch_size: Training batch size.
        buffer: Memory buffer (``None``: no replay).
        schedule: :class:`~alta.AlternatingSchedule` or ``None``.
        seed: Run seed.
        train_cache: Training-feature cache mode (``"none"``, ``"fixed"``, ``"views:K"``).
        cache: Feature cache shared by training (cached modes) and evaluation; a new
            in-memory cache when ``None``.
        eval_every: Evaluate every this many epochs (0: only at experience ends).
        eval_batch_size: Test batch size.
        num_workers: DataLoader workers.
        result: A partial result to continue (resume); ``start_experience`` says where.
        start_experience: First experience to train (earlier ones are assumed done).
        on_evaluation: Called with each periodic evaluation record.
        on_experience_end: Called as ``on_experience_end(t, result)`` after experience t
            (checkpoint here).
        progress: Show progress bars.

    Returns:
        The :class:`StreamResult`.
    """
    experiences = list(experiences)
    num = len(experiences)
    _check_int("epochs", epochs, low=1)
    _check_int("batch_size", batch_size, low=1)
    _check_int("eval_every", eval_every, low=0)
    _check_int("seed", seed, low=0)
    if num == 0:
        raise ConfigError("run_stream needs at least one experience, got none")
    if isinstance(start_experience, bool) or not isinstance(start_experience, int) or not 0 <= start_experience < num:
        raise ConfigError(f"start_experience must be an integer in [0, {num}), got {start_experience!r}")
    if result is None:
        result = StreamResult.empty(num)
    if cache is None:
        cache = FeatureCache()
    for t in range(start_experience, num):
        experience = experiences[t]

        def on_epoch_end(epoch: int, stats: dict, t=t) -> None:
            if eval_every and (epoch + 1) % eval_every == 0 and epoch + 1 < epochs:
                _record(result, t, epoch, evaluate(learner, experiences[: t + 1], batch_size=eval_batch_size,
                                                   num_workers=num_workers, cache=cache), stats, on_evaluation)

        history = fit_experience(
            learner, experience, optimizer=optimizer, scheduler=scheduler, epochs=epochs, batch_size=batch_size,
            buffer=buffer, schedule=schedule, seed=seed, train_cache=train_cache, cache=cache,
            num_workers=num_workers, on_epoch_end=on_epoch_end, progress=progress,
        )
        result.history.append(history)
        full = evaluate(learner, experiences, batch_size=eval_batch_size, num_workers=num_workers, cache=cache,
                        progress=progress)
        result.class_il[t, :] = full.class_il
        result.task_il[t, :] = full.task_il
        seen = EvaluationResult(full.experiences[: t + 1], full.class_il[: t + 1], full.task_il[: t + 1],
                                full.num_samples[: t + 1])
        _record(result, t, epochs - 1, seen, history[-1] if history else {}, on_evaluation)
        if on_experience_end is not None:
            on_experience_end(t, result)
    return result


def _check_int(name: str, value, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or value >= 2**63:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _record(result: StreamResult, experience: int, epoch: int, evaluation: EvaluationResult, stats: dict,
            callback: Callable[[dict], None] | None) -> None:
    record = {"experience": experience, "epoch": epoch + 1, **evaluation.as_dict(), "loss": stats.get("loss")}
    result.evaluations.append(record)
    if callback is not None:
        callback(record)


MAX_CACHE_VIEWS = 1000


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
        check_int(self.epochs, "train.epochs", low=1)
        check_int(self.batch_size, "train.batch_size", low=1, high=MAX_BATCH_SIZE,
                  why="images per training step (the paper uses 32)")
        try:
            self.build_schedule()  # the schedule checks its own values
        except ConfigError as exc:
            words = str(exc).split()  # "schedule mode|unit|start|period must ..."
            key = {"mode": "schedule"}.get(words[1], f"schedule_{words[1]}")
            raise ConfigError(f"config key 'train.{key}': {exc}") from None
        try:
            kind, views = parse_cache_mode(self.train_cache)
        except ConfigError as exc:
            raise ConfigError(f"config key 'train.train_cache': {exc}") from None
        if kind == "views" and views > MAX_CACHE_VIEWS:
            raise ConfigError(
                f"config key 'train.train_cache' is {self.train_cache!r}: K views of every training image are "
                f"encoded up front, so K must be in [1, {MAX_CACHE_VIEWS}] (e.g. 'views:4')"
            )

    def loop(self, *, seed: int, evaluation, num_workers: int = 0) -> "LoopConfig":
        """The :class:`LoopConfig` of a run with these values, its ``seed``, its
        :class:`~alta.evaluation.EvalConfig` and its DataLoader workers."""
        return LoopConfig(epochs=self.epochs, batch_size=self.batch_size, seed=seed, train_cache=self.train_cache,
                          eval_every=evaluation.every, eval_batch_size=evaluation.batch_size, num_workers=num_workers)

    def build_schedule(self) -> AlternatingSchedule:
        """A fresh :class:`~alta.AlternatingSchedule` with these values."""
        return AlternatingSchedule(self.schedule, period=self.schedule_period, unit=self.schedule_unit,
                                   start=self.schedule_start)
