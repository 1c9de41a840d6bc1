"""What the loop needs from a learner: the :class:`Learner` protocol.

The step (:func:`~alta.loop.step.train_step`), the loops (:func:`~alta.loop.fit.fit_experience`,
:func:`~alta.loop.fit.run_stream`), evaluation (:func:`~alta.loop.evaluation.evaluate`), run
groups (:func:`~alta.loop.group.run_group`) and checkpoints use a learner only through these
members. :class:`~alta.CrossModalLearner` (ALTA, Li et al., IEEE TMM 2023, and its eight
variants) is one; a linear probe on frozen image features or CoOp trained sequentially can be
another (``examples/linear_probe.py``), and gets the loops, the feature cache, evaluation,
checkpoints, torchrun and the reports unchanged.

The protocol is structural (:class:`typing.Protocol`): a learner need not inherit from anything,
but it is an ``nn.Module`` in practice (``state_dict``, ``train``/``eval``, ``parameters``).
"""

from __future__ import annotations

from typing import Callable, Mapping, Protocol, runtime_checkable

import torch

from ..errors import ConfigError

__all__ = ["Learner", "LEARNER_MEMBERS", "check_learner"]

#: The members the loop uses, in the order of the protocol (checked by :func:`check_learner`).
LEARNER_MEMBERS = (
    "backbone", "device", "num_classes", "name", "trains", "replays", "replay_batch_size",
    "experience_index", "begin_experience", "end_experience", "active_branches", "branch_parameters",
    "trainable_parameters", "loss", "classifier", "check_buffer", "state_dict", "load_state_dict", "train", "eval",
)


@runtime_checkable
class Learner(Protocol):
    """A continual learner the loop can train, evaluate, group and checkpoint.

    Attributes:
        backbone: The frozen encoders (:class:`~alta.backbones.Backbone`): the loop encodes
            images with ``backbone.encode_images`` for its feature caches and run groups.
        device: Where the learner computes.
        num_classes: C, the classes of the stream (logits cover all of them).
        name: The method's name, for messages and records.
        trains: Whether there is anything to train (``False``: evaluate only, like zero-shot CLIP).
        replays: Whether a step samples a memory from the buffer and offers its batch to it.
        replay_batch_size: Items drawn from the buffer per step.
        experience_index: The experience begun last (-1 before the first), a 0-dim tensor or int.

    Shape:
        ``loss(inputs, labels)``: inputs (B, 3, R, R) or frozen features (B, D), labels (B,);
        ``classifier()(inputs)``: (B, 3, R, R) or (B, D) -> logits (B, C).
    """

    backbone: object
    device: torch.device
    num_classes: int
    name: str
    trains: bool
    replays: bool
    replay_batch_size: int
    experience_index: torch.Tensor | int

    def begin_experience(self, experience) -> None:
        """Start an experience: its classes may be trained on from now on."""

    def end_experience(self, experience) -> None:
        """End an experience (ALTA: snapshot its prompts)."""

    def active_branches(self, schedule=None) -> frozenset[str]:
        """The branches that learn at this step (ALTA: ``text``, ``image``); raises
        :class:`~alta.errors.ConfigError` when there is nothing to train."""

    def branch_parameters(self) -> dict[str, list[torch.nn.Parameter]]:
        """Trainable parameters by branch (a data-parallel step all-reduces the active ones)."""

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Every trainable parameter, for the optimizer."""

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor, *, memory: Mapping[str, torch.Tensor] | None = None,
             branches=None):
        """The step's loss: an object with ``loss`` (with its graph), ``terms``, ``weights`` and
        ``counts`` (each term a mean over ``counts[name]`` items), ``stats()`` and
        ``memory_items()`` (:class:`~alta.losses.StepLoss`)."""

    def classifier(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function from images or frozen features to logits (B, C) in the current state."""

    def check_buffer(self, buffer) -> None:
        """Refuse a buffer filled with fields this learner does not store."""

    def state_dict(self, *args, **kwargs) -> dict:
        """What a checkpoint keeps of the learner."""

    def load_state_dict(self, state_dict, strict: bool = True):
        """Restore what :meth:`state_dict` saved."""

    def train(self, mode: bool = True):
        """Training mode (the frozen encoders stay in eval mode)."""

    def eval(self):
        """Evaluation mode."""


def check_learner(learner: object) -> None:
    """Refuse an object that lacks members of the :class:`Learner` protocol, naming them.

    Raises:
        ConfigError: members missing.
    """
    missing = [name for name in LEARNER_MEMBERS if not hasattr(learner, name)]
    if missing:
        raise ConfigError(
            f"{type(learner).__name__} is not a learner the loop can train: it lacks {', '.join(missing)} of the "
            f"alta.loop.Learner protocol (see alta/loop/protocol.py; alta.CrossModalLearner is one)"
        )
