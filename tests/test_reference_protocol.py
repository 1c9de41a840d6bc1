"""alta.run.protocols (paper / reference): the paper's knobs are alta's defaults, the reference's differ where the code does."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from alta import CrossModalLearner, LoopConfig, MemoryBuffer, ScenarioStream, build_optimizer, load_backbone, protocols
from alta.data import reference_class_names
from alta.errors import ConfigError

# what the released code does differently from the method as described (issue 14, docs/reproducing.md)
REFERENCE_QUIRKS = {"class_names", "w1_raw_names", "snapshot_timing", "lr", "lr_schedule", "eval_before_snapshot"}

CALLABLES = {
    "backbone": load_backbone,
    "stream": ScenarioStream.from_name,
    "learner": CrossModalLearner.__init__,
    "optimizer": build_optimizer,
    "buffer": MemoryBuffer.__init__,
    "loop": LoopConfig,
}


def test_the_two_protocols_and_their_lookup():
    assert protocols.list_protocols() == ["paper", "reference"]
    assert protocols.DEFAULT_PROTOCOL == "paper"
    reference = protocols.get_protocol("reference")
    assert protocols.get_protocol(reference) is reference
    with pytest.raises(ConfigError, match="reference"):
        protocols.get_protocol("referense")


def test_every_knob_has_a_reason_and_a_source():
    for name in protocols.list_protocols():
        for knob, setting in protocols.get_protocol(name).settings().items():
            assert setting.reason.strip() and setting.source.strip(), (name, knob)
    for knob in REFERENCE_QUIRKS:  # the reference's values are read from its code
        assert "vijaylee/ALTA" in getattr(protocols.get_protocol("reference"), knob).source, knob


def test_reference_differs_from_paper_exactly_in_the_quirks():
    paper, reference = protocols.get_protocol("paper"), protocols.get_protocol("reference")
    assert set(reference.differences(paper)) == REFERENCE_QUIRKS
    assert reference.differences(paper)["lr"] == (1e-5, 0.002)


def test_paper_protocol_is_the_default_of_every_object_it_configures():
    """Each default is written once, in the object's signature; the paper protocol must name it."""
    kwargs = protocols.protocol_kwargs("paper", dataset="seq-cifar100")
    assert "class_names" not in kwargs["stream"]  # the dataset's own (readable) names
    checked = []
    for target, call in CALLABLES.items():
        parameters = inspect.signature(call).parameters
        for keyword, value in kwargs[target].items():
            default = parameters[keyword].default
            if default is inspect.Parameter.empty:
                continue  # e.g. the buffer's capacity: the CLI's default, not the object's
            assert value == default, (target, keyword, value, default)
            checked.append(keyword)
    assert {"precision", "transform", "head", "template", "w1_raw_names", "snapshot_timing", "lr", "schedule",
            "momentum", "weight_decay", "policy", "epochs", "batch_size", "eval_every", "eval_before_snapshot",
            "train_cache"} <= set(checked)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_protocol_kwargs_build_the_reference_objects(tiny_clip):
    kwargs = protocols.protocol_kwargs("reference", dataset="seq-cifar100")
    assert kwargs["stream"]["class_names"] == reference_class_names("seq-cifar100")
    assert protocols.protocol_kwargs("reference", dataset="seq-tinyimagenet")["stream"]["class_names"][0] == "Egyptian Mau"
    assert "class_names" not in protocols.protocol_kwargs("reference", dataset="digits")["stream"]  # not a reference dataset
    assert "class_names" not in protocols.protocol_kwargs("reference")["stream"]

    names = kwargs["stream"]["class_names"][:4]  # apple, aquarium_fish, baby, bear
    learner = CrossModalLearner(tiny_clip, class_names=names, method="alta", **kwargs["learner"])
    assert learner.w1_raw_names and learner.snapshot_timing == "last_forward"
    assert learner.class_names[1] == "aquarium fish"  # the learned prompt's reading
    optimizer, scheduler = build_optimizer(learner, **kwargs["optimizer"])
    for _ in range(3):
        assert optimizer.param_groups[0]["lr"] == 1e-5  # constant: what the released code trains at
        scheduler.step()
    buffer = MemoryBuffer(**kwargs["buffer"], seed=0)
    assert buffer.capacity == 200
    loop = LoopConfig(**kwargs["loop"])
    assert loop.eval_before_snapshot and loop.epochs == 30 and loop.eval_every == 10
    with pytest.raises(ConfigError, match="protocol"):
        protocols.protocol_kwargs("fast")
    with pytest.raises(ConfigError, match="seq-cifar100"):
        protocols.protocol_kwargs("paper", dataset="seq-cifar101")


def test_protocols_are_frozen():
    paper = protocols.get_protocol("paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        paper.lr = protocols.Setting(1.0, "", "")  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        paper.lr.value = 1.0  # type: ignore[misc]


# ---- the protocol in a run (alta run --protocol, RunConfig.protocol) ---------------------------


def _cli(capsys, *argv):
    from alta.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


_QUICK = ["--epochs", "2", "--set", "data.max_train_per_class=12", "--set", "data.max_test_per_class=6",
          "--no-progress", "--no-plots", "--threads", "1"]


def test_alta_run_protocol_reference_sets_its_knobs_records_them_and_resume_refuses_another(tmp_path, capsys):
    import json

    import yaml

    from alta.run import RunConfig

    run_dir = tmp_path / "ref"
    code, _, err = _cli(capsys, "run", "--protocol", "reference", *_QUICK, "--output-dir", str(run_dir))
    assert code == 0, err
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["protocol"] == "reference"
    assert saved["optim"]["lr"] == 1e-5 and saved["optim"]["lr_schedule"] == "constant"
    assert saved["model"]["w1_raw_names"] is True and saved["model"]["snapshot_timing"] == "last_forward"
    assert saved["eval"]["before_snapshot"] is True
    config = RunConfig.from_dict(saved)
    assert config.loop.eval_before_snapshot is True
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["protocol"] == "reference"
    # --epochs 2 overrides the protocol's 30; the default config's digits and tiny-vit are reduced
    # (--set data.max_*_per_class) and random: the run says so, and alta report notes it
    assert summary["protocol_deviations"] == {
        "epochs": {"protocol": 30, "config": 2},
        "data.max_train_per_class": {"protocol": None, "config": 12},
        "data.max_test_per_class": {"protocol": None, "config": 6},
        "weights": {"protocol": "OpenAI CLIP weights (RN50, ViT-B/16, ...)", "config": "tiny-vit (random weights)"},
    }
    code, out, err = _cli(capsys, "report", str(run_dir))
    assert code == 0, err
    note = next(line for line in out.splitlines() if "does not follow protocol reference" in line)
    assert "data.max_train_per_class 12 (protocol: none)" in note and "epochs 2 (protocol: 30)" in note

    code, _, err = _cli(capsys, "run", "--resume", str(run_dir), "--protocol", "paper", "--no-progress")
    assert code == 2 and "--protocol" in err and "'reference'" in err

    # flags given with the protocol win, and the summary says where the run left the protocol
    other = tmp_path / "ref-lr"
    code, _, err = _cli(capsys, "run", "--protocol", "reference", "--lr", "0.01", *_QUICK, "--output-dir", str(other))
    assert code == 0, err
    summary = json.loads((other / "summary.json").read_text())
    assert summary["protocol_deviations"]["lr"] == {"protocol": 1e-5, "config": 0.01}


def test_paper_is_the_default_protocol_of_a_run_and_unknown_ones_are_refused():
    from alta.run import RunConfig
    from alta.run.protocols import apply_protocol

    assert RunConfig().protocol == "paper"
    assert apply_protocol(RunConfig(), "paper") == RunConfig()  # the defaults are the paper protocol
    with pytest.raises(ConfigError, match="'paper' is the method as described"):
        RunConfig(protocol="released")
    with pytest.raises(ConfigError, match="reference"):
        apply_protocol(RunConfig(), "refrence")


@pytest.mark.data
def test_reference_protocol_gives_tinyimagenet_the_reference_names(tiny_imagenet_root):
    from alta.run import RunConfig
    from alta.run.protocols import apply_protocol, protocol_class_names

    config = RunConfig.from_dict({"data": {"dataset": "seq-tinyimagenet", "root": str(tiny_imagenet_root)}})
    assert protocol_class_names(config) is None  # paper: the dataset's own names (words.txt)
    reference = apply_protocol(config, "reference")
    names = protocol_class_names(reference)
    assert names == reference_class_names("seq-tinyimagenet") and len(names) == 200
    stream, _ = reference.data.build(resolution=32, class_names=names)
    assert stream.class_names == names
    own, _ = config.data.build(resolution=32)
    assert own.class_names != names  # 46 of the 200 names differ from words.txt's first synonym


# ---- protocol_deviations: every setting that changes results ----------------------------------

# A value other than the default (the paper protocol's) for every key of a run's configuration
# that changes results; keys of the dataset's options, the split and the weights are below.
_CHANGED = {
    "data.class_order": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], "data.class_order_seed": 1,
    "data.class_names": [f"digit {k}" for k in range(10)], "data.transform": "clip", "data.test_transform": "plain",
    "data.max_train_per_class": 100, "data.max_test_per_class": 20, "model.head": "seen", "model.alpha": 0.5,
    "model.beta": 0.1, "model.replay_batch_size": 16, "model.ctx_init": "a picture of a",
    "model.template": "a photo of a {}.", "model.adapter_reduction": 8, "model.truncate_text": False,
    "model.snapshot_timing": "last_forward", "model.w1_raw_names": True, "model.precision": "fp32",
    "buffer.size": 500, "buffer.policy": "class_balanced", "buffer.per_class": 10, "optim.lr": 0.01, "optim.momentum": 0.5,
    "optim.weight_decay": 0.0, "optim.lr_schedule": "constant", "optim.warmup_epochs": 0, "optim.warmup_lr": 1e-4,
    "train.epochs": 5, "train.batch_size": 16, "train.schedule": "alternate", "train.schedule_period": 2,
    "train.schedule_unit": "epoch", "train.schedule_start": "image", "train.train_cache": "fixed", "eval.every": 5,
    "eval.before_snapshot": True, "model.text_templates": "first", "model.unseen_classes": "zeroshot",
    "train.iterations": 100,
}
# the schedule's period, unit and start only act on an alternating schedule
_NEEDS = {key: {"train.schedule": "alternate"} for key in ("train.schedule_period", "train.schedule_unit",
                                                           "train.schedule_start")}
_NEEDS["buffer.per_class"] = {"buffer.policy": "herding"}  # per_class is refused with another policy


def _config(values: dict):
    from alta.run import RunConfig

    nested: dict = {"data": {"dataset": "digits"}}
    for key, value in values.items():
        section, _, attr = key.partition(".")
        nested.setdefault(section, {})[attr] = value
    return RunConfig.from_dict(nested)


def test_every_key_that_changes_results_is_tested_below():
    from alta.run import RunConfig

    keys = {".".join(k.split(".")[:2]) for k in RunConfig().result_values()} - set(protocols.EXPERIMENT_KEYS)
    missing = keys - set(_CHANGED)
    assert not missing, (f"config keys {sorted(missing)} change results: give each a changed value in _CHANGED "
                         f"(protocol_deviations must report it), or add it to OPERATIONAL_KEYS (it does not change "
                         f"results) or protocols.EXPERIMENT_KEYS (it says what a run is of)")


@pytest.mark.parametrize("key", sorted(_CHANGED))
@pytest.mark.parametrize("protocol", ["paper", "reference"])
def test_changing_any_key_that_changes_results_is_a_protocol_deviation(key, protocol):
    from alta.run.protocols import apply_protocol

    base = {"model.visual": "RN50", **_NEEDS.get(key, {})}
    followed = apply_protocol(_config(base), protocol)
    knobs = {k: name for name, k in protocols.CONFIG_KEYS.items()}
    assert set(protocols.protocol_deviations(followed, split=[2] * 5)) == {knobs.get(k, k) for k in _NEEDS.get(key, {})}
    changed = apply_protocol(_config(base), protocol)
    section, attr = key.split(".")
    value = _CHANGED[key]
    changed = dataclasses.replace(changed, **{section: dataclasses.replace(getattr(changed, section), **{attr: value})})
    if getattr(getattr(followed, section), attr) == getattr(getattr(changed, section), attr):
        changed = _config({**base, key: value})  # the protocol itself sets this key: compare paper's value
    deviations = protocols.protocol_deviations(changed, split=[2] * 5)
    knob = knobs.get(key, key)
    assert knob in deviations, (key, deviations)
    shown = deviations[knob]["config"]
    assert shown == (list(value) if isinstance(value, tuple) else value)


@pytest.mark.parametrize("case", ["options", "split", "random weights", "open_clip weights", "weights file"])
def test_dataset_options_split_and_weights_other_than_the_benchmarks_are_deviations(case):
    from alta.run import RunConfig

    if case == "options":
        config = RunConfig.from_dict({"data": {"dataset": "imagenet-r", "options": {"split_seed": 1}}})
        assert protocols.protocol_deviations(config)["data.options"] == {"protocol": {"split_seed": 0},
                                                                         "config": {"split_seed": 1}}
        same = RunConfig.from_dict({"data": {"dataset": "imagenet-r", "options": {"split_seed": 0}}})
        assert "data.options" not in protocols.protocol_deviations(same)  # the loader's default, given explicitly
    elif case == "split":
        config = RunConfig.from_dict({"data": {"dataset": "seq-cifar100", "split": "B50-Inc10"}})
        assert protocols.protocol_deviations(config, split=[50] + [10] * 5)["split"] == {
            "protocol": "10 experiences x 10 classes", "config": "6 experiences: 50 + 10 + 10 + 10 + 10 + 10 classes"}
        assert "split" not in protocols.protocol_deviations(config, split=[10] * 10)  # B0-Inc10 is the benchmark's
    else:
        visual, pretrained, shown = {"random weights": ("tiny-vit", None, "tiny-vit (random weights)"),
                                     "open_clip weights": ("open_clip:ViT-B-16", "laion400m_e32",
                                                           "open_clip:ViT-B-16 (laion400m_e32)"),
                                     "weights file": ("/models/my-clip.pt", None, "/models/my-clip.pt")}[case]
        config = RunConfig.from_dict({"model": {"visual": visual, "pretrained": pretrained}})
        assert protocols.protocol_deviations(config)["weights"]["config"] == shown
        assert "weights" not in protocols.protocol_deviations(RunConfig.from_dict({"model": {"visual": "ViT-B/16"}}))
