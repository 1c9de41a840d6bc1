"""The collectives of data-parallel runs: process group, sharding, all-reduce, all-gather.

alta runs ALTA (Li et al., IEEE TMM 2023) on N processes under ``torchrun`` with
``torch.distributed``; one run on N processes computes what the single-process run computes.
This module is the plumbing every layer may use: the process group (:func:`init_from_env`), how
a global batch or a dataset is split over the ranks (:func:`split_sizes`, :func:`shard_range`,
:func:`batch_aligned_range`: contiguous, in rank order) and the few collectives alta needs
(:func:`all_reduce_sum`, :func:`all_gather` of unequal parts, :func:`broadcast_object`,
:func:`check_same_on_all_ranks`). What a data-parallel *step* does (the shards' losses weighed
by their global counts, one gradient all-reduce, text encoded by class over the ranks, one global
buffer) is :class:`alta.loop.parallel.DataParallelStep`; feature caches and evaluation shard
their work with ``distributed=True`` (:class:`~alta.loop.cache.FeatureCache`,
:func:`~alta.loop.evaluation.evaluate`).

Without torchrun nothing changes: :func:`init_from_env` is a no-op, and every helper works as
the single-process identity (rank 0 of 1).

Examples:
    Run with ``torchrun --nproc_per_node 2 train.py`` (or ``python train.py``: one process):

    >>> import alta
    >>> from alta import distributed as dist
    >>> dist.init_from_env()  # NCCL on GPUs, gloo on CPUs; no-op without torchrun
    >>> learner = alta.CrossModalLearner.from_pretrained(
    ...     "RN50", class_names=names, device=dist.local_device())  # doctest: +SKIP
    >>> buffer = alta.MemoryBuffer(200, seed=0)  # the same seed on every rank
    >>> loop = alta.LoopConfig(epochs=30, train_cache="fixed", distributed=True)
    >>> result = alta.run_stream(learner, stream, optimizer=optimizer, buffer=buffer, loop=loop)  # doctest: +SKIP

References:
    Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
    Learning", IEEE Transactions on Multimedia, 2023.
    PyTorch, "torch.distributed" and "torchrun (Elastic Launch)" documentation.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Sequence

import torch
import torch.distributed as dist

from .errors import ConfigError, ShapeError, StateError

__all__ = [
    "init_from_env",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "is_main_process",
    "local_device",
    "barrier",
    "split_sizes",
    "shard_range",
    "batch_aligned_range",
    "shard",
    "all_reduce_sum",
    "all_gather",
    "broadcast_object",
    "check_same_on_all_ranks",
    "communication_device",
]

logger = logging.getLogger(__name__)

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# ============================================================================ process group
def init_from_env(*, backend: str | None = None, timeout: datetime.timedelta | None = None) -> bool:
    """Initialise the default process group from the environment ``torchrun`` sets.

    A no-op without torchrun (``RANK`` / ``WORLD_SIZE`` unset) or when a process group already
    exists. On CUDA each process uses the GPU ``LOCAL_RANK`` (``torch.cuda.set_device``).

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else gloo.
        timeout: How long a collective waits for the other ranks before failing (default
            torch's, 10 min for NCCL, 30 min for gloo).

    Returns:
        True when this process is now (or already was) part of a process group.

    Raises:
        ConfigError: a partial torchrun environment (some variables set, others not), or an
            unknown backend.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    present = [name for name in _TORCHRUN_VARIABLES if name in os.environ]
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        return False
    missing = [name for name in _TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(
            f"a partial torchrun environment: {present} are set but {missing} are not; launch with "
            f"`torchrun --nproc_per_node N ...` (or set all of {list(_TORCHRUN_VARIABLES)})"
        )
    if not dist.is_available():
        raise ConfigError("torch.distributed is not available in this PyTorch build; install a build with it")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ConfigError(f"backend must be 'nccl' (GPUs) or 'gloo' (CPU), got {backend!r}")
    kwargs = {} if timeout is None else {"timeout": timeout}
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
        kwargs["device_id"] = device  # binds the NCCL communicator to this GPU (barriers need it)
    dist.init_process_group(backend, **kwargs)
    logger.info("process group initialised: rank %d of %d (%s)", get_rank(), get_world_size(), backend)
    return True


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """N, the number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_local_rank() -> int:
    """This process's rank on its machine (torchrun's ``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    """True on rank 0 (and without a process group): the process that writes results."""
    return get_rank() == 0


def local_device() -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", get_local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank reaches this point (a no-op in one process)."""
    if is_distributed():
        dist.barrier()


def communication_device() -> torch.device:
    """Where tensors must be for a collective: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ============================================================================ sharding
def _rank_and_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    for name, value, low in (("world_size", world_size, 1), ("rank", rank, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if rank >= world_size:
        raise ConfigError(f"rank must lie in [0, world_size={world_size}), got {rank}")
    return rank, world_size


def split_sizes(n: int, world_size: int | None = None) -> list[int]:
    """How ``n`` items split over the ranks: contiguous shards, the first ``n % N`` one larger.

    Args:
        n: Number of items (a batch, a dataset, a list of classes).
        world_size: N (default: the process group's).

    Returns:
        N sizes that add up to ``n``, in rank order.

    Examples:
        >>> split_sizes(10, 4)
        [3, 3, 2, 2]
    """
    _, world_size = _rank_and_size(0, world_size)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"the number of items to split must be an integer >= 0, got {n!r}")
    base, extra = divmod(n, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def shard_range(n: int, *, rank: int | None = None, world_size: int | None = None) -> range:
    """The indices of ``n`` items that rank ``rank`` owns (disjoint over ranks; they cover all).

    Args:
        n: Number of items.
        rank: The rank (default: this process's).
        world_size: N (default: the process group's).

    Returns:
        A contiguous ``range``; the ranges of ranks 0..N-1 concatenate to ``range(n)``.
    """
    rank, world_size = _rank_and_size(rank, world_size)
    sizes = split_sizes(n, world_size)
    start = sum(sizes[:rank])
    return range(start, start + sizes[rank])


def batch_aligned_range(
    n: int, batch_size: int, *, rank: int | None = None, world_size: int | None = None
) -> range:
    """This rank's samples of ``n`` when whole batches are shared out: the ``ceil(n / batch_size)``
    batches one process would run are split into contiguous runs (:func:`shard_range`).

    Every batch a rank runs is then one of the single-process batches, with the same samples:
    results computed batch by batch (frozen features, logits) are bit-identical to one process.

    Returns:
        A contiguous ``range`` of sample indices; the ranges of all ranks cover ``range(n)``.
    """
    run = shard_range(-(-n // batch_size), rank=rank, world_size=world_size)
    return range(run.start * batch_size, min(run.stop * batch_size, n))


def shard(sequence, *, rank: int | None = None, world_size: int | None = None):
    """This rank's contiguous part of a sequence, tensor or map-style dataset.

    Args:
        sequence: Anything with ``len`` and integer indexing: a list, a tensor (sharded along
            dim 0) or a ``torch.utils.data.Dataset`` (returned as a ``Subset``).
        rank: The rank (default: this process's).
        world_size: N (default: the process group's).

    Returns:
        The items of :func:`shard_range`, in order.
    """
    index = shard_range(len(sequence), rank=rank, world_size=world_size)
    if isinstance(sequence, (list, tuple, str, range, torch.Tensor)):
        return sequence[index.start : index.stop]
    from torch.utils.data import Subset

    return Subset(sequence, list(index))


# ============================================================================ collectives
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over the ranks (a copy of it in one process).

    Args:
        tensor: The same shape and dtype on every rank, on any device.

    Returns:
        A new tensor on ``tensor``'s device.
    """
    if not is_distributed():
        return tensor.clone()
    device = communication_device()
    out = tensor.detach().to(device, copy=True)
    dist.all_reduce(out)
    return out.to(tensor.device)


def all_gather(tensor: torch.Tensor, *, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, in rank order (without gradients).

    Ranks may hold different numbers of rows: they are padded to the longest for the collective
    and trimmed after it, so nothing is duplicated or dropped.

    Args:
        tensor: (n_r, ...) on rank r; the trailing shape and dtype the same everywhere.
        sizes: The n_r of every rank, if known (saves one small collective).

    Returns:
        (sum of n_r, ...) on ``tensor``'s device, identical on every rank.

    Raises:
        ShapeError: ``sizes`` that disagree with this rank's tensor.
    """
    if not is_distributed():
        return tensor.clone()
    world_size, rank = get_world_size(), get_rank()
    device = communication_device()
    if sizes is None:
        count = torch.tensor([tensor.shape[0]], dtype=torch.long, device=device)
        counts = [torch.zeros_like(count) for _ in range(world_size)]
        dist.all_gather(counts, count)
        sizes = [int(c) for c in counts]
    sizes = [int(s) for s in sizes]
    if len(sizes) != world_size or sizes[rank] != tensor.shape[0]:
        raise ShapeError(f"all_gather: sizes {sizes} do not fit rank {rank}'s {tensor.shape[0]} rows "
                         f"(expected {world_size} sizes)")
    longest = max(sizes)
    local = tensor.detach().to(device)
    if local.shape[0] < longest:
        local = torch.cat([local, local.new_zeros((longest - local.shape[0], *local.shape[1:]))])
    parts = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(parts, local.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]).to(tensor.device)


def broadcast_object(obj=None, *, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (pickled; for small things such as a run folder).

    Returns:
        ``obj`` from rank ``src`` (``obj`` itself in one process).
    """
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=communication_device())
    return box[0]


def check_same_on_all_ranks(value: torch.Tensor, *, what: str) -> None:
    """Refuse to go on when ``value`` differs between ranks (e.g. parameters after a resume).

    Raises:
        StateError: the ranks disagree.
    """
    if not is_distributed():
        return
    gathered = all_gather(value.detach().reshape(1, -1).to(torch.float64), sizes=[1] * get_world_size())
    if not bool((gathered == gathered[:1]).all()):
        raise StateError(f"{what} differs between the ranks; every rank must start from the same state "
                         f"(the same seeds and checkpoint)")
