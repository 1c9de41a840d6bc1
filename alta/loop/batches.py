"""Training batches of one epoch, with or without the frozen-feature cache.

The loops of ALTA (Li et al., IEEE TMM 2023; reference ``main.py``: shuffled batches of 32,
RandomResizedCrop + flip per epoch) draw their batches from :func:`epoch_batches`, in one of the
three cache modes of :class:`~alta.loop.config.LoopConfig` (``none``: images augmented and
encoded at every step; ``fixed`` and ``views:K``: frozen image features encoded once).

Randomness (shuffling, augmentation, view choice) is derived from ``(seed, experience, epoch)``,
so a run resumed at an epoch boundary repeats the uninterrupted run exactly, with any
``num_workers`` and on any number of processes.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..config import check_int
from ..distributed import shard_range
from ..errors import ConfigError
from ..seeding import SeededItems, derive_seed
from .cache import FeatureCache
from .config import LoopConfig

__all__ = ["epoch_batches"]


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
    batch_size, seed, num_workers = loop.batch_size, loop.seed, loop.num_workers
    kind, views = loop.cache_kind, loop.cache_views
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
