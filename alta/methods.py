"""The method variants of the ALTA reference code, as data.

Every variant scores class c with a sum of scaled cosine similarities between one image
representation and one text representation (Li et al., IEEE TMM 2023, the method and its
ablation; reference code ``models/coop.py`` and ``models/customclip.py``):

- image: ``f1`` = frozen CLIP image feature, ``f2`` = adapter(f1), ``f1+f2`` = residual adapter;
- text: ``w1`` = frozen feature of "a photo of a {c}", ``w2`` = feature of the learned prompt.

=============================  ==============================  ======  ====  ==============
method                         logits                          replay  snap  trainable
=============================  ==============================  ======  ====  ==============
mlp                            s*cos(f2, w1)                   yes     -     adapter
resmlp                         s*cos(f1 + f2, w1)              yes     -     adapter
sprompt                        s*cos(f1, w2) (plain CoOp)      no      no    ctx
cprompt                        s*cos(f1, w2)                   no      yes   ctx
cprompt_oriprompt              s*cos(f1, w2) + s*cos(f1, w1)   no      yes   ctx
cprompt_mlp                    s*cos(f2, w2)                   yes     yes   ctx + adapter
cprompt_resmlp                 s*cos(f1 + f2, w2)              yes     yes   ctx + adapter
oriclip2cprompt_mlp            s*cos(f1, w1) + s*cos(f2, w2)   yes     yes   ctx + adapter
oritext_mlp2cprompt_oriimg     s*cos(f1, w2) + s*cos(f2, w1)   yes     yes   ctx + adapter
zeroshot                       s*cos(f1, w1)                   no      -     nothing
=============================  ==============================  ======  ====  ==============

``oritext_mlp2cprompt_oriimg`` is ALTA itself (alias ``alta``): the learned text is matched
against the frozen image feature and the learned image feature against the frozen text (the
crossed pairing); ``oriclip2cprompt_mlp`` is its parallel-pairing ablation.

:data:`METHODS` also holds plug-ins (entry-point group ``alta.methods``, ``alta run --import``;
docs/own-method.md): a :class:`MethodSpec` (another variant of :class:`~alta.CrossModalLearner`)
or a :class:`LearnerMethod` (a factory building any learner of the :class:`alta.Learner`
protocol, e.g. ``examples/linear_probe.py``).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError
from .registry import Registry

__all__ = ["MethodSpec", "LearnerMethod", "METHODS", "list_methods", "get_method", "DEFAULT_METHOD"]

IMAGE_KINDS = ("f1", "f2", "f1+f2")
TEXT_KINDS = ("w1", "w2")


@dataclass(frozen=True)
class MethodSpec:
    """One method variant.

    Attributes:
        name: The reference code's name (kept exactly, users type it).
        terms: Pairs (image kind, text kind) whose scaled cosine similarities are summed.
        replay: Whether the method replays the memory buffer (DER++ in feature space).
        snapshot: Whether ending an experience freezes the prompts of its classes.
        description: One line for listings.
    """

    name: str
    terms: tuple[tuple[str, str], ...]
    replay: bool
    snapshot: bool
    description: str

    def __post_init__(self) -> None:
        for term in self.terms:
            if not (isinstance(term, tuple) and len(term) == 2 and term[0] in IMAGE_KINDS and term[1] in TEXT_KINDS):
                raise ConfigError(
                    f"method {self.name!r}: each term of a MethodSpec is a pair (image kind, text kind) with the "
                    f"image kind one of {IMAGE_KINDS} and the text kind one of {TEXT_KINDS}, got {term!r}")
        if not self.terms:
            raise ConfigError(f"method {self.name!r}: a MethodSpec needs at least one term, e.g. (('f1', 'w2'),)")

    @property
    def trains(self) -> bool:
        """Whether the method has parameters to train (``zeroshot`` has none)."""
        return bool(self.branches)

    @property
    def uses_prompt(self) -> bool:
        """Whether the learned prompt (w2, context vectors) is part of the method."""
        return any(text == "w2" for _, text in self.terms)

    @property
    def uses_adapter(self) -> bool:
        """Whether the image adapter (f2) is part of the method."""
        return any(image != "f1" for image, _ in self.terms)

    @property
    def branches(self) -> frozenset[str]:
        """Trainable branches: ``"text"`` (context vectors) and/or ``"image"`` (adapter)."""
        out = set()
        if self.uses_prompt:
            out.add("text")
        if self.uses_adapter:
            out.add("image")
        return frozenset(out)

    @property
    def formula(self) -> str:
        """The logits as text, e.g. ``"s*cos(f1, w2) + s*cos(f2, w1)"``."""
        return " + ".join(f"s*cos({image.replace('+', ' + ')}, {text})" for image, text in self.terms)


@dataclass(frozen=True)
class LearnerMethod:
    """A method that is not a variant of ALTA: a factory building a learner of the
    :class:`alta.Learner` protocol (``alta/loop/protocol.py``), registered in :data:`METHODS`.

    A run (``alta run``, a run group, ``--seeds``, ``benchmarks/run.py``) builds it as::

        build(backbone, class_names=stream.class_names, seed=config.seed, **config.model.method_options)

    with ``loss_terms=[...]`` added when ``model.loss_terms`` names any (the learner adds them to
    its loss: :func:`alta.losses.step_loss`). The ALTA keys of the ``model`` section (``alpha``,
    ``ctx_init``, ``template``, ...) configure ALTA's variants only; ``model.method_options`` holds
    this method's own options, checked by ``build``'s signature.

    Attributes:
        name: The registered name (``--method NAME``).
        build: ``build(backbone, *, class_names, seed, **options) -> learner``.
        description: One line for listings (default: the first line of ``build``'s docstring).
        replay: Whether the run gives the learner a memory buffer (``buffer`` section) that the
            step samples and fills (the learner's ``replays`` says the same).
        branches: The names of what it trains (the keys of its ``branch_parameters()``); empty:
            nothing is trained, the run only evaluates it.

    Raises:
        ConfigError: ``build`` not callable or not taking ``(backbone, *, class_names, seed)``.
    """

    name: str
    build: Callable[..., Any]
    description: str = ""
    replay: bool = False
    branches: frozenset = frozenset({"image"})

    def __post_init__(self) -> None:
        if not callable(self.build):
            raise ConfigError(f"method {self.name!r}: build must be a callable returning a learner, got "
                              f"{type(self.build).__name__}")
        try:
            signature = inspect.signature(self.build)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            try:
                signature.bind(object(), class_names=["a"], seed=0)
            except TypeError as exc:
                raise ConfigError(
                    f"method {self.name!r}: its build{signature} cannot be called as build(backbone, "
                    f"class_names=..., seed=...) ({exc}); a learner factory takes the frozen backbone, then the "
                    f"keywords class_names and seed, then its own options") from None
        object.__setattr__(self, "branches", frozenset(self.branches))
        if not all(isinstance(b, str) and b for b in self.branches):
            raise ConfigError(f"method {self.name!r}: branches must be names (strings), got {sorted(self.branches)}")
        if not isinstance(self.replay, bool):
            raise ConfigError(f"method {self.name!r}: replay must be true or false, got {self.replay!r}")
        if not self.description:
            doc = inspect.getdoc(self.build) or ""
            object.__setattr__(self, "description", doc.strip().splitlines()[0] if doc.strip() else "")

    @property
    def trains(self) -> bool:
        """Whether the learner has anything to train."""
        return bool(self.branches)

    @property
    def snapshot(self) -> bool:
        """ALTA's prompt snapshots: not a learner plug-in's."""
        return False

    @property
    def formula(self) -> str:
        """What the method is, for summaries: ``learner linear_probe.LinearProbe``."""
        build = self.build
        return f"learner {getattr(build, '__module__', '?')}.{getattr(build, '__qualname__', type(build).__name__)}"

    def takes(self, option: str) -> bool:
        """Whether ``build`` accepts the keyword ``option`` (or any keyword)."""
        try:
            parameters = inspect.signature(self.build).parameters.values()
        except (TypeError, ValueError):
            return True
        return any(p.kind is p.VAR_KEYWORD or (p.name == option and p.kind is not p.POSITIONAL_ONLY)
                   for p in parameters)


def _check_method(name: str, entry: Any) -> "MethodSpec | LearnerMethod":
    """What :data:`METHODS` accepts: a :class:`MethodSpec`, a :class:`LearnerMethod`, or a bare
    learner factory (wrapped in a :class:`LearnerMethod` with its defaults); the entry takes the
    registered name."""
    if isinstance(entry, (MethodSpec, LearnerMethod)):
        return entry if entry.name == name else dataclasses.replace(entry, name=name)
    if callable(entry):
        return LearnerMethod(name, entry)
    raise TypeError(f"a method is a MethodSpec (a variant of CrossModalLearner), a LearnerMethod or a learner factory "
                    f"build(backbone, *, class_names, seed, **options), got {type(entry).__name__} {entry!r}")


METHODS: Registry["MethodSpec | LearnerMethod"] = Registry("method", group="alta.methods", check=_check_method,
                                                           registry_name="alta.methods.METHODS")
DEFAULT_METHOD = "oritext_mlp2cprompt_oriimg"


def _add(name: str, terms, *, replay: bool, snapshot: bool, description: str, aliases=()) -> None:
    METHODS.add(name, MethodSpec(name, tuple(terms), replay, snapshot, description), aliases=tuple(aliases))


_add("mlp", [("f2", "w1")], replay=True, snapshot=False, description="image adapter against frozen text")
_add("resmlp", [("f1+f2", "w1")], replay=True, snapshot=False, description="residual image adapter against frozen text")
_add("sprompt", [("f1", "w2")], replay=False, snapshot=False, description="plain CoOp prompt, no snapshots")
_add("cprompt", [("f1", "w2")], replay=False, snapshot=True, description="CoOp prompt with per-experience snapshots")
_add("cprompt_oriprompt", [("f1", "w2"), ("f1", "w1")], replay=False, snapshot=True,
     description="snapshotted prompt plus the hand-written prompt")
_add("cprompt_mlp", [("f2", "w2")], replay=True, snapshot=True, description="adapter against snapshotted prompt")
_add("cprompt_resmlp", [("f1+f2", "w2")], replay=True, snapshot=True,
     description="residual adapter against snapshotted prompt")
_add("oriclip2cprompt_mlp", [("f1", "w1"), ("f2", "w2")], replay=True, snapshot=True,
     description="parallel pairing (zero-shot CLIP + adapter/prompt): ALTA's key ablation")
_add(DEFAULT_METHOD, [("f1", "w2"), ("f2", "w1")], replay=True, snapshot=True,
     description="ALTA: crossed pairing of learned and frozen modalities", aliases=("alta",))
_add("zeroshot", [("f1", "w1")], replay=False, snapshot=False, description="zero-shot CLIP, nothing trained")


def list_methods() -> list[str]:
    """The method names, in the order of the reference code (plus ``zeroshot``), then the
    plug-ins' (:data:`METHODS`)."""
    return METHODS.names()


def get_method(name: str) -> "MethodSpec | LearnerMethod":
    """The :class:`MethodSpec` of ``name`` (``"alta"`` means the default method), or the
    :class:`LearnerMethod` of a plug-in.

    Raises:
        ConfigError: for an unknown name; the message lists the valid names and the closest one.
    """
    return METHODS.get(name)
