"""benchmarks/run.py with run groups: cells grouped automatically, the same numbers as one by one,
and dispatch through submitit (its local executor runs the Slurm code path on this machine)."""

from __future__ import annotations

import json

import pytest
from test_benchmarks import _load

ROWS = ["--rows", "sgd,alta-200", "--columns", "seq-cifar10"]  # one group of two cells at the smoke scale
RESULT_KEYS = ("accuracy_matrix", "avg_accuracy", "last_accuracy", "forgetting", "bwt", "zeroshot_accuracy",
               "train_steps", "method", "buffer_size")


@pytest.fixture(scope="module")
def run():
    return _load("run")


@pytest.fixture(scope="module")
def tables():
    return _load("_tables")


def _records(out) -> dict:
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))}


def test_dispatch_through_submitit_gives_the_one_by_one_numbers(run, tmp_path, capsys):
    pytest.importorskip("submitit")
    alone, dispatched = tmp_path / "alone", tmp_path / "dispatched"
    assert run.main(["main", "--scale", "smoke", "--out", str(alone), "--no-group", "--no-isolate", "--rows",
                     "alta-200", "--columns", "seq-cifar10"]) == 0  # one of the two cells, on its own
    assert run.main(["main", "--scale", "smoke", "--out", str(dispatched), "--dispatch", "local", *ROWS]) == 0
    out = capsys.readouterr().out
    assert "1 group(s) of 2" in out and "submitit's local executor" in out
    a, b = _records(alone), _records(dispatched)
    assert len(a) == 1 and len(b) == 2 and set(a) < set(b)
    for name, record in b.items():
        assert record["status"] == "done" and record["dispatch"] == "local" and record["group"]["size"] == 2
        assert record["cost"]["wall_time_share_s"] == pytest.approx(record["cost"]["wall_time_s"] / 2)
    for name in a:
        assert a[name]["group"] is None
        assert {k: b[name]["summary"][k] for k in RESULT_KEYS} == {k: a[name]["summary"][k] for k in RESULT_KEYS}
    assert (dispatched / "runs" / "submitit").is_dir()  # submitit's job scripts and logs
    cost = json.loads((dispatched / "main.json").read_text())  # the table was assembled from the job's results
    assert cost["rows"][1]["cells"]["seq-cifar10"]["status"] == "done"
    # resumable: a second dispatch finds the cells done and submits nothing
    assert run.main(["main", "--scale", "smoke", "--out", str(dispatched), "--dispatch", "local", *ROWS]) == 0
    assert "0 to run as 0 unit(s)" in capsys.readouterr().out


def test_the_cpu_tables_fall_into_one_group_per_seed(run, tables):
    scale = tables.load_scales()["cpu"]
    cells = [c for name in ("main", "ablation") for c in tables.plan_cells(tables.load_table(name), scale,
                                                                            seeds=[0, 1, 2])]
    todo = sorted(tables.unique_runs(cells), key=lambda c: c.seed)
    units = run.plan_units(todo, group=True)
    assert sum(len(u) for u in units) == len(todo) == 49
    big = [u for u in units if len(u) > 1]
    # per seed: SGD, ALTA with three buffer sizes, the eight other methods, three schedules
    assert [len(u) for u in big] == [15, 15, 15]
    for unit in big:
        assert len({c.seed for c in unit}) == 1 and "joint" not in {c.row for c in unit}
    alone = sorted(u[0].row for u in units if len(u) == 1)
    assert alone == ["joint", "joint", "joint", "zeroshot"]  # one experience / nothing trained: their own runs
    assert [len(u) for u in run.plan_units(todo, group=False)] == [1] * 49
    assert max(len(u) for u in run.plan_units(todo, group=True, max_size=4)) == 4


def test_a_group_pays_the_image_encoder_once_in_the_projection():
    estimate = _load("_estimate")
    counts = {"cache": "none", "steps": 10, "num_train": 320, "encoded_images": 100}
    assert estimate.shared_seconds(counts, {"t_img": 0.01}, epochs=1) == pytest.approx((320 + 100) * 0.01)
    assert estimate.shared_seconds({**counts, "cache": "fixed"}, {"t_img": 0.01}, epochs=1) == pytest.approx(1.0)


def test_unknown_rows_or_columns_are_refused_naming_the_valid_keys(run, tmp_path, capsys):
    """Unknown --rows / --columns keys were dropped without a word (exit 0), and all-unknown keys
    wrote an empty table."""
    out = tmp_path / "out"
    for flags, said in ((["--rows", "alta-200,alta-2OO"], "--rows alta-2OO: no such row key in main; valid: "),
                        (["--rows", "nope"], "--rows nope: no such row key"),
                        (["--columns", "seq-cifar1"], "--columns seq-cifar1: no such column key in main; valid: "
                                                      "seq-cifar10, seq-cifar100, seq-tinyimagenet")):
        assert run.main(["main", "--scale", "smoke", "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err
    assert not out.exists()  # no empty table


def test_dispatch_to_slurm_without_slurm_says_so_without_a_traceback(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no sbatch, no srun
    assert run.main(["main", "--scale", "smoke", "--out", str(tmp_path / "out"), "--dispatch", "slurm", *ROWS]) == 2
    err = capsys.readouterr().err
    assert "--dispatch slurm needs Slurm, but this machine has no sbatch or srun command" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_jobs_that_slurm_refuses_are_reported_without_a_traceback(run, tmp_path, capsys, monkeypatch):
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", 'echo "sbatch: error: invalid partition specified: gpux" >&2; exit 1'),
                       ("srun", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code = run.main(["main", "--scale", "smoke", "--out", str(tmp_path / "out"), "--dispatch", "slurm",
                     "--slurm-partition", "gpux", *ROWS])
    out, err = capsys.readouterr()
    assert code == 2 and "Slurm did not take the jobs" in err and "invalid partition specified: gpux" in err
    assert "Traceback" not in err and " runs in " not in out
