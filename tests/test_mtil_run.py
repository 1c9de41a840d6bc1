"""`alta run` on multi-domain sequences (MTIL-style and X-TAIL-style): the full T x T matrix,
Transfer/Avg/Last in summary.json, the table and `alta report`; few-shot draws from the seed; a
resume mid-experience; the shipped stand-in configs on the real data at hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run_cli

from alta.cli.config import apply_overrides, load_config
from alta.errors import ConfigError
from alta.loop.callbacks import Callback
from alta.run import RunConfig, run_experiment

TINY = ["--visual", "tiny-vit", "--set", "data.max_train_per_class=12", "--set", "data.max_test_per_class=6",
        "--set", "train.train_cache=fixed", "--eval-every", "0", "--no-progress", "--no-plots", "--threads", "1"]


@pytest.fixture
def two_digits():
    """A sequence of two datasets that needs no files: scikit-learn's digits, twice (the second
    under other templates)."""
    return "digits-twice"


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


def test_an_mtil_style_run_writes_the_full_matrix_and_transfer_avg_last(tmp_path, capsys, two_digits):
    code, out, err = run_cli(capsys, "run", "--dataset", two_digits, "--iterations", "4", "--epochs", "2",
                             "--il-setting", "task-il", "--set", "model.text_templates=ensemble", *TINY,
                             "--output-dir", str(tmp_path / "run"))
    assert code == 0, err
    summary = _summary(tmp_path / "run")
    for setting in ("class_il", "task_il"):
        matrix = summary["accuracy_matrix"][setting]
        assert np.array(matrix).shape == (2, 2) and all(v is not None for row in matrix for v in row)
    mtil = summary["mtil"]
    assert mtil["datasets"] == ["digits", "digits-again"]
    task = np.array(summary["accuracy_matrix"]["task_il"])
    assert mtil["task_il"]["transfer"] == pytest.approx(task[0, 1])
    assert mtil["task_il"]["avg"] == pytest.approx(task.mean())
    assert mtil["task_il"]["last"] == pytest.approx(task[1].mean())
    assert summary["mtil_transfer"]["task_il"] == mtil["task_il"]["transfer"]
    assert summary["headline"]["mtil_transfer"] == mtil["task_il"]["transfer"]  # task-IL: MTIL's setting
    assert mtil["zeroshot"]["task_il"]["transfer"] == pytest.approx(summary["zeroshot_accuracy"]["task_il"][1])
    assert summary["templates"] == {"digits": ['a photo of the number: "{}".'],
                                    "digits-again": ["a photo of a {}.", "a drawing of the number {}."]}
    assert summary["text_templates"] == "ensemble" and summary["iterations"] == 4 and summary["train_steps"] == 8
    assert "Multi-domain metrics over the full 2 x 2 matrix" in out and "task-IL (MTIL) *" in out
    code, report, _ = run_cli(capsys, "report", str(tmp_path / "run"))
    assert code == 0 and "task-IL Transfer" in report and "Transfer, Avg and Last over the full T x T" in report


def test_few_shot_draws_are_the_same_for_the_same_seed(two_digits):
    def indices(run_seed=7, **data):
        config = RunConfig.from_dict({"data": {"dataset": two_digits, "shots": 3, **data}})
        _, experiences = config.data.build(resolution=32, seed=run_seed)
        return [e.train.indices.tolist() for e in experiences]

    first = indices()
    assert first == indices() and all(len(x) == 30 for x in first)
    assert first != indices(run_seed=8)  # shot_seed null: the run's seed
    assert indices(shot_seed=5, run_seed=1) == indices(shot_seed=5, run_seed=2)


def test_a_run_resumed_mid_experience_ends_bit_identical(tmp_path, two_digits):
    config = apply_overrides(load_config("default"), {
        "data.dataset": two_digits, "data.max_train_per_class": 12, "data.max_test_per_class": 6,
        "train.epochs": 3, "train.iterations": 6, "train.train_cache": "none", "eval.every": 1, "device": "cpu"})
    full = run_experiment(config, output_dir=tmp_path / "full", plots=False)

    class Interrupt(Callback):  # after the run's own checkpoint of round 2 of 3 of the second dataset
        def on_epoch_end(self, *, experience, epoch, **_):
            if (experience, epoch) == (1, 1):
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, output_dir=tmp_path / "cut", plots=False, callbacks=[Interrupt()])
    resumed = run_experiment(config, output_dir=tmp_path / "cut", resume=True, plots=False)
    for key in ("accuracy_matrix", "mtil", "zeroshot_accuracy", "train_steps"):
        assert resumed[key] == full[key], key
    lines = lambda d: (d / "metrics.jsonl").read_text()  # noqa: E731
    assert lines(tmp_path / "cut") == lines(tmp_path / "full")


def test_sequence_configs_refuse_what_does_not_apply(two_digits):
    with pytest.raises(ConfigError, match="head 'all'"):
        RunConfig.from_dict({"data": {"dataset": two_digits}, "model": {"head": "seen"}})
    with pytest.raises(ConfigError, match="data.num_experiences do not apply"):
        RunConfig.from_dict({"data": {"dataset": two_digits, "num_experiences": 2}})
    with pytest.raises(ConfigError, match="few-shot draws are for multi-domain sequences"):
        RunConfig.from_dict({"data": {"dataset": "digits", "shots": 5}})
    with pytest.raises(ConfigError, match="not datasets of"):
        RunConfig.from_dict({"data": {"dataset": two_digits, "roots": {"cifar": "/x"}}})
    with pytest.raises(ConfigError, match="multi-domain sequences"):
        RunConfig.from_dict({"data": {"dataset": "mtil-order3"}})
    from alta.data import ScenarioStream
    from alta.run.sections import class_templates

    with pytest.raises(ConfigError, match="does not know its datasets' prompt templates"):
        class_templates(ScenarioStream.from_name("digits"), "ensemble")


@pytest.mark.slow
@pytest.mark.parametrize("config, setting, shots", [("mtil_standin", "task_il", None), ("xtail_standin", "class_il", 16)])
def test_the_stand_in_sequence_runs_mtil_and_xtail_style(tmp_path, capsys, data_root, config, setting, shots):
    """The shipped stand-in configs on the real data at hand (digits, Fashion-MNIST, CIFAR-10, the
    Tiny-ImageNet sample), made smaller still."""
    code, out, err = run_cli(capsys, "run", "--config", config, "--data-root", str(data_root), "--iterations", "3",
                             "--set", "data.max_train_per_class=10", "--set", "data.max_test_per_class=3", "--no-progress", "--no-plots", "--threads", "1",
                             "--output-dir", str(tmp_path / config))
    assert code == 0, err
    summary = _summary(tmp_path / config)
    assert summary["domains"] == ["digits", "fashion-mnist", "cifar10", "tinyimagenet"]
    assert summary["classes_per_experience"] == [10, 10, 10, 200]
    assert summary["il_setting"].replace("-", "_") == setting and summary["shots"] == shots
    assert np.array(summary["accuracy_matrix"][setting]).shape == (4, 4)
    assert set(summary["mtil"][setting]) >= {"transfer", "avg", "last", "transfer_per_dataset"}
    assert "Multi-domain metrics over the full 4 x 4 matrix" in out


def test_the_shipped_multi_domain_configs():
    mtil, xtail = load_config("mtil"), load_config("xtail")
    assert mtil.data.dataset == "mtil-order1" and xtail.data.dataset == "xtail" and xtail.data.shots == 16
    assert (mtil.train.iterations, mtil.train.batch_size) == (1000, 64)  # ZSCL's and MoE-Adapters' budget
    assert mtil.eval.il_setting == "task-il" and xtail.eval.il_setting == "class-il"
    assert mtil.model.text_templates == "ensemble" and xtail.model.template == "a photo of a {}."
    for config in (mtil, xtail, load_config("mtil_standin"), load_config("xtail_standin")):
        assert config.model.head == "all" and config.eval.every == 0
    order2 = apply_overrides(mtil, {"data.dataset": "mtil-order2", "data.shots": 5})
    assert order2.data.dataset == "mtil-order2" and order2.data.shots == 5


@pytest.mark.slow
def test_seed_groups_average_transfer_avg_last(tmp_path, capsys, two_digits):
    code, _, err = run_cli(capsys, "run", "--dataset", two_digits, "--iterations", "2", "--epochs", "1",
                           "--il-setting", "task-il", *TINY, "--seeds", "0", "1", "--output-dir", str(tmp_path / "g"))
    assert code == 0, err
    aggregate = json.loads((tmp_path / "g" / "aggregate.json").read_text())
    runs = [_summary(tmp_path / "g" / f"seed-{s}") for s in (0, 1)]
    assert aggregate["mtil_transfer"]["task_il"]["mean"] == pytest.approx(
        np.mean([r["mtil_transfer"]["task_il"] for r in runs]))
    code, report, _ = run_cli(capsys, "report", str(tmp_path / "g"))
    assert code == 0 and "task-IL Transfer" in report
