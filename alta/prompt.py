"""Text side of ALTA: the learned soft prompt (w2) and the hand-written prompt (w1).

- :class:`PromptLearner` is CoOp's unified-context prompt learner (Zhou et al., "Learning to
  Prompt for Vision-Language Models", IJCV 2022) as the ALTA reference code uses it: the prompt
  of class c is ``[SOS][ctx_1]..[ctx_M][tokens of c][.][EOS]`` with M context vectors shared by
  all classes, initialised from the token embeddings of "a photo of a" (M = 4), class token at
  the end. Its text feature is read where the backbone's text tower reads it (CLIP: the EOT
  position) and projected exactly as the library's ``encode_text`` does. This is the
  task-aware text representation w2 of ALTA (Li et al., IEEE TMM 2023; reference code
  ``models/coop.py``).

  Other tokenizers and towers (SigLIP, SigLIP 2; :mod:`alta.backbones.open_clip`): the P special
  tokens before the text are the backbone's ``text_prefix_length`` (1 for CLIP's [SOS], 0 for
  SigLIP's tokenizers, which put none: the context vectors start at position 0), and the
  tokenizer's own cleaning applies to the prompt text (SigLIP's lower-cases and removes
  punctuation, so CoOp's trailing "." is dropped: the prompt is ``[ctx][tokens of c][EOS]``,
  the very tokens the library encodes for "a photo of a c."). A bidirectional tower
  (``causal_text`` false) attends to every position, padding included: its prompts are encoded
  at all L positions, with the padding tokens the tokenizer puts there, and the shared prefix
  and truncation (exact only under a causal mask) are switched off.
- :func:`tokenize_class_prompts` builds the hand-written prompts "a photo of a {class}" whose
  frozen features are the task-invariant text representation w1.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_option
from .classnames import check_distinguishable
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .backbones import Backbone

__all__ = ["PromptLearner", "tokenize_class_prompts", "check_class_names", "check_distinct_prompts",
           "check_class_templates", "hand_written_features", "DEFAULT_TEMPLATE", "DEFAULT_CTX_INIT"]

DEFAULT_TEMPLATE = "a photo of a {}"  # the hand-written prompt of w1 (reference code, CoOp)
DEFAULT_CTX_INIT = "a photo of a"  # the words initialising the 4 context vectors

logger = logging.getLogger(__name__)


def check_class_names(class_names, *, groups=None) -> list[str]:
    """Validate class names for prompting.

    Args:
        class_names: A list or tuple of non-empty strings that CLIP can tell apart (underscores
            are replaced by spaces, as CoOp does).
        groups: The group (dataset, domain) of every class, or ``None`` (one group): names must
            be distinct within a group only (two datasets of a multi-domain stream may both have
            a "river").

    Returns:
        The names as a list, underscores replaced by spaces.

    Raises:
        ConfigError: if it is not a list or tuple (a set has no reproducible order), is empty, or
            a name is not a string, is empty (after replacing underscores), is not valid UTF-8,
            or reads like another name to CLIP's tokenizer (case, whitespace, underscores; see
            :func:`alta.classnames.check_distinguishable`).
    """
    if not isinstance(class_names, (list, tuple)):
        raise ConfigError(
            f"class_names must be a list or tuple of strings in label order, got {type(class_names).__name__}; "
            f"pass e.g. stream.class_names"
        )
    names = list(class_names)
    if not names:
        raise ConfigError("class_names is empty; pass one human-readable name per class (e.g. stream.class_names)")
    bad = [(i, n) for i, n in enumerate(names) if not isinstance(n, str) or not n.replace("_", " ").strip()]
    if bad:
        raise ConfigError(
            f"class names must be non-empty strings; got {bad[:5]} (index, value); give every class a "
            f"human-readable name, which CLIP reads in the prompt"
        )
    if groups is None:
        check_distinguishable(names, error=ConfigError)  # the same rule as ScenarioStream's
    else:
        groups = list(groups)
        if len(groups) != len(names):
            raise ConfigError(f"class_domains has {len(groups)} entries for {len(names)} class names; expected the "
                              f"domain (dataset) of every class")
        for group in dict.fromkeys(groups):
            check_distinguishable([n for n, g in zip(names, groups) if g == group], error=ConfigError)
    return [n.replace("_", " ").strip() for n in names]


def tokenize_class_prompts(backbone: "Backbone", class_names: list[str], *, template: str = DEFAULT_TEMPLATE,
                           groups: list[int] | None = None) -> torch.Tensor:
    """Tokenise one hand-written prompt per class with the backbone's tokenizer.

    Args:
        backbone: The frozen backbone (its :meth:`~alta.backbones.Backbone.tokenize`).
        class_names: Class names (as returned by :func:`check_class_names`).
        template: A format string with one ``{}`` for the class name.
        groups: The group (dataset) of every class, or ``None`` (one group): prompts that
            tokenize alike are refused only within a group (:func:`check_distinct_prompts`).

    Returns:
        Token ids padded to the backbone's context length L.

    Raises:
        ConfigError: the template has no single ``{}``, a prompt is longer than L tokens, or two
            prompts tokenize alike (:func:`check_distinct_prompts`).

    Shape:
        returns (C, L).
    """
    if template.count("{}") != 1:
        raise ConfigError(f"prompt template must contain exactly one '{{}}', got {template!r}")
    prompts = [template.format(name) for name in class_names]
    tokens = backbone.tokenize(prompts)
    check_distinct_prompts(tokens, prompts, backbone=backbone, groups=groups)
    return tokens


def check_distinct_prompts(tokens: torch.Tensor, prompts: list[str], *, backbone: "Backbone",
                           groups: list[int] | None = None) -> None:
    """Refuse prompts of two classes that the backbone's tokenizer turns into the same tokens.

    :func:`check_class_names` refuses names CLIP reads alike; other tokenizers clean more (SigLIP's
    lower-case and drop punctuation: "T-shirt" and "tshirt" become one), so the check is repeated
    on the tokens themselves.

    Args:
        tokens: The prompts' tokens.
        prompts: The prompts.
        backbone: The backbone whose tokenizer made them.
        groups: The group (dataset) of every prompt, or ``None`` (one group): prompts must differ
            within a group only (two datasets of a multi-domain stream may both have a "river").

    Raises:
        ConfigError: naming both prompts and how to fix them.

    Shape:
        tokens: (C, L), one row per prompt.
    """
    first: dict[tuple, int] = {}
    for i, row in enumerate(tokens.tolist()):
        j = first.setdefault((None if groups is None else groups[i], *row), i)
        if j != i:
            raise ConfigError(
                f"the prompts {prompts[j]!r} (label {j}) and {prompts[i]!r} (label {i}) give the same tokens with "
                f"the tokenizer of {backbone.name!r} (it cleans the text: case, punctuation), so their text "
                f"features are identical and one label could never be predicted; give the classes names that "
                f"differ in their words (e.g. 'crane bird' and 'crane machine')"
            )


def check_class_templates(class_templates, num_classes: int) -> list[tuple[str, ...] | None] | None:
    """Validate per-class prompt templates (see :func:`hand_written_features`).

    Args:
        class_templates: ``None``, or one entry per class: ``None`` (the default template) or a
            non-empty list of format strings with exactly one ``{}`` each.
        num_classes: C.

    Returns:
        The templates as a list of tuples (or ``None``).

    Raises:
        ConfigError: a length other than C, an empty list, or a template without a single ``{}``.
    """
    if class_templates is None:
        return None
    if isinstance(class_templates, (str, bytes)) or not isinstance(class_templates, (list, tuple)):
        raise ConfigError(f"class_templates must be a list with one entry per class (a list of templates or None), "
                          f"got {type(class_templates).__name__}")
    if len(class_templates) != num_classes:
        raise ConfigError(f"class_templates has {len(class_templates)} entries for {num_classes} classes; expected "
                          f"one per class (stream.class_templates)")
    out: list[tuple[str, ...] | None] = []
    for c, templates in enumerate(class_templates):
        if templates is None:
            out.append(None)
            continue
        if isinstance(templates, str) or not isinstance(templates, (list, tuple)) or not templates:
            raise ConfigError(f"class_templates[{c}] must be a non-empty list of templates or None, got "
                              f"{templates!r}")
        bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
        if bad:
            raise ConfigError(f"class_templates[{c}] holds {bad[0]!r}; every template needs exactly one '{{}}' where "
                              f"the class name goes, e.g. 'a photo of a {{}}.'")
        out.append(tuple(templates))
    return out


def hand_written_features(backbone: "Backbone", class_names: list[str], *, template: str = DEFAULT_TEMPLATE,
                          class_templates: list[tuple[str, ...] | None] | None = None,
                          groups: list[int] | None = None, chunk: int = 1024) -> torch.Tensor:
    """The frozen text features w1 of hand-written prompts, L2-normalised.

    Without ``class_templates``: one prompt per class, ``template.format(name)``. With them,
    each class's templates are encoded, every feature L2-normalised, averaged and normalised
    again, as open_clip's zero-shot classifier builds its weights
    (``open_clip.zero_shot_classifier.build_zero_shot_classifier``) and ZSCL evaluates each
    dataset with its template ensemble (Thunderbeee/ZSCL ``mtil/src/models/evaluation.py``);
    a class of a single template gets that template's feature.

    Args:
        backbone: The frozen backbone.
        class_names: C class names.
        template: The template of every class without its own.
        class_templates: Per class, its templates or ``None`` (:func:`check_class_templates`).
        groups: The group (dataset) of every class: prompts must differ within a group only
            (:func:`check_distinct_prompts`); ``None``: one group.
        chunk: Prompts per text-encoder call.

    Returns:
        w1, float, (C, D).

    Raises:
        ConfigError: a prompt longer than the backbone's context.
    """
    if class_templates is None:
        tokens = tokenize_class_prompts(backbone, class_names, template=template, groups=groups)
        return F.normalize(backbone.encode_tokens(tokens), dim=-1)
    by_templates: dict[tuple[str, ...], list[int]] = {}
    for c, templates in enumerate(class_templates):
        by_templates.setdefault(templates or (template,), []).append(c)
    rows: list[torch.Tensor] = [None] * len(class_names)  # type: ignore[list-item]
    for templates, ids in by_templates.items():
        names = [class_names[i] for i in ids]
        total = None
        for t in templates:
            tokens = tokenize_class_prompts(backbone, names, template=t,
                                            groups=None if groups is None else [groups[i] for i in ids])
            parts = [F.normalize(backbone.encode_tokens(tokens[i : i + chunk]), dim=-1)
                     for i in range(0, len(names), chunk)]
            features = torch.cat(parts)  # (n, D)
            total = features if total is None else total + features
        mean = total if len(templates) == 1 else F.normalize(total / len(templates), dim=-1)
        for row, i in enumerate(ids):
            rows[i] = mean[row]
    return torch.stack(rows)


class PromptLearner(nn.Module):
    """CoOp prompt learner with a shared context (class token at the end).

    Args:
        backbone: The frozen backbone (its tokenizer, token embeddings and text encoder; any
            :class:`~alta.backbones.Backbone`).
        class_names: One name per class (C names).
        ctx_init: Words whose token embeddings initialise the context vectors; their count sets
            the number of context vectors M (``"a photo of a"`` -> 4, the paper's setting).
        share_prefix: Default of :meth:`encode`: compute the positions [SOS] + ctx, identical
            for every class, once per encoding instead of once per class, and skip each
            class's positions after its EOT (exact, 2.6x faster forward + backward for 100
            classes at ViT-B/32 size; see
            :meth:`~alta.backbones.Backbone.encode_prompt_embeddings`). Change it later
            through the attribute of the same name. Without effect on a bidirectional text
            tower (``backbone.causal_text`` false), where it is not exact: a log line says so.
        groups: The group (dataset) of every class, or ``None`` (one group): prompts must differ
            within a group only (:func:`check_distinct_prompts`).

    Attributes:
        ctx: The learned context vectors, float32, shape (M, W).
        token_prefix: Embeddings of the P special tokens before the text per class ([SOS]:
            P = 1; SigLIP: P = 0), shape (C, P, W) (buffer).
        token_suffix: Embeddings of the class tokens, ".", [EOS] and padding up to the longest
            EOT position, shape (C, L' - P - M, W) (buffer).
        eot_positions: Index of [EOS] in each class's prompt, shape (C,), on the CPU (their
            values set the shapes of the encoding).
        num_positions: L' = longest EOT position + 1 (an int).
        share_prefix: Whether :meth:`encode` shares the prefix by default.
        causal: Whether the backbone's text tower is causal (truncation and the shared prefix
            are exact); ``False``: every encoding runs all L positions, without them.

    Shape:
        forward(class_ids) returns token-level prompts (N, L', W) for N = len(class_ids).

    References:
        Zhou, Yang, Loy, Liu. "Learning to Prompt for Vision-Language Models." IJCV 2022.
        Li et al. "Cross-Modal Alternating Learning with Task-Aware Representations for
        Continual Learning." IEEE TMM 2023.
    """

    def __init__(
        self,
        backbone: "Backbone",
        class_names: list[str],
        *,
        ctx_init: str = DEFAULT_CTX_INIT,
        share_prefix: bool = True,
        groups: list[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(ctx_init, str) or not ctx_init.strip():
            raise ConfigError(f"ctx_init must be a non-empty string such as 'a photo of a', got {ctx_init!r}")
        ctx_init = ctx_init.replace("_", " ").strip()
        n_ctx = len(ctx_init.split(" "))
        p = int(backbone_option(backbone, "text_prefix_length"))  # P special tokens before the text
        self.causal = bool(backbone_option(backbone, "causal_text"))

        init_tokens = backbone.tokenize([ctx_init])  # (1, L)
        init_eot = int(backbone.eot_positions(init_tokens)[0])
        if init_eot - p != n_ctx:
            raise ConfigError(
                f"ctx_init {ctx_init!r} has {n_ctx} words but {init_eot - p} tokens with the tokenizer of "
                f"{backbone.name!r}; use words that are single tokens (e.g. 'a photo of a')"
            )
        ctx = backbone.token_embeddings(init_tokens)[0, p : p + n_ctx].clone()  # (M, W)

        prompts = [f"{ctx_init} {name}." for name in class_names]
        tokens = backbone.tokenize(prompts)  # (C, L)
        check_distinct_prompts(tokens, prompts, backbone=backbone, groups=groups)
        differs = (tokens[:, p : p + n_ctx] != init_tokens[:, p : p + n_ctx].to(tokens.device)).any(dim=1)
        if bool(differs.any()):  # the tokenizer merged a context word with the class name
            logger.warning("the tokenizer of %s splits the prompts of %d classes (e.g. %r) differently from "
                           "ctx_init %r: their learned prompts start from ctx_init's tokens, not from the sentence's",
                           backbone.name, int(differs.sum()), prompts[int(differs.nonzero()[0])], ctx_init)
        eot = backbone.eot_positions(tokens)  # (C,)
        n_pos = int(eot.max()) + 1  # positions any class needs; the rest is padding
        embedding = backbone.token_embeddings(tokens[:, :n_pos])  # (C, L', W)
        if not self.causal:
            logger.info("the text tower of %s attends bidirectionally (every position sees the padding): learned "
                        "prompts are encoded at all %d positions, without the shared prefix or truncation, which "
                        "are exact only under a causal mask", backbone.name, backbone.context_length)

        self.ctx = nn.Parameter(ctx.float())
        self.register_buffer("token_prefix", embedding[:, :p].clone())  # (C, P, W): [SOS], or nothing
        self.register_buffer("token_suffix", embedding[:, p + n_ctx :].clone())  # (C, L'-P-M, W)
        self.register_buffer("tokens", tokens.to(embedding.device), persistent=False)
        self.n_ctx = n_ctx
        self.ctx_init = ctx_init
        self.num_classes = len(class_names)
        self.num_positions = n_pos  # L'
        self.share_prefix = bool(share_prefix)
        # EOT positions on the host: their values set the shapes of the encoding, and reading them
        # from a GPU would synchronise it at every step (see _host_eot).
        self._eot_host = eot.cpu()
        self._host_eot_memo: tuple[torch.Tensor, int, torch.Tensor] | None = None

    def forward(self, class_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token-level prompts ``[SOS][ctx][class tokens][.][EOS]`` of the given classes
        (``[ctx][class tokens][EOS]`` with SigLIP's tokenizers).

        Args:
            class_ids: Classes to build (default: all C).

        Returns:
            Prompt embeddings through which gradients reach :attr:`ctx`.

        Shape:
            class_ids: (N,); returns (N, L', W).
        """
        prefix, suffix = self.token_prefix, self.token_suffix
        if class_ids is not None:
            prefix, suffix = prefix[class_ids], suffix[class_ids]
        ctx = self.ctx.unsqueeze(0).expand(prefix.shape[0], -1, -1)  # (N, M, W)
        return torch.cat([prefix, ctx, suffix], dim=1)  # (N, P + M + S, W)

    def encode(
        self,
        backbone: "Backbone",
        class_ids: torch.Tensor | None = None,
        *,
        truncate: bool = True,
        share_prefix: bool | None = None,
    ) -> torch.Tensor:
        """Unnormalised text features w2 of the given classes with the current context.

        Args:
            backbone: The frozen backbone that built this learner.
            class_ids: Classes to encode (default: all C).
            truncate: Run the text transformer only up to the longest EOT position of these
                classes (exact; ``False`` pads to L = 77 positions as the reference code does).
                Ignored for a bidirectional tower (:attr:`causal` false): always all L.
            share_prefix: Encode the prefix [SOS] + ctx, the same for every class, once for all
                classes instead of once per class, and skip each class's positions after its EOT
                (exact under CLIP's causal mask; gradients to the context vectors are the same).
                ``None``: :attr:`share_prefix`. Ignored for a bidirectional tower.

        Shape:
            class_ids: (N,); returns (N, D).
        """
        share = (self.share_prefix if share_prefix is None else bool(share_prefix)) and self.causal
        truncate = truncate and self.causal  # a bidirectional tower attends to the padding: all L positions
        eot = self._host_eot(class_ids)  # (N,) on the CPU
        if share:
            prefix = torch.cat([self.token_prefix[0], self.ctx], dim=0)  # (P + M, W): [SOS] + ctx
            after = self.token_suffix if class_ids is None else self.token_suffix[class_ids]  # (N, L'-P-M, W)
            if not truncate:
                after = torch.cat([after, self._padding(backbone, class_ids)], dim=1)  # (N, L-P-M, W)
            return backbone.encode_prompt_embeddings(after, eot, truncate=truncate, prefix=prefix)
        prompts = self(class_ids)  # (N, L', W)
        if not truncate:
            prompts = torch.cat([prompts, self._padding(backbone, class_ids)], dim=1)  # (N, L, W)
        return backbone.encode_prompt_embeddings(prompts, eot, truncate=truncate)

    @property
    def eot_positions(self) -> torch.Tensor:
        """Index of [EOS] in each class's prompt, shape (C,), int64 on the CPU."""
        return self._eot_host

    def _host_eot(self, class_ids: torch.Tensor | None) -> torch.Tensor:
        """EOT positions of ``class_ids``, on the CPU.

        Ids on a GPU must be read back once; the answer is remembered for that tensor (the
        learner passes the same id tensor at every step of an experience), so the per-step path
        does not synchronise the device.

        Shape:
            class_ids: (N,); returns (N,) int64 on the CPU.
        """
        if class_ids is None:
            return self._eot_host
        if class_ids.device.type == "cpu":
            return self._eot_host[class_ids]
        memo = self._host_eot_memo
        if memo is not None and memo[0] is class_ids and memo[1] == class_ids._version:
            return memo[2]
        eot = self._eot_host[class_ids.cpu()]  # one host-device sync per new set of classes
        self._host_eot_memo = (class_ids, class_ids._version, eot)
        return eot

    def _padding(self, backbone: "Backbone", class_ids: torch.Tensor | None) -> torch.Tensor:
        """Embeddings of the padding tokens after position L' (for the full-length encoding).

        Shape:
            class_ids: (N,); returns (N, L - L', W).
        """
        full = self.tokens if class_ids is None else self.tokens[class_ids]  # (N, L)
        return backbone.token_embeddings(full[:, self.num_positions :])

    def extra_repr(self) -> str:
        return f"n_ctx={self.n_ctx}, ctx_init={self.ctx_init!r}, classes={self.num_classes}"
