"""Your own data and the field's benchmarks from the command line (issue 15): class names (list,
file, ``folder<TAB>name`` map), uneven splits (``--split B11-Inc10``), named class orders
(``--class-order icarl-1993``), the joint upper bound evaluated per experience, dataset options,
and inputs a run would ignore, refused. Every run goes through ``alta run`` in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import run_cli
from PIL import Image

from alta.cli import build_parser, resolve_run_config
from alta.cli.config import apply_overrides, load_config
from alta.data.datasets import CIFAR100_CLASSES
from alta.errors import ConfigError

# one epoch on features encoded once, no periodic evaluation, no zero-shot pass: seconds per run
FAST = ["--visual", "tiny-vit", "--epochs", "1", "--train-cache", "fixed", "--eval-every", "0", "--set",
        "eval.zeroshot_baseline=false", "--no-progress", "--no-plots", "--threads", "1"]




def parse(*argv: str):
    return resolve_run_config(build_parser().parse_args(["run", *argv]))[0]


def image_tree(root: Path, folders: list[str], *, train: int = 2, test: int = 1) -> Path:
    """``root/train/<folder>/*.png`` + ``root/test/<folder>/*.png``: tiny images whose colour
    depends on the class, so that a class can be learned."""
    rng = np.random.default_rng(0)
    for c, folder in enumerate(folders):
        for split, count in (("train", train), ("test", test)):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.full((8, 8, 3), (37 * c) % 256, dtype=np.uint8)
                pixels[..., 1] = rng.integers(0, 256)
                Image.fromarray(pixels).save(root / split / folder / f"{folder}_{i}.png")
    return root


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------- done-when runs


WNIDS = ["n01443537", "n01629819", "n02085620", "n02123045"]
WORDS = {"n01443537": "goldfish, Carassius auratus", "n01629819": "European fire salamander, Salamandra salamandra",
         "n02085620": "Chihuahua", "n02123045": "tabby, tabby cat", "n09999999": "an extra line words.txt has"}


def test_imagenet_style_tree_with_a_words_map_trains_on_readable_names(tmp_path, capsys):
    root = image_tree(tmp_path / "data", WNIDS)
    words = tmp_path / "words.txt"
    words.write_text("".join(f"{k}\t{v}\n" for k, v in WORDS.items()), encoding="utf-8")
    out_dir = tmp_path / "named"
    code, out, err = run_cli(capsys, "run", "--dataset", "image-folder", "--data-root", str(root), "--class-names",
                             str(words), "--num-experiences", "2", *FAST, "--output-dir", str(out_dir))
    assert code == 0, err
    summary = summary_of(out_dir)
    assert summary["class_names"] == ["goldfish", "European fire salamander", "Chihuahua", "tabby"]
    assert summary["class_names_source"] == "map" and summary["names_look_like_identifiers"] is False
    assert "goldfish, European fire salamander" in out  # the printed table shows the names CLIP read
    assert "look like identifiers" not in err + out
    config = yaml.safe_load((out_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["data"]["class_names"] == str(words)

    # the same tree without the map: CLIP reads the WordNet ids, loudly
    out_dir = tmp_path / "ids"
    code, out, err = run_cli(capsys, "run", "--dataset", "image-folder", "--data-root", str(root),
                             "--num-experiences", "2", *FAST, "--output-dir", str(out_dir))
    assert code == 0, err
    summary = summary_of(out_dir)
    assert summary["class_names"] == WNIDS and summary["names_look_like_identifiers"] is True
    assert summary["class_names_source"] == "dataset"
    assert "look like identifiers" in err and "n01443537" in err  # the log
    assert "NOTE: the class names look like identifiers" in out  # the table


def test_a_101_class_tree_trains_as_11_plus_10_x_9(tmp_path, capsys):
    folders = [f"category_{c:03d}" for c in range(101)]
    root = image_tree(tmp_path / "data", folders, train=1, test=1)
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "run", "--dataset", "image-folder", "--data-root", str(root), "--split",
                             "B11-Inc10", *FAST, "--output-dir", str(out_dir))
    assert code == 0, err
    summary = summary_of(out_dir)
    assert summary["num_experiences"] == 10 and summary["split"] == "B11-Inc10"
    assert summary["classes_per_experience"] == [11] + [10] * 9
    assert np.array(summary["accuracy_matrix"]["class_il"]).shape == (10, 10)
    assert (summary["num_train"], summary["num_test"]) == (101, 101)
    # the same split from the counts
    config = parse("--dataset", "image-folder", "--initial-classes", "11", "--set", "data.classes_per_experience=10")
    assert (config.data.initial_classes, config.data.classes_per_experience) == (11, 10)
    # a count that does not divide the rest says which keys fix the split
    code, _, err = run_cli(capsys, "run", "--dataset", "image-folder", "--data-root", str(root), "--num-experiences",
                           "10", *FAST, "--output-dir", str(tmp_path / "bad"))
    assert code == 2 and "initial_classes" in err and "--split" in err
    assert not (tmp_path / "bad").exists()


def test_b50_inc10_with_the_icarl_order_on_cifar100_style_data(tmp_path, capsys):
    root = image_tree(tmp_path / "cifar100", list(CIFAR100_CLASSES), train=1, test=1)
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "run", "--config", "il_cifar100", "--data-root", str(root), "--split",
                             "B50-Inc10", "--class-order", "icarl-1993", "--buffer-size", "20", *FAST,
                             "--output-dir", str(out_dir))
    assert code == 0, err
    summary = summary_of(out_dir)
    assert summary["dataset"] == "seq-cifar100" and summary["split"] == "B50-Inc10"
    assert summary["classes_per_experience"] == [50, 10, 10, 10, 10, 10]
    np.random.seed(1993)  # PyCIL, utils/data_manager.py: np.random.seed(seed); np.random.permutation(C)
    expected = np.random.permutation(100).tolist()
    assert summary["class_order"] == expected and summary["class_order_source"] == "icarl-1993"
    assert summary["class_names"][0] == sorted(CIFAR100_CLASSES)[expected[0]]
    config = yaml.safe_load((out_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["data"]["split"] == "B50-Inc10" and config["data"]["num_experiences"] is None
    assert config["data"]["class_order"] == "icarl-1993"


# ---------------------------------------------------------------------------------------- joint


def test_joint_run_is_evaluated_per_experience_of_the_sequential_split(tmp_path, capsys):
    out_dir = tmp_path / "joint"
    code, out, err = run_cli(capsys, "run", "--set", "data.joint=true", "--num-experiences", "5", "--set",
                             "buffer.replay=false", "--set", "data.max_train_per_class=10", "--set",
                             "data.max_test_per_class=5", *FAST, "--output-dir", str(out_dir))
    assert code == 0, err
    summary = summary_of(out_dir)
    assert summary["joint"] is True and summary["num_experiences"] == 1
    assert summary["classes_per_experience"] == [10] and summary["eval_classes_per_experience"] == [2] * 5
    for setting in ("class_il", "task_il"):
        row = np.array(summary["accuracy_matrix"][setting])
        assert row.shape == (1, 5)
        assert summary["last_accuracy"][setting] == pytest.approx(row.mean())
        assert summary["avg_accuracy"][setting] == pytest.approx(row.mean())
        assert summary["forgetting"][setting] is None and summary["bwt"][setting] is None
    assert summary["num_test"] == 50
    assert "exp 5" in out  # the table has one column per experience of the split
    # the shipped joint configs carry the sequential split
    joint = load_config("joint_cifar100")
    assert joint.data.joint and (joint.data.num_experiences, joint.data.classes_per_experience) == (10, 10)


# ---------------------------------------------------------------------------------------- keys


def test_new_data_keys_from_yaml_and_command_line(tmp_path):
    names = [f"class {i}" for i in range(10)]
    config = parse("--dataset", "caltech101", "--set", "data.options.split_seed=3", "--set",
                   "data.options.train_per_class=30", "--set", f"data.class_names={names}", "--split", "B0-Inc2")
    assert config.data.options == {"split_seed": 3, "train_per_class": 30}
    assert config.data.class_names == tuple(names) and config.data.split == "B0-Inc2"
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml(), encoding="utf-8")
    assert load_config(path) == config  # config.yaml round trip
    assert parse("--set", "data.class_order_seed=7").data.class_order_seed == 7
    assert parse("--set", "data.class_order=[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]").data.class_order[:2] == (1, 0)
    mapped = parse("--set", "data.class_names={'0': zero, '1': one}").data.class_names
    assert mapped == {"0": "zero", "1": "one"}
    # a split on the command line replaces the config's counts (flags override the config)
    config = parse("--config", "il_cifar100", "--split", "b50 inc10")
    assert (config.data.split, config.data.num_experiences, config.data.classes_per_experience) == (
        "B50-Inc10", None, None)
    assert parse("--config", "il_cifar100", "--num-experiences", "5").data.classes_per_experience is None
    assert apply_overrides(parse("--class-order", "icarl-1993"), {"data.class_order_seed": 1}).data.class_order is None


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--data-root", "/somewhere"], ["'data.root'", "'digits' reads no files", "--dataset image-folder"]),
        (["--dataset", "image-folder", "--download"], ["'data.download'", "cannot be downloaded", "seq-cifar10"]),
        (["--config", "sgd_cifar10", "--buffer-size", "500"], ["--buffer-size 500", "ignored", "no replay"]),
        (["--config", "joint_cifar10", "--set", "buffer.policy=class_balanced"], ["buffer.policy", "ignored"]),
        (["--method", "cprompt", "--cifar100_dir", "/x"], ["--cifar100_dir", "seq-cifar100", "digits", "--data-root"]),
        (["--split", "B50"], ["'data.split'", "B<base>-Inc<increment>"]),
        (["--split", "B2-Inc2", "--set", "data.initial_classes=2"], ["'data.split'", "fixes the counts"]),
        (["--class-order", "icarl-1993", "--set", "data.class_order_seed=1"], ["class_order_seed", "give one"]),
        (["--dataset", "imagenet-r", "--set", "data.options.split_sed=1"], ["data.options", "did you mean 'split_seed'"]),
        (["--set", "data.options=3"], ["data.options", "mapping"]),
        (["--set", "data.initial_classes=0"], ["data.initial_classes", ">= 1"]),
        (["--set", "data.initial-classes=3"], ["unknown config key 'data.initial-classes'",
                                                "did you mean 'data.initial_classes'"]),
        (["--set", "data.dataset.x=3"], ["unknown config key 'data.dataset.x'"]),
        (["--set", "data._SECTION=x"], ["unknown config key 'data._SECTION'"]),  # a class variable is no key
        # a misspelled sequence was answered with the closest dataset ('cil-food')
        (["--dataset", "mtil-ordr1"], ["did you mean the multi-domain sequence 'mtil-order1'?"]),
        (["--dataset", "xtial"], ["unknown dataset 'xtial'; did you mean the multi-domain sequence 'xtail'? Valid"]),
    ],
)
def test_ignored_and_bad_inputs_are_refused(argv, expected, tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", *argv, "--output-dir", str(tmp_path / "out"))
    assert code == 2, err
    for text in expected:
        assert text in err, (text, err)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_refused_key_is_never_suggested_as_its_own_fix():
    from alta.config import all_keys
    from alta.run import RunConfig

    base = load_config("default")
    for key in all_keys(RunConfig):
        section, _, name = key.rpartition(".")
        for refused in (f"{key}.x", f"{key}s", key.upper(), f"{section}.{name[:-1]}" if section else name[:-1]):
            try:
                apply_overrides(base, {refused: 1})
            except ConfigError as exc:
                message = str(exc)
                assert f"did you mean {refused!r}" not in message, message
    # the class of the message the issue met: a valid key is accepted, not "unknown ... did you mean itself"
    assert parse("--set", "data.initial_classes=2", "--set", "data.classes_per_experience=2").data.initial_classes == 2


def test_class_names_that_do_not_fit_are_config_errors(tmp_path, capsys):
    root = image_tree(tmp_path / "data", WNIDS)
    words = tmp_path / "words.txt"
    words.write_text("n01443537\tgoldfish\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "run", "--dataset", "image-folder", "--data-root", str(root), "--class-names",
                           str(words), "--num-experiences", "2", *FAST, "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "data.class_names" in err and "n01629819" in err
    code, _, err = run_cli(capsys, "run", "--set", "data.class_names=[a, b]", *FAST,
                           "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "data.class_names" in err and "2 names" in err
    assert not (tmp_path / "out").exists()
