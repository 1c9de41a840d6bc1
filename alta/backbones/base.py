"""The backbone protocol: what :class:`~alta.CrossModalLearner`, :class:`~alta.prompt.PromptLearner`
and the feature cache need from a frozen CLIP-style model, whatever library built it.

ALTA (Li et al., IEEE TMM 2023) keeps both CLIP encoders frozen and learns only the context
vectors of a CoOp prompt (Zhou et al., IJCV 2022) and an image adapter. It therefore needs, from
the backbone:

- image features f1 (``encode_images``);
- the token embeddings of the tokenizer's ids (``tokenize``, ``eot_positions``,
  ``token_embeddings``), to build learned prompts;
- text features of token ids (``encode_tokens``) and of token *embeddings*, optionally with a
  shared prefix computed once (``encode_prompt_embeddings``), read where the text tower reads
  them: the end-of-text (EOT) position of a causal text transformer (CLIP), or the tower's own
  pooling position (SigLIP reads its last position);
- the sizes (``embed_dim`` D, ``token_width`` W, ``context_length`` L, ``input_resolution`` R),
  the frozen ``logit_scale``, ``device`` and ``dtype``;
- optionally (:data:`OPTIONAL_MEMBERS`, with defaults that describe OpenAI CLIP): the frozen
  ``logit_bias`` (SigLIP's learned bias; ``None`` for CLIP), ``text_prefix_length`` (special
  tokens before the text: 1 for CLIP's [SOS], 0 for SigLIP's tokenizers) and ``causal_text``
  (whether the text tower is causal, which makes the truncated and shared-prefix encodings
  exact);
- provenance: ``name``, ``pretrained`` (``False`` marks random weights in every output),
  ``describe()`` and a ``fingerprint()`` that keys feature caches and saved states by source,
  architecture and weights.

:class:`Backbone` writes that interface down as a :class:`typing.Protocol`; any object with
these members works (``tests/test_backbone_protocol.py`` drives the learner with a fake one).
:class:`CausalTextBackbone` is a base class for implementations whose text tower is a stack of
pre-norm self-attention blocks (OpenAI CLIP, open_clip, Hugging Face CLIP): from a few hooks it
gives them the exact truncated and shared-prefix text encodings when the tower is causal, and the
plain full-length encoding when it attends bidirectionally (SigLIP, most MobileCLIPs).
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import ConfigError, ShapeError

__all__ = ["Backbone", "BACKBONE_MEMBERS", "OPTIONAL_MEMBERS", "backbone_option", "check_backbone", "TextBlock",
           "CausalTextBackbone", "PRECISIONS"]

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@runtime_checkable
class Backbone(Protocol):
    """A frozen CLIP-style model, as the learner, the prompt learner and the cache use it.

    Shapes use B images, N sequences, L tokens, W token width, D embedding dim, R pixels.

    Attributes:
        name: Name it was loaded under (``"tiny-vit"``, ``"open_clip:ViT-B-16"``, a path, ...).
        pretrained: ``False`` for random weights: every output built on it says RANDOM.
        input_resolution: R, the image size in pixels the image encoder expects.
        embed_dim: D, the joint embedding dimension.
        token_width: W, the width of one token embedding of the text transformer.
        context_length: L, the text context length (77 for CLIP).
        logit_scale: s, the frozen temperature multiplying cosine similarities.
        device: Where the encoders live.
        dtype: Compute dtype of the encoders.

    Optional attributes (:data:`OPTIONAL_MEMBERS`; read with :func:`backbone_option`):
        logit_bias: b, the frozen learned bias of SigLIP's logits ``s * cos + b``, or ``None``.
        text_prefix_length: Special tokens before the text (1: CLIP's [SOS]; 0: SigLIP's).
        causal_text: Whether the text tower is causal and read at the end of text (CLIP), so
            its truncated and shared-prefix encodings are exact; ``False`` for bidirectional
            towers (SigLIP, MobileCLIP-S*), which always run all L positions.
    """

    name: str
    pretrained: bool
    input_resolution: int
    embed_dim: int
    token_width: int
    context_length: int
    logit_scale: float

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Image features (unnormalised), float32, without gradients. Shape: (B, 3, R, R) -> (B, D)."""

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids of ``texts`` padded to L, after ``text_prefix_length`` special tokens ([SOS]
        for CLIP). Shape: returns (N, L) int64.

        Raises :class:`~alta.errors.ConfigError` when a text is longer than L tokens."""

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Index of each row's end-of-text token (the one after the text). Shape: (N, L) -> (N,) int64."""

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Float32 token embeddings, without gradients. Shape: (N, L) -> (N, L, W)."""

    def encode_tokens(self, tokens: torch.Tensor, *, truncate: bool = True) -> torch.Tensor:
        """Text features of token ids, float32, without gradients. Shape: (N, L) -> (N, D)."""

    def encode_prompt_embeddings(
        self,
        embeddings: torch.Tensor,
        eot_positions: torch.Tensor,
        *,
        truncate: bool = True,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text features of token embeddings whose ends of text are at ``eot_positions`` (where a
        CLIP tower reads them), with gradients to ``embeddings`` and ``prefix`` (the positions
        shared by every sequence). When ``causal_text`` is false, all L positions are needed.

        Shape: embeddings (N, L', W) or (N, L' - P, W) with prefix (P, W); returns (N, D)."""

    def fingerprint(self) -> str:
        """A stable identifier of source, architecture and weights (cache and checkpoint keys)."""

    def describe(self) -> dict:
        """A JSON-ready description (name, pretrained, source, sizes, fingerprint)."""

    def train(self, mode: bool = True): ...


BACKBONE_MEMBERS = (
    "name", "pretrained", "input_resolution", "embed_dim", "token_width", "context_length", "logit_scale",
    "device", "dtype", "encode_images", "tokenize", "eot_positions", "token_embeddings", "encode_tokens",
    "encode_prompt_embeddings", "fingerprint", "describe", "train",
)


#: Members a backbone may have, with the value assumed when it has not (OpenAI CLIP's): the
#: frozen learned logit bias b, added to every logit s * cos + b (SigLIP; ``None``: no bias); the
#: number of special tokens before the text ([SOS]: 1; SigLIP's tokenizers: 0); and whether the
#: text tower is causal and read at the end of text, which makes the truncated and shared-prefix
#: encodings exact (``False``: a bidirectional tower, always run at all L positions).
OPTIONAL_MEMBERS = {"logit_bias": None, "text_prefix_length": 1, "causal_text": True}


def backbone_option(backbone, name: str):
    """The optional member ``name`` of ``backbone`` (:data:`OPTIONAL_MEMBERS`), or its default.

    Raises:
        KeyError: ``name`` is not one of :data:`OPTIONAL_MEMBERS` (a programming error).
    """
    return getattr(backbone, name, OPTIONAL_MEMBERS[name])


def check_backbone(backbone) -> None:
    """Raise unless ``backbone`` has every member of the :class:`Backbone` protocol.

    Raises:
        ConfigError: naming the missing members and how to get a backbone.
    """
    missing = [m for m in BACKBONE_MEMBERS if not hasattr(backbone, m)]
    if missing:
        raise ConfigError(
            f"backbone must implement the alta.backbones.Backbone protocol, but {type(backbone).__name__} lacks "
            f"{', '.join(missing)}; build one with alta.load_backbone(name) (clip, open_clip: or hf: names) or "
            f"implement those members"
        )


@dataclass(frozen=True)
class TextBlock:
    """One pre-norm causal self-attention block seen through plain functions.

    ``x + ls_1(out_proj(attn(ln_1(x))))`` then ``x + ls_2(mlp(ln_2(x)))``, the query, key and value
    projections fused in one linear layer. This view lets the shared-prefix encoding run on the
    blocks of any library (see :func:`shared_prefix_block`).

    Attributes:
        ln_1: First layer norm.
        qkv_weight: Fused query, key, value projection weight, (3W, W).
        qkv_bias: Its bias, (3W,), or ``None``.
        num_heads: H; each head has width d = W / H and scores are scaled by 1 / sqrt(d).
        out_proj: Output projection of the attention.
        ln_2: Second layer norm.
        mlp: The feed-forward network.
        ls_1: Layer scale after the attention, or ``None``.
        ls_2: Layer scale after the feed-forward network, or ``None``.
    """

    ln_1: Callable
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    num_heads: int
    out_proj: Callable
    ln_2: Callable
    mlp: Callable
    ls_1: Callable | None = None
    ls_2: Callable | None = None


def shared_prefix_block(
    block: TextBlock, shared: torch.Tensor, x: torch.Tensor, *, keep: torch.Tensor, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One causal residual attention block with a shared prefix and packed positions (see
    :meth:`CausalTextBackbone.encode_prompt_embeddings`).

    Same computation as the block with its causal mask, attention split into H heads of width
    d = W / H and scaled by 1 / sqrt(d) as in ``nn.MultiheadAttention``. The per-position layers
    (layer norms, projections, MLP) run on the T kept positions; only the attention scores use
    the padded N x S grid, where the causal mask keeps every kept position away from the padding
    after its EOT.

    Args:
        block: The block.
        shared: Hidden states of the shared prefix.
        x: Hidden states of the kept positions after the prefix, sequence by sequence.
        keep: Index of each kept position in the flattened N x S grid.
        grid: (N, S).

    Shape:
        shared: (P, W); x: (T, W); keep: (T,); returns (P, W) and (T, W).
    """
    num_prefix, width = shared.shape  # P, W
    n, s = grid  # N sequences, S positions after the prefix
    heads = block.num_heads  # H
    head_dim = width // heads  # d
    sdpa = nn.functional.scaled_dot_product_attention

    qkv_shared = nn.functional.linear(block.ln_1(shared), block.qkv_weight, block.qkv_bias)  # (P, 3W)
    qkv = nn.functional.linear(block.ln_1(x), block.qkv_weight, block.qkv_bias)  # (T, 3W)
    qkv = qkv.new_zeros(n * s, 3 * width).index_copy(0, keep, qkv)  # (N*S, 3W): back on the grid
    q_p, k_p, v_p = qkv_shared.view(num_prefix, 3, heads, head_dim).permute(1, 2, 0, 3)  # each (H, P, d)
    q_s, k_s, v_s = qkv.view(n, s, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # each (N, H, S, d)

    # The prefix attends causally to itself only: once, not once per sequence.
    out_p = sdpa(q_p, k_p, v_p, is_causal=True)  # (H, P, d)
    # Every later position attends to the whole prefix and causally to its own sequence.
    keys = torch.cat([k_p.unsqueeze(0).expand(n, -1, -1, -1), k_s], dim=2)  # (N, H, P + S, d)
    values = torch.cat([v_p.unsqueeze(0).expand(n, -1, -1, -1), v_s], dim=2)  # (N, H, P + S, d)
    visible = torch.ones(s, num_prefix + s, dtype=torch.bool, device=x.device).tril(num_prefix)  # (S, P + S)
    out_s = sdpa(q_s, keys, values, attn_mask=visible)  # (N, H, S, d)

    out_p = out_p.transpose(0, 1).reshape(num_prefix, width)  # (P, W)
    out_s = out_s.transpose(1, 2).reshape(n * s, width).index_select(0, keep)  # (T, W)
    ls_1 = block.ls_1 or (lambda t: t)
    ls_2 = block.ls_2 or (lambda t: t)
    shared = shared + ls_1(block.out_proj(out_p))
    x = x + ls_1(block.out_proj(out_s))
    shared = shared + ls_2(block.mlp(block.ln_2(shared)))
    x = x + ls_2(block.mlp(block.ln_2(x)))
    return shared, x


def causal_blocks(blocks: list[TextBlock], x: torch.Tensor) -> torch.Tensor:
    """Run causal blocks on whole sequences (the plain path for libraries whose own transformer
    cannot take token embeddings directly).

    Shape:
        x: (N, L', W); returns (N, L', W).
    """
    n, length, width = x.shape
    sdpa = nn.functional.scaled_dot_product_attention
    for block in blocks:
        heads = block.num_heads
        qkv = nn.functional.linear(block.ln_1(x), block.qkv_weight, block.qkv_bias)  # (N, L', 3W)
        q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)  # each (N, H, L', d)
        out = sdpa(q, k, v, is_causal=True).transpose(1, 2).reshape(n, length, width)  # (N, L', W)
        ls_1 = block.ls_1 or (lambda t: t)
        ls_2 = block.ls_2 or (lambda t: t)
        x = x + ls_1(block.out_proj(out))
        x = x + ls_2(block.mlp(block.ln_2(x)))
    return x


def hash_state(header: str, state: dict[str, torch.Tensor]) -> str:
    """SHA-256 (first 16 hex digits) of ``header`` and every tensor of ``state``, in order."""
    h = hashlib.sha256(header.encode())
    for key, tensor in state.items():
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class CausalTextBackbone(nn.Module, metaclass=abc.ABCMeta):
    """Shared implementation of :class:`Backbone` for CLIP-style models whose text tower is a
    stack of pre-norm self-attention blocks, causal and read at the EOT token (CLIP), or
    bidirectional (``causal_text = False``: SigLIP, most MobileCLIPs).

    Subclasses wrap a library's model and fill in the hooks ``_encode_image``, ``_token_embedding``
    (an ``nn.Embedding``), ``_positional_embedding``, ``_text_blocks``, ``_run_text_transformer``,
    ``_ln_final``, ``_project_text``, ``tokenize``, ``eot_positions`` and ``fingerprint``; they set
    the attributes of the protocol in their constructor. The backbone is always in eval mode and
    has no trainable parameters.

    Both text paths run the transformer only up to the longest EOT position among the sequences
    they encode. The causal mask keeps a position from attending to later ones, so the feature
    read at the EOT token does not depend on the padding after it: the truncated encoding is
    exact (``tests/test_backbones.py`` checks it against full length).

    A bidirectional tower (``causal_text = False``) lets every position attend to every other,
    the padding included, which the libraries do not mask: neither truncation nor a shared
    prefix is exact there, so both text paths run all L positions and the prefix is encoded
    with each sequence. Such a tower may read its feature elsewhere than at the end of text
    (SigLIP: at position L - 1); subclasses say where with ``_readout_positions``.
    """

    library: str = ""  # the library that built the model, recorded by describe()
    name: str
    pretrained: bool
    source: str
    precision: str
    input_resolution: int
    embed_dim: int
    token_width: int
    context_length: int
    logit_scale: float
    logit_bias: float | None = None  # SigLIP's learned bias (see OPTIONAL_MEMBERS)
    text_prefix_length: int = 1  # [SOS]
    causal_text: bool = True

    # ---------------------------------------------------------------- hooks (each source implements them)
    @abc.abstractmethod
    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, R, R) -> (B, D)
        ...

    @property
    @abc.abstractmethod
    def _token_embedding(self) -> nn.Embedding:
        ...

    @abc.abstractmethod
    def _positional_embedding(self) -> torch.Tensor:  # (L, W)
        ...

    @abc.abstractmethod
    def _text_blocks(self) -> list[TextBlock] | None:
        """The blocks as :class:`TextBlock` views, or ``None`` when the prefix cannot be shared."""

    @abc.abstractmethod
    def _run_text_transformer(self, x: torch.Tensor) -> torch.Tensor:  # (N, L', W) -> (N, L', W), with its mask
        ...

    def _readout_positions(self, eot_positions: torch.Tensor, length: int) -> torch.Tensor:
        """Where the tower reads each sequence's feature among ``length`` positions: at the end of
        text (CLIP). Shape: (N,) -> (N,)."""
        return eot_positions

    @abc.abstractmethod
    def _ln_final(self, x: torch.Tensor) -> torch.Tensor:  # (..., W) -> (..., W) in the compute dtype
        ...

    @abc.abstractmethod
    def _project_text(self, x: torch.Tensor) -> torch.Tensor:  # (N, W) -> (N, D)
        ...

    @abc.abstractmethod
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        ...

    @abc.abstractmethod
    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        ...

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A string that names the weights (library, architecture, source, precision)."""

    # ---------------------------------------------------------------- housekeeping
    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the encoders."""
        return PRECISIONS[self.precision]

    @property
    def device(self) -> torch.device:
        return self._token_embedding.weight.device

    def train(self, mode: bool = True):
        """The backbone is frozen: it stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    def describe(self) -> dict:
        """A JSON-ready description (name, pretrained, source, sizes) for results files."""
        return {
            "name": self.name,
            "library": self.library,
            "pretrained": self.pretrained,
            "source": self.source,
            "precision": self.precision,
            "input_resolution": self.input_resolution,
            "embed_dim": self.embed_dim,
            "token_width": self.token_width,
            "logit_scale": self.logit_scale,
            "fingerprint": self.fingerprint(),
        }

    def __repr__(self) -> str:
        kind = "pretrained" if self.pretrained else "RANDOM weights, not pretrained"
        return (
            f"{type(self).__name__}({self.name!r}, {kind}, {self.input_resolution}px, D={self.embed_dim}, "
            f"W={self.token_width}, precision={self.precision})"
        )

    # ---------------------------------------------------------------- encodings
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Task-invariant image features f1 (unnormalised, as CLIP's ``encode_image``).

        Args:
            images: Preprocessed images on any device.

        Returns:
            Float32 features on the backbone's device.

        Raises:
            ShapeError: if ``images`` is not (B, 3, R, R) with R the backbone's resolution.

        Shape:
            images: (B, 3, R, R); returns (B, D).
        """
        self.check_images(images)
        images = images.to(self.device, dtype=self.dtype, non_blocking=True)
        return self._encode_image(images).float()

    def check_images(self, images: torch.Tensor) -> None:
        """Raise :class:`ShapeError` unless ``images`` is (B, 3, R, R) at this backbone's R."""
        r = self.input_resolution
        if isinstance(images, torch.Tensor) and images.ndim == 4 and not images.is_floating_point():
            raise ShapeError(
                f"backbone {self.name!r} expects float images normalised by a transform, got dtype {images.dtype}; "
                f"convert them (e.g. ToTensor + Normalize, or alta.make_transform(..., resolution={r}))"
            )
        if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[0] == 0:
            raise ShapeError("got an empty batch of images (B = 0); pass at least one image")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (3, r, r):
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ShapeError(
                f"backbone {self.name!r} expects images of shape (B, 3, {r}, {r}), got {got}; "
                f"resize them to {r} px (e.g. ScenarioStream.from_name(..., resolution={r}) or "
                f"alta.data.make_transform(..., resolution={r}))"
            )

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings of token ids, in float32.

        Shape:
            tokens: (N, L) int64; returns (N, L, W).
        """
        with torch.no_grad():
            return self._token_embedding(tokens.to(self.device)).float()

    def encode_prompt_embeddings(
        self,
        embeddings: torch.Tensor,
        eot_positions: torch.Tensor,
        *,
        truncate: bool = True,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text features of sequences given as token embeddings (CoOp's text encoder).

        Identical to CLIP's ``encode_text`` after its embedding lookup: add positional embeddings,
        run the causal transformer, apply the final layer norm, read the EOT position, project.
        Gradients flow to ``embeddings`` and ``prefix`` (the learned context vectors).

        Shared prefix (``prefix`` given): CoOp's prompts all start with the same P positions,
        [SOS] + the M context vectors. Under the causal mask a position only attends to itself
        and earlier ones, so the hidden states of those P positions are the same for every
        sequence at every layer: they are computed once, for one sequence, and the later
        positions of every sequence attend to the shared keys and values (as a key/value cache
        does). The positions after each sequence's own EOT are dropped too (they never reach an
        EOT feature): the transformer's linear layers run on ``P + sum(eot - P + 1)`` positions
        instead of ``N * L'``. Exact. A text tower whose blocks cannot be viewed as
        :class:`TextBlock` (``_text_blocks`` returns ``None``) falls back to the plain encoding of
        the concatenated sequences, which gives the same features.

        Bidirectional towers (``causal_text`` false): every position attends to every other, the
        padding included, so ``truncate`` is ignored (all L positions run, as the library runs
        them) and a ``prefix`` is encoded with each sequence (the same features, no saving).
        The feature is read where the tower reads it (``_readout_positions``: SigLIP's last
        position, MobileCLIP's end of text).

        Args:
            embeddings: Token embeddings of every sequence; without ``prefix`` all positions
                from 0, with ``prefix`` the positions after it (from P). Only the positions up to
                ``max(eot_positions)`` are read when ``truncate`` is true, so they may stop
                there.
            eot_positions: Index of the EOT token of each sequence, counted from position 0 of
                the full sequence (prefix included); with ``prefix`` every index must be >= P.
                Keep them on the CPU (any device is accepted): their values decide the shapes,
                and reading them from a GPU costs a host-device synchronisation.
            truncate: Run the transformer only up to the longest EOT position (exact under the
                causal mask). ``False`` runs all L positions as the reference code does; then
                the sequences must reach L positions (always, for a bidirectional tower).
            prefix: Embeddings of the leading positions shared by every sequence, or ``None``.

        Returns:
            Unnormalised float32 text features.

        Raises:
            ShapeError: wrong embedding width, too few positions, or an EOT position inside the
                prefix.

        Shape:
            embeddings: (N, L', W), or (N, L' - P, W) with prefix (P, W); eot_positions: (N,);
            returns (N, D).
        """
        if embeddings.ndim != 3 or embeddings.shape[-1] != self.token_width:
            raise ShapeError(
                f"expected token embeddings of shape (N, L, {self.token_width}), got {tuple(embeddings.shape)}"
            )
        if prefix is not None and (prefix.ndim != 2 or prefix.shape[-1] != self.token_width):
            raise ShapeError(f"expected a shared prefix of shape (P, {self.token_width}), got {tuple(prefix.shape)}")
        num_prefix = 0 if prefix is None else prefix.shape[0]  # P
        eot_host = eot_positions.cpu()  # (N,): a no-op for positions kept on the CPU
        truncate = truncate and self.causal_text  # a bidirectional tower attends to the padding too
        n_pos = int(eot_host.max()) + 1 if truncate else self.context_length  # L'
        if num_prefix + embeddings.shape[1] < n_pos:
            raise ShapeError(f"need at least {n_pos} token positions, got {num_prefix + embeddings.shape[1]}")
        if prefix is not None and bool((eot_host < num_prefix).any()):
            raise ShapeError(f"an EOT position lies inside the shared prefix of {num_prefix} positions")
        device, dtype = embeddings.device, self.dtype
        positions = self._positional_embedding()[:n_pos].to(dtype)  # (L', W)
        blocks = None if prefix is None or not self.causal_text else self._text_blocks()
        if blocks is None:
            if prefix is not None:  # documented fallback: encode [prefix, embeddings] in full
                embeddings = torch.cat([prefix.unsqueeze(0).expand(embeddings.shape[0], -1, -1), embeddings], dim=1)
            x = embeddings[:, :n_pos].to(dtype) + positions  # (N, L', W)
            x = self._run_text_transformer(x)  # (N, L', W)
            x = self._ln_final(x)
            read = self._readout_positions(eot_host, n_pos).to(device, non_blocking=True)  # (N,)
            x = x[torch.arange(x.shape[0], device=device), read]  # (N, W): EOT (or the tower's) read-out
            return self._project_text(x).float()  # (N, D)

        n, s = embeddings.shape[0], n_pos - num_prefix  # N sequences, S positions after the prefix
        lengths = eot_host - num_prefix + 1  # (N,) positions each sequence needs after the prefix
        keep = (torch.arange(s) < lengths.unsqueeze(1)).view(-1).nonzero().squeeze(1)  # (T,) in the N x S grid
        eot_rows = lengths.cumsum(0) - 1  # (N,) row of each EOT among the T kept positions
        keep, eot_rows = keep.to(device, non_blocking=True), eot_rows.to(device, non_blocking=True)

        shared = prefix.to(dtype) + positions[:num_prefix]  # (P, W)
        x = embeddings[:, :s].to(dtype) + positions[num_prefix:]  # (N, S, W)
        x = x.reshape(n * s, -1).index_select(0, keep)  # (T, W): only positions up to each EOT
        for block in blocks:
            shared, x = shared_prefix_block(block, shared, x, keep=keep, grid=(n, s))
        x = self._ln_final(x.index_select(0, eot_rows))  # (N, W): EOT read-out
        return self._project_text(x).float()  # (N, D)

    def encode_tokens(self, tokens: torch.Tensor, *, truncate: bool = True, chunk_size: int = 256) -> torch.Tensor:
        """Text features of tokenised sentences (CLIP's ``encode_text``), without gradients.

        Args:
            tokens: Token ids from :meth:`tokenize`.
            truncate: Stop at the longest EOT position (exact; see the class docstring).
            chunk_size: Sentences encoded per forward pass (bounds memory for many classes).

        Shape:
            tokens: (N, L) int64; returns (N, D) float32.
        """
        tokens = tokens.to(self.device)
        eot = self.eot_positions(tokens)
        out = []
        with torch.no_grad():
            for start in range(0, tokens.shape[0], chunk_size):
                tok = tokens[start : start + chunk_size]
                e = eot[start : start + chunk_size]
                n_pos = int(e.max()) + 1 if truncate and self.causal_text else tok.shape[1]
                emb = self._token_embedding(tok[:, :n_pos]).float()
                out.append(self.encode_prompt_embeddings(emb, e, truncate=truncate))
        return torch.cat(out) if out else torch.empty(0, self.embed_dim, device=self.device)


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise :class:`ConfigError`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be 'fp32', 'fp16' or 'bf16', got {precision!r}")
    return precision
