"""The CLIP class-incremental suite end to end: presets by name, deviations recorded, herding
exemplars in the loop, the suite's curves in summary.json, the printed table, the plots and
``alta report``, and ``alta run`` on a fixture of every new layout (tiny random-weight CLIP: the
suite's backbone and weights cannot be downloaded here, so every run departs from its preset in
``model.visual`` and ``model.pretrained``, and says so).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml
from dataset_layouts import build_aircraft, build_food101, build_stanford_cars, build_sun397
from helpers import make_suite_archive, run_cli, write_image

from alta import CrossModalLearner, LoopConfig, MemoryBuffer, ScenarioStream, build_optimizer, run_stream
from alta.cli.config import load_config, preset_config
from alta.data.datasets.cil_suite import SUITE
from alta.loop.cache import FeatureCache
from alta.policies import herding_selection
from alta.run.presets import parse_preset, preset_deviations, preset_settings
from alta.run.sections import DataConfig
from alta.errors import ConfigError

QUICK = ("--visual", "tiny-vit", "--epochs", "1", "-q", "--no-plots")
DEVIATIONS = {"model.visual", "model.pretrained", "train.epochs"}


# ---- presets by name ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SUITE))
def test_each_dataset_has_its_two_presets(name):
    spec = SUITE[name]
    for which, split in enumerate(spec.splits):
        settings = {k: s.value for k, s in preset_settings(f"cil-suite/{name}/{split}").items()}
        assert settings["model.visual"] == "open_clip:ViT-B-16" and settings["model.pretrained"] == "laion400m_e32"
        assert settings["data.class_order"] == "icarl-1993" and settings["data.split"] == split
        assert settings["model.template"] == spec.templates[0] and settings["model.head"] == "seen"
        assert (settings["buffer.policy"], settings["buffer.per_class"]) == ("herding", 20)
        assert settings["buffer.size"] == 20 * spec.num_classes
        # PROOF's exps/*.json tuned_epoch: 5 for CIFAR-100 and Food-101 B50, 10 elsewhere
        assert settings["train.epochs"] == (5 if spec.key == "cifar100" or (spec.key, which) == ("food", 1) else 10)
        config = preset_config(f"cil-suite/{name}/{split}")
        assert config.preset == f"cil-suite/{name}/{split}" and preset_deviations(config) == {}
        assert config.data.dataset == name and config.train.train_cache == "fixed" and config.eval.every == 0


def test_preset_names_are_checked_and_completed():
    assert parse_preset("cil-suite/cars/B50-Inc10") == "cil-suite/cil-cars/B50-Inc10"
    assert parse_preset("cil-suite", dataset="sun", split=None) == "cil-suite/cil-sun/B0-Inc30"
    assert parse_preset("cil-suite/sun") == "cil-suite/cil-sun/B0-Inc30"
    with pytest.raises(ConfigError, match="splits in the suite are B0-Inc10 and B50-Inc10"):
        parse_preset("cil-suite/cars/B10-Inc10")
    with pytest.raises(ConfigError, match="unknown preset family 'proof'"):
        parse_preset("proof/cars/B0-Inc10")
    with pytest.raises(ConfigError, match="not one of the suite's datasets"):
        parse_preset("cil-suite", dataset="seq-cifar10")


def test_alta_run_starts_from_the_preset_and_flags_on_top_are_deviations(capsys):
    code, out, _ = run_cli(capsys, "config", "show", "--dataset", "cars", "--split", "B50-Inc10")
    shown = yaml.safe_load(out)
    assert code == 0 and shown["preset"] == "cil-suite/cil-cars/B50-Inc10"
    assert shown["model"]["visual"] == "open_clip:ViT-B-16" and shown["buffer"]["size"] == 2000
    assert shown["data"]["class_order"] == "icarl-1993" and shown["data"]["split"] == "B50-Inc10"
    _, out, _ = run_cli(capsys, "config", "show", "--dataset", "cars", "--split", "B10-Inc10", "--visual", "tiny-vit")
    config = yaml.safe_load(out)
    assert config["preset"] == "cil-suite/cil-cars/B0-Inc10"  # not a split of the suite: the B0 preset, deviating
    assert config["model"]["pretrained"] is None  # the preset's weights belong to its backbone
    from alta.run.config import RunConfig

    deviations = preset_deviations(RunConfig.from_dict(config))
    assert set(deviations) == {"data.split", "model.visual", "model.pretrained"}
    assert deviations["data.split"] == {"preset": "B0-Inc10", "config": "B10-Inc10"}
    _, out, _ = run_cli(capsys, "config", "show", "--dataset", "cars", "--set", "preset=null")
    assert yaml.safe_load(out)["preset"] is None and yaml.safe_load(out)["model"]["visual"] == "tiny-vit"  # the demo


def test_alta_list_presets_names_all_eighteen(capsys):
    code, out, _ = run_cli(capsys, "list", "presets")
    lines = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert code == 0 and len(lines) == 18 and lines[0] == "cil-suite/cil-cifar100/B0-Inc10"
    assert "cil-suite/cil-sun/B150-Inc30" in lines and "a photo of a {}, a type of aircraft." in out


def test_a_config_file_naming_the_preset_starts_from_it(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("preset: cil-suite\ndata: {dataset: sun, split: B150-Inc30}\ntrain: {epochs: 3}\n")
    config = load_config(path)
    assert config.preset == "cil-suite/cil-sun/B150-Inc30" and config.buffer.size == 6000
    assert preset_deviations(config) == {"train.epochs": {"preset": 10, "config": 3}}


# ---- herding exemplars in the loop -----------------------------------------------------------------


def test_herding_keeps_each_seen_class_exemplars_from_its_test_transform_features(tiny_clip):
    stream = ScenarioStream.from_name("digits", num_experiences=2, resolution=32, transform="proof")
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, seed=0, head="seen")
    optimizer, scheduler = build_optimizer(learner, epochs=1)
    buffer = MemoryBuffer(10 * 7, policy="herding", per_class=7, seed=0)
    cache = FeatureCache()
    first = DataConfig(max_train_per_class=30, max_test_per_class=5).subsample([stream[0]])[0]
    run_stream(learner, [first], optimizer=optimizer, scheduler=scheduler, buffer=buffer, cache=cache,
               loop=LoopConfig(epochs=1, train_cache="fixed", eval_every=0), eval_experiences=[first])
    data = buffer.data()
    assert torch.bincount(data["labels"]).tolist() == [7] * 5  # the first experience's 5 classes, 7 each
    assert buffer.num_seen == len(first.train) == 150  # offered once, at the end (not every batch)
    features = cache.features(tiny_clip, first.train.with_transform(first.test.transform))
    for c in range(5):
        rows = features.features[features.labels == c]
        chosen = herding_selection(rows, 7)
        torch.testing.assert_close(data["image_features"][data["labels"] == c], rows[chosen])
    learner.eval()
    torch.testing.assert_close(data["logits"], learner.classifier()(data["image_features"]))  # logits at the end
    assert set(data["experience_ids"].tolist()) == {0}


def test_a_resumed_suite_run_repeats_the_uninterrupted_one(tmp_path, capsys):
    make_suite_archive(tmp_path / "data", SUITE["cil-cars"], train=3, test=1)
    args = ("run", "--dataset", "cars", "--split", "B50-Inc10", "--data-root", str(tmp_path / "data"), *QUICK)
    assert run_cli(capsys, *args, "--output-dir", str(tmp_path / "whole"))[0] == 0
    assert run_cli(capsys, *args, "--output-dir", str(tmp_path / "parts"), "--stop-after", "2")[0] == 0
    assert run_cli(capsys, "run", "--resume", str(tmp_path / "parts"), "-q", "--no-plots")[0] == 0
    whole, parts = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("whole", "parts"))
    assert whole["accuracy_matrix"] == parts["accuracy_matrix"] and whole["curves"] == parts["curves"]
    assert whole["top5_accuracy"] == parts["top5_accuracy"]


# ---- alta run on every layout ------------------------------------------------------------------------


def _layout_official_objectnet(root):
    base = root / "objectnet-1.0"
    folders = [c.folder for c in SUITE["cil-objectnet"].classes] + ["zz_more"]
    (base / "mappings").mkdir(parents=True)
    (base / "mappings" / "folder_to_objectnet_label.json").write_text(json.dumps({f: f for f in folders}))
    for k, folder in enumerate(folders):
        for j in range(2):
            write_image(base / "images" / folder / f"{j}.png", color=(k % 256, j, 0))


def _layout_official_ucf(root):
    base = root / "ucf101"
    actions = [c.folder.replace("_", "") for c in SUITE["cil-ucf"].classes] + ["YoYo"]
    split = {"train": [], "val": [], "test": []}
    for k, action in enumerate(actions):
        folder = "_".join(re.findall("[A-Z][^A-Z]*", action))
        for g, side in ((1, "train"), (2, "test")):
            write_image(base / "UCF-101-midframes" / folder / f"v_{action}_g0{g}_c01.jpg", color=(k, g, 0))
            split[side].append([f"{folder}/v_{action}_g0{g}_c01.jpg", k, folder])
    (base / "split_zhou_UCF101.json").write_text(json.dumps(split))


def _layout_raw_imagenet_r(root):
    lines = ["train"], ["test"]
    for k, cls in enumerate(SUITE["cil-imagenet-r"].classes):
        for j, side in enumerate((0, 1)):
            write_image(root / "imagenet-r" / cls.folder / f"art_{j}.jpg", color=(k, j, 0))
            lines[side].append(f"{cls.folder}/art_{j}.jpg")
    (root / "split.txt").write_text("\n".join(lines[0] + lines[1]) + "\n")


LAYOUTS = {  # name: (dataset, split, how to lay it out, extra flags)
    **{f"archive-{spec.key}": (spec.name, spec.splits[1], lambda root, spec=spec: make_suite_archive(root, spec), ())
       for spec in SUITE.values()},
    "official-objectnet": ("cil-objectnet", "B100-Inc20", _layout_official_objectnet, ()),
    "official-ucf": ("cil-ucf", "B50-Inc10", _layout_official_ucf, ()),
    "raw-imagenet-r": ("cil-imagenet-r", "B100-Inc20", _layout_raw_imagenet_r, ("SPLIT_FILE",)),
    # the suite's subsets of the official layouts that the MTIL datasets' readers read
    "official-cars": ("cil-cars", "B50-Inc10", build_stanford_cars, ()),
    "official-aircraft": ("cil-aircraft", "B50-Inc10", build_aircraft, ()),
    "official-food": ("cil-food", "B50-Inc10", build_food101, ()),
    "official-sun": ("cil-sun", "B150-Inc30", lambda root: build_sun397(root, per_class=5), ()),
}
QUICK_LAYOUTS = ("archive-cars", "official-ucf")


@pytest.mark.parametrize("layout", [pytest.param(k, marks=() if k in QUICK_LAYOUTS else pytest.mark.slow)
                                    for k in LAYOUTS])
def test_alta_run_on_every_layout_with_the_suites_preset(tmp_path, capsys, layout):
    dataset, split, lay_out, extra = LAYOUTS[layout]
    root = tmp_path / "data"
    root.mkdir()
    lay_out(root)
    flags = ["--set", f"data.options.split_file={root / 'split.txt'}"] if "SPLIT_FILE" in extra else []
    out_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, "run", "--dataset", dataset, "--split", split, "--data-root", str(root), *QUICK,
                           "--output-dir", str(out_dir), *flags)
    assert code == 0
    summary = json.loads((out_dir / "summary.json").read_text())
    spec = SUITE[dataset]
    assert summary["preset"]["name"] == f"cil-suite/{dataset}/{split}"
    assert set(summary["preset_deviations"]) == DEVIATIONS  # the backbone (no weights here) and the epochs
    assert summary["class_order_source"] == "icarl-1993" and len(summary["class_names"]) == spec.num_classes
    assert summary["buffer_size"] == 20 * spec.num_classes and summary["head"] == "seen"
    steps = 1 + (spec.num_classes // 2) // int(split.split("Inc")[1])
    curves = summary["curves"]
    assert len(curves["top1"]) == len(curves["harmonic"]) == steps == summary["num_experiences"]
    assert curves["old"][0] is None and all(v is not None for v in curves["old"][1:] + curves["new"])
    assert curves["avg"] == pytest.approx(float(np.mean(curves["top1"]))) and curves["last"] == curves["top1"][-1]
    assert summary["split_file"]["sha256"] and summary["split_file"]["kind"] in ("folders", "file", "seeded", "dataset")
    assert "harmonic mean" in out and "old classes" in out and f"preset cil-suite/{dataset}/{split}" in out
    if layout in QUICK_LAYOUTS:  # the report shows the same curves; the plot is drawn
        code, report, _ = run_cli(capsys, "report", str(out_dir))
        assert code == 0 and "| harmonic mean |" in report and "departs from the preset" in report
        from alta.run.summary import save_plots

        assert (out_dir / "x" / "seen_class_curves.png") in save_plots(summary, out_dir / "x")
