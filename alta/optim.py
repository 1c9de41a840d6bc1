"""The reference code's optimiser set-up, from one function.

ALTA's reference code (github.com/vijaylee/ALTA, ``utils/optimizer.py`` and
``utils/lr_scheduler.py``, taken from CoOp / Dassl) builds one SGD optimiser for all trainable
parameters for the whole run: lr 0.002, momentum 0.9, weight decay 5e-4, a cosine schedule over
the epochs of an experience with one warm-up epoch at a constant 1e-5.

Quirk: the reference code never steps its scheduler, so the whole run trains at the warm-up
learning rate 1e-5. ``schedule="constant"`` with ``lr=1e-5`` reproduces what the code ran;
``schedule="cosine"`` with ``lr=0.002`` is what its configs describe (the default here).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import ConfigSection, check_choice, check_int, check_number
from .errors import ConfigError

__all__ = ["build_optimizer", "reference_lr", "LR_SCHEDULES", "OptimConfig"]

LR_SCHEDULES = ("cosine", "constant")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig(ConfigSection):
    """The optimiser of a run (YAML section ``optim``, the reference's ``OPTIM``): the arguments
    of :func:`build_optimizer`, their defaults and their validation.

    Attributes:
        lr: Base learning rate (0.002).
        momentum: SGD momentum (0.9).
        weight_decay: Weight decay (5e-4).
        lr_schedule: ``cosine`` (the configs' schedule) or ``constant`` (with ``lr: 1.0e-5``
            this reproduces what the reference code ran: it never steps its scheduler).
        warmup_epochs: Warm-up epochs per experience at ``warmup_lr`` (cosine only).
        warmup_lr: Warm-up learning rate (1e-5).
    """

    _SECTION: ClassVar[str] = "optim"

    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5

    def __post_init__(self) -> None:
        check_number(self.lr, "optim.lr", positive=True)
        check_number(self.warmup_lr, "optim.warmup_lr", positive=True)
        check_number(self.weight_decay, "optim.weight_decay", nonnegative=True)
        check_number(self.momentum, "optim.momentum", nonnegative=True)
        if self.momentum >= 1:
            raise ConfigError(f"config key 'optim.momentum' must be in [0, 1), got {self.momentum!r}")
        check_choice(self.lr_schedule, "optim.lr_schedule", LR_SCHEDULES)
        check_int(self.warmup_epochs, "optim.warmup_epochs", low=0)

    def build(self, learner, *, epochs: int) -> tuple[torch.optim.SGD, LambdaLR]:
        """:func:`build_optimizer` with these values, for ``epochs`` epochs per experience."""
        return build_optimizer(learner, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                               schedule=self.lr_schedule, epochs=epochs, warmup_epochs=self.warmup_epochs,
                               warmup_lr=self.warmup_lr)


def reference_lr(epoch: int, *, lr: float, epochs: int, schedule: str = "cosine", warmup_epochs: int = 1,
                 warmup_lr: float = 1e-5) -> float:
    """Learning rate of epoch ``epoch`` (0-based, counted within the experience).

    ``cosine``: ``warmup_lr`` for the first ``warmup_epochs`` epochs, then
    ``lr * (1 + cos(pi * (epoch - warmup_epochs) / epochs)) / 2`` (Dassl's
    ``ConstantWarmupScheduler`` around ``CosineAnnealingLR(T_max=epochs)`` with
    ``WARMUP_RECOUNT=True``). ``constant``: ``lr`` for every epoch.

    Args:
        epoch: Epoch index within the current experience, >= 0.
        lr: Base learning rate (0.002 in the paper's configs).
        epochs: Epochs per experience (30; joint training 100).
        schedule: ``"cosine"`` or ``"constant"``.
        warmup_epochs: Warm-up epochs at ``warmup_lr`` (cosine only).
        warmup_lr: Warm-up learning rate.

    Returns:
        The learning rate.
    """
    if schedule == "constant":
        return lr
    if epoch < warmup_epochs:
        return warmup_lr
    return lr * (1 + math.cos(math.pi * (epoch - warmup_epochs) / epochs)) / 2


def build_optimizer(
    learner,
    *,
    lr: float = OptimConfig.lr,
    momentum: float = OptimConfig.momentum,
    weight_decay: float = OptimConfig.weight_decay,
    schedule: str = OptimConfig.lr_schedule,
    epochs: int = 30,
    warmup_epochs: int = OptimConfig.warmup_epochs,
    warmup_lr: float = OptimConfig.warmup_lr,
) -> tuple[torch.optim.SGD, LambdaLR]:
    """SGD over the learner's trainable parameters and its per-epoch learning-rate schedule.

    Create it once per run (the reference does not re-create it per experience) and call
    ``scheduler.step()`` once at the end of every epoch; the schedule restarts at each
    experience (epoch counter modulo ``epochs``).

    Args:
        learner: A :class:`~alta.CrossModalLearner` (its ``trainable_parameters()`` are optimised).
        lr: Base learning rate (0.002).
        momentum: SGD momentum (0.9).
        weight_decay: L2 weight decay (5e-4).
        schedule: ``"cosine"`` (warm-up then cosine per experience) or ``"constant"``.
        epochs: Epochs per experience (the period of the cosine schedule).
        warmup_epochs: Warm-up epochs per experience (cosine only).
        warmup_lr: Warm-up learning rate.

    Returns:
        ``(optimizer, scheduler)``; the scheduler is a ``LambdaLR`` stepped per epoch.

    Raises:
        ConfigError: for invalid values or a learner without trainable parameters.

    References:
        Li et al., IEEE TMM 2023 (implementation details); reference configs
        ``configs/il_*.yaml`` (OPTIM section).
    """
    OptimConfig(lr=lr, momentum=momentum, weight_decay=weight_decay, lr_schedule=schedule,
                warmup_epochs=warmup_epochs, warmup_lr=warmup_lr)  # validates each value once
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ConfigError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
    if schedule == "cosine" and epochs <= warmup_epochs:
        logger.warning(
            "cosine schedule with %d epoch(s) per experience and %d warm-up epoch(s): every epoch runs at the "
            "warm-up learning rate %g, so the model barely trains; use more epochs or schedule='constant'",
            epochs, warmup_epochs, warmup_lr,
        )
    params = learner.trainable_parameters()
    if not params:
        raise ConfigError(f"method {learner.method.name!r} has no trainable parameters; there is nothing to optimise")
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def factor(step: int) -> float:
        return reference_lr(step % epochs, lr=lr, epochs=epochs, schedule=schedule,
                            warmup_epochs=warmup_epochs, warmup_lr=warmup_lr) / lr

    return optimizer, LambdaLR(optimizer, factor)
