"""The loss of a training step, term by term: what a learner's ``loss`` returns.

ALTA's loss (Li et al., IEEE TMM 2023, reference ``main.py``; DER++, Buzzega et al., NeurIPS
2020) is ``CE(z, y) + alpha * CE(z_b, y_b) + beta * MSE(z_b, z_b_stored)``. A
:class:`StepLoss` keeps each term with its weight and the number of items it averages over, so
the step (:func:`alta.train_step`) can log every term, and a data-parallel step can weigh the
shards of a global batch (:class:`alta.loop.parallel.DataParallelStep`) without the learner
knowing of processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["StepLoss"]


@dataclass(frozen=True)
class StepLoss:
    """The loss of one training batch (:meth:`CrossModalLearner.loss`), term by term.

    Every term is a mean over its own items (the batch's samples, the replayed items, the
    stored logits it compares), and ``counts`` says over how many: that is all a data-parallel
    step needs to weigh the shards of a global batch (:class:`alta.loop.parallel.DataParallelStep`),
    so the loss itself knows nothing of processes.

    Attributes:
        loss: The total loss ``sum(weights[k] * terms[k])``, with its graph (call ``backward``).
        terms: Each term's value with its graph, by name (ALTA: ``ce``, ``replay_ce``,
            ``replay_mse``; a term not computed at this step is a detached 0).
        weights: Each term's weight in ``loss`` (ALTA: 1, alpha, beta).
        counts: The items each term averages over (an int, or a 0-dim tensor where counting
            would synchronise the device); 0 for a term not computed at this step.
        logits: The batch's logits, detached, (B, C) (stored in the buffer: pre-step logits).
        image_features: f1 of the batch, detached, (B, D).
        labels: The batch's labels on the learner's device, (B,).
        experience_ids: The experience of each label, (B,).
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, float]
    counts: dict[str, int | torch.Tensor]
    logits: torch.Tensor
    image_features: torch.Tensor
    labels: torch.Tensor
    experience_ids: torch.Tensor

    def memory_items(self) -> dict[str, torch.Tensor]:
        """What the buffer stores for this batch: the fields of :data:`alta.replay.REPLAY_FIELDS`."""
        return {"labels": self.labels, "image_features": self.image_features, "logits": self.logits,
                "experience_ids": self.experience_ids}

    def stats(self) -> dict[str, torch.Tensor]:
        """Detached 0-dim tensors (no host-device sync): ``loss``, every term by name, and
        ``correct`` (right predictions in the batch)."""
        with torch.no_grad():
            correct = (self.logits.argmax(dim=1) == self.labels).sum()
        return {"loss": self.loss.detach(), **{name: value.detach() for name, value in self.terms.items()},
                "correct": correct}
