"""The open_clip source: ``open_clip:<model>`` names with a pretrained tag or a weights file.

PROOF, ENGINE and the C3Box toolbox build on ``open_clip.create_model_and_transforms('ViT-B-16',
pretrained='laion400m_e32')``; MoE-Adapters++ reports SigLIP and ViT-L/14 beside it. Numbers are
only comparable with runs on the same weights. :class:`OpenClipBackbone` wraps a model built by
open_clip's own factory, so the activation (GELU or QuickGELU), the towers (open_clip's or timm's
image tower, with its pooling: class token, average, or SigLIP's attention pool), the text
tower's mask and pooling, the preprocessing (``preprocess``: mean/std, interpolation, resize
mode, size), the logit scale and SigLIP's logit bias all come from the model's config and
weights, never from clip-anytorch.

The families (``alta list backbones``; docs/backbones.md): CLIP (OpenAI, LAION, DataComp),
MetaCLIP and DFN (``ViT-*-quickgelu``), ViT-L/14 and ViT-L/14@336, EVA-02, PE-Core, MobileCLIP
and MobileCLIP 2, SigLIP and SigLIP 2. Their text towers are open_clip ``TextTransformer`` s of
two kinds:

- causal, read at the end-of-text token (CLIP, EVA-02, PE-Core, MobileCLIP(2)-B): prompts are
  encoded with the exact truncated and shared-prefix paths of
  :class:`~alta.backbones.base.CausalTextBackbone`;
- bidirectional (SigLIP and SigLIP 2, read at the last position L - 1; MobileCLIP-S*/MobileCLIP
  2-S*/L, read at the end of text): every position attends to the padding, which open_clip does
  not mask, so prompts run at all L positions, padding included, and neither truncation nor the
  shared prefix applies (``causal_text`` is false; the prompt learner logs why).

Weights (``pretrained`` of :func:`~alta.load_backbone`):

- a tag of ``open_clip.list_pretrained_tags_by_model(model)`` (``"laion400m_e32"``,
  ``"openai"``, ``"webli"``, ...), read from open_clip's cache (the Hugging Face cache for tags
  hosted there, else ``download_root``, default ``~/.cache/clip``) and downloaded only when
  missing, ``download=True`` and not ``HF_HUB_OFFLINE``; its preprocessing comes with it;
- a weights file (open_clip or OpenAI state dict), loaded strictly; one saved by
  :func:`~alta.backbones.save_backbone` carries its architecture and preprocessing in a sidecar
  and is refused under another name;
- ``None`` or ``False``: the architecture with seeded random weights, marked RANDOM.

``open_clip:tiny-<model>`` is the model's config with small sizes, random weights
(:mod:`alta.backbones.open_clip_tiny`).

A tag trained with another activation than the name builds (``ViT-B-32`` with
``pretrained="openai"``, trained with QuickGELU) is refused: open_clip only warns, and the
features differ by about 1%. SigLIP's tokenizers are Hugging Face tokenizers
(``timm/ViT-B-16-SigLIP``, ...): they are read from the Hugging Face cache (``download_root``)
and need ``transformers``.

Not supported, with the reason in the error: CoCa, text towers that are Hugging Face models,
towers that append a class token or read their first position, and tokenizers that drop their
end-of-text token (CLIPA).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import BackboneError, ConfigError
from .base import CausalTextBackbone, TextBlock, check_precision, hash_state
from .clip import read_sidecar
from .families import family_of
from .open_clip_tiny import TINY_PREFIX, split_tiny, tiny_config

__all__ = ["OpenClipBackbone", "load_open_clip", "list_open_clip_names", "import_open_clip"]

POOLS = ("argmax", "eos", "last")  # text read-outs alta prompts: end of text (EOT or EOS id) or position L - 1
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")


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
    """A frozen open_clip ``CLIP`` or ``CustomTextCLIP`` as an alta :class:`~alta.backbones.Backbone`.

    Build one with ``alta.load_backbone("open_clip:<model>", pretrained=...)``.

    Args:
        model: The open_clip model (built by ``open_clip.create_model``).
        name: ``"open_clip:<model>"``.
        architecture: The open_clip model name.
        weights: The pretrained tag, the weights file, or ``"random weights, seed=<s>"``.
        pretrained: ``False`` for random weights.
        source: Where the weights came from (file path or ``random weights, seed=<s>``).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (open_clip cast the model already).
        tokenizer: ``open_clip.get_tokenizer(architecture)``: a ``SimpleTokenizer`` (CLIP's BPE,
            [SOS] first) or an ``HFTokenizer`` (SigLIP's, no [SOS]).
        model_cfg: The model config open_clip built it from (part of the fingerprint).

    Attributes:
        preprocess: open_clip's preprocessing of these weights: ``size``, ``mean``, ``std``,
            ``interpolation``, ``resize_mode`` (the tag's, or the saved file's; pass
            ``mean``/``std`` to :func:`~alta.make_transform` to use it).
        logit_bias: SigLIP's frozen learned bias b (logits ``s * cos + b``), else ``None``.
        causal_text: Whether the text tower is causal and read at the end of text (the
            truncated and shared-prefix encodings are exact), or bidirectional (all L positions).
        text_prefix_length: Special tokens before the text: 1 ([SOS]) or 0 (SigLIP).
        pool: Where the text tower reads its feature: ``"argmax"`` (the EOT token, the largest
            id), ``"eos"`` (the first end-of-sequence id) or ``"last"`` (position L - 1).

    Raises:
        BackboneError: the text tower is not one alta can prompt (CoCa, a Hugging Face text
            model, a class token, first-position pooling, a tokenizer without an end-of-text
            token), or the image input is not square.
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
        tower = self._tower
        projection = tower.text_projection
        self.token_width = int(tower.token_embedding.weight.shape[1])
        self.embed_dim = int(projection.out_features if isinstance(projection, nn.Linear) else
                             self.token_width if projection is None else projection.shape[1])
        self.context_length = int(model.context_length)
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        bias = getattr(model, "logit_bias", None)
        self.logit_bias = None if bias is None else float(bias.detach().float())
        self.pool = getattr(tower, "pool_type", None) or getattr(model, "text_pool_type", "argmax")
        self.causal_text = tower.attn_mask is not None and self.pool in ("argmax", "eos")
        self._hf_tokenizer = _hf_tokenizer(tokenizer)
        self.text_prefix_length = 1 if self._hf_tokenizer is None else _special_prefix_length(self._hf_tokenizer)
        self._end_id = self._end_of_text_id(architecture)
        self.preprocess = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        self._fingerprint: str | None = None

    @property
    def _tower(self) -> nn.Module:
        """The module holding the text tower's members: ``model.text`` of a ``CustomTextCLIP``,
        the model itself for a ``CLIP``."""
        return getattr(self.model, "text", self.model)

    def _end_of_text_id(self, architecture: str) -> int | None:
        """The id ending the text (``None``: the largest id, CLIP's EOT, as ``argmax`` pooling reads)."""
        if self.pool == "argmax":
            return None
        if self.pool == "eos":
            eos = getattr(self._tower, "eos_id", None)
            return int(self.model.text_eos_id if eos is None else eos)
        end = self.tokenizer.eot_token_id if self._hf_tokenizer is None else self._hf_tokenizer.eos_token_id
        if end is None:
            raise BackboneError(f"open_clip model {architecture!r} is not supported by alta: its tokenizer has no "
                                f"end-of-text token, so a learned prompt's class tokens cannot be placed")
        return int(end)

    def fingerprint(self) -> str:
        """SHA-256 over the source, architecture (name and config, activation included),
        weights, precision and every tensor of the model; computed once."""
        if self._fingerprint is None:
            header = "\0".join(["open_clip", self.architecture, json.dumps(self.model_cfg, sort_keys=True, default=str),
                                self.weights, self.source, self.precision])
            self._fingerprint = hash_state(header, self.model.state_dict())
        return self._fingerprint

    def describe(self) -> dict:
        """:meth:`CausalTextBackbone.describe` plus the family, architecture, weights, text tower
        (causal or not, pooling, special prefix), logit bias and preprocessing."""
        return {**super().describe(), "family": family_of(self.architecture, self.weights),
                "architecture": self.architecture, "weights": self.weights,
                "quick_gelu": bool(self.model_cfg.get("quick_gelu", False)), "logit_bias": self.logit_bias,
                "text_tower": {"causal": self.causal_text, "pool": self.pool, "prefix_length": self.text_prefix_length},
                "preprocess": _plain(self.preprocess)}

    def sidecar_meta(self) -> dict:
        """What :func:`~alta.backbones.save_backbone` records beside the weights."""
        return {"library": "open_clip", "architecture": self.architecture,
                "family": family_of(self.architecture, self.weights),
                "quick_gelu": bool(self.model_cfg.get("quick_gelu", False)),
                "preprocess": {k: v for k, v in _plain(self.preprocess).items() if k in _PREPROCESS_KEYS},
                "load_as": f"alta.load_backbone({self.name!r}, pretrained=<this file>)"}

    # ---------------------------------------------------------------- tokenizer
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """open_clip's tokenizer for this model, padded to L.

        SigLIP's tokenizers clean the text as big_vision does (``canonicalize``: lower case,
        punctuation removed, so CoOp's trailing "." is dropped) and put no [SOS] first.

        Raises:
            ConfigError: a text longer than L tokens (open_clip would cut it silently).

        Shape:
            returns (N, L) int64.
        """
        for text in texts:
            if self._num_tokens(text) > self.context_length:
                raise ConfigError(
                    f"the prompt {text!r} is longer than the model's {self.context_length} tokens; shorten the "
                    f"class name, the template or ctx_init"
                )
        return self.tokenizer(texts, context_length=self.context_length).long()

    def _num_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the special ones ([SOS], [EOT] or SigLIP's end of sequence)."""
        if self._hf_tokenizer is None:
            return len(self.tokenizer.encode(text)) + 2
        return len(self._hf_tokenizer(self.tokenizer.clean_fn(text))["input_ids"])

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """The end of each row's text: its largest id (CLIP's EOT, ``text_pool_type='argmax'``) or
        its first end-of-sequence id (SigLIP, ``eos`` pooling).

        Shape:
            tokens: (N, L); returns (N,) int64.
        """
        if self._end_id is None:
            return tokens.argmax(dim=-1)
        return (tokens == self._end_id).int().argmax(dim=-1)

    # ---------------------------------------------------------------- hooks
    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    @property
    def _token_embedding(self) -> nn.Embedding:
        return self._tower.token_embedding

    def _positional_embedding(self) -> torch.Tensor:
        return self._tower.positional_embedding

    def _text_blocks(self) -> list[TextBlock] | None:
        blocks = []
        for block in self._tower.transformer.resblocks:
            attn = getattr(block, "attn", None)
            if not isinstance(attn, nn.MultiheadAttention) or hasattr(block, "ln_1_kv") or not attn._qkv_same_embed_dim:
                return None  # custom attention (scaled cosine, qk-norm): plain encoding instead
            blocks.append(TextBlock(
                ln_1=block.ln_1, qkv_weight=attn.in_proj_weight, qkv_bias=attn.in_proj_bias, num_heads=attn.num_heads,
                out_proj=attn.out_proj, ln_2=block.ln_2, mlp=block.mlp, ls_1=block.ls_1, ls_2=block.ls_2,
            ))
        return blocks

    def _run_text_transformer(self, x: torch.Tensor) -> torch.Tensor:
        tower, length = self._tower, x.shape[1]
        mask = None if tower.attn_mask is None else tower.attn_mask[:length, :length]  # (L', L') additive, causal
        return tower.transformer(x, attn_mask=mask)  # batch-first (N, L', W) in and out

    def _readout_positions(self, eot_positions: torch.Tensor, length: int) -> torch.Tensor:
        if self.pool == "last":  # SigLIP reads position L - 1 (a padding token), not the end of text
            return torch.full_like(eot_positions, length - 1)
        return eot_positions

    def _ln_final(self, x: torch.Tensor) -> torch.Tensor:
        return self._tower.ln_final(x)

    def _project_text(self, x: torch.Tensor) -> torch.Tensor:
        projection = self._tower.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection


def _plain(preprocess: dict) -> dict:
    """``preprocess`` with tuples as lists (JSON)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in preprocess.items()}


def _hf_tokenizer(tokenizer):
    """The transformers tokenizer inside open_clip's ``HFTokenizer``, or ``None`` (CLIP's BPE)."""
    inner = getattr(tokenizer, "tokenizer", None)
    return inner if inner is not None and hasattr(tokenizer, "clean_fn") else None


def _special_prefix_length(hf_tokenizer) -> int:
    """How many special tokens a Hugging Face tokenizer puts before the text (0 for SigLIP's)."""
    plain = hf_tokenizer("a photo", add_special_tokens=False)["input_ids"]
    full = hf_tokenizer("a photo")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return start
    raise BackboneError(f"cannot find the text among the special tokens of {type(hf_tokenizer).__name__}: "
                        f"{full} against {plain}")


# Why a model cannot be prompted, read from its config (_config_problem) or from the built model (_check_supported)
_COCA = "it is a CoCa model (a captioning decoder on top of CLIP), not a CLIP"
_CLASS_TOKEN = "its text tower appends a learned class token and reads it, which CoOp's prompts do not model"


def _config_problem(model_cfg: dict) -> str | None:
    """Why a model config cannot be an alta backbone (read before building it), or ``None``."""
    text = model_cfg.get("text_cfg", {})
    if "multimodal_cfg" in model_cfg:
        return _COCA
    if text.get("hf_model_name"):
        return (f"its text tower is the Hugging Face model {text['hf_model_name']!r}, not open_clip's text "
                f"transformer, whose token embeddings alta prompts")
    if text.get("embed_cls"):
        return _CLASS_TOKEN
    if text.get("pool_type", "argmax") not in POOLS:
        return (f"its text tower reads position {text['pool_type']!r}; alta prompts towers read at the end of "
                f"text or at their last position")
    if text.get("tokenizer_kwargs", {}).get("strip_sep_token") or text.get("tokenizer_mode"):
        return ("its tokenizer drops or rewrites the end-of-text token (CLIPA), so a learned prompt's class "
                "tokens cannot be placed")
    return None


def _check_supported(model: nn.Module, architecture: str) -> None:
    open_clip = import_open_clip()
    tower = getattr(model, "text", model)
    reason = None
    if isinstance(model, open_clip.CoCa):
        reason = _COCA
    elif not isinstance(model, open_clip.model.CLIP) and not isinstance(tower, open_clip.transformer.TextTransformer):
        reason = (f"its text tower is a {type(tower).__name__} (a Hugging Face text model), not open_clip's text "
                  f"transformer, whose token embeddings alta prompts")
    elif getattr(tower, "cls_emb", None) is not None:
        reason = _CLASS_TOKEN
    elif (getattr(tower, "pool_type", None) or getattr(model, "text_pool_type", "argmax")) not in POOLS:
        reason = "its text tower reads its first position; alta prompts towers read at the end of text or last"
    if reason:
        raise BackboneError(f"open_clip model {architecture!r} is not supported by alta: {reason}")


def _offline(download: bool) -> bool:
    return not download or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def _hf_cache_hint(repo: str, what: str) -> str:
    home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (f"{what} of https://huggingface.co/{repo} in the Hugging Face cache (`huggingface-cli download {repo}` "
            f"on a machine with internet, then copy {home}/hub/models--{repo.replace('/', '--')})")


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


def _resolve_tag(open_clip, architecture: str, tag: str, *, download_root, download: bool,
                 tokenizer_repo: str | None = None) -> str:
    """Local path of the weights of ``tag``; downloads only when allowed. ``tokenizer_repo``: the
    Hugging Face tokenizer the model needs too (SigLIP's), named in the message."""
    cfg = open_clip.get_pretrained_cfg(architecture, tag)
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
    if tokenizer_repo:
        where += f"; the model's tokenizer is read from {tokenizer_repo} (`huggingface-cli download {tokenizer_repo}`)"
    if _offline(download):
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


def _load_tokenizer(open_clip, architecture: str, model_cfg: dict, *, download_root, download: bool):
    """open_clip's tokenizer of ``architecture``; a Hugging Face one (SigLIP) from the cache first.

    Raises:
        BackboneError: the Hugging Face tokenizer's files are not available (saying where to
            place them), or transformers is missing.
    """
    repo = model_cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    if not repo:
        return open_clip.get_tokenizer(architecture)  # CLIP's BPE, shipped with open_clip
    try:
        import transformers  # noqa: F401, PLC0415 - optional extra, needed by open_clip's HFTokenizer
    except ImportError as exc:
        raise BackboneError(f"open_clip model {architecture!r} tokenizes with the Hugging Face tokenizer {repo!r}, "
                            f'which needs transformers; install it with pip install "alta[open_clip,hf]"') from exc
    where = _hf_cache_hint(repo, "the tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json)")
    if os.path.isdir(repo):
        where = f"the tokenizer files in the folder {repo}"
    try:  # the cache first: without network, an online attempt spends a minute on retries
        return open_clip.get_tokenizer(architecture, cache_dir=download_root, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError or ImportError here
        cached = exc
    if not _offline(download):
        try:
            return open_clip.get_tokenizer(architecture, cache_dir=download_root)
        except Exception as exc:  # noqa: BLE001 - any download failure is the same offline situation
            cached = exc
    raise BackboneError(
        f"the tokenizer of open_clip model {architecture!r} (the Hugging Face tokenizer {repo!r}) is not available "
        f"{'offline' if _offline(download) else 'here'} ({type(cached).__name__}: {str(cached).splitlines()[0][:300]}); "
        f"place {where}, or pass download_root=<the Hugging Face cache folder holding it>. A snapshot with only "
        f"spiece.model also needs `pip install sentencepiece protobuf`"
    ) from cached


def _weights_preprocess(open_clip, architecture: str, tag: str | None, meta: dict) -> dict:
    """The preprocessing the weights carry: the tag's, or the saved file's sidecar's (open_clip
    applies a tag's only when it downloads by tag, not for the file alta resolved)."""
    source = open_clip.get_pretrained_cfg(architecture, tag) if tag else meta.get("preprocess", {})
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (source or {}).items()
            if k in _PREPROCESS_KEYS and v is not None}


def load_open_clip(architecture: str, *, pretrained, device: torch.device, precision: str, download_root,
                   download: bool, seed: int) -> OpenClipBackbone:
    """Build an open_clip backbone (the ``open_clip:`` source of :func:`~alta.load_backbone`,
    which validates and documents the arguments).

    Raises:
        BackboneError: unknown model or tag, weights or tokenizer missing offline, weights of
            another architecture, or an unsupported model.
        ConfigError: ``pretrained=True``, or a weights tag for a ``tiny-`` model.
    """
    open_clip = import_open_clip()
    name = f"open_clip:{architecture}"
    base, tiny = split_tiny(architecture)
    model_cfg = open_clip.get_model_config(base)
    if model_cfg is None:
        close = difflib.get_close_matches(base, open_clip.list_models(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(TINY_PREFIX * tiny + c) for c in close)}?" if close else ""
        raise BackboneError(
            f"unknown open_clip model {base!r}.{hint} See open_clip.list_models() (or "
            f"alta.list_backbones(source='open_clip')), or register a config with open_clip.add_model_config"
        )
    problem = _config_problem(model_cfg)
    if problem:
        raise BackboneError(f"open_clip model {base!r} is not supported by alta: {problem}")
    build_cfg = tiny_config(base, model_cfg) if tiny else model_cfg
    quick_gelu = bool(model_cfg.get("quick_gelu", False))
    tag, meta = None, {}
    if pretrained is None or pretrained is False:
        path, weights, label, is_pretrained = None, f"random weights, seed={seed}", f"random weights, seed={seed}", False
    elif pretrained is True:
        raise ConfigError(f"pretrained=True does not say which weights; pass a tag of {name}: "
                          f"{', '.join(open_clip.list_pretrained_tags_by_model(base)) or '(none)'}, or a file")
    elif open_clip.get_pretrained_cfg(base, pretrained):
        if tiny:
            raise ConfigError(f"{name} is {base} at a small size with random weights; the weights tag {pretrained!r} "
                              f"is for open_clip:{base}")
        tag_gelu = bool(open_clip.get_pretrained_cfg(base, pretrained).get("quick_gelu", False))
        if tag_gelu != quick_gelu:
            raise BackboneError(_activation_mismatch(base, f"the weights tag {pretrained!r}", tag_gelu))
        path = _resolve_tag(open_clip, base, pretrained, download_root=download_root, download=download,
                            tokenizer_repo=model_cfg.get("text_cfg", {}).get("hf_tokenizer_name"))
        tag, weights, label, is_pretrained = str(pretrained), str(pretrained), path, True
    elif os.path.isfile(pretrained):
        path, weights, label, is_pretrained = pretrained, str(pretrained), str(pretrained), True
        meta = read_sidecar(Path(pretrained))
        if meta:
            _check_sidecar(meta, architecture=architecture, quick_gelu=quick_gelu, path=pretrained)
            is_pretrained = bool(meta.get("pretrained", True))
    else:
        tags = open_clip.list_pretrained_tags_by_model(base)
        raise BackboneError(
            f"pretrained={pretrained!r} is neither a weights tag of {name} nor an existing file; tags: "
            f"{', '.join(tags) or '(none)'}; or pass None for random weights"
        )

    tokenizer = _load_tokenizer(open_clip, base, model_cfg, download_root=download_root, download=download)
    sizes = {k: build_cfg[k] for k in ("embed_dim", "vision_cfg", "text_cfg")} if tiny else {}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(base, pretrained=path, precision=precision, device="cpu",
                                           pretrained_text=False, pretrained_image=False,
                                           force_preprocess_cfg=_weights_preprocess(open_clip, base, tag, meta), **sizes)
    except Exception as exc:  # re-raised below as BackboneError (with its type and message), or as it was
        user_file = path is not None and tag is None
        if isinstance(exc, RuntimeError) and "Unknown model" in str(exc):
            raise BackboneError(f"open_clip model {base!r} needs an image tower this version of timm lacks ({exc}); "
                                f"update it with pip install -U timm") from exc
        if isinstance(exc, RuntimeError) and "state_dict" in str(exc):
            raise BackboneError(
                f"the weights {weights!r} do not match open_clip architecture {architecture!r} ({exc}); pass the model "
                f"name they were saved from"
            ) from exc
        if path is None:
            raise
        fix = (f"copy it again, or pass a weights tag of open_clip:{base}" if user_file else
               f"delete it so that open_clip downloads the weights of tag {tag!r} again, or place an intact copy there")
        raise BackboneError(
            f"cannot read the weights file {os.fspath(path)!r} ({type(exc).__name__}: {str(exc)[:300]}); it is "
            f"damaged, truncated or not a weights file. Expected a state dict saved with torch.save or "
            f"alta.backbones.save_backbone, or a .safetensors file, of open_clip:{architecture}; {fix}"
        ) from exc
    backbone = OpenClipBackbone(
        model, name=name, architecture=architecture, weights=weights, pretrained=is_pretrained, source=label,
        precision=precision, tokenizer=tokenizer, model_cfg=build_cfg,
    )
    return backbone.to(device)


def _check_sidecar(meta: dict, *, architecture: str, quick_gelu: bool, path: str) -> None:
    """Refuse a file saved by :func:`~alta.backbones.save_backbone` from another library,
    architecture or activation, naming what it holds and how to load it."""
    saved = meta.get("architecture")
    if meta.get("library") != "open_clip":
        raise BackboneError(f"{path} holds {meta.get('library', 'clip-anytorch')} weights of {meta.get('name')!r} (its "
                            f"sidecar says so), not open_clip weights of {architecture!r}")
    if saved != architecture and str(saved).removesuffix("-quickgelu") != architecture.removesuffix("-quickgelu"):
        raise BackboneError(
            f"{path} holds open_clip weights of {saved!r} (family {meta.get('family') or family_of(str(saved))}, "
            f"saved from {meta.get('name')!r}), not of {architecture!r} (family {family_of(architecture)}); its "
            f"towers differ. Load it as {meta.get('load_as') or f'open_clip:{saved}'}"
        )
    if bool(meta.get("quick_gelu", quick_gelu)) != quick_gelu or saved != architecture:
        raise BackboneError(_activation_mismatch(architecture, f"the file {path} (saved from {meta.get('name')!r})",
                                                 bool(meta.get("quick_gelu", False))))


def _activation_mismatch(architecture: str, what: str, weights_quick_gelu: bool) -> str:
    have, want = ("QuickGELU", "GELU") if weights_quick_gelu else ("GELU", "QuickGELU")
    fix = (f"{architecture}-quickgelu" if weights_quick_gelu and not architecture.endswith("-quickgelu")
           else architecture.removesuffix("-quickgelu"))
    return (f"{what} was trained with {have} activations but open_clip:{architecture} builds {want}; the features "
            f"would be wrong. Load it as open_clip:{fix}")
