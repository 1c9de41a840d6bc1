"""The scripts in examples/ run, and say what they show and how long they take.

Default run: every example's ``main()`` is called in this process with ``--quick`` (small data,
few epochs, the tiny random-weight backbone), one torch thread, in a temporary directory; a few
seconds each. ``-m slow``: every example runs as a separate ``python examples/<name>.py``
process at its default size, as a user would run it.
"""

from __future__ import annotations

import ast
import contextlib
import io
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NAMES = ["quickstart", "custom_loop", "own_dataset", "compare_methods", "visualize_features", "linear_probe"]


@contextlib.contextmanager
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead, and contention on busy machines
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_main(name: str, argv: list[str]):
    """Call ``examples/<name>.py``'s ``main(argv)`` in this process; returns (result, stdout)."""
    namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"examples.{name}")
    output = io.StringIO()
    with one_torch_thread(), contextlib.redirect_stdout(output):
        result = namespace["main"](argv)
    return result, output.getvalue()


def test_every_example_is_listed():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_header(name):
    """Each script starts with a docstring saying what it shows, its CPU time, and how to run it,
    and offers a small size for tests (--quick)."""
    source = (EXAMPLES / f"{name}.py").read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source))
    assert doc, f"examples/{name}.py has no module docstring"
    assert "What it shows" in doc and "Time on a CPU" in doc and "Usage:" in doc, doc[:300]
    assert '"--quick"' in source


def _finite(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def test_quickstart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary, out = run_main("quickstart", ["--quick"])
    assert set(summary) == {"class-IL", "task-IL"}
    for metrics in summary.values():
        assert 0.0 <= metrics["avg_accuracy"] <= 100.0 and _finite(metrics["fwt"])
    assert "RANDOM weights" in out and "NOT comparable" in out


def test_custom_loop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary, out = run_main("custom_loop", ["--quick"])
    assert "experience 5/5" in out
    assert 0.0 <= summary["class-IL"]["last_accuracy"] <= summary["task-IL"]["last_accuracy"] + 1e-9


def test_custom_loop_alternating_class_balanced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, out = run_main("custom_loop", ["--quick", "--schedule", "alternate", "--period", "1", "--unit", "epoch",
                                      "--policy", "class_balanced", "--method", "cprompt_mlp"])
    assert "AlternatingSchedule('alternate'" in out and "class_balanced" in out


def test_own_dataset_writes_and_reads_an_image_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary, out = run_main("own_dataset", ["--quick"])
    assert "wrote 300 PNG files" in out
    assert "['zero', 'one']" in out  # the explicit class order undoes the sorted folder order
    assert 0.0 <= summary["avg_accuracy"] <= 100.0


def test_own_dataset_with_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(EXAMPLES / "own_dataset.py"), run_name="examples.own_dataset")
    root = namespace["write_digit_folders"](tmp_path / "mine", per_class=10)
    _, out = run_main("own_dataset", ["--root", str(root), "--num-experiences", "2", "--epochs", "2"])
    assert "num_experiences=2" in out and "class_order=native" in out


def test_compare_methods(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table, out = run_main("compare_methods", ["--quick", "--output", str(tmp_path / "cmp.png")])
    assert list(table) == ["zeroshot", "mlp", "oritext_mlp2cprompt_oriimg"]
    assert "random-weight backbone" in out
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (the plot extra)")
    assert (tmp_path / "cmp.png").stat().st_size > 10_000


def test_compare_methods_rejects_a_typo(tmp_path, monkeypatch):
    import alta

    monkeypatch.chdir(tmp_path)
    with pytest.raises(alta.ConfigError, match="cprompt"):
        run_main("compare_methods", ["--methods", "cpromt", "--epochs", "1"])


def test_linear_probe_runs_beside_alta_as_a_run_group_and_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summaries, out = run_main("linear_probe", ["--quick", "--output-dir", "cmp"])
    probe, alta_run = summaries["linear_probe"], summaries["oritext_mlp2cprompt_oriimg"]
    assert probe["method"] == "linear_probe" and probe["formula"].endswith("LinearProbe")
    assert probe["group"]["size"] == alta_run["group"]["size"] == 2  # one pass over the frozen encoder for both
    assert probe["buffer_size"] == 0 and alta_run["buffer_size"] == 200
    assert [p["name"] for p in probe["plugins"]] == ["linear_probe"] and "plugins" not in alta_run
    assert "| linear_probe | linear_probe | 0 | 42 |" in out and "Plug-in code: method 'linear_probe'" in out
    assert probe["num_trainable_parameters"] == 10 * 512 + 10  # the head: W (C, D) and b (C,)


def test_visualize_features(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the figure needs matplotlib (the plot extra)")
    monkeypatch.chdir(tmp_path)
    scores, out = run_main("visualize_features", ["--quick", "--output", str(tmp_path / "tsne.png")])
    assert len(scores) == 3 and all(-1.0 <= s["silhouette"] <= 1.0 for s in scores.values())
    assert (tmp_path / "tsne.png").stat().st_size > 20_000


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_example_runs_as_a_script_at_default_size(name, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--threads", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "time:" in proc.stdout
