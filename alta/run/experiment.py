"""The objects of one run, built from its :class:`~alta.run.config.RunConfig`.

One continual-learning run of ALTA (Li et al., "Cross-Modal Alternating Learning with Task-Aware
Representations for Continual Learning", IEEE TMM 2023; reference code github.com/vijaylee/ALTA),
built from alta's public pieces only::

    RunConfig ──> Experiment: backbone, stream, learner, buffer, schedule, optimizer
              ──> zero-shot baseline ──> run_stream(..., callbacks=[...]) ──> summary

The driver (:mod:`alta.run.driver`) runs it; what it writes are the callbacks of
:mod:`alta.run.writers`.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import distributed as dist
from ..backbones import BACKBONES, list_backbones, split_source
from ..config import default_of
from ..data import MultiDomainStream
from ..errors import AltaError, ConfigError, PluginError
from ..learner import CrossModalLearner
from ..loop.cache import FeatureCache
from ..loop.evaluation import evaluate, parameter_counts
from ..loop.protocol import check_learner
from ..losses import build_loss_terms
from ..methods import METHODS, LearnerMethod
from ..plugins import PluginOrigin
from ..policies import BUFFER_POLICIES
from ..seeding import derive_seed
from .config import RunConfig
from .presets import preset_deviations
from .protocols import protocol_class_names
from .sections import class_templates
from .summary import random_backbone_note

__all__ = ["Experiment", "check_backbone_name", "build_learner"]

logger = logging.getLogger("alta.run")

def check_backbone_name(visual: str) -> None:
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


def build_learner(config: RunConfig, backbone, class_names, **text_options):
    """The run's learner: a :class:`~alta.CrossModalLearner` for ALTA's variants (the ``model``
    keys, and ``text_options``: the ``class_templates`` and ``class_domains`` of the stream,
    :meth:`Experiment.text_options`), or for a learner plug-in (:class:`~alta.methods.LearnerMethod`)
    what its factory builds from ``build(backbone, class_names=..., seed=config.seed,
    **model.method_options)``, with ``loss_terms=[...]`` when ``model.loss_terms`` names any.

    Raises:
        PluginError: the factory raises, or builds an object that is not a learner of the
            :class:`alta.Learner` protocol (the missing members named).
    """
    m = config.model
    spec = METHODS.get(m.method)
    if not isinstance(spec, LearnerMethod):
        return CrossModalLearner(backbone, class_names=class_names, seed=config.seed, **text_options,
                                 **m.learner_options())
    kwargs = dict(m.method_options)
    if m.loss_terms:
        kwargs["loss_terms"] = build_loss_terms(m.loss_terms)
    try:
        learner = spec.build(backbone, class_names=list(class_names), seed=config.seed, **kwargs)
    except AltaError:
        raise
    except Exception as exc:  # noqa: BLE001 - the plug-in's own error, named
        raise PluginError(f"{METHODS.describe(spec.name)} failed to build its learner: {type(exc).__name__}: "
                          f"{exc}") from exc
    try:
        check_learner(learner)
    except ConfigError as exc:
        raise PluginError(f"{METHODS.describe(spec.name)} built {exc}") from None
    if bool(learner.replays) != spec.replay:
        raise PluginError(f"{METHODS.describe(spec.name)} is registered with replay={spec.replay} but its learner "
                          f"says replays={bool(learner.replays)}; make them agree (the run builds a buffer for a "
                          f"method that replays)")
    return learner


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
                                                              class_names=protocol_class_names(config), sources=sources,
                                                              seed=config.seed)
            experiences = self.experiences
            # a joint stream trains on one experience and is evaluated on those of the sequential split
            self.eval_experiences = config.data.subsample(self.stream.eval_experiences) if config.data.joint else experiences
            logger.info("stream %s: %s, %d train / %d test images at %d px", self.stream.name,
                        _split_text([len(e.classes) for e in experiences]), sum(len(e.train) for e in experiences),
                        sum(len(e.test) for e in experiences), backbone.input_resolution)
            if config.data.joint:
                logger.info("joint training, evaluated per experience of the sequential split: %s",
                            _split_text([len(e.classes) for e in self.eval_experiences]))
            if isinstance(self.stream, MultiDomainStream):
                logger.info("a dataset per experience (%s): %s; %s; prompts %s", self.stream.kind,
                            ", ".join(f"{n} ({c})" for n, c in zip(self.stream.domain_names,
                                                                  self.stream.classes_per_experience)),
                            f"{self.stream.shots}-shot (seed {self.stream.shot_seed})" if self.stream.shots
                            else (f"at most {config.data.max_train_per_class} training images per class"
                                  if config.data.max_train_per_class else "every training image"),
                            config.model.text_templates)
            else:
                logger.info("class order %s (%s); class names from %s: %s", self.stream.class_order_source,
                            _short(self.stream.class_order), self.stream.class_names_source,
                            _short(self.stream.class_names))
        self._check_buffer_size()
        deviations = preset_deviations(config)
        if deviations:
            logger.warning("this run departs from the preset %s in %s (recorded in summary.json as preset_deviations)",
                           config.preset, "; ".join(f"{k} {v['config']!r} (preset: {v['preset']!r})"
                                                    for k, v in deviations.items()))
        elif config.preset is not None:
            logger.info("preset %s: followed in every setting", config.preset)
        self.method = spec = METHODS.get(m.method)  # a MethodSpec (ALTA's variants) or a LearnerMethod (a plug-in)
        self.learner = learner = build_learner(config, backbone, self.stream.class_names, **self.text_options())
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
                    spec.name, spec.formula, m.head, self.buffer_size or "off", self.num_trainable_parameters,
                    config.seed, device, config.protocol)
        for record in config.plugins:
            logger.info("plug-in %s %r: %s", record["kind"], record["name"],
                        PluginOrigin.from_record(record).describe())

    def _check_buffer_size(self) -> None:
        """Refuse a per-class buffer (herding) too small for ``per_class`` exemplars of every class,
        before training.

        Raises:
            ConfigError: ``buffer.size`` below ``buffer.per_class`` x the stream's classes.
        """
        b = self.config.buffer
        policy = BUFFER_POLICIES.get(b.policy)
        if not b.enabled or not policy.uses_per_class or not METHODS.get(self.config.model.method).replay:
            return
        per_class = b.per_class if b.per_class is not None else default_of(policy, "per_class")
        need = per_class * self.stream.num_classes
        if b.size < need:
            raise ConfigError(f"config key 'buffer.size' is {b.size} but the herding buffer keeps {per_class} exemplars "
                              f"of each of the stream's {self.stream.num_classes} classes: set buffer.size to at least "
                              f"{need} (--buffer-size {need}), or lower buffer.per_class")

    @property
    def buffer_size(self) -> int:
        """Capacity of the buffer used (0: none)."""
        return self.buffer.capacity if self.buffer is not None else 0

    @property
    def trains(self) -> bool:
        """Whether the method trains anything (``zeroshot`` does not)."""
        return self.method.trains

    @property
    def num_trainable_parameters(self) -> int:
        """Trainable scalars of the learner."""
        return parameter_counts(self.learner)["trainable"]

    def objects(self) -> dict[str, Any]:
        """The objects whose states a checkpoint holds (see :data:`alta.run.checkpoint.STATE_KEYS`)."""
        return {"learner": self.learner, "buffer": self.buffer, "schedule": self.schedule,
                "optimizer": self.optimizer, "scheduler": self.scheduler}

    @property
    def multi_domain(self) -> bool:
        """Whether the stream is a multi-domain sequence (a dataset per experience)."""
        return isinstance(self.stream, MultiDomainStream)

    def text_options(self) -> dict[str, Any]:
        """The learner's ``class_templates`` (``model.text_templates``) and, for a multi-domain
        stream, ``class_domains`` (names distinct within a dataset only)."""
        options: dict[str, Any] = {"class_templates": class_templates(self.stream, self.config.model.text_templates)}
        if self.multi_domain:
            options["class_domains"] = self.stream.class_to_experience
        return options

    def zeroshot_baseline(self, *, progress: bool = False) -> dict[str, list[float]]:
        """Zero-shot CLIP accuracy on every experience (the baseline of forward transfer), with
        the run's hand-written prompts (``model.text_templates``)."""
        m = self.config.model
        learner = CrossModalLearner(self.learner.backbone, class_names=self.stream.class_names, method="zeroshot",
                                    head="all", template=m.template, truncate_text=m.truncate_text,
                                    **self.text_options())
        zs = evaluate(learner, self.eval_experiences, batch_size=self.config.loop.eval_batch_size,
                      num_workers=self.config.loop.num_workers, cache=self.cache, progress=progress,
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
            "split_file": stream.split_info,
            "num_train": sum(len(e.train) for e in self.experiences),
            "num_test": sum(len(e.test) for e in self.eval_experiences),
            "text_templates": self.config.model.text_templates,
            **(self._domain_info() if self.multi_domain else {}),
        }

    def _domain_info(self) -> dict[str, Any]:
        """What the summary says about a multi-domain stream: its datasets, kind, few-shot draw
        and the templates its w1 and zero-shot baseline used."""
        stream, model = self.stream, self.config.model
        used = {name: (None if templates is None else
                       templates if model.text_templates == "ensemble" else templates[:1]) if
                model.text_templates != "single" else [model.template]
                for name, templates in stream.domain_templates.items()}
        info = {"domains": stream.domain_names, "stream_kind": stream.kind, "shots": stream.shots,
                "shot_seed": stream.shot_seed if stream.shots is not None else None, "templates": used,
                "domain_splits": stream.domain_split_info or None}
        if stream.kind == "domain":
            info["class_to_concept"] = stream.class_to_concept.tolist()
        return info


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
