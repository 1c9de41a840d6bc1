"""The open_clip source: ``open_clip:<model>`` names with a pretrained tag or a weights file.

PROOF, ENGINE and the C3Box toolbox build on ``open_clip.create_model_and_transforms('ViT-B-16',
pretrained='laion400m_e32')``; their numbers are only comparable with runs on the same weights.
:class:`OpenClipBackbone` wraps an ``open_clip.model.CLIP`` built by open_clip's own factory, so
the activation (GELU or QuickGELU), the text tower's layout (open_clip's transformer is
batch-first), the preprocessing (``preprocess``: mean/std, interpolation, resize mode, size) and
the logit scale all come from the model's config and weights, never from clip-anytorch.

Weights (``pretrained`` of :func:`~alta.load_backbone`):

- a tag of ``open_clip.list_pretrained_tags_by_model(model)`` (``"laion400m_e32"``,
  ``"openai"``, ``"datacomp_xl_s13b_b90k"``, ...), read from open_clip's cache (the Hugging
  Face cache for tags hosted there, else ``download_root``, default ``~/.cache/clip``) and
  downloaded only when missing, ``download=True`` and not ``HF_HUB_OFFLINE``;
- a weights file (open_clip or OpenAI state dict), loaded strictly;
- ``None`` or ``False``: the architecture with seeded random weights, marked RANDOM.

A tag trained with another activation than the name builds (``ViT-B-32`` with
``pretrained="openai"``, trained with QuickGELU) is refused: open_clip only warns, and the
features differ by about 1%. A weights file saved by :func:`~alta.backbones.save_backbone`
carries its architecture in a sidecar and is refused under another name.

Not supported, with the reason in the error: models whose text tower is not a causal
transformer read at the EOT token (SigLIP: bidirectional text attention, last-token pooling and
a sigmoid loss with a learned bias, so CoOp's prompts and ALTA's softmax logits do not apply;
Hugging Face text towers; CoCa).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import BackboneError, ConfigError
from .base import CausalTextBackbone, TextBlock, check_precision, hash_state
from .clip import read_sidecar

__all__ = ["OpenClipBackbone", "load_open_clip", "list_open_clip_names", "import_open_clip"]


def import_open_clip():
    """Import open_clip (``pip install "alta[open_clip]"``).

    Raises:
        BackboneError: open-clip-torch is not installed.
    """
    try:
        import open_clip  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise BackboneError(
            'open_clip: backbones need open-clip-torch; install it with pip install "alta[open_clip]"'
        ) from exc
    return open_clip


def list_open_clip_names() -> list[str]:
    """open_clip's model names (``open_clip.list_models()``)."""
    return list(import_open_clip().list_models())


class OpenClipBackbone(CausalTextBackbone):
    """A frozen ``open_clip.model.CLIP`` as an alta :class:`~alta.backbones.Backbone`.

    Build one with ``alta.load_backbone("open_clip:<model>", pretrained=...)``.

    Args:
        model: The open_clip model (built by ``open_clip.create_model``).
        name: ``"open_clip:<model>"``.
        architecture: The open_clip model name.
        weights: The pretrained tag, the weights file, or ``"random weights, seed=<s>"``.
        pretrained: ``False`` for random weights.
        source: Where the weights came from (file path or ``random weights, seed=<s>``).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (open_clip cast the model already).
        tokenizer: ``open_clip.get_tokenizer(architecture)``.
        model_cfg: The model config open_clip built it from (part of the fingerprint).

    Attributes:
        preprocess: open_clip's preprocessing of these weights: ``size``, ``mean``, ``std``,
            ``interpolation``, ``resize_mode`` (pass ``mean``/``std`` to
            :func:`~alta.make_transform` to use it).

    Raises:
        BackboneError: the model is not a CLIP with a causal text transformer read at EOT
            (SigLIP, CoCa, Hugging Face text towers), or its image input is not square.
    """

    library = "open_clip"

    def __init__(self, model: nn.Module, *, name: str, architecture: str, weights: str, pretrained: bool,
                 source: str, precision: str, tokenizer, model_cfg: dict) -> None:
        super().__init__()
        check_precision(precision)
        _check_supported(model, architecture)
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.name, self.architecture, self.weights = name, architecture, weights
        self.pretrained, self.source, self.precision = pretrained, source, precision
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        size = model.visual.image_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if height != width:
            raise BackboneError(f"open_clip model {architecture!r} takes {height}x{width} images; alta needs square inputs")
        self.input_resolution = int(height)
        projection = model.text_projection
        self.embed_dim = int(projection.out_features if isinstance(projection, nn.Linear) else projection.shape[1])
        self.token_width = int(model.token_embedding.weight.shape[1])
        self.context_length = int(model.context_length)
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        self.preprocess = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        """SHA-256 over the source, architecture (name and config, activation included),
        weights, precision and every tensor of the model; computed once."""
        if self._fingerprint is None:
            header = "\0".join(["open_clip", self.architecture, json.dumps(self.model_cfg, sort_keys=True, default=str),
                                self.weights, self.source, self.precision])
            self._fingerprint = hash_state(header, self.model.state_dict())
        return self._fingerprint

    def describe(self) -> dict:
        """:meth:`CausalTextBackbone.describe` plus the architecture, weights and preprocessing."""
        return {**super().describe(), "architecture": self.architecture,
                "weights": self.weights, "quick_gelu": bool(self.model_cfg.get("quick_gelu", False)),
                "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in self.preprocess.items()}}

    def sidecar_meta(self) -> dict:
        """What :func:`~alta.backbones.save_backbone` records beside the weights."""
        return {"library": "open_clip", "architecture": self.architecture,
                "quick_gelu": bool(self.model_cfg.get("quick_gelu", False)),
                "load_as": f"alta.load_backbone({self.name!r}, pretrained=<this file>)"}

    # ---------------------------------------------------------------- tokenizer
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """open_clip's tokenizer for this model, padded to L.

        Raises:
            ConfigError: a text longer than L tokens (open_clip would cut it silently).

        Shape:
            returns (N, L) int64.
        """
        encode = getattr(self.tokenizer, "encode", None)
        if encode is not None:
            for text in texts:
                if len(encode(text)) + 2 > self.context_length:
                    raise ConfigError(
                        f"the prompt {text!r} is longer than the model's {self.context_length} tokens; shorten the "
                        f"class name, the template or ctx_init"
                    )
        return self.tokenizer(texts, context_length=self.context_length).long()

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """EOT is the largest id of each row (open_clip's ``text_pool_type='argmax'``)."""
        return tokens.argmax(dim=-1)

    # ---------------------------------------------------------------- hooks
    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    @property
    def _token_embedding(self) -> nn.Embedding:
        return self.model.token_embedding

    def _positional_embedding(self) -> torch.Tensor:
        return self.model.positional_embedding

    def _text_blocks(self) -> list[TextBlock] | None:
        blocks = []
        for block in self.model.transformer.resblocks:
            attn = getattr(block, "attn", None)
            if not isinstance(attn, nn.MultiheadAttention) or hasattr(block, "ln_1_kv") or not attn._qkv_same_embed_dim:
                return None  # custom attention (scaled cosine, qk-norm): plain encoding instead
            blocks.append(TextBlock(
                ln_1=block.ln_1, qkv_weight=attn.in_proj_weight, qkv_bias=attn.in_proj_bias, num_heads=attn.num_heads,
                out_proj=attn.out_proj, ln_2=block.ln_2, mlp=block.mlp, ls_1=block.ls_1, ls_2=block.ls_2,
            ))
        return blocks

    def _run_text_transformer(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        mask = self.model.attn_mask[:length, :length]  # (L', L') additive causal mask
        return self.model.transformer(x, attn_mask=mask)  # batch-first (N, L', W) in and out

    def _ln_final(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.ln_final(x)

    def _project_text(self, x: torch.Tensor) -> torch.Tensor:
        projection = self.model.text_projection
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection


_SIGLIP_REASON = ("it is a SigLIP model: its text tower attends bidirectionally and pools the last token, and it "
                  "scores with a sigmoid and a learned bias, so CoOp's EOT-read prompts and ALTA's softmax logits "
                  "(the paper's loss) do not apply")


def _config_problem(model_cfg: dict, architecture: str) -> str | None:
    """Why a model config cannot be an alta backbone (read before building it), or ``None``."""
    text = model_cfg.get("text_cfg", {})
    if model_cfg.get("init_logit_bias") is not None or "siglip" in architecture.lower():
        return _SIGLIP_REASON
    if "multimodal_cfg" in model_cfg:
        return "it is a CoCa model (a captioning decoder on top of CLIP), not a CLIP"
    if text.get("hf_model_name") or model_cfg.get("custom_text"):
        return "its text tower is a Hugging Face or custom encoder, not open_clip's causal text transformer"
    if text.get("no_causal_mask") or text.get("pool_type", "argmax") != "argmax" or text.get("embed_cls"):
        return "its text transformer is not causal with the feature read at the end-of-text token"
    return None


def _check_supported(model: nn.Module, architecture: str) -> None:
    open_clip = import_open_clip()
    reason = None
    if getattr(model, "logit_bias", None) is not None:
        reason = _SIGLIP_REASON
    elif not isinstance(model, open_clip.model.CLIP):
        reason = (f"it is a {type(model).__name__} (custom or Hugging Face text tower, or CoCa), not a CLIP with "
                  f"open_clip's own causal text transformer")
    elif model.attn_mask is None or getattr(model, "text_pool_type", "argmax") != "argmax":
        reason = "its text transformer is not causal with the feature read at the end-of-text token"
    if reason:
        raise BackboneError(f"open_clip model {architecture!r} is not supported by alta: {reason}")


def _hf_cached(repo_and_file: str, cache_dir) -> tuple[str | None, list[str], str]:
    """(cached path or None, file names tried, repo id) of an open_clip ``hf_hub`` entry."""
    from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 - dependency of open_clip

    repo, filename = os.path.split(repo_and_file)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for candidate in names:
        found = try_to_load_from_cache(repo, candidate, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return found, names, repo
    return None, names, repo


def _resolve_tag(open_clip, architecture: str, tag: str, *, download_root, download: bool) -> str:
    """Local path of the weights of ``tag``; downloads only when allowed."""
    cfg = open_clip.get_pretrained_cfg(architecture, tag)
    offline = not download or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    hub, url = cfg.get("hf_hub", ""), cfg.get("url", "")
    if hub:
        found, names, repo = _hf_cached(hub, download_root)
        where = (f"{' or '.join(names)} of https://huggingface.co/{repo} in the Hugging Face cache "
                 f"(`huggingface-cli download {repo} {names[0]}` on a machine with internet, then copy "
                 f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}/hub/models--{repo.replace('/', '--')})")
    else:
        target = Path(download_root or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        found = str(target) if target.is_file() else None
        where = f"{url} at {target}"
    if found:
        return found
    if offline:
        raise BackboneError(
            f"weights {tag!r} of open_clip model {architecture!r} are not available offline; place {where}, or pass "
            f"pretrained=<path of the weights file>; pretrained=None builds random weights"
        )
    try:
        return open_clip.download_pretrained(cfg, cache_dir=download_root)
    except Exception as exc:  # noqa: BLE001 - any download failure is the same offline situation
        raise BackboneError(
            f"could not download weights {tag!r} of open_clip model {architecture!r} ({type(exc).__name__}: {exc}); "
            f"place {where}, or pass pretrained=<path of the weights file>"
        ) from exc


def load_open_clip(architecture: str, *, pretrained, device: torch.device, precision: str, download_root,
                   download: bool, seed: int) -> OpenClipBackbone:
    """Build an open_clip backbone (the ``open_clip:`` source of :func:`~alta.load_backbone`,
    which validates and documents the arguments).

    Raises:
        BackboneError: unknown model or tag, weights missing offline, weights of another
            architecture, or an unsupported model.
    """
    open_clip = import_open_clip()
    name = f"open_clip:{architecture}"
    model_cfg = open_clip.get_model_config(architecture)
    if model_cfg is None:
        import difflib  # noqa: PLC0415

        close = difflib.get_close_matches(architecture, open_clip.list_models(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise BackboneError(
            f"unknown open_clip model {architecture!r}.{hint} See open_clip.list_models() (or "
            f"alta.list_backbones(source='open_clip')), or register a config with open_clip.add_model_config"
        )
    problem = _config_problem(model_cfg, architecture)
    if problem:
        raise BackboneError(f"open_clip model {architecture!r} is not supported by alta: {problem}")
    quick_gelu = bool(model_cfg.get("quick_gelu", False))
    if pretrained is None or pretrained is False:
        path, weights, label, is_pretrained = None, f"random weights, seed={seed}", f"random weights, seed={seed}", False
    elif pretrained is True:
        raise ConfigError(f"pretrained=True does not say which weights; pass a tag of {name}: "
                          f"{', '.join(open_clip.list_pretrained_tags_by_model(architecture)) or '(none)'}, or a file")
    elif open_clip.get_pretrained_cfg(architecture, pretrained):
        tag_gelu = bool(open_clip.get_pretrained_cfg(architecture, pretrained).get("quick_gelu", False))
        if tag_gelu != quick_gelu:
            raise BackboneError(_activation_mismatch(architecture, f"the weights tag {pretrained!r}", tag_gelu))
        path = _resolve_tag(open_clip, architecture, pretrained, download_root=download_root, download=download)
        weights, label, is_pretrained = str(pretrained), path, True
    elif os.path.isfile(pretrained):
        path, weights, label, is_pretrained = pretrained, str(pretrained), str(pretrained), True
        meta = read_sidecar(Path(pretrained))
        if meta:
            if meta.get("library") != "open_clip":
                raise BackboneError(f"{pretrained} holds {meta.get('library', 'clip-anytorch')} weights of "
                                    f"{meta.get('name')!r} (its sidecar says so), not open_clip weights of {architecture!r}")
            if bool(meta.get("quick_gelu", quick_gelu)) != quick_gelu or meta.get("architecture") != architecture:
                raise BackboneError(_activation_mismatch(architecture, f"the file {pretrained} (saved from "
                                    f"{meta.get('name')!r})", bool(meta.get("quick_gelu", False))))
            is_pretrained = bool(meta.get("pretrained", True))
    else:
        tags = open_clip.list_pretrained_tags_by_model(architecture)
        raise BackboneError(
            f"pretrained={pretrained!r} is neither a weights tag of {name} nor an existing file; tags: "
            f"{', '.join(tags) or '(none)'}; or pass None for random weights"
        )

    precision_name = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16"}[precision]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(architecture, pretrained=path, precision=precision_name, device="cpu",
                                           pretrained_text=False, pretrained_image=False)
    except RuntimeError as exc:
        raise BackboneError(
            f"the weights {weights!r} do not match open_clip architecture {architecture!r} ({exc}); pass the model "
            f"name they were saved from"
        ) from exc
    backbone = OpenClipBackbone(
        model, name=name, architecture=architecture, weights=weights, pretrained=is_pretrained, source=label,
        precision=precision, tokenizer=open_clip.get_tokenizer(architecture), model_cfg=model_cfg,
    )
    return backbone.to(device)


def _activation_mismatch(architecture: str, what: str, weights_quick_gelu: bool) -> str:
    have, want = ("QuickGELU", "GELU") if weights_quick_gelu else ("GELU", "QuickGELU")
    fix = (f"{architecture}-quickgelu" if weights_quick_gelu and not architecture.endswith("-quickgelu")
           else architecture.removesuffix("-quickgelu"))
    return (f"{what} was trained with {have} activations but open_clip:{architecture} builds {want}; the features "
            f"would be wrong. Load it as open_clip:{fix}")
