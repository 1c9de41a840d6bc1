"""The sections of a run's configuration that only a run has: its data, its model, its
training loop and its evaluation.

Each is a frozen dataclass with ``from_dict`` (unknown keys refused by name) and its own checks
(:class:`~alta.config.ConfigSection`); :class:`~alta.run.config.RunConfig` holds them with the
option sets of the pieces (:class:`~alta.learner_config.LearnerConfig` inside :class:`ModelConfig`,
:class:`~alta.buffer.BufferConfig`, :class:`~alta.optim.OptimConfig`). The loop's values
(epochs, batch sizes, cache mode, evaluation period) are declared here with the loop's defaults
and validated once, by the :class:`~alta.loop.LoopConfig` the run builds from them
(:attr:`alta.run.config.RunConfig.loop`).

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023 (reference code github.com/vijaylee/ALTA, ``configs/*.yaml``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch

from ..backbones import load_backbone
from ..config import (
    ConfigSection,
    check_choice,
    check_int,
    check_seed,
    closest_choice,
    default_of,
    resolve_name,
    set_canonical,
)
from ..data import (
    DATASETS,
    SEQUENCES,
    Experience,
    ExperienceDataset,
    MultiDomainStream,
    ScenarioStream,
    load_sources,
    parse_split,
)
from ..data.datasets import DataRootError, LabelledSource
from ..data.transforms import TRANSFORM_PRESETS
from ..errors import ConfigError, DataError
from ..learner_config import LearnerConfig
from ..loop.config import LoopConfig
from ..loop.evaluation import IL_SETTINGS
from ..schedule import AlternatingSchedule

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "EvalConfig", "TEXT_TEMPLATES", "class_templates"]

TEXT_TEMPLATES = ("single", "first", "ensemble")


@dataclass(frozen=True)
class DataConfig(ConfigSection):
    """The stream of a run (YAML section ``data``): the arguments of :meth:`ScenarioStream.from_name`.

    Attributes:
        dataset: A name of ``alta list datasets`` (``seq-cifar10``, ``seq-cifar100``,
            ``seq-tinyimagenet``, ``digits``, ``fashion-mnist``, ``image-folder``,
            ``imagenet-r``, ``cub200``, ``caltech101``, ``imagenet-subset``), or of a
            multi-domain sequence (``alta list sequences``: ``mtil-order1``, ``xtail``, the
            stand-in ``standin``, ...): a dataset per experience
            (:class:`~alta.data.MultiDomainStream`); the split and class-order keys do not apply.
        root: Folder holding the data (``None``: none). Refused for a dataset that reads no
            files (``digits``): it would be ignored. For a sequence, the folder holding its
            datasets (each read from its usual folder name under it, see
            :class:`~alta.data.multidomain.SequenceEntry`).
        roots: For a sequence, ``{dataset: folder}``: a dataset's own folder (wins over ``root``).
        shots: For a sequence, training images kept per class (5-shot MTIL, 16-shot X-TAIL),
            drawn from ``shot_seed``; ``None``: all of them.
        shot_seed: Seed of the few-shot draw; ``None``: the run's seed.
        download: Let torchvision download CIFAR-10/100 or Fashion-MNIST into ``root``
            (refused for the other datasets, which cannot be downloaded).
        split: The split as the CLIP continual-learning papers write it, ``B50-Inc10``
            (:func:`~alta.data.splits.parse_split`), instead of the counts below.
        num_experiences: T; ``None`` with ``classes_per_experience`` ``None`` gives the
            benchmark's split (5 x 2, 10 x 10, 10 x 20).
        classes_per_experience: Classes per experience (after the first one when
            ``initial_classes`` is set; ``None``: from ``num_experiences``).
        initial_classes: Classes of the first experience (101 classes: 11, then 10 x 9).
        class_order: Class order: a list of original ids, a named order (``icarl-1993``, the
            iCaRL/PyCIL NumPy permutation under seed 1993; ``dytox-cifar100``) or the path of a
            file of ids. ``None`` with ``class_order_seed`` ``None``: the native order (ALTA's).
        class_order_seed: Draw the class order as a seeded permutation (``torch.randperm``).
        class_names: Readable class names for CLIP's prompts: a list in label order, a
            ``{folder: name}`` mapping, or the path of a file with one name per line or
            ``folder<TAB>name`` lines (Tiny-ImageNet's ``words.txt``). ``None``: the dataset's.
        joint: The joint upper bound: one experience with every class, evaluated per
            experience of the sequential split given by the keys above (its row of the accuracy
            matrix lines up with a continual run's).
        options: Options of the dataset (``alta list datasets``), e.g. ``{split_seed: 1}`` for
            ``imagenet-r``/``caltech101``, ``{class_list: FILE}`` for ``imagenet-subset``.
        transform: Training transform preset (``reference``: the reference code's
            RandomResizedCrop + flip with the dataset's mean/std; ``clip``; ``plain``).
        test_transform: Test transform preset (``None``: the test side of ``transform``).
        max_train_per_class: Keep only the first N training images of every class (quick
            runs; ``None``: all).
        max_test_per_class: Keep only the first N test images of every class.
        num_workers: DataLoader worker processes.
    """

    _SECTION: ClassVar[str] = "data"
    # the keys that fix the split: one of them set on top of a config replaces the config's split
    SPLIT_KEYS: ClassVar[tuple[str, ...]] = ("split", "num_experiences", "classes_per_experience", "initial_classes")
    ORDER_KEYS: ClassVar[tuple[str, ...]] = ("class_order", "class_order_seed")

    dataset: str = "seq-cifar10"
    root: str | None = None
    roots: dict[str, str] = dataclasses.field(default_factory=dict)
    shots: int | None = None
    shot_seed: int | None = None
    download: bool = False
    split: str | None = None
    num_experiences: int | None = None
    classes_per_experience: int | None = None
    initial_classes: int | None = None
    class_order: tuple[int, ...] | str | None = None
    class_order_seed: int | None = None
    class_names: tuple[str, ...] | dict[str, str] | str | None = None
    joint: bool = False
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    transform: str = "reference"
    test_transform: str | None = None
    max_train_per_class: int | None = None
    max_test_per_class: int | None = None
    num_workers: int = LoopConfig.num_workers  # validated by the loop (RunConfig.loop)

    @property
    def is_sequence(self) -> bool:
        """Whether ``dataset`` names a multi-domain sequence (``alta list sequences``)."""
        return self.dataset in SEQUENCES and self.dataset not in DATASETS

    def __post_init__(self) -> None:
        if isinstance(self.dataset, str) and self.dataset in SEQUENCES and self.dataset not in DATASETS:
            self._check_sequence()
            return
        try:
            set_canonical(self, "dataset", resolve_name(DATASETS, self.dataset, "data.dataset"))
        except ConfigError as exc:
            message = str(exc)
            best = closest_choice(self.dataset, [*DATASETS.names(), *SEQUENCES.names()])
            if isinstance(self.dataset, str) and best in SEQUENCES.names():  # 'mtil-ordr1': not 'cil-food'
                message = re.sub(r"did you mean '[^']*'\?", f"did you mean the multi-domain sequence {best!r}?", message)
                if best not in message:
                    message = message.replace(f"{self.dataset!r}.", f"{self.dataset!r}; did you mean the multi-domain "
                                              f"sequence {best!r}?", 1)
            raise ConfigError(f"{message}; multi-domain sequences (a dataset per experience): "
                              f"{', '.join(SEQUENCES.names())}") from None
        for key in ("shots", "shot_seed"):
            if getattr(self, key) is not None:
                raise ConfigError(f"config key 'data.{key}' is {getattr(self, key)!r} but dataset {self.dataset!r} is "
                                  f"one dataset split into experiences; few-shot draws are for multi-domain "
                                  f"sequences (`alta list sequences`), e.g. --dataset xtail --shots 16")
        if self.roots:
            raise ConfigError(f"config key 'data.roots' is {self.roots!r} but dataset {self.dataset!r} is one dataset; "
                              f"give its folder with data.root (--data-root)")
        spec = DATASETS.get(self.dataset)
        if self.root is not None and not spec.takes_root:
            raise ConfigError(
                f"config key 'data.root' is {self.root!r} but dataset {self.dataset!r} reads no files, so the "
                f"root would be ignored; drop data.root (--data-root), or choose a dataset that reads it, e.g. "
                f"--dataset image-folder for your own train/<class>/ + test/<class>/ folders"
            )
        if self.download and not spec.can_download:
            can = ", ".join(n for n in DATASETS.names() if DATASETS.get(n).can_download)
            raise ConfigError(
                f"config key 'data.download' is true but dataset {self.dataset!r} cannot be downloaded (only "
                f"{can} can); drop data.download (--download) and put the files under data.root (--data-root)"
            )
        set_canonical(self, "transform", resolve_name(TRANSFORM_PRESETS, self.transform, "data.transform"))
        if self.test_transform is not None:
            set_canonical(self, "test_transform",
                          resolve_name(TRANSFORM_PRESETS, self.test_transform, "data.test_transform"))
        for key in ("num_experiences", "classes_per_experience", "initial_classes", "max_train_per_class",
                    "max_test_per_class"):
            check_int(getattr(self, key), f"data.{key}", low=1, optional=True)
        if self.split is not None:
            try:
                split = parse_split(self.split)
            except ConfigError as exc:
                raise ConfigError(f"config key 'data.split': {exc}") from None
            counts = [f"data.{k}" for k in self.SPLIT_KEYS[1:] if getattr(self, k) is not None]
            if counts:
                raise ConfigError(
                    f"config key 'data.split' is {self.split!r} but {', '.join(counts)} are set too; a split already "
                    f"fixes the counts: give data.split alone (--split {split}), or the counts alone"
                )
            set_canonical(self, "split", str(split))
        if self.class_order_seed is not None:
            check_seed(self.class_order_seed, "data.class_order_seed")
            if self.class_order is not None:
                raise ConfigError(
                    f"config keys 'data.class_order' ({self.class_order!r}) and 'data.class_order_seed' "
                    f"({self.class_order_seed}) are both set; give one: an explicit, named or file order, or a "
                    f"seeded permutation"
                )
        if isinstance(self.class_order, list):
            set_canonical(self, "class_order", tuple(self.class_order))
        if isinstance(self.class_names, list):
            set_canonical(self, "class_names", tuple(self.class_names))
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise ConfigError(f"config key 'data.options' must be a mapping of option names to values, got "
                              f"{self.options!r}; e.g. --set data.options.split_seed=1")
        try:
            spec.check_options(self.options)
        except ConfigError as exc:
            raise ConfigError(f"config key 'data.options': {exc}") from None
        set_canonical(self, "options", dict(self.options))

    def _check_sequence(self) -> None:
        """The checks of a multi-domain sequence (``dataset`` a name of ``alta list sequences``)."""
        set_canonical(self, "dataset", SEQUENCES.resolve(self.dataset))
        spec = SEQUENCES.get(self.dataset)
        given = [f"data.{k}" for k in (*self.SPLIT_KEYS, *self.ORDER_KEYS, "class_names") if getattr(self, k) is not None]
        given += [f"data.{k}" for k in ("joint", "download") if getattr(self, k)]
        given += ["data.options"] if self.options else []
        if given:
            raise ConfigError(
                f"config key(s) {', '.join(given)} do not apply to the multi-domain sequence {self.dataset!r}: its "
                f"experiences are its datasets ({', '.join(e.label for e in spec.entries)}), each with its own "
                f"classes and names; drop them (data.shots and data.roots configure a sequence)")
        check_int(self.shots, "data.shots", low=1, optional=True,
                  why="training images kept per class (5: MTIL few-shot, 16: X-TAIL), or null for all")
        if self.shot_seed is not None:
            check_seed(self.shot_seed, "data.shot_seed")
        if not isinstance(self.roots, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                          for k, v in self.roots.items()):
            raise ConfigError(f"config key 'data.roots' must map dataset names to folders, got {self.roots!r}; e.g. "
                              f"--set data.roots.seq-cifar10=/data/cifar10")
        names = [e.dataset for e in spec.entries]
        unknown = sorted(set(self.roots) - set(names))
        if unknown:
            raise ConfigError(f"config key 'data.roots' names {unknown}, not datasets of {self.dataset!r}: {names}")
        set_canonical(self, "roots", dict(self.roots))
        set_canonical(self, "transform", resolve_name(TRANSFORM_PRESETS, self.transform, "data.transform"))
        if self.test_transform is not None:
            set_canonical(self, "test_transform",
                          resolve_name(TRANSFORM_PRESETS, self.test_transform, "data.test_transform"))
        for key in ("max_train_per_class", "max_test_per_class"):
            check_int(getattr(self, key), f"data.{key}", low=1, optional=True)

    def load_sources(self) -> tuple[LabelledSource, LabelledSource]:
        """Read the dataset's ``(train, test)`` sources (file lists or arrays, no images decoded):
        the check that the data is there, to pass to :meth:`build` as ``sources``.

        For a sequence, ``{dataset: (train, test)}`` of each of its datasets.

        Raises:
            ConfigError: an option the dataset does not take.
            DataError: missing or malformed data (:class:`~alta.data.DataRootError`: the root).
        """
        if self.is_sequence:
            return MultiDomainStream.sequence_sources(self.dataset, root=self.root, roots=self.roots)
        try:
            return load_sources(DATASETS.resolve(self.dataset), root=self.root, download=self.download,
                                options=self.options or None)
        except DataError as exc:
            raise _classify_data_error(exc) from None

    def build(self, *, resolution: int, class_names=None, sources=None, seed: int = 0,
              ) -> tuple[ScenarioStream | MultiDomainStream, list[Experience]]:
        """The stream at the backbone's ``resolution`` and its experiences, with the first
        ``max_train_per_class`` / ``max_test_per_class`` samples of every class kept.

        Args:
            resolution: Image size of the backbone.
            class_names: Names replacing the dataset's when ``data.class_names`` is not set (e.g.
                a protocol's; see :meth:`ScenarioStream.from_name`), or ``None``.
            sources: What :meth:`load_sources` returned (read here when ``None``).
            seed: The run's seed (the few-shot draw's when ``shot_seed`` is ``None``).

        Raises:
            ConfigError: a bad split, class order or class names (named by their ``data.`` key).
            DataError: missing or malformed data (:class:`~alta.data.DataRootError`: the root).
        """
        if self.is_sequence:
            stream = MultiDomainStream.from_sequence(
                self.dataset, root=self.root, roots=self.roots, transform=self.transform,
                test_transform=self.test_transform, resolution=resolution, shots=self.shots,
                shot_seed=seed if self.shot_seed is None else self.shot_seed, sources=sources)
            return stream, self.subsample(list(stream))
        class_order = list(self.class_order) if isinstance(self.class_order, tuple) else self.class_order
        # data.class_names (the user's) wins over the names a protocol gives
        names = class_names if self.class_names is None else (
            list(self.class_names) if isinstance(self.class_names, tuple) else self.class_names)
        try:
            stream = ScenarioStream.from_name(
                self.dataset, root=self.root, download=self.download, transform=self.transform,
                test_transform=self.test_transform, resolution=resolution, num_experiences=self.num_experiences,
                classes_per_experience=self.classes_per_experience, initial_classes=self.initial_classes,
                split=self.split, class_order=class_order, seed=self.class_order_seed, class_names=names,
                joint=self.joint, dataset_options=self.options or None, sources=sources,
            )
        except DataError as exc:
            raise _classify_data_error(exc) from None
        except ConfigError as exc:
            message = str(exc)
            if "config key" not in message and any(k in message for k in self.SPLIT_KEYS):
                raise ConfigError(
                    f"{self.dataset}: {message} (config keys data.split, data.num_experiences, "
                    f"data.classes_per_experience, data.initial_classes; on the command line --split "
                    f"B<base>-Inc<increment>, --num-experiences T or --initial-classes N)") from None
            if "config key" not in message and "class_order" in message:
                raise ConfigError(f"config key 'data.class_order': {message}") from None
            raise
        return stream, self.subsample(list(stream))

    def subsample(self, experiences: Sequence[Experience]) -> list[Experience]:
        """The experiences with only the first ``max_train_per_class`` / ``max_test_per_class``
        samples of every class (all when both are ``None``)."""
        if self.max_train_per_class is None and self.max_test_per_class is None:
            return list(experiences)
        return [
            dataclasses.replace(e, train=_first_per_class(e.train, self.max_train_per_class),
                                test=_first_per_class(e.test, self.max_test_per_class))
            for e in experiences
        ]


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


def _classify_data_error(exc: DataError) -> Exception:
    """What a :class:`DataError` of :meth:`ScenarioStream.from_name` is about: the data root
    (:class:`~alta.data.DataRootError`, kept: the command line adds where to put the data), the
    configuration (the class order, class names: a :class:`ConfigError`), or the data itself
    (kept)."""

    if isinstance(exc, DataRootError):
        return exc
    message = str(exc)
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    if "read_class_names" in frames or "read_name_map" in frames:
        return ConfigError(f"config key 'data.class_names': {message}")
    if any(name in ("_resolve_order", "_check_names") for name in frames) or message.startswith(
            ("class_order", "class names", "class_names")):
        return ConfigError(f"config key 'data.class_order': {message}" if "class_order" in message else message)
    return exc


@dataclass(frozen=True)
class ModelConfig(LearnerConfig):
    """The ``model`` section of a run: the backbone (:func:`alta.load_backbone`) and the learner
    (:class:`LearnerConfig`).

    Attributes:
        visual: Backbone (``alta list backbones``: ``RN50``, ``ViT-B/16``, ``tiny-vit``, ...,
            ``open_clip:ViT-B-16``, ``hf:<id or folder>``) or the path of a local CLIP checkpoint.
            Its input resolution sets the image size.
        pretrained: Weights of an ``open_clip:`` backbone: a tag (``laion400m_e32``) or a weights
            file; ``None``: random weights (see :func:`alta.load_backbone`).
        precision: Frozen encoders' precision: ``auto`` (fp16 on CUDA), ``fp32``, ``fp16``, ``bf16``.
        backbone_seed: Seed of random-weight backbones (``tiny-vit``, ``random-RN50``, ...).
        download_root: Folder of pretrained CLIP weights (``None``: ``~/.cache/clip``).
        download_weights: Download missing pretrained weights (needs the internet).
        text_templates: The hand-written prompts of w1 (and of the zero-shot baseline):
            ``single`` (``model.template`` for every class, ALTA's), ``first`` (each dataset's
            first template: ZSCL's training prompt) or ``ensemble`` (each dataset's templates,
            their text features averaged: ZSCL's evaluation, open_clip's zero-shot classifier).
            ``first`` and ``ensemble`` need a stream that knows its datasets' templates (a
            multi-domain sequence).
    """

    visual: str = "RN50"
    pretrained: str | None = default_of(load_backbone, "pretrained")
    precision: str = default_of(load_backbone, "precision")
    backbone_seed: int = default_of(load_backbone, "seed")
    download_root: str | None = default_of(load_backbone, "download_root")
    download_weights: bool = default_of(load_backbone, "download")
    text_templates: str = "single"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.text_templates, "model.text_templates", TEXT_TEMPLATES)
        if not isinstance(self.visual, str) or not self.visual:
            raise ConfigError(f"config key 'model.visual' must be a backbone name or a file path, got {self.visual!r}")
        if self.pretrained is not None and (not isinstance(self.pretrained, str) or not self.pretrained):
            raise ConfigError(f"config key 'model.pretrained' must be a weights tag or a file path (or null for random "
                              f"weights), got {self.pretrained!r}")
        check_seed(self.backbone_seed, "model.backbone_seed")
        check_choice(self.precision, "model.precision", ("auto", "fp32", "fp16", "bf16"))

    def build_backbone(self, *, device: torch.device):
        """Load the backbone (:func:`alta.load_backbone` with these values).

        Raises:
            BackboneError: unknown backbone, weights unavailable offline.
        """
        return load_backbone(self.visual, pretrained=self.pretrained, device=device, precision=self.precision,
                             download_root=self.download_root, download=self.download_weights, seed=self.backbone_seed)


def class_templates(stream, text_templates: str) -> list[tuple[str, ...] | None] | None:
    """The learner's ``class_templates`` for ``model.text_templates`` (see :class:`ModelConfig`).

    Raises:
        ConfigError: ``first`` or ``ensemble`` for a stream whose datasets' templates are unknown.
    """
    if text_templates == "single":
        return None
    known = getattr(stream, "class_templates", None)
    if known is None or all(t is None for t in known):
        raise ConfigError(
            f"config key 'model.text_templates' is {text_templates!r} but the stream {stream.name!r} does not know "
            f"its datasets' prompt templates (the multi-domain sequences of `alta list sequences` do); use "
            f"'single' (model.template for every class)")
    return [t if t is None or text_templates == "ensemble" else t[:1] for t in known]


@dataclass(frozen=True)
class TrainConfig(ConfigSection):
    """The training loop of a run (YAML section ``train``): the loop's epochs, batch size and
    cache mode, and the :class:`~alta.AlternatingSchedule`.

    The loop's values take the loop's defaults and are validated by the
    :class:`~alta.loop.LoopConfig` the run builds from them (:attr:`RunConfig.loop
    <alta.run.config.RunConfig.loop>`); the schedule's by the schedule.

    Attributes:
        epochs: Epochs per experience (30; joint training 100); with ``iterations``, the
            rounds the budget is cut into (the unit of checkpoints, of the learning-rate
            schedule and of ``eval.every``).
        iterations: Training budget in optimizer steps per experience, the data cycled in
            shuffled passes (ZSCL and MoE-Adapters: 1000 at batch 64); ``None``: ``epochs``
            passes over the data.
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

    _SECTION: ClassVar[str] = "train"

    epochs: int = LoopConfig.epochs
    iterations: int | None = LoopConfig.iterations
    batch_size: int = LoopConfig.batch_size
    schedule: str = default_of(AlternatingSchedule, "mode")
    schedule_period: int = default_of(AlternatingSchedule, "period")
    schedule_unit: str = default_of(AlternatingSchedule, "unit")
    schedule_start: str = default_of(AlternatingSchedule, "start")
    train_cache: str = LoopConfig.train_cache

    def __post_init__(self) -> None:
        try:
            self.build_schedule()  # the schedule checks its own values
        except ConfigError as exc:
            words = str(exc).split()  # "schedule mode|unit|start|period must ..."
            key = {"mode": "schedule"}.get(words[1], f"schedule_{words[1]}")
            raise ConfigError(f"config key 'train.{key}': {exc}") from None

    def build_schedule(self) -> AlternatingSchedule:
        """A fresh :class:`~alta.AlternatingSchedule` with these values."""
        return AlternatingSchedule(self.schedule, period=self.schedule_period, unit=self.schedule_unit,
                                   start=self.schedule_start)


@dataclass(frozen=True)
class EvalConfig(ConfigSection):
    """Evaluation in a run (YAML section ``eval``, the reference's ``eval``).

    ``every``, ``batch_size`` and ``before_snapshot`` are the loop's (validated by its
    :class:`~alta.loop.LoopConfig`).

    Attributes:
        every: Evaluate the experiences seen so far every this many epochs (10; 0: only at the
            end of each experience). Both settings are computed at every evaluation.
        batch_size: Test batch size (does not change results).
        il_setting: The headline setting, ``class-il`` or ``task-il`` (the reference's
            ``--il_setting``).
        zeroshot_baseline: Evaluate zero-shot CLIP on every experience (the baseline of
            forward transfer; cheap, it shares the cached test features).
        before_snapshot: Score the experience just trained before its prompts are snapshotted,
            as the reference code does (``LoopConfig.eval_before_snapshot``; set by
            ``--protocol reference``).
    """

    _SECTION: ClassVar[str] = "eval"

    every: int = LoopConfig.eval_every
    batch_size: int = LoopConfig.eval_batch_size
    il_setting: str = "class-il"
    zeroshot_baseline: bool = True
    before_snapshot: bool = LoopConfig.eval_before_snapshot

    def __post_init__(self) -> None:
        check_choice(self.il_setting, "eval.il_setting", IL_SETTINGS)
        if not isinstance(self.zeroshot_baseline, bool):
            raise ConfigError(f"config key 'eval.zeroshot_baseline' must be true or false, got "
                              f"{self.zeroshot_baseline!r}")
