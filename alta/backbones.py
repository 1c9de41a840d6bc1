"""Frozen CLIP backbones: OpenAI weights through clip-anytorch, local checkpoints, and small
random-weight models for tests and offline runs.

ALTA (Li et al., IEEE TMM 2023) keeps both CLIP encoders frozen; only the context
vectors of the prompt and the image adapter learn. :class:`ClipBackbone` wraps a
``clip.model.CLIP`` accordingly: it is always in eval mode, has no trainable parameters, and
exposes the three encodings ALTA needs:

- :meth:`ClipBackbone.encode_images`: the task-invariant image feature f1, shape (B, D);
- :meth:`ClipBackbone.encode_tokens`: text features of tokenised sentences (CLIP's
  ``encode_text``), used for the hand-written prompts w1;
- :meth:`ClipBackbone.encode_prompt_embeddings`: text features of token *embeddings*, used for
  learned prompts w2 (CoOp, Zhou et al., IJCV 2022).

Both text paths run the transformer only up to the longest end-of-text (EOT) position among the
sequences they encode. CLIP's text transformer uses a causal mask, so a position never attends
to later ones and the feature read at the EOT token does not depend on the padding after it:
the truncated encoding is exact (``tests/test_backbones.py`` checks it against full length).

Names (see :func:`list_backbones`):

- the OpenAI CLIP names of clip-anytorch (``RN50``, ``RN101``, ``RN50x4``, ``RN50x16``,
  ``ViT-B/32``, ``ViT-B/16`` and the others ``clip.available_models()`` lists): pretrained
  weights, read from ``download_root`` (default ``~/.cache/clip``) and downloaded there if
  missing and ``download=True``;
- a path to a local checkpoint file (an OpenAI ``.pt`` archive or a state dict);
- ``tiny-vit`` and ``tiny-rn``: a few million parameters, 32 px input, seeded random weights;
- ``random-<OpenAI name>`` (e.g. ``random-ViT-B/32``): the real architecture with seeded random
  weights, for speed measurements without downloads.

Random-weight backbones are marked ``pretrained=False``; anything that reports results from them
must say that they are not comparable with the paper's numbers.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import BackboneError, ConfigError, ShapeError
from .io import atomic_write
from .registry import Registry

__all__ = [
    "ClipArchitecture",
    "ClipBackbone",
    "load_backbone",
    "list_backbones",
    "default_download_root",
    "save_backbone",
    "BACKBONES",
    "import_clip",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ClipArchitecture:
    """Sizes of a ``clip.model.CLIP`` (the constructor's arguments).

    ``vision_layers`` is an int for a ViT image encoder and a 4-tuple for a modified ResNet.
    Text width and image width must be multiples of 64 so that clip-anytorch's
    ``build_model`` (which derives the number of heads as width // 64) can reload a saved
    state dict.
    """

    embed_dim: int
    image_resolution: int
    vision_layers: int | tuple[int, int, int, int]
    vision_width: int
    vision_patch_size: int | None
    transformer_width: int
    transformer_heads: int
    transformer_layers: int
    context_length: int = 77
    vocab_size: int = 49408

    def build(self, *, seed: int = 0) -> nn.Module:
        """Build a ``clip.model.CLIP`` with seeded random weights (the global RNG is untouched).

        With CLIP's own initialisation a random modified ResNet maps every image to almost the
        same feature (the residual branches start at zero and batch norm, in eval mode, does
        not rescale the shrinking activations). So that random ResNets are usable feature
        extractors for offline runs, the last batch norm of each block starts at 1 and all
        batch-norm statistics are calibrated once on seeded Gaussian noise images. The logit
        scale is set to OpenAI's trained value, 100 (CLIP's initial value is 1/0.07), so the
        reference learning rates behave as they do on pretrained weights. Finally the biases
        before both projections are centred on seeded calibration inputs (see
        ``_center_features``), so features are not all near one direction.
        """
        CLIP = import_clip().model.CLIP

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIP(
                self.embed_dim,
                self.image_resolution,
                self.vision_layers,
                self.vision_width,
                self.vision_patch_size,
                self.context_length,
                self.vocab_size,
                self.transformer_width,
                self.transformer_heads,
                self.transformer_layers,
            )
        model = model.float().eval()
        with torch.no_grad():  # OpenAI's trained value (clamped at 100); CLIP's init would give 1/0.07
            model.logit_scale.fill_(math.log(100.0))
        if isinstance(self.vision_layers, tuple):
            _calibrate_resnet(model.visual, resolution=self.image_resolution, seed=seed)
        _center_features(model, resolution=self.image_resolution, seed=seed)
        return model


@torch.no_grad()
def _center_features(model: nn.Module, *, resolution: int, seed: int, num: int = 256) -> None:
    """Remove the common direction that random towers give every input.

    A random CLIP maps all images (and all sentences) to nearly the same direction (mean
    pairwise cosine above 0.9). The bias of the last layer before each projection (the ViT's
    ``ln_post``, the ResNet attention pool's ``c_proj``, the text tower's ``ln_final``) is
    shifted so that its output averages to zero over seeded calibration inputs: Gaussian noise
    images and random token sequences. Features then spread like those of a trained model.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    visual = model.visual
    noise = torch.randn(num, 3, resolution, resolution, generator=generator)
    if hasattr(visual, "ln_post"):  # ViT: features = ln_post(x) @ proj
        captured: list[torch.Tensor] = []
        handle = visual.ln_post.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
        visual(noise)
        handle.remove()
        visual.ln_post.bias -= captured[0].mean(0)
    else:  # modified ResNet: features = attention pool, whose c_proj bias is added last
        visual.attnpool.c_proj.bias -= visual(noise).mean(0)

    length = 12  # [SOS] + up to 10 random tokens + [EOS], then padding
    tokens = torch.randint(1, model.vocab_size - 2, (num, length), generator=generator)
    eot = torch.randint(3, length, (num,), generator=generator)
    tokens[:, 0] = model.vocab_size - 2  # <|startoftext|>
    tokens[torch.arange(num), eot] = model.vocab_size - 1  # <|endoftext|>
    tokens[torch.arange(length)[None] > eot[:, None]] = 0
    captured = []
    handle = model.ln_final.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
    model.encode_text(tokens)
    handle.remove()
    model.ln_final.bias -= captured[0][torch.arange(num), eot].mean(0)


def _calibrate_resnet(visual: nn.Module, *, resolution: int, seed: int, num_images: int = 64) -> None:
    """Set batch-norm statistics of a random modified ResNet from seeded noise images."""
    norms = [m for m in visual.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for name, param in visual.named_parameters():
            if name.endswith("bn3.weight"):
                param.fill_(1.0)
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batch
        visual.train()
        noise = torch.randn(num_images, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
        visual(noise)
        visual.eval()
        for bn in norms:
            bn.momentum = 0.1


# name -> architecture of a random-weight backbone
BACKBONES: Registry[ClipArchitecture] = Registry("backbone")

BACKBONES.add(
    "tiny-vit",
    ClipArchitecture(
        embed_dim=512, image_resolution=32, vision_layers=2, vision_width=128, vision_patch_size=16,
        transformer_width=128, transformer_heads=2, transformer_layers=2,
    ),
)
BACKBONES.add(
    "tiny-rn",
    ClipArchitecture(
        embed_dim=512, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=16,
        vision_patch_size=None, transformer_width=128, transformer_heads=2, transformer_layers=2,
    ),
)

# The OpenAI architectures (Radford et al., ICML 2021, Tables 19-20), for random-init speed tests.
_OPENAI_ARCHITECTURES = {
    "RN50": ClipArchitecture(1024, 224, (3, 4, 6, 3), 64, None, 512, 8, 12),
    "RN101": ClipArchitecture(512, 224, (3, 4, 23, 3), 64, None, 512, 8, 12),
    "RN50x4": ClipArchitecture(640, 288, (4, 6, 10, 6), 80, None, 640, 10, 12),
    "RN50x16": ClipArchitecture(768, 384, (6, 8, 18, 8), 96, None, 768, 12, 12),
    "ViT-B/32": ClipArchitecture(512, 224, 12, 768, 32, 512, 8, 12),
    "ViT-B/16": ClipArchitecture(512, 224, 12, 768, 16, 512, 8, 12),
}
for _name, _arch in _OPENAI_ARCHITECTURES.items():
    BACKBONES.add(f"random-{_name}", _arch)


def import_clip():
    """Import clip-anytorch, hiding its ``pkg_resources`` deprecation warning.

    Returns:
        The ``clip`` module (``clip.tokenize``, ``clip.model``, ``clip.load``).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import clip  # noqa: PLC0415 - clip-anytorch; imported lazily so `import alta` stays light

    return clip


def _openai_models() -> dict[str, str]:
    return dict(import_clip().clip._MODELS)


def list_backbones(*, pretrained: bool | None = None) -> list[str]:
    """Names accepted by :func:`load_backbone` (a local checkpoint path is accepted too).

    Args:
        pretrained: ``True`` for the OpenAI names only, ``False`` for the random-weight ones,
            ``None`` (default) for both.
    """
    names: list[str] = []
    if pretrained in (None, True):
        names += list(_openai_models())
    if pretrained in (None, False):
        names += BACKBONES.names()
    return names


def default_download_root() -> Path:
    """Where clip-anytorch keeps downloaded weights: ``~/.cache/clip``."""
    return Path(os.path.expanduser("~/.cache/clip"))


class ClipBackbone(nn.Module):
    """A frozen CLIP model with the encodings ALTA needs.

    Build one with :func:`load_backbone`. The wrapped model never trains: every parameter has
    ``requires_grad=False`` and :meth:`train` keeps it in eval mode (batch-norm statistics of the
    ResNet encoders stay fixed, as in the reference code).

    Attributes:
        name: The name or path it was loaded from.
        pretrained: ``True`` for OpenAI weights (or a local checkpoint not marked otherwise),
            ``False`` for random weights.
        source: Where the weights came from (file path, or ``"random weights, seed=<s>"``).
        model: The wrapped ``clip.model.CLIP``.
        input_resolution: Image size in pixels the image encoder expects (from the model).
        embed_dim: D, the joint embedding dimension.
        token_width: W, the text transformer width (size of one token embedding).
        context_length: L, the text context length (77 for OpenAI CLIP).
        logit_scale: s = exp(CLIP's learned logit scale), frozen (100 for OpenAI weights).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        pretrained: bool,
        source: str,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        if precision not in ("fp32", "fp16", "bf16"):
            raise ConfigError(f"precision must be 'fp32', 'fp16' or 'bf16', got {precision!r}")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.name = name
        self.pretrained = pretrained
        self.source = source
        self.precision = precision
        self.input_resolution = int(model.visual.input_resolution)
        self.embed_dim = int(model.text_projection.shape[1])
        self.token_width = int(model.token_embedding.weight.shape[1])
        self.context_length = int(model.context_length)
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        self._fingerprint: str | None = None
        self._apply_precision()

    # ---------------------------------------------------------------- housekeeping
    def _apply_precision(self) -> None:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]
        if dtype == torch.float32:
            self.model.float()
        else:
            # Same layers as clip-anytorch's convert_weights; LayerNorm computes in fp32 anyway.
            for module in self.model.modules():
                if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                    module.to(dtype)
                elif isinstance(module, nn.MultiheadAttention):
                    for attr in ("in_proj_weight", "in_proj_bias", "bias_k", "bias_v"):
                        tensor = getattr(module, attr)
                        if tensor is not None:
                            tensor.data = tensor.data.to(dtype)
            for holder in (self.model, self.model.visual):
                for attr in ("text_projection", "proj"):
                    tensor = getattr(holder, attr, None)
                    if isinstance(tensor, torch.Tensor):
                        tensor.data = tensor.data.to(dtype)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the encoders."""
        return self.model.visual.conv1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.token_embedding.weight.device

    def train(self, mode: bool = True) -> "ClipBackbone":
        """The backbone is frozen: it stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    def fingerprint(self) -> str:
        """A stable identifier of the weights, for feature-cache keys and saved states.

        SHA-256 over the name, source, precision and every parameter and buffer of the model
        (so a checkpoint file replaced at the same path gets a new fingerprint). Computed once
        (about a second for RN50) and remembered: the backbone is frozen.
        """
        if self._fingerprint is None:
            h = hashlib.sha256(f"{self.name}\0{self.source}\0{self.precision}".encode())
            for key, tensor in self.model.state_dict().items():
                h.update(key.encode())
                h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def describe(self) -> dict:
        """A JSON-ready description (name, pretrained, source, sizes) for results files."""
        return {
            "name": self.name,
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
            f"ClipBackbone({self.name!r}, {kind}, {self.input_resolution}px, D={self.embed_dim}, "
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
        return self.model.encode_image(images).float()

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
            return self.model.token_embedding(tokens.to(self.device)).float()

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
        run the causal transformer, apply the final layer norm, read the EOT position, project
        with ``text_projection``. Gradients flow to ``embeddings`` and ``prefix`` (the learned
        context vectors).

        Shared prefix (``prefix`` given): CoOp's prompts all start with the same P positions,
        [SOS] + the M context vectors. Under CLIP's causal mask a position only attends to itself
        and earlier ones, so the hidden states of those P positions are the same for every
        sequence at every layer: they are computed once, for one sequence, and the later
        positions of every sequence attend to the shared keys and values (as a key/value cache
        does). The positions after each sequence's own EOT are dropped too (they never reach an
        EOT feature): the transformer's linear layers run on ``P + sum(eot - P + 1)`` positions
        instead of ``N * L'``. Exact.

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
                the sequences must reach L positions.
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
        n_pos = int(eot_host.max()) + 1 if truncate else self.context_length  # L'
        if num_prefix + embeddings.shape[1] < n_pos:
            raise ShapeError(f"need at least {n_pos} token positions, got {num_prefix + embeddings.shape[1]}")
        device = embeddings.device
        model, dtype = self.model, self.dtype
        positions = model.positional_embedding[:n_pos].to(dtype)  # (L', W)
        if prefix is None:
            x = embeddings[:, :n_pos].to(dtype) + positions  # (N, L', W)
            x = x.permute(1, 0, 2)  # (L', N, W): clip's transformer is sequence-first
            x = model.transformer(x)  # causal mask sliced to L' x L' inside each block
            x = x.permute(1, 0, 2)  # (N, L', W)
            x = model.ln_final(x).to(dtype)
            eot = eot_host.to(device, non_blocking=True)
            x = x[torch.arange(x.shape[0], device=device), eot]  # (N, W): EOT read-out
            return (x @ model.text_projection).float()  # (N, D)

        if bool((eot_host < num_prefix).any()):
            raise ShapeError(f"an EOT position lies inside the shared prefix of {num_prefix} positions")
        n, s = embeddings.shape[0], n_pos - num_prefix  # N sequences, S positions after the prefix
        lengths = eot_host - num_prefix + 1  # (N,) positions each sequence needs after the prefix
        keep = (torch.arange(s) < lengths.unsqueeze(1)).view(-1).nonzero().squeeze(1)  # (T,) in the N x S grid
        eot_rows = lengths.cumsum(0) - 1  # (N,) row of each EOT among the T kept positions
        keep, eot_rows = keep.to(device, non_blocking=True), eot_rows.to(device, non_blocking=True)

        shared = prefix.to(dtype) + positions[:num_prefix]  # (P, W)
        x = embeddings[:, :s].to(dtype) + positions[num_prefix:]  # (N, S, W)
        x = x.reshape(n * s, -1).index_select(0, keep)  # (T, W): only positions up to each EOT
        for block in model.transformer.resblocks:
            shared, x = self._shared_prefix_block(block, shared, x, keep=keep, grid=(n, s))
        x = model.ln_final(x.index_select(0, eot_rows)).to(dtype)  # (N, W): EOT read-out
        return (x @ model.text_projection).float()  # (N, D)

    @staticmethod
    def _shared_prefix_block(
        block: nn.Module, shared: torch.Tensor, x: torch.Tensor, *, keep: torch.Tensor, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One causal residual attention block of CLIP's text transformer with a shared prefix
        and packed positions (see :meth:`encode_prompt_embeddings`).

        Same computation as ``clip.model.ResidualAttentionBlock`` with its causal mask,
        ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``, attention split into H heads of width
        d = W / H and scaled by 1 / sqrt(d) as in ``nn.MultiheadAttention``. The per-position
        layers (layer norms, projections, MLP) run on the T kept positions; only the attention
        scores use the padded N x S grid, where the causal mask keeps every kept position away
        from the padding after its EOT.

        Args:
            block: A ``ResidualAttentionBlock``.
            shared: Hidden states of the shared prefix.
            x: Hidden states of the kept positions after the prefix, sequence by sequence.
            keep: Index of each kept position in the flattened N x S grid.
            grid: (N, S).

        Shape:
            shared: (P, W); x: (T, W); keep: (T,); returns (P, W) and (T, W).
        """
        attn = block.attn
        num_prefix, width = shared.shape  # P, W
        n, s = grid  # N sequences, S positions after the prefix
        heads = attn.num_heads  # H
        head_dim = width // heads  # d
        sdpa = nn.functional.scaled_dot_product_attention

        qkv_shared = nn.functional.linear(block.ln_1(shared), attn.in_proj_weight, attn.in_proj_bias)  # (P, 3W)
        qkv = nn.functional.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # (T, 3W)
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
        shared = shared + attn.out_proj(out_p)
        x = x + attn.out_proj(out_s)
        shared = shared + block.mlp(block.ln_2(shared))
        x = x + block.mlp(block.ln_2(x))
        return shared, x

    def encode_tokens(self, tokens: torch.Tensor, *, truncate: bool = True, chunk_size: int = 256) -> torch.Tensor:
        """Text features of tokenised sentences (CLIP's ``encode_text``), without gradients.

        Args:
            tokens: Token ids from ``clip.tokenize`` (EOT is the largest id of each row).
            truncate: Stop at the longest EOT position (exact; see the module docstring).
            chunk_size: Sentences encoded per forward pass (bounds memory for many classes).

        Shape:
            tokens: (N, L) int64; returns (N, D) float32.
        """
        tokens = tokens.to(self.device)
        eot = tokens.argmax(dim=-1)
        out = []
        with torch.no_grad():
            for start in range(0, tokens.shape[0], chunk_size):
                tok = tokens[start : start + chunk_size]
                e = eot[start : start + chunk_size]
                n_pos = int(e.max()) + 1 if truncate else tok.shape[1]
                emb = self.model.token_embedding(tok[:, :n_pos]).float()
                out.append(self.encode_prompt_embeddings(emb, e, truncate=truncate))
        return torch.cat(out) if out else torch.empty(0, self.embed_dim, device=self.device)


# -------------------------------------------------------------------- loading


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_backbone(backbone: ClipBackbone, path: str | os.PathLike) -> Path:
    """Save a backbone's weights as a state dict that ``load_backbone(path)`` (and
    ``clip.load(path)``) can read, plus a ``<path>.json`` sidecar recording its provenance
    (name, pretrained), written atomically.

    Returns:
        The checkpoint path.
    """
    path = Path(path)
    state = {k: v.detach().float().cpu() for k, v in backbone.model.state_dict().items()}
    atomic_write(path, lambda f: torch.save(state, f))
    meta = {"name": backbone.name, "pretrained": backbone.pretrained, "source": backbone.source}
    atomic_write(_sidecar(path), lambda f: f.write(json.dumps(meta, indent=2).encode()))
    return path


def _download(url: str, target: Path, *, timeout: float) -> None:
    expected = url.split("/")[-2]
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading CLIP weights %s -> %s", url, target)
    digest = hashlib.sha256()

    def writer(handle):
        from tqdm.auto import tqdm

        with urllib.request.urlopen(url, timeout=timeout) as source, tqdm(
            total=int(source.headers.get("Content-Length") or 0) or None, unit="B", unit_scale=True,
            unit_divisor=1024, desc=f"downloading {target.name}", disable=None,  # None: only on a terminal
        ) as progress:
            while True:
                block = source.read(1 << 20)
                if not block:
                    break
                digest.update(block)
                handle.write(block)
                progress.update(len(block))
        if digest.hexdigest() != expected:
            raise BackboneError(f"downloaded {url} but its SHA256 does not match; try again")

    atomic_write(target, writer)


def _offline_message(name: str, target: Path, reason: str) -> str:
    return (
        f"pretrained CLIP weights for {name!r} are not available ({reason}). "
        f"Place the OpenAI checkpoint file at {target} (clip-anytorch's cache; download it on a "
        f"machine with internet, e.g. `python -c \"import clip; clip.load('{name}', device='cpu')\"`, "
        f"then copy ~/.cache/clip/{target.name}), or pass a local checkpoint file instead of the "
        f"name (`--visual /path/to/{target.name}`). For offline runs without weights use a "
        f"random-weight backbone: {', '.join(BACKBONES.names()[:2])}."
    )


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N' (or None for automatic), got {device!r}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"alta runs on 'cpu' or 'cuda', got device {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} requested but CUDA is not available; use device='cpu'")
    return device


def load_backbone(
    name: str | os.PathLike,
    *,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    download_root: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
    timeout: float = 30.0,
) -> ClipBackbone:
    """Load a frozen CLIP backbone by name or from a local file.

    Args:
        name: An OpenAI name (``RN50``, ``ViT-B/16``, ...: see :func:`list_backbones`), a
            random-weight name (``tiny-vit``, ``tiny-rn``, ``random-ViT-B/32``, ...), or the path
            of a local checkpoint (OpenAI ``.pt`` archive or state dict).
        device: Where to put it (``None``: CUDA when available).
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (fp16 on CUDA, fp32 on CPU).
            Only the frozen encoders use it; trainable parameters are always fp32.
        download_root: Folder of pretrained weights (default ``~/.cache/clip``).
        download: Download missing OpenAI weights. With ``False`` a missing file fails at once.
        seed: Seed of the random weights of random-weight backbones.
        timeout: Seconds before a stalled download is abandoned.

    Returns:
        The backbone, frozen, in eval mode.

    Raises:
        BackboneError: unknown name, missing weights offline, or an unreadable checkpoint. The
            message says where the weights file must be placed.
    """
    device = _resolve_device(device)
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name):
        raise BackboneError(
            f"backbone must be a name or a checkpoint path, got {name!r}; names: {', '.join(list_backbones())}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ConfigError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', got {precision!r}")
    name = os.fspath(name)
    openai = _openai_models()

    if name in BACKBONES:
        canonical = BACKBONES.resolve(name)
        model = BACKBONES.get(canonical).build(seed=seed)
        backbone = ClipBackbone(
            model, name=canonical, pretrained=False, source=f"random weights, seed={seed}", precision=precision
        )
        return backbone.to(device)

    if name in openai:
        root = Path(download_root) if download_root is not None else default_download_root()
        url = openai[name]
        target = root / os.path.basename(url)
        if not target.is_file():
            if not download:
                raise BackboneError(_offline_message(name, target, "file missing and download=False"))
            try:
                _download(url, target, timeout=timeout)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise BackboneError(_offline_message(name, target, f"download failed: {exc}")) from exc
        path, pretrained, label = target, True, name
    else:
        path = Path(name)
        if not path.is_file():
            close = difflib.get_close_matches(name, list_backbones(), n=1, cutoff=0.5)
            close += [n for n in list_backbones() if n.lower() == name.lower()][:1]
            hint = f" Did you mean {close[-1]!r}?" if close else ""
            raise BackboneError(
                f"unknown backbone {name!r}: not a CLIP name and not an existing file.{hint} "
                f"Pretrained names: {', '.join(openai)}; random-weight names: {', '.join(BACKBONES.names())}; "
                f"or give the path of a local checkpoint (.pt)."
            )
        pretrained, label = True, str(path)
        sidecar = _sidecar(path)
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text())
                pretrained = bool(meta.get("pretrained", True))
                label = str(meta.get("name", label))
            except (ValueError, OSError):
                logger.warning("ignoring unreadable backbone sidecar %s", sidecar)

    model = _load_clip_file(path)
    backbone = ClipBackbone(model, name=label, pretrained=pretrained, source=str(path), precision=precision)
    return backbone.to(device)


def _load_clip_file(path: Path) -> nn.Module:
    """Read an OpenAI JIT archive or a state dict into a ``clip.model.CLIP`` on the CPU."""
    build_model = import_clip().model.build_model

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.load deprecation
            archive = torch.jit.load(str(path), map_location="cpu").eval()
        state_dict = archive.state_dict()
    except RuntimeError:
        try:
            state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
            raise BackboneError(
                f"could not read {path} as a CLIP checkpoint ({type(exc).__name__}: {exc}); expected an "
                f"OpenAI .pt archive or a state dict saved with alta.backbones.save_backbone"
            ) from exc
    if isinstance(state_dict, dict) and "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict) or "text_projection" not in state_dict:
        raise BackboneError(
            f"{path} is not a CLIP state dict (no 'text_projection' key); expected an OpenAI .pt "
            f"archive or a state dict saved with alta.backbones.save_backbone"
        )
    weights = {k: v for k, v in state_dict.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    try:
        model = build_model(dict(weights)).float()
        # build_model loads through fp16 layers; reload so fp32 checkpoints keep full precision
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    except Exception as exc:  # noqa: BLE001
        raise BackboneError(f"{path} does not match any CLIP architecture: {type(exc).__name__}: {exc}") from exc
    return model.eval()

