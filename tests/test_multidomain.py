"""Multi-domain streams (MTIL, X-TAIL, domain-incremental): joined label spaces, few-shot draws,
per-dataset templates, the learner on them, and the full T x T accuracy matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alta import CrossModalLearner, LoopConfig, build_optimizer, evaluate, run_stream
from alta.data import Domain, MultiDomainStream, few_shot_indices, load_sources, make_transform
from alta.errors import ConfigError, DataError
from alta.metrics import domain_il_accuracy, mtil_summary
from alta.prompt import hand_written_features

FASHION = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


def _subset(source, per_class):
    """The first ``per_class`` samples of each class of a source, as a small TensorDataset-like source."""
    from alta.data.datasets import ArraySource

    keep = []
    for c in range(len(source.class_names)):
        keep += torch.nonzero(source.targets == c).flatten()[:per_class].tolist()
    images = np.stack([np.asarray(source[i][0]) for i in keep])
    return ArraySource(images, source.targets[keep], source.class_names, identity=f"{source.identity}|first{per_class}")


@pytest.fixture(scope="module")
def digits_sources():
    train, test = load_sources("digits")
    return _subset(train, 12), _subset(test, 4)


def _stream(digits_sources, *, shots=None, shot_seed=0, kind="task", second_names=FASHION, **kwargs):
    train, test = digits_sources
    tf = make_transform("plain", train=False, resolution=32)
    # the second "dataset" reuses the digit images under other class names (labels 0-9)
    domains = [Domain("digits", train, test, train.class_names, templates=('a photo of the number: "{}".',)),
               Domain("other", train, test, list(second_names), templates=("a photo of a {}.", "a sketch of a {}."))]
    return MultiDomainStream(domains, kind=kind, transform=tf, test_transform=tf, shots=shots, shot_seed=shot_seed,
                             name="two", **kwargs)


def test_label_spaces_are_joined_dataset_after_dataset(digits_sources):
    stream = _stream(digits_sources)
    assert len(stream) == 2 and stream.num_classes == 20 and stream.classes_per_experience == [10, 10]
    assert stream.class_names[:2] == ["zero", "one"] and stream.class_names[10:12] == ["t-shirt", "trouser"]
    assert stream.class_to_experience.tolist() == [0] * 10 + [1] * 10
    first, second = stream
    assert first.classes == list(range(10)) and second.classes == list(range(10, 20))
    assert second.class_names == list(FASHION)
    train = digits_sources[0]
    assert second.train.targets.tolist() == (train.targets + 10).tolist()  # original label c -> 10 + c
    x, y = second.test[0]
    assert x.shape == (3, 32, 32) and y == 10 + int(digits_sources[1].targets[0])
    assert stream.eval_experiences[1].classes == second.classes
    assert stream.class_templates[0] == ('a photo of the number: "{}".',)
    assert stream.class_templates[15] == ("a photo of a {}.", "a sketch of a {}.")
    assert stream.class_to_concept.tolist() == list(range(20))


def test_names_may_repeat_across_datasets_but_not_within_one(digits_sources, tiny_clip):
    names = ["zero", *FASHION[1:]]  # "zero" is also a digit
    stream = _stream(digits_sources, second_names=names)
    assert stream.class_names.count("zero") == 2
    with pytest.raises(ConfigError, match="distinct"):
        CrossModalLearner(tiny_clip, class_names=stream.class_names)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, class_domains=stream.class_to_experience)
    assert torch.equal(learner.w1[0], learner.w1[10])  # one hand-written prompt, two labels
    with pytest.raises(DataError, match="domain 1 .'other'.*distinct"):
        _stream(digits_sources, second_names=["a", "a", *FASHION[2:]])


def test_few_shot_draws_depend_on_the_seed_only(digits_sources):
    targets = digits_sources[0].targets
    a = few_shot_indices(targets, 5, seed=3)
    assert torch.equal(a, few_shot_indices(targets, 5, seed=3))
    assert not torch.equal(a, few_shot_indices(targets, 5, seed=4))
    assert torch.bincount(targets[a]).tolist() == [5] * 10
    assert torch.equal(few_shot_indices(targets, 50, seed=3), torch.arange(len(targets)))  # fewer: all of them
    # a class's draw does not depend on the other classes: class 7 alone draws the same images
    sevens = torch.nonzero(targets == 7).flatten()
    alone = few_shot_indices(targets[sevens], 5, seed=3)
    assert sevens[alone].tolist() == a[targets[a] == 7].tolist()
    stream = _stream(digits_sources, shots=3, shot_seed=1)
    again = _stream(digits_sources, shots=3, shot_seed=1)
    other = _stream(digits_sources, shots=3, shot_seed=2)
    for e, f, g in zip(stream, again, other):
        assert len(e.train) == 30 and len(e.test) == len(digits_sources[1])  # test sets stay whole
        assert torch.equal(e.train.indices, f.train.indices)
    assert not all(torch.equal(e.train.indices, g.train.indices) for e, g in zip(stream, other))
    # the two datasets draw with their own seeds
    assert not torch.equal(stream[0].train.indices, stream[1].train.indices)
    with pytest.raises(ConfigError, match="shots"):
        _stream(digits_sources, shots=0)


def test_a_domain_incremental_stream_has_the_same_classes_in_every_domain(digits_sources):
    with pytest.raises(DataError, match="names its classes differently"):
        _stream(digits_sources, kind="domain")
    stream = _stream(digits_sources, kind="domain", second_names=digits_sources[0].class_names)
    assert stream.kind == "domain" and stream.class_to_concept.tolist() == list(range(10)) * 2
    # a prediction of the right class in the wrong domain is right for domain-IL, wrong for class-IL
    confusion = np.zeros((20, 20), dtype=np.int64)
    confusion[3, 13] = 2  # domain 0's class 3 predicted as domain 1's class 3
    confusion[3, 3] = 1
    confusion[14, 14] = 4
    confusion[15, 4] = 1
    got = domain_il_accuracy(confusion, stream.class_to_experience, stream.class_to_concept)
    assert got == pytest.approx([100.0, 80.0])


def test_template_ensembles_average_normalised_features(tiny_clip):
    names = ["cat", "dog"]
    templates = ("a photo of a {}.", "a drawing of a {}.")
    w1 = hand_written_features(tiny_clip, names, class_templates=[templates, None])
    each = [F.normalize(tiny_clip.encode_tokens(tiny_clip.tokenize([t.format(n) for n in names])), dim=-1)
            for t in templates]
    expected = F.normalize((each[0] + each[1]) / 2, dim=-1)
    assert torch.allclose(w1[0], expected[0], atol=1e-6)
    single = hand_written_features(tiny_clip, names)  # "a photo of a {}": the class without templates
    assert torch.allclose(w1[1], single[1], atol=1e-6)
    with pytest.raises(ConfigError, match="one per class"):
        CrossModalLearner(tiny_clip, class_names=names, class_templates=[templates])
    with pytest.raises(ConfigError, match="exactly one"):
        CrossModalLearner(tiny_clip, class_names=names, class_templates=[("no placeholder",), None])


def test_task_il_is_each_dataset_alone_and_class_il_is_the_union(digits_sources, tiny_clip):
    stream = _stream(digits_sources)
    union = CrossModalLearner(tiny_clip, class_names=stream.class_names, method="zeroshot",
                              class_domains=stream.class_to_experience)
    joint = evaluate(union, list(stream))
    for k, experience in enumerate(stream):
        alone = CrossModalLearner(tiny_clip, class_names=experience.class_names, method="zeroshot")
        single = MultiDomainStream([stream._domains[k]], transform=stream._domains[0].transform,
                                   test_transform=make_transform("plain", train=False, resolution=32))
        own = evaluate(alone, list(single))
        assert joint.task_il[k] == own.class_il[0]  # MTIL: among its own dataset's classes
        assert joint.class_il[k] <= joint.task_il[k]  # X-TAIL: among every dataset's classes


def test_unseen_classes_zeroshot_scores_future_classes_with_frozen_clip(digits_sources, tiny_clip):
    stream = _stream(digits_sources)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, unseen_classes="zeroshot",
                                class_domains=stream.class_to_experience)
    learner.begin_experience(stream[0])
    f1 = torch.randn(4, tiny_clip.embed_dim)
    logits = learner.logits_from_features(f1)
    zeroshot = 2 * learner.logit_scale * F.normalize(f1, dim=-1) @ learner.w1.t()  # ALTA has two terms
    assert torch.allclose(logits[:, 10:], zeroshot[:, 10:], atol=1e-5)
    assert not torch.allclose(logits[:, :10], zeroshot[:, :10], atol=1e-3)
    assert learner.learning_classes().tolist() == list(range(10))  # future prompts are not encoded
    learner.end_experience(stream[0])
    learner.begin_experience(stream[1])
    assert not torch.allclose(learner.logits_from_features(f1)[:, 10:], zeroshot[:, 10:], atol=1e-3)
    with pytest.raises(ConfigError, match="head"):
        CrossModalLearner(tiny_clip, class_names=["a", "b"], unseen_classes="zeroshot", head="seen")


@pytest.mark.parametrize("unseen", ["learned", "zeroshot"])
def test_a_run_fills_the_full_matrix_and_replays_across_datasets(digits_sources, tiny_clip, unseen):
    from alta import MemoryBuffer

    stream = _stream(digits_sources)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names, class_domains=stream.class_to_experience,
                                class_templates=stream.class_templates, unseen_classes=unseen, seed=0)
    optimizer, scheduler = build_optimizer(learner, epochs=2)
    buffer = MemoryBuffer(30, seed=1)
    result = run_stream(learner, stream, optimizer=optimizer, scheduler=scheduler, buffer=buffer,
                        loop=LoopConfig(epochs=2, iterations=6, batch_size=16, train_cache="fixed", eval_every=0))
    for matrix in (result.class_il, result.task_il):
        assert matrix.shape == (2, 2) and not np.isnan(matrix).any()  # the upper triangle too
    summary = mtil_summary(result.task_il)
    assert summary["transfer"] == pytest.approx(result.task_il[0, 1])
    assert math.isfinite(summary["avg"]) and summary["last"] == pytest.approx(result.task_il[1].mean())
    # the buffer holds items of both datasets (10 and 10 classes), their logits over the joined label space
    stored = buffer.data()
    assert stored["logits"].shape == (len(buffer), 20)
    assert set(stored["experience_ids"].tolist()) == {0, 1}
    assert set(stored["labels"][stored["experience_ids"] == 1].tolist()) <= set(range(10, 20))


# ---- the named sequences on fixtures of the official layouts (tests/dataset_layouts.py) -------------

MTIL_CLASSES = {"aircraft": 100, "caltech101": 101, "cifar100": 100, "dtd": 47, "eurosat": 10, "flowers102": 102,
                "food101": 101, "mnist": 10, "oxford-pet": 37, "stanford-cars": 196, "sun397": 397}


@pytest.fixture(scope="module")
def mtil_root(tmp_path_factory):
    """One root holding every MTIL layout and DomainNet, as ZSCL's --data-location (CIFAR-100 as class
    folders in cifar100/: torchvision's pickles would need their md5 sums)."""
    from dataset_layouts import BUILDERS, put_image

    from alta.data.datasets import CIFAR100_CLASSES

    root = tmp_path_factory.mktemp("mtil")
    for build in BUILDERS.values():
        build(root)
    for name in CIFAR100_CLASSES:
        put_image(root / "cifar100" / "train" / name / "0.jpg")
        put_image(root / "cifar100" / "test" / name / "0.jpg")
    return root


def test_the_mtil_sequences_load_from_the_official_layouts(mtil_root):
    from alta.data import dataset_templates
    from alta.data.multidomain import MTIL_ORDER2

    first = MultiDomainStream.from_sequence("mtil-order1", root=mtil_root, transform="plain", resolution=32)
    assert first.domain_names == list(MTIL_CLASSES)
    assert first.classes_per_experience == list(MTIL_CLASSES.values()) and first.num_classes == 1201
    assert first[1].class_names[:2] == ["off-center face", "centered face"]  # ZSCL's Caltech101 names
    assert first[10].class_names[8] == "apartment building/outdoor"
    assert first.domain_templates["caltech101"] == dataset_templates("caltech101-zscl")  # ZSCL's 34
    assert len(first.domain_templates["cifar100"]) == 18
    x, y = first[7].test[0]  # MNIST: its labels follow the 561 classes of the 7 datasets before it
    assert x.shape == (3, 32, 32) and 561 <= y < 571
    second = MultiDomainStream.from_sequence("mtil-order2", root=mtil_root, transform="plain", resolution=32)
    assert second.domain_names == [first.domain_names[k] for k in MTIL_ORDER2]
    assert second.domain_names[:3] == ["stanford-cars", "food101", "mnist"]
    xtail = MultiDomainStream.from_sequence("xtail", root=mtil_root, transform="plain", resolution=32, shots=1)
    assert "cifar100" not in xtail.domain_names and len(xtail) == 10 and xtail.num_classes == 1101
    for e in xtail:  # at most one image per class (a fixture's random 80/20 split leaves some classes none)
        assert int(torch.bincount(e.train.targets).max()) == 1


def test_domainnet_runs_domain_incrementally(mtil_root):
    stream = MultiDomainStream.from_sequence("domainnet", root=mtil_root, transform="plain", resolution=32)
    assert stream.kind == "domain" and stream.domain_names == ["clipart", "infograph", "painting", "quickdraw",
                                                               "real", "sketch"]
    assert stream.classes_per_experience == [345] * 6 and stream.num_classes == 6 * 345
    assert stream.class_to_concept[345 * 4 + 7] == 7  # "real" copy of class 7
    assert stream[4].class_names == stream[0].class_names
    assert {int(y) for y in stream[1].train.targets} <= set(range(345, 2 * 345))


def test_a_missing_dataset_of_a_sequence_is_named(tmp_path):
    from alta.data import DataRootError

    with pytest.raises(DataRootError, match="sequence 'mtil-order1', dataset 'aircraft'"):
        MultiDomainStream.sequence_sources("mtil-order1", root=tmp_path)


@pytest.mark.parametrize("field, value, message", [
    ("name", "", r"domain 0 needs a name .* got ''"),
    ("name", None, r"domain 0 needs a name .* got None"),
    ("templates", "a photo of a {}.", r"templates must be None or a non-empty list .* got 'a photo of a \{\}.'"),
    ("templates", (), r"templates must be None or a non-empty list"),
    ("templates", ("a photo of a digit.",), r"template 'a photo of a digit.' needs exactly one '\{\}'"),
    ("templates", ("a {} of a {}.",), r"needs exactly one '\{\}'"),
])
def test_a_domain_with_an_unusable_name_or_templates_is_refused_when_the_stream_is_built(
        digits_sources, field, value, message):
    """A string of templates was read one character per template, and a template without '{}'
    gave every class the same prompt (both silently); an empty name keyed the results by ''."""
    train, test = digits_sources
    good = {"name": "digits", "templates": ("a photo of a {}.",)}
    domain = Domain(**{**good, field: value}, train=train, test=test, class_names=train.class_names)
    with pytest.raises(ConfigError, match=message):
        MultiDomainStream([domain])


def test_a_sequence_refuses_a_misspelled_fallback_or_setting_at_registration():
    from alta.data.multidomain import SequenceEntry, register_sequence

    with pytest.raises(ConfigError, match=r"fallback of sequence entry 'digits' is 'rot'; did you mean 'root'"):
        SequenceEntry("digits", fallback="rot")  # was kept, and the dataset read from its default location
    with pytest.raises(ConfigError, match=r"folders of the sequence entry 'cifar10' must be a tuple .*\('cifar10',\)"):
        SequenceEntry("cifar10", folders="cifar10")  # was tried letter by letter
    with pytest.raises(ConfigError, match=r"il_setting of sequence 'never-registered' is 'class_il'; did you mean "
                                          r"'class-il'"):
        register_sequence("never-registered", [SequenceEntry("digits", fallback="none")], il_setting="class_il")
    from alta.data import list_sequences

    assert "never-registered" not in list_sequences()
