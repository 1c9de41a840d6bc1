"""Small random-weight variants of open_clip's families: ``open_clip:tiny-<model>``.

A ``tiny-`` name builds the model of ``<model>`` from open_clip's own config and factory with every
field kept (model class, text tower mask and pooling, projection kind, norm and activation
arguments, logit bias, context length, vocabulary, tokenizer) and only the sizes shrunk: a joint
dimension of 64, two text blocks of width 64, and a two-block image tower at 32 px (42 px for
patch-14 towers, 64 px for FastViT). They are for offline runs and tests of a family's code path
(``alta run --visual open_clip:tiny-ViT-B-16-SigLIP``), like clip-anytorch's ``tiny-vit``; their
weights are always random.

open_clip's ``TimmModel`` passes no sizes to ``timm.create_model`` (the timm model name fixes
them), so an image tower built by timm is shrunk by registering a small timm entrypoint
(``alta_tiny_<name>``, with ``timm.models.register_model``) that calls the family's own
entrypoint with smaller arguments, and pointing the config at it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..errors import BackboneError

__all__ = ["TINY_PREFIX", "TINY_WIDTH", "split_tiny", "tiny_config"]

TINY_PREFIX = "tiny-"
TINY_WIDTH = 64  # joint dimension D, text width W and image width
_HEADS, _LAYERS = 2, 2
_SMALL_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": TINY_WIDTH, "depth": _LAYERS, "num_heads": _HEADS}

# timm image towers alta can shrink: (pattern of the timm name, its small arguments, image size)
_TIMM_TOWERS: tuple[tuple[str, dict[str, Any], int], ...] = (
    # SigLIP / SigLIP 2: timm VisionTransformer without class token, MAP (attention-pool) head
    (r"vit_\w+_siglip_\w+", _SMALL_VIT, 32),
    # EVA-02 CLIP: timm Eva (rotary embeddings, SwiGLU), class-token pooling
    (r"eva02_\w+_clip_\w+", {**_SMALL_VIT, "ref_feat_shape": (4, 4)}, 32),
    # PE-Core: timm Eva with rotary attention and a MAP head
    (r"vit_pe_core_\w+", {**_SMALL_VIT, "ref_feat_shape": (4, 4), "attn_pool_num_heads": _HEADS}, 32),
    # MobileCLIP 2-L/14: timm's CLIP ViT
    (r"vit_\w+_clip_\w+", _SMALL_VIT, 32),
    # MobileCLIP(2)-S*: timm FastViT MCi (RepMixer stages, attention in the last), a /32 network
    (r"fastvit_mci\d", {"layers": (1, 1, 1, 1), "embed_dims": (16, 32, 64, TINY_WIDTH)}, 64),
)


def split_tiny(architecture: str) -> tuple[str, bool]:
    """``"tiny-EVA02-B-16"`` -> ``("EVA02-B-16", True)``; other names -> ``(name, False)``."""
    if architecture.startswith(TINY_PREFIX):
        return architecture[len(TINY_PREFIX):], True
    return architecture, False


def tiny_config(architecture: str, model_cfg: dict) -> dict:
    """The config of ``open_clip:tiny-<architecture>``: ``model_cfg`` with the sizes shrunk.

    Args:
        architecture: The open_clip model name (without ``tiny-``).
        model_cfg: Its config (``open_clip.get_model_config``).

    Returns:
        A new config; open_clip builds it with ``create_model(architecture, **overrides)`` where
        the overrides are its ``embed_dim``, ``vision_cfg`` and ``text_cfg``.

    Raises:
        BackboneError: the image tower is a timm model alta has no small arguments for.
    """
    cfg = copy.deepcopy(model_cfg)
    cfg["embed_dim"] = TINY_WIDTH
    cfg["text_cfg"] = {**cfg.get("text_cfg", {}), "width": TINY_WIDTH, "heads": _HEADS, "layers": _LAYERS}
    vision = cfg["vision_cfg"]
    timm_name = vision.get("timm_model_name")
    if timm_name:
        for pattern, small, size in _TIMM_TOWERS:
            if re.fullmatch(pattern, timm_name):
                vision["timm_model_name"] = _register_small_timm(timm_name, small)
                vision["image_size"] = size
                break
        else:
            raise BackboneError(
                f"open_clip:{TINY_PREFIX}{architecture} does not exist: alta has no small size for its timm image "
                f"tower {timm_name!r}; use open_clip:{architecture} (full size, random weights with pretrained=None)"
            )
    elif isinstance(vision.get("layers"), (list, tuple)):  # open_clip's modified ResNet
        vision.update(layers=[1, 1, 1, 1], width=16, image_size=32)
    else:  # open_clip's VisionTransformer: patch 14 stays 14 (a 3 x 3 grid), other patches become 8
        patch = 14 if vision.get("patch_size") == 14 else 8
        vision.update(width=TINY_WIDTH, layers=_LAYERS, head_width=TINY_WIDTH // _HEADS, patch_size=patch,
                      image_size=42 if patch == 14 else 32)
    return cfg


def _register_small_timm(parent: str, small: dict[str, Any]) -> str:
    """Register (once) a timm entrypoint building ``parent`` with the ``small`` arguments."""
    import timm.models  # noqa: PLC0415 - dependency of open_clip, the optional extra

    name = f"alta_tiny_{parent}"
    if timm.models.is_model(name):
        return name
    build = timm.models.model_entrypoint(parent)

    def entrypoint(pretrained: bool = False, **kwargs):
        return build(pretrained=False, **{**small, **kwargs})

    entrypoint.__name__ = entrypoint.__qualname__ = name
    timm.models.register_model(entrypoint)
    return name
