"""ALTA's task-aware text representation w2: learned prompts, snapshotted when their experience ends.

When experience t ends, the prompts of its classes are frozen for the rest of the run (prompt
snapshot; Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for
Continual Learning", IEEE TMM 2023, task-aware text representations; reference
``MyPromptLearner``). Because the text encoder is frozen too, a snapshotted class's features
are computed once, at that moment, and reused: an exact saving. The shared context keeps
training and only moves the classes still learning.

:class:`PromptSnapshots` is the part of :class:`~alta.CrossModalLearner` that keeps them. It
reads the learner's ``prompt_learner``, ``backbone``, ``method``, ``head``, ``truncate_text``,
``snapshot_timing``, ``num_classes`` and ``device``, and its buffers ``w1``,
``snapshot_features`` (C, D), ``snapshotted`` (C,) and ``seen`` (C,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import StateError

__all__ = ["TextFeatures", "PromptSnapshots"]


@dataclass(frozen=True)
class TextFeatures:
    """L2-normalised class text features used to score images.

    Attributes:
        w1: Hand-written prompt features (task-invariant), or ``None`` if the method does not
            use them. Shape (C, D).
        w2: Learned-prompt features (task-aware): snapshots for frozen classes, the current
            context for the others, zero rows for classes outside the head; or ``None``.
            Shape (C, D).
    """

    w1: torch.Tensor | None
    w2: torch.Tensor | None


class PromptSnapshots:
    """The learned-prompt features w2 of a :class:`~alta.CrossModalLearner`: which classes still
    learn, their features with the current context, and the snapshots of finished classes."""

    def head_mask(self) -> torch.Tensor:
        """Classes scored by the head: all of them (``"all"``) or those seen so far (``"seen"``).

        Shape:
            returns (C,) bool.
        """
        if self.head == "all":
            return torch.ones_like(self.seen)
        return self.seen.clone()

    def learning_classes(self) -> torch.Tensor:
        """Classes whose learned-prompt features follow the current context (not snapshotted,
        inside the head).

        Shape:
            returns (N,) int64 class ids.
        """
        if self._learning_ids.device != self.device:  # the learner was moved with .to()
            self._refresh()
        return self._learning_ids

    def encode_prompts(self, class_ids: torch.Tensor) -> torch.Tensor:
        """Normalised learned-prompt features w2 of ``class_ids`` with the current context.

        Raises:
            StateError: the method has no learned prompt.

        Shape:
            class_ids: (N,); returns (N, D).
        """
        if self.prompt_learner is None:
            raise StateError(f"method {self.method.name!r} has no learned prompt to encode")
        return F.normalize(self.prompt_learner.encode(self.backbone, class_ids, truncate=self.truncate_text), dim=-1)

    def text_features(self, *, grad: bool = True, encode_prompts=None) -> TextFeatures:
        """Normalised class text features for the current state.

        w2 is computed from the context vectors only for :meth:`learning_classes`; snapshotted
        classes reuse their cached features. Call once per step and pass the result to
        :meth:`logits_from_features` for every batch of that step.

        Args:
            grad: Track gradients to the context vectors (``False`` for evaluation or when the
                text branch is not updated).
            encode_prompts: Computes the normalised w2 of the learning classes from their ids,
                (N,) -> (N, D); default :meth:`encode_prompts`.
                :func:`alta.loop.parallel.sharded_text_features` passes one that encodes C/N classes per
                rank and all-gathers the features.

        Returns:
            :class:`TextFeatures` with w1 and w2 of shape (C, D) (``None`` where unused).
        """
        w1 = self.w1 if any(t == "w1" for _, t in self.method.terms) else None
        w2 = None
        if self.prompt_learner is not None:
            ids = self.learning_classes()
            if ids.numel() == 0:
                w2 = self.snapshot_features
            else:
                encode = self.encode_prompts if encode_prompts is None else encode_prompts
                with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                    fresh = encode(ids)  # (N, D)
                    if ids.numel() == self.num_classes:
                        w2 = fresh  # every class is learning (first experience, head="all")
                    else:
                        w2 = self.snapshot_features.index_put((ids,), fresh)  # out of place: keeps the graph
        return TextFeatures(w1=w1, w2=w2)

    @torch.no_grad()
    def snapshot_prompts(self, classes: torch.Tensor) -> None:
        """Freeze the prompts of ``classes`` (those not snapshotted yet): their features are
        computed once, from the current context (or, with ``snapshot_timing="last_forward"``,
        taken from the last training forward, as the reference code does), and stay
        bit-identical for the rest of the run.

        Shape:
            classes: (N,) int64 class ids on the learner's device.
        """
        classes = classes[~self.snapshotted[classes]]
        if classes.numel() == 0:
            return
        if self.snapshot_timing == "last_forward" and self._last_forward_w2 is not None:
            features = self._last_forward_w2[classes]  # (N, D): the context before the final step
        else:
            features = self.encode_prompts(classes)  # (N, D)
        self.snapshot_features[classes] = features
        self.snapshotted[classes] = True
        self._refresh()
