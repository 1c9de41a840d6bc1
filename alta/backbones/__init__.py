"""Frozen CLIP backbones from three sources, behind one protocol.

ALTA (Li et al., IEEE TMM 2023) keeps both CLIP encoders frozen. The learner, the prompt
learner and the feature cache use a backbone only through the :class:`Backbone` protocol
(:mod:`alta.backbones.base`); three sources implement it, chosen by the name's prefix
(:data:`SOURCES`):

- no prefix: clip-anytorch (OpenAI CLIP) names (``RN50``, ``ViT-B/16``), the random-weight
  ``tiny-vit``/``tiny-rn``/``random-*`` and clip-format ``.pt`` files: :class:`ClipBackbone`
  (:mod:`alta.backbones.clip`), always installed;
- ``open_clip:<model>`` (``open_clip:ViT-B-16`` with ``pretrained="laion400m_e32"``; SigLIP,
  SigLIP 2, EVA-02, MetaCLIP, DFN, MobileCLIP, PE-Core, ViT-L/14, ...; ``open_clip:tiny-<model>``
  for a small random-weight variant): :class:`~alta.backbones.open_clip.OpenClipBackbone`,
  ``pip install "alta[open_clip]"``;
- ``hf:<hub id>`` from the local cache or ``hf:/path/to/folder``:
  :class:`~alta.backbones.hf.HFClipBackbone`, ``pip install "alta[hf]"``.

:data:`FAMILIES` (:mod:`alta.backbones.families`) lists the families, their names and tags;
``alta list backbones`` shows them with what their configs say. See ``docs/backbones.md`` for the
weight tags, where files go offline and which published lines of work use which weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import BackboneError, ConfigError
from ..registry import Registry
from .base import (
    BACKBONE_MEMBERS,
    OPTIONAL_MEMBERS,
    Backbone,
    CausalTextBackbone,
    TextBlock,
    backbone_option,
    check_backbone,
)
from .clip import (
    BACKBONES,
    ClipArchitecture,
    ClipBackbone,
    default_download_root,
    import_clip,
    load_clip,
    save_backbone,
)
from .clip import (
    list_backbones as _list_clip_names,
)
from .families import FAMILIES, BackboneFamily, family_table

__all__ = [
    "Backbone",
    "BACKBONE_MEMBERS",
    "OPTIONAL_MEMBERS",
    "backbone_option",
    "check_backbone",
    "CausalTextBackbone",
    "TextBlock",
    "ClipArchitecture",
    "ClipBackbone",
    "load_backbone",
    "list_backbones",
    "default_download_root",
    "save_backbone",
    "BACKBONES",
    "SOURCES",
    "BackboneSource",
    "split_source",
    "import_clip",
    "FAMILIES",
    "BackboneFamily",
    "list_families",
]


@dataclass(frozen=True)
class BackboneSource:
    """A library that builds backbones for names starting with ``prefix``.

    Attributes:
        prefix: Name prefix (``"open_clip:"``, ``"hf:"``).
        load: ``load(identifier, *, pretrained, device, precision, download_root, download, seed)``
            with validated arguments, returning a :class:`Backbone`.
        list_names: Names (without prefix) the source knows, for listings and suggestions.
        extra: The pip extra that installs the library (``pip install "alta[<extra>]"``).
    """

    prefix: str
    load: Callable[..., Backbone]
    list_names: Callable[[], list[str]]
    extra: str


def _open_clip_load(identifier, **kwargs):
    from . import open_clip  # noqa: PLC0415 - optional extra, imported on use

    return open_clip.load_open_clip(identifier, **kwargs)


def _open_clip_names():
    from . import open_clip  # noqa: PLC0415

    return open_clip.list_open_clip_names()


def _hf_load(identifier, **kwargs):
    from . import hf  # noqa: PLC0415 - optional extra, imported on use

    return hf.load_hf(identifier, **kwargs)


def _check_source(name: str, entry: object) -> BackboneSource:
    """What :data:`SOURCES` accepts: a :class:`BackboneSource` whose prefix is ``"<name>:"``."""
    if not isinstance(entry, BackboneSource):
        raise TypeError(f"a backbone source is an alta.backbones.BackboneSource(prefix, load, list_names, extra), got "
                        f"{type(entry).__name__} {entry!r}")
    if entry.prefix != f"{name}:" or not callable(entry.load) or not callable(entry.list_names):
        raise ConfigError(f"a backbone source named {name!r} has the prefix {name + ':'!r} (got {entry.prefix!r}) and "
                          f"callable load and list_names")
    return entry


# prefix -> source; names without a registered prefix are clip-anytorch names or files. Plug-ins:
# entry-point group ``alta.backbone_sources`` (``--visual <name>:<model>``).
SOURCES: Registry[BackboneSource] = Registry("backbone source", group="alta.backbone_sources", check=_check_source,
                                             registry_name="alta.backbones.SOURCES")
SOURCES.add("open_clip", BackboneSource("open_clip:", _open_clip_load, _open_clip_names, "open_clip"))
SOURCES.add("hf", BackboneSource("hf:", _hf_load, lambda: [], "hf"))


def split_source(name: str) -> tuple[str, str]:
    """``"open_clip:ViT-B-16"`` -> ``("open_clip", "ViT-B-16")``; a name without a registered
    prefix (a clip-anytorch name or a path, even one containing ``:``) -> ``("clip", name)``."""
    for key in SOURCES:
        prefix = SOURCES.get(key).prefix
        if name.startswith(prefix):
            return key, name[len(prefix):]
    return "clip", name


def list_backbones(*, pretrained: bool | None = None, source: str = "clip") -> list[str]:
    """Names accepted by :func:`load_backbone` (a local checkpoint path is accepted too).

    Args:
        pretrained: For the clip-anytorch source: ``True`` for the OpenAI names only, ``False``
            for the random-weight ones, ``None`` (default) for both.
        source: ``"clip"`` (default), ``"open_clip"`` (every open_clip model name, prefixed, with
            its extra installed) or ``"hf"`` (Hugging Face ids are open-ended: an empty list).

    Raises:
        ConfigError: an unknown source.
    """
    if source == "clip":
        return _list_clip_names(pretrained=pretrained)
    entry = SOURCES.get(SOURCES.resolve(source))
    return [entry.prefix + n for n in entry.list_names()]


def list_families() -> list[dict]:
    """The backbone families alta supports (:data:`FAMILIES`), one row per model, with what
    open_clip's configs say about each (resolution, text tower, how prompts are encoded,
    tokenizer, where the weights go) when open_clip is installed (:func:`~alta.backbones.families.family_table`)."""
    try:
        from . import open_clip  # noqa: PLC0415 - optional extra, imported on use

        module = open_clip.import_open_clip()
    except BackboneError:
        module = None
    return family_table(module)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; anything else checked and converted.

    Raises:
        ConfigError: not a device string, not CPU/CUDA, or CUDA requested but unavailable.
    """
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
    pretrained: str | os.PathLike | bool | None = None,
    device: str | torch.device | None = "cpu",
    precision: str = "auto",
    download_root: str | os.PathLike | None = None,
    download: bool = True,
    seed: int = 0,
    timeout: float = 30.0,
) -> Backbone:
    """Load a frozen CLIP backbone by name or from a local file.

    Args:
        name: A clip-anytorch name (``RN50``, ``ViT-B/16``, ...: see :func:`list_backbones`), a
            random-weight name (``tiny-vit``, ``tiny-rn``, ``random-ViT-B/32``, ...), the path of
            a local clip checkpoint (OpenAI ``.pt`` archive or state dict), an open_clip model
            (``open_clip:ViT-B-16``, ``open_clip:ViT-B-16-SigLIP``, ``open_clip:EVA02-B-16``, ...;
            ``open_clip:tiny-<model>``: its config at a small size, random weights; the families:
            :func:`list_families`) or a Hugging Face CLIP
            (``hf:openai/clip-vit-base-patch32`` from the local cache, ``hf:/path/to/folder``).
        pretrained: The weights, for the sources that separate them from the name. open_clip:
            a pretrained tag (``"laion400m_e32"``, ``"openai"``, ``"webli"``, ...) or a weights file;
            ``None`` or ``False`` builds the architecture with seeded random weights (marked
            RANDOM). Hugging Face: ``None`` loads the folder's weights, ``False`` builds random
            weights from its ``config.json``. clip-anytorch names carry their weights: leave it
            ``None``.
        device: Where to put it (``None``: CUDA when available).
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (fp16 on CUDA, fp32 on CPU).
            Only the frozen encoders use it; trainable parameters are always fp32.
        download_root: Folder of pretrained weights (clip-anytorch and open_clip URL weights:
            default ``~/.cache/clip``; open_clip Hugging Face weights, SigLIP's tokenizers and
            ``hf:`` ids: the Hugging Face cache, ``$HF_HOME/hub``).
        download: Download missing weights. With ``False`` (or ``HF_HUB_OFFLINE=1``) a
            missing file fails at once, saying which file to place where.
        seed: Seed of the random weights of random-weight backbones.
        timeout: Seconds before a stalled download is abandoned (clip-anytorch).

    Returns:
        The backbone, frozen, in eval mode.

    Raises:
        BackboneError: unknown name, missing weights offline, an unreadable checkpoint, weights
            of another architecture than the name, a tokenizer missing offline (SigLIP), or a
            model alta cannot prompt (CoCa, Hugging Face text towers, CLIPA), with the reason.
            The message says where a missing file must be placed.
        ConfigError: bad device, precision or seed; ``pretrained`` given for a clip name.
    """
    device = resolve_device(device)
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name):
        raise BackboneError(
            f"backbone must be a name or a checkpoint path, got {name!r}; names: {', '.join(list_backbones())}, "
            f"open_clip:<model>, hf:<id or folder>"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if precision not in ("fp32", "fp16", "bf16"):
        raise ConfigError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', got {precision!r}")
    if pretrained is not None and not isinstance(pretrained, (str, os.PathLike, bool)):
        raise ConfigError(
            f"pretrained must be a weight tag, a file path, False or None, got {type(pretrained).__name__}"
        )
    name = os.fspath(name)
    key, identifier = split_source(name)
    if key == "clip":
        if pretrained is not None:
            raise ConfigError(
                f"pretrained={pretrained!r} was given for the clip-anytorch backbone {name!r}, whose name already "
                f"fixes its weights; pass a checkpoint path as the name, or use an 'open_clip:' name for weight tags"
            )
        return load_clip(name, device=device, precision=precision, download_root=download_root, download=download,
                         seed=seed, timeout=timeout)
    if not identifier:
        raise BackboneError(f"backbone {name!r} names no model after {SOURCES.get(key).prefix!r}")
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    return SOURCES.get(key).load(identifier, pretrained=pretrained, device=device, precision=precision,
                                 download_root=download_root, download=download, seed=seed)
