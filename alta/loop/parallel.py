"""Data-parallel ALTA under torchrun: the step's hook and the checks of a run on N processes.

One run on N processes computes what the single-process run computes (ALTA: Li et al., IEEE TMM
2023; the loss is DER++'s, Buzzega et al., NeurIPS 2020), only faster. :func:`alta.train_step`
is the one step for both; :class:`DataParallelStep` is what it does differently on N ranks:

- **Shards weighed by their global counts.** The global batch is the configured batch size B
  (32 in the paper), split over the ranks (:func:`alta.distributed.split_sizes`: contiguous,
  near-equal). Every term of the learner's :class:`~alta.losses.StepLoss` is a mean over its
  own items and says how many; the hook sums those counts over the ranks (one small all-reduce)
  and weighs each rank's term by ``local / global`` items, so that the ranks' losses, and their
  gradients, add up to the single-process loss of the global batch.
- **One explicit all-reduce, not DDP.** The trainable parameters are tiny (2,048 ctx + 132,160
  adapter scalars for RN50): one flat all-reduce of ~0.5 MB, which also carries the step's
  statistics, and there is nothing for DDP's bucketing and overlap with the backward pass to
  hide. An alternating schedule leaves one branch without gradients at some steps, which DDP
  handles only with ``find_unused_parameters=True``, and DDP would broadcast the learner's
  buffers (w1, prompt snapshots) at every forward.
- **Text encoding sharded by class** (:func:`sharded_text_features`): with cached image
  features the per-step cost is the text encoder over the learned prompts of the C classes
  still learning. Each rank encodes ``C / N`` of them and the features are all-gathered with
  autograd (``torch.distributed.nn.functional.all_gather``; its backward sums each rank's
  gradient slice over the ranks). Used from :data:`SHARD_TEXT_MIN_CLASSES` learning classes on.
- **One global buffer**, identical on every rank: every rank offers the all-gathered batch, in
  global order, to its copy of the buffer, whose generator was seeded the same, so it keeps
  exactly the items of a one-process run; replay batches are drawn identically on every rank and
  split over the ranks like the training batch.

The collectives themselves (process group, sharding, all-reduce, all-gather) are
:mod:`alta.distributed`.

Examples:
    Under ``torchrun --nproc_per_node 2 train.py``:

    >>> from alta import distributed as dist
    >>> dist.init_from_env()  # doctest: +SKIP
    >>> step = DataParallelStep(shard_sizes=dist.split_sizes(32))  # doctest: +SKIP
    >>> stats = alta.train_step(learner, x_shard, y_shard, optimizer=optimizer, buffer=buffer,
    ...                         parallel=step)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch
import torch.distributed as torch_dist

from .. import distributed as dist
from ..errors import ShapeError
from ..learner import CrossModalLearner
from .step import LocalStep

__all__ = ["DataParallelStep", "SHARD_TEXT_MIN_CLASSES", "sharded_text_features", "check_ranks_agree"]

#: Shard the text encoding by class from this many learning classes on. Below it the all-gather
#: (and its backward) costs about as much as the encoding it saves (benchmarks/distributed.py).
SHARD_TEXT_MIN_CLASSES = 16


def _all_gather_with_grad(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (equal shapes), with autograd: the backward sums each rank's
    gradient slice over the ranks (``torch.distributed.nn.functional.all_gather``)."""
    from torch.distributed.nn.functional import all_gather as all_gather_autograd

    with warnings.catch_warnings():  # deprecated in favour of a private module; still the public one
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*", category=FutureWarning)
        return list(all_gather_autograd(tensor))


def sharded_text_features(learner: CrossModalLearner, *, grad: bool = True, shard_text: bool | None = None):
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
        :class:`~alta.snapshots.TextFeatures`, the same on every rank.

    Shape:
        returns w1, w2 of shape (C, D).
    """
    if learner.prompt_learner is None or not dist.is_distributed():
        return learner.text_features(grad=grad)
    num_learning = int(learner.learning_classes().numel())
    use = num_learning >= SHARD_TEXT_MIN_CLASSES if shard_text is None else bool(shard_text)
    if not use or num_learning == 0:
        return learner.text_features(grad=grad)
    world_size, rank = dist.get_world_size(), dist.get_rank()

    def encode_sharded(ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[0]
        chunk = -(-n // world_size)  # ceil
        mine = ids[rank * chunk : (rank + 1) * chunk]
        if mine.shape[0] < chunk:  # the last ranks: pad with a real class, dropped after the gather
            mine = torch.cat([mine, ids[:1].expand(chunk - mine.shape[0])])
        local = learner.encode_prompts(mine)  # (chunk, D)
        carried = local.to(dist.communication_device())  # differentiable; a no-op for NCCL
        if torch.is_grad_enabled() and local.requires_grad:
            parts = _all_gather_with_grad(carried)
        else:
            parts = [torch.empty_like(carried) for _ in range(world_size)]
            torch_dist.all_gather(parts, carried.contiguous())
        return torch.cat(parts)[:n].to(local.device)  # (N, D) in the order of ids

    return learner.text_features(grad=grad, encode_prompts=encode_sharded)


class DataParallelStep(LocalStep):
    """:func:`alta.train_step` on the ranks of a process group: all ranks together do what one
    process does on the global batch. Without a process group it is :class:`LocalStep`.

    Args:
        shard_sizes: Every rank's part b of the global batch, in rank order
            (``alta.distributed.split_sizes(B)``); ``None`` gathers them (one small collective).
        shard_text: Shard the text encoding by class (see :func:`sharded_text_features`;
            ``None``: from :data:`SHARD_TEXT_MIN_CLASSES` learning classes on).

    Raises:
        ShapeError: from the step, ``shard_sizes`` that do not fit this rank's shard.
    """

    def __init__(self, *, shard_sizes: Sequence[int] | None = None, shard_text: bool | None = None) -> None:
        self.shard_sizes = None if shard_sizes is None else [int(s) for s in shard_sizes]
        self.shard_text = shard_text
        self._sizes: list[int] | None = None
        self._contributions: dict[str, torch.Tensor] | None = None
        self._objective: torch.Tensor | None = None

    def _check_sizes(self, local: int) -> list[int]:
        if self.shard_sizes is None:
            count = torch.tensor([local], dtype=torch.long)
            return [int(c) for c in dist.all_gather(count, sizes=[1] * dist.get_world_size())]
        sizes = self.shard_sizes
        if len(sizes) != dist.get_world_size() or sizes[dist.get_rank()] != local or min(sizes) < 0:
            raise ShapeError(
                f"shard_sizes must give the batch size of each of the {dist.get_world_size()} ranks (this rank, "
                f"{dist.get_rank()}, has {local} samples), got {list(sizes)}; use alta.distributed.split_sizes(B)"
            )
        return sizes

    def sample_memory(self, buffer, size: int):
        """This rank's part of a replay batch drawn identically on every rank."""
        full = buffer.sample(size)
        if not dist.is_distributed():
            return full
        m = int(next(iter(full.values())).shape[0])
        part = dist.shard_range(m)
        return {name: value[part.start : part.stop] for name, value in full.items()}

    def loss(self, learner, inputs: torch.Tensor, labels: torch.Tensor, *, memory, branches):
        """The shard's loss, each term weighed by ``local / global`` items (one all-reduce of
        the counts), so that the ranks' objectives sum to the global batch's loss."""
        if not dist.is_distributed():
            self._contributions = None
            return super().loss(learner, inputs, labels, memory=memory, branches=branches)
        self._sizes = self._check_sizes(int(labels.shape[0]))
        kwargs = {}
        if isinstance(learner, CrossModalLearner) and learner.prompt_learner is not None:
            kwargs["text"] = sharded_text_features(learner, grad="text" in branches, shard_text=self.shard_text)
        if isinstance(inputs, torch.Tensor) and inputs.ndim == 4 and inputs.shape[0] == 0:
            inputs = torch.zeros(0, learner.backbone.embed_dim, device=learner.device)  # an empty shard: no image to encode
        out = learner.loss(inputs, labels, memory=memory, branches=branches, **kwargs)
        names = list(out.terms)
        device = dist.communication_device()
        local = torch.stack([torch.as_tensor(out.counts[n], dtype=torch.float64).to(device) for n in names])
        total = dist.all_reduce_sum(local.clone()).to(out.loss.device)  # (K,): items of each term over the ranks
        local = local.to(out.loss.device)
        objective = None
        contributions = {}
        for i, name in enumerate(names):
            value = out.terms[name]
            share = (local[i] / total[i].clamp_min(1)).to(value.dtype)
            # a rank with no item of a term (an empty shard) contributes 0, never the NaN of an empty mean
            part = torch.where(local[i] > 0, value * share, torch.zeros_like(value))
            contributions[name] = part.detach()
            weighted = part * out.weights[name]
            objective = weighted if objective is None else objective + weighted
        self._contributions, self._objective = contributions, objective.detach()
        return out, objective

    def reduce(self, learner, branches, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum the gradients of the active branches and the statistics over the ranks, in one
        all-reduce: every rank then holds the global batch's gradient and statistics.

        A parameter without a gradient on this rank (no sample of its shard reached it)
        contributes zeros; every parameter of the active branches has the summed gradient after.
        """
        if self._contributions is None:
            return stats
        out = {"loss": self._objective, **self._contributions, "correct": stats["correct"]}
        params = [p for name, group in learner.branch_parameters().items() if name in branches for p in group]
        keys = list(out)
        device = dist.communication_device()
        flat = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params]
        dtype = flat[0].dtype if flat else torch.float32
        flat += [torch.as_tensor(out[k]).reshape(1).to(dtype) for k in keys]
        buffer = torch.cat([t.to(device) for t in flat])
        torch_dist.all_reduce(buffer)
        offset = 0
        for p in params:
            g = buffer[offset : offset + p.numel()].view_as(p).to(p.device)
            p.grad = g if p.grad is None else p.grad.copy_(g)
            offset += p.numel()
        return {k: buffer[offset + i].to(stats[k].device, stats[k].dtype) for i, k in enumerate(keys)}

    def gather_items(self, items: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The global batch's buffer fields, all-gathered in rank order, in one collective.

        The fields are packed into one float32 matrix (labels and experience ids are class counts,
        exact in float32) and unpacked to their dtypes afterwards: the values are bit-identical.
        """
        if not dist.is_distributed():
            return items
        names = list(items)
        widths, dtypes, columns = [], [], []
        for name in names:
            value = items[name]
            dtypes.append(value.dtype)
            width = math.prod(value.shape[1:])
            widths.append((tuple(value.shape[1:]), width))
            if not value.dtype.is_floating_point and value.numel() and int(value.abs().max()) >= 2**24:
                raise ShapeError(f"buffer field {name!r} holds integers >= 2**24, which float32 cannot carry exactly")
            columns.append(value.reshape(value.shape[0], width).to(torch.float32))
        packed = dist.all_gather(torch.cat(columns, dim=1), sizes=self._sizes)  # (B, sum of widths)
        out, offset = {}, 0
        for name, (shape, width), dtype in zip(names, widths, dtypes):
            out[name] = packed[:, offset : offset + width].reshape(packed.shape[0], *shape).to(dtype)
            offset += width
        return out


def check_ranks_agree(learner, buffer) -> None:
    """Refuse a data-parallel run whose ranks start from different states (other seeds, another
    checkpoint): they would train apart silently.

    Raises:
        StateError: the ranks disagree.
    """
    params = [p.detach().double().reshape(-1) for p in learner.trainable_parameters()]
    flat = torch.cat(params) if params else torch.zeros(1, dtype=torch.float64)
    summary = [float(flat.sum()), float(flat.pow(2).sum()), float(int(learner.experience_index))]
    if buffer is not None:
        summary += [float(len(buffer)), float(buffer.num_seen), float(buffer.seed % 2**31)]
    dist.check_same_on_all_ranks(torch.tensor(summary, dtype=torch.float64),
                                 what="the learner's trainable parameters or the buffer (its seed, its contents)")
