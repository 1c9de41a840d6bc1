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
    assert set(summary["protocol_deviations"]) == {"epochs"}  # --epochs 2 overrides the protocol's 30

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
