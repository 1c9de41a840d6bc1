"""``torchrun --nproc_per_node 2 -m alta run``: one run on 2 processes (gloo on the CPU).

Each test launches torchrun (two fresh Python processes importing torch: ~20 s on the 2-core CI
machine), so there are few of them; the library side of the data-parallel run is checked in
tests/test_distributed.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alta.cli import main as alta_main

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--epochs", "2", "--eval-every", "1", "--num-experiences", "2", "--set", "data.max_train_per_class=24",
         "--set", "data.max_test_per_class=12", "--no-progress", "--no-plots", "--threads", "1"]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_resume_under_torchrun_gives_the_uninterrupted_result(tmp_path, capsys):
    split, full = tmp_path / "split", tmp_path / "full"
    assert alta_main(["run", *QUICK, "--output-dir", str(split), "--stop-after", "1"]) == 0  # 1 process, stopped
    done = torchrun("-m", "alta", "run", "--resume", str(split), "--no-progress", "--no-plots", cwd=tmp_path)  # 2 processes resume
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results: ") == 1  # rank 0 alone reports
    assert alta_main(["run", *QUICK, "--output-dir", str(full)]) == 0  # 1 process, uninterrupted
    capsys.readouterr()

    resumed, reference = (json.loads((d / "summary.json").read_text()) for d in (split, full))
    for setting in ("class_il", "task_il"):
        for row_a, row_b in zip(resumed["accuracy_matrix"][setting], reference["accuracy_matrix"][setting]):
            assert all(abs(a - b) <= 0.1 for a, b in zip(row_a, row_b)), (setting, resumed["accuracy_matrix"])
    lines = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == len(expected) == 4  # rank 0 alone appended: no line twice
    for mine, theirs in zip(lines, expected):
        assert (mine["experience"], mine["epoch"]) == (theirs["experience"], theirs["epoch"])
        assert all(abs(a - b) <= 0.1 for a, b in zip(mine["class_il"], theirs["class_il"]))
    assert sorted(p.name for p in split.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in full.iterdir() if not p.name.startswith("."))


FAILING = '''
import sys
from alta import distributed as dist
from alta.errors import DataError
from alta.loop import fit

step, calls = fit.train_step, []


def failing_step(*args, **kwargs):  # rank 1 fails at its third step
    calls.append(1)
    if dist.get_rank() == 1 and len(calls) == 3:
        raise DataError("injected failure on rank 1")
    return step(*args, **kwargs)


fit.train_step = failing_step
from alta.cli import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.slow
def test_a_failing_rank_stops_the_run_with_a_message_on_rank_0(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    done = torchrun(str(script), "run", *QUICK, "--output-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode != 0
    assert "alta: error (rank 1 of 2): injected failure on rank 1" in done.stderr
    assert "alta: rank 0 of 2:" in done.stderr and "another rank failed" in done.stderr
    assert f"-m alta run --resume {tmp_path / 'run'}" in done.stderr


@pytest.mark.slow
def test_the_example_learner_under_torchrun_gives_the_single_process_result(tmp_path, capsys):
    """examples/linear_probe.py (a learner that is not ALTA, given with --import) on 2 processes:
    the accuracy matrices and the losses of the 1-process run."""
    args = ["--import", str(REPO / "examples" / "linear_probe.py"), "--method", "linear_probe", *QUICK]
    assert alta_main(["run", *args, "--output-dir", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    done = torchrun("-m", "alta", "run", *args, "--output-dir", str(tmp_path / "two"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert one["method"] == two["method"] == "linear_probe" and one["plugins"] == two["plugins"]
    for setting in ("class_il", "task_il"):
        for row_a, row_b in zip(one["accuracy_matrix"][setting], two["accuracy_matrix"][setting]):
            assert all(abs(a - b) <= 0.1 for a, b in zip(row_a, row_b) if a is not None), (setting, one, two)
    lines = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert len(lines[0]) == len(lines[1]) == 4
    for mine, theirs in zip(*lines):
        assert abs(mine["loss"] - theirs["loss"]) <= 1e-4 * max(1.0, abs(theirs["loss"]))
def test_the_advice_after_another_rank_failed_names_only_what_is_there(tmp_path):
    """Rank 0 printed "continue with: torchrun ... --resume DIR" for a DIR it had already given
    back (a rank failed before the run started)."""
    from alta.cli.commands import peer_failure_advice

    run = tmp_path / "run"
    advice = peer_failure_advice(run, 2)  # given back: no folder
    assert "--resume" not in advice and "run the same torchrun command again" in advice
    run.mkdir()
    (run / "config.yaml").write_text("name: run\n")
    assert f"`torchrun --nproc_per_node 2 -m alta run --resume {run}` restarts it" in peer_failure_advice(run, 2)
    (run / "checkpoint.pt").write_bytes(b"")
    assert f"continue with:\n  torchrun --nproc_per_node 2 -m alta run --resume {run}" in peer_failure_advice(run, 2)


FAILING_AT_START = '''
import sys
from alta import distributed as dist
from alta.errors import DataError
from alta.run import driver

build = driver.Experiment


def failing_build(*args, **kwargs):  # rank 1 fails while the run is being built
    if dist.get_rank() == 1:
        raise DataError("injected failure on rank 1 before the run started")
    return build(*args, **kwargs)


driver.Experiment = failing_build
from alta.cli import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.slow
def test_a_rank_failing_before_the_run_started_gets_no_advice_to_resume_a_folder_given_back(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING_AT_START)
    run = tmp_path / "run"
    done = torchrun(str(script), "run", *QUICK, "--output-dir", str(run), cwd=tmp_path)
    assert done.returncode != 0
    assert "injected failure on rank 1 before the run started" in done.stderr
    assert "alta: rank 0 of 2:" in done.stderr, done.stderr[-3000:]
    if (run / "config.yaml").is_file():  # rank 0 had started: the folder is kept, and resumable
        assert f"-m alta run --resume {run}" in done.stderr
    else:
        assert "--resume" not in done.stderr and "run the same torchrun command again" in done.stderr
