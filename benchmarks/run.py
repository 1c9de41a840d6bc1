"""Make alta's benchmark tables: one command per table, results that say how they were obtained.

    python benchmarks/run.py main --scale cpu                      # Seq-CIFAR-10, tiny-vit, 3 seeds
    python benchmarks/run.py ablation --scale cpu --seeds 0 1 2
    python benchmarks/run.py all --scale smoke --out /tmp/smoke    # every cell, seconds each
    python benchmarks/run.py main --scale full --data-root /data --device cuda
    python benchmarks/run.py all --scale full --estimate           # projected time, runs nothing

The tables (main, ablation, backbones, cost) are data: ``benchmarks/tables/<table>.yaml``; the
scales (smoke, cpu, full) are in ``benchmarks/tables/scales.yaml``. Every cell is one run of
:func:`alta.experiment.run_experiment` with a config made by
:func:`~alta.cli.config.load_config` + :func:`~alta.cli.config.apply_overrides`; it is stored as
``<out>/cells/<key>.json``, keyed by the fingerprint of its resolved config, and skipped when it is
already there, so a long table can be built over several invocations or machines (copy the cell
files into one ``--out``). A run interrupted half-way resumes from its last completed experience
(its folder under ``--work-dir`` holds the checkpoint). After every run the tables are rewritten:
``<out>/<table>.json`` and ``<out>/<table>.md``.

At scales ``cpu`` and ``full`` every run has a process of its own (so that its peak memory is its
own, and a crash cannot take the table down); ``--no-isolate`` runs them in this process.
``full`` loads pretrained CLIP weights: offline without them it stops at the first run with the
library's message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
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

TINY_BACKBONES = ("tiny-vit", "tiny-rn")
RUN_TABLES = ("main", "ablation", "backbones")


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
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Tables: benchmarks/tables/*.yaml. Scales: benchmarks/tables/scales.yaml. See benchmarks/README.md.",
    )
    add = parser.add_argument
    add("table", nargs="?", choices=(*tables.TABLE_NAMES, "all"),
        help="the table to make (cost reads the runs of main, ablation and backbones; all: every table)")
    add("--scale", choices=tables.SCALE_NAMES, default="cpu",
        help="smoke: seconds per cell, numbers meaningless; cpu: reduced protocol on CPU (main + ablation: about "
             "40 minutes on 2 cores); full: the paper protocol (default: cpu)")
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
    add("--cell-job", type=Path, help=argparse.SUPPRESS)  # internal: run one cell (the child process)
    return parser


# ----------------------------------------------------------------------------------------------
# One cell
# ----------------------------------------------------------------------------------------------


def _threads_for(config: RunConfig, threads: int | None) -> int | None:
    """The CLI's rule: one torch thread for the tiny backbones on CPU unless told otherwise."""
    if threads is not None:
        return threads
    from alta.experiment import resolve_device

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
    import torch

    from alta.experiment import run_experiment

    config = RunConfig.from_dict(job["config"])  # keys added to alta since the plan take their defaults
    threads = _threads_for(config, job.get("threads"))
    if threads is not None:
        torch.set_num_threads(threads)
    run_dir = Path(job["run_dir"])
    resumed = (run_dir / "config.yaml").is_file()
    started_at = tables.now()
    summary = run_experiment(config, output_dir=run_dir, resume=resumed, progress=False, plots=False)
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
        "peak_memory_scope": ("this run's own process" if job["isolated"] else
                              "the whole benchmark process (runs in-process: earlier runs included)"),
        "isolated": job["isolated"],
        "resumed": resumed,
        "machine": tables.machine(),
        "git": job.get("git"),
        "command": job["command"],
        "started_at": started_at,
        "finished_at": tables.now(),
        "run_dir": str(run_dir),
        "config": config.to_dict(),
        "summary": summary,
    }
    write_json(job["cell_path"], record)
    return record


def _error_record(job: dict[str, Any], status: str, error: BaseException) -> dict[str, Any]:
    return {"format": tables.CELL_FORMAT, "version": 1, "key": job["key"], "planned_key": job["key"], "status": status,
            "requested_by": job["requested_by"], "scale": job["scale"], "seed": job["config"]["seed"],
            "error": f"{type(error).__name__}: {error}", "finished_at": tables.now(), "config": job["config"]}


def run_child(job_path: Path) -> int:
    """The child process of an isolated cell: exit 0 done, 3 missing weights, 4 missing data, 1 other."""
    job = json.loads(job_path.read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(levelname)s %(message)s")
    try:
        execute(job)
    except BackboneError as exc:
        write_json(Path(job["run_dir"]) / "bench-error.json", {"type": "BackboneError", "message": str(exc)})
        return 3
    except DataError as exc:
        write_json(job["cell_path"], _error_record(job, "unavailable", exc))
        return 4
    except Exception as exc:  # noqa: BLE001 - reported in the cell record and the log
        traceback.print_exc()
        write_json(job["cell_path"], _error_record(job, "failed", exc))
        return 1
    return 0


class StopAll(Exception):
    """Raised when a run cannot start for a reason that every later run shares (missing weights)."""


def run_cell(cell: tables.Cell, *, out_dir: Path, work_dir: Path, scale: str, isolate: bool, threads: int | None,
             command: str) -> dict[str, Any]:
    """Run one cell (in a child process when ``isolate``); returns its record.

    Raises:
        StopAll: pretrained weights are missing (the library's message).
    """
    run_dir = work_dir / cell.key[:16]
    run_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "key": cell.key, "config": cell.config.to_dict(), "run_dir": str(run_dir),
        "cell_path": str(tables.cell_path(out_dir, cell.key)), "scale": scale, "stand_in": cell.stand_in,
        "requested_by": {"table": cell.table, "row": cell.row, "column": cell.column, "seed": cell.seed},
        "threads": threads, "isolated": isolate, "command": command, "git": tables.git_revision(),
    }
    if not isolate:
        with _log_to(run_dir / "bench-log.txt"):
            try:
                return execute(job)
            except BackboneError as exc:
                raise StopAll(str(exc)) from None
            except DataError as exc:
                record = _error_record(job, "unavailable", exc)
            except AltaError as exc:
                record = _error_record(job, "failed", exc)
        write_json(job["cell_path"], record)
        return record
    job_path = run_dir / "bench-job.json"
    write_json(job_path, job)
    (run_dir / "bench-error.json").unlink(missing_ok=True)
    with open(run_dir / "bench-log.txt", "a", encoding="utf-8") as log:
        code = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cell-job", str(job_path)],
                              stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if code == 3:
        raise StopAll(json.loads((run_dir / "bench-error.json").read_text(encoding="utf-8"))["message"])
    path = tables.cell_path(out_dir, cell.key)
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if record is None or (code == 0) != (record.get("status") == "done"):
        tail = (run_dir / "bench-log.txt").read_text(encoding="utf-8").splitlines()[-15:]
        error = RuntimeError(f"the run's process exited with code {code}; log {run_dir / 'bench-log.txt'}: "
                             + " | ".join(tail))
        record = _error_record(job, "failed", error)
        write_json(path, record)
    return record


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def write_tables(names: Sequence[str], scale: tables.Scale, cells_by_table: dict[str, list[tables.Cell]], *,
                 out_dir: Path, command: str, seeds: Sequence[int]) -> None:
    store = tables.CellStore(out_dir)
    for name in names:
        table = tables.build_table(tables.load_table(name), scale, cells_by_table[name], store=store,
                                   command=command, seeds=seeds)
        write_json(out_dir / f"{name}.json", table)
        write_text(out_dir / f"{name}.md", tables.render_markdown(table))


def _brief(record: dict[str, Any]) -> str:
    if record.get("status") != "done":
        return f"{record.get('status')}: {record.get('error')}"
    s = record["summary"]
    return (f"done in {s['wall_time_s']:.0f} s: Last class-IL {s['last_accuracy']['class_il']:.1f}, "
            f"task-IL {s['last_accuracy']['task_il']:.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.cell_job is not None:
        return run_child(args.cell_job)
    if args.table is None:
        build_parser().error("give a table: main, ablation, backbones, cost or all")
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
    every_cell = [c for name in names for c in cells_by_table[name]]
    todo = sorted(tables.unique_runs(every_cell), key=lambda c: c.seed)
    store = tables.CellStore(out_dir)

    if args.estimate:
        import _estimate

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
    print(f"scale {scale.name}: {len(todo)} distinct runs for {', '.join(names)}, {len(todo) - len(pending)} already "
          f"done, {len(pending)} to run ({'a process each' if isolate else 'in this process'}); results in {out_dir}",
          flush=True)
    failures = 0
    started = last_written = time.perf_counter()
    for index, cell in enumerate(pending, 1):
        stand_in = f" [{cell.stand_in}]" if cell.stand_in else ""
        print(f"[{index}/{len(pending)}] {cell.name}{stand_in} ({cell.config.model.visual}, key {cell.key[:16]}) ...",
              flush=True)
        try:
            record = run_cell(cell, out_dir=out_dir, work_dir=work_dir, scale=scale.name, isolate=isolate,
                              threads=args.threads, command=command)
        except StopAll as stop:
            print(f"\nstopped: a run could not load its backbone, and every later run would fail the same way.\n"
                  f"{stop}", file=sys.stderr)
            write_tables(names, scale, cells_by_table, out_dir=out_dir, command=command, seeds=seeds)
            return 2
        failures += record.get("status") != "done"
        print(f"    {_brief(record)}", flush=True)
        if time.perf_counter() - last_written > 30:  # a long table shows its progress as it goes
            write_tables(names, scale, cells_by_table, out_dir=out_dir, command=command, seeds=seeds)
            last_written = time.perf_counter()
    write_tables(names, scale, cells_by_table, out_dir=out_dir, command=command, seeds=seeds)
    print(f"{len(pending)} runs in {time.perf_counter() - started:.0f} s ({failures} not done); tables: "
          + ", ".join(str(out_dir / f"{n}.md") for n in names))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
