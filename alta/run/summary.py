"""Results of ``alta run``: the summary dict, the printed table and the plots.

The summary (``summary.json``) holds the class-IL and task-IL accuracy matrices of a run of ALTA
(Li et al., IEEE TMM 2023) and the metrics of :mod:`alta.metrics` computed from them: average
accuracy (Avg), last accuracy (Last), forgetting (Chaudhry et al., ECCV 2018), backward and
forward transfer (Lopez-Paz & Ranzato, NeurIPS 2017; the FWT baseline is zero-shot CLIP on the
same backbone), plus everything needed to tell two runs apart: configuration name, method and
its formula, backbone (and whether it is pretrained), head, seed, wall time, peak memory, device
and package versions.

A run over a multi-domain sequence (MTIL, X-TAIL; :class:`~alta.data.MultiDomainStream`) also
gets the field's metrics of its full T x T matrices (:func:`alta.metrics.mtil_summary`, ZSCL's
definitions): ``mtil`` (Transfer, Avg, Last and their per-dataset values, per setting, and those
of zero-shot CLIP), ``mtil_transfer`` / ``mtil_avg`` / ``mtil_last`` (per setting, the shape of
``avg_accuracy``); task-IL is MTIL's setting, class-IL X-TAIL's. A domain-incremental stream
adds ``domain_il`` (its accuracy matrix counted from the confusion matrices,
:func:`alta.metrics.domain_il_accuracy`).
"""

from __future__ import annotations

import functools
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

from .. import metrics
from ..errors import ConfigError, OutputError
from ..io import atomic_write
from .curves import CURVES_PLOT, curves_lines, curves_plot, seen_class_curves
from .presets import describe_preset, preset_deviations, preset_owned
from .protocols import protocol_deviations

logger = logging.getLogger(__name__)

__all__ = ["SUMMARY_FORMAT", "AGGREGATE_FORMAT", "aggregate_summaries", "save_aggregate_plot", "CONFUSION_NAME",
           "PLOT_FILES", "CONFUSION_PLOT", "CURVES_PLOT", "build_summary", "seen_class_curves", "save_confusion", "load_last_confusion", "experience_end_metrics", "format_table", "save_plots",
           "environment", "peak_memory", "random_backbone_note"]

SUMMARY_FORMAT = "alta.run-summary"
CONFUSION_NAME = "confusion.npz"  # the class-IL confusion matrix after each experience (int32, compressed)
PLOT_FILES = ("accuracy_matrix.png", "accuracy_curve.png")  # what save_plots always writes
CONFUSION_PLOT = "confusion_matrix.png"  # what save_plots writes with a confusion matrix
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
    parameters: dict[str, int] | None = None,
    determinism: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The contents of ``summary.json``.

    Args:
        config: The :class:`~alta.run.config.RunConfig`.
        result: The complete :class:`alta.StreamResult`.
        zeroshot: Zero-shot CLIP accuracy per experience, per setting (the FWT baseline), or ``None``.
        backbone: ``backbone.describe()``.
        method: The :class:`~alta.methods.MethodSpec` (or a plug-in's :class:`~alta.methods.LearnerMethod`).
        stream_info: ``dataset``, ``num_experiences``, ``classes_per_experience``, ``split``,
            ``joint``, ``eval_classes_per_experience``, ``class_order``, ``class_order_source``,
            ``class_names``, ``class_names_source``, ``names_look_like_identifiers``,
            ``num_train``, ``num_test`` (:meth:`alta.run.experiment.Experiment.stream_info`).
        num_trainable_parameters: Trainable scalars of the learner.
        wall_time_s: Wall time of the run (all sessions).
        device: The device used.
        output_dir: Where the results are.
        buffer_size: Capacity of the buffer used (0: none).
        parameters: ``{"trainable": ..., "total": ...}`` (:func:`alta.loop.evaluation.parameter_counts`).
        determinism: PyTorch's determinism settings in force (:func:`alta.seeding.determinism_state`).

    Returns:
        A JSON-ready dict (NaN written as ``null``). A joint run's (1, K) matrices (K
        experiences of the sequential split) get Avg = Last = the mean of the row and no
        forgetting, BWT or FWT.
    """
    matrices = {"class_il": result.class_il, "task_il": result.task_il}
    joint = np.asarray(result.class_il).shape[0] != np.asarray(result.class_il).shape[1]
    per_setting = {
        s: _joint_metrics(matrices[s]) if joint else metrics.summarize(matrices[s],
                                                                       baseline=zeroshot[s] if zeroshot else None)
        for s in SETTINGS
    }
    headline_key = config.eval.il_setting.replace("-", "_")
    owned = preset_owned(config)  # a preset's settings: their departures are preset_deviations
    summary = {
        "format": SUMMARY_FORMAT,
        "version": 1,
        "complete": True,
        "config": config.name,
        "protocol": config.protocol,
        # a preset's settings are the benchmark's protocol: departures from them are preset_deviations
        "protocol_deviations": {k: v for k, v in protocol_deviations(
            config, split=stream_info.get("eval_classes_per_experience")).items() if k not in owned},
        "preset": describe_preset(config),
        "preset_deviations": preset_deviations(config),
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
        "iterations": config.train.iterations,
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
        **experience_end_metrics(result),
        **(multi_domain_metrics(result, stream_info, zeroshot) if stream_info.get("domains") else {}),
        "num_trainable_parameters": int(num_trainable_parameters),
        "parameters": parameters,
        "deterministic": determinism,
        # every sample of every training batch once per epoch (replayed buffer items not counted)
        "train_steps": sum(stats.get("steps", 0) for epochs in result.history for stats in epochs),
        "train_samples": sum(stats.get("samples", 0) for epochs in result.history for stats in epochs),
        "wall_time_s": float(wall_time_s),
        "peak_memory": peak_memory(device),
        **environment(device),
        "output_dir": str(output_dir),
    }
    plugins = config.plugins
    if plugins:  # the plug-in code that produced the results (package version or file hash)
        summary["plugins"] = plugins
    if "mtil" in summary:
        summary["headline"].update({f"mtil_{key}": summary[f"mtil_{key}"][headline_key] for key in MTIL_KEYS})
    return _clean(summary)


MTIL_KEYS = ("transfer", "avg", "last")


def multi_domain_metrics(result, stream_info: dict[str, Any], zeroshot: dict[str, list[float]] | None) -> dict:
    """The summary entries of a run over a multi-domain sequence (see the module docstring).

    Args:
        result: The complete :class:`alta.StreamResult` (full (T, T) matrices).
        stream_info: :meth:`alta.run.experiment.Experiment.stream_info` (``domains``,
            ``classes_per_experience``, ``class_to_concept`` for a domain-incremental stream).
        zeroshot: Zero-shot CLIP's accuracy per dataset and setting, or ``None``.

    Returns:
        ``mtil``, ``mtil_transfer``, ``mtil_avg``, ``mtil_last`` (and ``domain_il``).
    """
    matrices = {"class_il": result.class_il, "task_il": result.task_il}
    per_setting = {s: metrics.mtil_summary(matrices[s]) for s in SETTINGS}
    T = len(stream_info["domains"])
    block: dict[str, Any] = {"datasets": stream_info["domains"], **per_setting,
                             "definition": "ZSCL (Zheng et al., ICCV 2023) mtil/results.ipynb: Transfer = mean over "
                                           "datasets k >= 1 of mean_{t<k} R[t, k]; Avg = mean of R; Last = mean of "
                                           "R[T-1]"}
    if zeroshot:  # zero-shot CLIP learns nothing: every row is its one evaluation
        block["zeroshot"] = {s: metrics.mtil_summary([zeroshot[s]] * T) for s in SETTINGS}
    out = {"mtil": block, **{f"mtil_{key}": {s: per_setting[s][key] for s in SETTINGS} for key in MTIL_KEYS}}
    if stream_info.get("class_to_concept") is not None:
        owner = np.repeat(np.arange(T), stream_info["classes_per_experience"])
        rows = [metrics.domain_il_accuracy(m, owner, stream_info["class_to_concept"]) if m is not None
                else [float("nan")] * T for m in result.confusion]
        out["domain_il"] = {"accuracy_matrix": rows,
                            "last_accuracy": float(np.mean(rows[-1])) if rows else float("nan")}
    return out


def _joint_metrics(R) -> dict[str, Any]:
    """The summary entries of a joint run: one training experience evaluated on the K
    experiences of the sequential split, a (1, K) row (:func:`alta.metrics.summarize` takes
    square matrices only).

    Avg and Last are both the mean of the row (after the one training step every class has been
    seen, so Avg's mean over steps is that step's mean over experiences), the number a continual
    run's Last is compared with; forgetting, BWT and FWT need later steps and are NaN.

    Shape:
        R: (1, K).
    """
    row = np.asarray(R, dtype=float)[-1]
    mean = float(row.mean())
    return {"accuracy_after_each": [mean], "avg_accuracy": mean, "last_accuracy": mean,
            "forgetting": float("nan"), "bwt": float("nan"), "fwt": float("nan")}


def experience_end_metrics(result) -> dict[str, Any]:
    """Top-5, old/new-class and per-class accuracy from a result's end-of-experience evaluations.

    Returns:
        ``top5_accuracy``: class-IL top-5 accuracy on each experience after the last one, and its
        mean (``top5_mean``); ``old_new_accuracy``: ``{"old": [...], "new": [...]}`` after each
        experience (old ``None`` after the first); ``per_class_accuracy``: class-IL accuracy of
        every class after the last experience (from its confusion matrix, see ``confusion.npz``);
        ``curves``: the CLIP class-incremental suite's curves (:func:`seen_class_curves`).
    """
    ends = {r["experience"]: r for r in result.evaluations if "new_class_accuracy" in r}
    last = ends.get(max(ends)) if ends else None
    confusion = next((m for m in reversed(result.confusion) if m is not None), None)
    T = result.class_il.shape[0]
    return {
        "top5_accuracy": list(last["class_il_top5"]) if last and "class_il_top5" in last else None,
        "top5_mean": last.get("class_il_top5_mean") if last else None,
        "old_new_accuracy": {
            "old": [ends[t]["old_class_accuracy"] if t in ends else None for t in range(T)],
            "new": [ends[t]["new_class_accuracy"] if t in ends else None for t in range(T)],
        },
        "per_class_accuracy": metrics.per_class_accuracy(confusion).tolist() if confusion is not None else None,
        "curves": seen_class_curves(ends, T),
    }


def save_confusion(result, path: Path, *, parents: bool = True) -> Path | None:
    """Write the class-IL confusion matrix after each experience to ``path`` (``.npz``, int32,
    compressed: arrays ``after_experience_<t>``, (C, C) each); ``None`` when none was measured."""
    arrays = {f"after_experience_{t}": np.asarray(m, dtype=np.int32) for t, m in enumerate(result.confusion)
              if m is not None}
    if not arrays:
        return None
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()), parents=parents)


def load_last_confusion(path: Path) -> np.ndarray | None:
    """The class-IL confusion matrix after the last experience stored in ``path`` (written by
    :func:`save_confusion`), (C, C) int32; ``None`` when the file is absent.

    Raises:
        OutputError: the file cannot be read as such an archive (damaged or not alta's).
    """
    if not Path(path).is_file():
        return None
    try:
        with np.load(path) as archive:
            names = sorted((n for n in archive.files if n.startswith("after_experience_")),
                           key=lambda n: int(n.rsplit("_", 1)[1]))
            return archive[names[-1]] if names else None
    except (OSError, ValueError, KeyError) as exc:
        raise OutputError(f"cannot read the confusion matrices in {path}: {exc}; delete the file to go on "
                          "without the confusion plot") from exc


AGGREGATE_FORMAT = "alta.seed-aggregate"
# What an aggregate averages over seeds: per setting, these scalars and these per-experience lists.
AGGREGATED_SCALARS = ("avg_accuracy", "last_accuracy", "forgetting", "bwt", "fwt")
# Keys that must agree between the seeds of one group (only the seed may differ).
_GROUP_KEYS = ("protocol", "protocol_deviations", "dataset", "num_experiences", "classes_per_experience", "class_names",
               "method", "il_setting", "head", "buffer_size", "epochs", "train_cache", "schedule")


def _mean_std(values: list) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; ``None`` for one value) of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(finite) < len(values) or not finite:  # a seed without the value: not comparable
        return {"mean": None, "std": None, "n": len(finite)}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
            "n": len(finite)}


def aggregate_summaries(summaries: list[dict[str, Any]], *, run_dirs: list[str] | None = None) -> dict[str, Any]:
    """Mean ± sample standard deviation over the runs of one experiment with different seeds.

    Args:
        summaries: The ``summary.json`` of each seed's run (same configuration but the seed).
        run_dirs: Their folders, recorded in the aggregate.

    Returns:
        ``aggregate.json``'s contents: for each setting (``class_il``, ``task_il``) and each of
        Avg, Last, forgetting, BWT, FWT a ``{"mean", "std", "n"}``; the same per experience for
        the accuracies after the last experience (``last_row``) and after each experience
        (``accuracy_after_each``); the seeds and what the runs share.

    Raises:
        ConfigError: fewer than one summary, or runs that differ in more than their seed.
    """

    if not summaries:
        raise ConfigError("aggregate_summaries needs the summary of at least one run")
    first = summaries[0]
    for key in (*_GROUP_KEYS, "backbone", "plugins"):
        values = [s.get(key) if key != "backbone" else (s["backbone"].get("name"), s["backbone"].get("fingerprint"))
                  for s in summaries]
        if any(v != values[0] for v in values[1:]):
            raise ConfigError(f"the runs of a seed group must differ only in their seed, but their {key!r} differ: "
                              f"{values}")
    out: dict[str, Any] = {
        "format": AGGREGATE_FORMAT,
        "version": 1,
        "seeds": [s["seed"] for s in summaries],
        "num_runs": len(summaries),
        "run_dirs": list(run_dirs) if run_dirs is not None else [s.get("output_dir") for s in summaries],
        **{key: first.get(key) for key in _GROUP_KEYS},
        "config": first.get("config"),
        "formula": first.get("formula"),
        "backbone": first.get("backbone"),
        "pretrained": first.get("pretrained"),
    }
    if first.get("plugins"):  # the seeds ran the same plug-in code (their configs agree on it)
        out["plugins"] = first["plugins"]
    T = first["num_experiences"]
    for key in AGGREGATED_SCALARS:
        out[key] = {s: _mean_std([run[key][s] for run in summaries]) for s in SETTINGS}
    for key in (f"mtil_{k}" for k in MTIL_KEYS):  # runs over a multi-domain sequence
        if all(key in run for run in summaries):
            out[key] = {s: _mean_std([run[key][s] for run in summaries]) for s in SETTINGS}
    out["last_row"] = {s: [_mean_std([run["accuracy_matrix"][s][-1][k] for run in summaries]) for k in range(T)]
                       for s in SETTINGS}
    out["accuracy_after_each"] = {
        s: [_mean_std([run["accuracy_after_each"][s][t] for run in summaries]) for t in range(len(
            first["accuracy_after_each"][s]))] for s in SETTINGS}
    return _clean(out)


def save_aggregate_plot(aggregate: dict[str, Any], path: Path) -> Path | None:
    """Mean accuracy after each experience over the seeds, with a ± one-std band (``None``
    without matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        _no_matplotlib()
        return None
    figure = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for setting in SETTINGS:
        points = aggregate["accuracy_after_each"][setting]
        x = np.arange(1, len(points) + 1)
        mean = np.array([np.nan if p["mean"] is None else p["mean"] for p in points])
        std = np.array([0.0 if p["std"] is None else p["std"] for p in points])
        ax.plot(x, mean, marker="o", label=f"{_LABELS[setting]} (mean of {aggregate['num_runs']} seeds)")
        ax.fill_between(x, mean - std, mean + std, alpha=0.25)
    ax.set_xticks(np.arange(1, len(points) + 1))
    ax.set_ylim(0, 100)
    ax.set_xlabel("experiences learned")
    ax.set_ylabel("mean accuracy on seen experiences (%)")
    ax.set_title(f"{aggregate['method']} on {aggregate['dataset']}, seeds {aggregate['seeds']} (± 1 std)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(figure, path)


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
        f"{'/'.join(str(c) for c in sorted(set(summary['classes_per_experience'])))} "
        f"class{'es' if max(summary['classes_per_experience'], default=0) != 1 else ''}, "
        + (f"{summary['iterations']} iterations per experience in {summary['epochs']} rounds"
           if summary.get("iterations") else
           f"{summary['epochs']} epoch{'s' if summary['epochs'] != 1 else ''} per experience")
        + (f" (joint: evaluated on the {len(summary['eval_classes_per_experience'])} experiences of the "
           f"sequential split)" if summary.get("joint") else ""),
        f"class order {summary.get('class_order_source', 'native')}, class names from "
        f"{summary.get('class_names_source', 'dataset')}: {_names_preview(summary.get('class_names', []))}",
        f"method {summary['method']} ({summary['formula']}), head {summary['head']!r}, "
        f"buffer {summary['buffer_size'] or 'off'}, seed {summary['seed']}",
        f"backbone {backbone['name']} ({kind}, {backbone['input_resolution']} px), device {summary['device']['type']}, "
        f"wall time {summary['wall_time_s']:.1f} s",
        "",
        "Accuracy (%) on each experience after the last one",
    ]
    label_width = 18
    K = len(summary["accuracy_matrix"][headline][-1])  # K = T, or the sequential split of a joint run
    head = "setting".ljust(label_width) + "".join(f"{'exp ' + str(k + 1):>7}" for k in range(K))
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
                 f"Last = after the last (each experience's test set weighed equally), FWT against zero-shot CLIP")
    lines += curves_lines(summary.get("curves"), label_width, fmt=_fmt)
    lines += _preset_lines(summary)
    if summary.get("mtil"):
        lines += ["", *_mtil_lines(summary, headline, label_width)]
    if summary.get("names_look_like_identifiers"):
        lines += ["", "!! NOTE: the class names look like identifiers (WordNet ids or numbers): CLIP read prompts such "
                      "as 'a photo of a n01440764'. Give readable names: --class-names FILE (one name per line, or "
                      "'folder<TAB>name' lines such as Tiny-ImageNet's words.txt)"]
    if not summary["pretrained"]:
        bar = "!" * 100
        lines += ["", bar, "!! NOTE: " + random_backbone_note(backbone), bar]
    lines += ["", f"results: {summary['output_dir']}"]
    return "\n".join(lines)


def _preset_lines(summary: dict[str, Any]) -> list[str]:
    """The preset the run follows and where it departs from it; the split file it read."""
    lines = []
    split = summary.get("split_file")
    if split:
        what = split.get("name", split.get("kind"))
        lines += ["", f"train/test split: {split.get('kind')} {what}"
                      + (f" (SHA-256 {split['sha256'][:16]}...)" if split.get("sha256") else "")]
    preset = summary.get("preset")
    if not preset:
        return lines
    deviations = summary.get("preset_deviations") or {}
    if not deviations:
        return lines + [f"preset {preset['name']}: followed in every setting"]
    return lines + [f"!! preset {preset['name']}: this run departs from it in {len(deviations)} setting(s): "
                    + "; ".join(f"{k} {v['config']!r} (preset {v['preset']!r})" for k, v in deviations.items())]


def _mtil_lines(summary: dict[str, Any], headline: str, label_width: int) -> list[str]:
    """The MTIL / X-TAIL block of :func:`format_table`."""
    mtil = summary["mtil"]
    names = {"task_il": "task-IL (MTIL)", "class_il": "class-IL (X-TAIL)"}
    label_width = max(label_width, len(names["class_il"]) + 3)
    datasets = ", ".join(f"{k + 1} {name}" for k, name in enumerate(mtil["datasets"]))
    shots = f", {summary['shots']}-shot (seed {summary['shot_seed']})" if summary.get("shots") else ""
    lines = [f"Multi-domain metrics over the full {len(mtil['datasets'])} x {len(mtil['datasets'])} matrix (ZSCL's "
             f"definitions); experiences: {datasets}{shots}; prompts: {summary.get('text_templates', 'single')}",
             "setting".ljust(label_width) + "".join(f"{title:>10}" for title in ("Transfer", "Avg", "Last"))]
    for setting in ("task_il", "class_il"):
        mark = " *" if setting == headline else ""
        lines.append((names[setting] + mark).ljust(label_width)
                     + "".join("    " + _fmt(mtil[setting][key]) for key in MTIL_KEYS))
    for setting in ("task_il", "class_il"):
        if mtil.get("zeroshot"):
            lines.append(f"zero-shot {_LABELS[setting]}".ljust(label_width)
                         + "".join("    " + _fmt(mtil["zeroshot"][setting][key]) for key in MTIL_KEYS))
    lines.append("Transfer = accuracy on each dataset before it is learned (datasets 2..T), Avg = mean of the whole "
                 "matrix, Last = after the last dataset")
    if summary.get("domain_il"):
        lines.append(f"domain-IL (the right class in any domain), Last: {_fmt(summary['domain_il']['last_accuracy'])}")
    return lines


def _names_preview(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)})" if len(names) > limit else "")


@functools.lru_cache(maxsize=None)
def _no_matplotlib() -> None:
    """Say once per process that plots are skipped (a run group or seed group has many runs)."""
    logger.info("matplotlib is not installed: no plots (pip install 'alta[plot]' to get them)")


def save_plots(summary: dict[str, Any], output_dir: Path, *, confusion=None, parents: bool = True) -> list[Path]:
    """Accuracy-matrix heatmaps and accuracy after each experience, as PNG files
    (:data:`PLOT_FILES`); with ``confusion`` (C, C), the class-IL confusion matrix after the last
    experience too (``confusion_matrix.png``, rows normalised to the share of each true class);
    with the suite's curves in the summary, top-1 / top-5 on the classes seen so far and old /
    new / harmonic after each step (:data:`CURVES_PLOT`).

    Skipped (returns ``[]``, logged) when matplotlib is not installed.

    Args:
        summary: The contents of ``summary.json``.
        output_dir: Where the plots go.
        parents: Create ``output_dir`` if needed (``False`` in a run: its folder must exist).

    Returns:
        The files written.

    Raises:
        OutputError: a plot cannot be written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        _no_matplotlib()
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
        for t in range(matrix.shape[0]):
            for k in range(matrix.shape[1]):
                if T <= 12 and np.isfinite(matrix[t, k]):
                    ax.text(k, t, f"{matrix[t, k]:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if matrix[t, k] < 60 else "black")
        ax.set_xticks(range(matrix.shape[1]), [str(k + 1) for k in range(matrix.shape[1])])
        ax.set_yticks(ticks, tick_labels)
        ax.set_xlabel("evaluated on experience k")
        ax.set_ylabel("after training experience t")
        ax.set_title(f"{_LABELS[setting]} accuracy R[t, k] (%)")
    figure.colorbar(image, ax=list(axes), shrink=0.8)
    figure.suptitle(title)
    written.append(_save_figure(figure, Path(output_dir) / PLOT_FILES[0], parents=parents))

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
            values = np.asarray(zeroshot[setting], dtype=float)
            # zero-shot mean over the experiences seen so far (a joint run has seen them all)
            running = np.cumsum(values)[: len(x)] / x if len(values) == len(x) else np.full(len(x), values.mean())
            ax.plot(x, running, style, color="gray", label=f"zero-shot {_LABELS[setting]}")
    ax.set_xticks(x)
    ax.set_ylim(0, 100)
    ax.set_xlabel("experiences learned")
    ax.set_ylabel("mean accuracy on seen experiences (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    written.append(_save_figure(figure, Path(output_dir) / PLOT_FILES[1], parents=parents))
    if confusion is not None:
        written.append(_confusion_plot(np.asarray(confusion), summary.get("class_names"), title,
                                       Path(output_dir) / CONFUSION_PLOT, parents=parents))
    if summary.get("curves"):
        written.append(curves_plot(summary["curves"], title, Path(output_dir) / CURVES_PLOT, parents=parents))
    return written


def _confusion_plot(confusion: np.ndarray, class_names, title: str, path: Path, *, parents: bool = True) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    C = confusion.shape[0]
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, 100.0 * confusion / totals, np.nan)  # (C, C), % of each true class
    size = min(4.0 + 0.3 * C, 16.0)
    figure = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    image = ax.imshow(share, vmin=0, vmax=100, cmap="viridis")
    if C <= 20:
        labels = list(class_names) if class_names and len(class_names) == C else [str(c) for c in range(C)]
        ax.set_xticks(range(C), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(C), labels, fontsize=7)
        for i in range(C):
            for j in range(C):
                if confusion[i, j]:
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=6,
                            color="white" if share[i, j] < 60 else "black")
    ax.set_xlabel("predicted class (class-IL)")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion after the last experience\n{title}", fontsize=9)
    figure.colorbar(image, ax=ax, shrink=0.8, label="% of the true class")
    return _save_figure(figure, path, parents=parents)


def _save_figure(figure, path: Path, *, parents: bool = True) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write(path, lambda f: f.write(buffer.getvalue()), parents=parents)
