"""The run of an experiment: from a resolved :class:`RunConfig` to results on disk.

One continual-learning run of ALTA (Li et al., "Cross-Modal Alternating Learning with Task-Aware
Representations for Continual Learning", IEEE TMM 2023; reference code github.com/vijaylee/ALTA),
built from alta's public pieces only::

    RunConfig ──> Experiment: backbone, stream, learner, buffer, schedule, optimizer
              ──> zero-shot baseline ──> run_stream(..., callbacks=[...]) ──> summary

Everything a run writes is a :class:`~alta.callbacks.Callback`, so a user's own callback (a
logger, a rank-0 filter, a plot) sits beside them and sees the same events:

- :class:`MetricsWriter`: ``metrics.jsonl``, one JSON object per evaluation;
- :class:`Checkpointer`: ``checkpoint.pt`` after every epoch and every experience (a killed run
  resumes after its last finished epoch and ends as the uninterrupted run would);
- :class:`LogLines`: the log lines of ``alta run``;
- :class:`SummaryWriter`: ``summary.json`` (accuracy matrices, Avg, Last, forgetting, BWT, FWT);
- :class:`PlotWriter`: ``accuracy_matrix.png`` and ``accuracy_curve.png`` (matplotlib).

``config.yaml`` (the resolved configuration) is written when the run folder is claimed
(:func:`alta.rundir.claim_run_dir`).

Example:
    >>> from alta.experiment import RunConfig, run_experiment
    >>> config = RunConfig.from_dict({"data": {"dataset": "digits"}, "model": {"visual": "tiny-vit"},
    ...                               "train": {"epochs": 1}})  # doctest: +SKIP
    >>> summary = run_experiment(config, output_dir="runs/quick")  # doctest: +SKIP
    >>> summary["avg_accuracy"]["class_il"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

import torch
import yaml

from .backbones import BACKBONES, list_backbones, split_source
from .buffer import BufferConfig
from .cache import FeatureCache
from .callbacks import Callback, CallbackList, ProgressBar
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, restore_checkpoint, save_checkpoint
from .config import ConfigSection, build_from_dict, check_seed
from .data.stream import DataConfig
from .errors import ConfigError
from .evaluation import EvalConfig, EvaluationResult, evaluate
from .io import append_jsonl, write_json, write_text
from .learner import CrossModalLearner, LearnerConfig, ModelConfig
from .methods import DEFAULT_METHOD, METHODS
from .optim import OptimConfig
from .rundir import RunDir, claim_run_dir
from .schedule import BRANCHES
from .seeding import derive_seed
from .summary import SUMMARY_FORMAT, build_summary, format_table, random_backbone_note, save_plots
from .training import StreamResult, TrainConfig, run_stream

__all__ = ["RunConfig", "Experiment", "run_experiment", "run_group_experiment", "group_key", "plan_groups",
           "SHARED_KEYS", "MetricsWriter", "Checkpointer", "LogLines", "SummaryWriter",
           "PlotWriter", "StopAfter", "OPERATIONAL_KEYS", "config_differences", "default_output_dir", "resolve_device",
           "read_finished_summary", "flatten", "load_saved_config", "check_run_name", "safe_run_name"]

logger = logging.getLogger("alta.run")

# Keys that change how a run is executed but not what it computes: they may differ when a run
# is resumed and are left out of the configuration fingerprint stored in checkpoints.
OPERATIONAL_KEYS = ("name", "device", "data.root", "data.download", "data.num_workers", "model.download_root",
                    "model.download_weights")
MAX_NAME_LENGTH = 128
_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:[0-9]{1,5}")


def check_run_name(name: Any) -> None:
    """A run name becomes part of a folder name (``runs/<name>-<method>-<time>``): letters,
    digits, ``-``, ``_`` and ``.`` only, no ``..``, at most :data:`MAX_NAME_LENGTH` characters.

    Raises:
        ConfigError: any other name.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"config key 'name' must be a non-empty string, got {name!r}; e.g. --set name=my_run")
    if len(name) > MAX_NAME_LENGTH:
        why = f"it has {len(name)} characters"
    elif "/" in name or "\\" in name or ".." in name:
        why = "it holds a path separator or '..'"
    elif not _NAME_PATTERN.fullmatch(name):
        why = f"it holds {sorted(set(re.sub(r'[A-Za-z0-9._-]', '', name)))[0]!r}"
    else:
        return
    raise ConfigError(
        f"config key 'name' is {name!r} but {why}: a run name may only hold letters, digits, '-', '_' and '.' "
        f"(no '..', at most {MAX_NAME_LENGTH} characters) because it becomes part of the output folder "
        f"runs/<name>-<method>-<time>; e.g. --set name=my_run (--output-dir chooses the folder itself)"
    )


@dataclass(frozen=True)
class RunConfig(ConfigSection):
    """Everything a run needs: the resolved configuration saved as ``config.yaml``.

    Each section is the config of the object it builds, defined next to it.

    Attributes:
        name: Name of the configuration (used in the default output folder).
        seed: Run seed (adapter initialisation, shuffling, augmentation, buffer; 42).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        data: :class:`~alta.data.stream.DataConfig`.
        model: :class:`~alta.learner.ModelConfig` (backbone and learner).
        buffer: :class:`~alta.buffer.BufferConfig`.
        optim: :class:`~alta.optim.OptimConfig`.
        train: :class:`~alta.training.TrainConfig`.
        eval: :class:`~alta.evaluation.EvalConfig`.
    """

    _SECTION: ClassVar[str] = ""

    name: str = "run"
    seed: int = 42
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_run_name(self.name)
        check_seed(self.seed, "seed")
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(
                f"config key 'device' must be 'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' or 'cuda:N', "
                f"got {self.device!r}; alta runs on the CPU or on CUDA GPUs, e.g. --device cpu"
            )
        spec = METHODS.get(self.model.method)
        if self.train.schedule == "alternate" and spec.branches != frozenset(BRANCHES):
            only = ", ".join(sorted(spec.branches)) or "no"
            raise ConfigError(
                f"train.schedule 'alternate' needs a method that trains both the text and the image branch, but "
                f"{spec.name!r} trains only the {only} branch; use schedule 'crossed' or a method such as "
                f"{DEFAULT_METHOD!r}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RunConfig":
        """Build a config from nested mappings (parsed YAML); missing keys take their defaults.

        Raises:
            ConfigError: an unknown key (named, with the closest valid key and the valid keys of
                its section), a value of the wrong type, or an invalid value.
        """
        return build_from_dict(cls, data, "", cls)

    def to_yaml(self) -> str:
        """The resolved configuration as YAML (what ``config.yaml`` holds)."""
        header = "# Resolved configuration of an `alta run` (every defaulted value included).\n"
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def fingerprint(self) -> str:
        """SHA-256 of the values that determine the results (:data:`OPERATIONAL_KEYS` left out).

        Stored in checkpoints: a checkpoint is only resumed under a configuration with the same
        fingerprint.
        """
        values = flatten(self.to_dict())
        for key in OPERATIONAL_KEYS:
            values.pop(key, None)
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(a: RunConfig, b: RunConfig, *, operational: bool = False) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs: ``{key: (a value, b value)}``.

    Args:
        a: One config.
        b: The other.
        operational: Include the :data:`OPERATIONAL_KEYS` (left out by default: they do not
            change results).
    """
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return {k: (fa.get(k), fb.get(k)) for k in fa
            if fa.get(k) != fb.get(k) and (operational or k not in OPERATIONAL_KEYS)}


def default_output_dir(config: RunConfig, *, root: str | Path = "runs", unique: bool = True) -> Path:
    """``runs/<config>-<method>-<YYYYmmdd-HHMMSS>`` (with ``unique``, a suffix ``-2``, ``-3``, ...
    is added if it exists; ``alta run`` claims the name atomically instead, see
    :func:`~alta.rundir.claim_run_dir`)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config.name}-{config.model.method}-{stamp}"
    path, n = base, 2
    while unique and path.exists():
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


def _check_backbone_name(visual: str) -> None:
    """Refuse an unknown backbone before anything is loaded (with the closest name)."""
    if visual in BACKBONES or visual in list_backbones(pretrained=True) or Path(visual).expanduser().is_file():
        return
    if split_source(visual)[0] != "clip":  # open_clip: and hf: names are checked by their source when loaded
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


# --------------------------------------------------------------------------------------------
# The pieces of a run
# --------------------------------------------------------------------------------------------


class Experiment:
    """The objects of one run, built from a :class:`RunConfig` with alta's public pieces.

    Args:
        config: The resolved configuration.
        device: Where the learner, buffer and features live.
        shared: Another run's :class:`Experiment` whose backbone, stream, experiences and
            feature cache this one uses instead of building its own (a run group,
            :func:`run_group_experiment`; the configs must have one :func:`group_key`).

    Attributes:
        learner, buffer, schedule, optimizer, scheduler: The run's objects (``buffer`` is
            ``None`` without replay; ``schedule``, ``optimizer``, ``scheduler`` are ``None`` for a
            method that trains nothing, such as ``zeroshot``).
        stream, experiences: The stream and its (possibly subsampled) experiences.
        cache: The feature cache shared by training and evaluation.

    Raises:
        BackboneError: unknown backbone or weights unavailable offline.
        ConfigError, DataError: bad split or missing data.
    """

    def __init__(self, config: RunConfig, *, device: torch.device, shared: "Experiment | None" = None) -> None:
        self.config, self.device = config, device
        m = config.model
        if shared is not None:
            backbone = shared.learner.backbone
            self.backbone_description = shared.backbone_description
            self.stream, self.experiences = shared.stream, shared.experiences
        else:
            backbone = m.build_backbone(device=device)
            self.backbone_description = description = backbone.describe()
            logger.info("backbone %s: %s, %d px, D=%d, source %s", description["name"],
                        "pretrained" if backbone.pretrained else "RANDOM weights", backbone.input_resolution,
                        backbone.embed_dim, description["source"])
            if not backbone.pretrained:
                logger.warning("%s", random_backbone_note(description))
            self.stream, self.experiences = config.data.build(resolution=backbone.input_resolution)
            experiences = self.experiences
            logger.info("stream %s: %d experience(s) x %s classes, %d train / %d test images at %d px",
                        self.stream.name, len(experiences),
                        "/".join(str(c) for c in sorted(set(self.stream.classes_per_experience))),
                        sum(len(e.train) for e in experiences), sum(len(e.test) for e in experiences),
                        backbone.input_resolution)
        self.learner = learner = CrossModalLearner(backbone, class_names=self.stream.class_names, seed=config.seed,
                                                   **m.learner_options())
        spec = learner.method
        self.buffer = config.buffer.build(device=device, seed=derive_seed(config.seed, 1)) if spec.replay else None
        if config.buffer.enabled and not spec.replay:
            logger.info("method %s does not replay (as in the reference code): no buffer", spec.name)
        self.schedule = self.optimizer = self.scheduler = None
        if spec.branches:
            self.schedule = config.train.build_schedule()
            self.optimizer, self.scheduler = config.optim.build(learner, epochs=config.train.epochs)
        self.cache = shared.cache if shared is not None else FeatureCache()
        logger.info("method %s = %s, head %r, buffer %s, %d trainable parameters, seed %d, device %s", spec.name,
                    spec.formula, m.head, self.buffer_size or "off", learner.num_trainable_parameters(), config.seed,
                    device)

    @property
    def buffer_size(self) -> int:
        """Capacity of the buffer used (0: none)."""
        return self.buffer.capacity if self.buffer is not None else 0

    @property
    def trains(self) -> bool:
        """Whether the method trains anything (``zeroshot`` does not)."""
        return bool(self.learner.method.branches)

    def objects(self) -> dict[str, Any]:
        """The objects whose states a checkpoint holds (see :data:`alta.checkpoint.STATE_KEYS`)."""
        return {"learner": self.learner, "buffer": self.buffer, "schedule": self.schedule,
                "optimizer": self.optimizer, "scheduler": self.scheduler}

    def zeroshot_baseline(self, *, progress: bool = False) -> dict[str, list[float]]:
        """Zero-shot CLIP accuracy on every experience (the baseline of forward transfer)."""
        m = self.config.model
        learner = CrossModalLearner(self.learner.backbone, class_names=self.stream.class_names, method="zeroshot",
                                    head="all", template=m.template, truncate_text=m.truncate_text)
        zs = evaluate(learner, self.experiences, batch_size=self.config.eval.batch_size,
                      num_workers=self.config.data.num_workers, cache=self.cache, progress=progress)
        logger.info("zero-shot CLIP: class-IL %s, task-IL %s", " ".join(f"{v:.1f}" for v in zs.class_il),
                    " ".join(f"{v:.1f}" for v in zs.task_il))
        return {"class_il": list(zs.class_il), "task_il": list(zs.task_il)}

    def stream_info(self) -> dict[str, Any]:
        """What the summary says about the stream."""
        return {
            "dataset": self.stream.name,
            "num_experiences": len(self.experiences),
            "classes_per_experience": self.stream.classes_per_experience,
            "class_names": self.stream.class_names,
            "num_train": sum(len(e.train) for e in self.experiences),
            "num_test": sum(len(e.test) for e in self.experiences),
        }


# --------------------------------------------------------------------------------------------
# What a run writes: callbacks
# --------------------------------------------------------------------------------------------


class MetricsWriter(Callback):
    """``metrics.jsonl``: one JSON object per evaluation, appended atomically.

    At the start of a (resumed) run the file is rewritten with the evaluations of the
    checkpointed part, so a run killed after its last checkpoint leaves no stray records.

    Args:
        path: The file (``<output_dir>/metrics.jsonl``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_run_start(self, *, result: StreamResult, **_: Any) -> None:  # noqa: D102
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in result.evaluations))

    def on_evaluation(self, *, record: dict[str, Any]) -> None:  # noqa: D102
        append_jsonl(self.path, record)


class Checkpointer(Callback):
    """``checkpoint.pt`` after every epoch and every experience (see :mod:`alta.checkpoint`).

    Args:
        path: The checkpoint file.
        experiment: The run's objects (their states are saved).
        elapsed: Returns the wall time of the run so far, over all its sessions.
        zeroshot: The zero-shot baseline, saved with the checkpoint (``None``: not measured).
        every_epoch: Also checkpoint at epoch ends (a resumed run then loses at most one epoch).
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
        if self.every_epoch:
            self.save(result, next_experience=experience, next_epoch=epoch + 1)

    def on_experience_end(self, *, experience: int, result: StreamResult) -> None:  # noqa: D102
        self.save(result, next_experience=experience + 1)


class LogLines(Callback):
    """The log lines of ``alta run`` (logger ``alta.run``): every evaluation and every finished
    experience.

    Args:
        num_experiences: T.
        epochs: Epochs per experience (0 for a method that trains nothing).
        checkpoint: The checkpoint file named in the experience-end lines (``None``: none).
        elapsed: Returns the wall time of the run so far.
    """

    def __init__(self, *, num_experiences: int, epochs: int, checkpoint: Path | None = None, elapsed=None) -> None:
        self.num, self.epochs, self.checkpoint, self.elapsed = num_experiences, epochs, checkpoint, elapsed

    def on_evaluation(self, *, record: dict[str, Any]) -> None:  # noqa: D102
        accs = lambda values: " ".join(f"{v:.1f}" for v in values)  # noqa: E731
        loss = record.get("loss")
        logger.info(
            "experience %d/%d, epoch %d/%d: class-IL %.2f [%s], task-IL %.2f [%s]%s",
            record["experience"] + 1, self.num, record["epoch"], self.epochs, record["class_il_mean"],
            accs(record["class_il"]), record["task_il_mean"], accs(record["task_il"]),
            f", loss {loss:.4f}" if isinstance(loss, float) else "",
        )

    def on_experience_end(self, *, experience: int, result: StreamResult) -> None:  # noqa: D102
        where = f"; checkpoint {self.checkpoint}" if self.checkpoint is not None else ""
        took = f" ({self.elapsed():.0f} s)" if self.elapsed is not None else ""
        logger.info("experience %d/%d done%s%s", experience + 1, self.num, took, where)


class SummaryWriter(Callback):
    """``summary.json`` at the end of the run (:func:`alta.summary.build_summary`).

    Args:
        path: The file.
        experiment: The run's objects.
        elapsed: Returns the wall time of the run so far.
        zeroshot: The zero-shot baseline (``None``: not measured).
        extra: Entries added to the summary (a run group's ``group``), or ``None``.

    Attributes:
        summary: The summary written (``None`` before the run ends).
    """

    def __init__(self, path: str | Path, experiment: Experiment, *, elapsed, zeroshot=None,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.path, self.experiment, self.elapsed, self.zeroshot = Path(path), experiment, elapsed, zeroshot
        self.extra = dict(extra or {})
        self.summary: dict[str, Any] | None = None

    def on_run_end(self, *, result: StreamResult) -> None:  # noqa: D102
        e = self.experiment
        self.summary = build_summary(
            config=e.config, result=result, zeroshot=self.zeroshot, backbone=e.backbone_description,
            method=e.learner.method, stream_info=e.stream_info(),
            num_trainable_parameters=e.learner.num_trainable_parameters(), wall_time_s=self.elapsed(),
            device=e.device, output_dir=self.path.parent, buffer_size=e.buffer_size,
        )
        self.summary.update(self.extra)
        write_json(self.path, self.summary)


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
        written = save_plots(summary, self.output_dir)
        if written:
            logger.info("plots: %s", ", ".join(p.name for p in written))


class _StopRequested(Exception):
    """Raised by :class:`StopAfter` after a checkpoint to end a run early (resumable)."""


class StopAfter(Callback):
    """End a run after ``experiences`` experiences (checkpoint kept: continue with ``resume=True``).

    Put it after the :class:`Checkpointer`.

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

    def on_experience_end(self, *, experience: int, result: StreamResult) -> None:  # noqa: D102
        if self.experiences <= experience + 1 < self.num:
            raise _StopRequested(experience + 1)


def _run_without_training(experiment: Experiment, *, result: StreamResult, start_experience: int,
                          callbacks: CallbackList, progress: bool) -> StreamResult:
    """The loop of a method that trains nothing (``zeroshot``): every experience is evaluated."""
    learner, experiences = experiment.learner, experiment.experiences
    callbacks.on_run_start(num_experiences=len(experiences), start_experience=start_experience, start_epoch=0,
                           result=result)
    for t in range(start_experience, len(experiences)):
        learner.begin_experience(experiences[t])
        callbacks.on_experience_start(experience=t, start_epoch=0)
        learner.end_experience(experiences[t])
        full = evaluate(learner, experiences, batch_size=experiment.config.eval.batch_size,
                        num_workers=experiment.config.data.num_workers, cache=experiment.cache, progress=progress)
        result.class_il[t, :] = full.class_il
        result.task_il[t, :] = full.task_il
        result.history.append([])
        seen = EvaluationResult(full.experiences[: t + 1], full.class_il[: t + 1], full.task_il[: t + 1],
                                full.num_samples[: t + 1])
        record = {"experience": t, "epoch": 0, **seen.as_dict(), "loss": None}
        result.evaluations.append(record)
        callbacks.on_evaluation(record=record)
        callbacks.on_experience_end(experience=t, result=result)
    callbacks.on_run_end(result=result)
    return result


def read_finished_summary(output_dir: str | Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a finished run, checked; ``None`` when there is none.

    Raises:
        CheckpointError: a summary that is not valid JSON, not a complete summary of a run, or
            lacks results (the message says how to rebuild it).
    """
    from .errors import CheckpointError

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
    plots: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) one experiment and write its results.

    Args:
        config: The resolved configuration.
        output_dir: Results folder, or a :class:`~alta.rundir.RunDir` already claimed with
            :func:`~alta.rundir.claim_run_dir` (the caller releases it). A folder is claimed
            before anything is loaded: a new run refuses a folder that holds a run or that
            another process is using, and gives the folder back if it fails before its first
            result.
        resume: Continue the run in ``output_dir`` after its last finished epoch (its
            ``config.yaml`` must match ``config`` up to operational keys such as the device or
            the data root). Without a checkpoint the run starts from the first experience.
        callbacks: The user's :class:`~alta.callbacks.Callback` s; they receive every event of
            the run, after the run's own writers (metrics, checkpoint, logs).
        progress: Show tqdm progress bars (:class:`~alta.callbacks.ProgressBar` and evaluations).
        plots: Write the PNG plots (when matplotlib is installed).
        stop_after: End the run after this many experiences, checkpoint kept (continue later
            with ``resume=True``).

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
    user = CallbackList(callbacks)
    if stop_after is not None:
        StopAfter(stop_after, num_experiences=2**62)  # checked before anything is loaded
    _check_backbone_name(config.model.visual)
    device = resolve_device(config.device)
    claim = contextlib.nullcontext(claimed) if claimed is not None else claim_run_dir(output_dir, config, resume=resume)
    with claim as run_dir:
        return _run(config, run_dir, device=device, started=started, progress=progress, plots=plots,
                    stop_after=stop_after, user=user)


def _check_resumed_config(config: RunConfig, output_dir: Path) -> None:
    diff = config_differences(load_saved_config(output_dir / "config.yaml"), config)
    if diff:
        details = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in list(diff.items())[:6])
        raise ConfigError(f"cannot resume {output_dir} with a different configuration ({details}); resume it "
                          f"with its saved config.yaml, or start a new run in another output folder")


def _run(config: RunConfig, run_dir: RunDir, *, device: torch.device, started: float, progress: bool, plots: bool,
         stop_after: int | None, user: CallbackList) -> dict[str, Any]:
    """The body of :func:`run_experiment`, in a claimed folder."""
    output_dir = run_dir.path
    if run_dir.resume:
        _check_resumed_config(config, output_dir)
        summary = read_finished_summary(output_dir)
        if summary is not None:
            logger.info("the run in %s is already complete; nothing to resume", output_dir)
            return summary
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    experiment = Experiment(config, device=device)
    num = len(experiment.experiences)
    run_dir.mark_started()
    write_text(output_dir / "config.yaml", config.to_yaml())  # operational keys may change on resume

    start_experience, start_epoch, result, zeroshot, elapsed_before = 0, 0, StreamResult.empty(num), None, 0.0
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
    writers = [
        MetricsWriter(output_dir / "metrics.jsonl"),
        Checkpointer(checkpoint_path, experiment, elapsed=elapsed, zeroshot=zeroshot),
        LogLines(num_experiences=num, epochs=epochs, checkpoint=checkpoint_path, elapsed=elapsed),
        *([StopAfter(stop_after, num_experiences=num)] if stop_after is not None else []),
        SummaryWriter(output_dir / "summary.json", experiment, elapsed=elapsed, zeroshot=zeroshot),
        *([PlotWriter(output_dir)] if plots else []),
        *([ProgressBar()] if progress else []),
    ]
    callbacks = CallbackList([*writers, *user])
    try:
        if start_experience >= num:
            logger.info("every experience of %s is done: writing its summary", output_dir)
            callbacks.on_run_end(result=result)
        elif experiment.trains:
            t = config.train
            run_stream(
                experiment.learner, experiment.experiences, optimizer=experiment.optimizer,
                scheduler=experiment.scheduler, buffer=experiment.buffer, schedule=experiment.schedule,
                loop=t.loop(seed=config.seed, evaluation=config.eval, num_workers=config.data.num_workers),
                cache=experiment.cache, callbacks=callbacks, result=result, start_experience=start_experience,
                start_epoch=start_epoch,
            )
        else:
            _run_without_training(experiment, result=result, start_experience=start_experience, callbacks=callbacks,
                                  progress=progress)
    except _StopRequested as stop:
        done = int(stop.args[0])
        logger.info("stopped after %d of %d experiences as asked; continue with `alta run --resume %s`", done, num,
                    output_dir)
        return {"complete": False, "experiences_done": done, "num_experiences": num, "output_dir": str(output_dir)}
    return next(w.summary for w in writers if isinstance(w, SummaryWriter))


# --------------------------------------------------------------------------------------------
# Run groups: several runs in one pass over the frozen encoders
# --------------------------------------------------------------------------------------------

#: Config keys the members of a run group share (a trailing dot: the whole section): the stream,
#: the seed, the backbone (the ``model`` keys of :class:`~alta.learner.ModelConfig` that are not the
#: learner's, :class:`~alta.learner.LearnerConfig`), and the loop. Every other key (method, head,
#: alpha, beta, buffer, optimiser, schedule, ...) may differ between members.
SHARED_KEYS = ("seed", "device", "data.",
               *(f"model.{f.name}" for f in dataclasses.fields(ModelConfig)
                 if f.name not in {g.name for g in dataclasses.fields(LearnerConfig)}),
               "train.epochs", "train.batch_size", "train.train_cache", "eval.every", "eval.batch_size")


def group_key(config: RunConfig) -> str | None:
    """The key of the run group a run can join: runs with equal keys share the stream, the seed,
    the batch size, the epochs, the cache mode, the evaluation and the backbone
    (:data:`SHARED_KEYS`); ``None`` for a run that trains nothing (zero-shot CLIP)."""
    if not METHODS.get(config.model.method).branches:
        return None
    values = {k: v for k, v in flatten(config.to_dict()).items()
              if any(k == key or (key.endswith(".") and k.startswith(key)) for key in SHARED_KEYS)}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_groups(configs: Iterable[RunConfig], *, max_size: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` by run group (in order of first appearance), at most ``max_size``
    per group; a config without a :func:`group_key` is a group of its own.

    Raises:
        ConfigError: ``max_size`` not a positive integer.
    """
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
        raise ConfigError(f"max_size must be an integer >= 1 or None, got {max_size!r}")
    chunks: dict[Any, list[list[int]]] = {}
    order: list[list[int]] = []
    for i, config in enumerate(configs):
        key = group_key(config)
        own = chunks.setdefault(("alone", i) if key is None else key, [])
        if not own or (max_size is not None and len(own[-1]) >= max_size):
            own.append([])
            order.append(own[-1])
        own[-1].append(i)
    return order


def run_group_experiment(
    configs: Iterable[RunConfig],
    output_dirs: Iterable[str | Path],
    *,
    resume: bool | Iterable[bool] = False,
    progress: bool = False,
    plots: bool = True,
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) several runs of one group in one pass (:func:`alta.run_group`), each
    writing its own results folder as :func:`run_experiment` does, with the same numbers.

    The members share one backbone, one stream and one feature cache: one image-encoder forward
    per training step for all of them (mode ``none``) or one encoding of every cached image. Each
    keeps its learner, optimizer, scheduler, buffer and schedule, and writes ``config.yaml``,
    ``metrics.jsonl``, ``checkpoint.pt`` (every epoch and experience) and ``summary.json`` (which
    also says the group it ran in). Each member is resumable on its own (``alta run --resume``
    on its folder) or with the group: complete members are skipped, the others continue from their
    checkpoints, members at different points as separate groups.

    Args:
        configs: The members' resolved configurations, of one :func:`group_key`.
        output_dirs: One results folder per member.
        resume: Continue the members in their folders: one flag for all, or one per member.
        progress: Progress bars (for the first member).
        plots: Write each member's PNG plots (with matplotlib).
        stop_after: End the group after this many experiences, every member's checkpoint kept.

    Returns:
        The members' summaries, in order (``{"complete": False, ...}`` for a member stopped by
        ``stop_after``).

    Raises:
        ConfigError: no member, lengths that differ, configs of different groups or of a method
            that trains nothing, or what :func:`run_experiment` refuses (folders, configuration).
        DataError, BackboneError, CheckpointError: as :func:`run_experiment`.
    """
    started = time.perf_counter()
    configs, output_dirs = list(configs), [Path(p) for p in output_dirs]
    resumes = [bool(resume)] * len(configs) if isinstance(resume, bool) else [bool(r) for r in resume]
    if not configs or len(configs) != len(output_dirs) or len(resumes) != len(configs):
        raise ConfigError(f"run_group_experiment needs one output folder (and resume flag) per config, got "
                          f"{len(configs)} config(s), {len(output_dirs)} folder(s), {len(resumes)} flag(s)")
    keys = {group_key(c) for c in configs}
    if len(keys) != 1 or None in keys:
        raise ConfigError(
            f"these configs cannot run as one group: they must train something and agree on "
            f"{', '.join(SHARED_KEYS)} (a trailing dot: the whole section); plan groups with alta.experiment.plan_groups"
        )
    if stop_after is not None:
        StopAfter(stop_after, num_experiences=2**62)  # checked before anything is loaded
    _check_backbone_name(configs[0].model.visual)
    device = resolve_device(configs[0].device)
    with contextlib.ExitStack() as stack:
        run_dirs = [stack.enter_context(claim_run_dir(path, config, resume=again))
                    for config, path, again in zip(configs, output_dirs, resumes)]
        summaries: list[dict[str, Any] | None] = [None] * len(configs)
        for i, (config, run_dir) in enumerate(zip(configs, run_dirs)):
            if run_dir.resume:
                _check_resumed_config(config, run_dir.path)
                summaries[i] = read_finished_summary(run_dir.path)
        todo = [i for i, summary in enumerate(summaries) if summary is None]
        if todo:
            ran = _run_group([configs[i] for i in todo], [run_dirs[i] for i in todo], device=device, started=started,
                             progress=progress, plots=plots, stop_after=stop_after,
                             everyone=[str(d.path) for d in run_dirs])
            for i, summary in zip(todo, ran):
                summaries[i] = summary
    return summaries


class _GroupMemberRun:
    """One member of :func:`run_group_experiment`: its :class:`Experiment`, folder and position."""

    def __init__(self, config: RunConfig, run_dir: RunDir, *, device: torch.device, shared: Experiment | None,
                 started: float) -> None:
        self.config, self.run_dir, self.started = config, run_dir, started
        self.experiment = Experiment(config, device=device, shared=shared)
        self.num = len(self.experiment.experiences)
        run_dir.mark_started()
        write_text(run_dir.path / "config.yaml", config.to_yaml())
        self.checkpoint = run_dir.path / CHECKPOINT_NAME
        self.start_experience, self.start_epoch, self.zeroshot, self.elapsed_before = 0, 0, None, 0.0
        self.result = StreamResult.empty(self.num)
        if run_dir.resume and self.checkpoint.is_file():
            state = read_checkpoint(self.checkpoint, config_hash=config.fingerprint(), num_experiences=self.num)
            self.result = restore_checkpoint(state, objects=self.experiment.objects())
            self.start_experience, self.start_epoch = state["next_experience"], state["next_epoch"]
            self.zeroshot, self.elapsed_before = state["zeroshot"], state["elapsed_s"]
            logger.info("resuming %s at experience %d of %d, epoch %d", run_dir.path, self.start_experience + 1,
                        self.num, self.start_epoch + 1)
        if self.zeroshot is None and config.eval.zeroshot_baseline:
            self.zeroshot = self.experiment.zeroshot_baseline()  # shares the cached test features

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.started)

    def writers(self, *, group: dict[str, Any], plots: bool) -> list[Callback]:
        path = self.run_dir.path
        return [
            MetricsWriter(path / "metrics.jsonl"),
            Checkpointer(self.checkpoint, self.experiment, elapsed=self.elapsed, zeroshot=self.zeroshot),
            SummaryWriter(path / "summary.json", self.experiment, elapsed=self.elapsed, zeroshot=self.zeroshot,
                          extra={"group": group}),
            *([PlotWriter(path)] if plots else []),
        ]


def _run_group(configs: list[RunConfig], run_dirs: list[RunDir], *, device: torch.device, started: float,
               progress: bool, plots: bool, stop_after: int | None, everyone: list[str]) -> list[dict[str, Any]]:
    """The body of :func:`run_group_experiment` for the members not complete yet."""
    from .group import GroupMember, run_group

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    members: list[_GroupMemberRun] = []
    for config, run_dir in zip(configs, run_dirs):
        members.append(_GroupMemberRun(config, run_dir, device=device, started=started,
                                       shared=members[0].experiment if members else None))
    group = {"size": len(everyone), "key": group_key(configs[0]), "output_dirs": everyone,
             "methods": [c.model.method for c in configs]}
    logger.info("run group of %d: %s", len(members), ", ".join(
        f"{c.model.method} (buffer {c.buffer.size if c.buffer.enabled else 'off'})" for c in configs))
    callbacks = {id(m): CallbackList(m.writers(group=group, plots=plots)) for m in members}
    first = configs[0]
    loop = first.train.loop(seed=first.seed, evaluation=first.eval, num_workers=first.data.num_workers)
    stopped = False
    for start in sorted({(m.start_experience, m.start_epoch) for m in members}):  # one group per resume point
        part = [m for m in members if (m.start_experience, m.start_epoch) == start]
        if start[0] >= part[0].num:
            for m in part:  # trained to the end, summary not written yet
                callbacks[id(m)].on_run_end(result=m.result)
            continue
        if stop_after is not None and start[0] >= stop_after:
            continue
        extra = {id(part[-1]): [StopAfter(stop_after, num_experiences=part[-1].num)]} if stop_after else {}
        bars = [ProgressBar()] if progress else []
        try:
            run_group([GroupMember(m.experiment.learner, optimizer=m.experiment.optimizer,
                                   scheduler=m.experiment.scheduler, buffer=m.experiment.buffer,
                                   schedule=m.experiment.schedule, result=m.result, name=m.config.model.method,
                                   callbacks=[*callbacks[id(m)], *extra.get(id(m), []), *(bars if i == 0 else [])])
                       for i, m in enumerate(part)],
                      members[0].experiment.experiences, loop=loop, cache=members[0].experiment.cache,
                      start_experience=start[0], start_epoch=start[1])
        except _StopRequested:  # raised after the last member's checkpoint: every member has its own
            stopped = True
    if stopped:
        logger.info("stopped after %d experience(s) as asked; continue with resume", stop_after)
    out = []
    for m in members:
        writer = next(w for w in callbacks[id(m)] if isinstance(w, SummaryWriter))
        if writer.summary is not None:
            out.append(writer.summary)
        else:
            done = int(sum(1 for row in m.result.class_il if all(v == v for v in row)))  # rows filled (no NaN)
            out.append({"complete": False, "experiences_done": done, "num_experiences": m.num,
                        "output_dir": str(m.run_dir.path)})
    return out


def safe_run_name(stem: str) -> str:
    """A valid run name made from any text (other characters become ``_``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
    name = re.sub(r"\.{2,}", ".", name)[:MAX_NAME_LENGTH]
    return name or "run"


def load_saved_config(path: str | Path) -> RunConfig:
    """The :class:`RunConfig` of a run folder's ``config.yaml`` (as :meth:`RunConfig.to_yaml`
    wrote it). A run name an older alta accepted (with spaces, say) is made valid: the name does
    not change results and the run stays resumable.

    Raises:
        ConfigError: a missing, unreadable or invalid file.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the run configuration {path}: {exc}") from None
    if isinstance(data, Mapping) and isinstance(data.get("name"), str) and data["name"]:
        data = {**data, "name": safe_run_name(data["name"])}
    try:
        return RunConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
