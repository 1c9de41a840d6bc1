"""Run groups: K configurations over one shared image encoder give each one's own run, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alta import (
    AlternatingSchedule,
    CrossModalLearner,
    LoopConfig,
    MemoryBuffer,
    ScenarioStream,
    build_optimizer,
    run_stream,
)
from alta.errors import ConfigError
from alta.loop.callbacks import Callback
from alta.loop.group import GroupMember, run_group

# (method, buffer size, schedule): different methods, buffer sizes (none: the sgd lower bound),
# and an alternating schedule, so that members differ in every per-member object.
CONFIGS = [
    ("alta", 40, None),
    ("cprompt_mlp", 100, None),
    ("mlp", 10, None),
    ("sprompt", None, None),
    ("resmlp", 40, None),
    ("cprompt_resmlp", 200, "alternate"),
    ("alta", None, "alternate"),
    ("alta", "herding", None),  # exemplars chosen at each experience's end (5 per class)
]


class _Counter(Callback):
    def __init__(self):
        self.steps = 0
        self.evaluations = []

    def on_step_end(self, **_):
        self.steps += 1

    def on_evaluation(self, *, record):
        self.evaluations.append(record)


def _small_stream(per_class=24):
    """Two experiences of the digits stream, ``per_class`` training and test images per class."""
    import dataclasses

    from alta.data import ExperienceDataset

    stream = ScenarioStream.from_name("digits", resolution=32)

    def first(dataset):
        keep, counts = [], {}
        for position, label in enumerate(dataset.targets.tolist()):
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                keep.append(position)
        return ExperienceDataset(dataset.source, dataset.indices[keep], label_map=dataset.label_map,
                                 transform=dataset.transform)

    experiences = [dataclasses.replace(e, train=first(e.train), test=first(e.test)) for e in list(stream)[:2]]
    return stream, experiences


def _member(backbone, stream, method, buffer_size, schedule, *, epochs):
    learner = CrossModalLearner(backbone, class_names=stream.class_names, method=method, seed=0)
    optimizer, scheduler = build_optimizer(learner, epochs=epochs)
    if buffer_size == "herding":
        buffer = MemoryBuffer(5 * len(stream.class_names), policy="herding", per_class=5, seed=3)
    else:
        buffer = MemoryBuffer(buffer_size, seed=3) if buffer_size else None
    plan = AlternatingSchedule("alternate", period=2) if schedule else None
    return GroupMember(learner, optimizer=optimizer, scheduler=scheduler, buffer=buffer, schedule=plan,
                       callbacks=[_Counter()], name=method)


def _state(member: GroupMember) -> dict:
    state = {f"learner.{k}": v for k, v in member.learner.state_dict().items()}
    if member.buffer is not None:
        state.update({f"buffer.{k}": v for k, v in member.buffer.state_dict().items()})
    state["optimizer"] = member.optimizer.state_dict()
    return state


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("train_cache", ["none", "fixed"])
def test_a_group_gives_each_member_its_own_run_bit_for_bit(tiny_clip, train_cache):
    stream, experiences = _small_stream()
    epochs = 2
    loop = LoopConfig(epochs=epochs, batch_size=16, seed=1, train_cache=train_cache, eval_every=1)

    grouped = [_member(tiny_clip, stream, *config, epochs=epochs) for config in CONFIGS]
    results = run_group(grouped, experiences, loop=loop)

    for config, member, result in zip(CONFIGS, grouped, results):
        alone = _member(tiny_clip, stream, *config, epochs=epochs)
        expected = run_stream(alone.learner, experiences, optimizer=alone.optimizer, scheduler=alone.scheduler,
                              buffer=alone.buffer, schedule=alone.schedule, loop=loop, callbacks=alone.callbacks)
        np.testing.assert_array_equal(result.class_il, expected.class_il, err_msg=str(config))
        np.testing.assert_array_equal(result.task_il, expected.task_il, err_msg=str(config))
        assert result.evaluations == expected.evaluations, config
        assert result.history == expected.history, config  # losses and train accuracies, bit for bit
        _assert_same(_state(member), _state(alone), str(config))  # parameters, snapshots, buffer, momentum
        mine, theirs = member.callbacks[0], alone.callbacks[0]
        assert mine.steps == theirs.steps > 0 and mine.evaluations == theirs.evaluations == expected.evaluations
    # the members really differ: the group did not train one configuration K times
    finals = {round(float(r.class_il[-1].mean()), 6) for r in results}
    assert len(finals) > 2


def test_a_group_resumes_from_its_members_states(tiny_clip):
    """States and results saved after experience 0, loaded into new members: the same end."""
    import copy

    stream, experiences = _small_stream()
    loop = LoopConfig(epochs=1, batch_size=16, seed=2, train_cache="fixed", eval_every=0)
    configs = CONFIGS[:3]

    class Save(Callback):
        def __init__(self):
            self.member, self.saved = None, None

        def on_experience_end(self, *, experience, result):
            if experience == 0:
                m = self.member
                self.saved = dict(learner=copy.deepcopy(m.learner.state_dict()),
                                  buffer=copy.deepcopy(m.buffer.state_dict()),
                                  optimizer=copy.deepcopy(m.optimizer.state_dict()),
                                  scheduler=copy.deepcopy(m.scheduler.state_dict()), result=copy.deepcopy(result))

    savers, members = [], []
    for config in configs:
        m = _member(tiny_clip, stream, *config, epochs=1)
        saver = Save()
        member = GroupMember(m.learner, optimizer=m.optimizer, scheduler=m.scheduler, buffer=m.buffer,
                             callbacks=[saver])
        saver.member = member
        savers.append(saver)
        members.append(member)
    full = run_group(members, experiences, loop=loop)

    resumed_members = []
    for config, saver in zip(configs, savers):
        m = _member(tiny_clip, stream, *config, epochs=1)
        m.learner.load_state_dict(saver.saved["learner"])
        m.buffer.load_state_dict(saver.saved["buffer"])
        m.optimizer.load_state_dict(saver.saved["optimizer"])
        m.scheduler.load_state_dict(saver.saved["scheduler"])
        resumed_members.append(GroupMember(m.learner, optimizer=m.optimizer, scheduler=m.scheduler, buffer=m.buffer,
                                           result=saver.saved["result"]))
    resumed = run_group(resumed_members, experiences, loop=loop, start_experience=1)
    for a, b in zip(resumed, full):
        np.testing.assert_array_equal(a.class_il, b.class_il)
        assert a.evaluations == b.evaluations and a.history == b.history


def test_run_group_refuses_what_members_must_not_share(tiny_clip):
    from alta import load_backbone

    stream = ScenarioStream.from_name("digits", resolution=32)
    a = _member(tiny_clip, stream, "alta", 20, None, epochs=1)
    b = _member(tiny_clip, stream, "mlp", 20, None, epochs=1)
    shared_buffer = GroupMember(b.learner, optimizer=b.optimizer, buffer=a.buffer)
    with pytest.raises(ConfigError, match="share one buffer"):
        run_group([a, shared_buffer], list(stream))
    with pytest.raises(ConfigError, match="share one learner"):
        run_group([a, a], list(stream))
    other = load_backbone("tiny-vit", device="cpu", seed=0)  # same weights, another object
    c = _member(other, stream, "alta", 20, None, epochs=1)
    with pytest.raises(ConfigError, match="same alta.load_backbone"):
        run_group([a, c], list(stream))
    zeroshot = CrossModalLearner(tiny_clip, class_names=stream.class_names, method="zeroshot")
    with pytest.raises(ConfigError, match="trains nothing"):
        run_group([a, GroupMember(zeroshot, optimizer=a.optimizer)], list(stream))
    with pytest.raises(ConfigError, match="non-empty list"):
        run_group([], list(stream))
    with pytest.raises(ConfigError, match="at least one experience"):
        run_group([a], [])


def test_run_group_refuses_data_parallel_training_under_torchrun(tiny_clip, monkeypatch):
    import alta.distributed
    from alta.loop import LoopConfig

    stream, experiences = _small_stream()
    a = _member(tiny_clip, stream, "alta", 20, None, epochs=1)
    monkeypatch.setattr(alta.distributed, "is_distributed", lambda: True)
    with pytest.raises(ConfigError, match="does not support data-parallel"):
        run_group([a], experiences, loop=LoopConfig(epochs=1, distributed=True))
