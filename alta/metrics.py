"""Continual-learning metrics as pure functions of an accuracy matrix.

``R[t, k]`` is the accuracy (in %) on the test split of experience k after training through
experience t (T x T; entries that were not measured are NaN). NaN is accepted above the
diagonal only (where forward transfer is then NaN); every function here raises
:class:`~alta.errors.ShapeError` for a NaN on or below it, e.g. an experience without test
samples, which :func:`~alta.evaluate` scores NaN. Row t is one evaluation of all
experiences after experience t; the upper triangle (k > t) holds accuracies on experiences not
trained yet, needed only by forward transfer.

Definitions (T experiences, 0-based):

- accuracy after each experience: ``A_t = mean_{k <= t} R[t, k]``;
- average (incremental) accuracy, "Avg": ``mean_t A_t`` (Rebuffi et al., iCaRL, CVPR 2017);
- last accuracy, "Last": ``A_{T-1}``;
- forgetting (Chaudhry et al., "Riemannian Walk for Incremental Learning", ECCV 2018):
  ``mean_{k < T-1} max_{l in [k, T-2]} (R[l, k] - R[T-1, k])``;
- backward transfer (Lopez-Paz & Ranzato, "Gradient Episodic Memory", NeurIPS 2017):
  ``BWT = mean_{k < T-1} (R[T-1, k] - R[k, k])``;
- forward transfer (same paper): ``FWT = mean_{k >= 1} (R[k-1, k] - b_k)`` where ``b_k`` is the
  accuracy on experience k of a reference model before any training. GEM uses a randomly
  initialised model; for CLIP-based learners alta uses **zero-shot CLIP** as ``b``, so FWT
  measures what training on earlier experiences adds to (or removes from) zero-shot accuracy on
  later ones.

From a class-IL confusion matrix ``M[i, j]`` (test samples of class i predicted as class j, C x C,
as :func:`alta.evaluate` counts it):

- per-class accuracy: ``M[c, c] / sum_j M[c, j]`` (NaN for a class without test samples);
- old-class / new-class accuracy after experience t: the accuracy over the samples of the classes
  of experiences ``k < t`` (old) and of experience t (new), the stability / plasticity split of
  class-incremental learning (e.g. Masana et al., "Class-Incremental Learning: Survey and
  Performance Evaluation on Image Classification", TPAMI 2023). Sample-weighted, unlike ``A_t``;
  their harmonic mean ``H = 2 * old * new / (old + new)`` (:func:`harmonic_mean`).

The CLIP class-incremental suite (PyCIL, PROOF) reports after each step the accuracy on the test
samples of *all classes seen so far*, sample-weighted (:func:`seen_accuracy`), its top-1 and
top-5 curves, Avg = the mean of the top-1 curve and Last = its final value.

The multi-domain protocols (MTIL, Zheng et al., "Preventing Zero-Shot Transfer Degradation in
Continual Learning of Vision-Language Models", ICCV 2023; X-TAIL, Xu et al., NeurIPS 2024) read
the *full* matrix, upper triangle included (the accuracy on datasets not learned yet), with their
own Avg and Last (:func:`mtil_summary`):

- Transfer: ``mean_{k >= 1} mean_{t < k} R[t, k]``, the mean over datasets 1..T-1 of the mean
  accuracy on dataset k *before* it is learned (zero-shot ability kept);
- Avg: ``mean_k mean_t R[t, k]``, every entry of the T x T matrix (not iCaRL's Avg above);
- Last: ``mean_k R[T-1, k]`` (the same as Last above).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import ShapeError

__all__ = [
    "accuracy_after_each",
    "average_accuracy",
    "last_accuracy",
    "forgetting",
    "backward_transfer",
    "forward_transfer",
    "summarize",
    "per_class_accuracy",
    "old_new_accuracy",
    "harmonic_mean",
    "seen_accuracy",
    "mtil_summary",
    "domain_il_accuracy",
]


def _confusion(M) -> np.ndarray:
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ShapeError(f"the confusion matrix must be square C x C with C >= 1, got shape {M.shape}")
    if (M < 0).any():
        raise ShapeError("the confusion matrix holds sample counts and cannot be negative")
    return M


def _matrix(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ShapeError(f"the accuracy matrix must be square T x T with T >= 1, got shape {R.shape}")
    rows, cols = np.tril_indices(R.shape[0])
    missing = np.isnan(R[rows, cols])
    if missing.any():
        t, k = int(rows[missing][0]), int(cols[missing][0])
        raise ShapeError(
            f"the accuracy matrix has NaN on or below the diagonal ({int(missing.sum())} entries, first R[{t}, {k}]): "
            "every R[t, k] with k <= t must be measured. evaluate() scores an experience without test samples "
            "NaN; give every experience test samples, or leave it out of the stream"
        )
    return R


def accuracy_after_each(R) -> np.ndarray:
    """Mean accuracy over the experiences seen so far, after each experience.

    Shape:
        R: (T, T); returns (T,) with ``A_t = mean_{k<=t} R[t, k]``.
    """
    R = _matrix(R)
    return np.array([R[t, : t + 1].mean() for t in range(R.shape[0])])


def average_accuracy(R) -> float:
    """Average incremental accuracy "Avg": the mean of :func:`accuracy_after_each`.

    References:
        Rebuffi, Kolesnikov, Sperl, Lampert. "iCaRL: Incremental Classifier and Representation
        Learning." CVPR 2017.
    """
    return float(accuracy_after_each(R).mean())


def last_accuracy(R) -> float:
    """Last accuracy "Last": mean accuracy over all experiences after the final one."""
    R = _matrix(R)
    return float(R[-1].mean())


def forgetting(R) -> float:
    """Average forgetting after the final experience (NaN when T = 1).

    ``mean_{k < T-1} max_{l in [k, T-2]} (R[l, k] - R[T-1, k])``.

    References:
        Chaudhry, Dokania, Ajanthan, Torr. "Riemannian Walk for Incremental Learning:
        Understanding Forgetting and Intransigence." ECCV 2018.
    """
    R = _matrix(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean([R[k : T - 1, k].max() - R[T - 1, k] for k in range(T - 1)]))


def backward_transfer(R) -> float:
    """Backward transfer BWT (NaN when T = 1); negative values mean forgetting.

    ``mean_{k < T-1} (R[T-1, k] - R[k, k])``.

    References:
        Lopez-Paz, Ranzato. "Gradient Episodic Memory for Continual Learning." NeurIPS 2017.
    """
    R = _matrix(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean([R[T - 1, k] - R[k, k] for k in range(T - 1)]))


def forward_transfer(R, baseline: Sequence[float]) -> float:
    """Forward transfer FWT against a per-experience baseline (NaN when T = 1 or unmeasured).

    ``mean_{k >= 1} (R[k-1, k] - b_k)``; alta passes the zero-shot CLIP accuracies as ``b``
    (GEM used a randomly initialised model).

    Args:
        R: The accuracy matrix, with the super-diagonal ``R[k-1, k]`` measured.
        baseline: ``b_k`` for every experience, length T.

    References:
        Lopez-Paz, Ranzato. "Gradient Episodic Memory for Continual Learning." NeurIPS 2017.
    """
    R = _matrix(R)
    T = R.shape[0]
    b = np.asarray(baseline, dtype=float)
    if b.shape != (T,):
        raise ShapeError(f"baseline must have one accuracy per experience ({T}), got shape {b.shape}")
    if T < 2:
        return float("nan")
    values = np.array([R[k - 1, k] - b[k] for k in range(1, T)])
    return float(values.mean()) if not np.isnan(values).any() else float("nan")


def summarize(R, *, baseline: Sequence[float] | None = None) -> dict[str, float | list[float]]:
    """All metrics of an accuracy matrix as a JSON-ready dict.

    Returns:
        ``accuracy_after_each`` (list), ``avg_accuracy``, ``last_accuracy``, ``forgetting``,
        ``bwt`` and ``fwt`` (NaN without a baseline).
    """
    R = _matrix(R)
    return {
        "accuracy_after_each": [float(x) for x in accuracy_after_each(R)],
        "avg_accuracy": average_accuracy(R),
        "last_accuracy": last_accuracy(R),
        "forgetting": forgetting(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R, baseline) if baseline is not None else float("nan"),
    }


def per_class_accuracy(confusion) -> np.ndarray:
    """Class-IL accuracy (%) of every class from a confusion matrix (NaN without test samples).

    Args:
        confusion: ``M[i, j]`` = test samples of class i predicted as j.

    Shape:
        confusion: (C, C); returns (C,).
    """
    M = _confusion(confusion)
    totals = M.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, 100.0 * np.diag(M) / totals, np.nan)


def old_new_accuracy(confusion, class_to_experience, experience: int) -> dict[str, float]:
    """Class-IL accuracy (%) on the classes of earlier experiences (old) and of ``experience`` (new).

    Args:
        confusion: The class-IL confusion matrix after training through ``experience``.
        class_to_experience: Experience index of every class.
        experience: t, the experience just trained.

    Returns:
        ``{"old": ..., "new": ...}``, each the accuracy over the test samples of those classes
        (``old`` is NaN for t = 0, and either is NaN when its classes have no test samples).

    Raises:
        ShapeError: ``class_to_experience`` does not have one entry per class.

    Shape:
        confusion: (C, C); class_to_experience: (C,).
    """
    M = _confusion(confusion)
    owner = np.asarray(class_to_experience).reshape(-1)
    if owner.shape[0] != M.shape[0]:
        raise ShapeError(f"class_to_experience has {owner.shape[0]} entries but the confusion matrix {M.shape[0]} classes")

    def accuracy(rows: np.ndarray) -> float:
        total = M[rows].sum()
        return float(100.0 * np.diag(M)[rows].sum() / total) if total > 0 else float("nan")

    return {"old": accuracy(owner < experience), "new": accuracy(owner == experience)}


def harmonic_mean(old: float | None, new: float | None) -> float:
    """Harmonic mean of the old-class and new-class accuracies, ``2 * old * new / (old + new)``
    (0 when both are 0; NaN when either is missing, e.g. no old classes after the first step).

    References:
        PyCIL ``utils/toolkit.py`` (``accuracy``: ``harmonic``), as PROOF reports it.
    """
    if old is None or new is None or np.isnan(old) or np.isnan(new):
        return float("nan")
    return 0.0 if old + new == 0 else float(2.0 * old * new / (old + new))


def seen_accuracy(accuracies: Sequence[float], num_samples: Sequence[int]) -> float:
    """Accuracy over the test samples of all experiences seen so far: the per-experience
    accuracies weighted by their test samples (PyCIL's top-1 and top-5 curves); NaN without samples.

    Args:
        accuracies: Accuracy (%) on each seen experience.
        num_samples: Its test samples.

    Raises:
        ShapeError: lists of different lengths, or a NaN accuracy of an experience with samples.
    """
    a, n = np.asarray(accuracies, dtype=float), np.asarray(num_samples, dtype=float)
    if a.shape != n.shape or a.ndim != 1:
        raise ShapeError(f"one accuracy per experience and one sample count each, got {a.shape} and {n.shape}")
    if np.isnan(a[n > 0]).any():
        raise ShapeError("an experience with test samples has no accuracy (NaN)")
    total = n.sum()
    return float((a[n > 0] * n[n > 0]).sum() / total) if total > 0 else float("nan")


def mtil_summary(R) -> dict[str, float | list[float | None]]:
    """Transfer, Avg and Last of the MTIL / X-TAIL protocols, and their per-dataset values.

    Exactly as ZSCL's results notebook computes them (Thunderbeee/ZSCL, ``mtil/results.ipynb``,
    function ``statistics``; the same code as DIKI's ``utils.py:cal_MTIL_metrics``). ``R[t, k]``
    is the accuracy on dataset k (columns in training order) after training on dataset t:

    - ``transfer_per_dataset[k] = mean_{t < k} R[t, k]`` for k >= 1 (``None`` for k = 0, which
      is never evaluated before it is learned), ``transfer`` = their mean over k = 1..T-1 (the
      mean of the column means, not of all upper-triangle entries);
    - ``avg_per_dataset[k] = mean_t R[t, k]`` over all T rows, ``avg`` = their mean;
    - ``last_per_dataset[k] = R[T-1, k]``, ``last`` = their mean.

    The papers print each value rounded with ``np.around(x, 1)``; these are unrounded.

    Args:
        R: The full accuracy matrix in %, every entry measured (above the diagonal too).

    Returns:
        ``{"transfer", "avg", "last", "transfer_per_dataset", "avg_per_dataset",
        "last_per_dataset"}``; ``transfer`` is NaN when T = 1.

    Raises:
        ShapeError: a matrix that is not square, or with a NaN anywhere (every dataset must be
            evaluated after every experience, including datasets not learned yet).

    Shape:
        R: (T, T); per-dataset lists: (T,).

    References:
        Zheng et al., "Preventing Zero-Shot Transfer Degradation in Continual Learning of
        Vision-Language Models", ICCV 2023 (ZSCL, MTIL); Xu et al., "Advancing Cross-domain
        Discriminability in Continual Learning of Vision-Language Models", NeurIPS 2024 (RAIL,
        X-TAIL).
    """
    R = _matrix(R)
    if np.isnan(R).any():
        t, k = (int(i) for i in np.argwhere(np.isnan(R))[0])
        raise ShapeError(
            f"MTIL metrics need the full T x T accuracy matrix, but R[{t}, {k}] (dataset {k} after experience {t}) "
            "is NaN: evaluate every dataset after every experience, including datasets not learned yet "
            "(alta.run_stream does so)"
        )
    T = R.shape[0]
    transfer = [None] + [float(R[:k, k].mean()) for k in range(1, T)]
    avg = R.mean(axis=0)
    last = R[-1]
    return {
        "transfer": float(np.mean(transfer[1:])) if T > 1 else float("nan"),
        "avg": float(avg.mean()),
        "last": float(last.mean()),
        "transfer_per_dataset": transfer,
        "avg_per_dataset": [float(v) for v in avg],
        "last_per_dataset": [float(v) for v in last],
    }


def domain_il_accuracy(confusion, class_to_experience, class_to_concept) -> list[float]:
    """Domain-IL accuracy (%) of each experience of a domain-incremental stream, from a confusion
    matrix: a prediction is right when it names the sample's class in any domain.

    In a domain-incremental stream every domain has the same classes, each domain's copy a label
    of its own (S-Prompts' ``label + C * domain``); S-Prompts counts ``y_pred % C == y_true % C``
    (Wang et al., "S-Prompts Learning with Pre-trained Transformers", NeurIPS 2022,
    ``utils/toolkit.py:accuracy_domain``), which is this with ``class_to_concept = label % C``.

    Args:
        confusion: ``M[i, j]``, test samples of label i predicted as label j (the class-IL
            confusion matrix of :func:`alta.evaluate`).
        class_to_experience: The experience (domain) of every label.
        class_to_concept: The class every label stands for across domains.

    Returns:
        Per experience, the accuracy over the samples of its labels (NaN without samples).

    Raises:
        ShapeError: mappings without one entry per label.

    Shape:
        confusion: (C, C); class_to_experience, class_to_concept: (C,); returns T values.
    """
    M = _confusion(confusion)
    owner = np.asarray(class_to_experience).reshape(-1)
    concept = np.asarray(class_to_concept).reshape(-1)
    if owner.shape[0] != M.shape[0] or concept.shape[0] != M.shape[0]:
        raise ShapeError(f"class_to_experience ({owner.shape[0]}) and class_to_concept ({concept.shape[0]}) need one "
                         f"entry per class of the confusion matrix ({M.shape[0]})")
    right = (concept[:, None] == concept[None, :])  # (C, C): label j names label i's class
    out = []
    for t in range(int(owner.max()) + 1 if owner.size else 0):
        rows = owner == t
        total = M[rows].sum()
        out.append(float(100.0 * (M[rows] * right[rows]).sum() / total) if total > 0 else float("nan"))
    return out
