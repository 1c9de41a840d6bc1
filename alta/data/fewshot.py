"""Few-shot training sets: k samples per class, drawn from a seed.

Few-shot MTIL trains on 5 images per class (MoE-Adapters, Yu et al., CVPR 2024, ``--few_shot=5``);
X-TAIL (RAIL, Xu et al., NeurIPS 2024) and DIKI's MTIL-FS (Tang et al., ECCV 2024) on 16.
:func:`few_shot_indices` picks them from the labels alone, with ``torch.Generator`` seeded from
``seed``: the same seed gives the same samples on every machine, whatever else the run draws.

The reference samplers cannot be reproduced outside their code, so alta does not claim to equal
them: MoE-Adapters keeps the first 5 images of each class met in one shuffled pass of ZSCL's
training loader, an order set by the global torch RNG after everything drawn before it (and keeps
those images already augmented); DIKI and RAIL draw with Python's ``random`` (RAIL's MNIST with
NumPy's) in a call sequence that spans all datasets, and DIKI caches its first draw on disk.
What alta keeps of them: k per class, drawn uniformly without replacement within each class; a
class with fewer than k samples gives all of them (MoE-Adapters, CoOp/DIKI) or, with
``short="repeat"``, k drawn with replacement (RAIL's ``repeat=True``).

References:
    J. Yu et al., "Boosting Continual Learning of Vision-Language Models via Mixture-of-Experts
    Adapters", CVPR 2024 (github.com/JiazuoYu/MoE-Adapters4CL, ``mtil/src/models/finetune.py``).
    Y. Xu et al., "Advancing Cross-domain Discriminability in Continual Learning of
    Vision-Language Models" (RAIL, X-TAIL), NeurIPS 2024.
    L. Tang et al., "Mind the Interference: Retaining Pre-trained Knowledge in Parameter
    Efficient Continual Learning of Vision-Language Models" (DIKI), ECCV 2024.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .datasets import LabelledSource, SubsetSource

__all__ = ["SHORT_CLASS_RULES", "few_shot_indices", "few_shot_source"]

logger = logging.getLogger(__name__)

#: What a class with fewer than ``shots`` samples gives: all its samples, ``shots`` of them drawn
#: with replacement, or an error.
SHORT_CLASS_RULES = ("all", "repeat", "error")


def few_shot_indices(targets: Sequence[int] | np.ndarray | torch.Tensor, shots: int, *, seed: int,
                     short: str = "all", name: str = "") -> torch.Tensor:
    """Positions of ``shots`` samples of every class, drawn from ``seed``.

    Each class draws from its own ``torch.Generator``, seeded from a generator seeded with
    ``seed`` (one 63-bit seed per label, in label order): a class's samples depend only on
    ``seed``, its label and its own samples, not on the other classes. Within a class the
    samples are a uniform draw without replacement (``torch.randperm``).

    Args:
        targets: The label of every sample (N,), non-negative ints (a source's ``targets``).
        shots: k, samples per class (>= 1): 5 for few-shot MTIL, 16 for X-TAIL.
        seed: Seed of the draw (>= 0).
        short: For a class with fewer than ``shots`` samples: ``"all"`` keeps all of them
            (MoE-Adapters, CoOp; logged once), ``"repeat"`` draws ``shots`` with replacement
            (RAIL; the positions then repeat), ``"error"`` refuses.
        name: What the labels are of (a dataset's name), for messages.

    Returns:
        LongTensor (M,) of positions into ``targets``, sorted; M = k x C when every class has
        k samples.

    Raises:
        ConfigError: ``shots``, ``seed`` or ``short`` invalid.
        DataError: labels that are not non-negative ints, or (``short="error"``) a class with fewer
            than ``shots`` samples (named).

    Shape:
        targets (N,) -> (M,) with M <= k * C (``short="all"``) or M = k * C (otherwise).
    """
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ConfigError(f"shots must be an int >= 1 (samples per class, e.g. 5 or 16), got {shots!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an int in [0, 2**63) (the seed of the few-shot draw), got {seed!r}")
    if short not in SHORT_CLASS_RULES:
        raise ConfigError(f"short is {short!r}; expected one of {', '.join(SHORT_CLASS_RULES)} (what a class "
                          "with fewer samples than shots gives)")
    labels = torch.as_tensor(np.asarray(targets)).reshape(-1)
    if labels.numel() and (labels.dtype.is_floating_point or labels.dtype == torch.bool or int(labels.min()) < 0):
        raise DataError(f"few_shot_indices: targets must be non-negative integer labels, got {labels.dtype} "
                        f"values in [{labels.min().item()}, {labels.max().item()}]")
    labels = labels.long()
    num_labels = int(labels.max()) + 1 if labels.numel() else 0
    class_seeds = torch.randint(0, 2**63 - 1, (num_labels,), generator=torch.Generator().manual_seed(int(seed)))
    picked: list[torch.Tensor] = []
    short_classes: list[tuple[int, int]] = []
    for label in range(num_labels):
        members = torch.nonzero(labels == label).flatten()
        n = members.numel()
        if n == 0:
            continue
        generator = torch.Generator().manual_seed(int(class_seeds[label]))
        if n >= shots:
            picked.append(members[torch.randperm(n, generator=generator)[:shots]])
            continue
        short_classes.append((label, n))
        if short == "repeat":
            picked.append(members[torch.randint(0, n, (shots,), generator=generator)])
        else:
            picked.append(members)
    if short_classes:
        listed = ", ".join(f"{label} ({n})" for label, n in short_classes[:5]) + (" ..." if len(short_classes) > 5 else "")
        if short == "error":
            raise DataError(f"{name + ': ' if name else ''}{len(short_classes)} class(es) have fewer than shots={shots} "
                            f"samples: label (count) "
                            f"{listed}. Fix: lower shots, or pass short='all' (keep them all) or 'repeat' (draw "
                            "with replacement)")
        logger.warning("few-shot%s: %d class(es) have fewer than %d samples and give %s: label (count) %s",
                       f" {name}" if name else "", len(short_classes), shots, "all of them" if short == "all" else f"{shots} drawn with replacement",
                       listed)
    if not picked:
        return torch.zeros(0, dtype=torch.long)
    return torch.sort(torch.cat(picked)).values


def few_shot_source(source: LabelledSource, shots: int, *, seed: int, short: str = "all") -> SubsetSource:
    """A source's few-shot subset: :func:`few_shot_indices` of its ``targets``.

    Args:
        source: A raw source (e.g. the train source of :func:`~alta.data.load_sources`).
        shots: Samples per class.
        seed: Seed of the draw.
        short: As in :func:`few_shot_indices`.

    Returns:
        The subset, with the source's class names; its identity holds
        ``|shots=<k>|seed=<seed>|short=<rule>|`` before the split, so caches keep it apart from the
        full source.

    Raises:
        ConfigError, DataError: as :func:`few_shot_indices`.
    """
    indices = few_shot_indices(source.targets, shots, seed=seed, short=short)
    return SubsetSource(source, indices, tag=f"shots={shots}|seed={seed}|short={short}")
