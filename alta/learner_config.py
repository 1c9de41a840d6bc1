"""The options of :class:`~alta.CrossModalLearner`: their defaults (written only here) and their
validation (done only here: the learner builds a :class:`LearnerConfig` from its arguments, and a
run's ``model`` section extends it).

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023 (reference code github.com/vijaylee/ALTA, ``configs/*.yaml``).
"""

from __future__ import annotations

import dataclasses
import inspect
import string
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Mapping

from .config import MAX_BATCH_SIZE, ConfigSection, check_choice, check_int, check_number, resolve_name, set_canonical
from .errors import ConfigError
from .losses import normalise_loss_terms
from .methods import DEFAULT_METHOD, METHODS, LearnerMethod
from .prompt import DEFAULT_CTX_INIT, DEFAULT_TEMPLATE

__all__ = ["LearnerConfig", "HEADS", "SNAPSHOT_TIMINGS", "NO_LOSS_TERMS", "UNSEEN_CLASSES"]

HEADS = ("all", "seen")
#: The default of ``loss_terms``: none besides the method's own (an empty mapping that cannot change).
NO_LOSS_TERMS: Mapping[str, Any] = MappingProxyType({})
SNAPSHOT_TIMINGS = ("end", "last_forward")
UNSEEN_CLASSES = ("learned", "zeroshot")


def _check_template(template: Any) -> None:
    """``template`` must format with one class name: exactly one ``{}`` and no other braces
    (``{{``/``}}`` stand for literal braces)."""
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


@dataclass(frozen=True)
class LearnerConfig(ConfigSection):
    """The options of :class:`CrossModalLearner`, their defaults (written only here) and their
    validation (done only here: the learner builds one of these from its arguments).

    Attributes:
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
        w1_raw_names: Class names verbatim in w1, underscores kept (the reference code's
            "a photo of a aquarium_fish"); the learned prompt always reads them as spaces.
        loss_terms: Loss terms added to the method's own (:data:`alta.losses.LOSS_TERMS`, plug-ins
            included): ``{name: {weight: w, option: value}}`` (or ``{name: w}``); the weight
            defaults to the term's. Empty (the default): the method's loss alone.
        method_options: The options of a learner plug-in (:class:`~alta.methods.LearnerMethod`),
            passed to its factory; refused for ALTA's variants, which take the keys above.
        unseen_classes: How the head scores classes of experiences not begun yet (a future
            dataset's names, with ``head="all"``): ``learned`` (default: the method's logits,
            its current prompt context and adapter, as ALTA's protocol scores every class) or
            ``zeroshot`` (frozen CLIP's ``s*cos(f1, w1)`` times the method's number of terms, so
            that its scale matches; nothing learned touches a class before its experience).
    """

    _SECTION: ClassVar[str] = "model"

    method: str = DEFAULT_METHOD
    head: str = "all"
    alpha: float = 0.4
    beta: float = 0.4
    replay_batch_size: int = 32
    ctx_init: str = DEFAULT_CTX_INIT
    template: str = DEFAULT_TEMPLATE
    adapter_reduction: int = 16
    truncate_text: bool = True
    snapshot_timing: str = "end"
    w1_raw_names: bool = False
    loss_terms: dict[str, Any] = field(default_factory=lambda: dict(NO_LOSS_TERMS))
    method_options: dict[str, Any] = field(default_factory=dict)
    unseen_classes: str = "learned"

    def __post_init__(self) -> None:
        set_canonical(self, "method", resolve_name(METHODS, self.method, "model.method"))
        set_canonical(self, "loss_terms", normalise_loss_terms(self.loss_terms))
        self._check_method_options()
        check_choice(self.head, "model.head", HEADS)
        check_number(self.alpha, "model.alpha", nonnegative=True)
        check_number(self.beta, "model.beta", nonnegative=True)
        check_int(self.replay_batch_size, "model.replay_batch_size", low=1, high=MAX_BATCH_SIZE,
                  why="buffer items drawn per training step (default 32)")
        check_int(self.adapter_reduction, "model.adapter_reduction", low=1)
        if not isinstance(self.truncate_text, bool):
            raise ConfigError(f"config key 'model.truncate_text' must be true or false, got {self.truncate_text!r}")
        check_choice(self.snapshot_timing, "model.snapshot_timing", SNAPSHOT_TIMINGS)
        if not isinstance(self.w1_raw_names, bool):
            raise ConfigError(f"config key 'model.w1_raw_names' must be true or false, got {self.w1_raw_names!r}")
        _check_template(self.template)
        check_choice(self.unseen_classes, "model.unseen_classes", UNSEEN_CLASSES)
        if self.unseen_classes == "zeroshot" and self.head != "all":
            raise ConfigError(
                f"config key 'model.unseen_classes' is 'zeroshot' but 'model.head' is {self.head!r}: a head of seen "
                "classes masks the classes not begun yet, so there is nothing to score zero-shot; use head 'all' "
                "(or unseen_classes 'learned')"
            )

    def _check_method_options(self) -> None:
        """``method_options`` only for a learner plug-in, and only options its factory takes; extra
        loss terms only for a factory that takes them."""
        spec = METHODS.get(self.method)
        if not isinstance(self.method_options, Mapping):
            raise ConfigError(f"config key 'model.method_options' must be a mapping of option names to values, got "
                              f"{self.method_options!r}")
        if not isinstance(spec, LearnerMethod):
            own = sorted(set(self.loss_terms) & {"ce", "replay_ce", "replay_mse"})
            if own:
                raise ConfigError(f"config key 'model.loss_terms' names {own}, which method {self.method!r} computes "
                                  f"itself (ce, replay_ce and replay_mse, weighted 1, model.alpha and model.beta); "
                                  f"set their weights with model.alpha / model.beta, or add other terms")
            if self.method_options:
                raise ConfigError(
                    f"config key 'model.method_options' holds {sorted(self.method_options)}, but method "
                    f"{self.method!r} is a variant of ALTA, configured by the other model keys (alpha, beta, head, ...); "
                    f"method_options configures a learner plug-in (alta list methods)")
            return
        if self.loss_terms and not spec.takes("loss_terms"):
            raise ConfigError(f"config key 'model.loss_terms' names {sorted(self.loss_terms)}, but the factory of "
                              f"{METHODS.describe(self.method)} takes no loss_terms argument, so its learner cannot "
                              f"add them; drop them, or give the factory a loss_terms parameter (alta.losses.step_loss)")
        try:
            signature = inspect.signature(spec.build)
        except (TypeError, ValueError):
            return
        try:
            signature.bind(object(), class_names=["a"], seed=0, **self.method_options)
        except TypeError as exc:
            raise ConfigError(f"config key 'model.method_options': {METHODS.describe(self.method)} is built as "
                              f"build{signature}, which does not take {dict(self.method_options)} ({exc})") from None

    def learner_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`CrossModalLearner` this config sets."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(LearnerConfig) if f.name != "method_options"}
