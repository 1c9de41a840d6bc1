"""What a loop over a stream returns: the accuracy matrices and the records of a run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["StreamResult"]


@dataclass
class StreamResult:
    """Accuracy matrices and evaluation records of a run over a stream.

    Attributes:
        class_il: R[t, k] class-IL accuracy (%) on experience k after experience t, (T, T);
            NaN where not measured. With separate evaluation experiences (the joint upper
            bound) it is (T, K): T training experiences, K evaluation experiences.
        task_il: The same for task-IL.
        evaluations: One record per evaluation (``experience``, ``epoch``, the
            :class:`~alta.loop.evaluation.EvaluationResult` as a dict, and the epoch's loss).
        history: Per-epoch training statistics, one list per experience begun (the list of the
            current experience grows epoch by epoch).
        confusion: The class-IL confusion matrix of the evaluation at the end of each experience
            (over the test samples of every experience of the stream; rows: true class, columns:
            predicted), or ``None`` where not measured. See :mod:`alta.metrics` for per-class
            and old/new-class accuracies.

    Shape:
        class_il, task_il: (T, T); confusion: T entries of (C, C) int64.
    """

    class_il: np.ndarray
    task_il: np.ndarray
    evaluations: list[dict] = field(default_factory=list)
    history: list[list[dict]] = field(default_factory=list)
    confusion: list[np.ndarray | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = self.class_il.shape[0] - len(self.confusion)
        if missing > 0:  # e.g. restored from a checkpoint that did not keep them
            self.confusion = list(self.confusion) + [None] * missing

    @classmethod
    def empty(cls, num_experiences: int, num_eval_experiences: int | None = None) -> "StreamResult":
        """NaN matrices of shape (T, K), K = ``num_eval_experiences`` (T when omitted)."""
        columns = num_experiences if num_eval_experiences is None else num_eval_experiences
        nan = np.full((num_experiences, columns), np.nan)
        return cls(class_il=nan.copy(), task_il=nan.copy())
