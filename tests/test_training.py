"""epoch_batches and its feature-cache modes; derive_seed."""

from __future__ import annotations

import torch

from alta import ScenarioStream
from alta.cache import FeatureCache
from alta.seeding import derive_seed
from alta.training import epoch_batches


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
        batches = list(epoch_batches(experience, backbone=tiny_clip, epoch=0, batch_size=64, seed=5,
                                     train_cache=mode, cache=cache))
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
    a = next(iter(epoch_batches(stream[1], backbone=tiny_clip, epoch=2, seed=9)))
    b = next(iter(epoch_batches(stream[1], backbone=tiny_clip, epoch=2, seed=9)))
    c = next(iter(epoch_batches(stream[1], backbone=tiny_clip, epoch=3, seed=9)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_loops_refuse_bad_values(tiny_clip):
    import pytest

    from alta import CrossModalLearner, build_optimizer, run_stream
    from alta.errors import ConfigError

    stream = ScenarioStream.from_name("digits", resolution=32)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names)
    optimizer, _ = build_optimizer(learner)
    for kwargs, match in [(dict(epochs=0), "epochs"), (dict(epochs=1, batch_size=0), "batch_size"),
                          (dict(epochs=1, eval_every=-1), "eval_every"), (dict(epochs=1, seed=-1), "seed"),
                          (dict(epochs=1, start_experience=9), "start_experience")]:
        with pytest.raises(ConfigError, match=match):
            run_stream(learner, stream, optimizer=optimizer, **kwargs)
    with pytest.raises(ConfigError, match="weight_decay"):
        build_optimizer(learner, weight_decay=float("nan"))


def test_augmentation_does_not_depend_on_the_number_of_workers(tiny_clip):
    """Each sample's random transform is drawn from (seed, experience, epoch, index)."""
    stream = ScenarioStream.from_name("digits", resolution=32)
    kwargs = dict(backbone=tiny_clip, epoch=1, batch_size=50, seed=4)
    in_process = list(epoch_batches(stream[2], num_workers=0, **kwargs))
    with_workers = list(epoch_batches(stream[2], num_workers=2, **kwargs))
    assert len(in_process) == len(with_workers)
    for (a, y), (b, z) in zip(in_process, with_workers):
        assert torch.equal(y, z) and torch.equal(a, b)


def test_joint_upper_bound_is_evaluated_per_sequential_experience(tiny_clip):
    from alta import CrossModalLearner, build_optimizer, evaluate, run_stream

    joint = ScenarioStream.from_name("digits", resolution=32, joint=True)
    learner = CrossModalLearner(tiny_clip, class_names=joint.class_names)
    optimizer, scheduler = build_optimizer(learner, epochs=1)
    result = run_stream(learner, joint, optimizer=optimizer, scheduler=scheduler, epochs=1, batch_size=256,
                        train_cache="fixed", eval_every=0)
    assert result.class_il.shape == result.task_il.shape == (1, 5)  # one training row, five experiences
    direct = evaluate(learner, joint.eval_experiences)
    assert result.class_il[0].tolist() == list(direct.class_il)
    assert result.task_il[0].tolist() == list(direct.task_il)
    assert [r["experiences"] for r in result.evaluations][-1] == [0, 1, 2, 3, 4]
