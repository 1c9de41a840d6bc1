"""Results of ``alta run``: the summary dict, the printed table and the plots.

The summary (``summary.json``) holds the class-IL and task-IL accuracy matrices of a run of ALTA
(Li et al., IEEE TMM 2023) and the metrics of :mod:`alta.metrics` computed from them: average
accuracy (Avg), last accuracy (Last), forgetting (Chaudhry et al., ECCV 2018), backward and
forward transfer (Lopez-Paz & Ranzato, NeurIPS 2017; the FWT baseline is zero-shot CLIP on the
same backbone), plus everything needed to tell two runs apart: configuration name, method and
its formula, backbone (and whether it is pretrained), head, seed, wall time, peak memory, device
and package versions.
"""

from __future__ import annotations

import io
import logging
import math
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import metrics
from .io import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["SUMMARY_FORMAT", "build_summary", "format_table", "save_plots", "environment", "peak_memory",
           "random_backbone_note"]

SUMMARY_FORMAT = "alta.run-summary"
SETTINGS = ("class_il", "task_il")
_LABELS = {"class_il": "class-IL", "task_il": "task-IL"}


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become ``None``, NumPy scalars Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def environment(device: torch.device) -> dict[str, Any]:
    """Package versions and the device, for results files."""
    versions = {}
    for package in ("alta", "torch", "torchvision", "clip-anytorch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    info: dict[str, Any] = {"type": device.type, "threads": torch.get_num_threads(), "platform": platform.platform()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["name"] = platform.processor() or platform.machine()
    return {"versions": versions, "device": info}


def peak_memory(device: torch.device) -> dict[str, float | None]:
    """Peak resident memory of this process (CPU, MiB) and peak CUDA memory allocated (MiB)."""
    cpu = None
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = rss / 1024.0 if sys.platform != "darwin" else rss / 2**20  # KiB on Linux, bytes on macOS
    except (ImportError, OSError):  # pragma: no cover - Windows
        pass
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"cpu_maxrss_mib": cpu, "cuda_max_allocated_mib": cuda}


def build_summary(
    *,
    config,
    result,
    zeroshot: dict[str, list[float]] | None,
    backbone: dict[str, Any],
    method,
    stream_info: dict[str, Any],
    num_trainable_parameters: int,
    wall_time_s: float,
    device: torch.device,
    output_dir: Path,
    buffer_size: int,
) -> dict[str, Any]:
    """The contents of ``summary.json``.

    Args:
        config: The :class:`~alta.experiment.RunConfig`.
        result: The complete :class:`alta.StreamResult`.
        zeroshot: Zero-shot CLIP accuracy per experience, per setting (the FWT baseline), or ``None``.
        backbone: ``backbone.describe()``.
        method: The :class:`~alta.methods.MethodSpec`.
        stream_info: ``dataset``, ``num_experiences``, ``classes_per_experience``, ``class_names``,
            ``num_train``, ``num_test``.
        num_trainable_parameters: Trainable scalars of the learner.
        wall_time_s: Wall time of the run (all sessions).
        device: The device used.
        output_dir: Where the results are.
        buffer_size: Capacity of the buffer used (0: none).

    Returns:
        A JSON-ready dict (NaN written as ``null``).
    """
    matrices = {"class_il": result.class_il, "task_il": result.task_il}
    per_setting = {
        s: metrics.summarize(matrices[s], baseline=zeroshot[s] if zeroshot else None) for s in SETTINGS
    }
    headline_key = config.eval.il_setting.replace("-", "_")
    summary = {
        "format": SUMMARY_FORMAT,
        "version": 1,
        "complete": True,
        "config": config.name,
        **stream_info,
        "method": method.name,
        "formula": method.formula,
        "il_setting": config.eval.il_setting,
        "head": config.model.head,
        "backbone": backbone,
        "pretrained": bool(backbone.get("pretrained")),
        "seed": config.seed,
        "buffer_size": buffer_size,
        "epochs": config.train.epochs,
        "train_cache": config.train.train_cache,
        "schedule": config.train.schedule,
        "accuracy_matrix": {s: matrices[s] for s in SETTINGS},
        "accuracy_after_each": {s: per_setting[s]["accuracy_after_each"] for s in SETTINGS},
        **{key: {s: per_setting[s][key] for s in SETTINGS}
           for key in ("avg_accuracy", "last_accuracy", "forgetting", "bwt", "fwt")},
        "zeroshot_accuracy": zeroshot,
        "headline": {
            "setting": config.eval.il_setting,
            **{key: per_setting[headline_key][key] for key in ("avg_accuracy", "last_accuracy", "forgetting")},
        },
        "num_trainable_parameters": int(num_trainable_parameters),
        # every sample of every training batch once per epoch (replayed buffer items not counted)
        "train_steps": sum(stats.get("steps", 0) for epochs in result.history for stats in epochs),
        "train_samples": sum(stats.get("samples", 0) for epochs in result.history for stats in epochs),
        "wall_time_s": float(wall_time_s),
        "peak_memory": peak_memory(device),
        **environment(device),
        "output_dir": str(output_dir),
    }
    return _clean(summary)


def random_backbone_note(backbone: dict[str, Any]) -> str:
    """The warning printed for a backbone with random weights."""
    return (
        f"backbone {backbone.get('name')!r} has RANDOM weights (not pretrained CLIP): these numbers only show "
        f"that the pipeline runs and are NOT comparable with the paper's. Use a pretrained backbone "
        f"(e.g. --visual RN50) for real results."
    )


def _fmt(value: Any, width: int = 6) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-".rjust(width)
    return f"{value:{width}.1f}"


def format_table(summary: dict[str, Any]) -> str:
    """A readable table of a summary: per-experience accuracies after the last experience, Avg,
    Last, forgetting, BWT and FWT for both settings (headline marked), zero-shot rows, and a loud
    note when the backbone is random."""
    T = summary["num_experiences"]
    headline = summary["il_setting"].replace("-", "_")
    backbone = summary["backbone"]
    kind = "pretrained" if summary["pretrained"] else "RANDOM weights"
    lines = [
        f"alta run {summary['config']!r}: {summary['dataset']}, {T} experience{'s' if T != 1 else ''} x "
        f"{'/'.join(str(c) for c in sorted(set(summary['classes_per_experience'])))} classes, "
        f"{summary['epochs']} epoch{'s' if summary['epochs'] != 1 else ''} per experience",
        f"method {summary['method']} ({summary['formula']}), head {summary['head']!r}, "
        f"buffer {summary['buffer_size'] or 'off'}, seed {summary['seed']}",
        f"backbone {backbone['name']} ({kind}, {backbone['input_resolution']} px), device {summary['device']['type']}, "
        f"wall time {summary['wall_time_s']:.1f} s",
        "",
        "Accuracy (%) on each experience after the last one",
    ]
    label_width = 18
    head = "setting".ljust(label_width) + "".join(f"{'exp ' + str(k + 1):>7}" for k in range(T))
    head += " |" + "".join(f"{name:>8}" for name in ("Avg", "Last", "Forget", "BWT", "FWT"))
    lines += [head, "-" * len(head)]
    for setting in SETTINGS:
        mark = " *" if setting == headline else ""
        row = (_LABELS[setting] + mark).ljust(label_width)
        last_row = summary["accuracy_matrix"][setting][-1]
        row += "".join(" " + _fmt(v) for v in last_row)
        row += " |" + "".join("  " + _fmt(summary[key][setting])
                              for key in ("avg_accuracy", "last_accuracy", "forgetting", "bwt", "fwt"))
        lines.append(row)
    zeroshot = summary.get("zeroshot_accuracy")
    if zeroshot:
        for setting in SETTINGS:
            values = zeroshot[setting]
            row = f"zero-shot {_LABELS[setting]}".ljust(label_width) + "".join(" " + _fmt(v) for v in values)
            row += " |" + "  " + _fmt(None) + "  " + _fmt(float(np.mean(values))) + ("  " + _fmt(None)) * 3
            lines.append(row)
    lines.append(f"* headline setting ({summary['il_setting']}); Avg = mean accuracy after each experience, "
                 f"Last = after the last, FWT against zero-shot CLIP")
    if not summary["pretrained"]:
        bar = "!" * 100
        lines += ["", bar, "!! NOTE: " + random_backbone_note(backbone), bar]
    lines += ["", f"results: {summary['output_dir']}"]
    return "\n".join(lines)


def save_plots(summary: dict[str, Any], output_dir: Path) -> list[Path]:
    """Accuracy-matrix heatmaps and accuracy after each experience, as PNG files.

    Skipped (returns ``[]``, logged) when matplotlib is not installed.

    Returns:
        The files written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.info("matplotlib is not installed: no plots (pip install 'alta[plot]' to get them)")
        return []
    written = []
    T = summary["num_experiences"]
    ticks = list(range(T))
    tick_labels = [str(k + 1) for k in ticks]
    title = f"{summary['method']} on {summary['dataset']} ({summary['backbone']['name']}" + (
        ")" if summary["pretrained"] else ", random weights)")

    figure = Figure(figsize=(4.2 * 2 + 1, 4.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax, setting in zip(axes, SETTINGS):
        matrix = np.array([[np.nan if v is None else v for v in row] for row in summary["accuracy_matrix"][setting]])
        image = ax.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
        for t in range(T):
            for k in range(T):
                if T <= 12 and np.isfinite(matrix[t, k]):
                    ax.text(k, t, f"{matrix[t, k]:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if matrix[t, k] < 60 else "black")
        ax.set_xticks(ticks, tick_labels)
        ax.set_yticks(ticks, tick_labels)
        ax.set_xlabel("evaluated on experience k")
        ax.set_ylabel("after training experience t")
        ax.set_title(f"{_LABELS[setting]} accuracy R[t, k] (%)")
    figure.colorbar(image, ax=list(axes), shrink=0.8)
    figure.suptitle(title)
    written.append(_save_figure(figure, output_dir / "accuracy_matrix.png"))

    figure = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    x = np.arange(1, T + 1)
    for setting in SETTINGS:
        values = [np.nan if v is None else v for v in summary["accuracy_after_each"][setting]]
        ax.plot(x, values, marker="o", label=_LABELS[setting])
    zeroshot = summary.get("zeroshot_accuracy")
    if zeroshot:
        for setting, style in zip(SETTINGS, ("--", ":")):
            running = np.cumsum(zeroshot[setting]) / x  # zero-shot mean over the experiences seen so far
            ax.plot(x, running, style, color="gray", label=f"zero-shot {_LABELS[setting]}")
    ax.set_xticks(x)
    ax.set_ylim(0, 100)
    ax.set_xlabel("experiences learned")
    ax.set_ylabel("mean accuracy on seen experiences (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    written.append(_save_figure(figure, output_dir / "accuracy_curve.png"))
    return written


def _save_figure(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
