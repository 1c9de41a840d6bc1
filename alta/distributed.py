"""Data-parallel ALTA on N processes (GPUs or machines) with ``torch.distributed`` and ``torchrun``.

One run on N processes computes what the single-process run computes (ALTA: Li et al., IEEE TMM
2023; the loss is DER++'s, Buzzega et al., NeurIPS 2020), only faster:

- **The method is unchanged.** The global batch is the configured batch size B (32 in the
  paper), split over the ranks (:func:`split_sizes`: contiguous, near-equal). Each rank computes
  its shard's *contribution* to the loss of the global batch (sums divided by the global counts,
  :class:`~alta.replay.GlobalSizes`), and the gradients of the trainable parameters (context
  vectors, adapter) are summed over the ranks by one explicit all-reduce per step: the result
  is the gradient of the mean loss over the global batch, as in one process.
- **Why an explicit all-reduce and not DDP.** The trainable parameters are tiny (2,048 ctx +
  132,160 adapter scalars for RN50): one flat all-reduce of ~0.5 MB, which also carries the
  step's loss statistics, costs one collective per step, and there is nothing for DDP's
  bucketing and overlap with the backward pass to hide. An alternating schedule leaves one
  branch without gradients at some steps, which DDP handles only with
  ``find_unused_parameters=True`` (an extra graph traversal per step), and DDP would broadcast
  the learner's buffers (w1, prompt snapshots) at every forward. A DDP-wrapped learner does work
  too, if you prefer it in your own loop: ``DistributedDataParallel(learner)(inputs, labels,
  memory=...)`` goes through ``forward`` and returns the :class:`~alta.learner.StepLoss`; scale
  its loss by ``world_size * local / global`` batch size so that DDP's average is the global mean.
- **Text encoding sharded by class** (:func:`text_features`): with cached image features the
  per-step cost is the text encoder over the learned prompts of the C classes still learning.
  Each rank encodes ``C / N`` of them and the features are all-gathered with autograd
  (``torch.distributed.nn.functional.all_gather``; its backward sums each rank's gradient slice
  over the ranks), so that cost falls by N instead of being repeated on every rank. Used when at
  least :data:`SHARD_TEXT_MIN_CLASSES` classes are learning (``shard_text`` overrides it).
- **Feature caches and evaluation sharded**: the frozen image features of a dataset are encoded
  by all ranks on disjoint, batch-aligned shards and all-gathered (bit-identical to one process:
  every encoder batch is the single-process batch; ``FeatureCache(distributed=True)``);
  evaluation counts are summed over ranks (``evaluate(..., distributed=True)``, exact).
- **One global buffer**, identical on every rank: every rank offers the all-gathered batch, in
  global order, to its copy of the buffer, whose generator was seeded the same, so it keeps
  exactly the items of a one-process run; replay batches are drawn identically on every rank and
  split over the ranks like the training batch.

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
import math
import os
import warnings
from typing import Sequence

import torch
import torch.distributed as dist

from .errors import ConfigError, ShapeError, StateError
from .replay import GlobalSizes, check_buffer_fields

__all__ = [
    "SHARD_TEXT_MIN_CLASSES",
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
    "text_features",
    "train_step",
]

logger = logging.getLogger(__name__)

#: Shard the text encoding by class from this many learning classes on. Below it the all-gather
#: (and its backward) costs about as much as the encoding it saves (benchmarks/distributed.py).
SHARD_TEXT_MIN_CLASSES = 16

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


def _communication_device() -> torch.device:
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
    device = _communication_device()
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
    device = _communication_device()
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
    dist.broadcast_object_list(box, src=src, device=_communication_device())
    return box[0]


def _all_gather_with_grad(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (equal shapes), with autograd: the backward sums each rank's
    gradient slice over the ranks (``torch.distributed.nn.functional.all_gather``)."""
    from torch.distributed.nn.functional import all_gather as all_gather_autograd

    with warnings.catch_warnings():  # deprecated in favour of a private module; still the public one
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*", category=FutureWarning)
        return list(all_gather_autograd(tensor))


# ============================================================================ the method
def text_features(learner, *, grad: bool = True, shard_text: bool | None = None):
    """``learner.text_features`` with the learned prompts encoded by class over the ranks.

    The learning classes (N of them: not snapshotted, in the head) are split into contiguous
    chunks of ``ceil(N / world_size)``; each rank encodes its chunk (padded with a repeated class
    so that every rank runs the same shapes; the padding is dropped after the gather) and the
    features are all-gathered with autograd, so gradients reach every rank's context vectors
    through the classes it encoded. The summed gradient over ranks is the full one.

    Args:
        learner: The :class:`~alta.CrossModalLearner` (the same state on every rank).
        grad: Track gradients to the context vectors.
        shard_text: ``True``/``False`` forces sharding on or off; ``None`` shards from
            :data:`SHARD_TEXT_MIN_CLASSES` learning classes on. Without a process group the
            encoding is never sharded.

    Returns:
        :class:`~alta.learner.TextFeatures`, the same on every rank.

    Shape:
        returns w1, w2 of shape (C, D).
    """
    if learner.prompt_learner is None or not is_distributed():
        return learner.text_features(grad=grad)
    num_learning = int(learner.learning_classes().numel())
    use = num_learning >= SHARD_TEXT_MIN_CLASSES if shard_text is None else bool(shard_text)
    if not use or num_learning == 0:
        return learner.text_features(grad=grad)
    world_size, rank = get_world_size(), get_rank()

    def encode_sharded(ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[0]
        chunk = -(-n // world_size)  # ceil
        mine = ids[rank * chunk : (rank + 1) * chunk]
        if mine.shape[0] < chunk:  # the last ranks: pad with a real class, dropped after the gather
            mine = torch.cat([mine, ids[:1].expand(chunk - mine.shape[0])])
        local = learner.encode_prompts(mine)  # (chunk, D)
        carried = local.to(_communication_device())  # differentiable; a no-op for NCCL
        if torch.is_grad_enabled() and local.requires_grad:
            parts = _all_gather_with_grad(carried)
        else:
            parts = [torch.empty_like(carried) for _ in range(world_size)]
            dist.all_gather(parts, carried.contiguous())
        return torch.cat(parts)[:n].to(local.device)  # (N, D) in the order of ids

    return learner.text_features(grad=grad, encode_prompts=encode_sharded)


def _check_shard_sizes(shard_sizes, local: int) -> list[int]:
    if shard_sizes is None:
        count = torch.tensor([local], dtype=torch.long)
        return [int(c) for c in all_gather(count, sizes=[1] * get_world_size())]
    sizes = [int(s) for s in shard_sizes]
    if len(sizes) != get_world_size() or sizes[get_rank()] != local or min(sizes) < 0:
        raise ShapeError(
            f"shard_sizes must give the batch size of each of the {get_world_size()} ranks (this rank, "
            f"{get_rank()}, has {local} samples), got {list(shard_sizes)}; use split_sizes(global_batch_size)"
        )
    return sizes


def _reduce_gradients(params: list[torch.nn.Parameter], stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum the gradients of ``params`` and the step statistics over the ranks in one all-reduce.

    A parameter without a gradient on this rank (no sample of its shard reached it) contributes
    zeros; every parameter of ``params`` has the summed gradient afterwards.
    """
    keys = list(stats)
    device = _communication_device()
    flat = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params]
    flat += [stats[k].reshape(1).to(flat[0].dtype if flat else torch.float32) for k in keys]
    buffer = torch.cat([t.to(device) for t in flat])
    dist.all_reduce(buffer)
    offset = 0
    for p in params:
        g = buffer[offset : offset + p.numel()].view_as(p).to(p.device)
        p.grad = g if p.grad is None else p.grad.copy_(g)
        offset += p.numel()
    return {k: buffer[offset + i].to(stats[k].device, stats[k].dtype) for i, k in enumerate(keys)}


def train_step(
    learner,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    buffer=None,
    schedule=None,
    shard_sizes: Sequence[int] | None = None,
    shard_text: bool | None = None,
) -> dict[str, torch.Tensor]:
    """One data-parallel step; all ranks together do what :func:`alta.train_step` does on the
    global batch.

    sample the memory (the same items on every rank, split over the ranks) -> this shard's
    contribution to the loss (:class:`~alta.replay.GlobalSizes`; text encoded by class over the
    ranks) -> backward -> all-reduce of the gradients and statistics -> ``optimizer.step()`` ->
    every rank offers the all-gathered batch, in global order, to its buffer ->
    ``schedule.step()``. Without a process group (or with one process) it *is*
    :func:`alta.train_step`.

    Args:
        learner: The :class:`~alta.CrossModalLearner`, in the same state on every rank.
        inputs: This rank's shard of the global batch: images (b, 3, R, R) or frozen image
            features (b, D). Shards are contiguous and in rank order (:func:`shard`), so the
            buffer sees the global batch in its order.
        labels: The shard's labels (b,).
        optimizer: Over ``learner.trainable_parameters()``, the same on every rank.
        buffer: The global memory buffer (same seed and contents on every rank), or ``None``.
        schedule: An :class:`~alta.AlternatingSchedule`, or ``None`` (both branches).
        shard_sizes: Every rank's b, in rank order (``split_sizes(B)``); ``None`` gathers them
            (one small collective).
        shard_text: Shard the text encoding by class (see :func:`text_features`).

    Returns:
        Detached 0-dim tensors of the global batch, the same on every rank: ``loss``, ``ce``,
        ``replay_ce``, ``replay_mse`` and ``correct``.

    Raises:
        ConfigError, ShapeError, StateError: as :func:`alta.train_step`; ``shard_sizes`` that do
            not fit the shard.

    Shape:
        inputs: (b, 3, R, R) or (b, D); labels: (b,).
    """
    from .loop.training import _log_ignored_buffer, check_step_objects, train_step as single_process_step

    if not is_distributed():
        return single_process_step(learner, inputs, labels, optimizer=optimizer, buffer=buffer, schedule=schedule)
    check_step_objects(optimizer, buffer)
    branches = learner.active_branches(schedule)
    replay = buffer is not None and learner.method.replay
    _log_ignored_buffer(learner, buffer)
    if replay:
        check_buffer_fields(buffer.fields)
    sizes = _check_shard_sizes(shard_sizes, int(labels.shape[0]))
    mine = shard_range(sum(sizes), rank=get_rank())
    assert mine.stop - mine.start == sizes[get_rank()]

    memory, totals = None, GlobalSizes(batch=sum(sizes))
    if replay and not buffer.is_empty():
        full = buffer.sample(learner.replay_batch_size)  # the same items on every rank
        m = int(next(iter(full.values())).shape[0])
        part = shard_range(m)
        memory = {name: value[part.start : part.stop] for name, value in full.items()}
        if learner.head == "seen":
            elements = torch.isfinite(full["logits"]).sum().to(learner.device)
        else:
            elements = m * learner.num_classes
        totals = GlobalSizes(batch=sum(sizes), memory=m, memory_elements=elements)
    if learner.prompt_learner is None:
        text = None
    else:
        text = text_features(learner, grad="text" in branches, shard_text=shard_text)

    if isinstance(inputs, torch.Tensor) and inputs.ndim == 4 and inputs.shape[0] == 0:
        inputs = torch.zeros(0, learner.embed_dim, device=learner.device)  # an empty shard: no image to encode
    out = learner.loss(inputs, labels, memory=memory, branches=branches, text=text, sizes=totals)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    active = [p for name, params in learner.branch_parameters().items() if name in branches for p in params]
    stats = _reduce_gradients(active, out.stats())
    optimizer.step()

    if replay:
        buffer.add(**_gather_memory_items(out.memory_items(), sizes))
    if schedule is not None:
        schedule.step()
    return stats


def _gather_memory_items(items: dict[str, torch.Tensor], sizes: list[int]) -> dict[str, torch.Tensor]:
    """The global batch's buffer fields, all-gathered in rank order, in one collective.

    The fields are packed into one float32 matrix (labels and experience ids are class counts,
    exact in float32) and unpacked to their dtypes afterwards: the values are bit-identical.
    """
    names = list(items)
    widths, dtypes = [], []
    columns = []
    for name in names:
        value = items[name]
        dtypes.append(value.dtype)
        width = math.prod(value.shape[1:])
        column = value.reshape(value.shape[0], width)
        widths.append((tuple(value.shape[1:]), width))
        if not value.dtype.is_floating_point and value.numel() and int(value.abs().max()) >= 2**24:
            raise ShapeError(f"buffer field {name!r} holds integers >= 2**24, which float32 cannot carry exactly")
        columns.append(column.to(torch.float32))
    packed = all_gather(torch.cat(columns, dim=1), sizes=sizes)  # (B, sum of widths)
    out, offset = {}, 0
    for name, (shape, width), dtype in zip(names, widths, dtypes):
        out[name] = packed[:, offset : offset + width].reshape(packed.shape[0], *shape).to(dtype)
        offset += width
    return out


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
