"""Frozen image features of whole datasets, computed once and reused.

Both CLIP encoders are frozen in ALTA, so the image feature f1 of an image under a deterministic
transform never changes during a run. The reference code nevertheless re-encodes every test
image at every evaluation and every training image at every epoch. :class:`FeatureCache` stores
features of a dataset keyed by the backbone's weights, the dataset's samples and transform, and
the number of augmented views, so a stale cache is never used:

- evaluation sets (deterministic test transform): exact, always worth it;
- training sets, mode ``fixed``: each image encoded once under a deterministic transform
  (exact for a protocol without augmentation);
- training sets, mode ``views:K``: K augmented views per image encoded once, one view drawn per
  epoch. This is an *approximation* of the reference protocol, which draws a fresh augmentation
  every epoch.

A cache lives in memory, or on disk (``directory``), where files are written atomically and
read back memory-mapped (``torch.load(..., mmap=True)``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .. import distributed as dist
from ..errors import ConfigError
from ..io import save_torch
from ..seeding import SeededItems, derive_seed

__all__ = ["FeatureCache", "CachedFeatures", "encode_dataset"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class CachedFeatures:
    """Features of a dataset in its order.

    Attributes:
        features: Frozen image features f1, float32; (N, D), or (K, N, D) for K views.
        labels: Labels of the samples, (N,) int64.
    """

    features: torch.Tensor
    labels: torch.Tensor


def _dataset_key(dataset: Dataset) -> str:
    key = getattr(dataset, "cache_key", None)
    if callable(key):
        return key()
    raise ConfigError(
        f"{type(dataset).__name__} has no cache_key(); feature caching needs datasets from ScenarioStream "
        f"(ExperienceDataset), whose key identifies the samples and the transform"
    )


def encode_dataset(
    backbone,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    views: int = 1,
    seed: int = 0,
    progress: bool = False,
    description: str = "encoding",
    distributed: bool = False,
) -> CachedFeatures:
    """Encode every image of ``dataset`` with the frozen image encoder, in dataset order.

    Random transforms draw their randomness from ``seed``, the view and the sample's index (torch's
    CPU generator, Python's ``random`` and NumPy's global RNG are all seeded per sample, see
    :class:`~alta.seeding.SeededItems`), so the result is reproducible and the same for any
    ``num_workers`` and any number of processes.

    With ``distributed`` inside a process group of N ranks, the encoder batches (``batch_size``
    consecutive samples, as in one process) are split into N contiguous runs, each rank encodes
    its run and the features are all-gathered: every rank gets the single-process result,
    bit-identical (the same batches go through the same encoder), each sample encoded once.

    Args:
        backbone: A frozen :class:`~alta.backbones.Backbone`.
        dataset: Yields ``(image, label)`` with images at the backbone's resolution.
        batch_size: Images per forward pass.
        num_workers: DataLoader workers.
        views: Passes over the dataset (augmented views when its transform is random).
        seed: Seed of the transform's randomness.
        progress: Show a tqdm progress bar.
        description: Progress-bar label.
        distributed: Share the encoding between the ranks of the process group (see above;
            no effect without one).

    Returns:
        :class:`CachedFeatures` with features (N, D) if ``views == 1`` else (K, N, D).
    """
    pin = backbone.device.type == "cuda"
    parallel = distributed and dist.is_distributed()
    n = len(dataset)
    if parallel:  # whole encoder batches per rank, so that every batch is the single-process one
        spans = [dist.batch_aligned_range(n, batch_size, rank=k) for k in range(dist.get_world_size())]
        mine, sizes = spans[dist.get_rank()], [len(span) for span in spans]
    else:
        mine = range(n)
    all_views, labels = [], None
    for view in range(views):
        # every RNG a transform may draw from is seeded per sample, so any num_workers gives the same views
        view_seed = derive_seed(seed, view)
        items = SeededItems(dataset, view_seed)
        if parallel:
            items = Subset(items, list(mine))
        # its own generator: a DataLoader without one draws its workers' base seed from the global RNG
        loader = DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin,
                            generator=torch.Generator().manual_seed(view_seed))
        feats, labs = [], []
        for images, y in tqdm(loader, desc=f"{description} view {view + 1}/{views}" if views > 1 else description,
                              disable=not progress, leave=False):
            feats.append(backbone.encode_images(images).cpu())
            labs.append(torch.as_tensor(y, dtype=torch.long))
        view_features = torch.cat(feats) if feats else torch.empty(0, backbone.embed_dim)
        labels = torch.cat(labs) if labs else torch.empty(0, dtype=torch.long)
        if parallel:
            view_features = dist.all_gather(view_features, sizes=sizes)
            labels = dist.all_gather(labels, sizes=sizes)
        all_views.append(view_features)
    features = all_views[0] if views == 1 else torch.stack(all_views)
    return CachedFeatures(features=features, labels=labels)


def _short(transform) -> str:
    text = " ".join(repr(transform).split())
    return text if len(text) <= 100 else text[:97] + "..."


class FeatureCache:
    """A store of dataset features keyed by backbone, samples, transform and views.

    A feature is served only under a key that identifies the transform. Transforms whose
    ``repr`` says what they do (torchvision's, alta's presets) are keyed by it, in memory and on
    disk. A transform whose ``repr`` does not (a ``Lambda``, a function, an object with the
    default ``<... at 0x...>`` repr; see :func:`alta.data.stream.transform_identity`) is keyed
    to that very object: its features are reused in memory with the same object only, and never
    written to or read from ``directory`` (a warning says so once per transform).

    Args:
        directory: Folder for on-disk caching (memory-mapped reads). ``None`` keeps features
            in memory only.
        distributed: Inside a process group, encode a missing entry on all ranks (each its
            share, :func:`encode_dataset`) and keep the gathered features on every rank. Whether
            an entry is found is decided by all ranks together (an entry missing on one rank is
            encoded by all), and files are written by the first process of each machine
            (``LOCAL_RANK`` 0). Every rank must then call :meth:`features` in the same order.

    Examples:
        >>> cache = FeatureCache()  # doctest: +SKIP
        >>> test = cache.features(learner.backbone, experience.test)  # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, distributed: bool = False) -> None:
        if directory is not None and not isinstance(directory, (str, os.PathLike)):
            raise ConfigError(f"FeatureCache directory must be a path or None, got {directory!r}")
        if not isinstance(distributed, bool):
            raise ConfigError(f"FeatureCache distributed must be True or False, got {distributed!r}")
        self.distributed = distributed
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None and self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"FeatureCache directory {self.directory} exists and is not a folder; pass a folder path")
        self._memory: dict[str, CachedFeatures] = {}
        self._warned: set[str] = set()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(backbone, dataset: Dataset, *, views: int = 1, seed: int = 0) -> str:
        """The cache key: backbone fingerprint + dataset key (samples, labels, transform) + views."""
        h = hashlib.sha256()
        # views are drawn with per-sample seeds (marked "per-sample"): files of the older seeding never match
        seeding = f"seed={seed},per-sample" if views > 1 else "seed=0"
        for part in (backbone.fingerprint(), _dataset_key(dataset), f"views={views}", seeding):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:32]

    def features(
        self,
        backbone,
        dataset: Dataset,
        *,
        views: int = 1,
        seed: int = 0,
        batch_size: int = 256,
        num_workers: int = 0,
        progress: bool = False,
    ) -> CachedFeatures:
        """Features of ``dataset``: from the cache, or encoded now and stored.

        Args:
            backbone: The frozen backbone.
            dataset: A dataset with ``cache_key()`` (an :class:`~alta.data.ExperienceDataset`).
            views: Number of (augmented) views; 1 for deterministic transforms.
            seed: Seed of the augmentation when ``views > 1``.
            batch_size: Images per forward pass when encoding.
            num_workers: DataLoader workers when encoding.
            progress: Show a progress bar when encoding.

        Returns:
            :class:`CachedFeatures`; features (N, D) or (K, N, D).
        """
        key = self.key(backbone, dataset, views=views, seed=seed)
        found = self._lookup(key, dataset, views=views)
        parallel = self.distributed and dist.is_distributed()
        if parallel:  # found only if found on every rank: a miss anywhere is encoded by all
            missing = dist.all_reduce_sum(torch.tensor([0 if found is not None else 1]))
            found = found if int(missing) == 0 else None
        if found is not None:
            self._memory[key] = found
            self.hits += 1
            return found
        self.misses += 1
        cached = encode_dataset(backbone, dataset, batch_size=batch_size, num_workers=num_workers,
                                views=views, seed=seed, progress=progress, distributed=self.distributed)
        path = self._path(key, dataset)
        if parallel and dist.get_local_rank() != 0:
            path = None  # one writer per machine
        if path is not None:
            try:
                save_torch(path, {"features": cached.features.contiguous(), "labels": cached.labels})
            except OSError as exc:
                logger.warning("cannot write the feature cache file %s (%s); keeping the features in memory only",
                               path, exc)
        self._memory[key] = cached
        return cached

    def _path(self, key: str, dataset: Dataset) -> Path | None:
        """The entry's file, or ``None`` (no directory, or a transform that does not identify itself)."""
        path = self.directory / f"{key}.pt" if self.directory is not None else None
        if path is not None and not getattr(dataset, "transform_identified", True):
            # its key names this very transform object: a file would be stale for another process
            transform = _short(getattr(dataset, "transform", None))
            if transform not in self._warned:  # once per transform, not once per dataset it is used with
                self._warned.add(transform)
                logger.warning(
                    "a transform of %r (%s, or its source's own transform) does not identify itself (its repr "
                    "holds a memory address or is a Lambda), so features under it are cached in memory only, never "
                    "on disk in %s; give the transform a __repr__ that lists its parameters to cache it on disk",
                    dataset, transform, self.directory)
            path = None
        return path

    def _lookup(self, key: str, dataset: Dataset, *, views: int) -> CachedFeatures | None:
        """The entry from memory or from its file, if it is there and fits the dataset."""
        cached = self._memory.get(key)
        if cached is not None and self._fits(cached, dataset, views=views, where="memory"):
            return cached
        path = self._path(key, dataset)
        if path is None or not path.is_file():
            return None
        try:
            stored = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
            cached = CachedFeatures(features=stored["features"], labels=stored["labels"])
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is recomputed
            logger.warning("feature cache file %s unreadable (%s); recomputing", path, exc)
            return None
        return cached if self._fits(cached, dataset, views=views, where=str(path)) else None

    @staticmethod
    def _fits(cached: CachedFeatures, dataset: Dataset, *, views: int, where: str) -> bool:
        """Whether a stored entry has the dataset's length and labels (else it is recomputed)."""
        n = len(dataset)
        shape = tuple(cached.features.shape)
        expected_ndim = 2 if views == 1 else 3
        ok = len(shape) == expected_ndim and shape[-2] == n and tuple(cached.labels.shape) == (n,)
        if ok and views > 1:
            ok = shape[0] == views
        targets = getattr(dataset, "targets", None)
        if ok and targets is not None:
            ok = torch.equal(cached.labels, torch.as_tensor(targets, dtype=torch.long))
        if not ok:
            logger.warning("feature cache entry in %s does not match the dataset (%d samples); recomputing", where, n)
        return ok

    def clear(self) -> None:
        """Forget the in-memory entries (files on disk stay)."""
        self._memory.clear()

    def __len__(self) -> int:
        return len(self._memory)

    def __repr__(self) -> str:
        where = str(self.directory) if self.directory else "memory"
        return f"FeatureCache({where}, entries={len(self)}, hits={self.hits}, misses={self.misses})"
