"""What a saved learner state must match before it is loaded: the backbone, the class names and
the shapes (:meth:`alta.CrossModalLearner.load_state_dict`).

A learner's state dict keeps its trainable parameters, prompt snapshots and stream position, and
two hashes that say what it was trained for: the class names in label order and the backbone's
weights (ALTA: Li et al., IEEE TMM 2023; the frozen encoders are never saved).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import torch

from .errors import CheckpointError

__all__ = ["hash64", "name_hashes", "check_saved_state"]


def hash64(text: str) -> int:
    """A signed 64-bit integer hash of ``text`` (stable across processes)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little", signed=True)


def name_hashes(names: Sequence[str]) -> torch.Tensor:
    """The names' 64-bit hashes (:func:`hash64`, the first 8 bytes of SHA-256), kept in a learner's
    state to recognise its class names. Shape: (C,) int64."""
    return torch.tensor([hash64(name) for name in names], dtype=torch.long)


def check_saved_state(state_dict: Any, *, mine: Mapping[str, Any], backbone, backbone_hash: int,
                      class_name_hashes: torch.Tensor, method: str, num_classes: int, strict: bool = True) -> None:
    """Refuse a saved learner state that does not fit this learner, before anything is changed.

    Args:
        state_dict: The saved state.
        mine: This learner's own state dict (the keys and shapes expected).
        backbone: This learner's backbone (named in the messages).
        backbone_hash: The hash of its fingerprint (:func:`hash64`).
        class_name_hashes: The hashes of its class names, in label order (:func:`name_hashes`).
        method: Its method's name (for the messages).
        num_classes: C.
        strict: Refuse missing and unexpected keys.

    Raises:
        CheckpointError: not a state dict; a state saved for another backbone (another family,
            architecture or weights: checked first); missing or unexpected keys (with
            ``strict``); mismatched shapes; a state saved for other class names (or another
            class order).
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"expected a learner state dict (a mapping), got {type(state_dict).__name__}")
    saved_backbone = state_dict.get("backbone_hash")  # checked first: another backbone changes every shape too
    if saved_backbone is not None and int(saved_backbone) != int(backbone_hash):
        family = backbone.describe().get("family") or backbone.describe().get("library", "")
        raise CheckpointError(
            f"learner state was saved with another backbone than this one ({backbone.name!r}"
            f"{f', family {family}' if family else ''}, fingerprint {backbone.fingerprint()}): another "
            f"family, architecture or weights, whose features and prompts it does not fit; load the backbone it "
            f"was trained with (the run's config.yaml and summary.json name it)"
        )
    missing = [k for k in mine if k not in state_dict]
    unexpected = [k for k in state_dict if k not in mine and not k.startswith("backbone.")]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"learner state does not fit this learner (method {method!r}, {num_classes} classes): "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}; was it saved for another method?"
        )
    wrong = [
        (k, tuple(state_dict[k].shape), tuple(v.shape))
        for k, v in mine.items()
        if k in state_dict and (not isinstance(state_dict[k], torch.Tensor) or state_dict[k].shape != v.shape)
    ]
    if wrong:
        raise CheckpointError(f"learner state has tensors of other shapes (key, saved, expected): {wrong[:3]}")
    if "class_name_hashes" in state_dict and not torch.equal(
        state_dict["class_name_hashes"].cpu(), class_name_hashes.cpu()
    ):
        raise CheckpointError(
            "learner state was saved for other class names or another class order; build the learner with the "
            "class names (in label order) of the stream it was trained on"
        )
