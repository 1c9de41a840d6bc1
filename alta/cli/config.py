"""Run configurations of ``alta run``: frozen dataclasses read from YAML.

A run of ALTA (Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for
Continual Learning", IEEE TMM 2023; reference code github.com/vijaylee/ALTA) is described by one
:class:`RunConfig` made of six sections, each a frozen dataclass that mirrors the keyword
arguments of the library object it configures:

==========  ==================================================================================
section     configures
==========  ==================================================================================
``data``    :meth:`alta.ScenarioStream.from_name` (dataset, root, split, transforms)
``model``   :func:`alta.load_backbone` and :class:`alta.CrossModalLearner` (method, head, ...)
``buffer``  :class:`alta.MemoryBuffer` (replay on/off, size, storage policy)
``optim``   :func:`alta.build_optimizer` (SGD, learning-rate schedule)
``train``   :func:`alta.run_stream` and :class:`alta.AlternatingSchedule` (epochs, batch, ...)
``eval``    evaluation period, test batch size, the headline setting (class-IL / task-IL)
==========  ==================================================================================

plus ``name``, ``seed`` and ``device`` at the top level. Every section's ``from_dict`` rejects
unknown keys by name, listing the valid ones; :func:`load_config` reads a shipped config
(``alta list configs``) or a YAML file, in alta's format or in the reference code's own format
(sections ``dataset``/``model``/``OPTIM``/``TRAINER``/``train``/``eval``, translated by
:func:`translate_reference_config`). Overrides never mutate a config: :func:`apply_overrides`
returns a new one built with :func:`dataclasses.replace`.

The defaults of the dataclasses are the reference protocol (METHOD.md Sec. 4): RN50, the ALTA
method, buffer 200, 30 epochs per experience, batch 32, SGD lr 0.002 / momentum 0.9 / weight
decay 5e-4 with a cosine schedule after one warm-up epoch at 1e-5, evaluation every 10 epochs.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import string
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from ..cache import parse_cache_mode
from ..data import DATASETS, TRANSFORM_PRESETS
from ..errors import ConfigError
from ..learner import HEADS, SNAPSHOT_TIMINGS
from ..methods import DEFAULT_METHOD, METHODS
from ..optim import LR_SCHEDULES
from ..schedule import BRANCHES, AlternatingSchedule

__all__ = [
    "IL_SETTINGS",
    "DataConfig",
    "ModelConfig",
    "BufferConfig",
    "OptimConfig",
    "TrainConfig",
    "EvalConfig",
    "RunConfig",
    "load_config",
    "apply_overrides",
    "parse_override",
    "load_run_config",
    "list_configs",
    "config_description",
    "translate_reference_config",
    "is_reference_format",
    "flatten",
    "OPERATIONAL_KEYS",
]

IL_SETTINGS = ("class-il", "task-il")
DEFAULT_CONFIG = "default"

# Keys that change how a run is executed but not what it computes: they may differ when a run
# is resumed and are left out of the configuration hash stored in checkpoints.
OPERATIONAL_KEYS = (
    "name",
    "device",
    "data.root",
    "data.download",
    "data.num_workers",
    "model.download_root",
    "model.download_weights",
)


# Upper bounds of sizes: far above any real run, low enough that an absurd value (a typo, an
# extra digit) is refused at once instead of overflowing, exhausting memory or hanging.
INT_MAX = 2**63 - 1  # every integer key: torch and NumPy take 64-bit signed integers
SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed
MAX_BATCH_SIZE = 1_000_000
MAX_NUM_WORKERS = 64
MAX_BUFFER_SIZE = 10_000_000
MAX_CACHE_VIEWS = 1000
MAX_NAME_LENGTH = 128
_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:[0-9]{1,5}")


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _int(value: Any, key: str, *, low: int | None = None, high: int = INT_MAX, optional: bool = False,
         why: str = "") -> None:
    if value is None and optional:
        return
    ok = not isinstance(value, bool) and isinstance(value, int)
    if ok and ((low is not None and value < low) or value > high):
        ok = False
    if not ok:
        if high == INT_MAX:
            need = f"an integer >= {low}" if low is not None else "an integer"
            if isinstance(value, int) and not isinstance(value, bool) and value > high:
                need += " below 2**63"
        else:
            need = f"an integer in [{low if low is not None else '-inf'}, {high:_}]"
        raise ConfigError(f"config key {key!r} must be {need}{' or null' if optional else ''}, got {value!r}"
                          f"{'; ' + why if why else ''}")


def _seed(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ConfigError(f"config key {key!r} must be an integer in [0, 2**63) (a seed), got {value!r}; "
                          f"e.g. {key}: 42")


def _case_hint(value: Any, candidates) -> str | None:
    """The candidate equal to ``value`` up to case (``'ALTA'`` -> ``'alta'``), or the closest one
    compared without case."""
    if not isinstance(value, str):
        return None
    lowered: dict[str, str] = {}
    for candidate in candidates:
        lowered.setdefault(candidate.lower(), candidate)
    if value.lower() in lowered:
        return lowered[value.lower()]
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _resolve(registry, value: Any, key: str) -> str:
    """``registry.resolve(value)``, with a case-insensitive suggestion when the name is unknown
    (``'ALTA'`` -> ``'alta'``)."""
    try:
        return registry.resolve(value)
    except ConfigError as exc:
        message = str(exc)
        if not isinstance(value, str):
            raise
        exact = None
        for candidate in (value.lower(), value.upper()):
            if candidate in registry:
                exact = candidate
                break
        match = exact if exact is not None else None if "did you mean" in message else _case_hint(
            value, registry.names())
        if match is None:
            raise
        hint = f"; did you mean {match!r}?{' (names are case-sensitive)' if exact is not None else ''}"
        if "did you mean" in message:
            message = re.sub(r"; did you mean .*?\?", lambda _: hint, message, count=1)
        elif ". Valid " in message:
            message = message.replace(". Valid ", f"{hint} Valid ", 1)
        else:
            message = f"{message.rstrip()} ({key}{hint})"
        raise ConfigError(message) from None


def _check_template(template: Any) -> None:
    """``model.template`` must format with one class name: exactly one ``{}`` and no other
    braces (``{{``/``}}`` stand for literal braces)."""
    fix = ("expected a prompt with exactly one '{}' where the class name goes, e.g. 'a photo of a {}' "
           "(write '{{' and '}}' for literal braces)")
    if not isinstance(template, str):
        raise ConfigError(f"config key 'model.template' must be a string, got {template!r}; {fix}")
    try:
        fields_ = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                   if name is not None]
        template.format("x")
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ConfigError(f"config key 'model.template' is {template!r}, which cannot be formatted "
                          f"({type(exc).__name__}: {exc}); {fix}") from None
    if fields_ != [("", "", None)]:
        found = ", ".join("{" + n + (f"!{c}" if c else "") + (f":{s}" if s else "") + "}" for n, s, c in fields_)
        raise ConfigError(f"config key 'model.template' is {template!r}, with the placeholders "
                          f"[{found or 'none'}]; {fix}")


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


def _safe_name(stem: str) -> str:
    """A valid run name made from a file name (other characters become ``_``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
    name = re.sub(r"\.{2,}", ".", name)[:MAX_NAME_LENGTH]
    return name or "run"


def _number(value: Any, key: str, *, positive: bool = False, nonnegative: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and nonnegative:
        ok = value >= 0
    if not ok:
        need = "a positive number" if positive else "a number >= 0" if nonnegative else "a finite number"
        raise ConfigError(f"config key {key!r} must be {need}, got {value!r}")


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        match = close[0] if close else _case_hint(value, choices)
        hint = f"; did you mean {match!r}?" if match else "."
        raise ConfigError(f"config key {key!r} is {value!r}{hint} Valid values: {', '.join(choices)}")


def _canonical(instance: Any, attr: str, value: Any) -> None:
    """Store a normalised value on a frozen dataclass during ``__post_init__`` (construction)."""
    object.__setattr__(instance, attr, value)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """The stream: arguments of :meth:`alta.ScenarioStream.from_name`.

    Attributes:
        dataset: A name of ``alta list datasets`` (``seq-cifar10``, ``seq-cifar100``,
            ``seq-tinyimagenet``, ``digits``, ``fashion-mnist``, ``image-folder``).
        root: Folder holding the data (``None``: none; ``digits`` needs none).
        download: Let torchvision download CIFAR-10/100 or Fashion-MNIST into ``root``.
        num_experiences: T; ``None`` with ``classes_per_experience`` ``None`` gives the
            benchmark's split (5 x 2, 10 x 10, 10 x 20). Joint training: 1.
        classes_per_experience: Classes per experience (``None``: from ``num_experiences``).
        class_order: Explicit class order (original ids), ``None`` for the native order.
        transform: Training transform preset (``reference``: the reference code's
            RandomResizedCrop + flip with the dataset's mean/std; ``clip``; ``plain``).
        test_transform: Test transform preset (``None``: the test side of ``transform``).
        max_train_per_class: Keep only the first N training images of every class (quick
            runs; ``None``: all).
        max_test_per_class: Keep only the first N test images of every class.
        num_workers: DataLoader worker processes.
    """

    dataset: str = "seq-cifar10"
    root: str | None = None
    download: bool = False
    num_experiences: int | None = None
    classes_per_experience: int | None = None
    class_order: tuple[int, ...] | None = None
    transform: str = "reference"
    test_transform: str | None = None
    max_train_per_class: int | None = None
    max_test_per_class: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        _canonical(self, "dataset", _resolve(DATASETS, self.dataset, "data.dataset"))
        _canonical(self, "transform", _resolve(TRANSFORM_PRESETS, self.transform, "data.transform"))
        if self.test_transform is not None:
            _canonical(self, "test_transform", _resolve(TRANSFORM_PRESETS, self.test_transform, "data.test_transform"))
        for key in ("num_experiences", "classes_per_experience", "max_train_per_class", "max_test_per_class"):
            _int(getattr(self, key), f"data.{key}", low=1, optional=True)
        _int(self.num_workers, "data.num_workers", low=0, high=MAX_NUM_WORKERS,
             why="DataLoader worker processes; a few per CPU core at most (0 loads in the main process)")
        if self.class_order is not None:
            _canonical(self, "class_order", tuple(self.class_order))


@dataclass(frozen=True)
class ModelConfig:
    """The backbone and the learner: :func:`alta.load_backbone` and
    :class:`alta.CrossModalLearner`.

    Attributes:
        visual: Backbone (``alta list backbones``: ``RN50``, ``ViT-B/16``, ``tiny-vit``, ...) or
            the path of a local CLIP checkpoint. Its input resolution sets the image size.
        method: One of the nine method variants, ``zeroshot``, or ``alta`` (=
            ``oritext_mlp2cprompt_oriimg``, the default).
        head: ``all`` (logits over every class from the first experience: the paper's protocol)
            or ``seen`` (classes not begun yet are masked).
        alpha: Weight of the replay cross-entropy (0.4).
        beta: Weight of the replay logit MSE (0.4).
        replay_batch_size: Buffer items drawn per step (32).
        ctx_init: Words initialising the context vectors (their count is N_CTX, 4).
        template: Hand-written prompt of w1.
        adapter_reduction: Adapter bottleneck D -> D / reduction -> D (16).
        truncate_text: Run the text encoder only up to the last EOT token (exact, faster).
        snapshot_timing: ``end`` (the context after an experience's final step) or
            ``last_forward`` (the context before it, as the reference code snapshots).
        precision: Frozen encoders' precision: ``auto`` (fp16 on CUDA), ``fp32``, ``fp16``, ``bf16``.
        backbone_seed: Seed of random-weight backbones (``tiny-vit``, ``random-RN50``, ...).
        download_root: Folder of pretrained CLIP weights (``None``: ``~/.cache/clip``).
        download_weights: Download missing pretrained weights (needs the internet).
    """

    visual: str = "RN50"
    method: str = DEFAULT_METHOD
    head: str = "all"
    alpha: float = 0.4
    beta: float = 0.4
    replay_batch_size: int = 32
    ctx_init: str = "a photo of a"
    template: str = "a photo of a {}"
    adapter_reduction: int = 16
    truncate_text: bool = True
    snapshot_timing: str = "end"
    precision: str = "auto"
    backbone_seed: int = 0
    download_root: str | None = None
    download_weights: bool = True

    def __post_init__(self) -> None:
        _canonical(self, "method", _resolve(METHODS, self.method, "model.method"))
        if not isinstance(self.visual, str) or not self.visual:
            raise ConfigError(f"config key 'model.visual' must be a backbone name or a file path, got {self.visual!r}")
        _choice(self.head, "model.head", HEADS)
        _number(self.alpha, "model.alpha", nonnegative=True)
        _number(self.beta, "model.beta", nonnegative=True)
        _int(self.replay_batch_size, "model.replay_batch_size", low=1, high=MAX_BATCH_SIZE,
             why="buffer items drawn per training step (default 32)")
        _int(self.adapter_reduction, "model.adapter_reduction", low=1)
        _seed(self.backbone_seed, "model.backbone_seed")
        _choice(self.precision, "model.precision", ("auto", "fp32", "fp16", "bf16"))
        _choice(self.snapshot_timing, "model.snapshot_timing", SNAPSHOT_TIMINGS)
        _check_template(self.template)


@dataclass(frozen=True)
class BufferConfig:
    """The replay memory: :class:`alta.MemoryBuffer`.

    Attributes:
        replay: Replay on (``il_*`` configs) or off (``sgd_*`` lower bound, ``joint_*``).
        size: Capacity M (200; the reference's ``--buffer_size``). 0 turns replay off.
        policy: Storage policy: ``reservoir`` (the reference) or ``class_balanced``.
    """

    replay: bool = True
    size: int = 200
    policy: str = "reservoir"

    def __post_init__(self) -> None:
        from ..buffer import BUFFER_POLICIES

        _int(self.size, "buffer.size", low=0, high=MAX_BUFFER_SIZE,
             why="stored items (the paper uses 200 to 5120; 0 turns replay off)")
        _canonical(self, "policy", _resolve(BUFFER_POLICIES, self.policy, "buffer.policy"))

    @property
    def enabled(self) -> bool:
        """Whether a buffer is used at all (``replay`` and a positive ``size``)."""
        return self.replay and self.size > 0


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser: :func:`alta.build_optimizer` (the reference's ``OPTIM`` section).

    Attributes:
        lr: Base learning rate (0.002).
        momentum: SGD momentum (0.9).
        weight_decay: Weight decay (5e-4).
        lr_schedule: ``cosine`` (the configs' schedule) or ``constant`` (with ``lr: 1.0e-5``
            this reproduces what the reference code ran: it never steps its scheduler).
        warmup_epochs: Warm-up epochs per experience at ``warmup_lr`` (cosine only).
        warmup_lr: Warm-up learning rate (1e-5).
    """

    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5

    def __post_init__(self) -> None:
        _number(self.lr, "optim.lr", positive=True)
        _number(self.warmup_lr, "optim.warmup_lr", positive=True)
        _number(self.weight_decay, "optim.weight_decay", nonnegative=True)
        _number(self.momentum, "optim.momentum", nonnegative=True)
        if self.momentum >= 1:
            raise ConfigError(f"config key 'optim.momentum' must be in [0, 1), got {self.momentum!r}")
        _choice(self.lr_schedule, "optim.lr_schedule", LR_SCHEDULES)
        _int(self.warmup_epochs, "optim.warmup_epochs", low=0)


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: :func:`alta.run_stream` and :class:`alta.AlternatingSchedule`.

    Attributes:
        epochs: Epochs per experience (30; joint training 100).
        batch_size: Training batch size (32).
        schedule: ``crossed`` (both branches every step: the reference) or ``alternate``
            (text and image branch in turns).
        schedule_period: Length of one turn (``alternate``).
        schedule_unit: ``step`` or ``epoch``: what the period counts.
        schedule_start: Branch of the first turn, ``text`` or ``image``.
        train_cache: ``none`` (images augmented and encoded at every step: faithful),
            ``fixed`` (each training image encoded once without augmentation) or ``views:K``
            (K augmented views encoded once; an approximation).
    """

    epochs: int = 30
    batch_size: int = 32
    schedule: str = "crossed"
    schedule_period: int = 1
    schedule_unit: str = "step"
    schedule_start: str = "text"
    train_cache: str = "none"

    def __post_init__(self) -> None:
        _int(self.epochs, "train.epochs", low=1)
        _int(self.batch_size, "train.batch_size", low=1, high=MAX_BATCH_SIZE,
             why="images per training step (the paper uses 32)")
        _choice(self.schedule, "train.schedule", AlternatingSchedule.MODES)
        _int(self.schedule_period, "train.schedule_period", low=1)
        _choice(self.schedule_unit, "train.schedule_unit", AlternatingSchedule.UNITS)
        _choice(self.schedule_start, "train.schedule_start", BRANCHES)
        try:
            kind, views = parse_cache_mode(self.train_cache)
        except ConfigError as exc:
            raise ConfigError(f"config key 'train.train_cache': {exc}") from None
        if kind == "views" and views > MAX_CACHE_VIEWS:
            raise ConfigError(
                f"config key 'train.train_cache' is {self.train_cache!r}: K views of every training image are "
                f"encoded up front, so K must be in [1, {MAX_CACHE_VIEWS}] (e.g. 'views:4')"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (the reference's ``eval`` section).

    Attributes:
        every: Evaluate the experiences seen so far every this many epochs (10; 0: only at the
            end of each experience). Both settings are computed at every evaluation.
        batch_size: Test batch size (does not change results).
        il_setting: The headline setting, ``class-il`` or ``task-il`` (the reference's
            ``--il_setting``).
        zeroshot_baseline: Evaluate zero-shot CLIP on every experience (the baseline of
            forward transfer; cheap, it shares the cached test features).
    """

    every: int = 10
    batch_size: int = 256
    il_setting: str = "class-il"
    zeroshot_baseline: bool = True

    def __post_init__(self) -> None:
        _int(self.every, "eval.every", low=0)
        _int(self.batch_size, "eval.batch_size", low=1, high=MAX_BATCH_SIZE,
             why="test images per forward pass (default 256; it does not change results)")
        _choice(self.il_setting, "eval.il_setting", IL_SETTINGS)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``alta run`` needs: the resolved configuration saved as ``config.yaml``.

    Attributes:
        name: Name of the configuration (used in the default output folder).
        seed: Run seed (adapter initialisation, shuffling, augmentation, buffer; 42).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        data, model, buffer, optim, train, eval: The sections.

    Example:
        >>> config = load_config("il_cifar10")  # doctest: +SKIP
        >>> quick = apply_overrides(config, {"train.epochs": 1, "model.visual": "tiny-vit"})  # doctest: +SKIP
    """

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
        _seed(self.seed, "seed")
        device = self.device
        if not isinstance(device, str) or not _DEVICE_PATTERN.fullmatch(device):
            raise ConfigError(
                f"config key 'device' must be 'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' or 'cuda:N', "
                f"got {device!r}; alta runs on the CPU or on CUDA GPUs, e.g. --device cpu"
            )
        spec = METHODS.get(self.model.method)
        if self.train.schedule == "alternate" and spec.branches != frozenset(BRANCHES):
            only = ", ".join(sorted(spec.branches)) or "no"
            raise ConfigError(
                f"train.schedule 'alternate' needs a method that trains both the text and the image branch, but "
                f"{spec.name!r} trains only the {only} branch; use schedule 'crossed' or a method such as "
                f"{DEFAULT_METHOD!r}"
            )

    # ---------------------------------------------------------------- (de)serialisation
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RunConfig":
        """Build a config from nested mappings (e.g. parsed YAML); missing keys take defaults.

        Raises:
            ConfigError: an unknown key (named, with the valid keys of its section and the
                closest match), a value of the wrong type, or an invalid value.
        """
        return _from_dict(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        """Every value, defaults included, as plain nested dicts and lists (YAML/JSON-ready)."""
        return _plain(dataclasses.asdict(self))

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


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------------------------
# Typed construction from mappings
# --------------------------------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is bool:
        return "true or false"
    if hint is str:
        return "a string"
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "a list of integers"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "null" for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a field's type (ints are accepted for floats)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            item = typing.get_args(hint)[0]
            return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    else:  # pragma: no cover - every field type is listed above
        return value
    raise ConfigError(f"config key {key!r} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _all_keys() -> list[str]:
    """Every configuration key, dotted (``seed``, ``train.epochs``, ...)."""
    keys = []
    for name, hint in typing.get_type_hints(RunConfig).items():
        keys += [f"{name}.{f.name}" for f in fields(hint)] if is_dataclass(hint) else [name]
    return keys


def _suggest_keys(key: str, where: str, valid: list[str]) -> list[str]:
    """The keys a misspelt ``where + key`` probably meant: in its own section first (exact up to
    case, then close), then among every dotted key: the same key up to case (``Train.Epochs``),
    the same last part (``trian.epochs`` or a bare ``epochs`` -> ``train.epochs``), a misspelt
    section, a close match."""
    match = _case_hint(key, valid)
    if match is not None:
        return [where + match]
    full = where + key
    everything = _all_keys()
    lowered = {k.lower(): k for k in everything}
    if full.lower() in lowered:
        return [lowered[full.lower()]]
    leaf = full.rpartition(".")[2].lower()
    same_leaf = [k for k in everything if k.rpartition(".")[2].lower() == leaf]
    if same_leaf:
        return same_leaf[:3]
    head, dot, rest = full.partition(".")
    section = _case_hint(head, [f.name for f in fields(RunConfig)]) if dot else None
    if section is not None:
        hint = typing.get_type_hints(RunConfig)[section]
        inner = _case_hint(rest, [f.name for f in fields(hint)]) if is_dataclass(hint) else None
        return [f"{section}.{inner or rest}"]
    match = _case_hint(full, everything)
    return [match] if match is not None else []


def _unknown_key(key: str, where: str, valid: list[str]) -> ConfigError:
    close = _suggest_keys(str(key), where, valid)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
    section = f"section {where[:-1]!r}" if where else "the top level"
    return ConfigError(f"unknown config key {where + str(key)!r}{hint} Valid keys of {section}: {', '.join(valid)}")


def _from_dict(cls: type, data: Mapping[str, Any] | None, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        what = f"section {where[:-1]!r}" if where else "a config"
        raise ConfigError(f"{what} must be a mapping of keys to values, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown_key(str(key), where, valid)
        hint = hints[key]
        if is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, f"{where}{key}")
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """A new config with dotted keys replaced (``{"train.epochs": 1, "seed": 3}``).

    ``config`` is not modified; sections are rebuilt with :func:`dataclasses.replace`, so every
    value is validated again.

    Raises:
        ConfigError: unknown key (lists the valid ones) or invalid value.
    """
    hints = typing.get_type_hints(RunConfig)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in hints:
            raise _unknown_key(section if not name else key, "", [f.name for f in fields(RunConfig)])
        hint = hints[section]
        if is_dataclass(hint):
            if not name:
                raise ConfigError(f"override {key!r} names a whole section; give a key inside it, e.g. '{section}.{fields(hint)[0].name}'")
            sub_hints = typing.get_type_hints(hint)
            if name not in sub_hints:
                raise _unknown_key(name, f"{section}.", [f.name for f in fields(hint)])
            current = getattr(config, section)
            new = dataclasses.replace(current, **{name: _coerce(value, sub_hints[name], key)})
            config = dataclasses.replace(config, **{section: new})
        else:
            if name:
                raise _unknown_key(key, "", [f.name for f in fields(RunConfig)])
            config = dataclasses.replace(config, **{section: _coerce(value, hint, key)})
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` (the value is read as YAML: ``3``, ``0.1``, ``true``, ``null``, ``[1, 2]``).

    Raises:
        ConfigError: no ``=`` or unparsable value.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. --set train.epochs=3), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: cannot read the value as YAML ({exc})") from None
    return key.strip(), value


# --------------------------------------------------------------------------------------------
# Files: shipped configs, YAML, the reference's format
# --------------------------------------------------------------------------------------------


def _shipped_dir():
    return resources.files("alta") / "configs"


def list_configs() -> list[str]:
    """Names of the shipped configurations (``default``, ``il_cifar10``, ...)."""
    names = [p.name[: -len(".yaml")] for p in _shipped_dir().iterdir() if p.name.endswith(".yaml")]
    kinds = {"il": 0, "sgd": 1, "joint": 2}
    datasets = {"cifar10": 0, "cifar100": 1, "tiny": 2}

    def key(name: str) -> tuple:
        kind, _, dataset = name.partition("_")
        return (name != DEFAULT_CONFIG, datasets.get(dataset, 9), kinds.get(kind, 9), name)

    return sorted(names, key=key)


def config_description(name: str) -> str:
    """First comment line of a shipped config (for ``alta list configs``)."""
    text = (_shipped_dir() / f"{name}.yaml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def _resolve_source(name_or_path: str | os.PathLike) -> tuple[str, str]:
    """(text, source description) of a config name or file."""
    raw = os.fspath(name_or_path)
    path = Path(raw).expanduser()
    if path.is_dir():
        raise ConfigError(f"config {raw!r} is a folder; expected a YAML file or the name of a shipped config "
                          f"(see `alta list configs`)")
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
        try:
            return data.decode("utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} "
                f"cannot be decoded); expected a YAML file saved as UTF-8: re-save it as UTF-8, or check that "
                f"it is the right file"
            ) from None
    stem = path.name
    for suffix in (".yaml", ".yml"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    shipped = list_configs()
    if stem in shipped:
        return (_shipped_dir() / f"{stem}.yaml").read_text(encoding="utf-8"), f"shipped config {stem!r}"
    close = difflib.get_close_matches(stem, shipped, n=1, cutoff=0.5)
    match = close[0] if close else _case_hint(stem, shipped)
    hint = f"; did you mean {match!r}?" if match else "."
    raise ConfigError(
        f"unknown config {raw!r}: not an existing file and not a shipped config{hint} "
        f"Shipped configs: {', '.join(shipped)} (see `alta list configs`); or give the path of a YAML file"
    )


def load_config(name_or_path: str | os.PathLike = DEFAULT_CONFIG) -> RunConfig:
    """Read a shipped configuration by name or a YAML file.

    A name like ``configs/il_cifar10.yaml`` that is not an existing file resolves to the shipped
    config ``il_cifar10``, so the reference README's command lines work unchanged. Files in the
    reference code's own format are translated (:func:`translate_reference_config`).

    Args:
        name_or_path: A name of :func:`list_configs` or the path of a YAML file.

    Returns:
        The :class:`RunConfig`; ``name`` defaults to the file's stem.

    Raises:
        ConfigError: unknown name (lists the shipped ones), unreadable YAML, unknown keys
            (named, with the valid keys), invalid values.
    """
    return _read_config(name_or_path)


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read the ``config.yaml`` of a run folder (to resume it, or compare with it).

    Like :func:`load_config`, except that a run name this alta no longer accepts (one written by
    an older version, e.g. with spaces) is made valid instead of refused: the name does not change
    results (it is left out of :meth:`RunConfig.fingerprint`), and the run stays resumable.
    """
    return _read_config(path, fix_name=True)


def _read_config(name_or_path: str | os.PathLike, *, fix_name: bool = False) -> RunConfig:
    text, source = _resolve_source(name_or_path)
    data = _load_yaml(text, source)
    if data is None:
        raise ConfigError(
            f"{source} is empty (it holds no settings, only comments or nothing); expected a mapping of sections "
            f"such as 'train: {{epochs: 3}}' (see a run's config.yaml for every key). To run the defaults, leave "
            f"out --config"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} must hold a mapping of sections (data, model, ...), got {type(data).__name__}")
    stem = Path(os.fspath(name_or_path)).name
    for suffix in (".yaml", ".yml"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = _safe_name(stem)
    if is_reference_format(data):
        data = translate_reference_config(data, name=stem)
    elif "name" not in data:
        data = {"name": stem, **data}
    elif fix_name and isinstance(data["name"], str) and data["name"]:
        data = {**data, "name": _safe_name(data["name"])}
    try:
        return RunConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


class _DuplicateKey(Exception):
    def __init__(self, path: str, first: int, again: int, section: bool) -> None:
        super().__init__(path, first, again)
        self.path, self.first, self.again, self.section = path, first, again, section


def _check_duplicate_keys(node: yaml.Node, path: str, seen_nodes: set[int]) -> None:
    """Raise :class:`_DuplicateKey` for a key given twice in one mapping (YAML keeps the last one
    silently). Merge keys (``<<``) are left to YAML."""
    if id(node) in seen_nodes:  # an alias: checked where it was defined
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if ident in lines:
                    raise _DuplicateKey(path + key_node.value, lines[ident], line,
                                        isinstance(value_node, yaml.MappingNode))
                lines[ident] = line
                _check_duplicate_keys(value_node, f"{path}{key_node.value}.", seen_nodes)
            else:
                _check_duplicate_keys(value_node, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{path[:-1]}[{i}].", seen_nodes)


def _load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice in one mapping.

    Raises:
        ConfigError: invalid YAML, a NUL byte, or a duplicated key (named, with both lines).
    """
    if "\0" in text:  # e.g. a zero-filled file left by a crash; YAML refuses NUL anywhere
        raise ConfigError(
            f"{source} holds a NUL byte (first at character {text.index(chr(0))}), so it is not a YAML text file: it "
            "was probably damaged (a crash can leave a zero-filled file). Fix: restore or rewrite it"
        )
    try:
        loader = yaml.SafeLoader(text)  # refuses other control characters already
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicate_keys(node, "", set())
        return loader.construct_document(node)
    except _DuplicateKey as dup:
        fix = (f"merge the two into one '{dup.path.rpartition('.')[2]}:' section holding all its keys" if dup.section
               else "keep only the one you mean")
        raise ConfigError(
            f"{source}: key {dup.path!r} is given twice (lines {dup.first} and {dup.again}); YAML would silently keep "
            f"only the last one, so alta refuses the file: {fix}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def is_reference_format(data: Mapping[str, Any]) -> bool:
    """Whether a parsed YAML is in the reference code's format (``dataset``/``OPTIM`` sections)."""
    return "OPTIM" in data or "TRAINER" in data or "dataset" in data


# reference dataset name -> alta dataset name
_REFERENCE_DATASETS = {"seq-cifar10": "seq-cifar10", "seq-cifar100": "seq-cifar100", "seq-tinyimagenet": "seq-tinyimagenet"}
# keys of the reference's OPTIM section that do not apply to its SGD set-up
_REFERENCE_IGNORED_OPTIM = {
    "SGD_DAMPNING", "SGD_NESTEROV", "RMSPROP_ALPHA", "ADAM_BETA1", "ADAM_BETA2", "STAGED_LR", "NEW_LAYERS",
    "BASE_LR_MULT", "WARMUP_RECOUNT", "LR_SCHEDULER", "STEPSIZE", "GAMMA", "WARMUP_MIN_LR",
}


def translate_reference_config(data: Mapping[str, Any], *, name: str = "reference") -> dict[str, Any]:
    """Translate a config of the reference code (``configs/*.yaml`` of vijaylee/ALTA) to alta's
    format.

    ``dataset.{name, n_tasks, n_classes_per_task, num_workers}``, ``model.use_replay``,
    ``OPTIM.{LR, MOMENTUM, WEIGHT_DECAY, MAX_EPOCH, WARMUP_EPOCH, WARMUP_CONS_LR}``,
    ``TRAINER.COOP.{N_CTX, CTX_INIT}``, ``train.{batch_size, alpha, beta}`` and
    ``eval.{test_epochs, batch_size}`` are mapped; ``dataset.image_size`` is ignored (the image
    size comes from the backbone, 224 for RN50 as in the reference).

    Raises:
        ConfigError: an unknown section or key, or a setting alta does not implement (an
            optimiser other than SGD, a class token not at the end, N_CTX that does not match
            CTX_INIT).
    """

    def section(key: str, allowed: set[str]) -> Mapping[str, Any]:
        value = data.get(key) or {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"reference config section {key!r} must be a mapping, got {value!r}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown key {key + '.' + str(unknown[0])!r} in a reference-format config; valid keys of "
                f"{key!r}: {', '.join(sorted(allowed))}"
            )
        return value

    known_sections = {"dataset", "model", "OPTIM", "TRAINER", "train", "eval"}
    unknown = sorted(set(data) - known_sections)
    if unknown:
        raise ConfigError(
            f"unknown section {unknown[0]!r} in a reference-format config; valid sections: "
            f"{', '.join(sorted(known_sections))}"
        )
    ds = section("dataset", {"name", "image_size", "num_workers", "n_classes_per_task", "n_tasks"})
    model = section("model", {"pretrained", "use_replay"})
    optim = section("OPTIM", {"NAME", "LR", "WEIGHT_DECAY", "MOMENTUM", "MAX_EPOCH", "WARMUP_EPOCH", "WARMUP_TYPE",
                              "WARMUP_CONS_LR", *_REFERENCE_IGNORED_OPTIM})
    trainer = section("TRAINER", {"COOP"})
    train = section("train", {"batch_size", "alpha", "beta", "num_classes"})
    evaluation = section("eval", {"test_epochs", "batch_size"})

    out: dict[str, Any] = {"name": name, "data": {}, "model": {}, "buffer": {}, "optim": {}, "train": {}, "eval": {}}
    if "name" in ds:
        out["data"]["dataset"] = _REFERENCE_DATASETS.get(ds["name"], ds["name"])
    if "n_tasks" in ds:
        out["data"]["num_experiences"] = ds["n_tasks"]
    if "n_classes_per_task" in ds:
        out["data"]["classes_per_experience"] = ds["n_classes_per_task"]
    if "num_workers" in ds:
        out["data"]["num_workers"] = ds["num_workers"]
    if "use_replay" in model:
        out["buffer"]["replay"] = model["use_replay"]
    if str(optim.get("NAME", "sgd")).lower() != "sgd":
        raise ConfigError(f"reference config OPTIM.NAME is {optim['NAME']!r}; alta implements the reference's 'sgd' only")
    if str(optim.get("WARMUP_TYPE", "constant")).lower() != "constant":
        raise ConfigError(f"reference config OPTIM.WARMUP_TYPE is {optim['WARMUP_TYPE']!r}; alta implements 'constant' only")
    for ref, key in (("LR", "lr"), ("MOMENTUM", "momentum"), ("WEIGHT_DECAY", "weight_decay"),
                     ("WARMUP_EPOCH", "warmup_epochs"), ("WARMUP_CONS_LR", "warmup_lr")):
        if ref in optim:
            out["optim"][key] = optim[ref]
    if "MAX_EPOCH" in optim:
        out["train"]["epochs"] = optim["MAX_EPOCH"]
    coop = trainer.get("COOP") or {}
    if not isinstance(coop, Mapping) or set(coop) - {"N_CTX", "CTX_INIT", "CLASS_TOKEN_POSITION", "CSC"}:
        raise ConfigError(f"reference config TRAINER.COOP must hold N_CTX, CTX_INIT, CLASS_TOKEN_POSITION; got {coop!r}")
    if str(coop.get("CLASS_TOKEN_POSITION", "end")) != "end":
        raise ConfigError("reference config TRAINER.COOP.CLASS_TOKEN_POSITION must be 'end' (the only one alta implements)")
    if coop.get("CSC", False):
        raise ConfigError("reference config TRAINER.COOP.CSC (class-specific context) is not implemented by alta")
    if "CTX_INIT" in coop:
        out["model"]["ctx_init"] = coop["CTX_INIT"]
        if "N_CTX" in coop and len(str(coop["CTX_INIT"]).split()) != coop["N_CTX"]:
            raise ConfigError(
                f"reference config TRAINER.COOP.N_CTX={coop['N_CTX']} but CTX_INIT {coop['CTX_INIT']!r} has "
                f"{len(str(coop['CTX_INIT']).split())} words; alta takes the number of context vectors from CTX_INIT"
            )
    for ref, key in (("batch_size", "batch_size"),):
        if ref in train:
            out["train"][key] = train[ref]
    for key in ("alpha", "beta"):
        if key in train:
            out["model"][key] = train[key]
    if "test_epochs" in evaluation:
        out["eval"]["every"] = evaluation["test_epochs"]
    if "batch_size" in evaluation:
        out["eval"]["batch_size"] = evaluation["batch_size"]
    return {k: v for k, v in out.items() if v != {}}
