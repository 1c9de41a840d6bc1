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
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Registry

__all__ = ["MethodSpec", "METHODS", "list_methods", "get_method", "DEFAULT_METHOD"]

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
        for image, text in self.terms:
            assert image in IMAGE_KINDS and text in TEXT_KINDS, (image, text)

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


METHODS: Registry[MethodSpec] = Registry("method")
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
    """The method names, in the order of the reference code (plus ``zeroshot``)."""
    return METHODS.names()


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name`` (``"alta"`` means the default method).

    Raises:
        ConfigError: for an unknown name; the message lists the valid names and the closest one.
    """
    return METHODS.get(name)
