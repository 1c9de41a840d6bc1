"""`alta run --seeds`, `alta report`, `alta config show`, `base:` configs, and the run's new
results (loggers, top-5, old/new-class and per-class accuracy, confusion matrix, determinism).

Real runs of the digits default (tiny random CLIP, one epoch, a few images per class): two seed
groups of two seeds each, ALTA and the mlp ablation.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import numpy as np
import pytest
import torch
from helpers import run_cli

from alta.cli import main

QUICK = ["--epochs", "1", "--set", "data.max_train_per_class=16", "--set", "data.max_test_per_class=8",
         "--train-cache", "fixed", "--no-progress", "--threads", "1", "-q"]




@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """Two seed groups on the digits default: ALTA (with the CSV logger, deterministic) and mlp."""
    root = tmp_path_factory.mktemp("seeds")
    threads = torch.get_num_threads()
    try:
        assert main(["run", "--seeds", "0", "1", *QUICK, "--output-dir", str(root / "alta"), "--logger", "csv",
                     "--deterministic"]) == 0
        from alta.seeding import set_deterministic

        set_deterministic(False)  # process-wide: the next run records what is in force
        assert main(["run", "--seeds", "0", "1", *QUICK, "--output-dir", str(root / "mlp"), "--method", "mlp",
                     "--no-plots"]) == 0
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    return root


def _summaries(group):
    return [json.loads((group / f"seed-{s}" / "summary.json").read_text()) for s in (0, 1)]


def test_seed_aggregate_is_the_mean_and_sample_std_of_the_seed_summaries(groups):
    aggregate = json.loads((groups / "alta" / "aggregate.json").read_text())
    runs = _summaries(groups / "alta")
    assert aggregate["seeds"] == [0, 1] == [r["seed"] for r in runs]
    for setting in ("class_il", "task_il"):
        for key in ("avg_accuracy", "last_accuracy", "forgetting", "bwt", "fwt"):
            values = [r[key][setting] for r in runs]
            assert aggregate[key][setting]["mean"] == pytest.approx(np.mean(values))
            assert aggregate[key][setting]["std"] == pytest.approx(np.std(values, ddof=1))
        for k in range(5):
            values = [r["accuracy_matrix"][setting][-1][k] for r in runs]
            assert aggregate["last_row"][setting][k]["mean"] == pytest.approx(np.mean(values))
            assert aggregate["last_row"][setting][k]["std"] == pytest.approx(np.std(values, ddof=1))
            values = [r["accuracy_after_each"][setting][k] for r in runs]
            assert aggregate["accuracy_after_each"][setting][k]["mean"] == pytest.approx(np.mean(values))
    assert runs[0]["avg_accuracy"] != runs[1]["avg_accuracy"]  # the seeds really differ
    assert (groups / "alta" / "aggregate_accuracy_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_the_same_seeds_command_continues_the_group_without_rerunning(groups, capsys):
    before = {s: (groups / "alta" / f"seed-{s}" / "summary.json").read_bytes() for s in (0, 1)}
    shutil.rmtree(groups / "alta" / "seed-1")  # as if the group had been killed before seed 1 started
    code, out, _ = run_cli(capsys, "run", "--seeds", "0", "1", *QUICK, "--output-dir", str(groups / "alta"),
                           "--logger", "csv", "--deterministic")
    torch.use_deterministic_algorithms(False)
    assert code == 0 and "| alta |" in out
    assert (groups / "alta" / "seed-0" / "summary.json").read_bytes() == before[0]  # read, not rerun
    again = json.loads((groups / "alta" / "seed-1" / "summary.json").read_text())
    assert again["accuracy_matrix"] == json.loads(before[1])["accuracy_matrix"]  # same seed, same result


def test_report_tabulates_two_seed_groups_side_by_side(groups, capsys):
    code, out, _ = run_cli(capsys, "report", str(groups / "alta"), str(groups / "mlp"))
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| run | method | buffer | seeds | class-IL Avg")
    assert [line.split(" | ")[1] for line in lines[1:]] == ["oritext_mlp2cprompt_oriimg", "mlp"]
    for line, name in zip(lines[1:], ("alta", "mlp")):
        aggregate = json.loads((groups / name / "aggregate.json").read_text())
        avg = aggregate["avg_accuracy"]["class_il"]
        assert f"{avg['mean']:.1f} ± {avg['std']:.1f}" in line
    code, out, _ = run_cli(capsys, "report", str(groups / "alta"), str(groups / "mlp"), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    mlp = json.loads((groups / "mlp" / "aggregate.json").read_text())
    assert float(rows[1]["task_il_last_accuracy_mean"]) == pytest.approx(mlp["last_accuracy"]["task_il"]["mean"])
    code, out, _ = run_cli(capsys, "report", str(groups / "alta"), str(groups / "mlp" / "seed-0"), "--format", "latex")
    assert code == 0 and r"\begin{tabular}" in out and r"$\pm$" in out


def test_report_refuses_runs_that_are_not_comparable(groups, tmp_path, capsys):
    other = tmp_path / "reordered"
    other.mkdir()
    aggregate = json.loads((groups / "mlp" / "aggregate.json").read_text())
    aggregate["class_names"] = aggregate["class_names"][::-1]  # another class order
    (other / "aggregate.json").write_text(json.dumps(aggregate))
    code, _, err = run_cli(capsys, "report", str(groups / "alta"), str(other))
    assert code == 2 and "not comparable" in err and "class order" in err and "--allow-mixed" in err
    names = aggregate["class_names"]  # each order is shown by its first names, not as "order 1" / "order 2"
    assert f"classes {', '.join(names[:4])}, ... ({len(names)})" in err
    assert f"classes {', '.join(names[::-1][:4])}, ... ({len(names)})" in err
    code, out, _ = run_cli(capsys, "report", str(groups / "alta"), str(other), "--allow-mixed")
    assert code == 0 and "NOTE (--allow-mixed): different class order" in out
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and "neither summary.json" in err


@pytest.mark.parametrize("kind, edit, message", [
    ("run", lambda d: d.pop("bwt"), r"summary.json: bwt.class_il is missing; expected a number"),
    ("run", lambda d: d["last_accuracy"].pop("task_il"), r"summary.json: last_accuracy.task_il is missing"),
    ("run", lambda d: d["avg_accuracy"].__setitem__("class_il", "92.1"), r"avg_accuracy.class_il is '92.1'"),
    ("run", lambda d: d.pop("format"), r"summary.json is not an alta run summary \(expected format 'alta.run-summary'"),
    ("seeds", lambda d: d["forgetting"]["class_il"].pop("mean"), r"aggregate.json: forgetting.class_il.mean is missing"),
    ("seeds", lambda d: d.__setitem__("format", "alta.run-summary"), r"is not an alta seed-group aggregate"),
])
def test_report_names_a_results_file_it_cannot_tabulate(groups, tmp_path, capsys, kind, edit, message):
    """An edited summary or aggregate (or one of another program) is named with the key at fault,
    not a KeyError traceback from the table."""
    name = "summary.json" if kind == "run" else "aggregate.json"
    source = groups / "mlp" / ("seed-0" if kind == "run" else "") / name
    data = json.loads(source.read_text())
    edit(data)
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / name).write_text(json.dumps(data))
    code, _, err = run_cli(capsys, "report", str(tmp_path / "edited"))
    assert code == 2 and re.search(message, err), err
    assert "rerun" in err and "Traceback" not in err


def test_report_says_under_the_table_when_the_runs_were_trained_differently(groups, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "report", str(groups / "alta"), str(groups / "mlp"))
    assert code == 0 and "differ in" not in out  # same epochs, cache mode, schedule and head
    longer = tmp_path / "longer"
    longer.mkdir()
    aggregate = json.loads((groups / "mlp" / "aggregate.json").read_text())
    aggregate["epochs"] = aggregate["epochs"] + 3
    (longer / "aggregate.json").write_text(json.dumps(aggregate))
    code, out, _ = run_cli(capsys, "report", str(groups / "alta"), str(longer))
    assert code == 0
    assert f"NOTE: the runs differ in epochs per experience: {aggregate['epochs'] - 3} (alta); {aggregate['epochs']} " \
           "(longer)" in out


def test_a_run_records_the_new_metrics_loggers_and_determinism(groups):
    folder = groups / "alta" / "seed-0"
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary["top5_accuracy"]) == 5 and summary["top5_mean"] >= summary["last_accuracy"]["class_il"]
    assert summary["old_new_accuracy"]["old"][0] is None and len(summary["old_new_accuracy"]["new"]) == 5
    assert summary["parameters"]["trainable"] == summary["num_trainable_parameters"] < summary["parameters"]["total"]
    assert summary["deterministic"]["deterministic_algorithms"] is True
    assert summary["deterministic"]["cudnn_deterministic"] is True
    mlp = json.loads((groups / "mlp" / "seed-0" / "summary.json").read_text())
    assert mlp["deterministic"]["deterministic_algorithms"] is False
    stored = np.load(folder / "confusion.npz")
    assert sorted(stored.files) == [f"after_experience_{t}" for t in range(5)]
    last = stored["after_experience_4"]
    assert last.shape == (10, 10) and last.dtype == np.int32 and last.sum() == summary["num_test"]
    np.testing.assert_allclose(np.diag(last) / last.sum(1) * 100, summary["per_class_accuracy"])
    assert (folder / "confusion_matrix.png").is_file()
    with open(folder / "evaluations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(records) and float(rows[-1]["class_il_mean"]) == records[-1]["class_il_mean"]


def test_seeds_refuse_a_single_seed_or_resume(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--seeds", "0", "1", "--seed", "3", "--output-dir", str(tmp_path / "x"))
    assert code == 2 and "--seed 3" in err
    code, _, err = run_cli(capsys, "run", "--seeds", "0", "0", *QUICK, "--output-dir", str(tmp_path / "y"))
    assert code == 2 and "distinct" in err
    code, _, err = run_cli(capsys, "run", *QUICK, "--logger", "csv,tensorbord", "--output-dir", str(tmp_path / "z"))
    assert code == 2 and "did you mean 'tensorboard'" in err


def test_config_show_prints_the_resolved_config_and_a_yaml_may_start_from_a_base(capsys, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: default\ntrain: {epochs: 3}\nbuffer: {size: 50}\n")
    code, out, _ = run_cli(capsys, "config", "show", "--config", str(mine), "--seed", "7", "--deterministic")
    assert code == 0
    import yaml

    shown = yaml.safe_load(out)
    assert (shown["name"], shown["seed"], shown["deterministic"]) == ("mine", 7, True)
    assert (shown["train"]["epochs"], shown["buffer"]["size"]) == (3, 50)
    code, default, _ = run_cli(capsys, "config", "show")
    default = yaml.safe_load(default)
    assert shown["data"] == default["data"] and shown["model"] == default["model"]  # from the base, not RN50
    assert default["model"]["visual"] == "tiny-vit" and default["train"]["epochs"] == 20
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    code, _, err = run_cli(capsys, "config", "show", "--config", str(loop))
    assert code == 2 and "cycle" in err
