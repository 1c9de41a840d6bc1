"""The backbone families alta loads, what each is, and where its files go offline.

Recent CLIP continual-learning work reports a second backbone beside OpenAI's ViT-B/16
(MoE-Adapters++: SigLIP and ViT-L/14; PROOF and C3Box: LAION-400M ViT-B/16). :data:`FAMILIES`
names each family alta supports, the names it loads under and the weight tags whose architecture
and activation fit those names. :func:`family_table` adds what the library's own configs say
(resolution, text tower, tokenizer, where the weights live), so ``alta list backbones`` never
restates a fact the library could contradict; ``tests/test_backbone_families.py`` checks the
table against open_clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BackboneFamily", "FAMILIES", "family_of", "family_table"]


@dataclass(frozen=True)
class BackboneFamily:
    """A family of backbones.

    Attributes:
        name: The family's name (``"SigLIP"``).
        source: The library that builds it: ``"open_clip"``, ``"clip-anytorch"`` or
            ``"transformers"``.
        models: ``(name for load_backbone, weight tags that fit it)`` pairs, the first the
            family's reference model; a clip-anytorch or Hugging Face name carries its weights
            (no tags).
        note: What to know before using it.
    """

    name: str
    source: str
    models: tuple[tuple[str, tuple[str, ...]], ...]
    note: str = ""


FAMILIES: tuple[BackboneFamily, ...] = (
    BackboneFamily("OpenAI CLIP", "clip-anytorch", (
        ("ViT-B/16", ()), ("ViT-B/32", ()), ("RN50", ()), ("RN101", ()), ("ViT-L/14", ()), ("ViT-L/14@336px", ()),
    ), "the reference code's backbones; weights fixed by the name"),
    BackboneFamily("CLIP (LAION, DataComp, OpenAI)", "open_clip", (
        ("open_clip:ViT-B-16", ("laion400m_e32", "laion2b_s34b_b88k", "datacomp_xl_s13b_b90k")),
        ("open_clip:ViT-B-32", ("laion2b_s34b_b79k", "datacomp_xl_s13b_b90k")),
        ("open_clip:ViT-B-32-quickgelu", ("laion400m_e32", "openai")),
        ("open_clip:ViT-B-16-quickgelu", ("openai",)),
    ), "PROOF, ENGINE and C3Box use open_clip:ViT-B-16 with laion400m_e32"),
    BackboneFamily("ViT-L/14", "open_clip", (
        ("open_clip:ViT-L-14", ("laion2b_s32b_b82k", "datacomp_xl_s13b_b90k", "laion400m_e32")),
        ("open_clip:ViT-L-14-quickgelu", ("openai",)),
    ), "also clip-anytorch's ViT-L/14 (OpenAI weights)"),
    BackboneFamily("ViT-L/14@336", "open_clip", (
        ("open_clip:ViT-L-14-336-quickgelu", ("openai",)),
    ), "OpenAI's weights are QuickGELU: open_clip:ViT-L-14-336 refuses them; also clip-anytorch's ViT-L/14@336px"),
    BackboneFamily("MetaCLIP", "open_clip", (
        ("open_clip:ViT-B-16-quickgelu", ("metaclip_400m", "metaclip_fullcc")),
        ("open_clip:ViT-L-14-quickgelu", ("metaclip_400m", "metaclip_fullcc")),
    ), "QuickGELU: the plain ViT-B-16 / ViT-L-14 names are refused with these tags"),
    BackboneFamily("DFN", "open_clip", (
        ("open_clip:ViT-B-16-quickgelu", ("dfn2b",)),
        ("open_clip:ViT-L-14-quickgelu", ("dfn2b",)),
        ("open_clip:ViT-L-14", ("dfn2b_s39b",)),
        ("open_clip:ViT-H-14-quickgelu", ("dfn5b",)),
    ), "dfn2b is QuickGELU, dfn2b_s39b GELU"),
    BackboneFamily("EVA-02", "open_clip", (
        ("open_clip:EVA02-B-16", ("merged2b_s8b_b131k",)),
        ("open_clip:EVA02-L-14", ("merged2b_s4b_b131k",)),
        ("open_clip:EVA02-L-14-336", ("merged2b_s6b_b61k",)),
    ), "timm Eva image tower (rotary embeddings, SwiGLU)"),
    BackboneFamily("PE-Core", "open_clip", (
        ("open_clip:PE-Core-B-16", ("meta",)),
        ("open_clip:PE-Core-L-14-336", ("meta",)),
    ), "text context of 32 tokens; the B text tower (1024 wide, 24 blocks) is larger than its image tower"),
    BackboneFamily("MobileCLIP / MobileCLIP 2", "open_clip", (
        ("open_clip:MobileCLIP2-S0", ("dfndr2b",)),
        ("open_clip:MobileCLIP2-S2", ("dfndr2b",)),
        ("open_clip:MobileCLIP2-L-14", ("dfndr2b",)),
        ("open_clip:MobileCLIP-S2", ("datacompdr",)),
        ("open_clip:MobileCLIP2-B", ("dfndr2b",)),
        ("open_clip:MobileCLIP-B", ("datacompdr", "datacompdr_lt")),
    ), "S and L sizes: bidirectional text tower; B: causal; mean 0 / std 1 preprocessing (S, B)"),
    BackboneFamily("SigLIP", "open_clip", (
        ("open_clip:ViT-B-16-SigLIP", ("webli",)),
        ("open_clip:ViT-B-16-SigLIP-384", ("webli",)),
        ("open_clip:ViT-SO400M-14-SigLIP", ("webli",)),
    ), "sigmoid-trained, learned logit bias; the tokenizer needs transformers and the Hugging Face cache"),
    BackboneFamily("SigLIP 2", "open_clip", (
        ("open_clip:ViT-B-16-SigLIP2", ("webli",)),
        ("open_clip:ViT-B-16-SigLIP2-384", ("webli",)),
        ("open_clip:ViT-SO400M-14-SigLIP2", ("webli",)),
    ), "as SigLIP, with the Gemma tokenizer (256,000 tokens)"),
    BackboneFamily("Hugging Face CLIP", "transformers", (
        ("hf:openai/clip-vit-base-patch16", ()), ("hf:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", ()),
    ), "CLIPModel folders or hub ids; SigLIP checkpoints load through open_clip instead"),
)


_CAUSAL = "exact, shared prefix and truncation on"


def family_of(architecture: str, weights: str | None = None) -> str:
    """The family of an open_clip model (with ``tiny-`` or not) and its weights tag.

    Returns:
        The name of the first family of :data:`FAMILIES` listing the model with that tag, else
        the first listing the model (the general families come first: random ViT-L-14 weights
        are "ViT-L/14", not "DFN"), else ``"open_clip"``.
    """
    name = "open_clip:" + architecture.removeprefix("tiny-")
    by_model = None
    for family in FAMILIES:
        for model, tags in family.models:
            if model == name:
                if weights in tags:
                    return family.name
                by_model = by_model or family.name
    return by_model or "open_clip"


def family_table(open_clip=None) -> list[dict[str, Any]]:
    """One row per family and model: the declared names and tags, and, for open_clip models when
    open_clip is given, what its config says (resolution, text tower, tokenizer, weights place).

    Args:
        open_clip: The ``open_clip`` module, or ``None`` (open_clip not installed).

    Returns:
        Dicts with ``family``, ``source``, ``model``, ``tags``, ``note`` and, where known,
        ``resolution``, ``text_tower`` (``"causal, end of text"``, ``"bidirectional, last
        position"``, ...), ``prompting``, ``tokenizer`` and ``weights`` (where the files go).
    """
    rows = []
    for family in FAMILIES:
        for model, tags in family.models:
            row: dict[str, Any] = {"family": family.name, "source": family.source, "model": model,
                                   "tags": list(tags), "note": family.note}
            if family.source == "clip-anytorch":
                row.update(resolution=336 if "336" in model else 224, text_tower="causal, end of text",
                           prompting=_CAUSAL, tokenizer="CLIP BPE (clip-anytorch)",
                           weights="~/.cache/clip/ (download_root)")
            elif family.source == "transformers":
                row.update(text_tower="causal, end of text", prompting=_CAUSAL, tokenizer="the folder's",
                           weights="Hugging Face cache ($HF_HOME/hub) or a saved folder")
            elif open_clip is not None:
                row.update(_open_clip_facts(open_clip, model.removeprefix("open_clip:"), tags))
            rows.append(row)
    return rows


def _open_clip_facts(open_clip, architecture: str, tags: tuple[str, ...]) -> dict[str, Any]:
    cfg = open_clip.get_model_config(architecture) or {}
    text, vision = cfg.get("text_cfg", {}), cfg.get("vision_cfg", {})
    size = vision.get("image_size")
    causal = not text.get("no_causal_mask", False)
    pool = text.get("pool_type", "argmax")
    read = "last position" if pool == "last" else "end of text"
    hubs = sorted({(open_clip.get_pretrained_cfg(architecture, t) or {}).get("hf_hub", "").rstrip("/") for t in tags})
    return {
        "resolution": size[0] if isinstance(size, (list, tuple)) else size,
        "text_tower": f"{'causal' if causal else 'bidirectional'}, {read}",
        "prompting": (_CAUSAL if causal and pool != "last" else
                      f"exact at all {text.get('context_length', 77)} positions, shared prefix and truncation off"),
        "context_length": text.get("context_length", 77),
        "tokenizer": (f"Hugging Face cache {text['hf_tokenizer_name']} (needs transformers)"
                      if text.get("hf_tokenizer_name") else "CLIP BPE, shipped with open_clip"),
        "weights": "Hugging Face cache " + ", ".join(h for h in hubs if h) if any(hubs) else "~/.cache/clip/",
    }
