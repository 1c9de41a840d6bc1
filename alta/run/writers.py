"""What a run writes, as :class:`~alta.loop.callbacks.Callback` s of its loop.

Everything a run writes is a callback, so a user's own callback (a logger, a rank-0 filter, a
plot) sits beside them and sees the same events:

- :class:`MetricsWriter`: ``metrics.jsonl``, one JSON object per evaluation;
- :class:`Checkpointer`: ``checkpoint.pt`` after every epoch and every experience (a killed run
  resumes after its last finished epoch and ends as the uninterrupted run would);
- :class:`LogLines`: the log lines of ``alta run``;
- :class:`SummaryWriter`: ``summary.json`` (accuracy matrices, Avg, Last, forgetting, BWT, FWT);
- :class:`PlotWriter`: ``accuracy_matrix.png`` and ``accuracy_curve.png`` (matplotlib);
- :class:`FolderGuard` (first of them): stops the run if its folder is deleted or renamed;
- :class:`StopAfter`: ends a run early, resumable.

Finishing is idempotent: resuming a complete run writes whatever artefact it lacks (the plots,
``metrics.jsonl``) (:func:`finish_complete_run`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import AltaError, CheckpointError, ConfigError, PluginError
from ..io import append_jsonl, json_line, write_json, write_text
from ..loop.callbacks import Callback
from ..loop.evaluation import parameter_counts
from ..loop.loggers import LOGGERS, check_logger_packages
from ..loop.result import StreamResult
from ..seeding import determinism_state
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, save_checkpoint
from .config import RunConfig, plugin_record
from .experiment import Experiment
from .rundir import RunDir
from .summary import (
    CONFUSION_NAME,
    CONFUSION_PLOT,
    CURVES_PLOT,
    PLOT_FILES,
    build_summary,
    load_last_confusion,
    save_confusion,
    save_plots,
)

__all__ = ["MetricsWriter", "Checkpointer", "LogLines", "SummaryWriter", "PlotWriter", "FolderGuard", "StopAfter",
           "StopRequested", "finish_complete_run", "check_loggers", "build_loggers", "run_plugins", "OUTPUTS_NAME",
           "read_outputs", "write_outputs", "resolve_outputs", "loss_note"]

logger = logging.getLogger("alta.run")

# --------------------------------------------------------------------------------------------
# What a run writes: callbacks
# --------------------------------------------------------------------------------------------


class MetricsWriter(Callback):
    """``metrics.jsonl``: one JSON object per evaluation, appended atomically (valid JSON: a
    NaN or infinite number, e.g. the accuracy of an experience without test samples, is written
    as ``null``).

    At the start of a (resumed) run the file is rewritten with the evaluations of the
    checkpointed part, so a run killed after its last checkpoint leaves no stray records.

    Args:
        path: The file (``<output_dir>/metrics.jsonl``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_run_start(self, *, result: StreamResult, **_: Any) -> None:  # noqa: D102
        write_text(self.path, "".join(json_line(r) for r in result.evaluations), parents=False)

    def on_evaluation(self, *, record: dict[str, Any]) -> None:  # noqa: D102
        append_jsonl(self.path, record, parents=False)


class Checkpointer(Callback):
    """``checkpoint.pt`` after every epoch and every experience (see :mod:`alta.run.checkpoint`).

    Args:
        path: The checkpoint file.
        experiment: The run's objects (their states are saved).
        elapsed: Returns the wall time of the run so far, over all its sessions.
        zeroshot: The zero-shot baseline, saved with the checkpoint (``None``: not measured).
        every_epoch: Also checkpoint at epoch ends but the last (a resumed run then loses at most
            one epoch).
    """

    def __init__(self, path: str | Path, experiment: Experiment, *, elapsed, zeroshot=None,
                 every_epoch: bool = True) -> None:
        self.path, self.experiment, self.elapsed = Path(path), experiment, elapsed
        self.zeroshot, self.every_epoch = zeroshot, every_epoch
        self.config_hash = experiment.config.fingerprint()

    def save(self, result: StreamResult, *, next_experience: int, next_epoch: int = 0) -> None:
        """Write a checkpoint that continues at (``next_experience``, ``next_epoch``)."""
        save_checkpoint(self.path, config_hash=self.config_hash, next_experience=next_experience,
                        next_epoch=next_epoch, num_experiences=len(self.experiment.experiences),
                        objects=self.experiment.objects(), result=result, zeroshot=self.zeroshot,
                        elapsed_s=self.elapsed())

    def on_epoch_end(self, *, experience: int, epoch: int, result: StreamResult, **_: Any) -> None:  # noqa: D102
        # not after the last epoch: the experience-end checkpoint follows after the evaluation, and
        # a prompt snapshot from the last forward (snapshot_timing="last_forward") is not state a
        # checkpoint could restore
        if self.every_epoch and epoch + 1 < self.experiment.config.train.epochs:
            self.save(result, next_experience=experience, next_epoch=epoch + 1)

    def on_experience_end(self, *, experience: int, result: StreamResult) -> None:  # noqa: D102
        self.save(result, next_experience=experience + 1)


def loss_note(learner) -> str | None:
    """What the training loss of a run's log lines is made of, and what size is normal: the
    replay MSE compares logits, which are cosine similarities scaled by CLIP's logit scale s
    (100 for OpenAI's weights), so it is in the hundreds when the replayed logits drift by a few
    cosine hundredths (ALTA: Li et al., IEEE TMM 2023; the DER++ loss of Buzzega et al.,
    NeurIPS 2020). Read from the learner's loss terms (``learner.loss_terms``, when it has them);
    ``None`` for a learner that trains nothing."""
    if not learner.trains:
        return None
    terms = [t for t in getattr(learner, "loss_terms", ()) or () if learner.replays or t.name not in
             ("replay_ce", "replay_mse")]
    if not terms:
        return f"loss = the loss of method {learner.name!r} (see its documentation for what size is normal)"
    formula = " + ".join(t.name if t.weight == 1 else f"{t.weight:g} {t.name}" for t in terms)
    s = float(getattr(learner, "logit_scale", getattr(getattr(learner, "backbone", None), "logit_scale", 100.0)))
    if "replay_mse" not in {t.name for t in terms}:
        return (f"loss = {formula} (ce: the cross-entropy on the batch, about ln C at chance, near 0 when learned; "
                f"its logits are scaled by s = {s:.0f}, so a wrong class ahead by 0.1 in cosine adds about "
                f"{0.1 * s:.0f}: tens or hundreds are normal when the classes of earlier experiences win)")
    return (f"loss = {formula}; replay_mse is the squared difference of logits, which are cosine similarities "
            f"scaled by the logit scale s = {s:.0f}: a drift of 0.1 in cosine is {(0.1 * s) ** 2:.0f} in replay_mse, "
            f"so a loss in the tens or hundreds is normal (ce alone is about ln C at chance)")


class LogLines(Callback):
    """The log lines of ``alta run`` (logger ``alta.run``): what the loss is made of, then every
    evaluation and every finished experience.

    Args:
        num_experiences: T.
        epochs: Epochs per experience (0 for a method that trains nothing); rounds of an
            iteration budget with ``unit="round"``.
        checkpoint: The checkpoint file named in the experience-end lines (``None``: none).
        elapsed: Returns the wall time of the run so far.
        name: Prefix of every line (a run group's member: its folder name), or ``None``.
        loss: The line said when the run starts (:func:`loss_note`), or ``None``.
        unit: What ``epochs`` counts: ``"epoch"``, or ``"round"`` (a training budget in
            iterations, ``train.iterations``, cut into ``epochs`` rounds).
    """

    def __init__(self, *, num_experiences: int, epochs: int, checkpoint: Path | None = None, elapsed=None,
                 name: str | None = None, loss: str | None = None, unit: str = "epoch") -> None:
        self.num, self.epochs, self.checkpoint, self.elapsed = num_experiences, epochs, checkpoint, elapsed
        self.unit = unit
        self.prefix = f"{name}: " if name else ""
        self.loss = loss

    def on_run_start(self, **_: Any) -> None:  # noqa: D102
        if self.loss is not None:
            logger.info("%s%s", self.prefix, self.loss)

    def on_evaluation(self, *, record: dict[str, Any]) -> None:  # noqa: D102
        accs = lambda values: " ".join(f"{v:.1f}" for v in values)  # noqa: E731
        loss = record.get("loss")
        logger.info(
            "%sexperience %d/%d, %s %d/%d: class-IL %.2f [%s], task-IL %.2f [%s]%s", self.prefix,
            record["experience"] + 1, self.num, self.unit, record["epoch"], self.epochs, record["class_il_mean"],
            accs(record["class_il"]), record["task_il_mean"], accs(record["task_il"]),
            f", loss {loss:.4f}" if isinstance(loss, float) else "",
        )

    def on_experience_end(self, *, experience: int, result: StreamResult) -> None:  # noqa: D102
        where = f"; checkpoint {self.checkpoint}" if self.checkpoint is not None else ""
        took = f" (run time so far {self.elapsed():.0f} s)" if self.elapsed is not None else ""
        logger.info("%sexperience %d/%d done%s%s", self.prefix, experience + 1, self.num, took, where)


class SummaryWriter(Callback):
    """``summary.json`` at the end of the run (:func:`alta.run.summary.build_summary`).

    Args:
        path: The file.
        experiment: The run's objects.
        elapsed: Returns the wall time of the run so far.
        zeroshot: The zero-shot baseline (``None``: not measured).
        extra: Entries added to the summary (a run group's ``group``), or ``None``.
        write: Write the file (``False`` on the ranks other than 0 of a data-parallel run: they
            compute the same summary and return it, rank 0 writes it).

    Attributes:
        summary: The summary written (``None`` before the run ends).
    """

    def __init__(self, path: str | Path, experiment: Experiment, *, elapsed, zeroshot=None, write: bool = True,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.path, self.experiment, self.elapsed, self.zeroshot = Path(path), experiment, elapsed, zeroshot
        self.write = write
        self.extra = dict(extra or {})
        self.summary: dict[str, Any] | None = None

    def on_run_end(self, *, result: StreamResult) -> None:  # noqa: D102
        e = self.experiment
        self.summary = build_summary(
            config=e.config, result=result, zeroshot=self.zeroshot, backbone=e.backbone_description,
            method=e.method, stream_info=e.stream_info(),
            num_trainable_parameters=e.num_trainable_parameters, wall_time_s=self.elapsed(),
            device=e.device, output_dir=self.path.parent, buffer_size=e.buffer_size,
            parameters=parameter_counts(e.learner), determinism=determinism_state(),
        )
        self.summary.update(self.extra)
        if self.write:
            save_confusion(result, self.path.parent / CONFUSION_NAME, parents=False)
            write_json(self.path, self.summary, parents=False)


class PlotWriter(Callback):
    """``accuracy_matrix.png`` and ``accuracy_curve.png`` from the run's ``summary.json`` (skipped,
    with a log line, without matplotlib).

    Args:
        output_dir: The run folder (its ``summary.json`` is written before this callback runs).
    """

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)

    def on_run_end(self, *, result: StreamResult) -> None:  # noqa: D102
        summary = json.loads((self.output_dir / "summary.json").read_text(encoding="utf-8"))
        written = save_plots(summary, self.output_dir, parents=False, confusion=next(
            (m for m in reversed(result.confusion) if m is not None), None))
        if written:
            logger.info("plots: %s", ", ".join(p.name for p in written))


class FolderGuard(Callback):
    """Stops a run whose output folder was deleted or renamed (put it first, before the writers).

    Without it the atomic writes would fail, or a folder re-created at the old place would hold
    an incomplete, unresumable run. It checks before every event that writes.

    Args:
        run_dir: The claimed :class:`~alta.run.rundir.RunDir`.

    Raises:
        OutputError: from any event, once the folder is gone (the message says where it went).
    """

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir

    def _check(self, **_: Any) -> None:
        self.run_dir.check_present()

    on_run_start = on_epoch_end = on_evaluation = on_experience_end = on_run_end = _check


def finish_complete_run(output_dir: Path, summary: dict[str, Any], *, config: RunConfig, plots: bool) -> list[Path]:
    """Write what a complete run lacks (finishing is idempotent): the plots (a kill between
    ``summary.json`` and the plots) and ``metrics.jsonl`` (rebuilt from the checkpoint).

    Returns:
        The files written.
    """
    written: list[Path] = []
    metrics, checkpoint = output_dir / "metrics.jsonl", output_dir / CHECKPOINT_NAME
    if not metrics.is_file() and checkpoint.is_file():
        state = read_checkpoint(checkpoint, config_hash=config.fingerprint(),
                                num_experiences=int(summary["num_experiences"]))
        write_text(metrics, "".join(json_line(r) for r in state["result"]["evaluations"]), parents=False)
        written.append(metrics)
    confusion = load_last_confusion(output_dir / CONFUSION_NAME) if plots else None
    expected = (*PLOT_FILES, *([CONFUSION_PLOT] if confusion is not None else []),
                *([CURVES_PLOT] if summary.get("curves") else []))
    if plots and not all((output_dir / name).is_file() for name in expected):
        written += save_plots(summary, output_dir, parents=False, confusion=confusion)
    if written:
        logger.info("the run in %s was complete but lacked %s: written now", output_dir,
                    ", ".join(p.name for p in written))
    return written


class StopRequested(Exception):
    """Raised by :class:`StopAfter` after a checkpoint to end a run early (resumable)."""


class StopAfter(Callback):
    """End a run after ``experiences`` experiences (checkpoint kept: continue with ``resume=True``).

    Put it last, after the :class:`Checkpointer` and the loggers: the experience it stops after
    must end for every callback before it.

    Args:
        experiences: Experiences to finish before stopping (>= 1).
        num_experiences: T (a run that ends anyway is not stopped).

    Raises:
        ConfigError: ``experiences`` is not an integer >= 1.
    """

    def __init__(self, experiences: int, *, num_experiences: int) -> None:
        if isinstance(experiences, bool) or not isinstance(experiences, int) or experiences < 1:
            raise ConfigError(
                f"stop_after must be an integer >= 1 (experiences to run before stopping), got {experiences!r}")
        self.experiences, self.num = experiences, num_experiences

    def on_run_start(self, *, num_experiences: int, **_: Any) -> None:  # noqa: D102
        if self.experiences > num_experiences:
            logger.warning("stop after %d experience(s) asked, but the stream has %d: the run goes to its end",
                           self.experiences, num_experiences)

    def on_experience_end(self, *, experience: int, result: StreamResult) -> None:  # noqa: D102
        if self.experiences <= experience + 1 < self.num:
            raise StopRequested(experience + 1)


def check_loggers(names: Iterable[str]) -> tuple[str, ...]:
    """The logger names (:data:`alta.loop.loggers.LOGGERS`), checked before a run starts: an
    unknown one is refused with the valid ones and how to register one, one whose optional
    package is not installed with what to install (:class:`~alta.loop.loggers.MissingExtraError`)."""
    names = tuple(names)
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"logger {name!r} is named twice; give each logger once (e.g. --logger csv,tensorboard)")
        if name not in LOGGERS:
            try:
                LOGGERS.resolve(name)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (e.g. --logger csv,tensorboard)") from None
    names = tuple(LOGGERS.resolve(name) for name in names)
    for name in names:
        check_logger_packages(name, LOGGERS.get(name))
    return names


OUTPUTS_NAME = "outputs.json"  # the loggers and plots a run was started with, restored on resume
_OUTPUTS_FORMAT = "alta.run-outputs"


def _as_flags(loggers: Iterable[str], plots: bool) -> str:
    """The command-line options that give these outputs (for messages)."""
    flags = [f"--logger {','.join(loggers)}"] if loggers else []
    return " ".join(flags + ([] if plots else ["--no-plots"])) or "no --logger and no --no-plots"


def read_outputs(output_dir: str | Path) -> tuple[tuple[str, ...], bool] | None:
    """The ``(loggers, plots)`` a run was started with (its ``outputs.json``); ``None`` for a
    folder without that file (a run started by an older alta).

    Raises:
        CheckpointError: a damaged file (the message says how to go on).
    """
    path = Path(output_dir) / OUTPUTS_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        loggers, plots = data["loggers"], data["plots"]
        if data.get("format") != _OUTPUTS_FORMAT or not isinstance(plots, bool) or not isinstance(loggers, list):
            raise ValueError("unexpected contents")
        return check_loggers(loggers), plots
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(
            f"{path} is damaged ({type(exc).__name__}: {exc}): it records the loggers and plots the run was "
            f"started with. Delete it and resume with the same options as the run was started with "
            f"(--logger NAMES, --no-plots)"
        ) from None


def write_outputs(output_dir: str | Path, loggers: Iterable[str], plots: bool) -> Path:
    """Record the loggers and plots of a run in its folder (``outputs.json``), for its resume."""
    return write_json(Path(output_dir) / OUTPUTS_NAME, {"format": _OUTPUTS_FORMAT, "version": 1,
                                                        "loggers": list(loggers), "plots": bool(plots)}, parents=False)


def resolve_outputs(output_dir: str | Path, *, resume: bool, loggers: Iterable[str] | None,
                    plots: bool | None) -> tuple[tuple[str, ...], bool]:
    """The loggers and plots a run writes. A new run: as given (default: no logger, plots). A
    resumed run: as it was started with (its ``outputs.json``), so that it writes the same files
    as the uninterrupted run (the CSV rewritten from the checkpointed evaluations, TensorBoard
    continuing its curves); ``None`` keeps them, a value that differs is refused.

    Raises:
        ConfigError: an unknown logger; a resume given other loggers or plots than the run was
            started with (the message says which options to pass).
        CheckpointError: a damaged ``outputs.json``.
    """
    given = None if loggers is None else check_loggers(loggers)
    recorded = read_outputs(output_dir) if resume else None
    if recorded is None:
        return (given or ()), (True if plots is None else bool(plots))
    kept_loggers, kept_plots = recorded
    changed = []
    if given is not None and sorted(set(given)) != sorted(set(kept_loggers)):
        changed.append(f"loggers {', '.join(given) or 'none'} (the run has {', '.join(kept_loggers) or 'none'})")
    if plots is not None and bool(plots) != kept_plots:
        changed.append(f"plots {'on' if plots else 'off'} (the run has them {'on' if kept_plots else 'off'})")
    if changed:
        raise ConfigError(
            f"cannot resume {output_dir} with other outputs: {'; '.join(changed)}. A resumed run writes the files the "
            f"uninterrupted run would, so it keeps the outputs it was started with: pass {_as_flags(*recorded)}, "
            f"or leave --logger and --no-plots out to keep them (or start a new run for other outputs)"
        )
    return recorded


def run_plugins(config, loggers: Sequence[str]) -> list[dict[str, Any]]:
    """The plug-in code a run's results come from: its configuration's (``config.plugins``) and
    its loggers' (a logger plug-in writes files of the run too), as ``summary.json`` records them."""
    return [*config.plugins, *(record for name in loggers if (record := plugin_record(LOGGERS, name)) is not None)]


def build_loggers(names: tuple[str, ...], output_dir: Path, config) -> list[Callback]:
    """The loggers asked for, writing into the run folder (each built by its factory with the
    folder and the run's configuration as a mapping).

    Raises:
        PluginError: a logger plug-in whose factory raises or returns no callback.
    """
    out: list[Callback] = []
    for name in names:
        factory = LOGGERS.get(name)
        try:
            built = factory(output_dir, config=config.to_dict())
        except AltaError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plug-in's own error, named
            raise PluginError(f"{LOGGERS.describe(name)} could not be built: {type(exc).__name__}: {exc}") from exc
        if not isinstance(built, Callback):
            raise PluginError(f"{LOGGERS.describe(name)} returned {type(built).__name__}, not an alta.Callback (a "
                              f"logger subclasses alta.Callback and overrides the events it logs)")
        out.append(built)
    return out
