"""Detecting a diverged training run: non-finite losses, gradients and parameters.

A NaN or infinite loss (a learning rate far too high, NaN or infinite inputs) must stop training
with an error, never produce a table of NaN accuracies or a checkpoint of NaN parameters.

Two places check, each as cheaply as its caller allows:

- :func:`alta.train_step` used on its own checks every step (:func:`check_step`): a
  non-finite loss or gradient refuses the update (parameters, optimiser, buffer and schedule are
  left as they were) and raises; parameters that become non-finite in the update raise too.
  That costs a host-device sync per step.
- The loops (:func:`alta.fit_experience`, :func:`alta.run_stream`, hence ``alta run``) call
  ``train_step(..., check_finite=False)`` and use a :class:`DivergenceMonitor`: an on-device
  record of the first step whose loss was non-finite, read once per epoch together with the
  epoch's summed loss (which the loop reads anyway) and one reduction over the trainable
  parameters. No sync per step on a GPU. The check runs before the epoch-end callbacks, so the
  epoch's checkpoint is never written with non-finite state: the last good checkpoint stays
  resumable.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch

from ..errors import TrainingError
from ..losses import LOSS_TERMS

__all__ = ["DivergenceMonitor", "check_step", "LIKELY_CAUSES"]

LIKELY_CAUSES = ("Likely causes: a learning rate too high for this setting (optim.lr, --lr) or non-finite inputs "
                 "(NaN or Inf in the images or features)")


def _all_finite(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """One 0-dim bool tensor: whether every value of every tensor is finite (no sync)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    if not flags:
        return torch.tensor(True)
    return torch.stack([f.to(flags[0].device) for f in flags]).all()


def _bad_terms(terms: Mapping[str, float | torch.Tensor] | None) -> str:
    """`` The loss term plug-in 'x' (...) is NaN.``: the non-finite terms, named with their origin."""
    bad = []
    for name, value in (terms or {}).items():
        value = float(value)
        if not math.isfinite(value):
            bad.append(f"{LOSS_TERMS.describe(name)} is {_kind(value)}")
    return f" Non-finite: {'; '.join(bad)}." if bad else ""


def check_step(stage: str, *, loss: torch.Tensor, tensors: Iterable[torch.Tensor], lr: float,
               terms: Mapping[str, torch.Tensor] | None = None) -> None:
    """Raise :class:`~alta.errors.TrainingError` unless ``loss`` and ``tensors`` are finite
    (one host-device sync).

    Args:
        stage: ``"gradients"`` (before the update: nothing was changed) or ``"parameters"``
            (after it).
        loss: The step's loss (0-dim).
        tensors: The gradients or the parameters to check.
        lr: The learning rate of the step (for the message).
        terms: The step's loss terms by name (a non-finite one is named, with its plug-in).

    Raises:
        TrainingError: a non-finite value.
    """
    tensors = list(tensors)
    if bool(torch.isfinite(loss).all() & _all_finite(tensors).to(loss.device)):
        return
    if stage == "gradients":
        what = "loss" if not bool(torch.isfinite(loss).all()) else "gradient"
        raise TrainingError(
            f"train_step: the {what} is not finite (loss {float(loss):g}, learning rate {lr:g}); the update was "
            f"refused: parameters, optimiser, buffer and schedule are unchanged.{_bad_terms(terms)} {LIKELY_CAUSES}"
        )
    raise TrainingError(
        f"train_step: the trainable parameters are not finite after the update (loss {float(loss):g}, learning "
        f"rate {lr:g}: a finite gradient times the learning rate overflowed); the learner is diverged, restore it "
        f"from a checkpoint. {LIKELY_CAUSES}"
    )


class DivergenceMonitor:
    """Finds non-finite losses of an epoch without a host-device sync per step.

    Call :meth:`update` after every step (device-side work only) and :meth:`check` once at the
    end of the epoch.

    Examples:
        >>> monitor = DivergenceMonitor()
        >>> monitor.update(0, torch.tensor(1.0)); monitor.update(1, torch.tensor(float("nan")))
        >>> monitor.first_bad_step()
        1
    """

    def __init__(self) -> None:
        self._first: torch.Tensor | None = None  # 0-dim long on the loss's device; -1: none yet

    def update(self, step: int, loss: torch.Tensor) -> None:
        """Record step ``step``'s loss (0-dim tensor); no host-device sync."""
        if self._first is None:
            self._first = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad = ~torch.isfinite(loss.detach())
        self._first = torch.where(bad & (self._first < 0), step, self._first)

    def first_bad_step(self) -> int | None:
        """The first step whose loss was not finite (``None``: none; this reads the device)."""
        if self._first is None:
            return None
        value = int(self._first)
        return value if value >= 0 else None

    def check(self, *, mean_loss: float, parameters: Iterable[torch.Tensor], experience: int, epoch: int,
              lr: float, terms: Mapping[str, float] | None = None) -> None:
        """Raise :class:`~alta.errors.TrainingError` if the epoch diverged.

        Args:
            mean_loss: The epoch's mean loss (already read to the host by the loop).
            parameters: The trainable parameters (checked with one reduction).
            experience: Experience index (0-based; named 1-based in the message).
            epoch: Epoch index (0-based).
            lr: The epoch's learning rate.
            terms: The epoch's mean of each loss term, by name (a non-finite one is named, with its
                plug-in).

        Raises:
            TrainingError: a non-finite loss in the epoch, or non-finite parameters after it.
        """
        loss_ok = math.isfinite(mean_loss) if isinstance(mean_loss, float) else True
        if loss_ok and bool(_all_finite(p.detach() for p in parameters)):
            return
        step = self.first_bad_step()
        where = f"experience {experience + 1} (index {experience}), epoch {epoch + 1}"
        if step is not None:
            what = f"the training loss became {_kind(mean_loss)} at step {step + 1} of {where}"
        elif not loss_ok:
            what = f"the training loss became {_kind(mean_loss)} in {where}"
        else:
            what = f"the trainable parameters became non-finite in the last step of {where}"
        raise TrainingError(
            f"training diverged: {what} (learning rate {lr:g}).{_bad_terms(terms)} Training stopped before this "
            f"epoch's checkpoint, so no non-finite state was saved. {LIKELY_CAUSES}"
        )


def _kind(value: float) -> str:
    return "NaN" if isinstance(value, float) and math.isnan(value) else "infinite" if isinstance(
        value, float) and math.isinf(value) else "non-finite"
