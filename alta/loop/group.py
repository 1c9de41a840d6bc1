"""Run groups: K configurations trained in one pass over the shared frozen encoders.

ALTA (Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023) freezes both CLIP encoders, and alta draws shuffling and augmentation
from ``(seed, experience, epoch, sample)`` (:func:`alta.loop.batches.epoch_batches`). Runs that share
the stream, the seed, the batch size and the epochs therefore see the same augmented images in
the same order, and their image-encoder forward is the same computation. A table of the paper
(nine methods, three buffer sizes, bounds) is mostly such runs. :func:`run_group` trains K of
them together:

- one image-encoder forward per training step for all K members (mode ``train_cache="none"``),
  or one shared feature cache (cached modes), and one shared cache of test features;
- each member keeps its own learner (parameters, prompt snapshots), optimizer, learning-rate
  scheduler, buffer (with its own generator), schedule, callbacks and result.

A member's step gets the batch's frozen image features f1 (B, D) instead of the images, which is
exactly what its learner would have computed itself (:meth:`~alta.CrossModalLearner.loss`), so
each member's accuracy matrices, evaluation records, statistics and final state are
**bit-identical** to a :func:`~alta.run_stream` of that member alone (``tests/test_group.py``).

The text side is not batched across members (there is no switch for it): each learner encodes
its own learned prompts with the prefix [SOS] + ctx shared by its classes
(:class:`~alta.prompt.PromptLearner`). Merging the K encodings into one text-encoder call would
give the transformer other shapes (each member has its own prefix), which can change the
floating-point rounding and so lose the bit-identity above, for little: measured by
``benchmarks/group.py`` on CPU, the seven prompt methods' encodings are 0.017 s of a 0.080 s group
step at ``tiny-vit``, and at ViT-B/32 size the nine members' whole steps are 1.2 s against the
6.0 s image forward that the group already runs once.

Example:
    >>> backbone = alta.load_backbone("tiny-vit")  # doctest: +SKIP
    >>> members = []  # doctest: +SKIP
    >>> for method in ("alta", "mlp", "cprompt"):  # doctest: +SKIP
    ...     learner = alta.CrossModalLearner(backbone, class_names=stream.class_names, method=method)
    ...     optimizer, scheduler = alta.build_optimizer(learner, epochs=5)
    ...     members.append(GroupMember(learner, optimizer=optimizer, scheduler=scheduler,
    ...                                buffer=alta.MemoryBuffer(200, seed=1), name=method))
    >>> results = run_group(members, stream, loop=alta.LoopConfig(epochs=5))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .. import distributed as _dist
from ..errors import ConfigError
from .batches import training_batches
from .cache import FeatureCache
from .callbacks import Callback, as_callback_list
from .config import LoopConfig
from .fit import ExperienceTrainer, PeriodicEvaluation, covered_evaluations, finish_experience, stream_experiences
from .result import StreamResult

__all__ = ["GroupMember", "run_group"]


@dataclass(frozen=True)
class GroupMember:
    """One configuration of a run group: what :func:`~alta.run_stream` would get for it alone.

    Attributes:
        learner: Its :class:`~alta.CrossModalLearner`, built on the group's one backbone.
        optimizer: Its optimizer (:func:`alta.build_optimizer`), over its own learner only.
        scheduler: Its learning-rate scheduler, or ``None``.
        buffer: Its :class:`~alta.MemoryBuffer` (its own generator), or ``None``.
        schedule: Its :class:`~alta.AlternatingSchedule`, or ``None`` (both branches).
        callbacks: Callbacks receiving every event of this member's run.
        result: A partial result to continue (resume), or ``None``.
        name: A label for messages (default: the member's position and method).
    """

    learner: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    buffer: Any = None
    schedule: Any = None
    callbacks: Sequence[Callback] | Callback | None = None
    result: StreamResult | None = None
    name: str | None = None


def _check_members(members: Sequence[GroupMember]):
    """The group's one backbone; refuses anything two members would share by mistake."""
    if isinstance(members, GroupMember) or not isinstance(members, Sequence) or not members:
        raise ConfigError(f"run_group needs a non-empty list of GroupMember, got {members!r}")
    for i, member in enumerate(members):
        if not isinstance(member, GroupMember):
            raise ConfigError(f"member {i} is a {type(member).__name__}, expected an alta.loop.group.GroupMember")
        if not member.learner.trains:
            raise ConfigError(f"member {i} ({member.learner.name!r}) trains nothing; evaluate it with "
                              f"alta.evaluate instead of putting it in a run group")
    backbone = members[0].learner.backbone
    for i, member in enumerate(members):
        if member.learner.backbone is not backbone:
            raise ConfigError(
                f"member {i} has its own backbone object ({member.learner.backbone.name!r}); the members of a group "
                f"share the frozen encoders: build every learner on the same alta.load_backbone(...) result"
            )
    for what in ("learner", "optimizer", "buffer", "schedule"):
        objects = [getattr(m, what) for m in members if getattr(m, what) is not None]
        if len({id(o) for o in objects}) != len(objects):
            raise ConfigError(f"two members of the group share one {what}; every member needs its own (they train "
                              f"independently and only the frozen encoders are shared)")
    return backbone


def run_group(
    members: Sequence[GroupMember],
    experiences: Sequence,
    *,
    loop: LoopConfig | None = None,
    cache: FeatureCache | None = None,
    start_experience: int = 0,
    start_epoch: int = 0,
    eval_experiences: Sequence | None = None,
) -> list[StreamResult]:
    """Train K configurations through a stream in one pass over the shared frozen encoders.

    The same protocol as :func:`~alta.run_stream` for every member (evaluation every
    ``loop.eval_every`` epochs and at each experience end, the same callback events), with the
    frozen image features computed once per step (mode ``"none"``) or once per run (cached
    modes) for all members. Each member's result is bit-identical to its own
    :func:`~alta.run_stream`.

    Args:
        members: The K :class:`GroupMember` s; their learners share one backbone object.
        experiences: The stream (or any sequence of experiences), shared by all members.
        loop: The loop's settings, shared: epochs, batch size, seed, cache mode, evaluation.
        cache: Feature cache shared by all members' training (cached modes) and evaluation; a
            new in-memory cache when ``None``.
        start_experience: First experience to train, for every member (resume; members stopped
            at different points resume as separate groups).
        start_epoch: First epoch of ``start_experience``.
        eval_experiences: The experiences to evaluate on, as in :func:`~alta.run_stream` (by
            default the stream's ``eval_experiences``, else ``experiences``).

    Returns:
        One :class:`~alta.loop.result.StreamResult` per member, in order, with (T, K) matrices.

    Raises:
        ConfigError: data-parallel training (``loop.distributed`` under torchrun), no member, no
            experience or evaluation experience, members sharing a learner, optimizer, buffer or
            schedule, members on different backbone objects, a member that trains nothing, or a
            start position outside the stream.
    """
    backbone = _check_members(members)
    loop = LoopConfig() if loop is None else loop
    if loop.distributed and _dist.is_distributed():
        raise ConfigError("run_group does not support data-parallel training (loop.distributed under torchrun): run "
                          "the group in one process, or each configuration on its own with run_stream")
    experiences, evals = stream_experiences(experiences, eval_experiences, start_experience=start_experience,
                                            caller="run_group")
    num = len(experiences)
    if cache is None:
        cache = FeatureCache(distributed=loop.distributed)
    covered = covered_evaluations(experiences, evals)
    results = [m.result if m.result is not None else StreamResult.empty(num, len(evals)) for m in members]
    callbacks = [as_callback_list(m.callbacks) for m in members]
    trainers = [
        ExperienceTrainer(
            m.learner, optimizer=m.optimizer, scheduler=m.scheduler, buffer=m.buffer, schedule=m.schedule, loop=loop,
            callbacks=[PeriodicEvaluation(m.learner, evals, covered, loop=loop, cache=cache, callbacks=cb), *cb],
            result=result,
        )
        for m, cb, result in zip(members, callbacks, results)
    ]
    for cb, result in zip(callbacks, results):
        cb.on_run_start(num_experiences=num, start_experience=start_experience, start_epoch=start_epoch,
                        result=result)
    for t in range(start_experience, num):
        experience = experiences[t]
        first_epoch = start_epoch if t == start_experience else 0
        for trainer in trainers:
            trainer.begin(experience, start_epoch=first_epoch)
        for epoch in range(first_epoch, loop.epochs):
            for trainer in trainers:
                trainer.begin_epoch(epoch)
            batches = training_batches(experience, backbone=backbone, epoch=epoch, loop=loop, cache=cache)
            for inputs, labels in batches:
                if inputs.ndim == 4:  # mode "none": the step's one image-encoder forward, for all K
                    inputs = backbone.encode_images(inputs)  # (B, 3, R, R) -> f1 (B, D)
                for trainer in trainers:
                    trainer.step(inputs, labels)
            for trainer in trainers:
                trainer.end_epoch()
        for member, trainer, cb, result in zip(members, trainers, callbacks, results):
            if not loop.eval_before_snapshot:
                member.learner.end_experience(experience)
            finish_experience(member.learner, evals, experience, t, covered=covered[t], loop=loop, cache=cache,
                               result=result, history=trainer.history, callbacks=cb, buffer=member.buffer)
    for cb, result in zip(callbacks, results):
        cb.on_run_end(result=result)
    return results
