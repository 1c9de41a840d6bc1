"""Training batches of one epoch, with or without the frozen-feature cache.

The loops of ALTA (Li et al., IEEE TMM 2023; reference ``main.py``: shuffled batches of 32,
RandomResizedCrop + flip per epoch) draw their batches from :func:`epoch_batches`, in one of the
three cache modes of :class:`~alta.loop.config.LoopConfig` (``none``: images augmented and
encoded at every step; ``fixed`` and ``views:K``: frozen image features encoded once).

Randomness (shuffling, augmentation, view choice) is derived from ``(seed, experience, epoch)``,
so a run resumed at an epoch boundary repeats the uninterrupted run exactly, with any
``num_workers`` and on any number of processes.

With a training budget in iterations (``LoopConfig.iterations``, the 1,000 steps per task of ZSCL
and MoE-Adapters), an experience is a run of shuffled passes over its data, cycled until the
budget is spent (the last batch of a pass may be smaller, as ZSCL's loader gives it), and is cut
into ``epochs`` rounds of equal length: :func:`round_batches` yields the steps of one round. Pass
p is shuffled and augmented exactly as epoch p of :func:`epoch_batches`, so a budget of whole
passes is the epoch loop, and a round that starts in the middle of a pass skips the pass's first
batches without loading their images.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..config import check_int
from ..distributed import shard_range
from ..errors import ConfigError
from ..seeding import SeededItems, derive_seed
from .cache import FeatureCache
from .config import LoopConfig

__all__ = ["epoch_batches", "round_batches", "training_batches", "round_steps"]


def epoch_batches(
    experience,
    *,
    backbone,
    epoch: int,
    loop: LoopConfig | None = None,
    cache: FeatureCache | None = None,
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
        loop: The loop's settings: ``batch_size``, ``seed``, ``train_cache`` (``"none"``,
            ``"fixed"`` or ``"views:K"``) and ``num_workers`` (default :class:`LoopConfig`).
        cache: Where cached features live (a new in-memory cache if ``None``; pass one to reuse
            it across epochs, which is the point).
        drop_last: Drop a last incomplete batch.
        rank: This process's rank (data-parallel training).
        world_size: N, the number of processes; 1: the whole batch.

    Yields:
        ``(inputs, labels)``: images (B, 3, R, R) in mode ``"none"``, frozen image features
        (B, D) otherwise; labels (B,). With N > 1, b = this rank's part of B rows (possibly 0).

    Raises:
        ConfigError: a negative epoch, or an experience without training samples.
    """
    loop = LoopConfig() if loop is None else loop
    check_int(epoch, "epoch", low=0)
    yield from _pass_batches(experience, backbone=backbone, epoch=epoch, loop=loop, cache=cache, drop_last=drop_last,
                             rank=rank, world_size=world_size)


def round_steps(*, round_index: int, loop: LoopConfig) -> range:
    """The steps of round ``round_index`` of an experience under an iteration budget: the global
    step indices ``[r * I // E, (r + 1) * I // E)`` (I = ``loop.iterations``, E = ``loop.epochs``),
    counted from the experience's first step; ``round_index`` is not checked here
    (:func:`round_batches` refuses one outside ``[0, E)``)."""
    iterations, rounds = loop.iterations, loop.epochs
    return range(round_index * iterations // rounds, (round_index + 1) * iterations // rounds)


def round_batches(
    experience,
    *,
    backbone,
    round_index: int,
    loop: LoopConfig,
    cache: FeatureCache | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of one round of an experience trained for ``loop.iterations`` steps.

    Step s of the experience is batch ``s mod n`` of pass ``s // n`` (n = ``ceil(N / batch_size)``
    batches per pass, the last one smaller when ``batch_size`` does not divide N); pass p is
    shuffled and augmented as epoch p of :func:`epoch_batches`. Round r holds the steps of
    :func:`round_steps`.

    Args:
        experience: An :class:`~alta.data.Experience`.
        backbone: The learner's frozen backbone (used by the cached modes).
        round_index: r, in ``[0, loop.epochs)``.
        loop: The loop's settings; ``loop.iterations`` must be set.
        cache: Where cached features live (see :func:`epoch_batches`).
        rank: This process's rank (data-parallel training).
        world_size: N, the number of processes.

    Yields:
        ``(inputs, labels)`` as :func:`epoch_batches` does.

    Raises:
        ConfigError: ``loop.iterations`` not set, a round outside ``[0, loop.epochs)``, or an
            experience without training samples.
    """
    if loop.iterations is None:
        raise ConfigError("round_batches needs a training budget in iterations (LoopConfig(iterations=...)); use "
                          "epoch_batches for a budget in epochs")
    check_int(round_index, "round_index", low=0, high=loop.epochs - 1)
    if len(experience.train) == 0:
        raise ConfigError(f"experience {experience.index} has no training samples; there is nothing to train on")
    per_pass = math.ceil(len(experience.train) / loop.batch_size)
    steps = round_steps(round_index=round_index, loop=loop)
    if not steps:
        return
    for p in range(steps.start // per_pass, (steps.stop - 1) // per_pass + 1):
        start = max(steps.start - p * per_pass, 0)
        stop = min(steps.stop - p * per_pass, per_pass)
        yield from _pass_batches(experience, backbone=backbone, epoch=p, loop=loop, cache=cache, rank=rank,
                                 world_size=world_size, start=start, stop=stop)


def training_batches(
    experience,
    *,
    backbone,
    epoch: int,
    loop: LoopConfig,
    cache: FeatureCache | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of epoch ``epoch`` (:func:`epoch_batches`), or of round ``epoch`` when the loop
    has a budget in iterations (:func:`round_batches`): what the loops of :mod:`alta.loop` train on.

    Raises:
        ConfigError: as :func:`epoch_batches` or :func:`round_batches` (an experience without
            training samples, a round outside the budget).
    """
    if loop.iterations is None:
        return epoch_batches(experience, backbone=backbone, epoch=epoch, loop=loop, cache=cache, rank=rank,
                             world_size=world_size)
    return round_batches(experience, backbone=backbone, round_index=epoch, loop=loop, cache=cache, rank=rank,
                         world_size=world_size)


def _pass_batches(experience, *, backbone, epoch: int, loop: LoopConfig, cache: FeatureCache | None,
                  drop_last: bool = False, rank: int = 0, world_size: int = 1, start: int = 0,
                  stop: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``start`` to ``stop`` (all: 0 to ``None``) of epoch ``epoch`` of ``experience``;
    the batches before ``start`` are never loaded."""
    batch_size, seed, num_workers = loop.batch_size, loop.seed, loop.num_workers
    kind, views = loop.cache_kind, loop.cache_views
    if len(experience.train) == 0:
        raise ConfigError(f"experience {experience.index} has no training samples; there is nothing to train on")
    epoch_seed = derive_seed(seed, int(experience.index), epoch)
    generator = torch.Generator().manual_seed(epoch_seed)
    pin = backbone.device.type == "cuda"
    whole = start == 0 and stop is None
    if kind == "none":
        items = _SeededItems(experience.train, epoch_seed)
        if world_size == 1 and whole:
            loader = DataLoader(items, batch_size=batch_size, shuffle=True, generator=generator,
                                num_workers=num_workers, drop_last=drop_last, pin_memory=pin)
        else:  # the single-process loader's order, from a loader of indices (same sampler, same draws)
            order = DataLoader(range(len(items)), batch_size=batch_size, shuffle=True, generator=generator,
                               drop_last=drop_last)
            chosen = [batch.tolist() for batch in order][start:stop]
            if world_size == 1:  # its own generator: a DataLoader without one draws from the global RNG
                loader = DataLoader(items, batch_sampler=chosen, num_workers=num_workers, pin_memory=pin,
                                    generator=torch.Generator().manual_seed(0))
            else:
                local = [_local_part(batch, rank, world_size) for batch in chosen]
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
    end = labels.shape[0] - (labels.shape[0] % batch_size if drop_last else 0)
    starts = range(0, end, batch_size)[start:stop]
    if not starts:
        return
    device = backbone.device
    offset = 0
    if device.type == "cuda":  # one copy per epoch (or round) instead of one per step, of the rows it uses
        offset, rows = starts[0], order[starts[0] : min(starts[-1] + batch_size, end)]
        features = features[rows].to(device, non_blocking=True)
        labels = labels[rows].to(device, non_blocking=True)
        order = torch.arange(rows.shape[0], device=device)
    for first in starts:
        idx = order[first - offset : first - offset + batch_size]
        if world_size > 1:
            idx = _local_part(idx, rank, world_size)
        yield features[idx], labels[idx]


def _local_part(batch, rank: int, world_size: int):
    """Rank ``rank``'s contiguous part of a global batch (a list or a tensor of indices)."""
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
