"""The Hugging Face source: ``hf:<hub id>`` from the local cache and ``hf:/path/to/folder``.

:class:`HFClipBackbone` wraps a ``transformers.CLIPModel``; the activation (``hidden_act``:
``quick_gelu`` for OpenAI's checkpoints, ``gelu`` for LAION's), sizes, image size and logit
scale come from the folder's ``config.json`` and weights. The text tower is HF's pre-norm causal
encoder read at the first ``eos_token_id`` (or at the largest id for the legacy
``eos_token_id == 2``), so the exact shared-prefix encoding applies: its separate query, key and
value projections are fused into one :class:`~alta.backbones.TextBlock` weight.

Weights (``pretrained`` of :func:`~alta.load_backbone`): ``None`` loads the folder's or the
cached hub id's weights; ``False`` builds seeded random weights from its ``config.json`` alone
(marked RANDOM). Hub ids are read from the Hugging Face cache (``$HF_HOME/hub`` or
``download_root``); downloads happen only with ``download=True`` and without ``HF_HUB_OFFLINE``.
A folder without tokenizer files, used with ``pretrained=False``, tokenizes with clip-anytorch's
BPE, the same vocabulary as OpenAI CLIP's (HF's CLIP tokenizer reproduces it).

SigLIP checkpoints (``model_type`` ``siglip``/``siglip2``) are refused here with the name to use
instead: alta loads SigLIP and SigLIP 2 through open_clip (``open_clip:ViT-B-16-SigLIP`` with
``pretrained="webli"``, the same weights as the ``timm/`` repositories), which it proves equal to
the library's own encoders.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import BackboneError, ConfigError
from .base import PRECISIONS, CausalTextBackbone, TextBlock, causal_blocks, check_precision, hash_state
from .clip import import_clip

__all__ = ["HFClipBackbone", "load_hf", "import_transformers"]


def import_transformers():
    """Import transformers (``pip install "alta[hf]"``).

    Raises:
        BackboneError: transformers is not installed.
    """
    try:
        import transformers  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise BackboneError('hf: backbones need transformers; install it with pip install "alta[hf]"') from exc
    return transformers


class HFClipBackbone(CausalTextBackbone):
    """A frozen ``transformers.CLIPModel`` as an alta :class:`~alta.backbones.Backbone`.

    Args:
        model: The CLIP model.
        name: ``"hf:<id or folder>"``.
        pretrained: ``False`` for random weights.
        source: Where the weights came from.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        tokenizer: A Hugging Face tokenizer, or ``None`` for clip-anytorch's BPE.
        preprocess: The folder's image preprocessing (``mean``, ``std``, ``interpolation``,
            ``resize_mode``, from its ``preprocessor_config.json``), or ``None`` (not known).

    Attributes:
        preprocess: ``size`` and, when the folder has an image processor, its ``mean``, ``std``,
            ``interpolation`` and ``resize_mode``.
    """

    library = "transformers"

    def __init__(self, model: nn.Module, *, name: str, pretrained: bool, source: str, precision: str,
                 tokenizer, preprocess: dict | None = None) -> None:
        super().__init__()
        check_precision(precision)
        self.model = model.eval().to(PRECISIONS[precision])
        self.model.requires_grad_(False)
        config = model.config
        self.name, self.pretrained, self.source, self.precision = name, pretrained, source, precision
        self.tokenizer = tokenizer
        self.input_resolution = int(config.vision_config.image_size)
        self.embed_dim = int(config.projection_dim)
        self.token_width = int(config.text_config.hidden_size)
        self.context_length = int(config.text_config.max_position_embeddings)
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        self.eos_token_id = int(config.text_config.eos_token_id)
        self.preprocess = {"size": self.input_resolution, **(preprocess or {})}
        self._blocks_memo: tuple | None = None
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        """SHA-256 over the source, the model config (activation included), the weights'
        origin, precision and every tensor of the model; computed once."""
        if self._fingerprint is None:
            header = "\0".join(["hf", self.name, self.model.config.to_json_string(use_diff=False), self.source,
                                self.precision])
            self._fingerprint = hash_state(header, self.model.state_dict())
        return self._fingerprint

    def describe(self) -> dict:
        return {**super().describe(), "hidden_act": self.model.config.text_config.hidden_act}

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """The model's tokenizer (or clip-anytorch's BPE), padded to L.

        Raises:
            ConfigError: a text longer than L tokens.

        Shape:
            returns (N, L) int64.
        """
        length = self.context_length
        if self.tokenizer is None:
            try:
                return import_clip().tokenize(texts, context_length=length)
            except RuntimeError as exc:
                raise ConfigError(f"a prompt is longer than the model's {length} tokens ({exc}); shorten it") from exc
        ids = self.tokenizer(texts)["input_ids"]
        too_long = [t for t, row in zip(texts, ids) if len(row) > length]
        if too_long:
            raise ConfigError(f"the prompt {too_long[0]!r} is longer than the model's {length} tokens; shorten the "
                              f"class name, the template or ctx_init")
        return self.tokenizer(texts, padding="max_length", max_length=length, return_tensors="pt")["input_ids"].long()

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """HF CLIP's read-out: the first ``eos_token_id`` (the largest id when it is 2, legacy)."""
        if self.eos_token_id == 2:
            return tokens.argmax(dim=-1)
        return (tokens == self.eos_token_id).int().argmax(dim=-1)

    # ---------------------------------------------------------------- hooks
    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=images)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @property
    def _token_embedding(self) -> nn.Embedding:
        return self.model.text_model.embeddings.token_embedding

    def _positional_embedding(self) -> torch.Tensor:
        return self.model.text_model.embeddings.position_embedding.weight

    def _text_blocks(self) -> list[TextBlock]:
        layers = self.model.text_model.encoder.layers
        key = (self.device, self.dtype)
        if self._blocks_memo is None or self._blocks_memo[0] != key:
            blocks = []
            for layer in layers:
                attn = layer.self_attn
                weight = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])  # (3W, W)
                bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])  # (3W,)
                blocks.append(TextBlock(ln_1=layer.layer_norm1, qkv_weight=weight, qkv_bias=bias,
                                        num_heads=attn.num_heads, out_proj=attn.out_proj, ln_2=layer.layer_norm2,
                                        mlp=layer.mlp))
            self._blocks_memo = (key, blocks)
        return self._blocks_memo[1]

    def _run_text_transformer(self, x: torch.Tensor) -> torch.Tensor:
        return causal_blocks(self._text_blocks(), x)

    def _ln_final(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.text_model.final_layer_norm(x)

    def _project_text(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.text_projection(x)


_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}  # PIL's resampling ids


def _image_preprocess(transformers, identifier: str, kwargs: dict) -> dict:
    """The preprocessing of the folder's ``preprocessor_config.json`` (``CLIPImageProcessor``),
    as open_clip names it; ``{}`` when the folder has none."""
    try:
        processor = transformers.CLIPImageProcessor.from_pretrained(identifier, **kwargs)
    except (OSError, ValueError, TypeError):
        return {}
    resample = getattr(processor.resample, "value", processor.resample)
    return {"mean": tuple(processor.image_mean), "std": tuple(processor.image_std),
            "interpolation": _RESAMPLE.get(resample, str(resample)),
            "resize_mode": "shortest" if processor.do_center_crop else "squash"}


def load_hf(identifier: str, *, pretrained, device: torch.device, precision: str, download_root, download: bool,
            seed: int) -> HFClipBackbone:
    """Build a Hugging Face CLIP backbone (the ``hf:`` source of :func:`~alta.load_backbone`,
    which validates and documents the arguments).

    Raises:
        BackboneError: files missing offline (saying where to place them), not a CLIP model
            (SigLIP refused with the reason).
        ConfigError: ``pretrained`` other than ``None`` or ``False``.
    """
    transformers = import_transformers()
    name = f"hf:{identifier}"
    if pretrained not in (None, False):
        raise ConfigError(f"{name} takes its weights from the folder or hub id; pass pretrained=None (its weights) or "
                          f"False (random weights from its config.json), got {pretrained!r}")
    offline = not download or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    kwargs = {"cache_dir": download_root, "local_files_only": offline}
    where = (f"the folder {identifier} (config.json, model.safetensors, tokenizer files: "
             f"CLIPModel.save_pretrained and CLIPProcessor.save_pretrained write them)" if os.path.isdir(identifier)
             else f"the snapshot of https://huggingface.co/{identifier} in the Hugging Face cache "
                  f"({download_root or os.environ.get('HF_HOME', '~/.cache/huggingface') + '/hub'}; "
                  f"`huggingface-cli download {identifier}` on a machine with internet, then copy it), or pass "
                  f"hf:/path/to/a/saved/folder")
    try:
        config = transformers.AutoConfig.from_pretrained(identifier, **kwargs)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"Hugging Face model {identifier!r} is not available locally ({exc}); place {where}") from exc
    if config.model_type in ("siglip", "siglip2"):
        raise BackboneError(
            f"{name} is a {config.model_type} (SigLIP) checkpoint; the hf: source loads CLIPModel checkpoints. Load "
            f"SigLIP through open_clip, e.g. --visual open_clip:ViT-B-16-SigLIP --pretrained webli (SigLIP 2: "
            f"open_clip:ViT-B-16-SigLIP2); `alta list backbones` shows the SigLIP names"
        )
    if config.model_type != "clip":
        raise BackboneError(f"{name} is a {config.model_type!r} model; alta's hf: source loads CLIPModel checkpoints")
    try:
        if pretrained is False:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = transformers.CLIPModel(config)
            source, is_pretrained = f"random weights, seed={seed}", False
        else:
            model = transformers.CLIPModel.from_pretrained(identifier, **kwargs)
            source, is_pretrained = str(identifier), True
    except (OSError, ValueError) as exc:
        raise BackboneError(f"could not load the weights of {name} ({exc}); place {where}") from exc
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(identifier, **kwargs)
        problem = None if len(tokenizer) >= config.text_config.vocab_size else f"an empty vocabulary of {len(tokenizer)}"
    except (OSError, ValueError, TypeError) as exc:
        tokenizer, problem = None, f"{type(exc).__name__}: {exc}"
    if problem is not None:  # transformers 5 builds an empty tokenizer when the files are missing
        if pretrained is not False:
            raise BackboneError(f"{name} has no usable tokenizer files ({problem}); place {where}")
        tokenizer = None  # random weights: clip-anytorch's BPE (OpenAI CLIP's vocabulary)
    backbone = HFClipBackbone(model, name=name, pretrained=is_pretrained, source=source, precision=precision,
                              tokenizer=tokenizer, preprocess=_image_preprocess(transformers, identifier, kwargs))
    return backbone.to(device)
