"""The `alta` command line and its experiment runner: parsing (both spellings), the offline
default, results files, resume equivalence, and every kind of bad input (exit status, message,
no traceback)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import run_cli

from alta.cli import build_parser, resolve_run_config
from alta.cli.config import (
    RunConfig,
    apply_overrides,
    list_configs,
    load_config,
    load_run_config,
    parse_override,
)
from alta.errors import ConfigError
from alta.run import run_experiment
from alta.run.rundir import claim_run_dir

# A few images per class and one epoch: each digits run takes seconds on a CPU.
QUICK = ["--epochs", "1", "--set", "data.max_train_per_class=24", "--set", "data.max_test_per_class=12",
         "--no-progress", "--no-plots", "--threads", "1"]
REFERENCE_CONFIGS = [f"{kind}_{data}" for data in ("cifar10", "cifar100", "tiny") for kind in ("il", "sgd", "joint")]




def quick_config(**overrides) -> RunConfig:
    base = {"train.epochs": 1, "eval.every": 1, "data.max_train_per_class": 24, "data.max_test_per_class": 12}
    return apply_overrides(load_config("default"), {**base, **overrides})


# ---------------------------------------------------------------------------------------- parsing


def parse(*argv: str):
    return resolve_run_config(build_parser().parse_args(["run", *argv]))


def test_reference_command_line_runs_unchanged():
    # python main.py --config-file configs/xxx.yaml --method xxx --il_setting xxx --visual xxx --buffer_size xxx --seed xxx
    config, output_dir, resume = parse("--config-file", "configs/il_cifar10.yaml", "--method", "cprompt",
                                       "--il_setting", "task-il", "--visual", "RN50", "--buffer_size", "500",
                                       "--seed", "1")
    assert not resume
    assert config.name == "il_cifar10" and config.data.dataset == "seq-cifar10"
    assert (config.model.method, config.eval.il_setting, config.model.visual) == ("cprompt", "task-il", "RN50")
    assert (config.buffer.size, config.seed) == (500, 1)
    assert output_dir.parent == Path("runs") and output_dir.name.startswith("il_cifar10-cprompt-")


def test_both_spellings_give_the_same_config():
    new, _, _ = parse("--config", "il_cifar10", "--method", "alta", "--il-setting", "task-il", "--visual", "RN50",
                      "--buffer-size", "500", "--seed", "1", "--epochs", "3", "--lr-schedule", "constant",
                      "--lr", "1e-5", "--head", "seen", "--schedule", "alternate", "--schedule-period", "2",
                      "--schedule-unit", "epoch", "--eval-every", "5", "--train-cache", "views:4",
                      "--data-root", "/data", "--download", "--device", "cpu")
    old, _, _ = parse("--config-file", "configs/il_cifar10.yaml", "--method", "oritext_mlp2cprompt_oriimg",
                      "--il_setting", "task-il", "--visual", "RN50", "--buffer_size", "500", "--seed", "1",
                      "--epochs", "3", "--lr-schedule", "constant", "--lr", "1e-5", "--head", "seen",
                      "--schedule", "alternate", "--schedule-period", "2", "--schedule-unit", "epoch",
                      "--eval-every", "5", "--train-cache", "views:4", "--cifar10_dir", "/data", "--download",
                      "--device", "cpu")
    assert new == old
    assert new.model.method == "oritext_mlp2cprompt_oriimg"  # the alias is resolved
    assert (new.optim.lr_schedule, new.optim.lr, new.model.head) == ("constant", 1e-5, "seen")
    assert (new.train.schedule, new.train.schedule_period, new.train.schedule_unit) == ("alternate", 2, "epoch")
    assert (new.eval.every, new.train.train_cache, new.data.root, new.data.download) == (5, "views:4", "/data", True)


def test_no_arguments_is_the_offline_default():
    config, _, _ = parse()
    assert config.name == "default"
    assert (config.data.dataset, config.model.visual) == ("digits", "tiny-vit")
    assert config.model.method == "oritext_mlp2cprompt_oriimg"
    assert config.buffer.enabled and config.data.root is None


def test_help_version_and_listings(capsys):
    assert run_cli(capsys, "--help")[0] == 0
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "--il_setting" in out and "--buffer_size" in out and "--resume" in out
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("alta ")
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in ("oritext_mlp2cprompt_oriimg", "oriclip2cprompt_mlp", "zeroshot", "tiny-vit", "RN50", "digits",
                 "seq-cifar10", *REFERENCE_CONFIGS, "default"):
        assert name in out
    code, out, _ = run_cli(capsys, "list", "methods")
    assert code == 0 and "seq-cifar10" not in out
    assert run_cli(capsys, "list", "nonsense")[0] == 2


# ---------------------------------------------------------------------------------------- configs


def test_shipped_configs_are_the_reference_ones():
    # the multi-domain configs (mtil, xtail and their CPU stand-ins) are checked in tests/test_mtil_run.py
    assert set(list_configs()) == {"default", *REFERENCE_CONFIGS, "mtil", "xtail", "mtil_standin", "xtail_standin"}
    splits = {"cifar10": ("seq-cifar10", 10, 5), "cifar100": ("seq-cifar100", 100, 10),
              "tiny": ("seq-tinyimagenet", 200, 10)}
    for name in REFERENCE_CONFIGS:
        config = load_config(name)
        kind, data = name.split("_")
        dataset, num_classes, num_tasks = splits[data]
        assert config.name == name and config.data.dataset == dataset
        # the joint upper bound trains once on every class and is evaluated on the sequential split
        assert config.data.joint == (kind == "joint")
        assert (config.data.num_experiences, config.data.classes_per_experience) == (
            num_tasks, num_classes // num_tasks)
        assert config.train.epochs == (100 if kind == "joint" else 30)
        assert config.buffer.enabled == (kind == "il") and config.buffer.size == 200
        assert (config.train.batch_size, config.optim.lr, config.optim.momentum, config.optim.weight_decay) == (
            32, 0.002, 0.9, 5e-4)
        assert (config.optim.lr_schedule, config.optim.warmup_epochs, config.optim.warmup_lr) == ("cosine", 1, 1e-5)
        assert (config.model.alpha, config.model.beta, config.eval.every) == (0.4, 0.4, 10)
        assert (config.model.visual, config.model.method, config.model.head) == (
            "RN50", "oritext_mlp2cprompt_oriimg", "all")
        assert (config.data.transform, config.train.train_cache, config.seed) == ("reference", "none", 42)


@pytest.mark.parametrize("name", ["default", *REFERENCE_CONFIGS])
def test_config_round_trip(name, tmp_path):
    config = load_config(name)
    assert RunConfig.from_dict(yaml.safe_load(config.to_yaml())) == config
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config
    assert load_config(path).fingerprint() == config.fingerprint()


def test_unknown_yaml_key_is_named(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "'train.epoch'" in message and "did you mean 'train.epochs'" in message and "batch_size" in message
    path.write_text("trian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'trian'.*did you mean 'train'"):
        load_config(path)
    code, _, err = run_cli(capsys, "run", "--config", str(path), "--output-dir", str(tmp_path / "out"))
    assert code == 2 and err.startswith("alta: error:") and "trian" in err
    assert not (tmp_path / "out").exists()


def test_an_abbreviated_or_misspelt_option_is_refused_with_the_option_meant(tmp_path, capsys):
    for typed, meant in (("--epoch", "--epochs"), ("--buffersize", "--buffer-size"), ("--metod", "--method")):
        code, _, err = run_cli(capsys, "run", typed, "2", "--output-dir", str(tmp_path / "out"))
        assert code == 2 and f"unrecognized arguments: {typed} 2; did you mean {meant} for {typed}?" in err
    code, _, err = run_cli(capsys, "run", "--zzzz", "2")
    assert code == 2 and "unrecognized arguments: --zzzz 2" in err and "did you mean" not in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_option_is_reported_by_its_subcommand(capsys):
    code, _, err = run_cli(capsys, "config", "show", "--sett", "train.epochs=2")
    assert code == 2 and err.startswith("usage: alta config show") and "did you mean --set for --sett?" in err
    code, _, err = run_cli(capsys, "run", "--eposh", "2")
    assert code == 2 and err.startswith("usage: alta run") and "did you mean --epochs for --eposh?" in err


def test_an_option_given_before_its_subcommand_is_named_as_misplaced(capsys):
    code, _, err = run_cli(capsys, "--epochs", "run")
    assert code == 2 and "--epochs goes after the subcommand" in err and "did you mean" not in err


def test_report_refuses_a_file_and_a_folder_given_twice(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(capsys, "run", *QUICK, "--output-dir", str(run_dir))[0] == 0
    code, _, err = run_cli(capsys, "report", str(run_dir / "summary.json"))
    assert code == 2 and "summary.json: a file" in err
    code, _, err = run_cli(capsys, "report", str(run_dir), str(tmp_path / "." / "run"))
    assert code == 2 and "listed twice" in err
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)  # a finished run copied elsewhere and resumed there: its own folder is named
    code, out, _ = run_cli(capsys, "run", "--resume", str(moved), "--no-progress", "--no-plots")
    assert code == 0 and f"results: {moved}" in out and str(run_dir) + "\n" not in out


def test_version_is_one_line_at_any_terminal_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.count("\n") == 1 and out.startswith("alta ") and "python" in out


def test_a_value_given_with_set_is_named_as_typed(tmp_path, capsys):
    code, _, err = run_cli(capsys, "config", "show", "--set", "train.epochs=two")
    assert code == 2 and "(given as --set train.epochs=two)" in err
    code, _, err = run_cli(capsys, "run", "--method", "cprompt", "--set", "train.schedule=alternat",
                           "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "did you mean 'alternate'?" in err and "(given as --set train.schedule=alternat)" in err


def test_an_error_names_the_flag_of_the_key_it_is_about(capsys):
    """`--set train.epoch=3 --epochs 2`: the unknown key came from --set, and the message quoted
    'train.epochs' as a suggestion, so it was blamed on --epochs 2."""
    code, _, err = run_cli(capsys, "config", "show", "--set", "train.epoch=3", "--epochs", "2")
    assert code == 2 and "unknown config key 'train.epoch'; did you mean 'train.epochs'?" in err
    assert "--epochs 2" not in err
    code, _, err = run_cli(capsys, "config", "show", "--set", "train.batch_size=0", "--epochs", "2")
    assert code == 2 and "(given as --set train.batch_size=0)" in err


def test_missing_data_offers_download_only_for_a_dataset_that_can_be_downloaded(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--dataset", "seq-cifar100", "--data-root", str(tmp_path / "none"),
                           "--output-dir", str(tmp_path / "a"))
    assert code == 1 and "--data-root DIR gives the folder holding the data; --download lets torchvision" in err
    code, _, err = run_cli(capsys, "run", "--dataset", "cars", "--split", "B50-Inc10", "--data-root",
                           str(tmp_path / "none"), "--output-dir", str(tmp_path / "b"))
    assert code == 1 and "--data-root DIR gives the folder holding the data." in err and "--download" not in err


def test_keys_checked_together_may_be_given_in_any_order_and_are_checked_when_read(capsys):
    """buffer.per_class belongs to the herding policy: refused with another policy when the config
    is read (it was refused only after the backbone was built), in either order of the flags."""
    for order in (["buffer.per_class=5", "buffer.policy=herding"], ["buffer.policy=herding", "buffer.per_class=5"]):
        code, out, _ = run_cli(capsys, "config", "show", *[a for kv in order for a in ("--set", kv)])
        assert code == 0 and "policy: herding" in out and "per_class: 5" in out
    code, _, err = run_cli(capsys, "config", "show", "--set", "buffer.per_class=5")
    assert code == 2 and "config key 'buffer.per_class'" in err and "policy 'reservoir'" in err


def test_missing_folders_and_files_are_named_as_missing(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--resume", str(tmp_path / "gone"))
    assert code == 2 and f"--resume {tmp_path / 'gone'}: no such folder" in err
    code, _, err = run_cli(capsys, "report", str(tmp_path / "gone"))
    assert code == 2 and f"{tmp_path / 'gone'}: no such folder" in err
    code, _, err = run_cli(capsys, "run", "--visual", str(tmp_path / "weights" / "RN50.pt"))
    assert code == 2 and "not found: no such file (nor its folder" in err
    code, _, err = run_cli(capsys, "run", "--visual", str(tmp_path))
    assert code == 2 and "is a folder, not a checkpoint file" in err
    code, _, err = run_cli(capsys, "run", "--visual", "ViT-B/17")  # a name with a slash stays a name
    assert code == 2 and "did you mean 'ViT-B/16'?" in err


def test_a_data_root_one_level_too_high_names_the_folder_inside(tmp_path, capsys):
    (tmp_path / "cifar10").mkdir()
    code, _, err = run_cli(capsys, "run", "--config", "il_cifar10", "--visual", "tiny-vit", "--data-root",
                           str(tmp_path), "--output-dir", str(tmp_path / "out"))
    assert code == 1 and f"{tmp_path} holds cifar10: is the data in there (root='{tmp_path / 'cifar10'}')?" in err
    (tmp_path / "cifar100").mkdir()  # another dataset: not offered; the exact name first
    (tmp_path / "CIFAR10-old").mkdir()
    code, _, err = run_cli(capsys, "run", "--config", "il_cifar10", "--visual", "tiny-vit", "--data-root",
                           str(tmp_path), "--output-dir", str(tmp_path / "out"))
    assert f"{tmp_path} holds cifar10, CIFAR10-old: is the data in there (root='{tmp_path / 'cifar10'}')?" in err
    code, _, err = run_cli(capsys, "run", "--config", "il_cifar10", "--visual", "tiny-vit", "--data-root",
                           str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "out"))
    assert code == 1 and f"{tmp_path / 'nowhere'} does not exist" in err


def test_the_stream_line_gives_the_classes_of_each_experience_in_order(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", *QUICK, "--split", "B4-Inc2", "--output-dir", str(tmp_path / "run"))
    assert code == 0 and "stream digits: 4 experiences: 4 + 3 x 2 classes" in err


def test_stop_after_beyond_the_stream_says_the_run_goes_to_its_end(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", *QUICK, "--set", "data.num_experiences=2", "--stop-after", "9",
                           "--output-dir", str(tmp_path / "run"))
    assert code == 0 and "stop after 9 experience(s) asked, but the stream has 2: the run goes to its end" in err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["complete"] is True
    code, _, err = run_cli(capsys, "run", *QUICK, "--set", "data.num_experiences=2", "--stop-after", "2",
                           "--output-dir", str(tmp_path / "exact"))
    assert code == 0 and "stop after" not in err  # stopping after the last experience is the end


def test_bad_values_and_types_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.epochs.*integer"):
        apply_overrides(load_config(), {"train.epochs": "many"})
    with pytest.raises(ConfigError, match="train.epochs.*>= 1"):
        apply_overrides(load_config(), {"train.epochs": 0})
    with pytest.raises(ConfigError, match="unknown config key 'optim.learning_rate'"):
        apply_overrides(load_config(), {"optim.learning_rate": 0.1})
    with pytest.raises(ConfigError, match="alternate"):
        apply_overrides(load_config(), {"model.method": "cprompt", "train.schedule": "alternate"})
    assert apply_overrides(load_config(), {"optim.lr": "1e-5"}).optim.lr == 1e-5  # YAML reads 1e-5 as a string
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.epochs")
    assert parse_override("data.class_order=[1, 0]") == ("data.class_order", [1, 0])
    path = tmp_path / "broken.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_overrides_never_mutate_the_config():
    config = load_config("il_cifar10")
    before = config.to_dict()
    changed = apply_overrides(config, {"train.epochs": 1, "seed": 7, "model.visual": "tiny-vit"})
    assert config.to_dict() == before
    assert (changed.train.epochs, changed.seed, changed.model.visual) == (1, 7, "tiny-vit")
    with pytest.raises(Exception):
        config.train.epochs = 2  # frozen


def test_reference_format_yaml_is_translated(tmp_path):
    reference = {
        "dataset": {"name": "seq-cifar100", "image_size": 224, "num_workers": 4, "n_classes_per_task": 10,
                    "n_tasks": 10},
        "model": {"pretrained": True, "use_replay": False},
        "OPTIM": {"NAME": "sgd", "LR": 0.002, "WEIGHT_DECAY": 0.0005, "MOMENTUM": 0.9, "SGD_DAMPNING": 0,
                  "SGD_NESTEROV": False, "RMSPROP_ALPHA": 0.99, "ADAM_BETA1": 0.9, "ADAM_BETA2": 0.999,
                  "STAGED_LR": False, "NEW_LAYERS": "()", "BASE_LR_MULT": 0.1, "MAX_EPOCH": 30, "WARMUP_EPOCH": 1,
                  "WARMUP_TYPE": "constant", "WARMUP_CONS_LR": 0.00001, "WARMUP_RECOUNT": True},
        "TRAINER": {"COOP": {"N_CTX": 4, "CTX_INIT": "a photo of a", "CLASS_TOKEN_POSITION": "end"}},
        "train": {"batch_size": 32, "alpha": 0.4, "beta": 0.4, "num_classes": 100},
        "eval": {"test_epochs": 10, "batch_size": 32},
    }
    path = tmp_path / "sgd_cifar100.yaml"
    path.write_text(yaml.safe_dump(reference))
    config = load_config(path)
    shipped = load_config("sgd_cifar100")
    assert config.name == "sgd_cifar100"
    for section in ("data", "buffer", "optim", "train"):
        got, want = getattr(config, section).__dict__, getattr(shipped, section).__dict__
        differing = {k for k in got if got[k] != want[k]} - {"num_workers"}
        assert not differing, (section, differing)
    assert (config.model.alpha, config.model.beta, config.model.ctx_init) == (0.4, 0.4, "a photo of a")
    reference["OPTIM"]["NAME"] = "adam"
    path.write_text(yaml.safe_dump(reference))
    with pytest.raises(ConfigError, match="sgd"):
        load_config(path)


# ---------------------------------------------------------------------------------------- runs


def test_default_run_writes_every_result(tmp_path, capsys):
    out_dir = tmp_path / "run"
    args = [a for a in QUICK if a != "--no-plots"]
    code, out, err = run_cli(capsys, "run", *args, "--output-dir", str(out_dir))
    assert code == 0, err
    assert "class-IL *" in out and "task-IL" in out and "Avg" in out and "Forget" in out
    assert "RANDOM" in out and "NOT comparable" in out
    assert "tiny-vit" in err and "RANDOM" in err  # the log says which backbone was used

    summary = json.loads((out_dir / "summary.json").read_text())
    T = summary["num_experiences"]
    assert T == 5 and summary["dataset"] == "digits"
    for setting in ("class_il", "task_il"):
        matrix = np.array(summary["accuracy_matrix"][setting], dtype=float)
        assert matrix.shape == (T, T) and np.isfinite(matrix).all()
        assert summary["avg_accuracy"][setting] == pytest.approx(
            np.mean([matrix[t, : t + 1].mean() for t in range(T)]))
        assert summary["last_accuracy"][setting] == pytest.approx(matrix[-1].mean())
        for key in ("forgetting", "bwt", "fwt"):
            assert isinstance(summary[key][setting], float)
        assert len(summary["zeroshot_accuracy"][setting]) == T
    assert summary["il_setting"] == "class-il" and summary["head"] == "all"
    assert summary["backbone"]["name"] == "tiny-vit" and summary["pretrained"] is False
    assert summary["method"] == "oritext_mlp2cprompt_oriimg" and "cos(f1, w2)" in summary["formula"]
    assert summary["seed"] == 42 and summary["wall_time_s"] > 0 and summary["buffer_size"] == 200
    assert summary["train_samples"] == summary["epochs"] * summary["num_train"]  # every sample once per epoch
    assert summary["train_steps"] >= summary["train_samples"] / 32
    assert summary["peak_memory"]["cpu_maxrss_mib"] > 0
    assert {"alta", "torch", "torchvision", "clip-anytorch", "numpy", "python"} <= set(summary["versions"])
    assert summary["device"]["type"] == "cpu"

    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["experience"] for r in records] == list(range(T))  # 1 epoch: one evaluation per experience
    for r in records:
        assert {"experience", "epoch", "class_il", "task_il", "class_il_mean", "task_il_mean", "loss"} <= set(r)
        assert len(r["class_il"]) == r["experience"] + 1

    config = load_config(out_dir / "config.yaml")
    expected, _, _ = parse(*args, "--output-dir", str(out_dir))
    assert config == expected
    assert (out_dir / "checkpoint.pt").is_file()
    pytest.importorskip("matplotlib")
    assert (out_dir / "accuracy_matrix.png").stat().st_size > 0
    assert (out_dir / "accuracy_curve.png").stat().st_size > 0


def test_resume_after_a_kill_repeats_the_uninterrupted_run(tmp_path, capsys):
    torch.set_num_threads(1)
    config = quick_config(**{"train.epochs": 2})
    full = run_experiment(config, output_dir=tmp_path / "full", progress=False, plots=False)

    split = tmp_path / "split"
    flags = ["--epochs", "2", "--eval-every", "1", "--set", "data.max_train_per_class=24",
             "--set", "data.max_test_per_class=12", "--no-progress", "--no-plots", "--threads", "1"]
    code, out, _ = run_cli(capsys, "run", *flags, "--output-dir", str(split), "--stop-after", "2")
    assert code == 0 and "stopped after 2 of 5" in out and "--resume" in out
    assert not (split / "summary.json").exists()
    state = torch.load(split / "checkpoint.pt", weights_only=True)
    assert state["next_experience"] == 2
    # a killed run may have written evaluations after its last checkpoint: resume drops them
    with open(split / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"experience": 2, "epoch": 1, "stale": True}) + "\n")

    # operational options (device, data root, workers) may change on resume
    code, out, err = run_cli(capsys, "run", "--resume", str(split), "--no-progress", "--threads", "1",
                             "--device", "cpu", "--num-workers", "0")
    assert code == 0, err
    assert "resuming" in err
    resumed = json.loads((split / "summary.json").read_text())
    for setting in ("class_il", "task_il"):
        assert resumed["accuracy_matrix"][setting] == full["accuracy_matrix"][setting]
    assert (split / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()

    # resuming a complete run only reports it
    code, out, _ = run_cli(capsys, "run", "--resume", str(split), "--no-progress")
    assert code == 0 and "class-IL *" in out

    # a damaged summary.json is reported, not overwritten; without it the checkpoint rebuilds it
    (split / "summary.json").write_text("[1, 2]")
    code, _, err = run_cli(capsys, "run", "--resume", str(split), "--no-progress")
    assert code == 1 and "summary.json is damaged" in err and "checkpoint" in err
    assert (split / "summary.json").read_text() == "[1, 2]"
    (split / "summary.json").unlink()
    code, out, err = run_cli(capsys, "run", "--resume", str(split), "--no-progress", "--no-plots", "--threads", "1")
    assert code == 0 and "class-IL *" in out, err
    rebuilt = json.loads((split / "summary.json").read_text())
    assert rebuilt["accuracy_matrix"] == resumed["accuracy_matrix"]
    assert (split / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()


def test_resume_refuses_contradicting_flags_and_damaged_checkpoints(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, _ = run_cli(capsys, "run", *QUICK, "--output-dir", str(run_dir), "--stop-after", "1")
    assert code == 0
    code, _, err = run_cli(capsys, "run", "--resume", str(run_dir), "--epochs", "5")
    assert code == 2 and "--epochs 5" in err and "started with 1" in err
    code, _, err = run_cli(capsys, "run", "--resume", str(run_dir), "--config", "il_cifar10")
    assert code == 2 and "cannot resume" in err
    (tmp_path / "nothing").mkdir()
    code, _, err = run_cli(capsys, "run", "--resume", str(tmp_path / "nothing"))
    assert code == 2 and "no config.yaml" in err

    # a checkpoint of another run (other seed) in this folder
    other = tmp_path / "other"
    run_cli(capsys, "run", *QUICK, "--seed", "3", "--output-dir", str(other), "--stop-after", "1")
    shutil.copy(other / "checkpoint.pt", run_dir / "checkpoint.pt")
    code, _, err = run_cli(capsys, "run", "--resume", str(run_dir), "--no-progress")
    assert code == 1 and "belongs to a different run" in err

    (run_dir / "checkpoint.pt").write_bytes(b"this is not a checkpoint")
    code, _, err = run_cli(capsys, "run", "--resume", str(run_dir), "--no-progress")
    assert code == 1 and "cannot read the checkpoint" in err and "Delete" in err


_KILL_AFTER_EPOCH = """
import os, signal, sys
import alta.run.driver as experiment
from alta.loop.callbacks import Callback
from alta.cli import main

class Kill(Callback):  # runs after the Checkpointer: the process dies right after that checkpoint
    def on_epoch_end(self, *, experience, epoch, **_):
        if (experience, epoch) == (1, 1):
            os.kill(os.getpid(), signal.SIGKILL)

real = experiment.run_stream
experiment.run_stream = lambda *a, callbacks, **k: real(*a, callbacks=[*callbacks, Kill()], **k)
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_mid_experience_resumes_after_its_last_epoch(tmp_path, capsys):
    """SIGKILL after epoch 2 of 3 of experience 2: the resumed run continues at epoch 3 of
    experience 2 and ends with the uninterrupted run's accuracy matrices and metrics.jsonl."""
    torch.set_num_threads(1)
    flags = ["--epochs", "3", "--eval-every", "1", "--num-experiences", "2", "--set", "data.max_train_per_class=16",
             "--set", "data.max_test_per_class=8", "--no-progress", "--no-plots", "--threads", "1"]
    assert run_cli(capsys, "run", *flags, "--output-dir", str(tmp_path / "full"))[0] == 0
    full = json.loads((tmp_path / "full" / "summary.json").read_text())

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _KILL_AFTER_EPOCH, "run", *flags, "--output-dir", str(killed)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert (state["next_experience"], state["next_epoch"]) == (1, 2)  # experience 2, epoch 3 is next
    assert not (killed / "summary.json").exists()

    code, _, err = run_cli(capsys, "run", "--resume", str(killed), "--no-progress", "--threads", "1")
    assert code == 0, err
    assert "at experience 2 of 2, epoch 3" in err
    resumed = json.loads((killed / "summary.json").read_text())
    for setting in ("class_il", "task_il"):
        assert resumed["accuracy_matrix"][setting] == full["accuracy_matrix"][setting]
    assert resumed["train_steps"] == full["train_steps"]
    assert (killed / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()


def test_ctrl_c_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    import alta.run.driver as experiment
    from alta.loop.callbacks import Callback

    real = experiment.run_stream

    class Interrupt(Callback):
        def on_experience_end(self, *, experience, result):
            if experience == 1:
                raise KeyboardInterrupt

    def interrupted(*args, callbacks, **kwargs):  # after the run's own callbacks (the checkpoint)
        return real(*args, callbacks=[*callbacks, Interrupt()], **kwargs)

    monkeypatch.setattr(experiment, "run_stream", interrupted)
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", *QUICK, "--output-dir", str(run_dir))
    assert code == 130
    assert str(run_dir / "checkpoint.pt") in err and f"alta run --resume {run_dir}" in err
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["next_experience"] == 2
    assert not list(run_dir.glob(".*.tmp"))  # no half-written files


def test_output_dir_holding_another_run_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(capsys, "run", *QUICK, "--output-dir", str(run_dir))[0] == 0
    before = (run_dir / "summary.json").read_text()
    code, _, err = run_cli(capsys, "run", *QUICK, "--seed", "1", "--output-dir", str(run_dir))
    assert code == 2 and "already holds a run" in err and "--output-dir" in err
    assert (run_dir / "summary.json").read_text() == before


def test_zeroshot_method_trains_nothing(tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", *QUICK, "--method", "zeroshot", "--output-dir", str(tmp_path / "zs"))
    assert code == 0, err
    summary = json.loads((tmp_path / "zs" / "summary.json").read_text())
    for setting in ("class_il", "task_il"):
        matrix = np.array(summary["accuracy_matrix"][setting])
        assert np.allclose(matrix, np.array(summary["zeroshot_accuracy"][setting])[None, :])
    assert summary["num_trainable_parameters"] == 0 and summary["buffer_size"] == 0


def test_sgd_lower_bound_has_no_buffer(tmp_path):
    torch.set_num_threads(1)
    config = quick_config(**{"buffer.replay": False, "data.num_experiences": 2})
    summary = run_experiment(config, output_dir=tmp_path / "sgd", progress=False, plots=False)
    assert summary["buffer_size"] == 0 and summary["num_experiences"] == 2


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--config", "il_cifar1O"], ["unknown config 'il_cifar1O'", "did you mean 'il_cifar10'", "joint_tiny"]),
        (["--config-file", "configs/nope.yaml"], ["unknown config", "il_cifar10"]),
        (["--method", "altaa"], ["unknown method 'altaa'", "oritext_mlp2cprompt_oriimg", "cprompt_mlp"]),
        (["--visual", "RN5O"], ["unknown backbone 'RN5O'", "did you mean 'RN50'", "tiny-vit"]),
        (["--il-setting", "domain-il"], ["invalid choice", "class-il", "task-il"]),
        (["--head", "some"], ["invalid choice", "seen"]),
        (["--epochs", "0"], ["--epochs", ">= 1"]),
        (["--train-cache", "views:0"], ["views:K"]),
        (["--set", "nonsense=1"], ["unknown config key 'nonsense'"]),
        (["--device", "cuda:0" if not torch.cuda.is_available() else "tpu"], ["device"]),
    ],
)
def test_bad_names_and_values_exit_2_without_traceback(argv, expected, tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", *argv, "--output-dir", str(tmp_path / "out"))
    assert code == 2
    assert "alta: error:" in err
    for text in expected:
        assert text in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_missing_data_root_shows_layouts_and_flags(tmp_path, capsys):
    for extra in ([], ["--data-root", str(tmp_path / "missing")]):
        code, _, err = run_cli(capsys, "run", "--config", "il_cifar10", "--visual", "tiny-vit", *extra,
                               "--output-dir", str(tmp_path / "out"))
        assert code == 1
        assert "Expected one of these layouts" in err and "--data-root" in err and "--download" in err
    assert not (tmp_path / "out").exists()


def test_missing_data_is_reported_before_pretrained_weights_are_loaded(tmp_path, capsys):
    # the weights are absent too (and may not be downloaded): the data, checked first, is what is reported
    code, _, err = run_cli(capsys, "run", "--config", "il_cifar10", "--visual", "RN50",
                           "--data-root", str(tmp_path / "missing"), "--set", f"model.download_root={tmp_path}",
                           "--set", "model.download_weights=false", "--output-dir", str(tmp_path / "out"))
    assert code == 1 and "no CIFAR data found" in err and "weights" not in err


def test_pretrained_weights_offline_say_where_to_put_them(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--visual", "RN50", "--set", f"model.download_root={tmp_path}",
                           "--set", "model.download_weights=false", "--output-dir", str(tmp_path / "out"))
    assert code == 1 and "RN50" in err and str(tmp_path) in err and "tiny-vit" in err


def test_console_script_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "alta.cli", "run", "--method", "nope"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "alta: error: unknown method 'nope'" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------- real data


@pytest.mark.data
def test_cifar10_config_runs_on_real_images(cifar10_root, tmp_path, capsys):
    code, out, err = run_cli(
        capsys, "run", "--config", "il_cifar10", "--data-root", str(cifar10_root), "--visual", "tiny-vit",
        "--epochs", "1", "--set", "data.max_train_per_class=8", "--set", "data.max_test_per_class=8",
        "--no-progress", "--no-plots", "--threads", "1", "--output-dir", str(tmp_path / "c10"))
    assert code == 0, err
    summary = json.loads((tmp_path / "c10" / "summary.json").read_text())
    assert summary["dataset"] == "seq-cifar10" and summary["num_experiences"] == 5
    assert summary["backbone"]["input_resolution"] == 32  # the stream follows the backbone's resolution
    assert summary["class_names"][:2] == ["airplane", "automobile"]
    assert summary["num_train"] == 80 and summary["num_test"] == 80


# ---------------------------------------------------------------------------------------- hardening


def _no_backbone(monkeypatch):
    """Fail the test if a run gets as far as loading a backbone."""
    from alta.run import ModelConfig

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone was loaded before the error was found")

    monkeypatch.setattr(ModelConfig, "build_backbone", refuse)


def test_claiming_a_run_folder_is_exclusive(tmp_path):
    config = load_config("default")
    folder = tmp_path / "run"
    first = claim_run_dir(folder, config)
    assert (folder / "config.yaml").is_file() and first.held
    with pytest.raises(ConfigError, match="in use by another `alta run`"):  # a second process, same folder
        claim_run_dir(folder, config)
    with pytest.raises(ConfigError, match="another alta process is running this run"):
        claim_run_dir(folder, config, resume=True)
    first.release()
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        claim_run_dir(folder, config)
    with claim_run_dir(folder, config, resume=True) as resumed:  # free again: resume claims it
        assert resumed.held
    assert not resumed.held

    # default names: a taken name gives the next free one
    with claim_run_dir(folder, config, next_free=True) as second, \
            claim_run_dir(folder, config, next_free=True) as third:
        assert (second.path.name, third.path.name) == ("run-2", "run-3")

    # many claims at the same instant: exactly one wins each folder
    for attempt in range(10):
        target, barrier, outcomes = tmp_path / f"race{attempt}", threading.Barrier(4), []

        def claim():
            barrier.wait()
            try:
                outcomes.append(claim_run_dir(target, config))
            except ConfigError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [o for o in outcomes if not isinstance(o, Exception)]
        assert len(winners) == 1 and len(outcomes) == 4
        winners[0].release()


def test_failed_start_gives_the_folder_back(tmp_path):
    config = load_config("default")
    mine = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError):
        with claim_run_dir(mine, config):
            raise RuntimeError("the backbone could not be loaded")
    assert not (tmp_path / "new").exists()  # the folders it created are gone
    shared = tmp_path / "cell"  # a folder made by a caller (e.g. the benchmark) holding its own files
    shared.mkdir()
    (shared / "bench-log.txt").write_text("log")
    with pytest.raises(ConfigError):
        run_experiment(apply_overrides(config, {"model.visual": "nope"}), output_dir=shared)
    claimed = claim_run_dir(shared, config)
    with pytest.raises(KeyboardInterrupt):
        with claimed:
            raise KeyboardInterrupt
    assert sorted(p.name for p in shared.iterdir()) == ["bench-log.txt"]


def test_kill_leaves_no_stale_lock(tmp_path, capsys):
    """A run killed with SIGKILL leaves no lock behind: its folder can be resumed at once (while
    the process lives, it cannot)."""
    pytest.importorskip("fcntl")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(quick_config(**{"data.num_experiences": 2}).to_yaml())
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(folder)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="another alta process"):
            claim_run_dir(folder, load_config("default"), resume=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with claim_run_dir(folder, load_config("default"), resume=True) as claimed:
        assert claimed.held


def test_concurrent_cli_runs_never_share_a_folder(tmp_path, capsys, monkeypatch):
    import alta.cli.commands as experiment  # the command line's own names

    ran = []

    def fake_run(config, *, output_dir, resume, **kwargs):  # records where the run would write
        assert output_dir.held
        ran.append(output_dir.path)
        output_dir.mark_started()
        return {"complete": False, "experiences_done": 1, "num_experiences": 5, "output_dir": str(output_dir.path)}

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    config = load_config("default")
    # an explicit --output-dir in use by another run: refused, nothing of that run touched
    busy = tmp_path / "busy"
    with claim_run_dir(busy, config):
        (busy / "metrics.jsonl").write_text("other run\n")
        code, _, err = run_cli(capsys, "run", "--output-dir", str(busy))
        assert code == 2 and "in use by another `alta run`" in err and "--output-dir" in err
    assert (busy / "metrics.jsonl").read_text() == "other run\n" and not ran
    # the default name taken by a run started in the same second: the next free name
    fixed = tmp_path / "runs" / "default-alta-20250101-120000"
    import alta.cli.resolve as resolve

    monkeypatch.setattr(resolve, "default_output_dir", lambda config, **kwargs: fixed)
    with claim_run_dir(fixed, config):
        code, out, err = run_cli(capsys, "run")
    assert code == 0, err
    assert ran == [fixed.with_name(fixed.name + "-2")] and f"--resume {ran[0]}" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--set", "model.template=a {} of {x}"], ["model.template", "exactly one '{}'"]),
        (["--set", "model.template=a {} {"], ["model.template", "Single '{'"]),
        (["--set", "model.template=a photo }"], ["model.template", "Single '}'"]),
        (["--set", "model.template=a {} {}"], ["model.template", "exactly one '{}'"]),
        (["--seed", "18446744073709551616"], ["--seed", "[0, 2**63)"]),
        (["--set", "seed=18446744073709551616"], ["'seed'", "[0, 2**63)"]),
        (["--set", "model.backbone_seed=99999999999999999999"], ["model.backbone_seed", "[0, 2**63)"]),
        (["--set", "device=mps"], ["'device'", "'mps'", "cuda:N"]),
        (["--device", "cuda:x"], ["'device'", "cuda:N"]),
        (["--set", "eval.batch_size=99999999999999999999"], ["eval.batch_size", "1_000_000"]),
        (["--batch-size", "1000001"], ["train.batch_size", "1_000_000"]),
        (["--set", "model.replay_batch_size=10000000"], ["model.replay_batch_size", "1_000_000"]),
        (["--num-workers", "100000"], ["data.num_workers", "[0, 64]"]),
        (["--set", "buffer.size=99999999999999999999"], ["buffer.size", "10_000_000"]),
        (["--train-cache", "views:99999999999999999999"], ["views", "[1, 1000]"]),
        (["--set", "name=../../etc/x"], ["'name'", "path separator", "letters, digits"]),
        (["--set", "name=a b"], ["'name'", "' '"]),
        (["--method", "ALTA"], ["unknown method 'ALTA'", "did you mean 'alta'"]),
        (["--dataset", "Digits"], ["did you mean 'digits'"]),
        (["--visual", "rn50"], ["did you mean 'RN50'"]),
        (["--head", "seen", "--set", "model.head=SEEN"], ["did you mean 'seen'"]),
        (["--set", "trian.epochs=1"], ["unknown config key 'trian.epochs'", "did you mean 'train.epochs'"]),
        (["--set", "epochs=1"], ["did you mean 'train.epochs'"]),
        (["--set", "Train.Batch_Size=4"], ["did you mean 'train.batch_size'"]),
    ],
)
def test_bad_values_are_clean_config_errors(argv, expected, tmp_path, capsys, monkeypatch):
    _no_backbone(monkeypatch)
    monkeypatch.chdir(tmp_path)  # a name escaping runs/ would land under tmp_path
    code, out, err = run_cli(capsys, "run", *argv)
    assert code == 2, err
    assert err.count("alta: error:") == 1
    for text in expected:
        assert text in err, (text, err)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even runs/


def test_bad_config_files_are_refused(tmp_path, capsys):
    cases = {
        "empty.yaml": ("", ["is empty", "leave out --config"]),
        "comments.yaml": ("# only a comment\n\n# and another\n", ["is empty"]),
        "twice.yaml": ("train:\n  epochs: 1\nseed: 3\ntrain:\n  batch_size: 8\n",
                       ["key 'train' is given twice", "lines 1 and 4", "merge"]),
        "nested.yaml": ("train:\n  epochs: 1\n  epochs: 2\n", ["key 'train.epochs' is given twice", "lines 2 and 3"]),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        for part in expected:
            assert part in str(info.value), (name, str(info.value))
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("train:\n  epochs: 3 # r\xe9sum\xe9\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "run", "--config", str(binary), "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "not UTF-8" in err and "0xe9" in err
    code, _, err = run_cli(capsys, "run", "--config", str(tmp_path / "twice.yaml"), "--output-dir",
                           str(tmp_path / "out"))
    assert code == 2 and "given twice" in err
    assert not (tmp_path / "out").exists()
    # anchors and merge keys are still fine; a file name that is no valid run name is made one
    path = tmp_path / "my config (2).yaml"
    path.write_text("base: &b {epochs: 2}\n".replace("base", "train") + "eval:\n  every: 1\n")
    config = load_config(path)
    assert config.name == "my_config_2_" and config.train.epochs == 2
    # a run folder's config.yaml with a name older alta versions accepted stays resumable
    saved = tmp_path / "config.yaml"
    saved.write_text(config.to_yaml().replace("name: my_config_2_", "name: my config (2)"))
    with pytest.raises(ConfigError, match="'name'"):
        load_config(saved)
    assert load_run_config(saved).name == "my_config_2_"
    assert load_run_config(saved).fingerprint() == config.fingerprint()


def test_bad_output_folder_is_found_before_loading_anything(tmp_path, capsys, monkeypatch):
    _no_backbone(monkeypatch)
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    code, _, err = run_cli(capsys, "run", "--output-dir", str(a_file))
    assert code == 2 and "is an existing file" in err and "expected a new or empty folder" in err
    code, _, err = run_cli(capsys, "run", "--output-dir", str(a_file / "run"))
    assert code == 2 and "is a file, not a folder" in err and "--output-dir" in err
    code, _, err = run_cli(capsys, "run", "--resume", str(a_file))
    assert code == 2 and "is a file" in err
    assert a_file.read_text() == "not a folder"
    code, _, err = run_cli(capsys, "run", "--output-dir", str(tmp_path / "a\x00b"))
    assert code == 2 and "NUL" in err
    code, _, err = run_cli(capsys, "run", "--output-dir", str(tmp_path / "new" / ("x" * 300) / "run"))
    assert code == 2 and "cannot use the output folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt"]
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = run_cli(capsys, "run", "--output-dir", str(locked / "run"))
        assert code == 2 and "not writable" in err


def test_damaged_summary_of_a_finished_run(tmp_path, capsys, monkeypatch):
    _no_backbone(monkeypatch)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(load_config("default").to_yaml())
    for text in ("{not json", "[1, 2]", '{"complete": true}', ""):
        (folder / "summary.json").write_text(text)
        code, _, err = run_cli(capsys, "run", "--resume", str(folder), "--no-progress")
        assert code == 1 and "summary.json is damaged" in err and "start a new run" in err, err
        assert (folder / "summary.json").read_text() == text  # left as it was


def test_data_hint_only_for_data_root_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", *QUICK, "--set", "data.class_order=[0, 0, 1]",
                           "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "data.class_order" in err and "permutation" in err
    assert "--data-root" not in err and "--download" not in err
    assert not (tmp_path / "out").exists()
