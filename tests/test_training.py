"""epoch_batches and its feature-cache modes; derive_seed."""

from __future__ import annotations

import pytest
import torch

from alta import ScenarioStream
from alta.loop import LoopConfig, epoch_batches
from alta.loop.cache import FeatureCache
from alta.seeding import derive_seed


def test_derive_seed_is_a_valid_torch_seed_and_stable():
    seed = derive_seed(2**62, 3, 7)
    assert 0 <= seed < 2**63 and seed == derive_seed(2**62, 3, 7) != derive_seed(2**62, 3, 8)
    torch.Generator().manual_seed(derive_seed(seed, 1))  # a derived seed can seed again


def test_cache_modes_yield_the_same_samples_and_views_differ(tiny_clip):
    stream = ScenarioStream.from_name("digits", resolution=32)
    experience = stream[0]
    cache = FeatureCache()
    seen = {}
    for mode in ("none", "fixed", "views:3"):
        batches = list(epoch_batches(experience, backbone=tiny_clip, epoch=0, cache=cache,
                                     loop=LoopConfig(batch_size=64, seed=5, train_cache=mode)))
        labels = torch.cat([y for _, y in batches])
        assert sorted(labels.tolist()) == sorted(experience.train.targets.tolist())  # every sample once
        seen[mode] = batches
    assert seen["none"][0][0].shape[1:] == (3, 32, 32)
    assert seen["fixed"][0][0].shape[1:] == (tiny_clip.embed_dim,)
    # views: epoch 0 and epoch 1 draw different views of the same images
    stored = cache.features(tiny_clip, experience.train, views=3, seed=derive_seed(5, 0))
    assert stored.features.shape == (3, len(experience.train), tiny_clip.embed_dim)
    assert (stored.features[0] - stored.features[1]).abs().max() > 1e-3  # augmentation differs per view


def test_epoch_batches_are_reproducible(tiny_clip):
    stream = ScenarioStream.from_name("digits", resolution=32)
    a = next(iter(epoch_batches(stream[1], backbone=tiny_clip, epoch=2, loop=LoopConfig(seed=9))))
    b = next(iter(epoch_batches(stream[1], backbone=tiny_clip, epoch=2, loop=LoopConfig(seed=9))))
    c = next(iter(epoch_batches(stream[1], backbone=tiny_clip, epoch=3, loop=LoopConfig(seed=9))))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_loops_refuse_bad_values(tiny_clip):
    import pytest

    from alta import CrossModalLearner, LoopConfig, build_optimizer, run_stream
    from alta.errors import ConfigError

    stream = ScenarioStream.from_name("digits", resolution=32)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names)
    optimizer, _ = build_optimizer(learner)
    for kwargs, match in [(dict(epochs=0), "epochs"), (dict(epochs=1, batch_size=0), "batch_size"),
                          (dict(epochs=1, eval_every=-1), "eval_every"), (dict(epochs=1, seed=-1), "seed"),
                          (dict(epochs=1, train_cache="views:0"), "views"),
                          (dict(epochs=1, eval_before_snapshot=1), "eval_before_snapshot")]:
        with pytest.raises(ConfigError, match=match):
            LoopConfig(**kwargs)
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        LoopConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="start_experience"):
        run_stream(learner, stream, optimizer=optimizer, loop=LoopConfig(epochs=1), start_experience=9)
    with pytest.raises(ConfigError, match="weight_decay"):
        build_optimizer(learner, weight_decay=float("nan"))


def test_augmentation_does_not_depend_on_the_number_of_workers(tiny_clip):
    """Each sample's random transform is drawn from (seed, experience, epoch, index)."""
    stream = ScenarioStream.from_name("digits", resolution=32)
    kwargs = dict(backbone=tiny_clip, epoch=1)
    in_process = list(epoch_batches(stream[2], loop=LoopConfig(batch_size=50, seed=4, num_workers=0), **kwargs))
    with_workers = list(epoch_batches(stream[2], loop=LoopConfig(batch_size=50, seed=4, num_workers=2), **kwargs))
    assert len(in_process) == len(with_workers)
    for (a, y), (b, z) in zip(in_process, with_workers):
        assert torch.equal(y, z) and torch.equal(a, b)


class _Recorder:
    """Build a Callback that records every event with its arguments."""

    @staticmethod
    def make():
        from alta.loop.callbacks import EVENTS, Callback

        events = []

        def recorder(name):
            def method(self, **kwargs):
                events.append((name, kwargs))
            return method

        cls = type("Recording", (Callback,), {name: recorder(name) for name in EVENTS})
        return cls(), events


def _tiny_run(tiny_clip, *, epochs=3, callbacks=None, result=None, start_experience=0, start_epoch=0, state=None,
              method="alta", loop_kwargs=None):
    from alta import AlternatingSchedule, CrossModalLearner, LoopConfig, MemoryBuffer, build_optimizer, run_stream

    stream = ScenarioStream.from_name("digits", resolution=32)
    experiences = [stream[0], stream[1]]
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, method=method, seed=0)
    buffer = MemoryBuffer(40, seed=3)
    schedule = AlternatingSchedule("alternate" if method == "alta" else "crossed", period=2)
    optimizer, scheduler = build_optimizer(learner, epochs=epochs)
    if state is not None:
        learner.load_state_dict(state["learner"])
        buffer.load_state_dict(state["buffer"])
        schedule.load_state_dict(state["schedule"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    loop = LoopConfig(epochs=epochs, batch_size=64, seed=1, train_cache="fixed", eval_every=1, **(loop_kwargs or {}))
    out = run_stream(learner, experiences, optimizer=optimizer, scheduler=scheduler, buffer=buffer, schedule=schedule,
                     loop=loop, callbacks=callbacks, result=result, start_experience=start_experience,
                     start_epoch=start_epoch)
    return out, dict(learner=learner, buffer=buffer, schedule=schedule, optimizer=optimizer, scheduler=scheduler)


def test_a_callback_receives_every_event_in_order(tiny_clip):
    recorder, events = _Recorder.make()
    result, _ = _tiny_run(tiny_clip, epochs=2, callbacks=[recorder])
    names = [name for name, _ in events]
    assert names[0] == "on_run_start" and names[-1] == "on_run_end"
    per_experience = []
    for t in range(2):
        start = names.index("on_experience_start", names.index("on_experience_start") + 1 if t else 0)
        end = names.index("on_experience_end", start)
        per_experience.append(names[start : end + 1])
    for t, seq in enumerate(per_experience):
        # epoch 1 evaluates (eval_every=1), the last epoch is covered by the end-of-experience evaluation
        compact = [n for n in seq if n != "on_step_end"]
        assert compact == ["on_experience_start", "on_epoch_start", "on_evaluation", "on_epoch_end",
                           "on_epoch_start", "on_epoch_end", "on_evaluation", "on_experience_end"]
    epoch_ends = [kw for name, kw in events if name == "on_epoch_end"]
    assert [(kw["experience"], kw["epoch"]) for kw in epoch_ends] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(kw["result"] is result for kw in epoch_ends)
    step_counts = [kw["num_steps"] for name, kw in events if name == "on_epoch_start"]
    assert sum(step_counts) == sum(1 for name, _ in events if name == "on_step_end")
    evaluations = [kw["record"] for name, kw in events if name == "on_evaluation"]
    assert evaluations == result.evaluations


def test_resume_at_an_epoch_boundary_gives_the_uninterrupted_run(tiny_clip):
    """A state captured in on_epoch_end (mid-experience) resumes to the identical result."""
    import copy

    import numpy as np

    from alta.loop.callbacks import Callback

    full, _ = _tiny_run(tiny_clip, epochs=3)

    captured = {}

    class Capture(Callback):
        def __init__(self):
            self.objects = None

        def on_epoch_end(self, *, experience, epoch, stats, result):
            if (experience, epoch) == (1, 0):
                o = self.objects
                captured.update(
                    learner=copy.deepcopy(o["learner"].state_dict()), buffer=copy.deepcopy(o["buffer"].state_dict()),
                    schedule=copy.deepcopy(o["schedule"].state_dict()),
                    optimizer=copy.deepcopy(o["optimizer"].state_dict()),
                    scheduler=copy.deepcopy(o["scheduler"].state_dict()), result=copy.deepcopy(result))
                raise KeyboardInterrupt  # the run is killed after this epoch's checkpoint

    capture = Capture()
    import alta.loop.fit as training

    real = training.fit_experience

    def remember(learner, experience, **kwargs):  # give the callback the run's objects
        capture.objects = dict(learner=learner, buffer=kwargs["buffer"], schedule=kwargs["schedule"],
                               optimizer=kwargs["optimizer"], scheduler=kwargs["scheduler"])
        return real(learner, experience, **kwargs)

    training.fit_experience = remember
    try:
        try:
            _tiny_run(tiny_clip, epochs=3, callbacks=[capture])
        except KeyboardInterrupt:
            pass
    finally:
        training.fit_experience = real
    assert captured, "the interruption point was never reached"
    resumed, _ = _tiny_run(tiny_clip, epochs=3, result=captured["result"], start_experience=1, start_epoch=1,
                           state=captured)
    np.testing.assert_array_equal(resumed.class_il, full.class_il)
    np.testing.assert_array_equal(resumed.task_il, full.task_il)
    assert resumed.evaluations == full.evaluations
    assert resumed.history == full.history


def test_eval_before_snapshot_scores_the_live_context(tiny_clip):
    """With eval_before_snapshot the end-of-experience row is computed before end_experience."""
    import numpy as np

    after, _ = _tiny_run(tiny_clip, epochs=2, method="cprompt")
    before, _ = _tiny_run(tiny_clip, epochs=2, method="cprompt", loop_kwargs=dict(eval_before_snapshot=True))
    # snapshot_timing="end": the snapshot is the live context, so both orders agree exactly
    np.testing.assert_array_equal(after.class_il, before.class_il)


def test_train_step_is_the_custom_loop_of_the_docs(tiny_clip):
    """train_step equals its parts written out (docs/custom-loop.md), bit for bit."""
    from alta import AlternatingSchedule, CrossModalLearner, MemoryBuffer, build_optimizer, train_step

    stream = ScenarioStream.from_name("digits", resolution=32)
    runs = []
    for by_parts in (False, True):
        learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, seed=0)
        buffer = MemoryBuffer(30, seed=1)
        schedule = AlternatingSchedule("alternate")
        optimizer, _ = build_optimizer(learner)
        learner.train()
        learner.begin_experience(stream[0])
        losses = []
        for epoch in range(2):
            for images, labels in epoch_batches(stream[0], backbone=tiny_clip, epoch=epoch,
                                                loop=LoopConfig(batch_size=50, seed=2)):
                if by_parts:
                    memory = None if buffer.is_empty() else buffer.sample(learner.replay_batch_size)
                    out = learner.loss(images, labels, memory=memory, branches=learner.active_branches(schedule))
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    optimizer.step()
                    buffer.add(**out.memory_items())
                    schedule.step()
                    losses.append(out.loss.detach())
                else:
                    losses.append(train_step(learner, images, labels, optimizer=optimizer, buffer=buffer,
                                             schedule=schedule)["loss"])
        runs.append((torch.stack(losses), [p.detach().clone() for p in learner.trainable_parameters()],
                     buffer.state_dict()))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert torch.equal(runs[0][2]["fields"]["logits"], runs[1][2]["fields"]["logits"])


def test_learner_forward_with_labels_is_the_loss(tiny_clip):
    """forward(inputs, labels) returns the StepLoss, so forward-hooking wrappers see the step."""
    from alta import CrossModalLearner

    stream = ScenarioStream.from_name("digits", resolution=32)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, seed=0)
    learner.begin_experience(stream[0])
    images, labels = next(iter(epoch_batches(stream[0], backbone=tiny_clip, epoch=0, loop=LoopConfig(batch_size=8))))
    a = learner(images, labels)
    b = learner.loss(images, labels)
    assert torch.equal(a.loss.detach(), b.loss.detach()) and a.loss.requires_grad
    assert set(a.memory_items()) == {"labels", "image_features", "logits", "experience_ids"}
    assert learner(images).shape == (8, learner.num_classes)


def test_run_stream_keeps_a_confusion_matrix_and_old_new_accuracy_per_experience(tiny_clip):
    import numpy as np

    result, _ = _tiny_run(tiny_clip, epochs=1)
    ends = [r for r in result.evaluations if "new_class_accuracy" in r]
    assert [r["experience"] for r in ends] == [0, 1]
    assert ends[0]["old_class_accuracy"] is None  # no old classes after the first experience
    for t, record in enumerate(ends):
        M = result.confusion[t]
        assert M.shape == (10, 10) and M.sum() == sum(ends[1]["num_samples"])  # every test sample of the 2 experiences
        assert record["new_class_accuracy"] == pytest.approx(result.class_il[t, t])
        assert record["class_il_top5"][t] >= record["class_il"][t]
    # old classes after experience 1: the samples of experience 0
    assert ends[1]["old_class_accuracy"] == pytest.approx(result.class_il[1, 0])
    assert np.diag(result.confusion[1])[:2].sum() == round(result.class_il[1, 0] * ends[1]["num_samples"][0] / 100)


def test_set_deterministic_sets_and_reports_the_flags_and_a_run_still_works(tiny_clip, monkeypatch):
    """The reference's cuDNN flags plus torch.use_deterministic_algorithms; alta's loop has no
    operation without a deterministic kernel (it would raise) and gives the same numbers."""
    import numpy as np

    from alta.seeding import CUBLAS_WORKSPACE_CONFIG, determinism_state, set_deterministic

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = determinism_state()
    try:
        state = set_deterministic()
        assert state == {"deterministic_algorithms": True, "warn_only": False, "cudnn_deterministic": True,
                         "cudnn_benchmark": False, "cublas_workspace_config": CUBLAS_WORKSPACE_CONFIG}
        assert state == determinism_state()
        strict, _ = _tiny_run(tiny_clip, epochs=1)
    finally:
        off = set_deterministic(False)
        torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
    assert not off["deterministic_algorithms"] and not off["cudnn_deterministic"]
    default, _ = _tiny_run(tiny_clip, epochs=1)
    np.testing.assert_array_equal(strict.class_il, default.class_il)
    assert strict.evaluations == default.evaluations


def test_joint_upper_bound_is_evaluated_per_sequential_experience(tiny_clip):
    from alta import CrossModalLearner, LoopConfig, build_optimizer, evaluate, run_stream

    joint = ScenarioStream.from_name("digits", resolution=32, joint=True)
    learner = CrossModalLearner(tiny_clip, class_names=joint.class_names)
    optimizer, scheduler = build_optimizer(learner, epochs=1)
    result = run_stream(learner, joint, optimizer=optimizer, scheduler=scheduler,
                        loop=LoopConfig(epochs=1, batch_size=256, train_cache="fixed", eval_every=0))
    assert result.class_il.shape == result.task_il.shape == (1, 5)  # one training row, five experiences
    direct = evaluate(learner, joint.eval_experiences)
    assert result.class_il[0].tolist() == list(direct.class_il)
    assert result.task_il[0].tolist() == list(direct.task_il)
    assert [r["experiences"] for r in result.evaluations][-1] == [0, 1, 2, 3, 4]
