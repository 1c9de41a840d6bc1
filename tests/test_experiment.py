"""The run in the library: alta.run.driver.run_experiment, its config sections and its callbacks."""

from __future__ import annotations

import json

import pytest
import torch

from alta.buffer import BufferConfig
from alta.cli.config import apply_overrides, load_config
from alta.config import ConfigSection
from alta.errors import ConfigError
from alta.learner import CrossModalLearner
from alta.learner_config import LearnerConfig
from alta.loop.callbacks import EVENTS, Callback
from alta.optim import OptimConfig
from alta.run import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig, run_experiment


def quick_config(**overrides) -> RunConfig:
    base = {"train.epochs": 2, "eval.every": 1, "data.max_train_per_class": 16, "data.max_test_per_class": 8,
            "device": "cpu"}
    return apply_overrides(load_config("default"), {**base, **overrides})


class Recorder(Callback):
    """Records every event with its arguments; checks the checkpoint at every epoch end."""

    def __init__(self, checkpoint=None) -> None:
        self.events: list[tuple[str, dict]] = []
        self.checkpoint = checkpoint
        self.checkpointed: list[tuple[int, int]] = []

    def __getattribute__(self, name):
        if name in EVENTS:
            def record(**kwargs):
                self.events.append((name, kwargs))
                if name == "on_epoch_end":  # the result is shared and grows: note its state now
                    kwargs["epochs_in_result"] = len(kwargs["result"].history[kwargs["experience"]])
                    if self.checkpoint is not None:
                        state = torch.load(self.checkpoint, weights_only=True)
                        self.checkpointed.append((state["next_experience"], state["next_epoch"]))
            return record
        return super().__getattribute__(name)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def test_a_users_callback_receives_every_event(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    recorder = Recorder(checkpoint=out / "checkpoint.pt")
    summary = run_experiment(quick_config(), output_dir=out, callbacks=[recorder], plots=False)
    T, E = summary["num_experiences"], 2
    names = recorder.names()
    assert set(names) == set(EVENTS)  # nothing missed
    assert names[0] == "on_run_start" and names[-1] == "on_run_end"
    assert names.count("on_experience_start") == names.count("on_experience_end") == T
    assert names.count("on_epoch_start") == names.count("on_epoch_end") == T * E
    assert names.count("on_step_end") == summary["train_steps"]
    # the evaluations the callback saw are exactly the lines of metrics.jsonl
    records = [kw["record"] for name, kw in recorder.events if name == "on_evaluation"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records == lines and len(lines) == T * E
    # the run's Checkpointer ran before the user's callback at every epoch end: (t, e + 1) is next;
    # after the last epoch the previous checkpoint stands until the experience-end one
    assert recorder.checkpointed == [(t, min(e + 1, E - 1)) for t in range(T) for e in range(E)]
    ends = [kw for name, kw in recorder.events if name == "on_epoch_end"]
    assert [(kw["experience"], kw["epoch"]) for kw in ends] == [(t, e) for t in range(T) for e in range(E)]
    assert [kw["epochs_in_result"] for kw in ends] == [e + 1 for t in range(T) for e in range(E)]


def test_a_method_that_trains_nothing_sends_the_run_events(tmp_path):
    recorder = Recorder()
    summary = run_experiment(quick_config(**{"model.method": "zeroshot"}), output_dir=tmp_path / "zs",
                             callbacks=[recorder], plots=False)
    T = summary["num_experiences"]
    names = recorder.names()
    assert names[0] == "on_run_start" and names[-1] == "on_run_end"
    assert names.count("on_evaluation") == names.count("on_experience_end") == T
    assert "on_step_end" not in names


def test_callbacks_must_be_callbacks(tmp_path):
    with pytest.raises(ConfigError, match="Callback"):
        run_experiment(quick_config(), output_dir=tmp_path / "x", callbacks=[print])
    assert not (tmp_path / "x").exists()  # refused before the folder is claimed


def test_sections_live_next_to_what_they_configure():
    config = RunConfig()
    assert type(config.data) is DataConfig and type(config.model) is ModelConfig
    assert type(config.buffer) is BufferConfig and type(config.optim) is OptimConfig
    assert type(config.train) is TrainConfig and type(config.eval) is EvalConfig
    for section in (DataConfig, ModelConfig, BufferConfig, OptimConfig, TrainConfig, EvalConfig):
        assert issubclass(section, ConfigSection)
        assert section.from_dict({}) == section()


def test_learner_defaults_are_written_once(tiny_clip):
    """The learner's signature takes its defaults from LearnerConfig, and checks through it."""
    import inspect

    signature = inspect.signature(CrossModalLearner.__init__).parameters
    for name, value in LearnerConfig().learner_options().items():
        assert signature[name].default == value, name
    # from_pretrained passes the learner's options through: its default template is the learner's
    pretrained = CrossModalLearner.from_pretrained("tiny-vit", class_names=["a", "b"])
    assert pretrained.template == LearnerConfig.template == "a photo of a {}"
    with pytest.raises(ConfigError, match="model.head"):
        CrossModalLearner(tiny_clip, class_names=["a", "b"], head="everything")


@pytest.mark.parametrize(
    "section, data, refused, suggested",
    [
        (TrainConfig, {"epoch": 3}, "train.epoch", "train.epochs"),
        (BufferConfig, {"Size": 3}, "buffer.Size", "buffer.size"),
        (OptimConfig, {"learning_rate": 0.1}, "optim.learning_rate", None),
        (RunConfig, {"train": {"epochs": 1}, "epochs": 3}, "epochs", "train.epochs"),
        (RunConfig, {"trian": {}}, "trian", "train"),
    ],
)
def test_unknown_keys_are_refused_by_name(section, data, refused, suggested):
    with pytest.raises(ConfigError) as info:
        section.from_dict(data)
    message = str(info.value)
    assert f"unknown config key {refused!r}" in message
    if suggested is None:
        assert "did you mean" not in message
    else:
        assert f"did you mean {suggested!r}" in message
    assert f"did you mean {refused!r}" not in message  # never the key it refused


def test_the_log_starts_with_what_the_loss_is_made_of_and_what_size_is_normal(tiny_clip, caplog):
    """Loss values such as 142.7 appeared without a word: the replay MSE is on logits scaled by the
    logit scale (s = 100), so its size is said, with the run's own weights, before the first line."""
    from alta.run.writers import LogLines, loss_note

    names = [f"class {k}" for k in range(4)]
    alta = CrossModalLearner(tiny_clip, class_names=names, method="alta", alpha=0.5, beta=0.3)
    note = loss_note(alta)
    assert note.startswith("loss = ce + 0.5 replay_ce + 0.3 replay_mse") and "logit scale s = 100" in note
    assert "0.1 in cosine is 100 in replay_mse" in note and "tens or hundreds is normal" in note
    plain = loss_note(CrossModalLearner(tiny_clip, class_names=names, method="cprompt"))
    assert plain.startswith("loss = ce (") and f"scaled by s = {tiny_clip.logit_scale:.0f}" in plain
    assert "tens or hundreds are normal" in plain  # a linear probe's ce climbed from 8 to 362 without a word
    assert loss_note(CrossModalLearner(tiny_clip, class_names=names, method="zeroshot")) is None
    with caplog.at_level("INFO", logger="alta.run"):
        LogLines(num_experiences=2, epochs=1, loss=note, name="alta-buffer20").on_run_start(
            num_experiences=2, start_experience=0, start_epoch=0, result=None)
    assert caplog.messages == [f"alta-buffer20: {note}"]


def test_log_lines_count_rounds_of_an_iteration_budget(caplog):
    """With a budget in iterations (train.iterations) the loop's unit is a round, not an epoch."""
    import logging

    from alta.run.writers import LogLines

    record = {"experience": 0, "epoch": 2, "class_il_mean": 50.0, "class_il": [50.0], "task_il_mean": 60.0,
              "task_il": [60.0], "loss": 0.5}
    with caplog.at_level(logging.INFO, logger="alta.run"):
        LogLines(num_experiences=3, epochs=4, unit="round").on_evaluation(record=record)
        LogLines(num_experiences=3, epochs=4).on_evaluation(record=record)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("experience 1/3, round 2/4:") and lines[1].startswith("experience 1/3, epoch 2/4:")
