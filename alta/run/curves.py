"""The curves the CLIP class-incremental suite reports, for ``summary.json``, the printed table and
a plot: after each step, top-1 and top-5 accuracy on all classes seen so far, old-class and
new-class accuracy and their harmonic mean; Avg and Last of the top-1 curve.

PyCIL and PROOF compute them after each task on the test samples of every class seen so far,
predicting among those classes (alta's ``model.head: seen``); ``grouped`` accuracy splits the
samples into old classes (of earlier tasks) and new ones (of this task), with their harmonic
mean. Avg ("Average Accuracy") is the mean of the top-1 curve, Last its final value.

References:
    D.-W. Zhou et al., "PyCIL: A Python Toolbox for Class-Incremental Learning", 2023
    (``utils/toolkit.py`` ``accuracy``; ``trainer.py``: ``CNN top1 curve``, ``top5 curve``).
    D.-W. Zhou et al., "Learning without Forgetting for Vision-Language Models" (PROOF), TPAMI 2025.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import metrics
from ..io import atomic_write

__all__ = ["CURVES_PLOT", "seen_class_curves", "curves_lines", "curves_plot"]

CURVES_PLOT = "seen_class_curves.png"  # what save_plots writes when the summary has the suite's curves


def seen_class_curves(ends: dict[int, dict], num_experiences: int) -> dict[str, Any] | None:
    """The curves the CLIP class-incremental suite reports (PyCIL, PROOF), from the end-of-
    experience evaluations: after each step t, the top-1 and top-5 class-IL accuracy on the test
    samples of every class seen so far (sample-weighted, :func:`alta.metrics.seen_accuracy`),
    the old-class and new-class accuracy and their harmonic mean; Avg (the mean of the top-1
    curve) and Last (its final value), the suite's two headline numbers, and the same for top-5.

    Args:
        ends: ``{t: record}`` of the evaluation at the end of experience t (0-based), each with
            ``class_il`` and ``class_il_top5`` (per-experience accuracy in %, experiences seen so
            far), ``num_samples`` (test samples per experience) and ``old_class_accuracy`` /
            ``new_class_accuracy`` (%).
        num_experiences: T; a step without a record gives ``None`` in every curve.

    Returns:
        ``{"top1", "top5", "old", "new", "harmonic": [per step], "avg", "last", "avg_top5",
        "last_top5"}`` (``None`` where a step was not evaluated), or ``None`` when no step was.
    """
    if not ends:
        return None
    curves: dict[str, list] = {key: [] for key in ("top1", "top5", "old", "new", "harmonic")}
    for t in range(num_experiences):
        record = ends.get(t)
        if record is None:
            for values in curves.values():
                values.append(None)
            continue
        curves["top1"].append(metrics.seen_accuracy(record["class_il"], record["num_samples"]))
        top5 = record.get("class_il_top5")
        curves["top5"].append(metrics.seen_accuracy(top5, record["num_samples"]) if top5 else None)
        old, new = record.get("old_class_accuracy"), record.get("new_class_accuracy")
        curves["old"].append(old)
        curves["new"].append(new)
        curves["harmonic"].append(metrics.harmonic_mean(old, new))
    done = [v for v in curves["top1"] if v is not None]
    done5 = [v for v in curves["top5"] if v is not None]
    complete = len(done) == num_experiences
    return {**curves,
            "avg": float(np.mean(done)) if complete else None, "last": done[-1] if complete else None,
            "avg_top5": float(np.mean(done5)) if complete and len(done5) == len(done) else None,
            "last_top5": done5[-1] if complete and len(done5) == len(done) else None,
            "definition": "after each step, accuracy (%) on the test samples of all classes seen so far, "
                          "sample-weighted (PyCIL/PROOF's curves); old/new: classes of earlier steps / of this "
                          "step; harmonic = 2 old new / (old + new); avg = mean of the top-1 curve, last = its "
                          "final value"}


def curves_lines(curves: dict[str, Any] | None, width: int, *, fmt: Callable[..., str]) -> list[str]:
    """The suite's per-step curves as rows of the printed table (nothing without them)."""
    if not curves or not curves.get("top1"):
        return []
    steps = len(curves["top1"])
    head = "after step".ljust(width) + "".join(f"{t + 1:>7}" for t in range(steps))
    lines = ["", "Accuracy (%) after each step on all classes seen so far (the class-incremental suite's curves;",
             "old / new: classes of earlier steps / of this step, harmonic = 2 old new / (old + new))", head,
             "-" * len(head)]
    for key, label in (("top1", "top-1"), ("top5", "top-5"), ("old", "old classes"), ("new", "new classes"),
                       ("harmonic", "harmonic mean")):
        lines.append(label.ljust(width) + "".join(" " + fmt(v) for v in curves[key]))
    if curves.get("avg") is not None:
        lines.append(f"Avg (mean of the top-1 curve) {fmt(curves['avg'], 0).strip()}, Last {fmt(curves['last'], 0).strip()}"
                     + (f"; top-5 Avg {fmt(curves['avg_top5'], 0).strip()}, Last {fmt(curves['last_top5'], 0).strip()}"
                        if curves.get("avg_top5") is not None else ""))
        lines.append("(each test image weighed equally: the class-incremental suite's Avg / Last; the class-IL row "
                     "above weighs each experience equally, so the two differ when test sets differ in size)")
    return lines


def curves_plot(curves: dict[str, Any], title: str, path: Path, *, parents: bool = True) -> Path:
    """Top-1 / top-5 on the classes seen so far, and old / new / harmonic, after each step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    x = np.arange(1, len(curves["top1"]) + 1)
    styles = {"top1": ("top-1, seen classes", "-", "o"), "top5": ("top-5, seen classes", "-", "s"),
              "old": ("old classes", "--", "v"), "new": ("new classes", "--", "^"), "harmonic": ("harmonic mean", ":", "d")}
    for key, (label, line, marker) in styles.items():
        values = np.array([np.nan if v is None else v for v in curves.get(key, [])], dtype=float)
        if values.size and np.isfinite(values).any():
            ax.plot(x, values, line, marker=marker, label=label)
    ax.set_xticks(x)
    ax.set_ylim(0, 100)
    ax.set_xlabel("step (experiences learned)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title + (f"\nAvg {curves['avg']:.1f}, Last {curves['last']:.1f}" if curves.get("avg") is not None
                          else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write(path, lambda f: f.write(buffer.getvalue()), parents=parents)
