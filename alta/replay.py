"""The replay contract of ALTA: what the buffer stores, how a sampled memory is checked, and
the DER++ terms of the loss, in one place.

ALTA (Li et al., IEEE TMM 2023, reference code ``main.py``) replays in feature space with the
loss of DER++ (Buzzega et al., "Dark Experience for General Continual Learning", NeurIPS 2020):

    L = CE(z, y) + alpha * CE(z_b, y_b) + beta * MSE(z_b, z_b_stored)

A :class:`~alta.MemoryBuffer` used for it holds, per sample, the fields :data:`REPLAY_FIELDS`:
the label, the frozen image feature f1 (not the image), the logits the model produced when the
sample was offered (before the step) and the experience id. :func:`alta.loop.step.train_step`
offers every sample of every training batch, so replay starts during the first experience.

Shape:
    labels (M,) int64; image_features (M, D) float; logits (M, C) float; experience_ids (M,) int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from .errors import ShapeError

__all__ = ["REPLAY_FIELDS", "ReplayBatch", "ReplayTerms", "check_buffer_fields", "check_memory", "replay_terms",
           "replay_ce", "replay_mse"]

REPLAY_FIELDS = ("labels", "image_features", "logits", "experience_ids")


@dataclass(frozen=True)
class ReplayBatch:
    """A sampled memory, checked and on the learner's device.

    Attributes:
        image_features: f1 of the stored samples, float32, (M, D).
        labels: Their labels, int64, (M,).
        logits: The logits stored with them (z_b_stored), float32, (M, C).
    """

    image_features: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor


def check_buffer_fields(fields, *, extra=()) -> None:
    """Refuse a buffer that holds other fields than ALTA replay stores.

    Args:
        fields: ``buffer.fields`` (empty for a buffer that has stored nothing yet).
        extra: The fields the learner's extra loss terms store besides (:class:`alta.losses.LossTerm`
            ``stores``).

    Raises:
        ShapeError: the buffer was filled with other fields.
    """
    expected = set(REPLAY_FIELDS) | set(extra)
    if fields and set(fields) != expected:
        raise ShapeError(
            f"the buffer holds the fields {sorted(fields)}, but ALTA replay stores {sorted(expected)}; "
            f"use a new MemoryBuffer for this learner (train_step fills it)"
        )


def check_memory(
    memory: Mapping[str, torch.Tensor], *, embed_dim: int, num_classes: int, device: torch.device, backbone: str
) -> ReplayBatch:
    """Check a sampled memory against the learner and move it to ``device``.

    Args:
        memory: What ``buffer.sample(n)`` returned.
        embed_dim: D of the learner's backbone.
        num_classes: C of the learner's head.
        device: The learner's device.
        backbone: The backbone's name (for the messages).

    Returns:
        The :class:`ReplayBatch`.

    Raises:
        ShapeError: fields missing, features of another dimension, logits over another class count.
    """
    missing = {"image_features", "labels", "logits"} - set(memory)
    if missing:
        raise ShapeError(
            f"the buffer lacks the fields {sorted(missing)}; a buffer used for ALTA replay holds "
            f"{', '.join(REPLAY_FIELDS)} (train_step fills them)"
        )
    f1, labels, logits = memory["image_features"], memory["labels"], memory["logits"]
    if f1.ndim != 2 or f1.shape[1] != embed_dim:
        raise ShapeError(
            f"the buffer stores image features of shape {tuple(f1.shape[1:])} but backbone {backbone!r} has "
            f"D={embed_dim}; use a new buffer for a different backbone"
        )
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ShapeError(
            f"the buffer stores logits over {tuple(logits.shape[1:])} classes but the learner scores "
            f"{num_classes}; use a new buffer for a different stream"
        )
    return ReplayBatch(
        image_features=f1.to(device, dtype=torch.float32, non_blocking=True),
        labels=labels.to(device, dtype=torch.long, non_blocking=True),
        logits=logits.to(device, dtype=torch.float32, non_blocking=True),
    )


@dataclass(frozen=True)
class ReplayTerms:
    """The two DER++ replay terms of a replayed memory, each a mean over its own items.

    Attributes:
        ce: ``CE(z_b, y_b)``, the mean over the M replayed items, 0-dim with its graph.
        mse: ``MSE(z_b, z_b_stored)``, the mean over the stored logits compared, 0-dim with its graph.
        num_items: M, the items ``ce`` averages over.
        num_elements: The stored logits ``mse`` averages over: ``M * C``, or with a ``seen``
            head the finite ones (a 0-dim tensor: counting them on the host would synchronise
            the device).
    """

    ce: torch.Tensor
    mse: torch.Tensor
    num_items: int
    num_elements: int | torch.Tensor


def replay_terms(logits: torch.Tensor, memory: ReplayBatch, *, seen_only: bool) -> ReplayTerms:
    """The two DER++ replay terms: ``CE(z_b, y_b)`` and ``MSE(z_b, z_b_stored)``.

    Args:
        logits: z_b, the current logits of the stored samples, (M, C).
        memory: The stored labels and logits.
        seen_only: The head scores seen classes only (``head="seen"``): stored logits of classes
            not yet scored when the item was stored are ``-inf`` and left out of the MSE.

    Returns:
        :class:`ReplayTerms`: both means, and how many items each averages over (so that the
        shards of a data-parallel step can be weighed, :mod:`alta.loop.parallel`).

    Shape:
        logits: (M, C).

    References:
        Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
        Baseline", NeurIPS 2020 (DER++); Li et al., IEEE TMM 2023 (reference ``main.py``).
    """
    ce = replay_ce(logits, memory.labels)
    mse, count = replay_mse(logits, memory.logits, seen_only=seen_only)
    return ReplayTerms(ce=ce, mse=mse, num_items=int(logits.shape[0]), num_elements=count)


def replay_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``CE(z_b, y_b)``, the DER++ replay cross-entropy: the mean over the M replayed items.

    Shape:
        logits: (M, C); labels: (M,); returns a 0-dim tensor.
    """
    return F.cross_entropy(logits, labels)


def replay_mse(logits: torch.Tensor, stored: torch.Tensor, *,
               seen_only: bool) -> tuple[torch.Tensor, int | torch.Tensor]:
    """``MSE(z_b, z_b_stored)``, the DER++ logit matching, and the number of stored logits it
    averages over.

    Args:
        logits: z_b, the current logits of the stored samples.
        stored: z_b_stored, the logits stored with them.
        seen_only: Leave out the stored logits that are ``-inf`` (classes not yet scored when the
            item was stored, ``head="seen"``); their count is then a 0-dim tensor (counting on the
            host would synchronise the device).

    Shape:
        logits, stored: (M, C); returns a 0-dim tensor and the count.
    """
    if seen_only:  # compare only classes that were scored when the item was stored
        finite = torch.isfinite(stored)
        diff = torch.where(finite, logits - stored.nan_to_num(0.0, 0.0, 0.0), torch.zeros_like(logits))
        count = finite.sum()
        return diff.pow(2).sum() / count.clamp_min(1), count
    return F.mse_loss(logits, stored), stored.numel()
