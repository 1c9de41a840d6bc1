"""evaluate(): class-IL vs task-IL from the same logits, caching, and errors."""

from __future__ import annotations

import pytest
import torch
from helpers import synthetic_experiences

from alta import CrossModalLearner, evaluate
from alta.errors import ConfigError, StateError, TrainingError
from alta.loop.cache import FeatureCache
from alta.loop.evaluation import task_il_mask


def test_task_il_mask_uses_each_samples_own_experience():
    logits = torch.tensor([[5.0, 1.0, 9.0, 0.0], [0.0, 2.0, 1.0, 8.0]])
    mapping = torch.tensor([0, 0, 1, 1])
    masked = task_il_mask(logits, torch.tensor([1, 2]), mapping)
    assert masked.argmax(1).tolist() == [0, 3]
    assert torch.isinf(masked[0, 2:]).all() and torch.isinf(masked[1, :2]).all()


def test_evaluate_matches_a_direct_computation(tiny_clip):
    exps = synthetic_experiences(2, 2, per_class=5)
    learner = CrossModalLearner(tiny_clip, class_names=["w", "x", "y", "z"], method="alta")
    learner.begin_experience(exps[0])
    result = evaluate(learner, exps, batch_size=3)
    for t, exp in enumerate(exps):
        images, labels = exp.test.tensors
        with torch.no_grad():
            logits = learner(images)
        class_il = 100.0 * (logits.argmax(1) == labels).float().mean().item()
        own = torch.tensor(exp.classes)
        task_il = 100.0 * (own[logits[:, own].argmax(1)] == labels).float().mean().item()
        assert result.class_il[t] == pytest.approx(class_il)
        assert result.task_il[t] == pytest.approx(task_il)
        assert result.task_il[t] >= result.class_il[t]
    assert result.num_samples == (10, 10)


def test_cached_evaluation_equals_uncached_and_encodes_once(tiny_clip):
    from alta import ScenarioStream

    stream = ScenarioStream.from_name("digits", resolution=32, num_experiences=5)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names)
    learner.begin_experience(stream[0])
    cache = FeatureCache()
    plain = evaluate(learner, stream[:2])
    cached = evaluate(learner, stream[:2], cache=cache)
    again = evaluate(learner, stream[:2], cache=cache)
    assert plain.class_il == pytest.approx(cached.class_il) and cached == again
    assert cache.misses == 2 and cache.hits == 2


def test_evaluate_errors(tiny_clip):
    exps = synthetic_experiences(1, 2)
    learner = CrossModalLearner(tiny_clip, class_names=["a", "b"])
    with pytest.raises(StateError, match="before any experience"):
        evaluate(learner, exps)
    with pytest.raises(ConfigError, match="at least one experience"):
        evaluate(learner, [])
    zeroshot = CrossModalLearner(tiny_clip, class_names=["a", "b"], method="zeroshot")
    assert len(evaluate(zeroshot, exps).class_il) == 1  # zero-shot needs no training


def test_non_finite_logits_are_refused_not_scored_as_one_class(tiny_clip):
    """NaN image features (a NaN in the backbone's weights, fp16 overflow) gave NaN logits whose
    argmax is class 0: evaluate() reported an accuracy for them (20% on a 5-class experience)."""
    import copy

    exps = synthetic_experiences(2, 2, per_class=5)
    broken = copy.deepcopy(tiny_clip)
    with torch.no_grad():
        next(broken.model.visual.parameters()).fill_(float("nan"))
    learner = CrossModalLearner(broken, class_names=["w", "x", "y", "z"], method="zeroshot")
    with pytest.raises(TrainingError, match=r"non-finite logits \(NaN or \+inf\) for 10 of the 10 test images of "
                                            r"experience 1, 10 of the 10 test images of experience 2"):
        evaluate(learner, exps, batch_size=3)
    seen = CrossModalLearner(tiny_clip, class_names=["w", "x", "y", "z"], head="seen")
    seen.begin_experience(exps[0])  # -inf logits of classes not seen yet are not refused
    assert evaluate(seen, exps).num_samples == (10, 10)


def test_cache_never_serves_another_datasets_features(tiny_clip, tmp_path):
    """A cached entry whose length or labels differ from the dataset's is recomputed."""
    from alta import ScenarioStream

    stream = ScenarioStream.from_name("digits", resolution=32)
    cache = FeatureCache(tmp_path)
    first = cache.features(tiny_clip, stream[0].test)
    key = FeatureCache.key(tiny_clip, stream[0].test)
    # corrupt the stored file with the features of another experience
    other = cache.features(tiny_clip, stream[1].test)
    torch.save({"features": other.features, "labels": other.labels}, tmp_path / f"{key}.pt")
    fresh = FeatureCache(tmp_path).features(tiny_clip, stream[0].test)
    torch.testing.assert_close(fresh.features, first.features)


def test_evaluate_refuses_a_learner_of_another_stream(tiny_clip):
    exps = synthetic_experiences(2, 2)
    learner = CrossModalLearner(tiny_clip, class_names=["a", "b", "c", "d", "e", "f"])
    learner.begin_experience(synthetic_experiences(3, 2)[0])
    with pytest.raises(ConfigError, match="stream of"):
        evaluate(learner, exps)
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate(learner, synthetic_experiences(3, 2)[:1], batch_size=0)


def test_two_in_memory_datasets_with_equal_labels_get_distinct_cache_entries(tiny_clip):
    from torch.utils.data import Dataset

    from alta import ScenarioStream

    class Images(Dataset):
        def __init__(self, x, y):
            self.x, self.targets = x, y

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return self.x[i], int(self.targets[i])

    g = torch.Generator().manual_seed(0)
    y = torch.arange(8) % 2
    streams = [ScenarioStream(Images(torch.randn(8, 3, 32, 32, generator=g), y),
                              Images(torch.randn(8, 3, 32, 32, generator=g), y), ["cat", "dog"], num_experiences=1)
               for _ in range(2)]
    cache = FeatureCache()
    a = cache.features(tiny_clip, streams[0][0].test).features
    b = cache.features(tiny_clip, streams[1][0].test).features
    assert not torch.equal(a, b) and cache.misses == 2


def test_top5_and_confusion_match_an_independent_computation(tiny_clip):
    """Top-5 from a full sort of the logits, the confusion matrix from scikit-learn; the top-1
    accuracies are the confusion matrix's diagonal share."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    from alta import ScenarioStream

    stream = ScenarioStream.from_name("digits", resolution=32)  # 5 experiences x 2 classes
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, seed=0)
    learner.begin_experience(stream[0])
    result = evaluate(learner, stream, batch_size=64, cache=FeatureCache())
    labels_all, predicted_all = [], []
    for t, experience in enumerate(stream):
        loader = torch.utils.data.DataLoader(experience.test, batch_size=500)
        images, labels = next(iter(loader))
        with torch.no_grad():
            logits = learner(images)  # (N, C)
        ranked = logits.argsort(dim=1, descending=True)[:, :5]  # (N, 5)
        top5 = 100.0 * (ranked == labels[:, None]).any(1).float().mean().item()
        assert result.class_il_top5[t] == pytest.approx(top5)
        assert result.class_il_top5[t] >= result.class_il[t]
        labels_all.append(labels)
        predicted_all.append(logits.argmax(1))
    expected = confusion_matrix(torch.cat(labels_all), torch.cat(predicted_all), labels=list(range(10)))
    np.testing.assert_array_equal(result.confusion, expected)
    owner = np.asarray(stream.class_to_experience)
    for t in range(len(stream)):
        rows = result.confusion[owner == t]
        assert result.class_il[t] == pytest.approx(100.0 * np.trace(result.confusion[owner == t][:, owner == t])
                                                   / rows.sum())
    record = result.as_dict()
    assert record["class_il_top5"] == list(result.class_il_top5) and "confusion" not in record


def test_top5_is_everything_when_the_head_has_at_most_five_classes(tiny_clip):
    exps = synthetic_experiences(2, 2, per_class=5)
    learner = CrossModalLearner(tiny_clip, class_names=["w", "x", "y", "z"], method="alta")
    learner.begin_experience(exps[0])
    assert evaluate(learner, exps).class_il_top5 == (100.0, 100.0)


def test_parameter_counts(tiny_clip):
    from alta.loop.evaluation import parameter_counts

    learner = CrossModalLearner(tiny_clip, class_names=["w", "x", "y", "z"], method="alta")
    counts = parameter_counts(learner)
    backbone = sum(p.numel() for p in tiny_clip.parameters())
    assert counts["trainable"] == learner.num_trainable_parameters() > 0
    assert counts["total"] == backbone + counts["trainable"]
    frozen = parameter_counts(CrossModalLearner(tiny_clip, class_names=["w", "x"], method="zeroshot"))
    assert frozen == {"trainable": 0, "total": backbone}
