"""The run of an experiment: from a resolved :class:`RunConfig` to results on disk.

One continual-learning run of ALTA (Li et al., "Cross-Modal Alternating Learning with Task-Aware
Representations for Continual Learning", IEEE TMM 2023; reference code github.com/vijaylee/ALTA),
built from alta's public pieces only::

    RunConfig ──> Experiment: backbone, stream, learner, buffer, schedule, optimizer
              ──> zero-shot baseline ──> run_stream(..., callbacks=[...]) ──> summary

Everything a run writes is a :class:`~alta.loop.callbacks.Callback`, so a user's own callback (a
logger, a rank-0 filter, a plot) sits beside them and sees the same events:

- :class:`MetricsWriter`: ``metrics.jsonl``, one JSON object per evaluation;
- :class:`Checkpointer`: ``checkpoint.pt`` after every epoch and every experience (a killed run
  resumes after its last finished epoch and ends as the uninterrupted run would);
- :class:`LogLines`: the log lines of ``alta run``;
- :class:`SummaryWriter`: ``summary.json`` (accuracy matrices, Avg, Last, forgetting, BWT, FWT);
- :class:`PlotWriter`: ``accuracy_matrix.png`` and ``accuracy_curve.png`` (matplotlib);
- :class:`FolderGuard` (first of them): stops the run if its folder is deleted or renamed.

Finishing is idempotent: resuming a complete run writes whatever artefact it lacks (the plots,
``metrics.jsonl``) and temporary files left by a killed write are removed when a run resumes.

``config.yaml`` (the resolved configuration) is written when the run folder is claimed
(:func:`alta.run.rundir.claim_run_dir`).

Examples:
    >>> from alta.run.experiment import RunConfig, run_experiment
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
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import torch
import yaml

from ..backbones import BACKBONES, list_backbones, split_source
from ..buffer import BufferConfig
from ..loop.cache import FeatureCache
from .. import distributed as dist
from ..loop.callbacks import Callback, CallbackList, MainProcessOnly, ProgressBar
from .checkpoint import CHECKPOINT_NAME, read_checkpoint, restore_checkpoint, save_checkpoint
from ..config import ConfigSection, build_from_dict, check_seed
from ..data.stream import DataConfig
from ..errors import ConfigError
from ..loop.evaluation import EvalConfig, EvaluationResult, evaluate, parameter_counts
from ..io import append_jsonl, clean_temp_files, json_line, write_json, write_text
from ..resources import translate_allocation_errors
from ..learner import CrossModalLearner, LearnerConfig, ModelConfig
from ..methods import DEFAULT_METHOD, METHODS
from ..optim import OptimConfig
from .protocols import DEFAULT_PROTOCOL, list_protocols, protocol_class_names
from .rundir import RUN_FILES, RunDir, claim_run_dir, claim_run_dir_on_main
from ..schedule import BRANCHES
from ..seeding import derive_seed, determinism_state, set_deterministic
from .summary import (CONFUSION_NAME, CONFUSION_PLOT, PLOT_FILES, SUMMARY_FORMAT, build_summary, format_table, random_backbone_note,
                      load_last_confusion, save_confusion, save_plots)
from ..loop.training import StreamResult, TrainConfig, run_stream

__all__ = ["RunConfig", "Experiment", "run_experiment", "run_group_experiment", "group_key", "plan_groups",
           "SHARED_KEYS", "MetricsWriter", "Checkpointer", "LogLines", "SummaryWriter",
           "PlotWriter", "StopAfter", "FolderGuard", "OPERATIONAL_KEYS", "config_differences", "default_output_dir",
           "resolve_device", "read_finished_summary", "flatten", "load_saved_config", "check_run_name", "safe_run_name",
           "run_seeds", "seed_run_dir", "AGGREGATE_NAME"]

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
        deterministic: Require deterministic kernels (:func:`alta.seeding.set_deterministic`:
            the reference's cuDNN flags plus ``torch.use_deterministic_algorithms``); what was
            in force is recorded in the summary either way.
        data: :class:`~alta.data.stream.DataConfig`.
        model: :class:`~alta.learner.ModelConfig` (backbone and learner).
        buffer: :class:`~alta.buffer.BufferConfig`.
        optim: :class:`~alta.optim.OptimConfig`.
        train: :class:`~alta.loop.training.TrainConfig`.
        eval: :class:`~alta.loop.evaluation.EvalConfig`.
        protocol: The protocol the run follows (:mod:`alta.run.protocols`): ``paper`` (the method as
            described, the default) or ``reference`` (the authors' released loop). Chosen with
            ``--protocol`` or :func:`apply_protocol`, which set its knobs; recorded in every
            run's config and summary, and a resumed run refuses a different one.
    """

    _SECTION: ClassVar[str] = ""

    name: str = "run"
    seed: int = 42
    device: str = "auto"
    protocol: str = DEFAULT_PROTOCOL
    deterministic: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_run_name(self.name)
        check_seed(self.seed, "seed")
        if not isinstance(self.protocol, str) or self.protocol not in list_protocols():
            raise ConfigError(f"config key 'protocol' must be one of {list_protocols()}, got {self.protocol!r}: "
                              f"'paper' is the method as described, 'reference' the authors' released loop")
        if not isinstance(self.deterministic, bool):
            raise ConfigError(f"config key 'deterministic' must be true or false, got {self.deterministic!r}")
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
    :func:`~alta.run.rundir.claim_run_dir`)."""
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
    path = Path(visual).expanduser()
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or visual.startswith(("/", "./", "../", "~")) or (
            path.is_dir()):  # meant as a file (CLIP names hold a slash too: ViT-B/16)
        problem = ("is a folder, not a checkpoint file" if path.is_dir() else "not found: no such file"
                   + (f" (nor its folder {path.parent})" if not path.parent.is_dir() else ""))
        raise ConfigError(f"backbone checkpoint {visual!r} {problem}; give the path of a local CLIP checkpoint "
                          f"file, or a backbone name (`alta list backbones`)")
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
        stream, experiences: The stream and its (possibly subsampled) training experiences.
        eval_experiences: The experiences evaluated: ``experiences``, or for a joint stream
            (``data.joint``) those of the sequential split (the accuracy matrices are (1, K)).
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
            self.eval_experiences = shared.eval_experiences
        else:
            sources = config.data.load_sources()  # missing data is reported before weights are loaded
            backbone = m.build_backbone(device=device)
            self.backbone_description = description = backbone.describe()
            logger.info("backbone %s: %s, %d px, D=%d, source %s", description["name"],
                        "pretrained" if backbone.pretrained else "RANDOM weights", backbone.input_resolution,
                        backbone.embed_dim, description["source"])
            if not backbone.pretrained:
                logger.warning("%s", random_backbone_note(description))
            self.stream, self.experiences = config.data.build(resolution=backbone.input_resolution,
                                                              class_names=protocol_class_names(config), sources=sources)
            experiences = self.experiences
            # a joint stream trains on one experience and is evaluated on those of the sequential split
            self.eval_experiences = config.data.subsample(self.stream.eval_experiences) if config.data.joint else experiences
            logger.info("stream %s: %s, %d train / %d test images at %d px", self.stream.name,
                        _split_text([len(e.classes) for e in experiences]), sum(len(e.train) for e in experiences),
                        sum(len(e.test) for e in experiences), backbone.input_resolution)
            if config.data.joint:
                logger.info("joint training, evaluated per experience of the sequential split: %s",
                            _split_text([len(e.classes) for e in self.eval_experiences]))
            logger.info("class order %s (%s); class names from %s: %s", self.stream.class_order_source,
                        _short(self.stream.class_order), self.stream.class_names_source, _short(self.stream.class_names))
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
        # one cache for a run group; sharded encoding under torchrun
        self.cache = shared.cache if shared is not None else FeatureCache(distributed=dist.is_distributed())
        logger.info("method %s = %s, head %r, buffer %s, %d trainable parameters, seed %d, device %s, protocol %s",
                    spec.name, spec.formula, m.head, self.buffer_size or "off", learner.num_trainable_parameters(),
                    config.seed, device, config.protocol)

    @property
    def buffer_size(self) -> int:
        """Capacity of the buffer used (0: none)."""
        return self.buffer.capacity if self.buffer is not None else 0

    @property
    def trains(self) -> bool:
        """Whether the method trains anything (``zeroshot`` does not)."""
        return bool(self.learner.method.branches)

    def objects(self) -> dict[str, Any]:
        """The objects whose states a checkpoint holds (see :data:`alta.run.checkpoint.STATE_KEYS`)."""
        return {"learner": self.learner, "buffer": self.buffer, "schedule": self.schedule,
                "optimizer": self.optimizer, "scheduler": self.scheduler}

    def zeroshot_baseline(self, *, progress: bool = False) -> dict[str, list[float]]:
        """Zero-shot CLIP accuracy on every experience (the baseline of forward transfer)."""
        m = self.config.model
        learner = CrossModalLearner(self.learner.backbone, class_names=self.stream.class_names, method="zeroshot",
                                    head="all", template=m.template, truncate_text=m.truncate_text)
        zs = evaluate(learner, self.eval_experiences, batch_size=self.config.eval.batch_size,
                      num_workers=self.config.data.num_workers, cache=self.cache, progress=progress,
                      distributed=dist.is_distributed())
        logger.info("zero-shot CLIP: class-IL %s, task-IL %s", " ".join(f"{v:.1f}" for v in zs.class_il),
                    " ".join(f"{v:.1f}" for v in zs.task_il))
        return {"class_il": list(zs.class_il), "task_il": list(zs.task_il)}

    def stream_info(self) -> dict[str, Any]:
        """What the summary says about the stream."""
        stream, data = self.stream, self.config.data
        return {
            "dataset": stream.name,
            "num_experiences": len(self.experiences),
            "classes_per_experience": stream.classes_per_experience,
            "split": data.split,
            "joint": data.joint,
            "eval_classes_per_experience": [len(e.classes) for e in self.eval_experiences],
            "class_order": stream.class_order,
            "class_order_source": stream.class_order_source,
            "class_names": stream.class_names,
            "class_names_source": stream.class_names_source,
            "names_look_like_identifiers": stream.names_look_like_identifiers,
            "num_train": sum(len(e.train) for e in self.experiences),
            "num_test": sum(len(e.test) for e in self.eval_experiences),
        }


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
        took = f" (run time so far {self.elapsed():.0f} s)" if self.elapsed is not None else ""
        logger.info("experience %d/%d done%s%s", experience + 1, self.num, took, where)


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
            method=e.learner.method, stream_info=e.stream_info(),
            num_trainable_parameters=e.learner.num_trainable_parameters(), wall_time_s=self.elapsed(),
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
    expected = (*PLOT_FILES, *([CONFUSION_PLOT] if confusion is not None else []))
    if plots and not all((output_dir / name).is_file() for name in expected):
        written += save_plots(summary, output_dir, parents=False, confusion=confusion)
    if written:
        logger.info("the run in %s was complete but lacked %s: written now", output_dir,
                    ", ".join(p.name for p in written))
    return written


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

    def on_run_start(self, *, num_experiences: int, **_: Any) -> None:  # noqa: D102
        if self.experiences > num_experiences:
            logger.warning("stop after %d experience(s) asked, but the stream has %d: the run goes to its end",
                           self.experiences, num_experiences)

    def on_experience_end(self, *, experience: int, result: StreamResult) -> None:  # noqa: D102
        if self.experiences <= experience + 1 < self.num:
            raise _StopRequested(experience + 1)


def _run_without_training(experiment: Experiment, *, result: StreamResult, start_experience: int,
                          callbacks: CallbackList, progress: bool) -> StreamResult:
    """The loop of a method that trains nothing (``zeroshot``): every experience is evaluated."""
    learner, experiences, evals = experiment.learner, experiment.experiences, experiment.eval_experiences
    callbacks.on_run_start(num_experiences=len(experiences), start_experience=start_experience, start_epoch=0,
                           result=result)
    for t in range(start_experience, len(experiences)):
        learner.begin_experience(experiences[t])
        callbacks.on_experience_start(experience=t, start_epoch=0)
        learner.end_experience(experiences[t])
        full = evaluate(learner, evals, batch_size=experiment.config.eval.batch_size,
                        num_workers=experiment.config.data.num_workers, cache=experiment.cache, progress=progress,
                        distributed=dist.is_distributed())
        result.class_il[t, :] = full.class_il
        result.task_il[t, :] = full.task_il
        result.history.append([])
        result.confusion[t] = full.confusion
        k = len(evals) if len(evals) != len(experiences) else t + 1  # a joint stream has seen every class
        seen = full.first(k)
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
    from ..errors import CheckpointError

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
    plots: bool = True,
    stop_after: int | None = None,
    loggers: Iterable[str] = (),
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
        plots: Write the PNG plots (when matplotlib is installed).
        stop_after: End the run after this many experiences, checkpoint kept (continue later
            with ``resume=True``).
        loggers: Names of :data:`alta.run.loggers.LOGGERS` to write into the run folder as well:
            ``csv`` (``evaluations.csv``), ``tensorboard`` (``tensorboard/``), ``wandb`` (a W&B
            run under ``wandb/``, named after the folder; offline with ``WANDB_MODE=offline``).

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
    loggers = _check_loggers(loggers)
    if stop_after is not None:
        StopAfter(stop_after, num_experiences=2**62)  # checked before anything is loaded
    _check_backbone_name(config.model.visual)
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
    removed = clean_temp_files(output_dir, (*RUN_FILES, *PLOT_FILES, CONFUSION_NAME, CONFUSION_PLOT))
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted write: %s", len(removed),
                    ", ".join(p.name for p in removed[:5]))
    diff = config_differences(load_saved_config(output_dir / "config.yaml"), config)
    if diff:
        details = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in list(diff.items())[:6])
        raise ConfigError(f"cannot resume {output_dir} with a different configuration ({details}); resume it "
                          f"with its saved config.yaml, or start a new run in another output folder")


def _run(config: RunConfig, run_dir: RunDir, *, device: torch.device, started: float, progress: bool, plots: bool,
         stop_after: int | None, user: CallbackList, loggers: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body of :func:`run_experiment`, in a claimed folder."""
    output_dir = run_dir.path
    if run_dir.resume:
        _check_resumed_config(config, output_dir)
        summary = read_finished_summary(output_dir)
        if summary is not None:
            if not finish_complete_run(output_dir, summary, config=config, plots=plots):
                logger.info("the run in %s is already complete; nothing to resume", output_dir)
            return summary
    if config.deterministic:  # before the first CUDA kernel: cuBLAS reads its setting when it starts
        logger.info("deterministic kernels: %s", set_deterministic())
    main = dist.is_main_process()  # under torchrun every rank runs, rank 0 alone writes
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    experiment = Experiment(config, device=device)
    num = len(experiment.experiences)
    run_dir.mark_started()
    if main:
        write_text(output_dir / "config.yaml", config.to_yaml(), parents=False)  # operational keys may change on resume

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
    summary_writer = SummaryWriter(output_dir / "summary.json", experiment, elapsed=elapsed, zeroshot=zeroshot,
                                   write=main)
    writers = [  # what writes runs on rank 0 only; the stop and the summary (returned) on every rank
        MainProcessOnly([FolderGuard(run_dir),
                         MetricsWriter(output_dir / "metrics.jsonl"),
                         Checkpointer(checkpoint_path, experiment, elapsed=elapsed, zeroshot=zeroshot),
                         LogLines(num_experiences=num, epochs=epochs, checkpoint=checkpoint_path, elapsed=elapsed)]),
        *([StopAfter(stop_after, num_experiences=num)] if stop_after is not None else []),
        summary_writer,
        MainProcessOnly([*([PlotWriter(output_dir)] if plots else []), *([ProgressBar()] if progress else []),
                         *_build_loggers(loggers, output_dir, config)]),
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
                loop=dataclasses.replace(t.loop(seed=config.seed, evaluation=config.eval,
                                                 num_workers=config.data.num_workers),
                                         distributed=dist.is_distributed()),
                cache=experiment.cache, callbacks=callbacks, result=result, start_experience=start_experience,
                start_epoch=start_epoch, eval_experiences=experiment.eval_experiences,
            )
        else:
            _run_without_training(experiment, result=result, start_experience=start_experience, callbacks=callbacks,
                                  progress=progress)
    except _StopRequested as stop:
        done = int(stop.args[0])
        logger.info("stopped after %d of %d experiences as asked; continue with `alta run --resume %s`", done, num,
                    output_dir)
        return {"complete": False, "experiences_done": done, "num_experiences": num, "output_dir": str(output_dir)}
    return summary_writer.summary


def _split_text(sizes: Sequence[int]) -> str:
    """The classes per experience, in order, for log lines: ``5 experiences x 2 classes``, or
    ``4 experiences: 4 + 3 x 2 classes`` (a base experience), else every size
    (``3 experiences: 4, 1, 5 classes``)."""
    sizes = list(sizes)
    count = f"{len(sizes)} experience{'s' if len(sizes) != 1 else ''}"
    if len(set(sizes)) == 1:
        return f"{count} x {sizes[0]} class{'es' if sizes[0] != 1 else ''}"
    if len(set(sizes[1:])) == 1:
        return f"{count}: {sizes[0]} + {len(sizes) - 1} x {sizes[1]} classes"
    return f"{count}: {', '.join(map(str, sizes))} classes"


def _short(values: list, limit: int = 10) -> str:
    """The first ``limit`` values of a list, for log lines."""
    text = ", ".join(map(str, values[:limit]))
    return f"[{text}{', ...' if len(values) > limit else ''}] ({len(values)})"


AGGREGATE_NAME = "aggregate.json"


def seed_run_dir(output_dir: str | Path, seed: int) -> Path:
    """The folder of one seed's run inside a seed group's folder."""
    return Path(output_dir) / f"seed-{seed}"


def run_seeds(config: RunConfig, seeds: Iterable[int], *, output_dir: str | Path, plots: bool = True,
              **kwargs: Any) -> dict[str, Any]:
    """Run one experiment once per seed, each in its own resumable folder, then aggregate them.

    ``output_dir/seed-<s>/`` holds the run of seed ``s`` (the configuration with ``seed = s``); a
    folder that already holds that run is resumed (a finished one is only read), so the same
    call continues an interrupted group. ``output_dir/aggregate.json`` then holds the mean ±
    sample standard deviation of Avg, Last, forgetting, BWT, FWT and the per-experience
    accuracies (:func:`alta.run.summary.aggregate_summaries`), and ``aggregate_accuracy_curve.png``
    the accuracy after each experience with its spread.

    Args:
        config: The resolved configuration (its ``seed`` is replaced by each of ``seeds``).
        seeds: Distinct seeds, at least one.
        output_dir: The group's folder.
        plots: Write the plots (per run and the aggregate).
        **kwargs: Passed on to :func:`run_experiment` (``callbacks``, ``progress``, ``loggers``).

    Returns:
        The aggregate (``aggregate.json``); with ``stop_after`` given, the runs stop early and
        the group returns ``{"complete": False, ...}`` without aggregating.

    Raises:
        ConfigError: no seed, a repeated seed, or an invalid seed (as for ``RunConfig.seed``).
    """
    from .summary import aggregate_summaries, save_aggregate_plot

    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {seeds}")
    configs = [dataclasses.replace(config, seed=seed) for seed in seeds]  # each seed checked here
    output_dir = Path(output_dir)
    summaries, folders = [], []
    for seed_config in configs:
        folder = seed_run_dir(output_dir, seed_config.seed)
        resume = (folder / "config.yaml").is_file()
        logger.info("seed %d: %s %s", seed_config.seed, "resuming" if resume else "running", folder)
        summary = run_experiment(seed_config, output_dir=folder, resume=resume, plots=plots, **kwargs)
        if not summary.get("complete"):
            return {"complete": False, "output_dir": str(output_dir), "stopped_in": str(folder)}
        summaries.append(summary)
        folders.append(str(folder))
    aggregate = aggregate_summaries(summaries, run_dirs=folders)
    write_json(output_dir / AGGREGATE_NAME, aggregate)
    if plots:
        save_aggregate_plot(aggregate, output_dir / "aggregate_accuracy_curve.png")
    return aggregate


def _check_loggers(names: Iterable[str]) -> tuple[str, ...]:
    """The logger names, checked (an unknown one is refused with the valid ones)."""
    from .loggers import LOGGERS

    names = tuple(names)
    for name in names:
        if name not in LOGGERS:
            close = difflib.get_close_matches(str(name), list(LOGGERS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown logger {name!r}{hint} Valid: {', '.join(LOGGERS)} (e.g. --logger csv,tensorboard)")
    return names


def _build_loggers(names: tuple[str, ...], output_dir: Path, config: RunConfig) -> list[Callback]:
    """The loggers asked for, writing into the run folder."""
    from .loggers import CSVLogger, TensorBoardLogger, WandbLogger

    out: list[Callback] = []
    for name in names:
        if name == "csv":
            out.append(CSVLogger(output_dir / "evaluations.csv"))
        elif name == "tensorboard":
            out.append(TensorBoardLogger(output_dir / "tensorboard"))
        else:  # one W&B run per run folder: a resumed alta run continues it
            run_id = hashlib.sha256(str(output_dir.resolve()).encode()).hexdigest()[:16]
            out.append(WandbLogger(name=output_dir.name, run_id=run_id, dir=output_dir, config=config.to_dict()))
    return out


# --------------------------------------------------------------------------------------------
# Run groups: several runs in one pass over the frozen encoders
# --------------------------------------------------------------------------------------------

#: Config keys the members of a run group share (a trailing dot: the whole section): the stream,
#: the seed, the protocol (its class names build the shared stream), the kernels' determinism
#: (a setting of the process), the backbone (the ``model`` keys of :class:`~alta.learner.ModelConfig` that are not the
#: learner's, :class:`~alta.learner.LearnerConfig`), and the loop. Every other key (method, head,
#: alpha, beta, buffer, optimiser, schedule, ...) may differ between members.
SHARED_KEYS = ("seed", "device", "protocol", "deterministic", "data.",
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
            f"{', '.join(SHARED_KEYS)} (a trailing dot: the whole section); plan groups with alta.run.experiment.plan_groups"
        )
    if dist.is_distributed():
        raise ConfigError("run groups do not support data-parallel training (torchrun): run the group in one "
                          "process (without torchrun), or each configuration on its own with `torchrun ... alta run`")
    if stop_after is not None:
        StopAfter(stop_after, num_experiences=2**62)  # checked before anything is loaded
    _check_backbone_name(configs[0].model.visual)
    device = resolve_device(configs[0].device)
    with contextlib.ExitStack() as stack:
        run_dirs = [stack.enter_context(claim_run_dir(path, config, resume=again))
                    for config, path, again in zip(configs, output_dirs, resumes)]
        stack.enter_context(translate_allocation_errors(f"the run group in {', '.join(map(str, output_dirs))}"))
        summaries: list[dict[str, Any] | None] = [None] * len(configs)
        for i, (config, run_dir) in enumerate(zip(configs, run_dirs)):
            if run_dir.resume:
                _check_resumed_config(config, run_dir.path)
                summaries[i] = summary = read_finished_summary(run_dir.path)
                if summary is not None and not finish_complete_run(run_dir.path, summary, config=config, plots=plots):
                    logger.info("the run in %s is already complete; nothing to resume", run_dir.path)
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
        write_text(run_dir.path / "config.yaml", config.to_yaml(), parents=False)
        self.checkpoint = run_dir.path / CHECKPOINT_NAME
        self.start_experience, self.start_epoch, self.zeroshot, self.elapsed_before = 0, 0, None, 0.0
        self.result = StreamResult.empty(self.num, len(self.experiment.eval_experiences))
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
        """The member's writers, as :func:`_run` builds them (the folder guard first, what writes on
        the main process only); no loggers (``--logger``) in a group."""
        path = self.run_dir.path
        main = dist.is_main_process()
        return [
            MainProcessOnly([FolderGuard(self.run_dir),
                             MetricsWriter(path / "metrics.jsonl"),
                             Checkpointer(self.checkpoint, self.experiment, elapsed=self.elapsed,
                                          zeroshot=self.zeroshot)]),
            SummaryWriter(path / "summary.json", self.experiment, elapsed=self.elapsed, zeroshot=self.zeroshot,
                          write=main, extra={"group": group}),
            MainProcessOnly([PlotWriter(path)] if plots else []),
        ]


def _run_group(configs: list[RunConfig], run_dirs: list[RunDir], *, device: torch.device, started: float,
               progress: bool, plots: bool, stop_after: int | None, everyone: list[str]) -> list[dict[str, Any]]:
    """The body of :func:`run_group_experiment` for the members not complete yet."""
    from ..loop.group import GroupMember, run_group

    if configs[0].deterministic:  # before the first CUDA kernel (a shared key: every member agrees)
        logger.info("deterministic kernels: %s", set_deterministic())
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
                      start_experience=start[0], start_epoch=start[1],
                      eval_experiences=members[0].experiment.eval_experiences)
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
