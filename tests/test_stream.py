"""ScenarioStream: split, class orders, delivered targets, stateless iteration, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from alta.data import Experience, ExperienceDataset, ScenarioStream, make_transform
from alta.data.datasets import CIFAR10_CLASSES
from alta.errors import AltaError, ConfigError, DataError

NAMES = [f"class {k}" for k in range(10)]


class Labelled(Dataset):
    """x = (sample index, label) as a tensor; labels cycle 0..C-1."""

    def __init__(self, n: int, num_classes: int = 10, *, with_targets: bool = True) -> None:
        self.labels = [k % num_classes for k in range(n)]
        if with_targets:
            self.targets = list(self.labels)
        self.loads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        self.loads += 1
        return torch.tensor([i, self.labels[i]]), self.labels[i]


def make_stream(**kwargs) -> ScenarioStream:
    kwargs.setdefault("num_experiences", 5)
    return ScenarioStream(Labelled(100), Labelled(30), NAMES, **kwargs)


def check_delivered(stream: ScenarioStream) -> None:
    """Delivered labels are contiguous per experience and map back to the samples' labels."""
    for experience in stream:
        for data in (experience.train, experience.test):
            labels = data.targets
            assert set(labels.tolist()) <= set(experience.classes)
            for i in range(0, len(data), 7):
                x, y = data[i]
                assert y == labels[i]
                assert stream.to_original(y) == int(x[1])  # the sample's own original label


# ---- split --------------------------------------------------------------------------------------


def test_default_native_order_and_split():
    stream = make_stream()
    assert len(stream) == stream.num_experiences == 5 and stream.num_classes == 10
    assert stream.class_order == list(range(10)) and stream.class_names == NAMES
    assert [e.classes for e in stream] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [e.class_names for e in stream][1] == ["class 2", "class 3"]
    assert stream.class_to_experience.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for experience in stream:
        assert isinstance(experience, Experience)
        assert torch.equal(experience.class_to_experience, stream.class_to_experience)
        assert experience.class_to_experience.dtype == torch.long
        assert experience.num_experiences == 5
        assert len(experience.train) == 20 and len(experience.test) == 6
    check_delivered(stream)


@pytest.mark.parametrize(
    "kwargs, sizes",
    [
        ({"num_experiences": 2}, [5, 5]),
        ({"num_experiences": None, "classes_per_experience": 5}, [5, 5]),
        ({"num_experiences": 5, "classes_per_experience": 2}, [2, 2, 2, 2, 2]),
        ({"num_experiences": 4, "initial_classes": 4}, [4, 2, 2, 2]),
        ({"num_experiences": None, "classes_per_experience": 3, "initial_classes": 4}, [4, 3, 3]),
        ({"num_experiences": 1}, [10]),
        ({"num_experiences": None, "initial_classes": 10}, [10]),
    ],
)
def test_split_sizes(kwargs, sizes):
    stream = make_stream(**kwargs)
    assert stream.classes_per_experience == sizes
    assert [len(e.classes) for e in stream] == sizes
    assert [c for e in stream for c in e.classes] == list(range(10))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_experiences": 3}, r"num_experiences=3 does not split the 10 classes evenly; valid "
                                 r"num_experiences: \[1, 2, 5, 10\].*initial_classes"),
        ({"num_experiences": None, "classes_per_experience": 4},
         r"classes_per_experience=4 .* valid classes_per_experience: \[1, 2, 5, 10\].*initial_classes"),
        ({"num_experiences": 4, "initial_classes": 3}, r"7 classes left after initial_classes=3.*"
                                                       r"valid num_experiences: \[2, 8\]"),
        ({"num_experiences": 5, "classes_per_experience": 5}, "disagree"),
        ({"num_experiences": 0}, "positive int"),
        ({"num_experiences": 2.0}, "positive int"),
        ({"num_experiences": None}, "give num_experiences or classes_per_experience"),
        ({"initial_classes": 11}, "exceeds"),
        ({"class_order": list(range(10)), "seed": 1}, "both class_order and seed"),
    ],
)
def test_bad_counts_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_stream(**kwargs)


# ---- class orders ---------------------------------------------------------------------------------


def test_explicit_class_order():
    order = [3, 7, 0, 9, 1, 2, 8, 4, 6, 5]
    stream = make_stream(class_order=order)
    assert stream.class_order == order
    assert stream.class_names == [NAMES[c] for c in order]
    assert stream[0].class_names == ["class 3", "class 7"]
    # Original class 3 is delivered as label 0.
    first = stream[0].train
    assert set(first.targets.tolist()) == {0, 1}
    assert {int(first[i][0][1]) for i in range(len(first))} == {3, 7}
    assert stream.to_original(torch.tensor([0, 1, 9])).tolist() == [3, 7, 5]
    assert stream.to_original([0, 9]) == [3, 5] and stream.to_original(1) == 7
    assert stream.from_original(stream.to_original(torch.arange(10))).tolist() == list(range(10))
    check_delivered(stream)


def test_seeded_class_order():
    a, b = make_stream(seed=1993), make_stream(seed=1993)
    assert a.class_order == b.class_order != list(range(10))
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(1993)).tolist()
    assert a.class_order == expected
    assert make_stream(seed=0).class_order != make_stream(seed=1).class_order
    assert torch.equal(a[2].train.targets, b[2].train.targets)
    check_delivered(a)


@pytest.mark.parametrize(
    "order, match",
    [
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 8], r"missing: \[9\], duplicated: \[8\]"),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8], r"received 9 ids.*missing: \[9\]"),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 10], r"out of range: \[10\]"),
        ([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "integer class ids"),
    ],
)
def test_bad_class_order_raises_data_error(order, match):
    with pytest.raises(DataError, match=match) as info:
        make_stream(class_order=order)
    assert "permutation" in str(info.value) or "class ids" in str(info.value)


def test_class_order_string_is_a_name_or_a_file():
    # A string is a registered order or a file of ids; anything else names the valid orders.
    with pytest.raises(ConfigError, match="neither a known class order nor an existing file.*icarl-1993"):
        make_stream(class_order="0123456789")
    with pytest.raises(ConfigError, match="did you mean 'icarl-1993'"):
        make_stream(class_order="icarl-1939")


# ---- labels and names -----------------------------------------------------------------------------


def test_fewer_class_names_than_labels():
    with pytest.raises(DataError, match=r"received 9 class names but the train labels go up to 9 "
                                        r"\(10 classes\).*Fix"):
        ScenarioStream(Labelled(20), Labelled(10), NAMES[:9], num_experiences=1)


@pytest.mark.parametrize("names", [["a", "", *NAMES[2:]], ["a", "  ", *NAMES[2:]], [1, *NAMES[1:]]])
def test_empty_class_names(names):
    with pytest.raises(DataError, match="non-empty strings.*received"):
        ScenarioStream(Labelled(20), Labelled(10), names, num_experiences=1)


def test_class_names_must_be_a_list():
    with pytest.raises(DataError, match="list of strings"):
        ScenarioStream(Labelled(20), Labelled(10), "abc", num_experiences=1)


def test_targets_read_by_iteration_when_absent():
    train = Labelled(40, with_targets=False)
    stream = ScenarioStream(train, Labelled(10, with_targets=False), NAMES, num_experiences=2)
    assert train.loads == 40  # iterated once, at construction
    assert stream[0].train.targets.tolist() == [k % 10 for k in range(40) if k % 10 < 5]
    loads = train.loads
    list(stream)
    assert train.loads == loads  # building experiences loads nothing


def test_targets_as_tensor_or_ndarray():
    import numpy as np

    train = Labelled(20)
    train.targets = np.asarray(train.targets)
    test = Labelled(10)
    test.targets = torch.tensor(test.targets)
    stream = ScenarioStream(train, test, NAMES, num_experiences=2)
    assert len(stream[1].train) == 10


def test_negative_or_fractional_labels():
    train = Labelled(20)
    train.targets = [-1] + train.targets[1:]
    with pytest.raises(DataError, match="negative"):
        ScenarioStream(train, Labelled(10), NAMES, num_experiences=2)
    train.targets = [0.5] + train.targets[1:]
    with pytest.raises(DataError, match="integers"):
        ScenarioStream(train, Labelled(10), NAMES, num_experiences=2)


# ---- iteration --------------------------------------------------------------------------------------


def test_iteration_is_stateless():
    stream = make_stream()
    first, second = iter(stream), iter(stream)
    assert next(first).index == 0
    assert next(second).index == 0
    assert next(first).index == 1
    assert [a.index for a, b in zip(stream, stream)] == [0, 1, 2, 3, 4]
    assert [e.index for e in stream] == [0, 1, 2, 3, 4]  # a finished loop does not exhaust it


def test_indexing_and_slicing():
    stream = make_stream()
    assert stream[-1].index == 4 and stream[4].classes == [8, 9]
    seen = stream[:3]
    assert isinstance(seen, list) and [e.index for e in seen] == [0, 1, 2]
    assert [e.index for e in stream[1::2]] == [1, 3]
    with pytest.raises(IndexError, match="out of range"):
        stream[5]
    with pytest.raises(TypeError):
        stream["0"]


def test_transforms_apply_and_with_transforms_shares_sources():
    stream = make_stream(transform=lambda x: x * 10, test_transform=lambda x: x * 100)
    assert stream[0].train[0][0].tolist() == [0, 0]
    assert stream[1].train[0][0].tolist() == [20, 20]
    assert stream[1].test[0][0].tolist() == [200, 200]
    plain = stream.with_transforms(transform=None)
    assert plain[1].train[0][0].tolist() == [2, 2]
    assert plain[1].test[0][0].tolist() == [200, 200]  # kept
    assert plain._train is stream._train and plain.class_order == stream.class_order
    assert stream[1].train[0][0].tolist() == [20, 20]  # the original is unchanged


def test_experience_dataset_with_transform_and_cache_key():
    stream = make_stream()
    data = stream[1].train
    assert isinstance(data, ExperienceDataset)
    key = data.cache_key()
    assert len(key) == 64 and key == stream[1].train.cache_key() == stream.with_transforms()[1].train.cache_key()
    assert key != stream[2].train.cache_key()
    # In-memory sources have nothing that ties them to their contents: another object with equal
    # labels gets another key, so a feature cache can never serve one dataset's features to another.
    assert key != make_stream()[1].train.cache_key()
    tf = make_transform("plain", train=False, resolution=8)
    other = data.with_transform(tf)
    assert other.targets is data.targets and len(other) == len(data)
    assert other.cache_key() != key
    for resolution, same in ((8, True), (9, False)):
        again = data.with_transform(make_transform("plain", train=False, resolution=resolution))
        assert (again.cache_key() == other.cache_key()) is same
    # Same samples, other label mapping -> other key.
    swapped = ScenarioStream(stream[0].train.source, stream[0].test.source, stream.class_names,
                             num_experiences=5, class_order=[0, 1, 3, 2, *range(4, 10)])[1].train
    assert torch.equal(swapped.indices, data.indices) and swapped.cache_key() != key


def test_experience_repr_is_short():
    text = repr(make_stream()[0])
    assert text == "Experience(1/5, classes=0..1, train=20, test=6)"
    assert "ScenarioStream(custom, num_experiences=5" in repr(make_stream())


def test_stream_errors_are_alta_errors():
    with pytest.raises(AltaError):
        make_stream(num_experiences=7)


# ---- named streams ----------------------------------------------------------------------------------


@pytest.mark.data
def test_seq_cifar10_from_shared_folders(cifar10_root):
    stream = ScenarioStream.from_name("seq-cifar10", root=cifar10_root)
    assert stream.name == "seq-cifar10" and len(stream) == 5
    assert stream.class_names == list(CIFAR10_CLASSES)
    for experience in stream:
        t = experience.index
        assert experience.classes == [2 * t, 2 * t + 1]
        assert len(experience.train) == 10_000 and len(experience.test) == 2_000
        for data, per_class in ((experience.train, 5000), (experience.test, 1000)):
            counts = torch.bincount(data.targets, minlength=10)
            assert counts[2 * t: 2 * t + 2].tolist() == [per_class] * 2 and int(counts.sum()) == 2 * per_class
            raw = data.with_transform(None)
            source = raw.source
            for i in (0, len(raw) // 2 + 1, len(raw) - 1):
                image, label = raw[i]
                assert isinstance(image, Image.Image) and image.mode == "RGB"
                folder = Path(source.paths[int(data.indices[i])]).parent.name
                assert folder == stream.class_names[label]
    x, y = stream[0].train[0]  # the reference preset at 224 px
    assert x.shape == (3, 224, 224) and y == 0


@pytest.mark.data
def test_seq_tinyimagenet_from_sample(tiny_imagenet_root):
    stream = ScenarioStream.from_name("seq-tinyimagenet", root=tiny_imagenet_root, transform="plain",
                                      resolution=16)
    wnids = (tiny_imagenet_root / "wnids.txt").read_text().split()
    truth = {}
    for line in (tiny_imagenet_root / "val" / "val_annotations.txt").read_text().splitlines():
        if line.strip():
            file, wnid = line.split("\t")[:2]
            truth[file] = wnids.index(wnid)
    assert len(stream) == 10 and all(len(e.classes) == 20 for e in stream)
    assert stream.class_names[0] == "Egyptian cat"
    checked = 0
    for experience in stream:
        test = experience.test
        assert len(test) == 60
        for i, label in enumerate(test.targets.tolist()):
            file = Path(test.source.paths[int(test.indices[i])]).name
            assert truth[file] == label and label in experience.classes
            checked += 1
    assert checked == len(truth) == 600
    x, _ = stream[3].train[0]
    assert x.shape == (3, 16, 16)


def test_digits_from_name_is_the_fast_offline_default():
    stream = ScenarioStream.from_name("digits", transform="plain", resolution=8)
    assert stream.classes_per_experience == [2] * 5
    assert stream.class_names[:2] == ["zero", "one"]
    assert stream[0].test.transform is not None
    batch, labels = next(iter(DataLoader(stream[2].train, batch_size=16, shuffle=False)))
    assert batch.shape == (16, 3, 8, 8) and set(labels.tolist()) <= {4, 5}
    seeded = ScenarioStream.from_name("digits", seed=0, initial_classes=4, transform=None)
    assert seeded.classes_per_experience == [4, 2, 2, 2]
    assert isinstance(seeded[0].train[0][0], Image.Image)
    check = seeded[1]
    assert set(check.train.targets.tolist()) == {4, 5}
    originals = set(seeded.to_original(check.train.targets).tolist())
    assert originals == {seeded.class_order[4], seeded.class_order[5]}


def test_from_name_transform_resolution():
    stream = ScenarioStream.from_name("digits", transform="reference", resolution=12)
    assert "RandomResizedCrop" in repr(stream.transform)
    assert "CenterCrop" in repr(stream.test_transform)
    assert "0.3053" in repr(stream.test_transform)  # the digits statistics
    both = ScenarioStream.from_name("digits", transform="clip", test_transform="plain", resolution=12)
    assert "Normalize" not in repr(both.test_transform)

    def preprocess(image):
        return torch.zeros(1)

    same = ScenarioStream.from_name("digits", transform=preprocess)
    assert same.transform is preprocess and same.test_transform is preprocess
    with pytest.raises(ConfigError, match="did you mean 'plain'"):
        ScenarioStream.from_name("digits", transform="plian")
    with pytest.raises(ConfigError, match="preset name, a callable or None"):
        ScenarioStream.from_name("digits", transform=3)


def make_image_folder(root: Path) -> None:
    """train/ and test/ trees of 3 classes with images of mixed sizes and modes."""
    for k, name in enumerate(["zebra", "apple_tree", "cat"]):
        for split, count in (("train", 2 + k), ("test", 1)):
            for i in range(count):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                mode = ["RGB", "L", "RGBA", "P"][i % 4]
                Image.new(mode, (5 + 3 * i, 7 + k)).save(path)


def test_image_folder_stream(tmp_path):
    make_image_folder(tmp_path)
    with pytest.raises(ConfigError, match="no default split"):
        ScenarioStream.from_name("image-folder", root=tmp_path)
    stream = ScenarioStream.from_name("image-folder", root=tmp_path, num_experiences=3, resolution=16)
    assert stream.class_names == ["apple tree", "cat", "zebra"]
    assert "0.4814" in repr(stream.transform)  # CLIP statistics for unknown data
    for experience in stream:
        for data in (experience.train, experience.test):
            for i in range(len(data)):
                x, y = data[i]
                assert x.shape == (3, 16, 16) and y == experience.index


def test_experience_datasets_pickle_for_workers():
    stream = ScenarioStream.from_name("digits", transform="reference", resolution=8)
    data = stream[1].train
    clone = pickle.loads(pickle.dumps(data))
    assert clone.cache_key() == data.cache_key()
    assert torch.equal(clone.targets, data.targets)


# ---- empty experiences ------------------------------------------------------------------------------


class Subset(Dataset):
    """The samples of ``Labelled(n)`` whose label is not in ``drop``."""

    def __init__(self, n: int, drop: set) -> None:
        self.targets = [k % 10 for k in range(n) if k % 10 not in drop]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return torch.tensor([i]), self.targets[i]


@pytest.mark.parametrize("split", ["train", "test"])
def test_experience_without_samples_is_refused(split):
    data = {"train": Labelled(100), "test": Labelled(30)}
    data[split] = Subset(100 if split == "train" else 30, drop={4, 5})
    with pytest.raises(DataError) as info:
        ScenarioStream(data["train"], data["test"], NAMES, num_experiences=5)
    message = str(info.value)
    assert "experience 2 (0-based, of 5; classes 'class 4' (label 4, original id 4)" in message
    assert f"has no {split} samples" in message and "Fix" in message
    # With a class order the message names delivered labels and original ids.
    with pytest.raises(DataError, match=r"'class 4' \(label 0, original id 4\)"):
        ScenarioStream(data["train"], data["test"], NAMES, num_experiences=5,
                       class_order=[4, 5, 0, 1, 2, 3, 6, 7, 8, 9])


def test_class_without_test_samples_in_a_non_empty_experience_only_warns(caplog):
    stream = ScenarioStream(Labelled(100), Subset(30, drop={4}), NAMES, num_experiences=5)
    assert len(stream[2].test) == 3
    assert "have no test samples" in caplog.text


def test_image_folder_empty_test_class_fails_at_load(tmp_path):
    make_image_folder(tmp_path)
    (tmp_path / "test" / "cat" / "0.png").unlink()
    with pytest.raises(DataError, match="class 'cat' has no test images"):
        ScenarioStream.from_name("image-folder", root=tmp_path, num_experiences=3)


# ---- default split with initial_classes -------------------------------------------------------------


def test_from_name_initial_classes_without_split():
    assert ScenarioStream.from_name("digits", initial_classes=10).classes_per_experience == [10]
    assert ScenarioStream.from_name("digits", initial_classes=6).classes_per_experience == [6, 2, 2]
    with pytest.raises(ConfigError) as info:
        ScenarioStream.from_name("digits", initial_classes=3)
    message = str(info.value)
    assert "default split of 'digits' (2 classes per experience" in message
    assert "7 classes left after initial_classes=3" in message
    assert "classes_per_experience (valid: [1, 7])" in message
    assert "num_experiences (valid: [2, 8])" in message
    with pytest.raises(ConfigError, match="exceeds"):
        ScenarioStream.from_name("digits", initial_classes=11)


def test_image_folder_initial_classes(tmp_path):
    make_image_folder(tmp_path)
    stream = ScenarioStream.from_name("image-folder", root=tmp_path, initial_classes=3)
    assert stream.classes_per_experience == [3]
    with pytest.raises(ConfigError, match="'image-folder' has no default split; pass classes_per_experience"):
        ScenarioStream.from_name("image-folder", root=tmp_path, initial_classes=1)


# ---- argument types ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, match", [("x", "got str 'x'"), (2**64, "got 18446744073709551616"),
                                         (-1, "got -1"), (1.0, "got float")])
def test_bad_seed(seed, match):
    with pytest.raises(ConfigError, match=r"seed must be an int in \[0, 2\*\*64\).*" + match):
        make_stream(seed=seed)
    assert make_stream(seed=2**64 - 1).class_order != list(range(10))


@pytest.mark.parametrize("labels", [1.5, "1", None, torch.tensor([1.5]), torch.tensor([True]),
                                    np.array([0.5]), [1.5], {1, 2}])
def test_to_original_rejects_non_integer_labels(labels):
    stream = make_stream(class_order=[3, 7, 0, 9, 1, 2, 8, 4, 6, 5])
    with pytest.raises(DataError, match="integer"):
        stream.to_original(labels)


def test_to_original_keeps_the_container_kind():
    stream = make_stream(class_order=[3, 7, 0, 9, 1, 2, 8, 4, 6, 5])
    out = stream.to_original(np.array([0, 1]))
    assert isinstance(out, np.ndarray) and out.tolist() == [3, 7]
    assert stream.to_original((0, [1, 2])) == [3, [7, 0]]
    assert stream.to_original(np.int64(1)) == 7


@pytest.mark.parametrize(
    "names, match",
    [
        (set(NAMES), "set, whose order is arbitrary"),
        (dict(enumerate(NAMES)), r"dict.*\[names\[k\] for k in range"),
        (["_", *NAMES[1:]], r"non-empty.*underscores.*\(0, '_'\)"),
        (["__ _", *NAMES[1:]], r"\(0, '__ _'\)"),
    ],
)
def test_class_names_must_be_an_ordered_sequence_of_readable_names(names, match):
    with pytest.raises(DataError, match=match):
        ScenarioStream(Labelled(20), Labelled(10), names, num_experiences=1)


def test_class_names_as_tuple_or_array():
    assert ScenarioStream(Labelled(20), Labelled(10), tuple(NAMES), num_experiences=1).class_names == NAMES
    assert ScenarioStream(Labelled(20), Labelled(10), np.array(NAMES), num_experiences=1).class_names == NAMES


def test_lists_as_datasets_are_refused():
    with pytest.raises(DataError, match="one map-style torch Dataset.*list of 2 items.*ConcatDataset"):
        ScenarioStream([Labelled(10), Labelled(10)], Labelled(10), NAMES, num_experiences=1)
    with pytest.raises(DataError, match="list of 1 item .*TensorDataset"):
        ScenarioStream([(torch.zeros(2), 0)], Labelled(10), NAMES, num_experiences=1)
    with pytest.raises(DataError, match="test dataset must be a map-style dataset"):
        ScenarioStream(Labelled(10), iter([]), NAMES, num_experiences=1)


def test_samples_that_are_not_pairs_are_refused():
    class Bare(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return 7

    with pytest.raises(DataError, match=r"cannot read the label of sample 0.*\(x, y\) pair"):
        ScenarioStream(Bare(), Labelled(10), NAMES, num_experiences=1)


# ---- joint upper bound ----------------------------------------------------------------------------


def test_joint_stream_trains_once_and_evaluates_per_sequential_experience():
    sequential = make_stream(num_experiences=5, class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    joint = make_stream(num_experiences=5, class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0], joint=True)
    assert len(joint) == joint.num_experiences == 1 and joint.joint and not sequential.joint
    (only,) = list(joint)
    assert only.classes == list(range(10)) and only.num_experiences == 1
    assert len(only.train) == sum(len(e.train) for e in sequential)
    assert sorted(only.train.indices.tolist()) == sorted(torch.cat([e.train.indices for e in sequential]).tolist())
    assert torch.equal(only.class_to_experience, sequential[0].class_to_experience)  # task-IL per sequential experience
    assert joint.classes_per_experience == [10]
    evals = joint.eval_experiences
    assert [e.classes for e in evals] == [e.classes for e in sequential]
    assert [e.test.indices.tolist() for e in evals] == [e.test.indices.tolist() for e in sequential]
    assert [e.index for e in sequential.eval_experiences] == [0, 1, 2, 3, 4]
    assert "joint=True, eval_split=[2, 2, 2, 2, 2]" in repr(joint)
    with pytest.raises(ConfigError, match="joint must be True or False"):
        make_stream(num_experiences=5, joint=1)


def test_from_name_reuses_sources_read_before_and_refuses_others():
    from alta.data import load_sources
    from alta.errors import ConfigError

    train, test = load_sources("digits")
    again = ScenarioStream.from_name("digits", sources=(train, test), resolution=32)
    fresh = ScenarioStream.from_name("digits", resolution=32)
    assert [(e.classes, len(e.train), len(e.test)) for e in again] == [(e.classes, len(e.train), len(e.test))
                                                                       for e in fresh]
    assert torch.equal(again[1].test[0][0], fresh[1].test[0][0])  # the same first test image of experience 2
    with pytest.raises(ConfigError, match="in that order"):
        ScenarioStream.from_name("digits", sources=(test, train))
    with pytest.raises(ConfigError, match="in that order"):
        ScenarioStream.from_name("digits", sources=(train, train))
    with pytest.raises(TypeError, match="got a tuple of 1: ArraySource"):
        ScenarioStream.from_name("digits", sources=(train,))
    other = type(train).__new__(type(train))
    other.__dict__.update(train.__dict__, identity="seq-cifar10|folders|/x|train")
    with pytest.raises(ConfigError, match="sources are not 'digits'"):
        ScenarioStream.from_name("digits", sources=(other, test))
