"""Named protocols: every knob that separates ALTA as described from the code its authors released.

Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023; reference code github.com/vijaylee/ALTA (commit aae43b0: ``main.py``,
``models/coop.py``, ``datasets/__init__.py``, ``utils/lr_scheduler.py``, ``configs/il_*.yaml``).

Two protocols, each a frozen :class:`Protocol` whose fields are the knobs, each knob a
:class:`Setting` with its value, a one-line reason and where the value comes from (not to be
confused with :mod:`alta.data.splits`, the field's vocabulary of splits and class orders):

- ``"paper"`` (alta's default): the method as described (the configs' learning rate and cosine
  schedule, readable class names in both prompts, the experience scored after its prompts are
  snapshotted), with the quirks of the released loop fixed. Its values are the defaults of
  :class:`~alta.CrossModalLearner`, :func:`~alta.build_optimizer` and the loop; a test keeps
  them equal.
- ``"reference"``: what the released code runs, in fp32 (its fp16 trainable parameters are not
  offered): constant learning rate 1e-5 (its scheduler is never stepped), raw class names in the
  hand-written prompt, its curated Tiny-ImageNet names, the experience just trained scored with
  the live context before the snapshot, and the snapshot taken from the last forward.

:func:`protocol_kwargs` turns a protocol into the keyword arguments of each object it configures:

    >>> kwargs = protocol_kwargs("reference", dataset="seq-cifar100")
    >>> kwargs["learner"]["w1_raw_names"], kwargs["optimizer"]["lr"]
    (True, 1e-05)
    >>> kwargs["stream"]["class_names"][1]
    'aquarium_fish'
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, fields
from typing import Any

from ..backbones import list_backbones
from ..data.datasets import DATASETS, reference_class_names
from ..registry import Registry

__all__ = ["PROTOCOLS", "Protocol", "Setting", "TARGETS", "DEFAULT_PROTOCOL", "get_protocol", "list_protocols",
           "protocol_kwargs", "CONFIG_KEYS", "apply_protocol", "protocol_deviations", "protocol_class_names",
           "EXPERIMENT_KEYS", "weights_deviation"]

REF = "github.com/vijaylee/ALTA@aae43b0"
TARGETS = ("backbone", "stream", "learner", "optimizer", "buffer", "loop")
DEFAULT_PROTOCOL = "paper"


@dataclass(frozen=True)
class Setting:
    """The value of one knob in one protocol.

    Attributes:
        value: The keyword argument's value (``class_names="reference"`` is resolved per dataset
            by :func:`protocol_kwargs`).
        reason: Why the protocol uses it, in one line.
        source: Where the value comes from (paper, reference file and line, alta).
    """

    value: Any
    reason: str
    source: str


# knob -> (target, keyword argument of that target)
_KEYWORDS: dict[str, tuple[str, str]] = {
    "precision": ("backbone", "precision"),
    "class_names": ("stream", "class_names"),
    "transform": ("stream", "transform"),
    "class_order": ("stream", "class_order"),
    "head": ("learner", "head"),
    "template": ("learner", "template"),
    "ctx_init": ("learner", "ctx_init"),
    "w1_raw_names": ("learner", "w1_raw_names"),
    "snapshot_timing": ("learner", "snapshot_timing"),
    "alpha": ("learner", "alpha"),
    "beta": ("learner", "beta"),
    "replay_batch_size": ("learner", "replay_batch_size"),
    "adapter_reduction": ("learner", "adapter_reduction"),
    "truncate_text": ("learner", "truncate_text"),
    "lr": ("optimizer", "lr"),
    "lr_schedule": ("optimizer", "schedule"),
    "momentum": ("optimizer", "momentum"),
    "weight_decay": ("optimizer", "weight_decay"),
    "warmup_epochs": ("optimizer", "warmup_epochs"),
    "warmup_lr": ("optimizer", "warmup_lr"),
    "buffer_size": ("buffer", "capacity"),
    "buffer_policy": ("buffer", "policy"),
    "epochs": ("loop", "epochs"),
    "batch_size": ("loop", "batch_size"),
    "eval_every": ("loop", "eval_every"),
    "eval_before_snapshot": ("loop", "eval_before_snapshot"),
    "train_cache": ("loop", "train_cache"),
}


@dataclass(frozen=True)
class Protocol:
    """A named set of knobs (see the module docstring); every field but ``name`` and ``summary``
    is a :class:`Setting`.

    Attributes:
        name: ``"paper"`` or ``"reference"``.
        summary: One sentence saying what the protocol is for.
        precision: Frozen encoders' precision (:func:`~alta.load_backbone`).
        class_names: ``"dataset"`` (the dataset's readable names) or ``"reference"`` (the
            reference code's, :func:`alta.data.reference_class_names`).
        transform: Transform preset of the stream (normalisation, augmentation).
        class_order: Class order of the stream (``None``: the dataset's native order).
        head: Classes the logits cover (``"all"`` from the first experience on).
        template: Hand-written prompt of w1.
        ctx_init: Words initialising the context vectors (their number).
        w1_raw_names: Class names verbatim (underscores kept) in w1.
        snapshot_timing: Which context a prompt snapshot keeps.
        alpha: Weight of the replay cross-entropy.
        beta: Weight of the replay logit MSE.
        replay_batch_size: Items drawn from the buffer per step.
        adapter_reduction: Adapter bottleneck factor.
        truncate_text: Text encoder up to the last EOT only (exact up to rounding).
        lr: Learning rate of SGD.
        lr_schedule: ``"cosine"`` (warm-up then cosine per experience) or ``"constant"``.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        warmup_epochs: Warm-up epochs of the cosine schedule.
        warmup_lr: Warm-up learning rate.
        buffer_size: Replay buffer capacity (the ``il_*`` configs; ``sgd_*``/``joint_*`` have none).
        buffer_policy: Which items the buffer keeps.
        epochs: Epochs per experience (``joint_*`` configs: 100).
        batch_size: Training batch size.
        eval_every: Evaluate the experiences seen so far every this many epochs.
        eval_before_snapshot: Evaluate the experience just trained after its last epoch but
            before ``end_experience`` snapshots its prompts, as the reference's epoch loop does
            (``False``: after the snapshot).
        train_cache: Training-feature cache mode (``"none"``: every image encoded at every step).
    """

    name: str
    summary: str
    precision: Setting
    class_names: Setting
    transform: Setting
    class_order: Setting
    head: Setting
    template: Setting
    ctx_init: Setting
    w1_raw_names: Setting
    snapshot_timing: Setting
    alpha: Setting
    beta: Setting
    replay_batch_size: Setting
    adapter_reduction: Setting
    truncate_text: Setting
    lr: Setting
    lr_schedule: Setting
    momentum: Setting
    weight_decay: Setting
    warmup_epochs: Setting
    warmup_lr: Setting
    buffer_size: Setting
    buffer_policy: Setting
    epochs: Setting
    batch_size: Setting
    eval_every: Setting
    eval_before_snapshot: Setting
    train_cache: Setting

    def __post_init__(self) -> None:
        knobs = [f.name for f in fields(self) if f.name not in ("name", "summary")]
        assert sorted(knobs) == sorted(_KEYWORDS), set(knobs) ^ set(_KEYWORDS)
        for knob in knobs:
            assert isinstance(getattr(self, knob), Setting), knob

    def settings(self) -> dict[str, Setting]:
        """Every knob of the protocol, in field order: ``{knob: Setting}``."""
        return {name: getattr(self, name) for name in _KEYWORDS}

    def differences(self, other: "Protocol") -> dict[str, tuple[Any, Any]]:
        """Knobs whose values differ: ``{knob: (value here, value in other)}``."""
        return {
            name: (mine.value, getattr(other, name).value)
            for name, mine in self.settings().items()
            if mine.value != getattr(other, name).value
        }


def _same(value: Any, reason: str, source: str) -> Setting:
    return Setting(value, reason, source)


# Knobs on which both protocols agree (the paper as described, the released code and alta's default).
_SHARED = dict(
    precision=_same("auto", "frozen encoders fp16 on CUDA, fp32 on CPU; trainable parameters always fp32 "
                    "(the reference's fp16 trainables lose updates at lr 1e-5, not offered)",
                    f"{REF} main.py l.45 convert_weights; alta.load_backbone"),
    transform=_same("reference", "RandomResizedCrop + flip (none for CIFAR-100), the dataset's mean/std, as the "
                    "reference; 'clip' is CLIP's own preprocessing", f"{REF} datasets/seq_*.py get_*_dataloaders"),
    class_order=_same(None, "the dataset's native class order", f"{REF} datasets/seq_*.py store_masked_loaders"),
    head=_same("all", "logits over every class of the stream from the first experience on",
               f"{REF} models/coop.py (prompts of all n_cls classes)"),
    template=_same("a photo of a {}", "the hand-written prompt of w1 (no trailing period)",
                   f"{REF} models/coop.py text_input; main.py l.64"),
    ctx_init=_same("a photo of a", "4 context vectors from these words' token embeddings",
                   f"{REF} configs/il_*.yaml TRAINER.COOP.CTX_INIT"),
    alpha=_same(0.4, "replay cross-entropy weight", f"{REF} configs/il_*.yaml train.alpha"),
    beta=_same(0.4, "replay logit-MSE weight", f"{REF} configs/il_*.yaml train.beta"),
    replay_batch_size=_same(32, "replay batch = training batch", f"{REF} main.py l.89 get_data(train.batch_size)"),
    adapter_reduction=_same(16, "adapter D -> D/16 -> D", f"{REF} models/coop.py mlp_visual"),
    truncate_text=_same(True, "exact up to float rounding (causal text encoder); False re-encodes 77 positions",
                        "alta.prompt.PromptLearner.encode"),
    momentum=_same(0.9, "SGD momentum", f"{REF} configs/il_*.yaml OPTIM.MOMENTUM"),
    weight_decay=_same(5e-4, "SGD weight decay, on every trainable parameter",
                       f"{REF} configs/il_*.yaml OPTIM.WEIGHT_DECAY"),
    warmup_epochs=_same(1, "one warm-up epoch", f"{REF} configs/il_*.yaml OPTIM.WARMUP_EPOCH"),
    warmup_lr=_same(1e-5, "warm-up learning rate", f"{REF} configs/il_*.yaml OPTIM.WARMUP_CONS_LR"),
    buffer_size=_same(200, "buffer of the il_* configs (sgd_* and joint_* replay nothing)",
                      f"{REF} arguments.py --buffer_size"),
    buffer_policy=_same("reservoir", "reservoir sampling (algorithm R) over every training sample",
                        f"{REF} utils/fea_buffer.py reservoir"),
    epochs=_same(30, "epochs per experience (joint_*: 100)", f"{REF} configs/il_*.yaml OPTIM.MAX_EPOCH"),
    batch_size=_same(32, "training batch size", f"{REF} configs/il_*.yaml train.batch_size"),
    eval_every=_same(10, "evaluate the experiences seen so far every 10 epochs",
                     f"{REF} configs/il_*.yaml eval.test_epochs; main.py l.105"),
    train_cache=_same("none", "every training image augmented and encoded at every step, as the reference",
                      f"{REF} main.py l.85 forward_features"),
)

PROTOCOLS: Registry[Protocol] = Registry("protocol")

PROTOCOLS.add("paper", Protocol(
    name="paper",
    summary="ALTA as described, with the released loop's quirks fixed (alta's default)",
    class_names=Setting("dataset", "the dataset's readable names (Tiny-ImageNet: first words.txt synonym)",
                        "alta.data.datasets"),
    w1_raw_names=Setting(False, "w1 reads 'aquarium fish' like w2 does; the underscore is a file-name artefact",
                         "fixes models/coop.py text_input (raw names)"),
    snapshot_timing=Setting("end", "an experience keeps the context it ended with (after its final step)",
                            "paper: prompts frozen when an experience ends"),
    lr=Setting(0.002, "the learning rate the configs and the paper state", f"{REF} configs/il_*.yaml OPTIM.LR"),
    lr_schedule=Setting("cosine", "warm-up epoch, then cosine over the epochs, as the configs describe",
                        f"{REF} utils/lr_scheduler.py build_lr_scheduler (meant to be stepped)"),
    eval_before_snapshot=Setting(False, "score each experience with the prompts it keeps for the rest of the run",
                                 "alta.loop.fit.run_stream"),
    **_SHARED,
))

PROTOCOLS.add("reference", Protocol(
    name="reference",
    summary="what the released code runs (at fp32): for reproducing its numbers",
    class_names=Setting("reference", "the reference's names: CIFAR spelling with underscores, 200 curated "
                        "Tiny-ImageNet names", f"{REF} datasets/__init__.py get_classnames"),
    w1_raw_names=Setting(True, "w1 is tokenised from the raw name ('a photo of a aquarium_fish')",
                         f"{REF} models/coop.py text_input; main.py l.64"),
    snapshot_timing=Setting("last_forward", "the snapshot is the prompts of the last training forward, "
                            "before the final step", f"{REF} main.py l.70-72 text_input = prompts[:t*k]"),
    lr=Setting(1e-5, "the rate the code trains at: building the warm-up scheduler sets 1e-5",
               f"{REF} utils/lr_scheduler.py ConstantWarmupScheduler"),
    lr_schedule=Setting("constant", "the scheduler is never stepped", f"{REF} main.py (no scheduler.step())"),
    eval_before_snapshot=Setting(True, "the experience just trained is scored with the live context, after the "
                                 "final step, before any snapshot", f"{REF} main.py l.105-124 (inside the epoch loop)"),
    **_SHARED,
))


def list_protocols() -> list[str]:
    """The protocol names (``["paper", "reference"]``)."""
    return PROTOCOLS.names()


def get_protocol(name: str | Protocol) -> Protocol:
    """The :class:`Protocol` called ``name`` (a :class:`Protocol` is returned as is).

    Raises:
        ConfigError: an unknown name (the message lists the valid ones and the closest).
    """
    if isinstance(name, Protocol):
        return name
    return PROTOCOLS.get(name)


def protocol_kwargs(protocol: str | Protocol = DEFAULT_PROTOCOL, *, dataset: str | None = None) -> dict[str, dict]:
    """The keyword arguments a protocol gives each object it configures.

    Args:
        protocol: A name of :func:`list_protocols` or a :class:`Protocol`.
        dataset: The stream's name (:func:`alta.data.list_datasets`), to resolve
            ``class_names="reference"`` to the reference code's names for it; without it (or for
            a stream the reference code does not have) the stream keeps the dataset's names.

    Returns:
        ``{target: {keyword: value}}`` for the targets ``backbone`` (:func:`~alta.load_backbone`),
        ``stream`` (:meth:`~alta.ScenarioStream.from_name`), ``learner``
        (:class:`~alta.CrossModalLearner`), ``optimizer`` (:func:`~alta.build_optimizer`),
        ``buffer`` (:class:`~alta.MemoryBuffer`) and ``loop`` (:class:`~alta.LoopConfig`).

    Raises:
        ConfigError: an unknown protocol or dataset name.
    """
    spec = get_protocol(protocol)
    if dataset is not None:
        DATASETS.resolve(dataset)  # an unknown name fails here, whichever the protocol
    out: dict[str, dict] = {target: {} for target in TARGETS}
    for knob, setting in spec.settings().items():
        target, keyword = _KEYWORDS[knob]
        value = setting.value
        if knob == "class_names":
            value = reference_class_names(dataset) if value == "reference" and dataset is not None else None
        out[target][keyword] = value
    if out["stream"]["class_names"] is None:
        del out["stream"]["class_names"]  # the dataset's own names
    return out


# knob -> the key of the run configuration (alta.run.config.RunConfig) it sets
CONFIG_KEYS = {
    "precision": "model.precision", "head": "model.head", "template": "model.template", "ctx_init": "model.ctx_init",
    "w1_raw_names": "model.w1_raw_names", "snapshot_timing": "model.snapshot_timing", "alpha": "model.alpha",
    "beta": "model.beta", "replay_batch_size": "model.replay_batch_size",
    "adapter_reduction": "model.adapter_reduction", "truncate_text": "model.truncate_text", "lr": "optim.lr",
    "lr_schedule": "optim.lr_schedule", "momentum": "optim.momentum", "weight_decay": "optim.weight_decay",
    "warmup_epochs": "optim.warmup_epochs", "warmup_lr": "optim.warmup_lr", "buffer_size": "buffer.size",
    "buffer_policy": "buffer.policy", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "train_cache": "train.train_cache", "eval_every": "eval.every", "eval_before_snapshot": "eval.before_snapshot",
    "transform": "data.transform", "class_order": "data.class_order",
}


def _protocol_quirks(name: str) -> dict[str, Any]:
    """The knobs where protocol ``name`` differs from the default one, with its values."""
    spec, default = get_protocol(name).settings(), get_protocol(DEFAULT_PROTOCOL).settings()
    return {knob: setting.value for knob, setting in spec.items() if setting.value != default[knob].value}


def apply_protocol(config, name: str):
    """A new config following protocol ``name``: the knobs where it differs from ``paper`` take
    its values (for ``reference``: the learning rate and schedule, raw names in w1, snapshot
    timing, evaluation point; its class names are applied when the stream is built), and
    ``protocol`` records it. Apply user overrides after this, so they win.

    Args:
        config: The :class:`~alta.run.config.RunConfig` (a shipped config, a YAML file, ...).
        name: A protocol of :func:`alta.run.protocols.list_protocols`.

    Returns:
        The new :class:`~alta.run.config.RunConfig` (``config`` is not changed).

    Raises:
        ConfigError: an unknown protocol.
    """
    values = {CONFIG_KEYS[knob]: value for knob, value in _protocol_quirks(name).items() if knob in CONFIG_KEYS}
    for key, value in values.items():
        section, attr = key.split(".")
        config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{attr: value})})
    return dataclasses.replace(config, protocol=get_protocol(name).name)


#: Keys that say what a run is *of*, not how it follows its protocol: the dataset, the method, the
#: backbone architecture, the seed, with or without replay (the ``sgd_*`` lower bound), the joint
#: upper bound, the headline setting, whether the zero-shot baseline is measured, the test batch
#: size and the kernels' determinism. The split is compared as built (``split`` of
#: :func:`protocol_deviations`), the weights by :func:`weights_deviation`; every other key that
#: changes results is compared with the protocol.
EXPERIMENT_KEYS = ("seed", "protocol", "preset", "deterministic", "data.dataset", "data.shots", "data.shot_seed",
                   "data.joint", "data.split",
                   "data.num_experiences", "data.classes_per_experience", "data.initial_classes", "model.method",
                   "model.visual", "model.pretrained", "model.backbone_seed", "buffer.replay", "eval.il_setting",
                   "eval.zeroshot_baseline", "eval.batch_size")
JOINT_EPOCHS = 100  # the epochs of the joint_* configs (the reference's configs/joint_*.yaml)


def protocol_deviations(config, *, split=None) -> dict[str, dict[str, Any]]:
    """Every setting of ``config`` that changes results and differs from what ``config.protocol``
    runs: ``{name: {"protocol": value, "config": value}}``, recorded in the summary (and noted by
    ``alta report``) so that a number is never attributed to a protocol it did not follow.

    Compared are the protocol's knobs (named as in :class:`Protocol`: ``epochs``, ``lr``,
    ``class_order``, ...; a joint run's epochs against the joint configs' 100); every other key
    that changes results (named by its config key: ``data.max_train_per_class``,
    ``data.class_names``, ``data.class_order_seed``, ``data.test_transform``, ``data.options``,
    ``train.schedule``, ...) against its value in alta's default configuration, which both
    protocols share; ``weights``: a backbone without OpenAI's CLIP weights; ``split``: a split
    other than the dataset's benchmark split. Operational keys (device, data root, workers) and
    :data:`EXPERIMENT_KEYS` (what the run is of) are not deviations.

    Args:
        config: A :class:`~alta.run.config.RunConfig`.
        split: The classes of each experience of the sequential split as built (a joint run's
            evaluation split), to compare with the dataset's benchmark split; ``None``: not
            compared.
    """
    out: dict[str, dict[str, Any]] = {}
    knob_keys = {}
    for knob, setting in get_protocol(config.protocol).settings().items():
        key = CONFIG_KEYS.get(knob)
        if key is None:
            continue
        knob_keys[key] = knob
        section, attr = key.split(".")
        value = getattr(getattr(config, section), attr)
        expected = JOINT_EPOCHS if knob == "epochs" and config.data.joint else setting.value
        if isinstance(value, (list, tuple)) and isinstance(expected, (list, tuple)):
            value, expected = list(value), list(expected)
        if value != expected:
            out[knob] = {"protocol": expected, "config": list(value) if isinstance(value, tuple) else value}
    default = type(config)()  # alta's defaults: the paper's values, which both protocols share outside the knobs
    # the fields that change results (a mapping such as data.class_names is one field)
    keys = dict.fromkeys(".".join(k.split(".")[:2]) for k in (*config.result_values(), *default.result_values()))
    alternating = config.train.schedule != default.train.schedule
    for key in keys:
        if key in knob_keys or key in EXPERIMENT_KEYS or key == "data.options":
            continue
        if key.startswith("train.schedule_") and not alternating:
            continue  # the period, unit and start of an alternating schedule
        value, expected = _field(config, key), _field(default, key)
        if value != expected:
            out[key] = {"protocol": expected, "config": list(value) if isinstance(value, tuple) else value}
    # a dataset per experience (a sequence) has no dataset options and no benchmark split of its own
    options = {} if config.data.is_sequence else _changed_options(config.data.dataset, config.data.options)
    if options:
        out["data.options"] = {"protocol": {k: v for k, (v, _) in options.items()},
                               "config": {k: v for k, (_, v) in options.items()}}
    weights = weights_deviation(config.model.visual, config.model.pretrained)
    if weights is not None:
        out["weights"] = {"protocol": "OpenAI CLIP weights (RN50, ViT-B/16, ...)", "config": weights}
    if config.data.is_sequence:
        return out
    benchmark = DATASETS.get(config.data.dataset).classes_per_experience
    if split is not None and benchmark is not None:
        sizes = [int(n) for n in split]
        if sizes != [benchmark] * (sum(sizes) // benchmark) or sum(sizes) % benchmark:
            out["split"] = {"protocol": f"{sum(sizes) // benchmark} experiences x {benchmark} classes",
                            "config": _split_text(sizes)}
    return out


def _field(config, key: str) -> Any:
    """The value of ``config`` at ``key`` (``"seed"``, ``"data.class_names"``)."""
    section, _, attr = key.partition(".")
    return getattr(getattr(config, section), attr) if attr else getattr(config, section)


def _split_text(sizes: list[int]) -> str:
    if len(set(sizes)) == 1:
        return f"{len(sizes)} experiences x {sizes[0]} classes"
    return f"{len(sizes)} experiences: {' + '.join(map(str, sizes))} classes"


def _changed_options(dataset: str, options: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The dataset options given with a value other than the loader's default:
    ``{name: (default, given)}``."""
    load = DATASETS.get(dataset).load
    changed = {}
    for name, value in (options or {}).items():
        parameter = inspect.signature(load).parameters.get(name)
        default = parameter.default if parameter is not None else inspect.Parameter.empty
        if default is inspect.Parameter.empty or value != default:
            changed[name] = (None if default is inspect.Parameter.empty else default, value)
    return changed


def weights_deviation(visual: str, pretrained: str | None) -> str | None:
    """How a backbone's weights differ from OpenAI's CLIP weights, which both protocols use
    (``None`` when they are OpenAI's: an OpenAI CLIP name without ``pretrained``)."""
    if pretrained is None and visual in list_backbones(pretrained=True):
        return None
    if visual in list_backbones(pretrained=False):
        return f"{visual} (random weights)"
    return f"{visual} ({pretrained})" if pretrained is not None else visual


def protocol_class_names(config) -> list[str] | None:
    """The class names ``config.protocol`` gives the stream, or ``None`` for the dataset's own:
    ``reference`` uses the reference code's names for its datasets (its curated Tiny-ImageNet
    names, CIFAR names with underscores); class names set in the config win."""
    if get_protocol(config.protocol).settings()["class_names"].value != "reference":
        return None
    if getattr(config.data, "class_names", None) is not None or getattr(config.data, "is_sequence", False):
        return None  # a multi-domain sequence: each dataset's own names
    return reference_class_names(config.data.dataset)
