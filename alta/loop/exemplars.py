"""Exemplars chosen at the end of an experience: the memory of the PyCIL/PROOF line.

A buffer whose policy is offered whole experiences (``buffer.offered_per == "experience"``: the
``"herding"`` policy of :mod:`alta.policies`, iCaRL's 20 exemplars per class) is not offered the
training batches. Instead, once an experience is trained (and its prompts snapshotted),
:func:`offer_experience` offers it every training image of the experience at once, with what a
training step would store for it (:meth:`~alta.losses.StepLoss.memory_items`: label, frozen image
feature f1, the learner's logits, experience id), and the policy keeps its exemplars.

As in PyCIL (``models/base.py``, ``_extract_vectors`` with the test transform), the features are
those of the images under the *test* transform: no augmentation, the same features every time
(taken from the run's feature cache, where training in mode ``fixed`` already put them). The
stored logits are the learner's at the end of the experience, the DER++ target ALTA replays.

References:
    S.-A. Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR 2017.
    D.-W. Zhou et al., "Learning without Forgetting for Vision-Language Models" (PROOF), TPAMI 2025
    (github.com/zhoudw-zdw/PROOF@0bb20520, ``models/base.py`` ``build_rehearsal_memory``).
"""

from __future__ import annotations

import logging

import torch

from .cache import FeatureCache
from .config import LoopConfig

__all__ = ["offer_experience"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def offer_experience(learner, experience, buffer, *, loop: LoopConfig | None = None,
                     cache: FeatureCache | None = None) -> int | None:
    """Offer an experience's training set to a buffer that is offered whole experiences.

    Does nothing (returns ``None``) without a buffer, for a learner that does not replay, or for
    a buffer offered training batches instead (reservoir, class-balanced: :func:`alta.train_step`
    offers those). Call it after ``learner.end_experience``; the loops of :mod:`alta.loop.fit`
    and :mod:`alta.loop.group` do, before ``on_experience_end`` (so a checkpoint holds the
    exemplars).

    Args:
        learner: The learner (any :class:`~alta.loop.protocol.Learner`): its ``loss`` gives what
            the buffer stores for each image (:meth:`~alta.losses.StepLoss.memory_items`).
        experience: The experience just trained.
        buffer: Its :class:`~alta.MemoryBuffer`, or ``None``.
        loop: The loop's settings (evaluation batch size, workers).
        cache: Where the frozen features of the training images under the test transform live
            (a new in-memory cache when ``None``).

    Returns:
        How many items the buffer kept, or ``None`` when nothing was offered.
    """
    if buffer is None or not learner.replays or getattr(buffer, "offered_per", "step") != "experience":
        return None
    loop = LoopConfig() if loop is None else loop
    cache = FeatureCache() if cache is None else cache
    dataset = experience.train.with_transform(experience.test.transform)
    stored = cache.features(learner.backbone, dataset, batch_size=loop.eval_batch_size,
                            num_workers=loop.num_workers)
    was_training = learner.training
    learner.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    try:
        for features, labels in zip(stored.features.split(loop.eval_batch_size),
                                    stored.labels.split(loop.eval_batch_size)):
            items = learner.loss(features, labels).memory_items()
            for name, value in items.items():
                parts.setdefault(name, []).append(value.detach())
    finally:
        learner.train(was_training)
    if not parts:
        return 0
    slots = buffer.add(**{name: torch.cat(values) for name, values in parts.items()})
    kept = int((slots >= 0).sum())
    logger.info("experience %d: the buffer kept %d of its %d training images (%s, %s per class); %d stored",
                int(experience.index), kept, int(stored.labels.shape[0]), getattr(buffer, "policy", "?"),
                getattr(buffer, "per_class", None), len(buffer))
    return kept
