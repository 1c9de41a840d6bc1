"""Run groups at the run level (alta.run.experiment): each member's folder holds what its own run writes."""

from __future__ import annotations

import json

import pytest

from alta.cli.config import apply_overrides, load_config
from alta.errors import ConfigError
from alta.run import group_key, plan_groups, run_experiment, run_group_experiment

BASE = {"train.epochs": 2, "eval.every": 1, "data.max_train_per_class": 8, "data.max_test_per_class": 4,
        "train.batch_size": 16}  # digits, 5 experiences x 2 classes, one step per epoch
MEMBERS = [
    {"model.method": "alta", "buffer.size": 20},
    {"model.method": "cprompt_mlp", "buffer.size": 60},
    {"model.method": "mlp", "buffer.size": 10, "optim.lr": 0.01},
    {"model.method": "alta", "buffer.replay": False},
]


def _config(**overrides):
    return apply_overrides(load_config("default"), {**BASE, **overrides})


def _numbers(summary: dict) -> dict:
    keys = ("accuracy_matrix", "avg_accuracy", "last_accuracy", "forgetting", "bwt", "fwt", "zeroshot_accuracy",
            "train_steps", "train_samples", "buffer_size", "method")
    return {k: summary[k] for k in keys}


@pytest.mark.parametrize("train_cache", ["fixed", pytest.param("none", marks=pytest.mark.slow)])
def test_group_members_write_what_their_own_runs_write(tmp_path, train_cache):
    configs = [_config(**{**m, "train.train_cache": train_cache}) for m in MEMBERS]
    assert len({group_key(c) for c in configs}) == 1
    grouped = run_group_experiment(configs, [tmp_path / f"g{i}" for i in range(len(configs))], plots=False)
    for i, (config, summary) in enumerate(zip(configs, grouped)):
        alone = run_experiment(config, output_dir=tmp_path / f"a{i}", progress=False, plots=False)
        assert _numbers(summary) == _numbers(alone), config.model.method
        assert (tmp_path / f"g{i}" / "metrics.jsonl").read_text() == (tmp_path / f"a{i}" / "metrics.jsonl").read_text()
        assert json.loads((tmp_path / f"g{i}" / "summary.json").read_text())["group"]["size"] == len(configs)


def test_a_group_resumes_each_member_from_its_own_checkpoint(tmp_path):
    """Stopped after experience 0, then one member finished alone by run_experiment, one member's
    checkpoint lost: the group resume skips the first, restarts the second and continues the
    third, and every member ends as the uninterrupted group."""
    from alta.run.checkpoint import CHECKPOINT_NAME

    configs = [_config(**m, **{"train.train_cache": "fixed"}) for m in MEMBERS[:3]]
    full = run_group_experiment(configs, [tmp_path / f"full{i}" for i in range(3)], plots=False)
    dirs = [tmp_path / f"m{i}" for i in range(3)]
    stopped = run_group_experiment(configs, dirs, stop_after=2, plots=False)
    assert [s["experiences_done"] for s in stopped] == [2, 2, 2]
    assert all((d / CHECKPOINT_NAME).is_file() and not (d / "summary.json").exists() for d in dirs)
    run_experiment(configs[0], output_dir=dirs[0], resume=True, progress=False, plots=False)  # one member alone
    (dirs[1] / CHECKPOINT_NAME).unlink()  # this one starts again from the first experience
    resumed = run_group_experiment(configs, dirs, resume=True, plots=False)
    for a, b, d in zip(resumed, full, dirs):
        assert _numbers(a) == _numbers(b)
        assert (d / "metrics.jsonl").read_text().count("\n") == len(b["accuracy_matrix"]["class_il"]) * 2


def test_plan_groups_and_what_cannot_share_a_group(tmp_path):
    configs = [_config(**{"model.method": "alta"}), _config(**{"model.method": "mlp"}),
               _config(**{"model.method": "zeroshot"}), _config(**{"model.method": "alta", "seed": 7}),
               _config(**{"model.method": "cprompt", "train.epochs": 3}), _config(**{"model.method": "resmlp"})]
    assert plan_groups(configs) == [[0, 1, 5], [2], [3], [4]]
    assert plan_groups(configs, max_size=2) == [[0, 1], [2], [3], [4], [5]]
    with pytest.raises(ConfigError, match="cannot run as one group"):
        run_group_experiment([configs[0], configs[3]], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ConfigError, match="cannot run as one group"):
        run_group_experiment([configs[2]], [tmp_path / "z"])
    with pytest.raises(ConfigError, match="one output folder \\(and resume flag\\) per config"):
        run_group_experiment(configs[:2], [tmp_path / "a"])
