"""The clip-anytorch source: OpenAI CLIP weights, local clip-format checkpoints, and small
random-weight models for tests and offline runs.

ALTA (Li et al., IEEE TMM 2023) keeps both CLIP encoders frozen; only the context vectors of
the prompt and the image adapter learn. :class:`ClipBackbone` wraps a ``clip.model.CLIP``
accordingly (always in eval mode, no trainable parameters) and implements the
:class:`~alta.backbones.Backbone` protocol through :class:`~alta.backbones.base.CausalTextBackbone`:
clip's text transformer is sequence-first and its attention blocks are ``nn.MultiheadAttention``
with fused ``in_proj_weight``; those details stay in this module.

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

from ..data.transforms import CLIP_MEAN, CLIP_STD
from ..errors import BackboneError, ConfigError
from ..io import atomic_write
from ..registry import Registry
from .base import PRECISIONS, CausalTextBackbone, TextBlock, check_precision, hash_state

__all__ = [
    "ClipArchitecture",
    "ClipBackbone",
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


class ClipBackbone(CausalTextBackbone):
    """A frozen clip-anytorch CLIP model: the :class:`~alta.backbones.Backbone` implementation
    for OpenAI CLIP names, clip-format checkpoints and the tiny random-weight models.

    Build one with :func:`~alta.load_backbone`. The wrapped model never trains: every parameter has
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
        preprocess: clip-anytorch's preprocessing (``clip.load``'s transform): ``size``, OpenAI's
            ``mean`` and ``std``, ``"bicubic"`` resizing of the shorter side and a center crop.
    """

    library = "clip-anytorch"

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
        check_precision(precision)
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
        self.preprocess = {"size": self.input_resolution, "mean": CLIP_MEAN, "std": CLIP_STD,
                           "interpolation": "bicubic", "resize_mode": "shortest"}
        self._fingerprint: str | None = None
        self._apply_precision()

    # ---------------------------------------------------------------- housekeeping
    def _apply_precision(self) -> None:
        dtype = PRECISIONS[self.precision]
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

    def fingerprint(self) -> str:
        """A stable identifier of the weights, for feature-cache keys and saved states.

        SHA-256 over the name, source, precision and every parameter and buffer of the model
        (so a checkpoint file replaced at the same path gets a new fingerprint). Computed once
        (about a second for RN50) and remembered: the backbone is frozen. The clip-anytorch
        name fixes the architecture (QuickGELU, sequence-first text transformer).
        """
        if self._fingerprint is None:
            self._fingerprint = hash_state(f"{self.name}\0{self.source}\0{self.precision}", self.model.state_dict())
        return self._fingerprint

    # ---------------------------------------------------------------- tokenizer
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """clip-anytorch's BPE tokenizer: ``[SOS] tokens [EOT]`` padded with 0 to L.

        Raises:
            ConfigError: a text longer than L tokens.

        Shape:
            returns (N, L) int64.
        """
        try:
            return import_clip().tokenize(texts, context_length=self.context_length)
        except RuntimeError as exc:
            raise ConfigError(
                f"a prompt is longer than CLIP's {self.context_length} tokens ({exc}); shorten the class name, the "
                f"template or ctx_init"
            ) from exc

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """EOT is the largest id of each row (as clip-anytorch's ``encode_text`` reads it).

        Shape:
            tokens: (N, L); returns (N,) int64.
        """
        return tokens.argmax(dim=-1)

    # ---------------------------------------------------------------- text-tower hooks
    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    @property
    def _token_embedding(self) -> nn.Embedding:
        return self.model.token_embedding

    def _positional_embedding(self) -> torch.Tensor:
        return self.model.positional_embedding

    def _text_blocks(self) -> list[TextBlock]:
        return [
            TextBlock(
                ln_1=block.ln_1, qkv_weight=block.attn.in_proj_weight, qkv_bias=block.attn.in_proj_bias,
                num_heads=block.attn.num_heads, out_proj=block.attn.out_proj, ln_2=block.ln_2, mlp=block.mlp,
            )
            for block in self.model.transformer.resblocks
        ]

    def _run_text_transformer(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(1, 0, 2)  # (L', N, W): clip's transformer is sequence-first
        x = self.model.transformer(x)  # causal mask sliced to L' x L' inside each block
        return x.permute(1, 0, 2)  # (N, L', W)

    def _ln_final(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.ln_final(x).to(self.dtype)

    def _project_text(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.model.text_projection


# -------------------------------------------------------------------- loading


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_backbone(backbone, path: str | os.PathLike) -> Path:
    """Save a backbone's weights as a state dict, plus a ``<path>.json`` sidecar recording its
    provenance (library, name, pretrained, and for open_clip the architecture and activation),
    both written atomically.

    A clip-anytorch backbone's file loads with ``load_backbone(path)`` (and ``clip.load(path)``);
    an open_clip one with ``load_backbone("open_clip:<model>", pretrained=path)``, and the sidecar
    makes any other name (another architecture or activation) a refused load.

    Returns:
        The checkpoint path.
    """
    path = Path(path)
    state = {k: v.detach().float().cpu() for k, v in backbone.model.state_dict().items()}
    atomic_write(path, lambda f: torch.save(state, f))
    meta = {"library": "clip-anytorch", "name": backbone.name, "pretrained": backbone.pretrained,
            "source": backbone.source}
    meta.update(getattr(backbone, "sidecar_meta", dict)())  # other sources: library and architecture
    atomic_write(_sidecar(path), lambda f: f.write(json.dumps(meta, indent=2).encode()))
    return path


def _download(url: str, target: Path, *, timeout: float) -> None:
    expected = url.split("/")[-2]
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading CLIP weights %s -> %s", url, target)
    digest = hashlib.sha256()

    # connect before the atomic write, so that a network failure is reported as one (the write's
    # own errors are reported as write failures of the target file)
    source = urllib.request.urlopen(url, timeout=timeout)

    def writer(handle):
        from tqdm.auto import tqdm

        with source, tqdm(
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


def load_clip(
    name: str, *, device: torch.device, precision: str, download_root: str | os.PathLike | None, download: bool,
    seed: int, timeout: float,
) -> ClipBackbone:
    """Load a clip-anytorch backbone (the ``clip`` source of :func:`~alta.load_backbone`, which
    validates the arguments and documents them)."""
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
        path = Path(name).expanduser()
        if not path.is_file():
            close = difflib.get_close_matches(name, list_backbones(), n=1, cutoff=0.5)
            close += [n for n in list_backbones() if n.lower() == name.lower()][:1]
            hint = f" Did you mean {close[-1]!r}?" if close else ""
            raise BackboneError(
                f"unknown backbone {name!r}: not a CLIP name and not an existing file.{hint} "
                f"Pretrained names: {', '.join(openai)}; random-weight names: {', '.join(BACKBONES.names())}; "
                f"other sources: 'open_clip:<model>' (with pretrained=<tag or file>) and 'hf:<id or folder>'; "
                f"or give the path of a local checkpoint (.pt)."
            )
        pretrained, label = True, str(path)
        meta = read_sidecar(path)
        if meta:
            library = meta.get("library", "clip-anytorch")
            if library != "clip-anytorch":
                raise BackboneError(
                    f"{path} holds {library} weights of {meta.get('name')!r} (its sidecar {_sidecar(path).name} says "
                    f"so); clip-anytorch's architecture (QuickGELU, its own layout) would run them wrongly. Load it "
                    f"through its own source: {meta.get('load_as', 'the name in the sidecar')}"
                )
            pretrained = bool(meta.get("pretrained", True))
            label = str(meta.get("name", label))

    model = _load_clip_file(path)
    backbone = ClipBackbone(model, name=label, pretrained=pretrained, source=str(path), precision=precision)
    return backbone.to(device)


def read_sidecar(path: Path) -> dict:
    """The provenance sidecar ``<path>.json`` written by :func:`save_backbone`, or ``{}``."""
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return {}
    try:
        meta = json.loads(sidecar.read_text())
    except (ValueError, OSError):
        logger.warning("ignoring unreadable backbone sidecar %s", sidecar)
        return {}
    return meta if isinstance(meta, dict) else {}


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
            # torch's own text (advice to unpickle without weights_only) is in the chained exception, not here
            raise BackboneError(
                f"could not read {path} as a CLIP checkpoint: it is neither a TorchScript archive nor a torch state "
                f"dict (torch.load: {type(exc).__name__}); expected an OpenAI .pt archive or a state dict saved with "
                f"alta.backbones.save_backbone"
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

