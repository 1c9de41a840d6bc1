"""Experiment loggers as run callbacks: CSV, TensorBoard, Weights & Biases.

Each is a :class:`~alta.loop.callbacks.Callback`; pass any of them to :func:`alta.run_stream` (or
``fit_experience``) with ``callbacks=[...]``. They write what the loop already measures, nothing
more: per-epoch training statistics, every evaluation record (the lines of ``metrics.jsonl``:
class-IL / task-IL accuracy per experience, their means, top-5, old/new-class accuracy) and, at
each experience end, the accuracy matrices so far.

- :class:`CSVLogger`: one row per evaluation, standard library only.
- :class:`TensorBoardLogger`: scalars per epoch and per experience, the accuracy matrix as an
  image (``torch.utils.tensorboard``; ``pip install "alta[tensorboard]"``).
- :class:`WandbLogger`: the same to a W&B run (``pip install "alta[wandb]"``); works offline
  with ``mode="offline"`` or ``WANDB_MODE=offline`` (``wandb sync`` uploads it later).

Every loss term of the epoch's statistics (``ce``, ``replay_ce``, ``replay_mse`` for ALTA, and
any extra :class:`~alta.losses.LossTerm`) is logged as ``loss/<name>``; the loss, the training
accuracy and the learning rate as ``train/<key>``.

:data:`LOGGERS` names the loggers for ``alta run --logger``: factories
``factory(output_dir, *, config) -> Callback``; plug-ins register with the entry-point group
``alta.loggers``.

Steps: TensorBoard and W&B plot against ``epoch_step``, the number of epochs trained in the run
so far (experience t, epoch e of E epochs -> ``t * E + e + 1``), and the per-experience values
against the experience index. A run resumed from a checkpoint continues the same curves (the
CSV file is rewritten from the resumed result's records; TensorBoard purges the events after
the resume point).

Examples:
    >>> from alta.loop.loggers import CSVLogger, TensorBoardLogger
    >>> callbacks = [CSVLogger("runs/x/evaluations.csv"), TensorBoardLogger("runs/x/tensorboard")]
    >>> result = run_stream(learner, stream, optimizer=optimizer, callbacks=callbacks)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import inspect
import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import metrics
from ..errors import AltaError, ConfigError
from ..io import write_text
from ..losses import loss_terms_of
from ..registry import Registry
from .callbacks import Callback

__all__ = ["CSVLogger", "TensorBoardLogger", "WandbLogger", "LOGGERS", "MissingExtraError", "accuracy_matrix_image",
           "loss_terms_of", "check_logger_packages"]

# Scalars of each epoch's statistics (fit_experience) and of each evaluation record (run_stream).
TRAIN_KEYS = ("loss", "train_accuracy", "lr")
EVAL_KEYS = ("class_il_mean", "task_il_mean", "class_il_top5_mean", "old_class_accuracy", "new_class_accuracy")


class MissingExtraError(AltaError, ImportError):
    """A logger's optional dependency is not installed."""


def _require(module: str, extra: str):
    """Import ``module``, the optional dependency of the ``extra`` of the same name."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"this logger needs the {extra} package, which is not installed ({error}); install it with "
            f"`pip install \"alta[{extra}]\"`"
        ) from error


def check_logger_packages(name: str, factory: Any) -> None:
    """Refuse a logger whose optional packages are not installed, before a run starts: a factory
    names them as ``factory.requires = (("module", "extra"), ...)`` (``module`` importable,
    installed by ``pip install "alta[extra]"``).

    Raises:
        MissingExtraError: a required module cannot be found (the message says what to install).
    """
    for module, extra in getattr(factory, "requires", ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module set to None
            found = False
        if not found:
            raise MissingExtraError(f"--logger {name} needs the {module} package, which is not installed; install it "
                                    f"with `pip install \"alta[{extra}]\"`, or leave {name} out of --logger")


def _number(value) -> float | None:
    """A finite float, or ``None`` for missing / NaN values (nothing to plot)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def accuracy_matrix_image(R, *, title: str = "class-IL accuracy matrix") -> np.ndarray:
    """Render an accuracy matrix as an annotated heatmap (NaN cells left blank).

    Args:
        R: ``R[t, k]`` in %, rows: after experience t, columns: experience k.
        title: Figure title.

    Returns:
        An RGB image, uint8.

    Shape:
        R: (T, T); returns (H, W, 3).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    R = np.asarray(R, dtype=float)
    T = R.shape[0]
    size = 1.2 + 0.45 * T
    figure = Figure(figsize=(size + 1.0, size), dpi=100)
    canvas = FigureCanvasAgg(figure)  # drawn off-screen, whatever pyplot's backend
    axes = figure.subplots()
    shown = axes.imshow(np.ma.masked_invalid(R), vmin=0.0, vmax=100.0, cmap="viridis")
    if T <= 20:
        for t in range(T):
            for k in range(T):
                if math.isfinite(R[t, k]):
                    axes.text(k, t, f"{R[t, k]:.0f}", ha="center", va="center", fontsize=7,
                              color="white" if R[t, k] < 60 else "black")
    axes.set_xticks(range(T))
    axes.set_yticks(range(T))
    axes.set_xlabel("evaluated on experience k")
    axes.set_ylabel("after experience t")
    axes.set_title(title, fontsize=9)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


_SETTING = {"class_il": "class-IL", "task_il": "task-IL"}


def _epoch_step(experience: int, epoch: int, num_epochs: int) -> int:
    """Epochs trained in the run after epoch ``epoch`` (0-based) of ``experience``."""
    return experience * num_epochs + epoch + 1


def _mean_seen(R: np.ndarray, t: int) -> float:
    """A_t: mean accuracy over the experiences seen after experience t."""
    return float(np.mean(R[t, : t + 1]))


class CSVLogger(Callback):
    """One CSV row per evaluation (the records of ``metrics.jsonl``, flattened).

    Columns: ``experience`` (0-based), ``epoch`` (1-based), ``loss``, the means and old/new-class
    accuracies of :data:`EVAL_KEYS`, then ``class_il_k``, ``task_il_k`` and ``class_il_top5_k``
    for every experience k of the stream (empty where not evaluated). The file is rewritten
    atomically after every evaluation (it is small), so it never holds half a row; a resumed
    run starts it from the records of the checkpointed result.

    Args:
        path: The CSV file (parent folders are created).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._columns: list[str] = []
        self._rows: list[dict[str, Any]] = []

    def on_run_start(self, *, num_experiences: int, start_experience: int, start_epoch: int, result) -> None:
        per_experience = [f"{name}_{k}" for name in ("class_il", "task_il", "class_il_top5")
                          for k in range(num_experiences)]
        self._columns = ["experience", "epoch", "loss", *EVAL_KEYS, *per_experience]
        self._rows = [self._row(record) for record in result.evaluations]
        self._write()

    def on_evaluation(self, *, record: dict[str, Any]) -> None:
        self._rows.append(self._row(record))
        self._write()

    def _row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        row = {key: record.get(key) for key in ("experience", "epoch", "loss", *EVAL_KEYS)}
        for name in ("class_il", "task_il", "class_il_top5"):
            for k, value in zip(record.get("experiences", []), record.get(name, [])):
                row[f"{name}_{k}"] = value
        return {key: ("" if value is None else value) for key, value in row.items()}

    def _write(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self._columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows)
        write_text(self.path, text.getvalue())


class TensorBoardLogger(Callback):
    """TensorBoard event files: training scalars per epoch, evaluation scalars, and per
    experience the mean accuracies and the accuracy matrix as an image.

    Tags: ``train/<stat>`` and ``eval/<key>`` (plus ``eval/class_il/experience_k`` and
    ``eval/task_il/experience_k``) against ``epoch_step``; ``experience/class_il_accuracy``,
    ``experience/task_il_accuracy`` (A_t) and the images ``accuracy_matrix/class_il`` and
    ``accuracy_matrix/task_il`` against the experience index.

    Args:
        log_dir: Folder of the event files (``tensorboard --logdir`` it).

    Raises:
        MissingExtraError: tensorboard is not installed (``pip install "alta[tensorboard]"``).
    """

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self._tensorboard = _require("torch.utils.tensorboard", "tensorboard")
        self.log_dir = Path(log_dir)
        self._writer = None
        self._num_epochs: int | None = None
        self._resumed_at: tuple[int, int] | None = None

    def on_run_start(self, *, num_experiences: int, start_experience: int, start_epoch: int, result) -> None:
        self._resumed_at = (start_experience, start_epoch) if (start_experience, start_epoch) != (0, 0) else None

    def on_epoch_start(self, *, experience: int, epoch: int, num_epochs: int, num_steps: int) -> None:
        self._num_epochs = num_epochs
        if self._writer is None:
            purge = None
            if self._resumed_at is not None:  # drop events a killed run wrote after its checkpoint
                purge = _epoch_step(experience, epoch, num_epochs)
            self._writer = self._tensorboard.SummaryWriter(str(self.log_dir), purge_step=purge)

    def on_epoch_end(self, *, experience: int, epoch: int, stats: dict[str, Any], result) -> None:
        step = _epoch_step(experience, epoch, self._num_epochs)
        for key in TRAIN_KEYS:
            if (value := _number(stats.get(key))) is not None:
                self._writer.add_scalar(f"train/{key}", value, step)
        for name, value in loss_terms_of(stats).items():
            if (value := _number(value)) is not None:
                self._writer.add_scalar(f"loss/{name}", value, step)

    def on_evaluation(self, *, record: dict[str, Any]) -> None:
        step = _epoch_step(record["experience"], record["epoch"] - 1, self._num_epochs)
        for key in EVAL_KEYS:
            if (value := _number(record.get(key))) is not None:
                self._writer.add_scalar(f"eval/{key}", value, step)
        for name in ("class_il", "task_il"):
            for k, value in zip(record["experiences"], record[name]):
                if (value := _number(value)) is not None:
                    self._writer.add_scalar(f"eval/{name}/experience_{k}", value, step)

    def on_experience_end(self, *, experience: int, result) -> None:
        t = experience
        for name in ("class_il", "task_il"):
            R = getattr(result, name)
            self._writer.add_scalar(f"experience/{name}_accuracy", _mean_seen(R, t), t)
            image = accuracy_matrix_image(R[: t + 1], title=f"{_SETTING[name]} accuracy after experience {t}")
            self._writer.add_image(f"accuracy_matrix/{name}", image, t, dataformats="HWC")
        self._writer.flush()

    def on_run_end(self, *, result) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbLogger(Callback):
    """A Weights & Biases run: the same scalars as :class:`TensorBoardLogger`, the accuracy
    matrices as images, and the run's final metrics (Avg, Last, forgetting, BWT) in its summary.

    Nothing needs a network with ``mode="offline"`` (or ``WANDB_MODE=offline``): the run is a
    folder under ``dir/wandb/`` that ``wandb sync`` can upload later.

    Args:
        project: W&B project.
        name: Display name of the run (default: W&B's).
        run_id: A stable id; with it a resumed alta run continues the same W&B run.
        dir: Folder under which W&B keeps its ``wandb/`` files (default: the working directory).
        config: The run's resolved configuration, shown with the run.
        mode: ``"online"``, ``"offline"`` or ``"disabled"`` (default: ``WANDB_MODE`` or online).
        tags: Tags of the run.

    Raises:
        MissingExtraError: wandb is not installed (``pip install "alta[wandb]"``).
        ConfigError: an unknown ``mode``.
    """

    MODES = ("online", "offline", "disabled")

    def __init__(self, project: str = "alta", *, name: str | None = None, run_id: str | None = None,
                 dir: str | os.PathLike | None = None, config: Mapping[str, Any] | None = None,
                 mode: str | None = None, tags: Sequence[str] | None = None) -> None:
        self._wandb = _require("wandb", "wandb")
        if mode is not None and mode not in self.MODES:
            raise ConfigError(f"wandb mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        # WANDB_MODE read now: wandb reads it once per process, so a later run of a long-lived process
        # (tests, notebooks) would otherwise keep the mode of the first one
        self.project, self.name, self.run_id = project, name, run_id
        self.mode = mode if mode is not None else os.environ.get("WANDB_MODE")
        self.dir = None if dir is None else Path(dir)
        self.config = dict(config or {})
        self.tags = list(tags or [])
        self.run = None
        self._num_epochs: int | None = None

    def on_run_start(self, *, num_experiences: int, start_experience: int, start_epoch: int, result) -> None:
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.run = self._wandb.init(
            project=self.project, name=self.name, id=self.run_id, resume="allow" if self.run_id else None,
            dir=None if self.dir is None else str(self.dir), config=self.config, mode=self.mode, tags=self.tags,
        )
        self.run.define_metric("epoch_step")
        self.run.define_metric("experience")
        for pattern in ("train/*", "loss/*", "eval/*"):
            self.run.define_metric(pattern, step_metric="epoch_step")
        for pattern in ("experience/*", "accuracy_matrix/*"):
            self.run.define_metric(pattern, step_metric="experience")

    def on_epoch_start(self, *, experience: int, epoch: int, num_epochs: int, num_steps: int) -> None:
        self._num_epochs = num_epochs

    def on_epoch_end(self, *, experience: int, epoch: int, stats: dict[str, Any], result) -> None:
        values = {f"train/{key}": _number(stats.get(key)) for key in TRAIN_KEYS}
        values.update({f"loss/{name}": _number(value) for name, value in loss_terms_of(stats).items()})
        self._log(values, epoch_step=_epoch_step(experience, epoch, self._num_epochs))

    def on_evaluation(self, *, record: dict[str, Any]) -> None:
        values = {f"eval/{key}": _number(record.get(key)) for key in EVAL_KEYS}
        for name in ("class_il", "task_il"):
            for k, value in zip(record["experiences"], record[name]):
                values[f"eval/{name}/experience_{k}"] = _number(value)
        self._log(values, epoch_step=_epoch_step(record["experience"], record["epoch"] - 1, self._num_epochs))

    def on_experience_end(self, *, experience: int, result) -> None:
        t = experience
        values: dict[str, Any] = {}
        for name in ("class_il", "task_il"):
            R = getattr(result, name)
            values[f"experience/{name}_accuracy"] = _mean_seen(R, t)
            image = accuracy_matrix_image(R[: t + 1], title=f"{_SETTING[name]} accuracy after experience {t}")
            values[f"accuracy_matrix/{name}"] = self._wandb.Image(image)
        self._log(values, experience=t)

    def on_run_end(self, *, result) -> None:

        if self.run is None:  # the run was already complete: nothing was logged
            return
        for name in ("class_il", "task_il"):
            summary = metrics.summarize(getattr(result, name))
            for key in ("avg_accuracy", "last_accuracy", "forgetting", "bwt"):
                if (value := _number(summary[key])) is not None:
                    self.run.summary[f"{name}/{key}"] = value
        self.run.finish()
        self.run = None

    def _log(self, values: dict[str, Any], **step: int) -> None:
        self.run.log({**{k: v for k, v in values.items() if v is not None}, **step})


def _csv(output_dir: Path, *, config: Mapping[str, Any]) -> CSVLogger:
    """evaluations.csv: one row per evaluation (standard library only)."""
    return CSVLogger(Path(output_dir) / "evaluations.csv")


def _tensorboard(output_dir: Path, *, config: Mapping[str, Any]) -> TensorBoardLogger:
    """tensorboard/: scalars per epoch and experience, the accuracy matrix (pip install "alta[tensorboard]")."""
    return TensorBoardLogger(Path(output_dir) / "tensorboard")


def _wandb(output_dir: Path, *, config: Mapping[str, Any]) -> WandbLogger:
    """wandb/: a W&B run per run folder, continued on resume (WANDB_MODE=offline works offline)."""
    run_id = hashlib.sha256(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
    return WandbLogger(name=Path(output_dir).name, run_id=run_id, dir=output_dir, config=dict(config))


def _check_logger(name: str, factory: Any) -> Any:
    """What :data:`LOGGERS` accepts: ``factory(output_dir, *, config) -> Callback`` (a
    :class:`~alta.loop.callbacks.Callback` class taking them, or a function)."""
    if not callable(factory):
        raise TypeError(f"a logger is registered as a factory factory(output_dir, *, config) -> Callback, got "
                        f"{type(factory).__name__} {factory!r}")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return factory
    try:
        signature.bind(Path("."), config={})
    except TypeError as exc:
        raise TypeError(f"its factory{signature} cannot be called as factory(output_dir, config=...) ({exc}); a "
                        f"logger factory gets the run folder and the run's configuration (a mapping)") from None
    return factory


#: Names for ``--logger``: factories ``factory(output_dir, *, config) -> Callback``, called with the
#: run folder and the run's configuration as a mapping; plug-ins: entry-point group ``alta.loggers``.
LOGGERS: Registry[Any] = Registry("logger", group="alta.loggers", check=_check_logger,
                                  registry_name="alta.loop.loggers.LOGGERS")
_tensorboard.requires = (("tensorboard", "tensorboard"),)  # torch.utils.tensorboard imports it
_wandb.requires = (("wandb", "wandb"),)
LOGGERS.add("csv", _csv)
LOGGERS.add("tensorboard", _tensorboard)
LOGGERS.add("wandb", _wandb)
