"""A training budget in iterations (ZSCL / MoE-Adapters: 1,000 steps per task at batch 64): cycled
passes, rounds, the loop's step counts, and a resume at a round boundary mid-experience."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from alta import ScenarioStream
from alta.errors import ConfigError
from alta.loop import LoopConfig, epoch_batches, round_batches
from alta.loop.batches import round_steps
from alta.loop.cache import FeatureCache


@pytest.fixture(scope="module")
def digits():
    return ScenarioStream.from_name("digits", resolution=32)


def _labels(batches):
    return [y.tolist() for _, y in batches]


@pytest.mark.parametrize("mode", ["fixed", "none"])
def test_rounds_cycle_shuffled_passes_and_cut_the_budget(tiny_clip, digits, mode):
    experience = digits[0]
    cache = FeatureCache()
    per_pass = math.ceil(len(experience.train) / 64)
    iterations = 2 * per_pass + 3  # two whole passes and three batches of a third
    loop = LoopConfig(epochs=4, iterations=iterations, batch_size=64, seed=3, train_cache=mode)
    rounds = [list(round_batches(experience, backbone=tiny_clip, round_index=r, loop=loop, cache=cache))
              for r in range(4)]
    assert [len(r) for r in rounds] == [len(round_steps(round_index=r, loop=loop)) for r in range(4)]
    assert sum(len(r) for r in rounds) == iterations
    # pass p is epoch p of the epoch loop: same shuffle, same (augmented) inputs
    passes = [list(epoch_batches(experience, backbone=tiny_clip, epoch=p, loop=loop.replace(iterations=None),
                                 cache=cache)) for p in range(3)]
    expected = passes[0] + passes[1] + passes[2][:3]
    got = [batch for r in rounds for batch in r]
    assert _labels(got) == _labels(expected)
    for (a, _), (b, _) in zip(got, expected):
        assert torch.equal(a, b)
    # every pass holds every training sample once; the last batch of a pass is the smaller one
    assert sorted(sum(_labels(passes[0]), [])) == sorted(experience.train.targets.tolist())
    assert len(got[per_pass - 1][1]) == len(experience.train) - 64 * (per_pass - 1)


def test_a_round_starting_mid_pass_loads_only_its_own_batches(tiny_clip, digits):
    experience = digits[1]
    loop = LoopConfig(epochs=3, iterations=6, batch_size=32, seed=1)  # rounds of 2 steps, passes of ~12
    loaded = []
    train = experience.train
    real = type(train).__getitem__

    class Counting(type(train)):
        def __getitem__(self, index):
            loaded.append(index)
            return real(self, index)

    counting = copy.copy(train)
    counting.__class__ = Counting
    experience = type(experience)(**{**experience.__dict__, "train": counting})
    batches = list(round_batches(experience, backbone=tiny_clip, round_index=2, loop=loop))
    assert len(batches) == 2 and len(loaded) == 2 * 32  # steps 4 and 5: not the four before them


def test_loop_config_checks_the_budget():
    assert LoopConfig(epochs=10, iterations=1000).iterations == 1000
    with pytest.raises(ConfigError, match="iterations"):
        LoopConfig(iterations=0)
    with pytest.raises(ConfigError, match="at most 5"):
        LoopConfig(epochs=10, iterations=5)
    with pytest.raises(ConfigError, match="round_batches needs"):
        next(round_batches(None, backbone=None, round_index=0, loop=LoopConfig()))


def _run(tiny_clip, stream, *, callbacks=None, result=None, start_experience=0, start_epoch=0, state=None):
    from alta import AlternatingSchedule, CrossModalLearner, MemoryBuffer, build_optimizer, run_stream

    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, seed=0)
    buffer = MemoryBuffer(40, seed=3)
    schedule = AlternatingSchedule("alternate", period=2)
    optimizer, scheduler = build_optimizer(learner, epochs=3)
    objects = dict(learner=learner, buffer=buffer, schedule=schedule, optimizer=optimizer, scheduler=scheduler)
    if state is not None:
        for name, obj in objects.items():
            obj.load_state_dict(state[name])
    loop = LoopConfig(epochs=3, iterations=8, batch_size=64, seed=1, train_cache="none", eval_every=1)
    out = run_stream(learner, [stream[0], stream[1]], optimizer=optimizer, scheduler=scheduler, buffer=buffer,
                     schedule=schedule, loop=loop, callbacks=callbacks, result=result,
                     start_experience=start_experience, start_epoch=start_epoch)
    return out, objects


def test_a_run_resumed_at_a_round_boundary_mid_experience_is_bit_identical(tiny_clip, digits):
    from alta.loop.callbacks import Callback

    full, _ = _run(tiny_clip, digits)
    assert [sum(stats["steps"] for stats in epochs) for epochs in full.history] == [8, 8]
    assert [[stats["steps"] for stats in epochs] for epochs in full.history] == [[2, 3, 3], [2, 3, 3]]

    captured = {}

    class Capture(Callback):
        objects: dict = {}

        def on_epoch_end(self, *, experience, epoch, stats, result):
            if (experience, epoch) == (1, 0):  # after round 1 of 3 of experience 2: mid-pass, mid-experience
                captured.update({k: copy.deepcopy(o.state_dict()) for k, o in self.objects.items()},
                                result=copy.deepcopy(result))
                raise KeyboardInterrupt

    capture = Capture()
    import alta.loop.fit as fit

    real = fit.fit_experience

    def remember(learner, experience, **kwargs):
        capture.objects = dict(learner=learner, **{k: kwargs[k] for k in ("buffer", "schedule", "optimizer",
                                                                            "scheduler")})
        return real(learner, experience, **kwargs)

    fit.fit_experience = remember
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tiny_clip, digits, callbacks=[capture])
    finally:
        fit.fit_experience = real
    resumed, _ = _run(tiny_clip, digits, result=captured["result"], start_experience=1, start_epoch=1,
                      state=captured)
    np.testing.assert_array_equal(resumed.class_il, full.class_il)
    np.testing.assert_array_equal(resumed.task_il, full.task_il)
    assert resumed.evaluations == full.evaluations
    assert resumed.history == full.history
