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

import torch
from torch.optim.lr_scheduler import LambdaLR

from .errors import ConfigError

__all__ = ["build_optimizer", "reference_lr", "LR_SCHEDULES"]

LR_SCHEDULES = ("cosine", "constant")

logger = logging.getLogger(__name__)


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
    lr: float = 0.002,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    epochs: int = 30,
    warmup_epochs: int = 1,
    warmup_lr: float = 1e-5,
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
    if schedule not in LR_SCHEDULES:
        raise ConfigError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    for name, value in (("lr", lr), ("warmup_lr", warmup_lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if lr <= 0 or warmup_lr <= 0:
        raise ConfigError(f"lr and warmup_lr must be positive, got lr={lr}, warmup_lr={warmup_lr}")
    if not 0 <= momentum < 1 or weight_decay < 0:
        raise ConfigError(f"need 0 <= momentum < 1 and weight_decay >= 0, got momentum={momentum}, weight_decay={weight_decay}")
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
