"""The benchmark tables of alta as data: specs, the runs (cells) they need, and their aggregation.

A *table spec* (``benchmarks/tables/<name>.yaml``) names rows (a shipped config of ``alta list
configs`` plus dotted overrides), columns (datasets), the metrics shown, and the published numbers
printed beside ours, each with its source. A *scale* (``benchmarks/tables/scales.yaml``: ``smoke``,
``cpu``, ``full``) says how a cell becomes a run: backbone, data, epochs. :func:`plan_cells` turns
(table, scale, seeds) into :class:`Cell` s, each holding the resolved
:class:`~alta.cli.config.RunConfig` that :func:`alta.run.driver.run_experiment` runs; a cell is
keyed by :meth:`RunConfig.fingerprint` (the values that determine the results: device and data
location left out), so the same run is shared by every table that asks for it, is computed once,
and can be computed on another machine.

One JSON file per done cell (``<out>/cells/<key>.json``) holds the resolved config, the run's
summary, the backbone and whether it was pretrained, the data, the seed, versions, device and
time. :func:`build_table` aggregates cells over seeds (mean and sample standard deviation) into a
JSON-ready dict, :func:`render_markdown` writes it as Markdown with a header saying how it was
produced. Nothing here runs anything: ``benchmarks/run.py`` does.

ALTA: Li et al., "Cross-Modal Alternating Learning with Task-Aware Representations for Continual
Learning", IEEE TMM 2023 (reference code github.com/vijaylee/ALTA).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from alta import get_method
from alta.cli.config import RunConfig, apply_overrides, flatten, load_config, preset_config
from alta.data import DATASETS, SEQUENCES
from alta.data.datasets.cil_suite import SUITE
from alta.errors import ConfigError
from alta.run.config import is_operational

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TABLES_DIR = HERE / "tables"
TABLE_NAMES = ("main", "ablation", "backbones", "mtil", "cost", "cil-suite")
SCALE_NAMES = ("smoke", "cpu", "full")
CELL_FORMAT = "alta.benchmark-cell"
TABLE_FORMAT = "alta.benchmark-table"

# Folders tried under --data-root for each dataset, before --data-root itself. Never the
# Tiny-ImageNet *sample* of ../shared/data: it is not the benchmark.
DATA_FOLDERS = {
    "seq-cifar10": ("cifar10", "cifar-10", "CIFAR10"),
    "seq-cifar100": ("cifar100", "cifar-100", "CIFAR100"),
    "seq-tinyimagenet": ("tiny-imagenet-200",),
    # the CLIP class-incremental suite: its archives' folder names (the loaders also look inside them)
    **{spec.name: spec.folders for spec in SUITE.values()},
}


def _check_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(allowed))}")


# ----------------------------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A dataset column: ``configs`` is the suffix of the shipped configs (``il_{configs}``)."""

    key: str
    label: str
    dataset: str
    configs: str


@dataclass(frozen=True)
class Row:
    """A row: a shipped config (``{configs}`` filled per column) and the overrides that make it;
    ``config: preset`` starts from the suite's preset of the column's dataset and split
    (``cil-suite/{dataset}/{configs}``, :func:`alta.cli.config.preset_config`).

    ``deterministic`` rows (zero-shot CLIP: nothing is trained, the seed changes nothing) run the
    first seed only.
    """

    key: str
    label: str
    config: str
    set: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None
    group: str | None = None
    deterministic: bool = False


@dataclass(frozen=True)
class Metric:
    """A metric column: ``class_il.last``, ``task_il.forgetting``, ``cost.wall_time_s``, ..."""

    key: str
    label: str


@dataclass(frozen=True)
class MetricGroup:
    title: str
    metrics: tuple[Metric, ...]


@dataclass(frozen=True)
class Published:
    """A published number (or range, as text) per column and metric, with its source."""

    label: str
    backbone: str
    source: str
    note: str
    values: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    description: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    metric_groups: tuple[MetricGroup, ...]
    published: tuple[Published, ...] = ()
    info: tuple[str, ...] = ()
    from_tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetPlan:
    """What a scale does with a dataset column: run it, run a stand-in, or skip it; ``folder``: the
    stand-in's folder under ``--data-root`` (when its usual folder is not the one to read)."""

    run: bool = False
    stand_in: Mapping[str, Any] | None = None
    label: str | None = None
    skip: str | None = None
    folder: str | None = None


@dataclass(frozen=True)
class Scale:
    name: str
    description: str
    default_seeds: tuple[int, ...]
    isolate: bool
    reductions: tuple[str, ...]
    set: Mapping[str, Any]
    epochs_divisor: int
    backbones: Mapping[str, str]
    datasets: Mapping[str, DatasetPlan]

    def backbone(self, name: str) -> str:
        return self.backbones.get(name, self.backbones.get("*", name))


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def is_table_file(name: str) -> bool:
    """Whether ``name`` is the path of a table spec of one's own (a ``.yaml`` file) rather than
    the name of a shipped table."""
    return name.endswith((".yaml", ".yml")) and name not in TABLE_NAMES


@functools.lru_cache(maxsize=None)
def load_table(name: str) -> TableSpec:
    """Read ``benchmarks/tables/<name>.yaml``, or a table spec of one's own given as a path
    (``my_table.yaml``: rows of your methods, plug-ins included, beside ALTA's).

    Raises:
        ConfigError: unknown table or missing file, unknown keys (named), or rows without a config.
    """
    if is_table_file(name):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"table file {name} not found; give a shipped table ({', '.join(TABLE_NAMES)}) or the "
                              f"path of a table spec (see benchmarks/tables/ablation.yaml for the keys)")
    elif name not in TABLE_NAMES:
        raise ConfigError(f"unknown table {name!r}; tables: {', '.join(TABLE_NAMES)}, or the path of a table spec "
                          f"(.yaml)")
    else:
        path = TABLES_DIR / f"{name}.yaml"
    data = _read_yaml(path)
    _check_keys(data, ("name", "title", "description", "columns", "rows", "metric_groups", "published", "info",
                       "from_tables"), str(path))
    columns = []
    for c in data.get("columns") or []:
        _check_keys(c, ("key", "label", "dataset", "configs"), f"{path} column")
        columns.append(Column(**c))
    rows = []
    for r in data.get("rows") or []:
        _check_keys(r, ("key", "label", "config", "set", "note", "group", "deterministic"), f"{path} row")
        rows.append(Row(**{**r, "set": dict(r.get("set") or {})}))
    groups = []
    for g in data.get("metric_groups") or []:
        _check_keys(g, ("title", "metrics"), f"{path} metric group")
        groups.append(MetricGroup(g["title"], tuple(Metric(**m) for m in g["metrics"])))
    published = []
    for p in data.get("published") or []:
        _check_keys(p, ("label", "backbone", "source", "note", "values"), f"{path} published entry")
        published.append(Published(**p))
    keys = [r.key for r in rows]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{path}: row keys must be unique, got {keys}")
    return TableSpec(name=data["name"], title=data["title"], description=" ".join(str(data["description"]).split()),
                     columns=tuple(columns), rows=tuple(rows), metric_groups=tuple(groups),
                     published=tuple(published), info=tuple(data.get("info") or ()),
                     from_tables=tuple(data.get("from_tables") or ()))


def load_scales() -> dict[str, Scale]:
    """Read ``benchmarks/tables/scales.yaml``."""
    path = TABLES_DIR / "scales.yaml"
    data = _read_yaml(path)
    scales = {}
    for name, s in data.items():
        _check_keys(s, ("description", "default_seeds", "isolate", "reductions", "set", "epochs_divisor", "backbones",
                        "datasets"), f"{path} scale {name!r}")
        datasets = {}
        for key, d in (s.get("datasets") or {}).items():
            _check_keys(d, ("run", "stand_in", "label", "skip", "folder"), f"{path} scale {name!r} dataset {key!r}")
            datasets[key] = DatasetPlan(**d)
        scales[name] = Scale(
            name=name, description=" ".join(str(s["description"]).split()),
            default_seeds=tuple(s.get("default_seeds") or (0,)), isolate=bool(s.get("isolate", True)),
            reductions=tuple(s.get("reductions") or ()), set=dict(s.get("set") or {}),
            epochs_divisor=int(s.get("epochs_divisor", 1)), backbones=dict(s.get("backbones") or {}),
            datasets=datasets,
        )
    return scales


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One run a table needs: (table, row, column, seed) and its resolved config.

    ``config`` is ``None`` when the scale does not run this column (``skip`` says why).
    ``stand_in`` describes a replacement dataset (smoke scale). ``key`` is the fingerprint of the
    resolved config (``None`` when skipped).
    """

    table: str
    row: str
    column: str
    seed: int
    config: RunConfig | None
    skip: str | None = None
    stand_in: str | None = None
    key: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", None if self.config is None else self.config.fingerprint())

    @property
    def name(self) -> str:
        return f"{self.table}/{self.row}/{self.column}/seed {self.seed}"


def resolve_data_root(dataset: str, data_root: Path | None) -> str | None:
    """The ``data.root`` of a dataset: the first of its usual folder names under ``data_root``
    (``cifar10/``, ``cifar100/``, ``tiny-imagenet-200/``), else ``data_root`` itself; for a
    multi-domain sequence, ``data_root`` (each of its datasets is found under it)."""
    if data_root is not None and dataset in SEQUENCES and dataset not in DATASETS:
        return str(data_root) if any(e.fallback != "none" for e in SEQUENCES.get(dataset).entries) else None
    if data_root is None or dataset not in DATA_FOLDERS:
        return None
    for name in DATA_FOLDERS[dataset]:
        if (data_root / name).is_dir():
            return str(data_root / name)
    return str(data_root)


def cell_config(spec: TableSpec, row: Row, column: Column, scale: Scale, *, seed: int, device: str,
                data_root: Path | None, weights_dir: str | None = None, offline: bool = False,
                num_workers: int | None = None) -> tuple[RunConfig, str | None]:
    """The resolved config of one cell at a scale, and the stand-in description (or ``None``).

    Order: the shipped config, the row's overrides, epochs divided by the scale's divisor, the
    scale's overrides, its backbone substitution, its stand-in dataset, then seed, device and data
    location (the last two are operational: not part of the cell's key).
    """
    config = (preset_config(f"cil-suite/{column.dataset}/{column.configs}") if row.config == "preset"
              else load_config(row.config.format(configs=column.configs)))
    # a column of a multi-domain sequence (mtil-order2) runs its sequence with the row's config
    column_data = ({"data.dataset": column.dataset} if column.dataset in SEQUENCES and column.dataset not in DATASETS
                   and column.dataset != config.data.dataset else {})
    config = apply_overrides(config, {"name": f"{spec.name}-{row.key}-{column.key}".replace("/", "-"), **column_data,
                                      **row.set})
    overrides: dict[str, Any] = {}
    if scale.epochs_divisor != 1:
        overrides["train.epochs"] = max(1, round(config.train.epochs / scale.epochs_divisor))
    overrides.update(scale.set)
    overrides["model.visual"] = scale.backbone(config.model.visual)
    if overrides["model.visual"] != config.model.visual and config.model.pretrained is not None:
        overrides["model.pretrained"] = None  # the weights belong to the backbone replaced
    plan = scale.datasets.get(column.key, DatasetPlan(run=True))
    stand_in = None
    if plan.stand_in:
        overrides.update(plan.stand_in)
        # a joint config keeps data.joint: one experience of every class, evaluated on the stand-in's split
        stand_in = f"{plan.label or plan.stand_in.get('data.dataset')} instead of {column.label}"
    overrides.update({"seed": seed, "device": device})
    final_dataset = overrides.get("data.dataset", config.data.dataset)
    overrides["data.root"] = (str(data_root / plan.folder) if plan.folder and data_root is not None
                              else resolve_data_root(final_dataset, data_root))
    if weights_dir is not None:
        overrides["model.download_root"] = weights_dir
    if offline:
        overrides["model.download_weights"] = False
    if num_workers is not None:
        overrides["data.num_workers"] = num_workers
    return apply_overrides(config, overrides), stand_in


def plan_cells(spec: TableSpec, scale: Scale, *, seeds: Sequence[int], device: str = "auto",
               data_root: Path | None = None, weights_dir: str | None = None, offline: bool = False,
               num_workers: int | None = None) -> list[Cell]:
    """Every cell of a table at a scale, seed-major (all cells of the first seed first, so that a
    table stopped half-way has whole rows). A cost table plans the cells of its ``from_tables``.
    """
    if spec.from_tables:
        cells = []
        for name in spec.from_tables:
            cells += plan_cells(load_table(name), scale, seeds=seeds, device=device, data_root=data_root,
                                weights_dir=weights_dir, offline=offline, num_workers=num_workers)
        return sorted(cells, key=lambda c: c.seed)  # stable: keeps table order within a seed
    cells = []
    for seed in seeds:
        for row in spec.rows:
            if row.deterministic and seed != seeds[0]:
                continue
            for column in spec.columns:
                plan = scale.datasets.get(column.key, DatasetPlan(run=True))
                if plan.skip:
                    cells.append(Cell(spec.name, row.key, column.key, seed, None, skip=" ".join(plan.skip.split())))
                    continue
                config, stand_in = cell_config(spec, row, column, scale, seed=seed, device=device,
                                               data_root=data_root, weights_dir=weights_dir, offline=offline,
                                               num_workers=num_workers)
                cells.append(Cell(spec.name, row.key, column.key, seed, config, stand_in=stand_in))
    return cells


def unique_runs(cells: Iterable[Cell]) -> list[Cell]:
    """The cells to run: one per key, first occurrence kept, skipped cells left out."""
    seen, out = set(), []
    for cell in cells:
        if cell.config is not None and cell.key not in seen:
            seen.add(cell.key)
            out.append(cell)
    return out


def cell_path(out_dir: Path, key: str) -> Path:
    """Where the record of the cell with this (planned) key lives."""
    return Path(out_dir) / "cells" / f"{key[:16]}.json"


def _result_values(config: Mapping[str, Any]) -> dict[str, Any]:
    values = flatten(dict(config))
    return {k: v for k, v in values.items() if not is_operational(k)}


def config_match(stored: Mapping[str, Any], current: RunConfig) -> tuple[bool, list[str]]:
    """Whether a recorded run is the run ``current`` describes, and the config keys added since.

    alta is developed while tables are built: a key added to :class:`RunConfig` changes every
    fingerprint although the runs recorded before it are the same runs. A record matches when
    every result-determining key it holds has the current value, and every key it lacks holds its
    default now (a new key's default keeps the old behaviour). Operational keys (device, data
    location) are ignored. A key that no longer exists means no match.

    Returns:
        ``(match, added)``: ``added`` lists the keys the record lacks (empty for an exact match).
    """
    return _match(_result_values(stored), _result_values(current.to_dict()))


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    return flatten(RunConfig().to_dict())


def _match(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[bool, list[str]]:
    if set(old) - set(new):
        return False, []
    added = sorted(set(new) - set(old))
    if any(new[k] != _defaults().get(k) for k in added):
        return False, []
    return all(old[k] == new[k] for k in old), added


class CellStore:
    """The cell records of one results folder (``<out>/cells/*.json``), found by config.

    A cell's record is the file named by its key when that file's config matches
    (:func:`config_match`); otherwise any recorded run whose config matches (records written
    before a config key was added to alta).
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._records: dict[str, dict] | None = None
        self._values: dict[str, dict] = {}  # file name -> the record's result-determining values

    def records(self) -> dict[str, dict]:
        """File name -> record, read once (call :meth:`refresh` after new runs)."""
        if self._records is None:
            self._records = {}
            for path in sorted((self.out_dir / "cells").glob("*.json")):
                record = json.loads(path.read_text(encoding="utf-8"))
                if record.get("format") == CELL_FORMAT and "config" in record:
                    self._records[path.name] = record
        return self._records

    def refresh(self) -> None:
        self._records, self._values = None, {}

    def find(self, cell: Cell) -> dict | None:
        """The record of a cell (done, or the reason it is not), or ``None``."""
        if cell.config is None:
            return None
        records = self.records()
        own = cell_path(self.out_dir, cell.key).name
        names = ([own] if own in records else []) + [n for n, r in records.items() if n != own and r["status"] == "done"]
        new = _result_values(cell.config.to_dict())
        for name in names:
            if name not in self._values:
                self._values[name] = _result_values(records[name]["config"])
            match, added = _match(self._values[name], new)
            if match:
                return {**records[name], "config_keys_added_since": added} if added else records[name]
        return None

    def is_done(self, cell: Cell) -> bool:
        record = self.find(cell)
        return record is not None and record["status"] == "done"


# ----------------------------------------------------------------------------------------------
# What a cell record holds
# ----------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, load, platform: where a cell ran (the device is in the run's summary)."""
    from _timing import cpu_model  # benchmarks/ is on sys.path for every script and test here

    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
    }


def git_revision() -> str | None:
    """Short commit of the checkout, ``+dirty`` when tracked files are modified."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                              cwd=REPO).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=False, cwd=REPO).stdout.strip()
    except OSError:
        return None
    return (head + ("+dirty" if dirty else "")) or None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_cost(summary: Mapping[str, Any], *, batch_size: int) -> dict[str, Any]:
    """Wall time, training images, steps, images/s and peak memory of a run, from its summary.

    A run trained in a run group (``summary["group"]``) shares its wall time with the group's other
    members: ``wall_time_s`` is the group's, ``wall_time_share_s`` the group's divided by its
    ``group_size`` (the cost of the cell when the group's cost is spread evenly; 1 and the whole
    wall time for a run alone).

    Training images = each sample of each training batch once per epoch (replayed buffer items and
    test images not counted), and steps, as counted by the run (``train_samples``,
    ``train_steps`` of the summary); summaries written before those were recorded fall back to
    epochs x training images and assume experiences of equal size. ``None`` for runs that train
    nothing (zero-shot).
    """
    trains = summary.get("method") != "zeroshot"
    wall = float(summary["wall_time_s"])
    num_train, epochs, T = int(summary["num_train"]), int(summary["epochs"]), int(summary["num_experiences"])
    if not trains:
        images = steps = None
    elif summary.get("train_samples"):
        images, steps = int(summary["train_samples"]), int(summary["train_steps"])
    else:
        images = epochs * num_train
        steps = T * epochs * math.ceil(num_train / T / batch_size)
    memory = summary.get("peak_memory") or {}
    group = summary.get("group") or {}
    size = int(group.get("size", 1))
    return {
        "wall_time_s": wall,
        "group_size": size,
        "wall_time_share_s": wall / size,
        "train_images": images,
        "train_steps": steps,
        "images_per_s": images / wall if images and wall > 0 else None,
        "peak_rss_mib": memory.get("cpu_maxrss_mib"),
        "peak_cuda_mib": memory.get("cuda_max_allocated_mib"),
    }


def metric_value(record: Mapping[str, Any], key: str) -> float | None:
    """One metric of a done cell: ``class_il.last``, ``task_il.avg``, ``class_il.forgetting``,
    ``class_il.bwt``, ``class_il.fwt``, ``class_il.zeroshot`` (mean zero-shot accuracy over the
    experiences, same run), ``seen.avg`` / ``seen.last`` / ``seen.avg_top5`` / ``seen.last_top5``
    (the class-incremental suite's curves, ``summary["curves"]``), the multi-domain metrics of a run
    over a sequence (``task_il.transfer``, ``task_il.mtil_avg``, ``task_il.mtil_last``: ZSCL's Transfer,
    Avg and Last of the full matrix) or ``cost.<field>`` (:func:`run_cost`). ``None`` when undefined."""
    group, _, name = key.partition(".")
    if group == "seen":
        value = (record["summary"].get("curves") or {}).get(name)
    elif group == "cost":
        cost = record["cost"]
        value = cost.get(name)
        if value is None and name in ("group_size", "wall_time_share_s"):  # recorded before run groups: alone
            value = 1 if name == "group_size" else cost.get("wall_time_s")
    else:
        summary = record["summary"]
        if name == "zeroshot":
            values = (summary.get("zeroshot_accuracy") or {}).get(group)
            value = sum(values) / len(values) if values else None
        elif name in ("transfer", "mtil_avg", "mtil_last"):
            value = (summary.get(f"mtil_{name.removeprefix('mtil_')}") or {}).get(group)
        else:
            field_name = {"last": "last_accuracy", "avg": "avg_accuracy", "forgetting": "forgetting", "bwt": "bwt",
                          "fwt": "fwt"}[name]
            value = summary[field_name][group]
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


def aggregate(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation (n - 1) over seeds; ``None`` values (undefined metrics)
    are left out. ``std`` is ``None`` for fewer than two values, ``mean`` for none."""
    kept = [float(v) for v in values if v is not None]
    n = len(kept)
    mean = sum(kept) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (n - 1)) if n >= 2 else None
    return {"mean": mean, "std": std, "n": n, "values": kept}


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def _backbone_label(record: Mapping[str, Any]) -> str:
    name = record["backbone"]["name"]
    return f"{name} (pretrained)" if record["pretrained"] else f"{name} (random init)"


def _cell_entry(cells: Sequence[Cell], records: Mapping[str, dict], metrics: Sequence[str],
                num_seeds: int) -> dict[str, Any]:
    """The aggregated entry of one (row, column) over its seeds (``records``: cell key -> record)."""
    if not cells:
        return {"status": "not run", "reason": "left out of this command (benchmarks/run.py --rows / --columns)"}
    skipped = [c for c in cells if c.config is None]
    if skipped:
        return {"status": "not run", "reason": skipped[0].skip}
    done = [records[c.key] for c in cells if c.key in records and records[c.key]["status"] == "done"]
    failed = [records[c.key] for c in cells if c.key in records and records[c.key]["status"] != "done"]
    entry: dict[str, Any] = {"keys": [c.key for c in cells], "seeds": [c.seed for c in cells],
                             "seeds_done": [r["seed"] for r in done], "stand_in": cells[0].stand_in}
    if not done:
        if failed:
            return {**entry, "status": failed[0]["status"], "reason": failed[0].get("error")}
        return {**entry, "status": "pending"}
    entry["status"] = "done" if len(done) == len(cells) else "partial"
    entry["backbone"] = _backbone_label(done[0])
    entry["pretrained"] = bool(done[0]["pretrained"])
    entry["deterministic"] = len(cells) == 1 and num_seeds > 1
    entry["metrics"] = {m: aggregate([metric_value(r, m) for r in done]) for m in metrics}
    entry["trainable_parameters"] = done[0]["summary"].get("num_trainable_parameters")
    entry["buffer_size"] = done[0]["summary"].get("buffer_size")
    entry["resumed_seeds"] = [r["seed"] for r in done if r.get("resumed")]
    return entry


def build_table(spec: TableSpec, scale: Scale, cells: Sequence[Cell], *, store: CellStore, command: str,
                seeds: Sequence[int]) -> dict[str, Any]:
    """Aggregate the done cells of a table into a JSON-ready dict (what ``<table>.json`` holds).

    Every (row, column) of the spec is present: aggregated metrics, or a status saying why not
    (``not run`` at this scale, ``pending``, ``unavailable`` data, ``failed``).
    """
    metrics = [m.key for g in spec.metric_groups for m in g.metrics]
    records = {}
    for cell in cells:
        if cell.config is not None and cell.key not in records:
            record = store.find(cell)
            if record is not None:
                records[cell.key] = record
    done = list({r["key"]: r for r in records.values() if r["status"] == "done"}.values())
    table: dict[str, Any] = {
        "format": TABLE_FORMAT,
        "version": 1,
        "table": spec.name,
        "title": spec.title,
        "description": spec.description,
        "scale": scale.name,
        "scale_description": scale.description,
        "reductions": list(scale.reductions),
        "command": command,
        "seeds": list(seeds),
        "written_at": now(),
        "runs": _runs_overview(done),
        "columns": [{"key": c.key, "label": c.label, "dataset": c.dataset} for c in spec.columns],
        "metric_groups": [{"title": g.title, "metrics": [{"key": m.key, "label": m.label} for m in g.metrics]}
                          for g in spec.metric_groups],
        "rows": [],
        "published": [{"label": p.label, "backbone": p.backbone, "source": " ".join(p.source.split()),
                       "note": " ".join(p.note.split()), "values": p.values} for p in spec.published],
    }
    if spec.from_tables:  # cost: one row per distinct run (over seeds), labelled by where it appears
        table["columns"] = [{"key": "run", "label": "run"}]
        groups: dict[tuple[str, str, str], list[Cell]] = {}
        for cell in cells:
            groups.setdefault((cell.table, cell.row, cell.column), []).append(cell)
        first_of: dict[frozenset, dict] = {}  # the keys of a group -> its row (shared runs listed once)
        for (tname, row_key, column_key), group in groups.items():
            if group[0].config is None:
                continue  # the other tables already say which cells a scale does not run
            keys = frozenset(c.key for c in group)
            if keys in first_of:
                first_of[keys]["also_in"].append(f"{tname}/{row_key}")
                continue
            source = load_table(tname)
            row_spec = next(r for r in source.rows if r.key == row_key)
            column_spec = next(c for c in source.columns if c.key == column_key)
            entry_row = {"key": f"{tname}/{row_key}/{column_key}", "label": f"{tname}: {row_spec.label}",
                         "column_label": column_spec.label, "also_in": [], "group": None, "note": None,
                         "cells": {"run": _cell_entry(group, records, metrics, len(seeds))}}
            first_of[keys] = entry_row
            table["rows"].append(entry_row)
        table["groups"] = _groups_overview(done, {c.key: c for c in cells})
        return table
    for row in spec.rows:
        entry_row = {"key": row.key, "label": row.label, "group": row.group,
                     "note": " ".join(row.note.split()) if row.note else None, "cells": {}}
        if spec.info:
            method = get_method(row.set.get("model.method")
                                or load_config(row.config.format(configs=spec.columns[0].configs)).model.method)
            entry_row["method"] = {"name": method.name, "formula": method.formula, "replay": method.replay}
        for column in spec.columns:
            group = [c for c in cells if c.row == row.key and c.column == column.key and c.table == spec.name]
            entry_row["cells"][column.key] = _cell_entry(group, records, metrics, len(seeds))
        table["rows"].append(entry_row)
    return table


def _groups_overview(done: Sequence[Mapping[str, Any]], cells: Mapping[str, Cell]) -> list[dict[str, Any]]:
    """The run groups the done cells were trained in: size, wall time, members (the cost of a group)."""
    groups: dict[tuple, dict[str, Any]] = {}
    for record in done:
        group = record.get("group") or record["summary"].get("group")
        if not group:
            continue
        entry = groups.setdefault(tuple(group["output_dirs"]), {
            "size": int(group["size"]), "wall_time_s": 0.0, "members": [], "seed": record["seed"],
            "backbone": record["backbone"]["name"], "train_cache": record["summary"].get("train_cache")})
        entry["wall_time_s"] = max(entry["wall_time_s"], float(record["summary"]["wall_time_s"]))  # the last to end
        cell = cells.get(record["planned_key"])
        entry["members"].append(f"{cell.table}/{cell.row}/{cell.column}" if cell else record["summary"]["method"])
    return sorted(groups.values(), key=lambda g: (g["seed"], -g["size"]))


def _runs_overview(done: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """When, where and with what the done cells ran."""
    if not done:
        return {"count": 0}
    devices = sorted({f"{r['summary']['device'].get('type')}: {r['summary']['device'].get('name')}"
                      for r in done})
    machines = sorted({f"{r['machine']['cpu']}, {r['machine']['cpu_cores']} cores" for r in done})
    threads = sorted({r["summary"]["device"].get("threads") for r in done})
    versions = sorted({f"alta {r['summary']['versions'].get('alta')}, torch {r['summary']['versions'].get('torch')}, "
                       f"clip-anytorch {r['summary']['versions'].get('clip-anytorch')}, "
                       f"python {r['summary']['versions'].get('python')}" for r in done})
    return {
        "count": len(done),
        "first_started": min(r["started_at"] for r in done),
        "last_finished": max(r["finished_at"] for r in done),
        "devices": devices,
        "machines": machines,
        "torch_threads": threads,
        "versions": versions,
        "git": sorted({str(r.get("git")) for r in done}),
        "backbones": sorted({_backbone_label(r) for r in done}),
        "random_init": sorted({r["backbone"]["name"] for r in done if not r["pretrained"]}),
        "isolated": sorted({bool(r.get("isolated")) for r in done}),
        "config_keys_added_since": sorted({k for r in done for k in r.get("config_keys_added_since", [])}),
        "commands": sorted({r["command"] for r in done}),
    }


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def _number(key: str, value: float) -> str:
    """Accuracies with one decimal; costs as whole numbers, wall time with one decimal."""
    if key.startswith("cost.") and key not in ("cost.wall_time_s", "cost.wall_time_share_s"):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def format_stat(key: str, stat: Mapping[str, Any]) -> str:
    """``mean ± std`` (``mean`` alone for one value). No value: ``undefined`` for a metric
    (forgetting of a single experience), ``—`` for a cost that does not apply (no training, no
    CUDA)."""
    if stat["mean"] is None:
        return "—" if key.startswith("cost.") else "undefined"
    text = _number(key, stat["mean"])
    if stat["std"] is not None and not (key.startswith("cost.") and stat["std"] == 0):  # counts: no spread
        text += f" ± {_number(key, stat['std'])}"
    return text


class _Notes:
    """Numbered footnotes, each text once."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def _cell_text(entry: Mapping[str, Any], metric: str, notes: _Notes, num_seeds: int) -> str:
    status = entry["status"]
    if status == "not run":
        return "n/a " + notes.mark(f"Not run at this scale: {entry['reason']}")
    if status == "pending":
        return "pending"
    if status in ("unavailable", "failed"):
        return status + " " + notes.mark(f"{status.capitalize()}: {entry.get('reason')}")
    stat = entry["metrics"][metric]
    text = format_stat(metric, stat)
    if entry.get("deterministic"):
        text += " " + notes.mark("Deterministic (zero-shot: nothing is trained, the seed changes nothing): "
                                 "run once, with the first seed.")
    elif stat["n"] and stat["n"] < num_seeds and stat["mean"] is not None:
        text += f" (n={stat['n']})"
    return text


def render_markdown(table: Mapping[str, Any]) -> str:
    """The table as Markdown: how it was produced, a loud note on random-weight backbones, one
    Markdown table per metric group (ours, then the published rows with their sources), notes."""
    notes, sources = _Notes(), _Notes()
    num_seeds = len(table["seeds"])
    runs = table["runs"]
    lines = [f"# {table['title']} (scale `{table['scale']}`)", ""]
    commands = runs.get("commands") or [table["command"]]
    lines.append(f"Produced by {', '.join(f'`{c}`' for c in commands)}; this file written {table['written_at']} by "
                 f"`{table['command']}`.")
    if runs["count"]:
        lines.append(
            f"{runs['count']} run(s), {runs['first_started']} to {runs['last_finished']}, on "
            f"{'; '.join(runs['machines'])} (device {'; '.join(runs['devices'])}; torch threads "
            f"{', '.join(str(t) for t in runs['torch_threads'])}); {'; '.join(runs['versions'])}; git "
            f"{', '.join(runs['git'])}. Seeds {', '.join(str(s) for s in table['seeds'])}: mean ± sample standard "
            f"deviation over seeds."
        )
    else:
        lines.append("No run is done yet: every cell below is pending or not run at this scale.")
    lines.append("")
    if runs.get("random_init"):
        lines += [
            f"> **Random-weight backbone: {', '.join(runs['random_init'])}.** Every number marked \"random init\" "
            "comes from a CLIP whose weights are random, not pretrained. These numbers are NOT the paper's and "
            "are not comparable with it or with the published rows; they test the pipeline and orderings "
            "between methods on this protocol only.",
            "",
        ]
    if False in runs.get("isolated", [True]):
        lines += ["Some runs were made in one process (`--no-isolate`): their peak RSS is that process's peak so far, "
                  "earlier runs included.", ""]
    if runs.get("config_keys_added_since"):
        lines += [f"Some runs were recorded before alta added the config keys "
                  f"{', '.join(runs['config_keys_added_since'])}; they ran with what are now those keys' defaults "
                  f"(the values of these cells), so they are the same runs.", ""]
    lines += [table["description"], "", f"**Scale `{table['scale']}`.** {table['scale_description']}"]
    if table["reductions"]:
        lines += ["", "Reductions from the paper protocol:"] + [f"- {r}" for r in table["reductions"]]
    lines.append("")
    is_cost = table["table"] == "cost"
    columns = table["columns"]
    for group in table["metric_groups"]:
        metrics = group["metrics"]
        lines += [f"## {group['title']}", ""]
        if is_cost:
            header = ["Run", "Dataset", "Backbone", "Seeds"] + [m["label"] for m in metrics]
        else:
            header = ["Method", "Backbone"]
            if table["rows"] and "method" in table["rows"][0]:
                header += ["Logits", "Replay", "Trainable"]
            for c in columns:
                stand_ins = sorted({r["cells"][c["key"]].get("stand_in") for r in table["rows"]} - {None})
                mark = "".join(" " + notes.mark("Stand-in data: " + s) for s in stand_ins[:1])
                if len(stand_ins) > 1:  # pragma: no cover - one stand-in per column and scale
                    mark = " " + notes.mark("Stand-in data: " + "; ".join(stand_ins))
                header += [(f"{c['label']} {m['label']}" if len(columns) > 1 else m["label"]) + mark
                           for m in metrics]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
        current_group = None
        for row in table["rows"]:
            if row.get("group") and row["group"] != current_group:
                current_group = row["group"]
                lines.append("| " + " | ".join([f"*{current_group}*"] + [""] * (len(header) - 1)) + " |")
            entries = row["cells"]
            done = [e for e in entries.values() if e.get("backbone")]
            backbone = done[0]["backbone"] if done else "—"
            label = row["label"] + (" " + notes.mark(row["note"]) if row.get("note") else "")
            if is_cost:
                entry = entries["run"]
                dataset = row["column_label"] + (" " + notes.mark("Stand-in data: " + entry["stand_in"])
                                                 if entry.get("stand_in") else "")
                if row["also_in"]:
                    label += " " + notes.mark(f"The same run is also a cell of: {', '.join(row['also_in'])}.")
                seeds = ", ".join(str(s) for s in entry.get("seeds_done", [])) or "—"
                if entry.get("resumed_seeds"):
                    seeds += " " + notes.mark(
                        "Resumed after its process was stopped (seed " + ", ".join(map(str, entry["resumed_seeds"]))
                        + "): its wall time adds the sessions; its peak RSS is the last session's only.")
                cells = [_cell_text(entry, m["key"], notes, num_seeds) for m in metrics]
                lines.append("| " + " | ".join([label, dataset, backbone, seeds] + cells) + " |")
                continue
            cells = [label, backbone]
            if "method" in row:
                trainable = done[0].get("trainable_parameters") if done else None
                cells += [f"`{row['method']['formula']}`", "yes" if row["method"]["replay"] else "no",
                          "—" if trainable is None else f"{trainable:,}"]
            cells += [_cell_text(entries[c["key"]], m["key"], notes, num_seeds) for c in columns for m in metrics]
            lines.append("| " + " | ".join(cells) + " |")
        published = [p for p in table["published"]
                     if any(m["key"] in p["values"].get(c["key"], {}) for c in columns for m in metrics)]
        if published and not is_cost:
            lines.append("| " + " | ".join(["*Published (other protocols: not comparable with random-init rows)*"
                                            if runs.get("random_init") else "*Published*"]
                                           + [""] * (len(header) - 1)) + " |")
            for p in published:
                mark = sources.mark(f"{p['source']}. {p['note']}")
                cells = [f"{p['label']} {mark.replace('[', '[S')}", p["backbone"]]
                if table["rows"] and "method" in table["rows"][0]:
                    cells += ["", "", ""]
                for c in columns:
                    for m in metrics:
                        value = p["values"].get(c["key"], {}).get(m["key"])
                        cells.append("—" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value)))

                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if is_cost and table.get("groups"):
        lines += ["## Run groups", "",
                  "Cells trained together by `benchmarks/run.py` (the default: one pass over the frozen encoders for "
                  "the cells that share stream, seed, batch size, epochs, cache mode and backbone). A group's wall "
                  "time is its cost; the cost per cell above is its share.", "",
                  "| seed | backbone | cache | size | wall time (s) | per cell (s) | members |",
                  "|---:|---|---|---:|---:|---:|---|"]
        for g in table["groups"]:
            lines.append(f"| {g['seed']} | {g['backbone']} | {g['train_cache']} | {g['size']} | "
                         f"{g['wall_time_s']:,.1f} | {g['wall_time_s'] / g['size']:,.1f} | {', '.join(g['members'])} |")
        lines.append("")
    if notes.texts:
        lines += ["Notes:", ""] + [f"[{i + 1}] {text}  " for i, text in enumerate(notes.texts)] + [""]
    if sources.texts:
        lines += ["Sources of the published rows:", ""]
        lines += [f"[S{i + 1}] {text}  " for i, text in enumerate(sources.texts)] + [""]
    lines.append(f"Per-run records (resolved config, summary, backbone, data, seed, versions, device, time): "
                 f"`cells/<key>.json` beside this file; the same numbers as JSON in `{table['table']}.json`.")
    return "\n".join(lines) + "\n"
