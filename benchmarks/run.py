"""Make alta's benchmark tables: one command per table, results that say how they were obtained.

    python benchmarks/run.py main --scale cpu                      # Seq-CIFAR-10, tiny-vit, 3 seeds
    python benchmarks/run.py ablation --scale cpu --seeds 0 1 2
    python benchmarks/run.py all --scale smoke --out /tmp/smoke    # every cell, seconds each
    python benchmarks/run.py main --scale full --data-root /data --device cuda
    python benchmarks/run.py all --scale full --estimate           # projected time, runs nothing
    python benchmarks/run.py all --scale full --dispatch slurm --slurm-partition gpu   # a Slurm job per group
    python benchmarks/run.py my_table.yaml --import examples/linear_probe.py --scale cpu  # your method's rows
    python benchmarks/run.py cil-suite --scale full --data-root /data --weights-dir W  # the CLIP CIL suite

The tables (main, ablation, backbones, cost, cil-suite) are data: ``benchmarks/tables/<table>.yaml``; the
scales (smoke, cpu, full) are in ``benchmarks/tables/scales.yaml``. Every cell is one run of
:func:`alta.run.driver.run_experiment` with a config made by
:func:`~alta.cli.config.load_config` + :func:`~alta.cli.config.apply_overrides`; it is stored as
``<out>/cells/<key>.json``, keyed by the fingerprint of its resolved config, and skipped when it is
already there, so a long table can be built over several invocations or machines (copy the cell
files into one ``--out``). A run interrupted half-way resumes from its last completed experience
(its folder under ``--work-dir`` holds the checkpoint). After every run the tables are rewritten:
``<out>/<table>.json`` and ``<out>/<table>.md``.

Cells that share the stream, the seed, the batch size, the epochs, the cache mode and the
backbone are run together as a run group (:func:`alta.run.groups.run_group_experiment`: one pass
over the frozen encoders, each cell's own folder and record, the numbers it gets alone);
``--no-group`` runs every cell on its own.

Your own method: a table spec of your own (a ``.yaml`` file with the keys of
``benchmarks/tables/ablation.yaml``) names it in its rows (``set: {model.method: linear_probe}``),
and ``--import MODULE_OR_FILE`` registers it (as ``alta run --import`` does; an installed plug-in
package needs nothing); the jobs of isolated runs and of submitit import it again. The cells
record the plug-in's package version or file hash (their summaries' ``plugins``), and a cell's key
(the fingerprint of its configuration) changes with them. ``--dispatch slurm`` sends each group (or lone cell)
to Slurm as one job through submitit, ``--dispatch local`` runs the same jobs here through
submitit's local executor; the tables are rewritten as results arrive.

At scales ``cpu`` and ``full`` every run (or group) has a process of its own (so that its peak memory is its
own, and a crash cannot take the table down); ``--no-isolate`` runs them in this process.
``full`` loads pretrained CLIP weights: offline without them it stops at the first run whose data
is there with the library's message (a run checks its data before it loads weights; a run without
its data is marked unavailable, and so is every later run of the same data, without a process of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tables as tables  # noqa: E402

from alta.cli.config import RunConfig  # noqa: E402
from alta.errors import AltaError, BackboneError, DataError  # noqa: E402
from alta.io import write_json, write_text  # noqa: E402
from alta.plugins import import_plugin  # noqa: E402

TINY_BACKBONES = ("tiny-vit", "tiny-rn")
RUN_TABLES = ("main", "ablation", "backbones", "cil-suite")


def default_data_root() -> Path | None:
    """$ALTA_DATA_ROOT, else ../shared/data beside the repository (when it exists)."""
    import os

    env = os.environ.get("ALTA_DATA_ROOT")
    for path in ([Path(env)] if env else []) + [tables.REPO.parent / "shared" / "data"]:
        if path.is_dir():
            return path
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py", description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Tables: benchmarks/tables/*.yaml. Scales: benchmarks/tables/scales.yaml. See benchmarks/README.md.",
    )
    add = parser.add_argument
    add("table", nargs="?", metavar="{" + ",".join((*tables.TABLE_NAMES, "all")) + "} | FILE.yaml",
        help="the table to make (cost reads the runs of main, ablation and backbones; all: every table), or a "
             "table spec of your own")
    add("--import", dest="imports", action="append", default=[], metavar="MODULE_OR_FILE",
        help="a module or .py file registering plug-ins (methods, loss terms, datasets, ...) the table's rows use "
             "(repeatable); imported again by every job")
    add("--scale", choices=tables.SCALE_NAMES, default="cpu",
        help="smoke: seconds per cell, numbers meaningless; cpu: reduced protocol on CPU (main + ablation: about "
             "25 minutes on 2 cores with run groups); full: the paper protocol (default: cpu)")
    add("--seeds", type=int, nargs="+", metavar="S", help="run seeds (default: the scale's; 0 1 2, smoke 0)")
    add("--data-root", type=Path, metavar="DIR",
        help="folder holding cifar10/, cifar100/, tiny-imagenet-200/ (or one dataset's own layout); default "
             "$ALTA_DATA_ROOT or ../shared/data")
    add("--weights-dir", metavar="DIR", help="folder of pretrained CLIP weights (model.download_root)")
    add("--offline", action="store_true",
        help="never download pretrained weights (model.download_weights: false): fail at once when absent")
    add("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N (default: auto)")
    add("--out", type=Path, metavar="DIR",
        help="results: cells/*.json and the tables (default: benchmarks/results/SCALE; smoke: "
             "runs/benchmarks/smoke/results)")
    add("--work-dir", type=Path, metavar="DIR",
        help="run folders with checkpoints and logs (default: runs/benchmarks/SCALE, or OUT/runs with --out)")
    add("--num-workers", type=int, metavar="N",
        help="DataLoader worker processes per run (data.num_workers; does not change results)")
    add("--threads", type=int, metavar="N",
        help="torch CPU threads per run (default: 1 for the tiny backbones on CPU, else torch's default)")
    isolate = parser.add_mutually_exclusive_group()
    isolate.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                         help="a process per run (default at scales cpu and full)")
    isolate.add_argument("--no-isolate", dest="isolate", action="store_false",
                         help="runs in this process (default at smoke)")
    add("--report-only", action="store_true", help="only rewrite the tables from the cells already done")
    add("--list", action="store_true", help="list the cells and whether they are done; run nothing")
    add("--estimate", action="store_true",
        help="project the wall time of the tables at this scale from speed measurements; run nothing")
    add("--speed-json", type=Path, metavar="FILE",
        help="speed measurements for --estimate (default: the newest benchmarks/results/speed-*.json)")
    add("--assume-gpu", metavar="IMAGES_PER_S,STEP_MS",
        help="--estimate from ASSUMED GPU costs instead of measurements: the RN50 image encoder's throughput (other "
             "backbones scaled by FLOPs) and the rest of a training step in ms, e.g. 2000,15")
    grouping = parser.add_mutually_exclusive_group()
    grouping.add_argument("--group", dest="group", action="store_true", default=True,
                          help="run the cells that share stream, seed, batch size, epochs, cache mode and backbone "
                               "as one run group: one pass over the frozen encoders for all of them, the same numbers "
                               "(default)")
    grouping.add_argument("--no-group", dest="group", action="store_false", help="run every cell on its own")
    add("--max-group-size", type=int, metavar="K", help="at most K cells per group (default: no limit)")
    add("--rows", metavar="ROW,...", help="only these rows of the tables (their keys; default: every row)")
    add("--columns", metavar="COLUMN,...", help="only these columns (dataset keys; default: every column)")
    add("--dispatch", choices=("here", "local", "slurm"), default="here",
        help="here: on this machine, one unit after the other (default); slurm: one Slurm job per group (or lone "
             "cell) through submitit, the tables rewritten as results arrive; local: the same through submitit's "
             "local executor (jobs run here, in parallel)")
    add("--jobs-dir", type=Path, metavar="DIR",
        help="submitit's folder for job scripts and logs (default: WORK_DIR/submitit)")
    add("--slurm-partition", metavar="NAME", help="Slurm partition of the jobs")
    add("--slurm-time", type=int, default=240, metavar="MIN", help="time limit of one job in minutes (default 240)")
    add("--slurm-gpus", type=int, default=1, metavar="N", help="GPUs per job (default 1: one group per GPU)")
    add("--slurm-cpus", type=int, default=8, metavar="N", help="CPUs per job (DataLoader workers; default 8)")
    add("--max-parallel", type=int, metavar="N",
        help="at most N jobs at once (slurm: the job array's parallelism; local: default 1, or one per --local-gpus)")
    add("--local-gpus", metavar="I,J,...",
        help="local dispatch on a machine with several GPUs: one job (group) per GPU at a time, pinned with "
             "CUDA_VISIBLE_DEVICES")
    add("--job", type=Path, help=argparse.SUPPRESS)  # internal: run one unit (the child process, a submitit job)
    return parser


# ----------------------------------------------------------------------------------------------
# One cell
# ----------------------------------------------------------------------------------------------


def _threads_for(config: RunConfig, threads: int | None) -> int | None:
    """The CLI's rule: one torch thread for the tiny backbones on CPU unless told otherwise."""
    if threads is not None:
        return threads
    from alta.run import resolve_device

    if config.model.visual in TINY_BACKBONES and resolve_device(config.device).type == "cpu":
        return 1
    return None


@contextlib.contextmanager
def _log_to(path: Path):
    """Send alta's log records (INFO and up) to ``path`` only, for the duration of one run."""
    log = logging.getLogger("alta")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s %(message)s"))
    old = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(old[0])
        log.propagate = old[1]


def execute(job: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) one cell and write its record; returns the record.

    Raises:
        BackboneError, DataError, ...: what :func:`run_experiment` raises.
    """
    from alta.run import run_experiment

    config = RunConfig.from_dict(job["config"])  # keys added to alta since the plan take their defaults
    _set_threads(config, job.get("threads"))
    run_dir = Path(job["run_dir"])
    resumed = (run_dir / "config.yaml").is_file()
    started_at = tables.now()
    summary = run_experiment(config, output_dir=run_dir, resume=resumed, progress=False, plots=False)
    return _write_record(job, config, summary, resumed=resumed, started_at=started_at)


def execute_group(jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run (or resume) the cells of one group together (:func:`alta.run.groups.run_group_experiment`)
    and write each cell's record; returns the records.

    Raises:
        BackboneError, DataError, ...: what :func:`run_group_experiment` raises.
    """
    from alta.run import run_group_experiment

    configs = [RunConfig.from_dict(job["config"]) for job in jobs]
    _set_threads(configs[0], jobs[0].get("threads"))
    run_dirs = [Path(job["run_dir"]) for job in jobs]
    resumed = [(d / "config.yaml").is_file() for d in run_dirs]
    started_at = tables.now()
    summaries = run_group_experiment(configs, run_dirs, resume=resumed, progress=False, plots=False)
    return [_write_record(job, config, summary, resumed=r, started_at=started_at)
            for job, config, summary, r in zip(jobs, configs, summaries, resumed)]


def _set_threads(config: RunConfig, threads: int | None) -> None:
    import torch

    threads = _threads_for(config, threads)
    if threads is not None:
        torch.set_num_threads(threads)


def _write_record(job: dict[str, Any], config: RunConfig, summary: dict[str, Any], *, resumed: bool,
                  started_at: str) -> dict[str, Any]:
    record = {
        "format": tables.CELL_FORMAT,
        "version": 1,
        "key": config.fingerprint(),
        "planned_key": job["key"],
        "status": "done",
        "requested_by": job["requested_by"],
        "scale": job["scale"],
        "seed": config.seed,
        "backbone": summary["backbone"],
        "pretrained": summary["pretrained"],
        "data": {
            "dataset": summary["dataset"],
            "root": config.data.root,
            "stand_in": job.get("stand_in"),
            "num_experiences": summary["num_experiences"],
            "classes_per_experience": summary["classes_per_experience"],
            "num_train": summary["num_train"],
            "num_test": summary["num_test"],
            "max_train_per_class": config.data.max_train_per_class,
            "max_test_per_class": config.data.max_test_per_class,
        },
        "cost": tables.run_cost(summary, batch_size=config.train.batch_size),
        "group": summary.get("group"),
        "peak_memory_scope": ("this run's own process" if job["isolated"] else
                              "the whole benchmark process (runs in-process: earlier runs included)"),
        "isolated": job["isolated"],
        "dispatch": job.get("dispatch", "here"),
        "resumed": resumed,
        "machine": tables.machine(),
        "git": job.get("git"),
        "command": job["command"],
        "started_at": started_at,
        "finished_at": tables.now(),
        "run_dir": str(job["run_dir"]),
        "config": config.to_dict(),
        "summary": summary,
    }
    write_json(job["cell_path"], record)
    return record


def _error_record(job: dict[str, Any], status: str, error: BaseException) -> dict[str, Any]:
    return {"format": tables.CELL_FORMAT, "version": 1, "key": job["key"], "planned_key": job["key"], "status": status,
            "requested_by": job["requested_by"], "scale": job["scale"], "seed": job["config"]["seed"],
            "error": f"{type(error).__name__}: {error}", "finished_at": tables.now(), "config": job["config"]}


def execute_unit(jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One cell alone (:func:`execute`) or a group (:func:`execute_group`)."""
    return [execute(jobs[0])] if len(jobs) == 1 else execute_group(jobs)


def import_plugins(specs: Sequence[str]) -> list[str]:
    """Import the ``--import`` modules and files (:func:`alta.plugins.import_plugin`); returns
    them as jobs import them again (a file by its absolute path)."""
    out = []
    for spec in specs:
        _, origin, _ = import_plugin(spec)
        out.append(spec if origin.module == spec else origin.file)  # a module by its name, a file by its path
    return out


def run_child(job_path: Path) -> int:
    """The process of an isolated unit (a cell or a group; also a submitit job): exit 0 done,
    3 missing weights, 4 missing data, 1 other."""
    unit = json.loads(job_path.read_text(encoding="utf-8"))
    jobs = unit["cells"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(levelname)s %(message)s")
    try:
        import_plugins(unit.get("imports") or [])
        execute_unit(jobs)
    except BackboneError as exc:
        write_json(job_path.with_name("bench-error.json"), {"type": "BackboneError", "message": str(exc)})
        return 3
    except DataError as exc:
        for job in jobs:
            write_json(job["cell_path"], _error_record(job, "unavailable", exc))
        return 4
    except Exception as exc:  # noqa: BLE001 - reported in the cell records and the log
        traceback.print_exc()
        for job in jobs:
            write_json(job["cell_path"], _error_record(job, "failed", exc))
        return 1
    return 0


class StopAll(Exception):
    """Raised when a run cannot start for a reason that every later run shares (missing weights)."""


def unit_jobs(cells: Sequence[tables.Cell], *, out_dir: Path, work_dir: Path, scale: str, isolate: bool,
              threads: int | None, command: str, dispatch: str = "here") -> list[dict[str, Any]]:
    """The job of each cell of a unit (its config, run folder, record path, provenance)."""
    jobs = []
    for cell in cells:
        run_dir = work_dir / cell.key[:16]
        run_dir.mkdir(parents=True, exist_ok=True)
        jobs.append({
            "key": cell.key, "config": cell.config.to_dict(), "run_dir": str(run_dir),
            "cell_path": str(tables.cell_path(out_dir, cell.key)), "scale": scale, "stand_in": cell.stand_in,
            "requested_by": {"table": cell.table, "row": cell.row, "column": cell.column, "seed": cell.seed},
            "threads": threads, "isolated": isolate, "command": command, "git": tables.git_revision(),
            "dispatch": dispatch,
        })
    return jobs


def unit_folder(work_dir: Path, cells: Sequence[tables.Cell]) -> Path:
    """Where a unit's job file and log live: the cell's run folder, or ``groups/<id>`` for a group."""
    if len(cells) == 1:
        return work_dir / cells[0].key[:16]
    ident = hashlib.sha256("".join(sorted(c.key for c in cells)).encode()).hexdigest()[:16]
    return work_dir / "groups" / ident


def write_unit(cells: Sequence[tables.Cell], jobs: Sequence[dict[str, Any]], *, work_dir: Path,
               imports: Sequence[str] = ()) -> Path:
    folder = unit_folder(work_dir, cells)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("bench-job.json" if len(cells) == 1 else "bench-group-job.json")
    write_json(path, {"cells": list(jobs), "imports": list(imports)})
    (folder / "bench-error.json").unlink(missing_ok=True)
    return path


def collect(cells: Sequence[tables.Cell], jobs: Sequence[dict[str, Any]], *, out_dir: Path, code: int | None,
            log: Path) -> list[dict[str, Any]]:
    """The records a unit's process left (an error record for a cell it did not write).

    Raises:
        StopAll: the unit could not load its backbone (exit code 3).
    """
    error_file = log.with_name("bench-error.json")
    if code == 3 or error_file.is_file():
        raise StopAll(json.loads(error_file.read_text(encoding="utf-8"))["message"])
    records = []
    for cell, job in zip(cells, jobs):
        path = tables.cell_path(out_dir, cell.key)
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if record is None or (code == 0) != (record.get("status") == "done"):
            tail = log.read_text(encoding="utf-8").splitlines()[-15:] if log.is_file() else []
            error = RuntimeError(f"the unit's process exited with code {code}; log {log}: " + " | ".join(tail))
            record = _error_record(job, "failed", error)
            write_json(path, record)
        records.append(record)
    return records


def run_unit(cells: Sequence[tables.Cell], *, out_dir: Path, work_dir: Path, scale: str, isolate: bool,
             threads: int | None, command: str, imports: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run one cell, or the cells of one group together (in a child process when ``isolate``);
    returns their records.

    Raises:
        StopAll: pretrained weights are missing (the library's message).
    """
    jobs = unit_jobs(cells, out_dir=out_dir, work_dir=work_dir, scale=scale, isolate=isolate, threads=threads,
                     command=command)
    folder = unit_folder(work_dir, cells)
    folder.mkdir(parents=True, exist_ok=True)
    if not isolate:
        with _log_to(folder / "bench-log.txt"):
            try:
                return execute_unit(jobs)
            except BackboneError as exc:
                raise StopAll(str(exc)) from None
            except DataError as exc:
                records = [_error_record(job, "unavailable", exc) for job in jobs]
            except AltaError as exc:
                records = [_error_record(job, "failed", exc) for job in jobs]
        for job, record in zip(jobs, records):
            write_json(job["cell_path"], record)
        return records
    job_path = write_unit(cells, jobs, work_dir=work_dir, imports=imports)
    log_path = folder / "bench-log.txt"
    with open(log_path, "a", encoding="utf-8") as log:
        code = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--job", str(job_path)],
                              stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    return collect(cells, jobs, out_dir=out_dir, code=code, log=log_path)


def data_request(cell: tables.Cell) -> str:
    """What a cell asks of the disk: its dataset, roots and dataset options (two cells with the
    same request find the same data, or the same absence)."""
    data = cell.config.data
    return json.dumps({"dataset": data.dataset, "root": str(data.root), "roots": dict(data.roots),
                       "options": dict(data.options), "download": data.download}, sort_keys=True, default=str)


def unavailable_again(cells: Sequence[tables.Cell], missing: dict[str, str], *, out_dir: Path, work_dir: Path,
                      scale: str, threads: int | None, command: str) -> list[dict[str, Any]]:
    """The records of a unit whose data an earlier run of this table found absent: ``unavailable``
    with that run's error, written without starting a process (a ``full`` table without its
    datasets ends in seconds, not one process per cell)."""
    jobs = unit_jobs(cells, out_dir=out_dir, work_dir=work_dir, scale=scale, isolate=False, threads=threads,
                     command=command)
    records = []
    for cell, job in zip(cells, jobs):
        record = _error_record(job, "unavailable", RuntimeError("as an earlier run of the same data found"))
        record["error"] = missing[data_request(cell)]
        write_json(job["cell_path"], record)
        records.append(record)
    return records


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def write_tables(names: Sequence[str], scale: tables.Scale, cells_by_table: dict[str, list[tables.Cell]], *,
                 out_dir: Path, command: str, seeds: Sequence[int]) -> None:
    store = tables.CellStore(out_dir)
    for name in names:
        spec = tables.load_table(name)
        table = tables.build_table(spec, scale, cells_by_table[name], store=store, command=command, seeds=seeds)
        write_json(out_dir / f"{spec.name}.json", table)
        write_text(out_dir / f"{spec.name}.md", tables.render_markdown(table))


def _brief(record: dict[str, Any]) -> str:
    if record.get("status") != "done":
        return f"{record.get('status')}: {record.get('error')}"
    s = record["summary"]
    group = f" (its group of {s['group']['size']})" if s.get("group") else ""
    return (f"done in {s['wall_time_s']:.0f} s{group}: Last class-IL {s['last_accuracy']['class_il']:.1f}, "
            f"task-IL {s['last_accuracy']['task_il']:.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.job is not None:
        return run_child(args.job)
    if args.table is None:
        build_parser().error("give a table: main, ablation, backbones, cost, cil-suite, all or a table spec FILE.yaml")
    if args.table not in (*tables.TABLE_NAMES, "all") and not tables.is_table_file(args.table):
        build_parser().error(f"argument table: invalid choice: {args.table!r} (choose from "
                             f"{', '.join((*tables.TABLE_NAMES, 'all'))}, or give a table spec FILE.yaml)")
    imports = import_plugins(args.imports)
    scales = tables.load_scales()
    scale = scales[args.scale]
    seeds = list(args.seeds or scale.default_seeds)
    names = list(tables.TABLE_NAMES) if args.table == "all" else [args.table]
    data_root = args.data_root if args.data_root is not None else default_data_root()
    isolate = scale.isolate if args.isolate is None else args.isolate
    if args.out is not None:
        out_dir = args.out
        work_dir = args.work_dir or out_dir / "runs"
    else:
        out_dir = (tables.REPO / "runs" / "benchmarks" / "smoke" / "results" if args.scale == "smoke"
                   else tables.REPO / "benchmarks" / "results" / args.scale)
        work_dir = args.work_dir or tables.REPO / "runs" / "benchmarks" / args.scale
    command = "python benchmarks/run.py " + shlex.join(argv)

    cells_by_table = {
        name: tables.plan_cells(tables.load_table(name), scale, seeds=seeds, device=args.device, data_root=data_root,
                                weights_dir=args.weights_dir, offline=args.offline, num_workers=args.num_workers)
        for name in names
    }
    rows = set(args.rows.split(",")) if args.rows else None
    columns = set(args.columns.split(",")) if args.columns else None
    for flag, asked, field in (("--rows", rows, "row"), ("--columns", columns, "column")):
        known = sorted({getattr(c, field) for name in names for c in cells_by_table[name]})
        unknown = sorted((asked or set()) - set(known))
        if unknown:  # a typo would drop cells without a word, and all-unknown keys write an empty table
            return _refuse(f"{flag} {','.join(unknown)}: no such {field} key in {', '.join(names)}; valid: "
                           f"{', '.join(known)}")
    if args.dispatch != "here" and not args.estimate and not args.list and not args.report_only:
        problem = _dispatch_problem(args.dispatch)
        if problem:
            return _refuse(problem)
    if rows or columns:
        cells_by_table = {name: [c for c in cells if (rows is None or c.row in rows)
                                 and (columns is None or c.column in columns)]
                          for name, cells in cells_by_table.items()}
    every_cell = [c for name in names for c in cells_by_table[name]]
    if (rows or columns) and not every_cell:
        return _refuse(f"no cell of {', '.join(names)} has one of the rows {','.join(sorted(rows or ['any']))} and one "
                       f"of the columns {','.join(sorted(columns or ['any']))}: nothing to run or tabulate")
    todo = sorted(tables.unique_runs(every_cell), key=lambda c: c.seed)
    store = tables.CellStore(out_dir)

    if args.estimate:
        import _estimate

        if "mtil" in names:  # its own projection, from per-step costs that grow with the classes still learning
            print("mtil: projected by `python benchmarks/mtil_cost.py steps` (benchmarks/results/mtil-cost-cpu.md), "
                  "not by --estimate")
            names = [n for n in names if n != "mtil"]
            if not names:
                return 0
        return _estimate.main(names, scale, cells_by_table, speed_json=args.speed_json, out_dir=out_dir,
                              command=command, assume_gpu=args.assume_gpu)
    if args.list:
        for cell in every_cell:
            state = ("not run: " + cell.skip) if cell.config is None else (
                "done" if store.is_done(cell) else "to do")
            print(f"{cell.name:<60} {cell.key[:16] if cell.key else '-':<17} {state}")
        print(f"{len(todo)} distinct runs, {sum(store.is_done(c) for c in todo)} done")
        return 0
    if args.report_only:
        write_tables(names, scale, cells_by_table, out_dir=out_dir, command=command, seeds=seeds)
        print(f"tables written to {out_dir}")
        return 0

    pending = [c for c in todo if not store.is_done(c)]
    units = plan_units(pending, group=args.group, max_size=args.max_group_size)
    where = {"here": "a process each" if isolate else "in this process", "local": "submitit's local executor",
             "slurm": "Slurm jobs through submitit"}[args.dispatch]
    print(f"scale {scale.name}: {len(todo)} distinct runs for {', '.join(names)}, {len(todo) - len(pending)} already "
          f"done, {len(pending)} to run as {len(units)} unit(s) ({_sizes(units)}; {where}); results in {out_dir}",
          flush=True)

    def rewrite() -> None:
        write_tables(names, scale, cells_by_table, out_dir=out_dir, command=command, seeds=seeds)

    started = time.perf_counter()
    if args.dispatch != "here":
        code = dispatch(units, args=args, out_dir=out_dir, work_dir=work_dir, scale=scale.name, command=command,
                        on_result=rewrite, imports=imports)
        if code != 2:  # 2: nothing ran to the end (no cluster, the jobs refused, or no backbone), as said above
            print(f"{len(pending)} runs in {time.perf_counter() - started:.0f} s; tables: "
                  + ", ".join(str(out_dir / f"{tables.load_table(n).name}.md") for n in names))
        return code
    failures = 0
    last_written = time.perf_counter()
    missing: dict[str, str] = {}  # data request -> the error of the first run that found it absent
    for index, unit in enumerate(units, 1):
        names_of = ", ".join(f"{c.name}{f' [{c.stand_in}]' if c.stand_in else ''}" for c in unit)
        label = f"group of {len(unit)}: " if len(unit) > 1 else ""
        print(f"[{index}/{len(units)}] {label}{names_of} ({unit[0].config.model.visual}) ...", flush=True)
        try:
            if all(data_request(c) in missing for c in unit):  # its data is absent: seen by an earlier run
                records = unavailable_again(unit, missing, out_dir=out_dir, work_dir=work_dir, scale=scale.name,
                                            threads=args.threads, command=command)
            else:
                records = run_unit(unit, out_dir=out_dir, work_dir=work_dir, scale=scale.name, isolate=isolate,
                                   threads=args.threads, command=command, imports=imports)
        except StopAll as stop:
            print(f"\nstopped: a run could not load its backbone, and every later run would fail the same way.\n"
                  f"{stop}", file=sys.stderr)
            rewrite()
            return 2
        for cell, record in zip(unit, records):
            failures += record.get("status") != "done"
            if record.get("status") == "unavailable":
                missing.setdefault(data_request(cell), str(record.get("error")))
            print(f"    {cell.row}/{cell.column}/seed {cell.seed}: {_brief(record)}", flush=True)
        if time.perf_counter() - last_written > 30:  # a long table shows its progress as it goes
            rewrite()
            last_written = time.perf_counter()
    rewrite()
    print(f"{len(pending)} runs in {time.perf_counter() - started:.0f} s ({failures} not done); tables: "
          + ", ".join(str(out_dir / f"{tables.load_table(n).name}.md") for n in names))
    return 1 if failures else 0


def _refuse(message: str) -> int:
    """Print a usage error the way argparse does and return its exit status (2)."""
    print(f"python benchmarks/run.py: error: {message}", file=sys.stderr)
    return 2


def _dispatch_problem(dispatch: str) -> str | None:
    """Why ``--dispatch`` cannot work on this machine (submitit missing, no Slurm), or ``None``."""
    try:
        import submitit  # noqa: F401 - the optional cluster extra
    except ImportError:
        return (f"--dispatch {dispatch} sends the runs through submitit, which is not installed; install it with "
                f"`pip install -e \".[cluster]\"`, or run here with --dispatch here (the default)")
    missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
    if dispatch == "slurm" and missing:
        return (f"--dispatch slurm needs Slurm, but this machine has no {' or '.join(missing)} command; run it on a "
                f"Slurm login node, or use --dispatch local (submitit's jobs on this machine) or --dispatch here "
                f"(the default)")
    return None


def _executor(args: argparse.Namespace, folder: Path):
    """submitit's executor for ``--dispatch``: Slurm (one job per unit) or local (jobs on this machine)."""
    import submitit

    if args.dispatch == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=args.slurm_time)
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params: dict[str, Any] = {"timeout_min": args.slurm_time, "gpus_per_node": args.slurm_gpus,
                              "cpus_per_task": args.slurm_cpus, "tasks_per_node": 1, "nodes": 1,
                              "name": "alta-benchmark"}
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    if args.max_parallel:
        params["slurm_array_parallelism"] = args.max_parallel
    executor.update_parameters(**params)
    return executor


def dispatch(units: Sequence[Sequence[tables.Cell]], *, args: argparse.Namespace, out_dir: Path, work_dir: Path,
             scale: str, command: str, on_result, imports: Sequence[str] = ()) -> int:
    """Run every unit (a group, or a lone cell) as one submitit job and rewrite the tables as their
    results arrive. A job runs ``python benchmarks/run.py --job FILE``, the process an isolated unit
    runs here, so a job is resumable as a local run is: run the command again and the done cells are
    skipped, the others continue from their checkpoints.

    Returns:
        0 when every cell is done, 1 when some failed, 2 when a backbone could not be loaded.
    """
    import submitit

    folder = args.jobs_dir or work_dir / "submitit"
    try:
        executor = _executor(args, folder)
    except RuntimeError as exc:  # submitit found no cluster after all
        print(f"python benchmarks/run.py: error: --dispatch {args.dispatch}: {exc}", file=sys.stderr)
        return 2
    gpus = [g for g in (args.local_gpus or "").split(",") if g]
    parallel = args.max_parallel or (len(gpus) if args.dispatch == "local" and gpus else
                                     1 if args.dispatch == "local" else len(units))
    queue = []
    for unit in units:
        jobs = unit_jobs(unit, out_dir=out_dir, work_dir=work_dir, scale=scale, isolate=True, threads=args.threads,
                         command=command, dispatch=args.dispatch)
        queue.append((unit, jobs, write_unit(unit, jobs, work_dir=work_dir, imports=imports)))

    def submit(item, gpu: str | None):
        _, _, path = item
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else None
        function = submitit.helpers.CommandFunction([sys.executable, str(Path(__file__).resolve()), "--job", str(path)],
                                                    verbose=False, cwd=str(tables.REPO), env=env)
        return executor.submit(function)

    running: list[tuple[Any, Any, str | None]] = []
    failures, stopped, free = 0, None, list(gpus)
    if args.dispatch == "slurm":
        try:
            with executor.batch():  # one Slurm job array
                submitted = [(item, submit(item, None)) for item in queue]
        except (RuntimeError, OSError) as exc:  # sbatch refused the jobs (partition, limits, ...)
            print(f"python benchmarks/run.py: error: Slurm did not take the jobs ({type(exc).__name__}: "
                  f"{str(exc).strip()[:500]}); check --slurm-partition, --slurm-time and --slurm-gpus. The job files "
                  f"are in {folder}; nothing ran, and the same command submits them again", file=sys.stderr)
            return 2
        running = [(item, job, None) for item, job in submitted]
        queue = []
        print(f"submitted {len(running)} job(s) to Slurm: {running[0][1].job_id.split('_')[0] if running else '-'} "
              f"(logs in {folder})", flush=True)
    while queue or running:
        while queue and len(running) < parallel and stopped is None:
            gpu = free.pop(0) if gpus else None
            item = queue.pop(0)
            running.append((item, submit(item, gpu), gpu))
        time.sleep(1.0 if args.dispatch == "local" else 15.0)
        for entry in [e for e in running if e[1].done()]:
            running.remove(entry)
            (unit, jobs, path), job, gpu = entry
            if gpu is not None:
                free.append(gpu)
            error = job.exception()
            try:
                records = collect(unit, jobs, out_dir=out_dir, code=0 if error is None else 1,
                                  log=path.with_name("bench-log.txt"))
            except StopAll as stop:
                stopped = str(stop)
                continue
            for cell, record in zip(unit, records):
                failures += record.get("status") != "done"
                print(f"    job {job.job_id}: {cell.name}: {_brief(record)}", flush=True)
            on_result()
        if stopped is not None and not running:
            queue = []
    on_result()
    if stopped is not None:
        print(f"\nstopped: a run could not load its backbone, and every later run would fail the same way.\n"
              f"{stopped}", file=sys.stderr)
        return 2
    return 1 if failures else 0


def plan_units(cells: Sequence[tables.Cell], *, group: bool, max_size: int | None = None) -> list[list[tables.Cell]]:
    """The cells to run together: groups of :func:`alta.run.groups.plan_groups` (same stream, seed,
    batch size, epochs, cache mode and backbone), or one cell each without ``group``."""
    if not group:
        return [[c] for c in cells]
    from alta.run import plan_groups

    return [[cells[i] for i in indices] for indices in plan_groups([c.config for c in cells], max_size=max_size)]


def _sizes(units: Sequence[Sequence[Any]]) -> str:
    groups = [len(u) for u in units if len(u) > 1]
    alone = sum(1 for u in units if len(u) == 1)
    parts = ([f"{len(groups)} group(s) of {', '.join(map(str, groups))}"] if groups else []) + (
        [f"{alone} alone"] if alone else [])
    return " and ".join(parts) or "nothing"


if __name__ == "__main__":
    sys.exit(main())
