"""Comparison tables of finished runs and seed groups, the way papers tabulate class-IL / task-IL.

Each folder given is either one run (its ``summary.json``) or a seed group of
:func:`alta.run.seeds.run_seeds` (its ``aggregate.json``: mean ± sample std over the seeds).
Rows are compared only when they measure the same thing: the same protocol (``paper`` or
``reference``, dataset, number of experiences, classes per experience), the same class order and the same backbone weights
(name and fingerprint). Mixing them is refused unless asked (``allow_mixed=True``, ``alta report
--allow-mixed``), since a table of incomparable numbers reads as a comparison.

Metrics (Avg, Last, forgetting, BWT) are defined in :mod:`alta.metrics`. Under a Markdown table,
each run of a benchmark preset (:mod:`alta.run.presets`, the CLIP class-incremental suite) gets
the suite's curves per step (top-1 and top-5 on the classes seen so far, old / new / harmonic;
:mod:`alta.run.curves`) and, when it departs from its preset, its deviations.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..plugins import PluginOrigin
from .rundir import GROUP_FILE, read_group_file
from .summary import AGGREGATE_FORMAT, SUMMARY_FORMAT

__all__ = ["Row", "load_rows", "check_comparable", "training_differences", "plugin_lines", "deviation_notes",
           "format_markdown", "format_latex", "format_csv", "FORMATS", "COLUMNS", "MTIL_COLUMNS", "table_columns"]

SETTINGS = ("class_il", "task_il")
_LABELS = {"class_il": "class-IL", "task_il": "task-IL"}
# (metric key, column title) per setting
COLUMNS = (("avg_accuracy", "Avg"), ("last_accuracy", "Last"), ("forgetting", "Forget"), ("bwt", "BWT"))
# the columns of runs over multi-domain sequences (MTIL / X-TAIL, ZSCL's definitions)
MTIL_COLUMNS = (("mtil_transfer", "Transfer"), ("mtil_avg", "Avg"), ("mtil_last", "Last"))


def table_columns(rows: Sequence["Row"]) -> tuple[tuple[str, str], ...]:
    """The columns of a table of ``rows``: :data:`MTIL_COLUMNS` when every row is a run over a
    multi-domain sequence (Transfer, Avg and Last as ZSCL defines them), else :data:`COLUMNS`."""
    return MTIL_COLUMNS if rows and all("mtil_transfer" in row.source for row in rows) else COLUMNS


@dataclass(frozen=True)
class Row:
    """One line of a comparison: a run or a seed group.

    Attributes:
        label: The folder's name.
        kind: ``"run"`` or ``"seeds"``.
        source: The summary or aggregate read.
        values: ``values[setting][metric] = (mean, std or None)``.
    """

    label: str
    kind: str
    source: dict[str, Any]
    values: dict[str, dict[str, tuple[float | None, float | None]]]

    @property
    def protocol(self) -> tuple:
        s = self.source
        return (s.get("protocol"), s.get("dataset"), s.get("num_experiences"),
                tuple(s.get("classes_per_experience") or ()))

    @property
    def class_order(self) -> tuple:
        return tuple(self.source.get("class_names") or ())

    @property
    def weights(self) -> tuple:
        backbone = self.source.get("backbone") or {}
        return (backbone.get("name"), backbone.get("fingerprint"))


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _values(path: Path, data: Any, *, kind: str) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """``values[setting][metric]`` of a run's ``summary.json`` (``kind="run"``) or a seed group's
    ``aggregate.json`` (``"seeds"``): every column of :data:`COLUMNS` for both settings, and the
    :data:`MTIL_COLUMNS` the file has.

    Raises:
        ConfigError: a file of another format, or one that lacks a column or holds a value that is
            not a number (written by another program or version, or edited), naming the key.
    """
    expected = SUMMARY_FORMAT if kind == "run" else AGGREGATE_FORMAT
    what = "run summary" if kind == "run" else "seed-group aggregate"
    redo = ("rerun it" if kind == "run" else "rerun the seed group (alta run --seeds ...)") + \
        " with this version of alta, or restore the file"
    got = data.get("format") if isinstance(data, dict) else f"a JSON {type(data).__name__}"
    if got != expected:
        raise ConfigError(f"{path} is not an alta {what} (expected format {expected!r}, got {got!r}); {redo}")
    values: dict[str, dict[str, tuple[float | None, float | None]]] = {s: {} for s in SETTINGS}
    for metric, _ in COLUMNS + MTIL_COLUMNS:
        if metric not in data and (metric, _) in MTIL_COLUMNS:
            continue
        for setting in SETTINGS:
            entry = data.get(metric)
            entry = entry.get(setting, KeyError) if isinstance(entry, dict) else KeyError
            if kind == "seeds":
                entry = (entry.get("mean", KeyError), entry.get("std")) if isinstance(entry, dict) else (KeyError, None)
            else:
                entry = (entry, None)
            if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in entry):
                shown = "missing" if KeyError in entry else f"{entry[0]!r}"
                field = f"{metric}.{setting}" + (".mean" if kind == "seeds" else "")
                raise ConfigError(f"{path}: {field} is {shown}; expected a number (or null) in an alta {what}. "
                                  f"The file was edited or written by another version of alta: {redo}")
            values[setting][metric] = entry
    return values


def load_rows(folders: Sequence[str | Path]) -> list[Row]:
    """A :class:`Row` per folder: a seed group when it holds ``aggregate.json``, a run's
    ``summary.json``, or for a run group's folder (``group.json``) a row per member.

    Raises:
        ConfigError: no folder, a missing folder, a folder with none of these files (or an
            unfinished run), a file that is not alta's or lacks a column of the table.
    """
    if not folders:
        raise ConfigError("alta report needs at least one run or seed-group folder")
    seen: dict[Path, str] = {}
    for folder in map(Path, folders):
        if folder.resolve() in seen:
            raise ConfigError(f"{folder} is listed twice ({seen[folder.resolve()]} and {folder}); give each run once")
        seen[folder.resolve()] = str(folder)
    rows = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ConfigError(f"{folder}: {'a file' if folder.exists() else 'no such folder'}; pass the folder of a "
                              f"finished `alta run` (the one holding its summary.json), of a seed group or of a run "
                              f"group")
        if (folder / GROUP_FILE).is_file() and not (folder / "summary.json").is_file():
            rows += load_rows(read_group_file(folder))  # members are plain folder names: no recursion into itself
        elif (folder / "aggregate.json").is_file():
            data = _read(folder / "aggregate.json")
            rows.append(Row(folder.name, "seeds", data, _values(folder / "aggregate.json", data, kind="seeds")))
        elif (folder / "summary.json").is_file():
            data = _read(folder / "summary.json")
            if isinstance(data, dict) and data.get("format") == SUMMARY_FORMAT and data.get("complete") is not True:
                raise ConfigError(f"{folder}: the run is not complete; finish it with `alta run --resume {folder}`")
            values = _values(folder / "summary.json", data, kind="run")
            rows.append(Row(folder.name, "run", data, values))
        elif (folder / "config.yaml").is_file():
            raise ConfigError(f"{folder}: the run is not finished (no summary.json yet); finish it with "
                              f"`alta run --resume {folder}`")
        else:
            raise ConfigError(f"{folder} holds neither summary.json (a finished `alta run`), aggregate.json (an "
                              f"`alta run --seeds ...` group) nor group.json (an `alta run --method a,b` group); pass "
                              f"the folder of a run, of a seed group or of a run group")
    return rows


def _names(names: tuple, shown: int = 4) -> str:
    """A class order for a message: its first names and its length."""
    return "classes " + ", ".join(map(str, names[:shown])) + (", ..." if len(names) > shown else "") + f" ({len(names)})"


def check_comparable(rows: Sequence[Row], *, allow_mixed: bool = False) -> list[str]:
    """Check that the rows measure the same thing.

    Returns:
        The differences found (empty when comparable); with ``allow_mixed`` they are returned
        for a note under the table instead of refused.

    Raises:
        ConfigError: rows of different protocols, class orders or backbone weights, without
            ``allow_mixed``.
    """
    problems = []
    for name, key in (("protocol (paper/reference, dataset, experiences, classes per experience)", "protocol"),
                      ("class order (the class names in the order learned)", "class_order"), ("backbone weights (name, fingerprint)", "weights")):
        groups: dict[tuple, list[str]] = {}
        for row in rows:
            groups.setdefault(getattr(row, key), []).append(row.label)
        if len(groups) > 1:
            described = "; ".join(f"{', '.join(labels)}: {value if key != 'class_order' else _names(value)}"
                                  for value, labels in groups.items())
            problems.append(f"different {name}: {described}")
    if problems and not allow_mixed:
        raise ConfigError("these runs are not comparable: " + " | ".join(problems)
                          + ". Compare runs of one protocol, class order and backbone, or pass --allow-mixed to "
                            "tabulate them anyway (the table then says so)")
    return problems


_TRAINING_KEYS = (("epochs", "epochs per experience"), ("iterations", "iterations per experience"), ("train_cache", "train_cache"), ("schedule", "schedule"),
                  ("head", "head"))


def training_differences(rows: Sequence[Row]) -> list[str]:
    """The training settings in which comparable rows differ (not columns of the table, so said
    under it): epochs per experience, cache mode, schedule mode, head (as their summaries record
    them; a setting some rows do not record is not compared)."""
    notes = []
    for key, what in _TRAINING_KEYS:
        if any(row.source.get(key) is None for row in rows):
            continue
        groups: dict[str, list[str]] = {}
        for row in rows:
            groups.setdefault(str(row.source.get(key)), []).append(row.label)
        if len(groups) > 1:
            notes.append(f"the runs differ in {what}: "
                         + "; ".join(f"{value} ({', '.join(labels)})" for value, labels in groups.items()))
    return notes


def plugin_lines(rows: Sequence[Row]) -> list[str]:
    """What plug-in code produced the rows (their summaries' ``plugins``), one line per plug-in
    and version: ``method 'linear_probe': --import examples/linear_probe.py, sha256 3f2a... (rows a, b)``."""
    seen: dict[tuple, list[str]] = {}
    described: dict[tuple, str] = {}
    for row in rows:
        for record in row.source.get("plugins") or []:
            origin = PluginOrigin.from_record(record)
            key = (record.get("kind"), record.get("name"), tuple(sorted(origin.identity().items())))
            seen.setdefault(key, []).append(row.label)
            described[key] = f"{record.get('kind')} {record.get('name')!r}: {origin.describe()}"
    return [f"{described[key]} ({', '.join(labels)})" for key, labels in seen.items()]


def deviation_notes(rows: Sequence[Row]) -> list[str]:
    """What each row's run changed from the protocol it names (its summary's
    ``protocol_deviations``: data limits, split, class order, names, templates, weights, ...),
    rows with the same changes on one line, so a table never credits a protocol with a number it
    did not produce."""
    groups: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        deviations = row.source.get("protocol_deviations") or {}
        if deviations:
            text = "; ".join(f"{name} {_brief(d.get('config'))} (protocol: {_brief(d.get('protocol'))})"
                             for name, d in deviations.items())
            groups.setdefault((str(row.source.get("protocol")), text), []).append(row.label)
    return [f"{', '.join(labels)} {'does' if len(labels) == 1 else 'do'} not follow protocol {protocol}: {text}"
            for (protocol, text), labels in groups.items()]


def _brief(value: Any, limit: int = 5) -> str:
    """A config value for a note: long lists and mappings shortened (``[3, 1, 4, 1, 5, ... (100)]``)."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)) and len(value) > limit:
        return f"[{', '.join(map(str, value[:limit]))}, ... ({len(value)})]"
    if isinstance(value, dict) and len(value) > limit:
        return "{" + ", ".join(f"{k}: {v}" for k, v in list(value.items())[:limit]) + f", ... ({len(value)})}}"
    return str(value)


def _cell(value: tuple[float | None, float | None], *, pm: str) -> str:
    mean, std = value
    if mean is None:
        return "-"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} {pm} {std:.1f}"


def _describe(row: Row) -> tuple[str, str, str]:
    s = row.source
    seeds = ",".join(str(x) for x in s["seeds"]) if row.kind == "seeds" else str(s.get("seed"))
    return s.get("method", "?"), str(s.get("buffer_size", "?")), seeds


def format_markdown(rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """A Markdown table: one row per run or group, Avg / Last / Forget / BWT for class-IL and
    task-IL (mean ± std for seed groups); runs over multi-domain sequences: Transfer / Avg / Last
    (:func:`table_columns`)."""
    columns = table_columns(rows)
    head = ["run", "method", "buffer", "seeds"] + [f"{_LABELS[s]} {title}" for s in SETTINGS for _, title in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|"]
    for row in rows:
        cells = [row.label, *_describe(row)] + [_cell(row.values[s][m], pm="±") for s in SETTINGS for m, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _footer(rows, notes)
    lines += curves_markdown(rows)
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def curves_markdown(rows: Sequence[Row]) -> list[str]:
    """Per run of a preset, the suite's curves after each step as a small Markdown table (top-1 and
    top-5 on the classes seen so far, old, new, harmonic), with Avg and Last; nothing for other rows."""
    out = []
    for row in rows:
        curves = row.source.get("curves") if row.kind == "run" and row.source.get("preset") else None
        if not curves or not curves.get("top1"):
            continue
        steps = len(curves["top1"])
        out += ["", f"**{row.label}**: accuracy (%) after each step on all classes seen so far"
                    + (f" (Avg {_pct(curves.get('avg'))}, Last {_pct(curves.get('last'))})" if curves.get("avg") is not None
                       else ""),
                "", "| after step | " + " | ".join(str(t + 1) for t in range(steps)) + " |",
                "|---|" + "---:|" * steps]
        for key, label in (("top1", "top-1"), ("top5", "top-5"), ("old", "old classes"), ("new", "new classes"),
                           ("harmonic", "harmonic mean")):
            out.append(f"| {label} | " + " | ".join(_pct(v) for v in curves.get(key) or [None] * steps) + " |")
        deviations = row.source.get("preset_deviations") or {}
        preset = row.source.get("preset") or {}
        if deviations:
            out += ["", f"NOTE: {row.label} departs from the preset {preset.get('name')} in "
                        + "; ".join(f"{k} {v['config']!r} (preset {v['preset']!r})" for k, v in deviations.items())]
    return out


def _footer(rows: Sequence[Row], notes: Sequence[str]) -> list[str]:
    first = rows[0].source
    out = ["", f"{first.get('dataset')}, {first.get('num_experiences')} experiences; accuracies in %, "
               f"seed groups as mean ± sample std."]
    if table_columns(rows) is MTIL_COLUMNS:
        out.append("Multi-domain sequence: Transfer, Avg and Last over the full T x T matrix as ZSCL defines them "
                   "(task-IL: MTIL, each image among its own dataset's classes; class-IL: X-TAIL, among every "
                   "dataset's classes).")
    out += [f"NOTE (--allow-mixed): {note}" for note in notes]
    out += [f"NOTE: {note}" for note in training_differences(rows)]
    out += [f"Plug-in code: {line}" for line in plugin_lines(rows)]
    out += [f"NOTE: {note}" for note in deviation_notes(rows)]
    if any(not r.source.get("pretrained") for r in rows):
        out.append("NOTE: random-weight backbone(s): these numbers only show that the pipeline runs.")
    return out


def format_latex(rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """The same table as a LaTeX ``tabular`` (booktabs rules)."""
    def tex(text: str) -> str:
        return text.replace("_", r"\_").replace("%", r"\%")

    columns = table_columns(rows)

    spec = "llrl" + "r" * (2 * len(columns))
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(["", "", "", ""] + [rf"\multicolumn{{{len(columns)}}}{{c}}{{{_LABELS[s]}}}" for s in SETTINGS])
             + r" \\",
             " & ".join(["run", "method", "buffer", "seeds"] + [title for _ in SETTINGS for _, title in columns])
             + r" \\", r"\midrule"]
    for row in rows:
        cells = [tex(row.label), *map(tex, _describe(row))]
        cells += [_cell(row.values[s][m], pm=r"$\pm$") for s in SETTINGS for m, _ in columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"] + [f"% {line}" for line in _footer(rows, notes) if line]
    return "\n".join(lines)


def format_csv(rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """The table as CSV, with separate mean and std columns."""
    columns = table_columns(rows)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["run", "kind", "method", "buffer", "seeds"]
                    + [f"{s}_{m}_{part}" for s in SETTINGS for m, _ in columns for part in ("mean", "std")])
    for row in rows:
        values = [("" if v is None else v) for s in SETTINGS for m, _ in columns for v in row.values[s][m]]
        writer.writerow([row.label, row.kind, *_describe(row), *values])
    return text.getvalue()


FORMATS = {"markdown": format_markdown, "latex": format_latex, "csv": format_csv}
