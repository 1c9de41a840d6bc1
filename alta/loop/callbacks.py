"""One callback protocol for the events of a continual-learning run.

The loops of :mod:`alta.loop` (and the run of :mod:`alta.run.experiment`) call the methods of
every :class:`Callback` they are given, in the order given, at the events below. Progress logs,
``metrics.jsonl``, checkpoints, plots and loggers (CSV, TensorBoard, W&B) are all callbacks; so is
anything a user writes. The base class implements every event as a no-op: subclass it and
override only what you need.

Events carry data, not the loop: the experience index ``experience`` (0-based), the epoch
``epoch`` (0-based within the experience), plain dicts of statistics and the partial
:class:`~alta.loop.result.StreamResult`. A callback that needs the learner, buffer or optimizer
(a checkpoint writer, say) is constructed with them.

Order of events for a stream of T experiences, E epochs each::

    on_run_start
      on_experience_start(experience=t)          t = start_experience .. T-1
        on_epoch_start(experience=t, epoch=e)    e = start_epoch .. E-1
          on_step_end(...)                       every training step (keep it cheap)
        on_evaluation(record)                    every ``eval_every`` epochs
        on_epoch_end(experience=t, epoch=e)      the result already holds epoch e
      on_evaluation(record)                      the end-of-experience evaluation
      on_experience_end(experience=t, result)
    on_run_end(result)

Examples:
    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, *, experience, epoch, stats, result):
    ...         print(experience, epoch, round(stats["loss"], 3))
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from tqdm.auto import tqdm

from ..distributed import is_main_process
from ..errors import ConfigError
from .result import StreamResult

__all__ = ["Callback", "CallbackList", "MainProcessOnly", "ProgressBar", "EVENTS", "as_callback_list"]

EVENTS = (
    "on_run_start",
    "on_experience_start",
    "on_epoch_start",
    "on_step_end",
    "on_epoch_end",
    "on_evaluation",
    "on_experience_end",
    "on_run_end",
)


class Callback:
    """Base class of run callbacks: every event is a no-op (override what you need).

    All arguments are keyword-only, so a callback written today keeps working when an event
    gains a field.
    """

    def on_run_start(
        self, *, num_experiences: int, start_experience: int, start_epoch: int, result: "StreamResult"
    ) -> None:
        """Before the first experience trained in this call (``start_experience`` or
        ``start_epoch`` > 0 on resume)."""

    def on_experience_start(self, *, experience: int, start_epoch: int) -> None:
        """After ``learner.begin_experience``, before the first epoch (``start_epoch`` > 0 on resume)."""

    def on_epoch_start(self, *, experience: int, epoch: int, num_epochs: int, num_steps: int) -> None:
        """Before the first step of epoch ``epoch`` (of ``num_epochs``), which has ``num_steps`` steps."""

    def on_step_end(self, *, experience: int, epoch: int, step: int, outputs: dict[str, Any]) -> None:
        """After each optimiser step; ``outputs`` are the step's detached 0-dim tensors (reading
        them with ``float()`` synchronises the device: do it rarely)."""

    def on_epoch_end(self, *, experience: int, epoch: int, stats: dict[str, Any], result: "StreamResult") -> None:
        """After each epoch: learning rate and schedule stepped, the periodic evaluation (if due)
        done, and ``result`` holding everything up to this epoch (a checkpoint written here
        resumes exactly at the next epoch). ``stats`` as returned by ``fit_experience``."""

    def on_evaluation(self, *, record: dict[str, Any]) -> None:
        """After each evaluation; ``record`` is one line of ``metrics.jsonl``."""

    def on_experience_end(self, *, experience: int, result: "StreamResult") -> None:
        """After the experience's final evaluation: row ``experience`` of the matrices is filled."""

    def on_run_end(self, *, result: "StreamResult") -> None:
        """After the last experience."""


class CallbackList(Callback):
    """Dispatch each event to several callbacks, in order.

    Args:
        callbacks: :class:`Callback` instances (or ``None`` for none).

    Raises:
        ConfigError: an item is not a :class:`Callback`.
    """

    def __init__(self, callbacks: Iterable[Callback] | None = None) -> None:
        items = [] if callbacks is None else list(callbacks)
        for item in items:
            if not isinstance(item, Callback):
                raise ConfigError(
                    f"callbacks must be alta.loop.callbacks.Callback instances, got {type(item).__name__}; subclass "
                    f"Callback and override the events you need"
                )
        self.callbacks: list[Callback] = items

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def _dispatch(self, event: str, kwargs: dict[str, Any]) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(**kwargs)

    def on_run_start(self, **kwargs) -> None:  # noqa: D102
        self._dispatch("on_run_start", kwargs)

    def on_experience_start(self, **kwargs) -> None:  # noqa: D102
        self._dispatch("on_experience_start", kwargs)

    def on_epoch_start(self, **kwargs) -> None:  # noqa: D102
        self._dispatch("on_epoch_start", kwargs)

    def on_step_end(self, **kwargs) -> None:  # noqa: D102
        self._dispatch("on_step_end", kwargs)

    def on_epoch_end(self, **kwargs) -> None:  # noqa: D102
        self._dispatch("on_epoch_end", kwargs)

    def on_evaluation(self, **kwargs) -> None:  # noqa: D102
        self._dispatch("on_evaluation", kwargs)

    def on_experience_end(self, **kwargs) -> None:  # noqa: D102
        self._dispatch("on_experience_end", kwargs)

    def on_run_end(self, **kwargs) -> None:  # noqa: D102
        self._dispatch("on_run_end", kwargs)


class MainProcessOnly(CallbackList):
    """Dispatch events only on the main process (rank 0) of a data-parallel run.

    Wrap the callbacks that write (result files, logs, plots, checkpoints, loggers) so that one
    process writes them; every rank holds the same results (:mod:`alta.distributed`). In one
    process it dispatches everything.

    Args:
        callbacks: The :class:`Callback` s to run on rank 0 (one or a list).

    Raises:
        ConfigError: an item is not a :class:`Callback`.
    """

    def __init__(self, callbacks: Iterable[Callback] | Callback | None = None) -> None:
        super().__init__([callbacks] if isinstance(callbacks, Callback) else callbacks)

    def _dispatch(self, event: str, kwargs: dict[str, Any]) -> None:
        if is_main_process():
            super()._dispatch(event, kwargs)


def as_callback_list(callbacks: Sequence[Callback] | Callback | None) -> CallbackList:
    """A :class:`CallbackList` from ``None``, one callback, or a sequence of them."""
    if isinstance(callbacks, CallbackList):
        return callbacks
    if isinstance(callbacks, Callback):
        return CallbackList([callbacks])
    return CallbackList(callbacks)


class ProgressBar(Callback):
    """tqdm progress bars: one per epoch (steps), with the epoch's loss when it ends.

    Args:
        leave: Keep each finished bar on screen.
        disable: Show nothing (e.g. when the output is not a terminal).
    """

    def __init__(self, *, leave: bool = False, disable: bool | None = None) -> None:
        self.leave, self.disable = leave, disable
        self._bar = None
        self._num_experiences: int | None = None

    def on_run_start(self, *, num_experiences: int, start_experience: int, start_epoch: int, result) -> None:
        self._num_experiences = num_experiences

    def on_epoch_start(self, *, experience: int, epoch: int, num_epochs: int, num_steps: int) -> None:
        of = f"/{self._num_experiences}" if self._num_experiences else ""
        self._bar = tqdm(total=num_steps, desc=f"experience {experience + 1}{of} epoch {epoch + 1}/{num_epochs}",
                         leave=self.leave, disable=self.disable, unit="batch")

    def on_step_end(self, *, experience: int, epoch: int, step: int, outputs) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, *, experience: int, epoch: int, stats, result) -> None:
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{stats['loss']:.4f}")
            self._bar.close()
            self._bar = None
