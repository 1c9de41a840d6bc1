"""The configuration of a run: :class:`RunConfig`, its fingerprint, differences and files.

One continual-learning run of ALTA (Li et al., "Cross-Modal Alternating Learning with
Task-Aware Representations for Continual Learning", IEEE TMM 2023) is described by one resolved
:class:`RunConfig`, saved as ``config.yaml`` beside its results. Its sections are the configs of
what they build: :class:`~alta.run.sections.DataConfig`, :class:`~alta.run.sections.ModelConfig`
(the backbone and the learner's :class:`~alta.learner_config.LearnerConfig`),
:class:`~alta.buffer.BufferConfig`, :class:`~alta.optim.OptimConfig`,
:class:`~alta.run.sections.TrainConfig` and :class:`~alta.run.sections.EvalConfig`; the loop's
settings are one :class:`~alta.loop.LoopConfig`, built once from them (:attr:`RunConfig.loop`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
import yaml

from ..backbones import SOURCES, split_source
from ..buffer import BUFFER_POLICIES, BufferConfig
from ..config import ConfigSection, build_from_dict, check_seed, set_canonical
from ..data import DATASETS, SEQUENCES
from ..errors import ConfigError, PluginError
from ..loop.config import LoopConfig
from ..loop.loggers import LOGGERS
from ..losses import LOSS_TERMS
from ..methods import DEFAULT_METHOD, METHODS
from ..optim import OptimConfig
from ..plugins import PluginOrigin
from ..schedule import BRANCHES
from .presets import parse_preset
from .protocols import DEFAULT_PROTOCOL, list_protocols
from .sections import DataConfig, EvalConfig, ModelConfig, TrainConfig

__all__ = ["RunConfig", "OPERATIONAL_KEYS", "is_operational", "LOOP_KEYS", "flatten", "config_differences", "default_output_dir",
           "resolve_device", "check_run_name", "safe_run_name", "load_saved_config", "MAX_NAME_LENGTH",
           "check_plugin_records", "plugin_record"]

OPERATIONAL_KEYS = ("name", "device", "data.root", "data.roots", "data.download", "data.num_workers",
                    "model.download_root", "model.download_weights")


def is_operational(key: str) -> bool:
    """Whether a flattened config key does not change results: one of :data:`OPERATIONAL_KEYS`, or
    a key inside one of them (``data.roots.seq-cifar10``: where one dataset of a sequence is read)."""
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL_KEYS)
#: Where each field of the loop's :class:`~alta.loop.LoopConfig` is set in a run's config (the
#: reference's vocabulary: ``train.epochs``, ``eval.every``, ...); ``distributed`` is decided when
#: the run starts (torchrun).
LOOP_KEYS = {"epochs": "train.epochs", "iterations": "train.iterations", "batch_size": "train.batch_size", "seed": "seed",
             "train_cache": "train.train_cache", "eval_every": "eval.every", "eval_batch_size": "eval.batch_size",
             "num_workers": "data.num_workers", "eval_before_snapshot": "eval.before_snapshot"}
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
        data: :class:`~alta.run.sections.DataConfig`.
        model: :class:`~alta.run.sections.ModelConfig` (backbone and learner).
        buffer: :class:`~alta.buffer.BufferConfig`.
        optim: :class:`~alta.optim.OptimConfig`.
        train: :class:`~alta.run.sections.TrainConfig`.
        eval: :class:`~alta.run.sections.EvalConfig`.
        protocol: The protocol the run follows (:mod:`alta.run.protocols`): ``paper`` (the method as
            described, the default) or ``reference`` (the authors' released loop). Chosen with
            ``--protocol`` or :func:`apply_protocol`, which set its knobs; recorded in every
            run's config and summary, and a resumed run refuses a different one.
        preset: The benchmark protocol the run follows, or ``None``: ``cil-suite/<dataset>/<split>``
            (:mod:`alta.run.presets`; ``cil-suite`` alone is completed from ``data.dataset`` and
            ``data.split``). Runs started from a preset (``alta run --dataset cars --split
            B50-Inc10``) record it; every setting that differs from it is recorded as a deviation.
    """

    _SECTION: ClassVar[str] = ""

    name: str = "run"
    seed: int = 42
    device: str = "auto"
    protocol: str = DEFAULT_PROTOCOL
    preset: str | None = None
    deterministic: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_run_name(self.name)
        set_canonical(self, "_loop", self._build_loop())
        check_seed(self.seed, "seed")
        if not isinstance(self.protocol, str) or self.protocol not in list_protocols():
            raise ConfigError(f"config key 'protocol' must be one of {list_protocols()}, got {self.protocol!r}: "
                              f"'paper' is the method as described, 'reference' the authors' released loop")
        if self.preset is not None:
            set_canonical(self, "preset", parse_preset(self.preset, dataset=self.data.dataset, split=self.data.split))
        if not isinstance(self.deterministic, bool):
            raise ConfigError(f"config key 'deterministic' must be true or false, got {self.deterministic!r}")
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(
                f"config key 'device' must be 'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' or 'cuda:N', "
                f"got {self.device!r}; alta runs on the CPU or on CUDA GPUs, e.g. --device cpu"
            )
        if self.data.is_sequence and self.model.head != "all":
            raise ConfigError(
                f"config key 'model.head' is {self.model.head!r} but data.dataset {self.data.dataset!r} is a "
                f"multi-domain sequence, evaluated on every dataset after every experience (the full T x T matrix, "
                f"datasets not learned yet included): a head of seen classes cannot score those. Use head 'all'; "
                f"model.unseen_classes chooses how classes not learned yet are scored (learned or zeroshot)")
        spec = METHODS.get(self.model.method)
        if self.train.schedule == "alternate" and spec.branches != frozenset(BRANCHES):
            only = ", ".join(sorted(spec.branches)) or "no"
            raise ConfigError(
                f"train.schedule 'alternate' needs a method that trains both the text and the image branch, but "
                f"{spec.name!r} trains only the {only} branch; use schedule 'crossed' or a method such as "
                f"{DEFAULT_METHOD!r}"
            )

    @property
    def plugins(self) -> list[dict[str, Any]]:
        """The plug-ins this configuration uses (its method, dataset, backbone source, buffer policy
        and extra loss terms when they do not come with alta), each as
        :meth:`~alta.plugins.PluginOrigin.record` writes it (kind, name, source, module, package
        and version or file and SHA-256), from the registries of this process. Written into
        ``config.yaml`` and ``summary.json``; a resumed run refuses to continue when one is
        missing or changed (:func:`check_plugin_records`)."""
        if self.data.is_sequence:  # a multi-domain sequence: its datasets (plug-ins among them)
            uses = [(METHODS, self.model.method), *((DATASETS, entry.dataset) for entry in
                                                     SEQUENCES.get(self.data.dataset).entries)]
        else:
            uses = [(METHODS, self.model.method), (DATASETS, self.data.dataset)]
        source = split_source(self.model.visual)[0]
        if source != "clip":
            uses.append((SOURCES, source))
        if self.buffer.enabled and METHODS.get(self.model.method).replay:
            uses.append((BUFFER_POLICIES, self.buffer.policy))
        uses += [(LOSS_TERMS, name) for name in self.model.loss_terms]
        return [record for registry, name in uses if (record := plugin_record(registry, name)) is not None]

    @property
    def loop(self) -> LoopConfig:
        """The loop's settings (:class:`~alta.loop.LoopConfig`), built once from the ``train``,
        ``eval`` and ``data`` sections and the seed (:data:`LOOP_KEYS`)."""
        return self._loop

    def _build_loop(self) -> LoopConfig:
        values = {}
        for field_name, key in LOOP_KEYS.items():
            section, _, attr = key.rpartition(".")
            values[field_name] = getattr(getattr(self, section) if section else self, attr)
        try:
            return LoopConfig(**values)
        except ConfigError as exc:  # name the key as the config file spells it
            message = str(exc)
            for field_name, key in LOOP_KEYS.items():
                message = message.replace(f"config key {field_name!r}", f"config key {key!r}")
            raise ConfigError(message) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RunConfig":
        """Build a config from nested mappings (parsed YAML); missing keys take their defaults.

        A ``plugins`` entry (what :meth:`to_yaml` records of a run's plug-ins) is checked against
        the plug-ins registered now, before anything else (:func:`check_plugin_records`).

        Raises:
            ConfigError: an unknown key (named, with the closest valid key and the valid keys of
                its section), a value of the wrong type, or an invalid value.
            PluginError: a recorded plug-in that is not registered now, or whose version or file
                changed.
        """
        if isinstance(data, Mapping) and "plugins" in data:
            data = dict(data)
            check_plugin_records(data.pop("plugins"))
        return build_from_dict(cls, data, "", cls)

    def to_yaml(self) -> str:
        """The resolved configuration as YAML (what ``config.yaml`` holds), with the plug-ins it
        uses (:attr:`plugins`) when there are any."""
        header = "# Resolved configuration of an `alta run` (every defaulted value included).\n"
        data = self.to_dict()
        plugins = self.plugins
        if plugins:
            header += "# plugins: the plug-in code this run uses; a resumed run refuses other code.\n"
            data["plugins"] = plugins
        return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)

    def fingerprint(self) -> str:
        """SHA-256 of the values that determine the results (:data:`OPERATIONAL_KEYS` left out),
        and of the identity (package version or file hash) of the plug-ins it uses, if any.

        Stored in checkpoints: a checkpoint is only resumed under a configuration with the same
        fingerprint.
        """
        values = self.result_values()
        plugins = self.plugins
        if plugins:  # a run of alta's own pieces keeps the fingerprint it always had
            values["plugins"] = [{"kind": r["kind"], "name": r["name"], **PluginOrigin.from_record(r).identity()}
                                 for r in plugins]
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()

    def result_values(self) -> dict[str, Any]:
        """The flattened values that determine the results (``{"train.epochs": 30, ...}``,
        :data:`OPERATIONAL_KEYS` left out)."""
        return {k: v for k, v in flatten(self.to_dict()).items() if not is_operational(k)}


def plugin_record(registry, name: str) -> dict[str, Any] | None:
    """The record of ``name`` in ``registry`` when it is a plug-in (``None`` for alta's own).

    Raises:
        ConfigError: ``name`` is not registered (the message lists the registered names).
    """
    origin = registry.origin(name)
    return None if origin is None else origin.record(registry.kind, registry.resolve(name))


_PLUGIN_REGISTRIES = {registry.kind: registry for registry in (METHODS, DATASETS, SOURCES, BUFFER_POLICIES,
                                                                 LOSS_TERMS, LOGGERS)}


def check_plugin_records(records: Any) -> None:
    """Refuse to continue a run whose plug-ins are not the ones it was made with.

    Args:
        records: The ``plugins`` of a run's ``config.yaml`` (:attr:`RunConfig.plugins`).

    Raises:
        PluginError: a recorded plug-in that is not registered now (the message says how to get
            it back: the package and version to install, the file to ``--import``), or that is
            registered from another package version or another file (SHA-256), or malformed
            records.
    """
    if records is None:
        return
    if not isinstance(records, list) or not all(isinstance(r, Mapping) and isinstance(r.get("kind"), str)
                                                and isinstance(r.get("name"), str) for r in records):
        raise PluginError(f"the 'plugins' entry of a run's config.yaml must be a list of records with a kind and a "
                          f"name (as alta wrote it), got {records!r}")
    for record in records:
        kind, name = record["kind"], record["name"]
        registry = _PLUGIN_REGISTRIES.get(kind)
        if registry is None:
            raise PluginError(f"the run records a plug-in of the unknown kind {kind!r} ({name!r}); kinds: "
                              f"{', '.join(_PLUGIN_REGISTRIES)}")
        was = PluginOrigin.from_record(record)
        if name not in registry:
            raise PluginError(f"this run was made with the {kind} plug-in {name!r} ({was.describe()}), which is not "
                              f"registered now: {was.how_to_restore()}, then resume again")
        now = registry.origin(name)
        if now is None or now.identity() != was.identity():
            what = "alta's own" if now is None else now.describe()
            raise PluginError(
                f"the {kind} plug-in {name!r} changed since this run was started: it was {was.describe()}, it is now "
                f"{what}. A resumed run continues with the code that started it: {was.how_to_restore()}; or start "
                f"a new run in another --output-dir")


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
            if fa.get(k) != fb.get(k) and (operational or not is_operational(k))}


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
