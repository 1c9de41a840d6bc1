"""The run of an experiment: from a resolved :class:`~alta.run.config.RunConfig` to results on disk.

:func:`run_experiment` claims the run folder, builds the :class:`~alta.run.experiment.Experiment`,
measures the zero-shot baseline, runs the loop (:func:`alta.run_stream`) with the run's writers
(:mod:`alta.run.writers`) and returns the summary; ``resume=True`` continues a run from its
checkpoint, bit-identically.

``config.yaml`` (the resolved configuration) is written when the run folder is claimed
(:func:`alta.run.rundir.claim_run_dir`).

Examples:
    >>> from alta.run import RunConfig, run_experiment
    >>> config = RunConfig.from_dict({"data": {"dataset": "digits"}, "model": {"visual": "tiny-vit"},
    ...                               "train": {"epochs": 1}})  # doctest: +SKIP
    >>> summary = run_experiment(config, output_dir="runs/quick")  # doctest: +SKIP
    >>> summary["avg_accuracy"]["class_il"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from .. import distributed as dist
from ..errors import CheckpointError, ConfigError
from ..io import clean_temp_files, write_text
from ..loop.callbacks import Callback, CallbackList, MainProcessOnly, ProgressBar
from ..loop.fit import evaluate_stream, run_stream
from ..loop.result import StreamResult
from ..resources import translate_allocation_errors
from ..seeding import set_deterministic
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, restore_checkpoint
from .config import RunConfig, config_differences, load_saved_config, resolve_device
from .experiment import Experiment, check_backbone_name
from .rundir import RUN_FILES, RunDir, claim_run_dir_on_main
from .summary import (
    CONFUSION_NAME,
    CONFUSION_PLOT,
    CURVES_PLOT,
    PLOT_FILES,
    SUMMARY_FORMAT,
    format_table,
)
from .writers import (
    OUTPUTS_NAME,
    Checkpointer,
    FolderGuard,
    LogLines,
    MetricsWriter,
    PlotWriter,
    StopAfter,
    StopRequested,
    SummaryWriter,
    build_loggers,
    check_loggers,
    finish_complete_run,
    loss_note,
    read_outputs,
    resolve_outputs,
    run_plugins,
    write_outputs,
)

__all__ = ["run_experiment", "read_finished_summary"]

logger = logging.getLogger("alta.run")


def read_finished_summary(output_dir: str | Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a finished run, checked; ``None`` when there is none.

    Raises:
        CheckpointError: a summary that is not valid JSON, not a complete summary of a run, or
            lacks results (the message says how to rebuild it).
    """

    output_dir = Path(output_dir)
    path = output_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem = f"it is not readable JSON: {exc}"
    else:
        if not isinstance(summary, dict):
            problem = f"it holds a JSON {type(summary).__name__}, expected an object"
        elif summary.get("format") != SUMMARY_FORMAT:
            problem = f"its format is {summary.get('format')!r}, expected {SUMMARY_FORMAT!r}"
        elif summary.get("complete") is not True:
            problem = "it does not say the run is complete"
        else:
            try:
                format_table(summary)
                recorded = summary.get("output_dir")
                if not isinstance(recorded, str) or Path(recorded).resolve() != output_dir.resolve():
                    summary["output_dir"] = str(output_dir)  # the folder was moved or copied since
                return summary
            except Exception as exc:  # noqa: BLE001 - any missing or malformed entry
                problem = f"it lacks results ({type(exc).__name__}: {exc})"
    if (output_dir / CHECKPOINT_NAME).is_file():
        fix = (f"The results are also in the run's checkpoint: move {path} away (or delete it) and run "
               f"`alta run --resume {output_dir}` again to write it anew")
    else:
        fix = f"There is no {CHECKPOINT_NAME} to rebuild it from: start a new run"
    raise CheckpointError(f"cannot resume {output_dir}: its summary.json is damaged ({problem}). {fix}")


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def run_experiment(
    config: RunConfig,
    *,
    output_dir: str | Path | RunDir,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
    progress: bool = False,
    plots: bool | None = None,
    stop_after: int | None = None,
    loggers: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one experiment and write its results.

    Args:
        config: The resolved configuration.
        output_dir: Results folder, or a :class:`~alta.run.rundir.RunDir` already claimed with
            :func:`~alta.run.rundir.claim_run_dir` (the caller releases it). A folder is claimed
            before anything is loaded: a new run refuses a folder that holds a run or that
            another process is using, and gives the folder back if it fails before its first
            result.
        resume: Continue the run in ``output_dir`` after its last finished epoch (its
            ``config.yaml`` must match ``config`` up to operational keys such as the device or
            the data root). Without a checkpoint the run starts from the first experience.
        callbacks: The user's :class:`~alta.loop.callbacks.Callback` s; they receive every event of
            the run, after the run's own writers (metrics, checkpoint, logs). Under torchrun they
            run on every rank (wrap a writer in :class:`~alta.loop.callbacks.MainProcessOnly`).
        progress: Show tqdm progress bars (:class:`~alta.loop.callbacks.ProgressBar` and evaluations).
        plots: Write the PNG plots (when matplotlib is installed); ``None``: a new run writes
            them, a resumed run does what it was started with.
        stop_after: End the run after this many experiences, checkpoint kept (continue later
            with ``resume=True``).
        loggers: Names of :data:`alta.loop.loggers.LOGGERS` to write into the run folder as well:
            ``csv`` (``evaluations.csv``), ``tensorboard`` (``tensorboard/``), ``wandb`` (a W&B
            run under ``wandb/``, named after the folder; offline with ``WANDB_MODE=offline``).
            ``None``: a new run has none, a resumed run the ones it was started with. The loggers
            and plots of a run are recorded in its ``outputs.json``; a resume restores them, so
            that it writes the same files as the uninterrupted run, and refuses others
            (:func:`~alta.run.writers.resolve_outputs`).

    Returns:
        The summary (the contents of ``summary.json``); when stopped early by ``stop_after``,
        ``{"complete": False, "experiences_done": n, "num_experiences": T, "output_dir": ...}``.

    Raises:
        ConfigError: invalid configuration, unknown backbone, an output folder that holds
            another run, is in use by another process or cannot be written, or a resume with a
            different configuration.
        DataError: missing or malformed data (:class:`alta.data.DataRootError`: the data root).
        BackboneError: pretrained weights not available offline, unreadable checkpoint file.
        CheckpointError: a damaged checkpoint or summary, or a checkpoint of a different run.
        TrainingError: the training loss or the parameters became non-finite (the last good
            checkpoint is kept).
        OutputError: a result or checkpoint cannot be written (full disk), or the output
            folder was deleted or renamed mid-run.
        ResourceError: memory for a tensor cannot be allocated.
    """
    started = time.perf_counter()
    claimed = output_dir if isinstance(output_dir, RunDir) else None
    output_dir = claimed.path if claimed is not None else Path(output_dir)
    if claimed is not None and claimed.resume != bool(resume):
        raise ConfigError(f"{output_dir} was claimed with resume={claimed.resume} but run_experiment got "
                          f"resume={resume}")
    user = CallbackList(callbacks)
    loggers = None if loggers is None else check_loggers(loggers)
    if stop_after is not None:
        StopAfter(stop_after, num_experiences=2**62)  # checked before anything is loaded
    check_backbone_name(config.model.visual)
    device = resolve_device(config.device)
    if device.type == "cuda" and dist.is_distributed():
        device = dist.local_device()  # torchrun: the GPU LOCAL_RANK
    claim = (contextlib.nullcontext(claimed) if claimed is not None
             else claim_run_dir_on_main(output_dir, config, resume=resume))
    with claim as run_dir, translate_allocation_errors(f"the run in {output_dir}"):
        return _run(config, run_dir, device=device, started=started, progress=progress, plots=plots,
                    stop_after=stop_after, user=user, loggers=loggers)


def _check_resumed_config(config: RunConfig, output_dir: Path) -> None:
    """Remove the temporary files an interrupted write left in ``output_dir``, then refuse a
    configuration that differs from the one saved there."""
    removed = clean_temp_files(output_dir, (*RUN_FILES, *PLOT_FILES, CONFUSION_NAME, CONFUSION_PLOT, OUTPUTS_NAME,
                                            CURVES_PLOT))
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted write: %s", len(removed),
                    ", ".join(p.name for p in removed[:5]))
    diff = config_differences(load_saved_config(output_dir / "config.yaml"), config)
    if diff:
        details = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in list(diff.items())[:6])
        raise ConfigError(f"cannot resume {output_dir} with a different configuration ({details}); resume it "
                          f"with its saved config.yaml, or start a new run in another output folder")


def _run(config: RunConfig, run_dir: RunDir, *, device: torch.device, started: float, progress: bool,
         plots: bool | None, stop_after: int | None, user: CallbackList,
         loggers: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The body of :func:`run_experiment`, in a claimed folder."""
    output_dir = run_dir.path
    if run_dir.resume:
        _check_resumed_config(config, output_dir)
    recorded = run_dir.resume and read_outputs(output_dir) is not None
    loggers, plots = resolve_outputs(output_dir, resume=run_dir.resume, loggers=loggers, plots=plots)
    if recorded and loggers:
        logger.info("the run's loggers, as it was started: %s", ", ".join(loggers))
    if run_dir.resume:
        summary = read_finished_summary(output_dir)
        if summary is not None:
            if not finish_complete_run(output_dir, summary, config=config, plots=plots):
                logger.info("the run in %s is already complete; nothing to resume", output_dir)
            return summary
    if config.deterministic:  # before the first CUDA kernel: cuBLAS reads its setting when it starts
        set_deterministic()  # it logs the settings it applied
    main = dist.is_main_process()  # under torchrun every rank runs, rank 0 alone writes
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    experiment = Experiment(config, device=device)
    num = len(experiment.experiences)
    run_dir.mark_started()
    if main:
        write_text(output_dir / "config.yaml", config.to_yaml(), parents=False)  # operational keys may change on resume
        if not recorded:
            write_outputs(output_dir, loggers, plots)

    result = StreamResult.empty(num, len(experiment.eval_experiences))
    start_experience, start_epoch, zeroshot, elapsed_before = 0, 0, None, 0.0
    checkpoint_path = output_dir / CHECKPOINT_NAME
    if run_dir.resume and checkpoint_path.is_file():
        state = read_checkpoint(checkpoint_path, config_hash=config.fingerprint(), num_experiences=num)
        result = restore_checkpoint(state, objects=experiment.objects())
        start_experience, start_epoch = state["next_experience"], state["next_epoch"]
        zeroshot, elapsed_before = state["zeroshot"], state["elapsed_s"]
        logger.info("resuming %s at experience %d of %d, epoch %d", output_dir, start_experience + 1, num,
                    start_epoch + 1)
    elif run_dir.resume:
        logger.info("no checkpoint in %s yet: starting from the first experience", output_dir)
    if zeroshot is None and config.eval.zeroshot_baseline:
        zeroshot = experiment.zeroshot_baseline(progress=progress)

    def elapsed() -> float:
        return elapsed_before + (time.perf_counter() - started)

    epochs = config.train.epochs if experiment.trains else 0
    plugins = run_plugins(config, loggers)
    summary_writer = SummaryWriter(output_dir / "summary.json", experiment, elapsed=elapsed, zeroshot=zeroshot,
                                   write=main, extra={"plugins": plugins} if plugins else None)
    writers = [  # what writes runs on rank 0 only; the stop and the summary (returned) on every rank
        MainProcessOnly([FolderGuard(run_dir),
                         MetricsWriter(output_dir / "metrics.jsonl"),
                         Checkpointer(checkpoint_path, experiment, elapsed=elapsed, zeroshot=zeroshot),
                         LogLines(num_experiences=num, epochs=epochs, checkpoint=checkpoint_path, elapsed=elapsed,
                                  loss=loss_note(experiment.learner),
                                  unit="round" if config.loop.iterations else "epoch")]),
        summary_writer,
        MainProcessOnly([*([PlotWriter(output_dir)] if plots else []), *([ProgressBar()] if progress else []),
                         *build_loggers(loggers, output_dir, config)]),
    ]
    # the stop last: every writer, logger and user callback sees the end of the experience it stops after
    callbacks = CallbackList([*writers, *user, *([StopAfter(stop_after, num_experiences=num)] if stop_after else [])])
    loop = config.loop.replace(distributed=dist.is_distributed())
    try:
        if start_experience >= num:
            logger.info("every experience of %s is done: writing its summary", output_dir)
            callbacks.on_run_end(result=result)
        elif experiment.trains:
            run_stream(
                experiment.learner, experiment.experiences, optimizer=experiment.optimizer,
                scheduler=experiment.scheduler, buffer=experiment.buffer, schedule=experiment.schedule,
                loop=loop,
                cache=experiment.cache, callbacks=callbacks, result=result, start_experience=start_experience,
                start_epoch=start_epoch, eval_experiences=experiment.eval_experiences,
            )
        else:
            evaluate_stream(experiment.learner, experiment.experiences, loop=loop, cache=experiment.cache,
                            callbacks=callbacks, result=result, start_experience=start_experience,
                            eval_experiences=experiment.eval_experiences, progress=progress)
    except StopRequested as stop:
        done = int(stop.args[0])
        logger.info("stopped after %d of %d experiences as asked; continue with `alta run --resume %s`", done, num,
                    output_dir)
        return {"complete": False, "experiences_done": done, "num_experiences": num, "output_dir": str(output_dir)}
    return summary_writer.summary
