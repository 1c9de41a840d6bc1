"""The guarantees of docs/guarantees.md, one test per defect class of issue 13.

Each test drives the public (or owning) API the way a user or a damaged file would, and checks
that the result is refused, reported or reproducible, never silently wrong.
"""

from __future__ import annotations

import logging
import math
import os
import random

import numpy as np
import pytest
import torch
from helpers import FakeExperience, synthetic_experiences
from PIL import Image
from torch.utils.data import TensorDataset

from alta import CrossModalLearner, MemoryBuffer, ScenarioStream, evaluate
from alta.errors import AltaError, CheckpointError, ConfigError, DataError, ShapeError
from alta.loop import LoopConfig, epoch_batches
from alta.loop.cache import FeatureCache
from alta.metrics import summarize

# --------------------------------------------------------------------------------------------
# 4: an experience without test samples is scored NaN, never 0
# --------------------------------------------------------------------------------------------


def test_experience_without_test_samples_scores_nan_and_metrics_refuse_it(tiny_clip):
    exps = synthetic_experiences(2, 2, per_class=3)
    empty = TensorDataset(torch.empty(0, 3, 32, 32), torch.empty(0, dtype=torch.long))
    exps[1] = FakeExperience(1, exps[1].classes, exps[1].class_to_experience, empty, exps[1].train)
    learner = CrossModalLearner(tiny_clip, class_names=["w", "x", "y", "z"])
    learner.begin_experience(exps[0])
    result = evaluate(learner, exps)
    assert result.num_samples == (6, 0)
    assert math.isfinite(result.class_il[0]) and math.isnan(result.class_il[1]) and math.isnan(result.task_il[1])
    R = np.array([[result.class_il[0], np.nan], list(result.class_il)])  # row 1 lacks R[1, 1]
    with pytest.raises(ShapeError, match="NaN on or below the diagonal"):
        summarize(R)


# --------------------------------------------------------------------------------------------
# 5: class names CLIP reads alike are refused, by the stream and the learner alike
# --------------------------------------------------------------------------------------------

_ALIKE = [["Cat", "cat"], ["sea  lion", "sea lion"], ["sea_lion", "Sea Lion"], ["fish & chips", "fish &amp; chips"],
          ["CAFÉ", "café"]]


@pytest.mark.parametrize("names", _ALIKE)
def test_stream_refuses_class_names_clip_reads_alike(names):
    train = TensorDataset(torch.zeros(2, 1), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="CLIP reads") as info:
        ScenarioStream(train, train, names, num_experiences=1)
    assert repr(names[0]) in str(info.value) and repr(names[1]) in str(info.value)


@pytest.mark.parametrize("names", _ALIKE)
def test_learner_refuses_class_names_clip_reads_alike(tiny_clip, names):
    with pytest.raises(ConfigError, match="CLIP reads"):
        CrossModalLearner(tiny_clip, class_names=names)


def test_names_that_clip_tells_apart_are_accepted(tiny_clip):
    names = ["sea lion", "sea-lion", "cat", "cats"]
    train = TensorDataset(torch.zeros(4, 1), torch.arange(4))
    assert ScenarioStream(train, train, names, num_experiences=1).class_names == names
    assert CrossModalLearner(tiny_clip, class_names=names).class_names == names


# --------------------------------------------------------------------------------------------
# 6: results do not depend on Python's/NumPy's global RNG or on the number of workers
# --------------------------------------------------------------------------------------------


class _DrawsFromEveryRng:
    """A custom transform drawing from Python's random, NumPy's global RNG and torch."""

    def __repr__(self) -> str:
        return "DrawsFromEveryRng()"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + random.random() + float(np.random.rand()) + float(torch.rand(()))


def _random_stream(transform, num_samples: int = 12) -> ScenarioStream:
    images = torch.arange(num_samples * 3 * 32 * 32, dtype=torch.float32).reshape(num_samples, 3, 32, 32) / 1e4
    data = TensorDataset(images, torch.arange(num_samples) % 2)
    return ScenarioStream(data, data, ["a", "b"], num_experiences=1, transform=transform, test_transform=transform)


def _batches(stream, tiny_clip, num_workers: int = 0) -> list[torch.Tensor]:
    loop = LoopConfig(batch_size=5, seed=3, num_workers=num_workers)
    return [x for x, _ in epoch_batches(stream[0], backbone=tiny_clip, epoch=0, loop=loop)]


@pytest.mark.parametrize("transform", ["custom", "random_choice"])
def test_transforms_drawing_from_python_or_numpy_are_seeded_per_sample(tiny_clip, transform):
    import torchvision.transforms as T

    if transform == "custom":
        tf = _DrawsFromEveryRng()
    else:  # RandomChoice/RandomOrder draw from Python's random
        tf = T.RandomChoice([T.Lambda(lambda x: x * 0.0), T.Lambda(lambda x: x + 1.0), T.Lambda(lambda x: -x)])
    stream = _random_stream(tf)
    random.seed(123)
    np.random.seed(123)
    before = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    first = _batches(stream, tiny_clip)
    assert random.getstate() == before[0]  # the caller's state is restored
    assert np.array_equal(np.random.get_state()[1], before[1]) and torch.equal(torch.get_rng_state(), before[2])
    random.random(), np.random.rand()  # moving the caller's RNGs changes nothing
    again = _batches(stream, tiny_clip)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    if transform == "custom":
        workers = _batches(stream, tiny_clip, num_workers=2)
        assert all(torch.equal(a, b) for a, b in zip(first, workers))


def test_views_cache_is_identical_with_zero_and_two_workers(tiny_clip):
    import torchvision.transforms as T

    # torchvision's crop and flip draw from torch's RNG, the custom transform from random and NumPy
    augment = T.Compose([T.RandomResizedCrop(32, antialias=True), T.RandomHorizontalFlip(), _DrawsFromEveryRng()])
    stream = _random_stream(augment, num_samples=10)
    serial = FeatureCache().features(tiny_clip, stream[0].train, views=3, seed=5, num_workers=0)
    parallel = FeatureCache().features(tiny_clip, stream[0].train, views=3, seed=5, num_workers=2)
    assert serial.features.shape == (3, 10, tiny_clip.embed_dim)
    assert torch.equal(serial.features, parallel.features)
    assert not torch.equal(serial.features[0], serial.features[1])  # the views do differ


# --------------------------------------------------------------------------------------------
# 7: a cache never serves features of a transform it cannot identify
# --------------------------------------------------------------------------------------------


class _NoRepr:
    """A transform with the default repr (<... object at 0x...>)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, x):
        return x * self.scale


def test_lambda_transforms_are_not_served_from_a_disk_cache(tiny_clip, tmp_path, caplog):
    import torchvision.transforms as T

    stream = _random_stream(None)
    one = stream.with_transforms(test_transform=T.Lambda(lambda x: x))[0].test
    other = stream.with_transforms(test_transform=T.Lambda(lambda x: -x))[0].test
    assert repr(one.transform) == repr(other.transform)  # "Lambda()": the repr cannot tell them apart
    cache = FeatureCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="alta"):
        a = cache.features(tiny_clip, one).features
        b = cache.features(tiny_clip, other).features
    assert not torch.equal(a, b)
    assert list(tmp_path.iterdir()) == []  # nothing written a later process could be served
    assert "does not identify" in caplog.text
    fresh = FeatureCache(tmp_path).features(tiny_clip, other).features  # a later process
    assert torch.equal(fresh, b)
    caplog.clear()
    double = T.Lambda(lambda x: 2 * x)
    datasets = [_random_stream(None, num_samples=n).with_transforms(test_transform=double)[0].test for n in (4, 6, 8)]
    with caplog.at_level(logging.WARNING, logger="alta"):  # one transform, three datasets: said once
        cache = FeatureCache(tmp_path)
        for dataset in datasets:
            cache.features(tiny_clip, dataset)
    assert cache.misses == 3 and caplog.text.count("does not identify itself") == 1


def test_default_repr_transforms_never_share_cache_entries(tiny_clip, tmp_path):
    stream = _random_stream(None)
    cache = FeatureCache(tmp_path)
    first = cache.features(tiny_clip, stream.with_transforms(test_transform=_NoRepr(1.0))[0].test).features
    second = cache.features(tiny_clip, stream.with_transforms(test_transform=_NoRepr(-1.0))[0].test).features
    assert not torch.equal(first, second) and cache.misses == 2
    assert list(tmp_path.iterdir()) == []
    tf = _NoRepr(2.0)
    same = stream.with_transforms(test_transform=tf)[0].test
    cache.features(tiny_clip, same)
    cache.features(tiny_clip, stream.with_transforms(test_transform=tf)[0].test)  # the same object: exact
    assert cache.hits == 1


def test_a_sources_own_transform_is_part_of_the_cache_key(tmp_path):
    class Folder(TensorDataset):
        def __init__(self, transform):
            super().__init__(torch.zeros(2, 1), torch.tensor([0, 1]))
            self.root, self.transform = str(tmp_path), transform

    import torchvision.transforms as T

    keys = {
        ScenarioStream(src, src, ["a", "b"], num_experiences=1)[0].test.cache_key()
        for src in (Folder(T.CenterCrop(4)), Folder(T.CenterCrop(8)))
    }
    assert len(keys) == 2


# --------------------------------------------------------------------------------------------
# 8: skipped files are reported; 13: names that are not UTF-8 are refused by the data layer
# --------------------------------------------------------------------------------------------


def _image_folder(root, classes=("cat", "dog")):
    for split in ("train", "test"):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / "a.png")
    return root


def test_skipped_files_of_an_image_folder_are_reported(tmp_path, caplog):
    root = _image_folder(tmp_path)
    os.symlink(tmp_path / "missing.png", root / "train" / "cat" / "dangling.png")
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="alta"):
        stream = ScenarioStream.from_name("image-folder", root=root, num_experiences=1, transform=None)
    assert len(stream[0].train) == 2
    assert "skipped 2" in caplog.text
    assert "dangling.png" in caplog.text and "notes.txt" in caplog.text


def test_class_folders_whose_names_are_not_utf8_are_refused(tmp_path):
    root = _image_folder(tmp_path)
    for split in ("train", "test"):
        bad = os.path.join(os.fsencode(root / split), b"caf\xe9")
        os.mkdir(bad)
        Image.new("RGB", (8, 8)).save(os.fsdecode(os.path.join(bad, b"a.png")))
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        ScenarioStream.from_name("image-folder", root=root, num_experiences=1)
    assert "caf" in str(info.value) and "rename" in str(info.value)


def test_class_names_that_are_not_utf8_are_refused(tiny_clip):
    train = TensorDataset(torch.zeros(2, 1), torch.tensor([0, 1]))
    name = os.fsdecode(b"caf\xe9")  # what os.listdir gives for a latin-1 folder name
    with pytest.raises(DataError, match="not valid UTF-8"):
        ScenarioStream(train, train, [name, "dog"], num_experiences=1)
    with pytest.raises(AltaError, match="not valid UTF-8"):
        CrossModalLearner(tiny_clip, class_names=[name, "dog"])


# --------------------------------------------------------------------------------------------
# 12: a NUL byte in a YAML file
# --------------------------------------------------------------------------------------------


def test_yaml_with_nul_bytes_gives_a_config_error(tmp_path):
    from alta.cli.config import load_config

    path = tmp_path / "config.yaml"
    path.write_bytes(b"\0" * 64)  # a zero-filled file left by a crash
    with pytest.raises(ConfigError, match="NUL") as info:
        load_config(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------
# 15: buffer validation holes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: torch.empty(3, 2, device="meta"), lambda: torch.eye(3).to_sparse(),
                                  lambda: torch.eye(3).to_sparse_csr()], ids=["meta", "sparse_coo", "sparse_csr"])
def test_buffer_refuses_meta_and_sparse_tensors(make):
    buffer = MemoryBuffer(4, seed=0)
    with pytest.raises(ShapeError, match="dense") as info:
        buffer.add(labels=torch.arange(3), x=make())
    assert "'x'" in str(info.value)
    assert len(buffer) == 0 and buffer.num_seen == 0


@pytest.mark.parametrize("key, value", [
    ("capacity", torch.tensor([4, 4])), ("capacity", torch.tensor(4)), ("version", torch.tensor([1, 1])),
    ("version", torch.tensor(1)), ("num_seen", "3"), ("size", 3.0), ("seed", torch.tensor(0)),
    ("policy", torch.ones(2)), ("label_field", ["labels"]), ("policy_state", torch.ones(3)),
    ("policy_state", [1, 2]), ("policy_state", "x"), ("fields", [1]),
])
@pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
def test_damaged_buffer_states_raise_checkpoint_errors(key, value, policy):
    buffer = MemoryBuffer(4, seed=0, policy=policy)
    buffer.add(labels=torch.arange(3), x=torch.randn(3, 2))
    state = buffer.state_dict()
    state[key] = value
    with pytest.raises(CheckpointError, match=key):
        MemoryBuffer(4, seed=0, policy=policy).load_state_dict(state)


def test_encoding_and_evaluation_leave_the_global_rngs_alone(tiny_clip):
    stream = _random_stream(_DrawsFromEveryRng(), num_samples=6).with_transforms(test_transform=None)
    learner = CrossModalLearner(tiny_clip, class_names=stream.class_names)
    learner.begin_experience(stream[0])
    torch.manual_seed(0)
    before = torch.get_rng_state()
    FeatureCache().features(tiny_clip, stream[0].train, views=2, seed=1)
    evaluate(learner, stream[0])
    assert torch.equal(torch.get_rng_state(), before)
