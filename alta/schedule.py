"""Which branch learns when: the "alternating" of ALTA made explicit.

ALTA has two trainable branches (Li et al., IEEE TMM 2023; the "cross-modal alternating learning"
of its title and abstract):

- the **text** branch: the context vectors of the learned prompt (vision-guided language
  learner, scored against the frozen image feature f1);
- the **image** branch: the adapter producing f2 (language-guided vision learner, scored against
  the frozen text feature w1).

The reference code updates both in the same step, each paired with the frozen other modality
(``mode="crossed"``, the default). The paper's abstract describes learning the two cross-modal
representations alternately; ``mode="alternate"`` does that: the text branch and the image
branch are updated in turns, each for ``period`` steps or epochs.

An :class:`AlternatingSchedule` is only counters: the training step asks
:meth:`AlternatingSchedule.active_branches` what to update, then calls
:meth:`AlternatingSchedule.step`; the loop calls :meth:`AlternatingSchedule.end_epoch`.
"""

from __future__ import annotations

from typing import Iterable

from .config import closest_choice
from .errors import CheckpointError, ConfigError

__all__ = ["AlternatingSchedule", "BRANCHES"]

BRANCHES = ("text", "image")


class AlternatingSchedule:
    """Decide per step (or per epoch) which trainable branch is updated.

    Args:
        mode: ``"crossed"`` (both branches every step: the reference behaviour) or
            ``"alternate"`` (text and image branch in turns).
        period: Length of one turn in ``unit`` s (``mode="alternate"`` only), >= 1.
        unit: ``"step"`` or ``"epoch"``: what ``period`` counts.
        start: Branch of the first turn, ``"text"`` or ``"image"``.

    Raises:
        ConfigError: for an unknown mode, unit or start, or a period < 1.

    Examples:
        >>> schedule = AlternatingSchedule("alternate", period=2)
        >>> turns = []
        >>> for _ in range(4):
        ...     turns.append(sorted(schedule.active_branches()))
        ...     schedule.step()
        >>> turns
        [['text'], ['text'], ['image'], ['image']]
    """

    MODES = ("crossed", "alternate")
    UNITS = ("step", "epoch")

    def __init__(self, mode: str = "crossed", *, period: int = 1, unit: str = "step", start: str = "text") -> None:
        for what, value, choices in (("mode", mode, self.MODES), ("unit", unit, self.UNITS), ("start", start, BRANCHES)):
            if value not in choices:
                match = closest_choice(value, choices)
                raise ConfigError(f"schedule {what} must be one of {tuple(choices)}, got {value!r}"
                                  + (f"; did you mean {match!r}?" if match else ""))
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ConfigError(f"schedule period must be an integer >= 1, got {period!r}")
        self.mode = mode
        self.period = period
        self.unit = unit
        self.start = start
        self.steps = 0  # training steps taken
        self.epochs = 0  # epochs completed

    # ------------------------------------------------------------------ queries
    def active_branches(self) -> frozenset[str]:
        """The branches to update at the current step: a subset of ``{"text", "image"}``."""
        if self.mode == "crossed":
            return frozenset(BRANCHES)
        counter = self.steps if self.unit == "step" else self.epochs
        turn = (counter // self.period) % 2
        first, second = (self.start, "image" if self.start == "text" else "text")
        return frozenset({first if turn == 0 else second})

    def check_method(self, branches: Iterable[str], *, method: str = "this method") -> None:
        """Refuse to alternate a method that has fewer than two trainable branches.

        Args:
            branches: The method's trainable branches (``MethodSpec.branches``).
            method: Its name, for the message.

        Raises:
            ConfigError: if ``mode="alternate"`` and the method does not train both branches
                (alternation would leave every other turn with nothing to train).
        """
        branches = frozenset(branches)
        if self.mode == "alternate" and branches != frozenset(BRANCHES):
            only = ", ".join(sorted(branches)) or "no"
            raise ConfigError(
                f"{method!s} trains only the {only} branch, so mode='alternate' would train nothing on every "
                f"other turn; use AlternatingSchedule('crossed') (or a method with both a prompt and an adapter, "
                f"e.g. 'oritext_mlp2cprompt_oriimg')"
            )

    # ------------------------------------------------------------------ counters
    def step(self) -> None:
        """Record one finished training step."""
        self.steps += 1

    def end_epoch(self) -> None:
        """Record one finished epoch."""
        self.epochs += 1

    def state_dict(self) -> dict:
        """Counters and settings, for checkpoints."""
        return {"mode": self.mode, "period": self.period, "unit": self.unit, "start": self.start,
                "steps": self.steps, "epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        """Restore counters saved by :meth:`state_dict`.

        Raises:
            CheckpointError: if the saved settings differ from this schedule's.
        """
        try:
            saved = {k: state[k] for k in ("mode", "period", "unit", "start")}
            steps, epochs = int(state["steps"]), int(state["epochs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"not an AlternatingSchedule state: {state!r}") from exc
        mine = {"mode": self.mode, "period": self.period, "unit": self.unit, "start": self.start}
        if saved != mine:
            raise CheckpointError(f"schedule state was saved with {saved}, this schedule is {mine}")
        self.steps, self.epochs = steps, epochs

    def __repr__(self) -> str:
        if self.mode == "crossed":
            return "AlternatingSchedule('crossed')"
        return (f"AlternatingSchedule('alternate', period={self.period}, unit={self.unit!r}, "
                f"start={self.start!r}, steps={self.steps}, epochs={self.epochs})")
