"""The experiment runner behind ``alta run``, callable from Python.

:func:`run_experiment` runs one continual-learning experiment of ALTA (Li et al., "Cross-Modal
Alternating Learning with Task-Aware Representations for Continual Learning", IEEE TMM 2023;
reference code github.com/vijaylee/ALTA) from a :class:`~alta.cli.config.RunConfig`, using only
alta's public pieces: :func:`alta.load_backbone`, :class:`alta.ScenarioStream`,
:class:`alta.CrossModalLearner`, :class:`alta.MemoryBuffer`, :class:`alta.AlternatingSchedule`,
:func:`alta.build_optimizer` and :func:`alta.run_stream`. It writes, atomically, into its output
folder:

- ``config.yaml``: the resolved configuration (every defaulted value included);
- ``metrics.jsonl``: one JSON object per evaluation (experience (0-based), epoch (1-based),
  per-experience class-IL and task-IL accuracy, their means, the epoch's loss);
- ``checkpoint.pt``: the state after the last completed experience (resume with ``resume=True``);
- ``summary.json``: accuracy matrices, Avg, Last, forgetting, BWT, FWT, backbone, versions, ...;
- ``accuracy_matrix.png`` and ``accuracy_curve.png`` when matplotlib is installed.

Example:
    >>> from alta.cli.experiment import run_experiment
    >>> from alta.cli.config import load_config, apply_overrides
    >>> config = apply_overrides(load_config("il_cifar10"), {"model.visual": "tiny-vit", "train.epochs": 1,
    ...                                                       "data.root": "data/cifar10"})  # doctest: +SKIP
    >>> summary = run_experiment(config, output_dir="runs/quick")  # doctest: +SKIP
    >>> summary["avg_accuracy"]["class_il"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch

from ..backbones import BACKBONES, list_backbones, load_backbone
from ..buffer import MemoryBuffer
from ..cache import FeatureCache
from ..data import DataRootError, ExperienceDataset, ScenarioStream
from ..errors import CheckpointError, ConfigError, DataError
from ..evaluation import EvaluationResult, evaluate
from ..io import append_jsonl, write_json, write_text
from ..learner import CrossModalLearner
from ..optim import build_optimizer
from ..schedule import AlternatingSchedule
from ..callbacks import Callback, CallbackList, ProgressBar
from ..training import LoopConfig, StreamResult, derive_seed, run_stream
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, restore_checkpoint, save_checkpoint
from .config import OPERATIONAL_KEYS, RunConfig, flatten, load_run_config
from .report import SUMMARY_FORMAT, build_summary, format_table, random_backbone_note, save_plots
from .rundir import RUN_FILES, RunDir, claim_run_dir

__all__ = ["run_experiment", "default_output_dir", "build_stream", "resolve_device", "RUN_FILES", "config_differences",
           "read_finished_summary"]

logger = logging.getLogger("alta.cli")


class _StopRequested(Exception):
    """Raised after the checkpoint of experience ``stop_after`` to end a run early (resumable)."""


def default_output_dir(config: RunConfig, *, root: str | Path = "runs", unique: bool = True) -> Path:
    """``runs/<config>-<method>-<YYYYmmdd-HHMMSS>`` (with ``unique``, a suffix ``-2``, ``-3``, ...
    is added if it exists; ``alta run`` claims the name atomically instead, see
    :func:`~alta.cli.rundir.claim_run_dir`)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config.name}-{config.model.method}-{stamp}"
    if not unique:
        return base
    path, n = base, 2
    while path.exists():
        path = base.with_name(f"{base.name}-{n}")
        n += 1
    return path


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; refuses CUDA when it is not available.

    Raises:
        ConfigError: a CUDA device was asked for on a machine without CUDA.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine; use --device cpu")
    return resolved


def config_differences(a: RunConfig, b: RunConfig, *, operational: bool = False) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs: ``{key: (a value, b value)}``.

    Args:
        operational: Include the :data:`~alta.cli.config.OPERATIONAL_KEYS` (left out by default:
            they do not change results).
    """
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return {k: (fa.get(k), fb.get(k)) for k in fa
            if fa.get(k) != fb.get(k) and (operational or k not in OPERATIONAL_KEYS)}


def _check_backbone_name(visual: str) -> None:
    if visual in BACKBONES or visual in list_backbones(pretrained=True) or Path(visual).expanduser().is_file():
        return
    names = list_backbones()
    same_case = [n for n in names if n.lower() == visual.lower()]
    close = same_case or difflib.get_close_matches(visual, names, n=1, cutoff=0.5)
    hint = (f"; did you mean {close[0]!r}? (names are case-sensitive)" if same_case else
            f"; did you mean {close[0]!r}?" if close else ".")
    raise ConfigError(
        f"unknown backbone {visual!r}{hint} It is neither a CLIP name nor an existing file. Pretrained: "
        f"{', '.join(list_backbones(pretrained=True))}; random weights (offline): "
        f"{', '.join(list_backbones(pretrained=False))}; or give the path of a local CLIP checkpoint (.pt)"
    )


def _first_per_class(dataset: ExperienceDataset, limit: int | None) -> ExperienceDataset:
    """The first ``limit`` samples of every class of ``dataset`` (all when ``None``)."""
    if limit is None:
        return dataset
    counts: dict[int, int] = {}
    keep = []
    for position, label in enumerate(dataset.targets.tolist()):
        if counts.get(label, 0) < limit:
            counts[label] = counts.get(label, 0) + 1
            keep.append(position)
    return ExperienceDataset(dataset.source, dataset.indices[keep], label_map=dataset.label_map,
                             transform=dataset.transform)


def build_stream(config: RunConfig, *, resolution: int) -> tuple[ScenarioStream, list]:
    """The stream of a config at the backbone's resolution, and its (possibly subsampled)
    experiences.

    Raises:
        ConfigError: bad split or options. DataError: missing or malformed data.
    """
    data = config.data
    try:
        stream = ScenarioStream.from_name(
            data.dataset, root=data.root, download=data.download, transform=data.transform,
            test_transform=data.test_transform, resolution=resolution, num_experiences=data.num_experiences,
            classes_per_experience=data.classes_per_experience, class_order=data.class_order,
        )
    except DataError as exc:
        raise _classify_data_error(exc) from None
    experiences = list(stream)
    if data.max_train_per_class is not None or data.max_test_per_class is not None:
        experiences = [
            dataclasses.replace(e, train=_first_per_class(e.train, data.max_train_per_class),
                                test=_first_per_class(e.test, data.max_test_per_class))
            for e in experiences
        ]
    return stream, experiences


def _frames(tb) -> list[tuple[str, str]]:
    out = []
    while tb is not None:
        out.append((tb.tb_frame.f_globals.get("__name__", ""), tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    return out


def _classify_data_error(exc: DataError) -> Exception:
    """What a :class:`DataError` of :meth:`ScenarioStream.from_name` is about: the data root
    (:class:`alta.data.DataRootError`, kept: the command line adds where to put the data), the
    configuration (the class order, class names: a :class:`ConfigError`, exit status 2), or the
    data itself (kept)."""
    if isinstance(exc, DataRootError):
        return exc
    message = str(exc)
    if (any(name in ("_resolve_order", "_check_names") for _, name in _frames(exc.__traceback__))
            or message.startswith(("class_order", "class names", "class_names"))):
        return ConfigError(f"config key 'data.class_order': {message}" if "class_order" in message else message)
    return exc


def _check_resumed_config(config: RunConfig, output_dir: Path) -> None:
    saved = load_run_config(output_dir / "config.yaml")
    diff = config_differences(saved, config)
    if diff:
        details = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in list(diff.items())[:6])
        raise ConfigError(
            f"cannot resume {output_dir} with a different configuration ({details}); resume it with its saved "
            f"config.yaml, or start a new run in another output folder"
        )


def read_finished_summary(output_dir: str | Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a finished run, checked; ``None`` when there is none.

    Raises:
        CheckpointError: a summary that is not valid JSON, not a complete summary of
            ``alta run``, or lacks results (the message says how to rebuild it).
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
                return summary
            except Exception as exc:  # noqa: BLE001 - any missing or malformed entry
                problem = f"it lacks results ({type(exc).__name__}: {exc})"
    if (output_dir / CHECKPOINT_NAME).is_file():
        fix = (f"The results are also in the run's checkpoint: move {path} away (or delete it) and run "
               f"`alta run --resume {output_dir}` again to write it anew")
    else:
        fix = f"There is no {CHECKPOINT_NAME} to rebuild it from: start a new run"
    raise CheckpointError(f"cannot resume {output_dir}: its summary.json is damaged ({problem}). {fix}")


def _log_evaluation(record: dict, *, num_experiences: int, epochs: int) -> None:
    accs = lambda values: " ".join(f"{v:.1f}" for v in values)  # noqa: E731
    loss = record.get("loss")
    logger.info(
        "experience %d/%d, epoch %d/%d: class-IL %.2f [%s], task-IL %.2f [%s]%s",
        record["experience"] + 1, num_experiences, record["epoch"], epochs, record["class_il_mean"],
        accs(record["class_il"]), record["task_il_mean"], accs(record["task_il"]),
        f", loss {loss:.4f}" if isinstance(loss, float) else "",
    )


def _run_without_training(learner, experiences, *, result: StreamResult, start_experience: int, batch_size: int,
                          num_workers: int, cache: FeatureCache, callbacks: CallbackList,
                          progress: bool) -> StreamResult:
    """The loop of ``method="zeroshot"``: nothing is trained, every experience is evaluated."""
    num = len(experiences)
    for t in range(start_experience, num):
        learner.begin_experience(experiences[t])
        learner.end_experience(experiences[t])
        full = evaluate(learner, experiences, batch_size=batch_size, num_workers=num_workers, cache=cache,
                        progress=progress)
        result.class_il[t, :] = full.class_il
        result.task_il[t, :] = full.task_il
        result.history.append([])
        seen = EvaluationResult(full.experiences[: t + 1], full.class_il[: t + 1], full.task_il[: t + 1],
                                full.num_samples[: t + 1])
        record = {"experience": t, "epoch": 0, **seen.as_dict(), "loss": None}
        result.evaluations.append(record)
        callbacks.on_evaluation(record=record)
        callbacks.on_experience_end(experience=t, result=result)
    return result


def run_experiment(
    config: RunConfig,
    *,
    output_dir: str | Path | RunDir,
    resume: bool = False,
    progress: bool = True,
    plots: bool = True,
    stop_after: int | None = None,
    on_evaluation: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one experiment and write its results.

    Args:
        config: The resolved configuration (:func:`~alta.cli.config.load_config` +
            :func:`~alta.cli.config.apply_overrides`).
        output_dir: Results folder, or a :class:`~alta.cli.rundir.RunDir` already claimed with
            :func:`~alta.cli.rundir.claim_run_dir` (the caller releases it). A folder is
            claimed before anything is loaded: a new run refuses a folder that holds a run or
            that another process is using, and gives the folder back if it fails before its
            first result.
        resume: Continue the run in ``output_dir`` from its last checkpoint (its
            ``config.yaml`` must match ``config`` up to operational keys such as the device or
            the data root). Without a checkpoint the run starts from the first experience.
        progress: Show tqdm progress bars for epochs and evaluations.
        plots: Write the PNG plots (when matplotlib is installed).
        stop_after: End the run after this many experiences, checkpoint kept (continue later
            with ``resume=True``).
        on_evaluation: Called with every evaluation record (as written to ``metrics.jsonl``).

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
    """
    started = time.perf_counter()
    claimed = output_dir if isinstance(output_dir, RunDir) else None
    output_dir = claimed.path if claimed is not None else Path(output_dir)
    if claimed is not None and claimed.resume != bool(resume):
        raise ConfigError(f"{output_dir} was claimed with resume={claimed.resume} but run_experiment got "
                          f"resume={resume}")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ConfigError(f"stop_after must be an integer >= 1 (experiences to run before stopping), got {stop_after!r}")
    _check_backbone_name(config.model.visual)
    device = resolve_device(config.device)
    # the folder is claimed (or, resumed, locked) before anything is loaded; a new run that fails
    # before its first result gives it back
    claim = contextlib.nullcontext(claimed) if claimed is not None else claim_run_dir(output_dir, config, resume=resume)
    with claim as run_dir:
        return _run(config, run_dir, device=device, started=started, progress=progress, plots=plots,
                    stop_after=stop_after, on_evaluation=on_evaluation)


def _run(config: RunConfig, run_dir: RunDir, *, device: torch.device, started: float, progress: bool, plots: bool,
         stop_after: int | None, on_evaluation: Callable[[dict], None] | None) -> dict[str, Any]:
    """The body of :func:`run_experiment`, in a claimed folder."""
    output_dir, resume = run_dir.path, run_dir.resume
    if resume:
        _check_resumed_config(config, output_dir)
        summary = read_finished_summary(output_dir)
        if summary is not None:
            logger.info("the run in %s is already complete; nothing to resume", output_dir)
            return summary
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # ---- the pieces, all from alta's public API
    m = config.model
    backbone = load_backbone(m.visual, device=device, precision=m.precision, download_root=m.download_root,
                             download=m.download_weights, seed=m.backbone_seed)
    description = backbone.describe()
    logger.info("backbone %s: %s, %d px, D=%d, source %s", description["name"],
                "pretrained" if backbone.pretrained else "RANDOM weights", backbone.input_resolution,
                backbone.embed_dim, description["source"])
    if not backbone.pretrained:
        logger.warning("%s", random_backbone_note(description))
    stream, experiences = build_stream(config, resolution=backbone.input_resolution)
    num = len(experiences)
    logger.info("stream %s: %d experience(s) x %s classes, %d train / %d test images at %d px", stream.name, num,
                "/".join(str(c) for c in sorted(set(stream.classes_per_experience))),
                sum(len(e.train) for e in experiences), sum(len(e.test) for e in experiences),
                backbone.input_resolution)
    learner = CrossModalLearner(
        backbone, class_names=stream.class_names, method=m.method, head=m.head, alpha=m.alpha, beta=m.beta,
        replay_batch_size=m.replay_batch_size, ctx_init=m.ctx_init, template=m.template,
        adapter_reduction=m.adapter_reduction, seed=config.seed, truncate_text=m.truncate_text,
        snapshot_timing=m.snapshot_timing,
    )
    spec = learner.method
    trains = bool(spec.branches)
    buffer = None
    if config.buffer.enabled and spec.replay:
        buffer = MemoryBuffer(config.buffer.size, policy=config.buffer.policy, device=device,
                              seed=derive_seed(config.seed, 1))
    elif config.buffer.enabled:
        logger.info("method %s does not replay (as in the reference code): no buffer", spec.name)
    buffer_size = buffer.capacity if buffer is not None else 0
    t = config.train
    schedule = optimizer = scheduler = None
    if trains:
        schedule = AlternatingSchedule(t.schedule, period=t.schedule_period, unit=t.schedule_unit,
                                       start=t.schedule_start)
        o = config.optim
        optimizer, scheduler = build_optimizer(learner, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                               schedule=o.lr_schedule, epochs=t.epochs,
                                               warmup_epochs=o.warmup_epochs, warmup_lr=o.warmup_lr)
    logger.info("method %s = %s, head %r, buffer %s, %d trainable parameters, seed %d, device %s", spec.name,
                spec.formula, m.head, buffer_size or "off", learner.num_trainable_parameters(), config.seed, device)
    # the run starts: its folder and resolved configuration (operational keys may change on resume)
    run_dir.mark_started()
    write_text(output_dir / "config.yaml", config.to_yaml())
    cache = FeatureCache()
    config_hash = config.fingerprint()
    checkpoint_path = output_dir / CHECKPOINT_NAME
    metrics_path = output_dir / "metrics.jsonl"

    # ---- resume
    start_experience, result, zeroshot, elapsed_before = 0, StreamResult.empty(num), None, 0.0
    if resume and checkpoint_path.is_file():
        state = read_checkpoint(checkpoint_path, config_hash=config_hash, num_experiences=num)
        result = restore_checkpoint(state, learner=learner, buffer=buffer, schedule=schedule, optimizer=optimizer,
                                    scheduler=scheduler)
        start_experience, zeroshot, elapsed_before = state["next_experience"], state["zeroshot"], state["elapsed_s"]
        logger.info("resuming %s after experience %d of %d", output_dir, start_experience, num)
    elif resume:
        logger.info("no checkpoint in %s yet: starting from the first experience", output_dir)
    # metrics.jsonl holds exactly the evaluations of the checkpointed part (a killed run may have
    # written records after its last checkpoint)
    write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in result.evaluations))

    # ---- zero-shot CLIP on every experience: the baseline of forward transfer
    if zeroshot is None and config.eval.zeroshot_baseline:
        zs_learner = CrossModalLearner(backbone, class_names=stream.class_names, method="zeroshot", head="all",
                                       template=m.template, truncate_text=m.truncate_text)
        zs = evaluate(zs_learner, experiences, batch_size=config.eval.batch_size,
                      num_workers=config.data.num_workers, cache=cache, progress=progress)
        zeroshot = {"class_il": list(zs.class_il), "task_il": list(zs.task_il)}
        logger.info("zero-shot CLIP: class-IL %s, task-IL %s", " ".join(f"{v:.1f}" for v in zs.class_il),
                    " ".join(f"{v:.1f}" for v in zs.task_il))
        del zs_learner

    def elapsed() -> float:
        return elapsed_before + (time.perf_counter() - started)

    class _Writer(Callback):
        def on_evaluation(self, *, record: dict) -> None:
            append_jsonl(metrics_path, record)
            _log_evaluation(record, num_experiences=num, epochs=t.epochs if trains else 0)
            if on_evaluation is not None:
                on_evaluation(record)

        def on_experience_end(self, *, experience: int, result: StreamResult) -> None:
            save_checkpoint(checkpoint_path, config_hash=config_hash, next_experience=experience + 1,
                            num_experiences=num, learner=learner, buffer=buffer, schedule=schedule,
                            optimizer=optimizer, scheduler=scheduler, result=result, zeroshot=zeroshot,
                            elapsed_s=elapsed())
            logger.info("experience %d/%d done (%.0f s); checkpoint %s", experience + 1, num, elapsed(),
                        checkpoint_path)
            if stop_after is not None and experience + 1 >= stop_after and experience + 1 < num:
                raise _StopRequested(experience + 1)

    callbacks = CallbackList([_Writer()] + ([ProgressBar()] if progress else []))
    try:
        if start_experience >= num:
            logger.info("every experience of %s is done: writing its summary", output_dir)
        elif trains:
            loop = LoopConfig(epochs=t.epochs, batch_size=t.batch_size, seed=config.seed, train_cache=t.train_cache,
                              eval_every=config.eval.every, eval_batch_size=config.eval.batch_size,
                              num_workers=config.data.num_workers)
            run_stream(
                learner, experiences, optimizer=optimizer, scheduler=scheduler, buffer=buffer, schedule=schedule,
                loop=loop, cache=cache, result=result, start_experience=start_experience, callbacks=callbacks,
            )
        else:
            _run_without_training(
                learner, experiences, result=result, start_experience=start_experience,
                batch_size=config.eval.batch_size, num_workers=config.data.num_workers, cache=cache,
                callbacks=callbacks, progress=progress,
            )
    except _StopRequested as stop:
        done = int(stop.args[0])
        logger.info("stopped after %d of %d experiences as asked; continue with `alta run --resume %s`", done, num,
                    output_dir)
        return {"complete": False, "experiences_done": done, "num_experiences": num, "output_dir": str(output_dir)}

    stream_info = {
        "dataset": stream.name,
        "num_experiences": num,
        "classes_per_experience": stream.classes_per_experience,
        "class_names": stream.class_names,
        "num_train": sum(len(e.train) for e in experiences),
        "num_test": sum(len(e.test) for e in experiences),
    }
    summary = build_summary(
        config=config, result=result, zeroshot=zeroshot, backbone=description, method=spec,
        stream_info=stream_info, num_trainable_parameters=learner.num_trainable_parameters(),
        wall_time_s=elapsed(), device=device, output_dir=output_dir, buffer_size=buffer_size,
    )
    write_json(output_dir / "summary.json", summary)
    if plots:
        written = save_plots(summary, output_dir)
        if written:
            logger.info("plots: %s", ", ".join(p.name for p in written))
    return summary
