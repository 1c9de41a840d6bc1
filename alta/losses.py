"""The loss of a training step, term by term: the :class:`LossTerm` seam and what a learner's
``loss`` returns.

ALTA's loss (Li et al., IEEE TMM 2023, reference ``main.py``; DER++, Buzzega et al., NeurIPS
2020) is ``CE(z, y) + alpha * CE(z_b, y_b) + beta * MSE(z_b, z_b_stored)``: three
:class:`LossTerm` s (:class:`CrossEntropy`, :class:`ReplayCrossEntropy`, :class:`ReplayMSE`),
to which a run adds any registered term it names (``model.loss_terms``; :data:`LOSS_TERMS`,
entry-point group ``alta.loss_terms``): an LwF-style distillation, another replay term, a
regulariser. :func:`step_loss` evaluates a learner's terms in order and sums them, weighted,
into a :class:`StepLoss`, which keeps each term with its weight and the number of items it
averages over, so the step (:func:`alta.train_step`) can log every term, and a data-parallel
step can weigh the shards of a global batch (:class:`alta.loop.parallel.DataParallelStep`)
without the learner or the terms knowing of processes.

A term is a small protocol (duck-typed; :class:`LossTerm` is a convenient base class):

- ``name``: how it is logged (``loss/<name>``) and checkpointed; ``weight``: its weight in the sum;
- ``term(inputs)`` with a :class:`LossInputs` (the step's inputs, outputs, memory and learner)
  returns a :class:`TermValue` ``(value, count)``, a 0-dim tensor with its graph that is the
  mean over ``count`` items, or ``None`` when it has nothing to add at this step;
- ``stores`` and ``items(inputs)``: the fields it needs stored per sample in the buffer, if any;
- state: a term that is an ``nn.Module`` keeps its state in buffers (``register_buffer``),
  checkpointed with the learner.
"""

from __future__ import annotations

import abc
import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
from torch import nn

from .errors import ConfigError, PluginError, StateError, TrainingError
from .registry import Registry
from .replay import replay_ce, replay_mse

__all__ = ["StepLoss", "TermValue", "LossInputs", "LossTerm", "CrossEntropy", "ReplayCrossEntropy", "ReplayMSE",
           "LOSS_TERMS", "step_loss", "build_loss_terms", "extra_loss_terms", "check_loss_term", "normalise_loss_terms",
           "RESERVED_NAMES", "loss_terms_of"]

#: Names a loss term may not take: the other statistics of a training step and epoch.
RESERVED_NAMES = ("loss", "correct", "epoch", "steps", "samples", "lr", "train_accuracy")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _valid_weight(weight: object) -> bool:
    """A term's weight: a finite number >= 0 (not a bool)."""
    return isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight) and weight >= 0


def loss_terms_of(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The loss terms among a step's or an epoch's statistics (``ce``, ``replay_ce``, ... and any
    extra term), by name, in order: every key but :data:`RESERVED_NAMES`."""
    return {key: value for key, value in stats.items() if key not in RESERVED_NAMES}


@dataclass(frozen=True)
class StepLoss:
    """The loss of one training batch (:meth:`CrossModalLearner.loss`), term by term.

    Every term is a mean over its own items (the batch's samples, the replayed items, the
    stored logits it compares), and ``counts`` says over how many: that is all a data-parallel
    step needs to weigh the shards of a global batch (:class:`alta.loop.parallel.DataParallelStep`),
    so the loss itself knows nothing of processes.

    Attributes:
        loss: The total loss ``sum(weights[k] * terms[k])``, with its graph (call ``backward``).
        terms: Each term's value with its graph, by name (ALTA: ``ce``, ``replay_ce``,
            ``replay_mse``; a term not computed at this step is a detached 0).
        weights: Each term's weight in ``loss`` (ALTA: 1, alpha, beta).
        counts: The items each term averages over (an int, or a 0-dim tensor where counting
            would synchronise the device); 0 for a term not computed at this step.
        logits: The batch's logits, detached, (B, C) (stored in the buffer: pre-step logits).
        image_features: f1 of the batch, detached, (B, D).
        labels: The batch's labels on the learner's device, (B,).
        experience_ids: The experience of each label, (B,).
        extra_items: What the loss terms store per sample besides (:attr:`LossTerm.stores`),
            detached, each (B, ...).
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, float]
    counts: dict[str, int | torch.Tensor]
    logits: torch.Tensor
    image_features: torch.Tensor
    labels: torch.Tensor
    experience_ids: torch.Tensor
    extra_items: dict[str, torch.Tensor] = field(default_factory=dict)

    def memory_items(self) -> dict[str, torch.Tensor]:
        """What the buffer stores for this batch: the fields of :data:`alta.replay.REPLAY_FIELDS`,
        and those the loss terms store."""
        return {"labels": self.labels, "image_features": self.image_features, "logits": self.logits,
                "experience_ids": self.experience_ids, **self.extra_items}

    def stats(self) -> dict[str, torch.Tensor]:
        """Detached 0-dim tensors (no host-device sync): ``loss``, every term by name, and
        ``correct`` (right predictions in the batch)."""
        with torch.no_grad():
            correct = (self.logits.argmax(dim=1) == self.labels).sum()
        return {"loss": self.loss.detach(), **{name: value.detach() for name, value in self.terms.items()},
                "correct": correct}


class TermValue(NamedTuple):
    """What a loss term returns: ``value``, the mean over ``count`` items.

    Attributes:
        value: 0-dim floating tensor with its graph.
        count: The items ``value`` averages over (an int, or a 0-dim tensor where counting them
            on the host would synchronise the device); a data-parallel step weighs the shards'
            values by their counts.
    """

    value: torch.Tensor
    count: int | torch.Tensor


class LossInputs:
    """What a loss term sees at a training step: the step's inputs, the learner's outputs, the
    memory and the learner.

    Attributes:
        learner: The learner (its state: ``experience_index``, its modules, ...).
        inputs: The batch as the step got it: images (B, 3, R, R) or frozen features (B, D).
        features: The frozen image features of the batch, (B, D).
        labels: Class ids on the learner's device, (B,).
        logits: The batch's logits, with their graph, (B, C).
        memory: The replayed memory (this rank's part), checked and on the learner's device:
            ``labels`` (M,), ``image_features`` (M, D), ``logits`` (M, C) (stored when the items
            were offered) and the fields the terms store; ``None`` without replay at this step.
        branches: The branches that learn at this step.

    Shape:
        B batch, C classes, D embedding dim, M replayed items.
    """

    def __init__(self, *, learner: Any, inputs: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                 logits: torch.Tensor, memory: Mapping[str, torch.Tensor] | None = None,
                 memory_logits: Callable[[], torch.Tensor] | torch.Tensor | None = None,
                 branches: frozenset[str] = frozenset()) -> None:
        self.learner, self.inputs, self.features, self.labels, self.logits = learner, inputs, features, labels, logits
        self.memory, self.branches = memory, frozenset(branches)
        self._memory_logits = memory_logits

    @property
    def memory_logits(self) -> torch.Tensor | None:
        """The current logits of the replayed items, with their graph, (M, C); computed once, at
        the first term that asks (``None`` without a memory)."""
        if callable(self._memory_logits):
            self._memory_logits = self._memory_logits()
        return self._memory_logits


class LossTerm(nn.Module, metaclass=abc.ABCMeta):
    """Base class of a loss term (the protocol is described in :mod:`alta.losses`).

    Subclasses set ``name`` (and ``stores``) and implement :meth:`forward`; a term with state
    registers buffers, which are checkpointed with the learner. A term has no trainable
    parameters: what it trains belongs to the learner.

    Args:
        weight: The term's weight in the step's loss (>= 0).

    Raises:
        ConfigError: a negative or non-finite weight.

    Examples:
        >>> class LogitNorm(LossTerm):
        ...     name = "logit_norm"
        ...     def forward(self, inputs):
        ...         return TermValue(inputs.logits.pow(2).mean(), inputs.logits.numel())
    """

    name: str = ""
    stores: tuple[str, ...] = ()

    def __init__(self, *, weight: float = 1.0) -> None:
        super().__init__()
        if not _valid_weight(weight):
            raise ConfigError(f"loss term {self.name or type(self).__name__!r}: weight must be a number >= 0, got "
                              f"{weight!r}")
        self.weight = float(weight)

    @abc.abstractmethod
    def forward(self, inputs: LossInputs) -> TermValue | None:
        """The term at this step (``None``: nothing to add); a subclass that does not define it
        cannot be instantiated (``TypeError``)."""

    def items(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        """What to store in the buffer for each sample of the batch: ``{field: (B, ...)}`` for
        every field of :attr:`stores` (called without gradients)."""
        return {}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weight={self.weight:g}"


class CrossEntropy(LossTerm):
    """``CE(z, y)``: the cross-entropy of the batch's logits, the mean over its B samples.

    Args:
        weight: Weight in the loss (1 in ALTA).
    """

    name = "ce"

    def forward(self, inputs: LossInputs) -> TermValue:
        return TermValue(torch.nn.functional.cross_entropy(inputs.logits, inputs.labels), int(inputs.labels.shape[0]))


class ReplayCrossEntropy(LossTerm):
    """``CE(z_b, y_b)``: DER++'s replay cross-entropy on the current logits of the replayed items,
    the mean over the M items (Buzzega et al., NeurIPS 2020; ALTA's ``alpha`` term).

    Args:
        weight: Weight in the loss (``alpha``, 0.4 in ALTA).
    """

    name = "replay_ce"

    def __init__(self, *, weight: float = 0.4) -> None:
        super().__init__(weight=weight)

    def forward(self, inputs: LossInputs) -> TermValue | None:
        z = inputs.memory_logits
        if z is None:
            return None
        return TermValue(replay_ce(z, inputs.memory["labels"]), int(z.shape[0]))


class ReplayMSE(LossTerm):
    """``MSE(z_b, z_b_stored)``: DER++'s logit matching between the current and the stored logits of
    the replayed items, the mean over the stored logits compared (ALTA's ``beta`` term).

    Args:
        weight: Weight in the loss (``beta``, 0.4 in ALTA).
        seen_only: Leave out the stored logits of classes not scored when the item was stored
            (``-inf``; ``head="seen"``).
    """

    name = "replay_mse"

    def __init__(self, *, weight: float = 0.4, seen_only: bool = False) -> None:
        super().__init__(weight=weight)
        self.seen_only = bool(seen_only)

    def forward(self, inputs: LossInputs) -> TermValue | None:
        z = inputs.memory_logits
        if z is None:
            return None
        value, count = replay_mse(z, inputs.memory["logits"], seen_only=self.seen_only)
        return TermValue(value, count)


def _check_factory(name: str, factory: Any) -> Callable[..., Any]:
    """What :data:`LOSS_TERMS` accepts: a factory (a :class:`LossTerm` class, or a function) that
    takes the keyword ``weight`` and the term's own options."""
    if not callable(factory):
        raise TypeError(f"a loss term is registered as a factory (a LossTerm subclass or a function) taking "
                        f"weight=... and the term's options, got {type(factory).__name__} {factory!r}")
    if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise ConfigError(f"a loss term's name is logged as loss/<name> and keys its state: a Python identifier "
                          f"other than {', '.join(RESERVED_NAMES)}, got {name!r}")
    if inspect.isabstract(factory):
        raise TypeError(f"{factory.__qualname__} does not define forward(inputs) -> TermValue | None, which every "
                        f"LossTerm must (it is abstract)")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return factory
    if not any(p.kind is p.VAR_KEYWORD or p.name == "weight" for p in signature.parameters.values()):
        raise TypeError(f"its factory {getattr(factory, '__qualname__', factory)}{signature} takes no keyword "
                        f"'weight'; a loss term factory is called as factory(weight=..., **options)")
    return factory


LOSS_TERMS: Registry[Callable[..., Any]] = Registry("loss term", group="alta.loss_terms", check=_check_factory,
                                                    registry_name="alta.losses.LOSS_TERMS")
LOSS_TERMS.add("ce", CrossEntropy)
LOSS_TERMS.add("replay_ce", ReplayCrossEntropy)
LOSS_TERMS.add("replay_mse", ReplayMSE)


def _describe(term: Any) -> str:
    name = getattr(term, "name", None)
    if isinstance(name, str) and name in LOSS_TERMS and LOSS_TERMS.origin(name) is not None:
        return LOSS_TERMS.describe(name)
    kind = type(term)
    return f"loss term {name!r} ({kind.__module__}.{kind.__qualname__})"


def check_loss_term(term: Any) -> Any:
    """Refuse an object that is not a loss term (see :mod:`alta.losses`), naming it.

    Returns:
        ``term``.

    Raises:
        PluginError: no ``name`` (an identifier, not a reserved one), a weight that is not a
            number >= 0, not callable, ``stores`` not a tuple of names, or trainable
            parameters (they would never be optimised: they belong to the learner).
    """
    name = getattr(term, "name", None)
    who = _describe(term)
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise PluginError(f"{who}: a loss term's name must be a Python identifier other than "
                          f"{', '.join(RESERVED_NAMES)} (it is logged as loss/<name>), got {name!r}")
    weight = getattr(term, "weight", None)
    if not _valid_weight(weight):
        raise PluginError(f"{who}: its weight must be a number >= 0, got {weight!r}")
    if not callable(term):
        raise PluginError(f"{who} is not callable: a loss term is called as term(inputs) -> TermValue | None")
    stores = getattr(term, "stores", ())
    if not isinstance(stores, tuple) or not all(isinstance(s, str) and s for s in stores):
        raise PluginError(f"{who}: stores must be a tuple of field names, got {stores!r}")
    if isinstance(term, nn.Module) and any(p.requires_grad for p in term.parameters()):
        raise PluginError(f"{who} has trainable parameters, which the optimiser never sees (it trains the learner's "
                          f"branch_parameters()); keep state in buffers (register_buffer), or put the parameters "
                          f"in the learner")
    return term


def normalise_loss_terms(spec: Any, *, key: str = "model.loss_terms") -> dict[str, dict[str, Any]]:
    """The canonical form of a run's extra loss terms: ``{name: {"weight": w, **options}}``, each
    name resolved in :data:`LOSS_TERMS`, each option a keyword of the term's factory, the weight
    filled in from the factory's default.

    Args:
        spec: ``{name: options}``: options a mapping, a number (the weight) or ``None``.
        key: The config key, for messages.

    Raises:
        ConfigError: not a mapping, an unknown name (the registered ones listed, and how to
            register one), options the factory does not take, a missing or invalid weight.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"config key {key!r} must be a mapping of loss term names to their options, e.g. "
                          f"{{logit_norm: {{weight: 0.1}}}}, got {spec!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, options in spec.items():
        where = f"{key}.{name}"
        try:
            canonical = LOSS_TERMS.resolve(name)
        except ConfigError as exc:
            raise ConfigError(f"config key {key!r}: {exc}") from None
        if options is None:
            options = {}
        elif isinstance(options, (int, float)) and not isinstance(options, bool):
            options = {"weight": options}
        if not isinstance(options, Mapping):
            raise ConfigError(f"config key {where!r} must be the term's weight or a mapping of its options "
                              f"(weight and the factory's keywords), got {options!r}")
        factory = LOSS_TERMS.get(canonical)
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            try:
                signature.bind(**options)
            except TypeError as exc:
                raise ConfigError(f"config key {where!r}: {LOSS_TERMS.describe(canonical)} takes {signature} ({exc})"
                                  ) from None
        weight = options.get("weight", inspect.Parameter.empty)
        if weight is inspect.Parameter.empty and signature is not None and "weight" in signature.parameters:
            weight = signature.parameters["weight"].default
        if not _valid_weight(weight):
            raise ConfigError(f"config key '{where}.weight' must be a number >= 0 (the term's weight in the loss), "
                              f"got {None if weight is inspect.Parameter.empty else weight!r}")
        out[canonical] = {"weight": float(weight), **{k: v for k, v in options.items() if k != "weight"}}
    return out


def build_loss_terms(spec: Mapping[str, Mapping[str, Any]]) -> list[Any]:
    """The loss terms of :func:`normalise_loss_terms`' ``{name: options}``, built by their
    factories (:data:`LOSS_TERMS`) and checked (:func:`check_loss_term`); each takes its
    registered name.

    Raises:
        ConfigError: what :func:`normalise_loss_terms` refuses.
        PluginError: a factory that raises or returns something that is not a loss term.
    """
    terms = []
    for name, options in normalise_loss_terms(spec, key="loss_terms").items():
        factory = LOSS_TERMS.get(name)
        try:
            term = factory(**options)
        except (ConfigError, PluginError):
            raise
        except Exception as exc:  # noqa: BLE001 - the plug-in's own error, named
            raise PluginError(f"{LOSS_TERMS.describe(name)} could not be built with {dict(options)}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if getattr(term, "name", None) != name:
            try:
                term.name = name
            except AttributeError:
                pass
        terms.append(check_loss_term(term))
    return terms


def extra_loss_terms(terms: Mapping[str, Any] | Sequence[Any], *, method: Sequence[Any] = ()) -> tuple:
    """A learner's extra loss terms: ``{name: options}`` built (:func:`build_loss_terms`), or term
    objects checked (:func:`check_loss_term`); no two named alike, nor like one of ``method``'s.

    Raises:
        ConfigError: a name given twice or taken by one of the method's own terms.
        PluginError: a term that does not follow the protocol.
    """
    extra = build_loss_terms(terms) if isinstance(terms, Mapping) else [check_loss_term(t) for t in terms]
    names = [t.name for t in extra]
    clash = sorted(set(names) & {t.name for t in method}) or sorted({n for n in names if names.count(n) > 1})
    if clash:
        own = ", ".join(t.name for t in method) or "none"
        raise ConfigError(f"loss term(s) {clash} named twice (the method's own terms: {own}); give each extra term "
                          f"its own name")
    return tuple(extra)


_PROTOCOL = ("a loss term returns TermValue(value, count): value a 0-dim floating tensor with its graph (the mean "
             "over count items), or None when it has nothing to add")


def _check_value(term: Any, out: Any, *, check_finite: bool) -> TermValue:
    """A term's output, checked: a :class:`TermValue` of a 0-dim floating tensor and a count."""
    if isinstance(out, torch.Tensor) or not (isinstance(out, tuple) and len(out) == 2):
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(f"{_describe(term)} returned {got}; {_PROTOCOL}")
    value, count = out
    if not isinstance(value, torch.Tensor) or value.ndim != 0 or not value.is_floating_point():
        got = (f"a {value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
               else type(value).__name__)
        raise PluginError(f"{_describe(term)} returned a value that is {got}, not a scalar; {_PROTOCOL}")
    if isinstance(count, torch.Tensor):
        if count.ndim != 0:
            raise PluginError(f"{_describe(term)} returned a count of shape {tuple(count.shape)}; {_PROTOCOL}")
    elif isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise PluginError(f"{_describe(term)} returned the count {count!r}; {_PROTOCOL} (count an int >= 0)")
    empty = int(count) == 0 if value.device.type == "cpu" else False  # an empty shard's mean: NaN, weighed 0
    if check_finite and value.device.type == "cpu" and not empty and not bool(torch.isfinite(value.detach())):
        raise TrainingError(f"{_describe(term)} returned {float(value.detach())} at this step; the update was not "
                            f"made (parameters, optimiser and buffer are as they were). Fix the term, or lower its "
                            f"weight or the learning rate")
    return TermValue(value, count)


def step_loss(terms: Sequence[Any], inputs: LossInputs, *, experience_ids: torch.Tensor) -> StepLoss:
    """Evaluate a learner's loss terms in order and sum them into its :class:`StepLoss`.

    ``loss = w_1 * t_1 + w_2 * t_2 + ...`` summed left to right over the terms that give a value
    at this step (a first term of weight 1 enters unmultiplied: ALTA's ``CE + alpha * CE_b + beta *
    MSE_b`` is computed as before it became three terms, bit for bit). A term that gives nothing
    is logged as 0 with count 0. On the CPU a non-finite value of a term that is not alta's own is
    refused at once, naming the term (elsewhere the loop's per-epoch check names it).

    Args:
        terms: The loss terms (the method's, then the extra ones), each of the protocol of
            :mod:`alta.losses`.
        inputs: The step's :class:`LossInputs`.
        experience_ids: The experience of each label, (B,) (stored in the buffer).

    Returns:
        The :class:`StepLoss` (its ``extra_items``: what the terms store, computed without gradients).

    Raises:
        PluginError: a term returning anything but a :class:`TermValue` of a 0-dim floating tensor
            and a count, or items other than it declares in ``stores``.
        TrainingError: on the CPU, a term that is not alta's own returning NaN or infinity.
        StateError: no term gave a value.
    """
    values: dict[str, torch.Tensor | None] = {}
    weights: dict[str, float] = {}
    counts: dict[str, int | torch.Tensor] = {}
    loss = None
    for term in terms:
        name, weight = term.name, float(term.weight)
        out = term(inputs)
        weights[name] = weight
        if out is None:
            values[name], counts[name] = None, 0
            continue
        value, count = _check_value(term, out, check_finite=not type(term).__module__.startswith("alta."))
        values[name], counts[name] = value, count
        loss = (value if weight == 1.0 else weight * value) if loss is None else loss + weight * value
    if loss is None:
        raise StateError(f"no loss term gave a value at this step (terms: {', '.join(values)}); a learner needs a "
                         f"term that always applies, such as the cross-entropy of the batch")
    zero = next(v for v in values.values() if v is not None).detach().new_zeros(())
    extra: dict[str, torch.Tensor] = {}
    for term in terms:
        stores = tuple(getattr(term, "stores", ()))
        if not stores:
            continue
        with torch.no_grad():
            items = term.items(inputs)
        if not isinstance(items, Mapping) or set(items) != set(stores):
            raise PluginError(f"{_describe(term)}: items(inputs) must return the fields it stores, {list(stores)}, "
                              f"got {sorted(items) if isinstance(items, Mapping) else type(items).__name__}")
        batch = int(inputs.labels.shape[0])
        for key, value in items.items():
            if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != batch:
                raise PluginError(f"{_describe(term)}: the stored field {key!r} must be a tensor (B, ...) with B = "
                                  f"{batch}, got {tuple(value.shape) if isinstance(value, torch.Tensor) else value!r}")
            extra[key] = value.detach()
    return StepLoss(loss=loss, terms={k: zero if v is None else v for k, v in values.items()}, weights=weights,
                    counts=counts, logits=inputs.logits.detach(), image_features=inputs.features.detach(),
                    labels=inputs.labels, experience_ids=experience_ids, extra_items=extra)
