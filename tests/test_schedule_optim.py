"""AlternatingSchedule counters and the reference optimiser set-up."""

from __future__ import annotations

import math

import pytest

from alta import AlternatingSchedule, CrossModalLearner, build_optimizer
from alta.errors import CheckpointError, ConfigError
from alta.optim import reference_lr


def turns(schedule, n, *, per_epoch=1):
    out = []
    for _ in range(n):
        out.append("".join(sorted(b[0] for b in schedule.active_branches())))  # 'it' = image+text
        for _ in range(per_epoch):
            schedule.step()
        if schedule.unit == "epoch":
            schedule.end_epoch()
    return out


def test_crossed_updates_both_every_step():
    assert turns(AlternatingSchedule(), 3) == ["it", "it", "it"]


def test_alternate_by_steps_and_epochs():
    assert turns(AlternatingSchedule("alternate", period=2), 6) == ["t", "t", "i", "i", "t", "t"]
    assert turns(AlternatingSchedule("alternate", period=1, start="image"), 3) == ["i", "t", "i"]
    by_epoch = AlternatingSchedule("alternate", unit="epoch", period=1)
    assert turns(by_epoch, 3, per_epoch=5) == ["t", "i", "t"]


def test_schedule_state_round_trip():
    a = AlternatingSchedule("alternate", period=3)
    turns(a, 4)
    b = AlternatingSchedule("alternate", period=3)
    b.load_state_dict(a.state_dict())
    assert turns(a, 5) == turns(b, 5)
    with pytest.raises(CheckpointError, match="saved with"):
        AlternatingSchedule("alternate", period=2).load_state_dict(a.state_dict())


@pytest.mark.parametrize("kwargs", [dict(mode="sometimes"), dict(period=0), dict(unit="batch"), dict(start="audio")])
def test_schedule_bad_input(kwargs):
    with pytest.raises(ConfigError):
        AlternatingSchedule(**kwargs)


def test_reference_lr_schedule():
    assert reference_lr(0, lr=0.002, epochs=30) == 1e-5  # warm-up epoch
    assert reference_lr(1, lr=0.002, epochs=30) == pytest.approx(0.002)
    assert reference_lr(16, lr=0.002, epochs=30) == pytest.approx(0.002 * (1 + math.cos(math.pi * 15 / 30)) / 2)
    assert reference_lr(7, lr=1e-5, epochs=30, schedule="constant") == 1e-5


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_build_optimizer_matches_reference_and_restarts_per_experience(tiny_clip):
    learner = CrossModalLearner(tiny_clip, class_names=["a", "b"])
    optimizer, scheduler = build_optimizer(learner, epochs=3)
    group = optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
    assert len(group["params"]) == len(learner.trainable_parameters())
    lrs = []
    for _ in range(6):  # two experiences of 3 epochs
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-5) and lrs[3] == pytest.approx(1e-5)
    assert lrs[1] == pytest.approx(0.002) and lrs[1:3] == pytest.approx(lrs[4:6])


def test_build_optimizer_bad_input(tiny_clip):
    learner = CrossModalLearner(tiny_clip, class_names=["a", "b"])
    with pytest.raises(ConfigError, match="lr_schedule.*step.*Valid values: cosine, constant"):
        build_optimizer(learner, schedule="step")
    with pytest.raises(ConfigError, match="nothing to optimise"):
        build_optimizer(CrossModalLearner(tiny_clip, class_names=["a", "b"], method="zeroshot"))
