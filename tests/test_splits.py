"""alta.data.splits: B<base>-Inc<increment> splits, named class orders, class-name files."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

from alta.data import ScenarioStream
from alta.data.splits import (
    CLASS_ORDERS,
    Split,
    identifier_names,
    list_class_orders,
    parse_split,
    read_class_names,
    read_class_order_file,
    resolve_class_order,
)
from alta.errors import ConfigError, DataError

# ---- splits ---------------------------------------------------------------------------------------


@given(
    base=st.integers(0, 10_000),
    increment=st.integers(1, 10_000),
    case=st.sampled_from([str.upper, str.lower, str.title, lambda s: s]),
    separator=st.sampled_from(["-", "", " ", "_", "/", " - "]),
)
def test_parse_split_reads_every_spelling_of_a_valid_split(base, increment, case, separator):
    text = case(f"B{base}{separator}Inc{increment}")
    split = parse_split(text)
    assert split == Split(base, increment)
    assert split.initial_classes == (base or None) and split.classes_per_experience == increment
    assert parse_split(str(split)) == split  # the canonical spelling reads back


@given(st.text(max_size=20))
def test_parse_split_refuses_anything_else_with_the_expected_form(text):
    try:
        split = parse_split(text)
    except ConfigError as err:
        assert "B<base>-Inc<increment>" in str(err) or "Inc0" in str(err)
        assert text in str(err) or repr(text) in str(err)
    else:  # only text holding B<number> ... Inc<number> is accepted, and it means those numbers
        numbers = [int(n) for n in re.findall(r"\d+", text)]
        assert numbers == [split.base, split.increment] and split.increment >= 1
        assert text.strip()[0] in "bB" and "inc" in text.lower()


@pytest.mark.parametrize("bad", ["B50", "Inc10", "B-10-Inc10", "B5.5-Inc10", "50-10", "B50-Inc0", ""])
def test_parse_split_errors(bad):
    with pytest.raises(ConfigError, match="B50-Inc10|Inc0"):
        parse_split(bad)
    with pytest.raises(ConfigError, match="must be a string"):
        parse_split(50)  # type: ignore[arg-type]


def _stream(num_classes=100, per_class=1, **kwargs) -> ScenarioStream:
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    data = TensorDataset(torch.zeros(len(labels), 1), labels)
    data.targets = labels  # type: ignore[attr-defined]
    return ScenarioStream(data, data, [f"class {c}" for c in range(num_classes)], **kwargs)


@pytest.mark.parametrize(
    "split, sizes",
    [("B0-Inc10", [10] * 10), ("B50-Inc10", [50] + [10] * 5), ("B50-Inc5", [50] + [5] * 10),
     ("B40-Inc3", [40] + [3] * 20), ("B100-Inc20", None)],
)
def test_stream_split_names(split, sizes):
    if sizes is None:  # B100 on 100 classes leaves no class for Inc20
        with pytest.raises(ConfigError, match="classes_per_experience=20"):
            _stream(split=split)
        sizes = [100] + [20] * 5
        assert _stream(200, split=split).classes_per_experience == sizes
        return
    assert _stream(split=split).classes_per_experience == sizes


def test_split_and_counts_are_alternatives():
    with pytest.raises(ConfigError, match="split='B50-Inc10' and initial_classes=50"):
        _stream(split="B50-Inc10", initial_classes=50)
    with pytest.raises(ConfigError, match="a split already fixes the counts"):
        ScenarioStream.from_name("digits", split="B2-Inc2", num_experiences=5, resolution=32)


def test_from_name_split_and_101_classes_as_11_plus_10x9():
    stream = _stream(101, split="B11-Inc10")
    assert stream.classes_per_experience == [11] + [10] * 9
    digits = ScenarioStream.from_name("digits", split="B4-Inc2", resolution=32)
    assert digits.classes_per_experience == [4, 2, 2, 2]


# ---- class orders ---------------------------------------------------------------------------------


def test_icarl_order_is_pycils_numpy_permutation_under_seed_1993():
    state = np.random.get_state()
    np.random.seed(1993)  # exactly PyCIL's DataManager._setup_data
    expected = np.random.permutation(100).tolist()
    np.random.set_state(state)
    order, source = resolve_class_order("icarl-1993", 100)
    assert order == expected and source == "icarl-1993"
    assert order[:10] == [68, 56, 78, 8, 23, 84, 90, 65, 74, 76]
    before = np.random.get_state()[1].copy()
    resolve_class_order("icarl-1993", 10)
    assert np.array_equal(np.random.get_state()[1], before)  # NumPy's global generator untouched
    assert sorted(resolve_class_order("icarl-1993", 10)[0]) == list(range(10))


def test_dytox_order_is_the_shipped_cifar100_list():
    order, source = resolve_class_order("dytox-cifar100", 100)
    assert source == "dytox-cifar100" and sorted(order) == list(range(100))
    assert order[:10] == [87, 0, 52, 58, 44, 91, 68, 97, 51, 15] and order[-1] == 39
    assert resolve_class_order("continual-clip-cifar100", 100)[0] == order  # alias
    with pytest.raises(ConfigError, match="defined for 100 classes but the dataset has 10"):
        resolve_class_order("dytox-cifar100", 10)
    assert set(list_class_orders()) == {"icarl-1993", "dytox-cifar100"} == set(CLASS_ORDERS)


def test_named_order_in_a_stream_is_recorded():
    stream = _stream(class_order="icarl-1993", split="B50-Inc10")
    assert stream.class_order == resolve_class_order("icarl-1993", 100)[0]
    assert stream.class_order_source == "icarl-1993"
    assert stream[0].class_names[0] == "class 68"
    assert _stream(seed=3, num_experiences=10).class_order_source == "seed=3"
    assert _stream(num_experiences=10).class_order_source == "native"


def test_class_order_files(tmp_path):
    plain = tmp_path / "order.txt"
    plain.write_text("# my order\n3, 1 2\n0 # last\n")
    assert read_class_order_file(plain) == [3, 1, 2, 0]
    dytox = tmp_path / "cifar100_order1.yaml"  # DyTox's own file format
    dytox.write_text("class_order: [2, 0,\n  3, 1]\n")
    assert read_class_order_file(dytox) == [2, 0, 3, 1]
    stream = _stream(4, class_order=str(plain), num_experiences=2)
    assert stream.class_order == [3, 1, 2, 0] and stream.class_order_source == f"file:{plain.resolve()}"
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 x\n")
    with pytest.raises(DataError, match=r"\['x'\].*not class ids"):
        _stream(4, class_order=bad, num_experiences=2)
    short = tmp_path / "short.txt"
    short.write_text("0 1 2")
    with pytest.raises(DataError, match=r"missing: \[3\]"):
        _stream(4, class_order=short, num_experiences=2)


# ---- class names ----------------------------------------------------------------------------------


def test_identifier_names():
    assert identifier_names(["n01440764", "tench", "42", "n0144", "B-52"]) == ["n01440764", "42"]


def test_read_class_names_from_list_file_and_map(tmp_path):
    ids = ["n02", "n01"]
    assert read_class_names(["dog", "cat"], class_ids=ids) == (["dog", "cat"], "list")
    lines = tmp_path / "names.txt"
    lines.write_text("# one per line\ndog\n\ncat\n")
    assert read_class_names(lines, class_ids=ids) == (["dog", "cat"], "file")
    words = tmp_path / "words.txt"  # Tiny-ImageNet layout: extra wnids, synonyms after a comma
    words.write_text("n00\tentity\nn01\ttabby cat, tabby\nn02\tgolden retriever\n")
    assert read_class_names(words, class_ids=ids) == (["golden retriever", "tabby cat"], "map")
    assert read_class_names({"n01": "cat", "n02": "dog"}, class_ids=ids) == (["dog", "cat"], "map")
    with pytest.raises(DataError, match="has 3 names but the dataset has 2"):
        read_class_names(["a", "b", "c"], class_ids=ids)
    with pytest.raises(DataError, match="no name for 1 of the 2 class folders.*'n02'"):
        read_class_names({"n01": "cat"}, class_ids=ids)
    with pytest.raises(DataError, match="is not a file"):
        read_class_names(str(tmp_path / "absent.txt"), class_ids=ids)
    broken = tmp_path / "broken.txt"
    broken.write_text("n01\tcat\nn02 dog\n")
    with pytest.raises(DataError, match="line 2 .*folder<TAB>name"):
        read_class_names(broken, class_ids=ids)


@settings(max_examples=60, deadline=None)
@given(num_classes=st.integers(1, 40), base=st.integers(0, 45), increment=st.integers(1, 45))
def test_a_parsed_split_builds_the_stream_it_names_or_is_refused(num_classes, base, increment):
    rest = num_classes - base
    valid = 0 < rest and rest % increment == 0
    try:
        stream = _stream(num_classes, split=f"B{base}-Inc{increment}")
    except ConfigError as err:
        assert not valid, err
        assert "initial_classes" in str(err) or "classes_per_experience" in str(err)
    else:
        assert valid
        expected = ([base] if base else []) + [increment] * (rest // increment)
        assert stream.classes_per_experience == expected and sum(expected) == num_classes


@pytest.mark.data
def test_tiny_imagenet_words_txt_is_a_class_names_map(tiny_imagenet_root):
    from alta.data import load_sources

    train, _ = load_sources("seq-tinyimagenet", root=tiny_imagenet_root)
    names, kind = read_class_names(tiny_imagenet_root / "words.txt", class_ids=train.class_ids)
    assert kind == "map" and names == train.class_names
    assert identifier_names(train.class_ids) == train.class_ids and not identifier_names(names)


@pytest.mark.data
def test_real_cifar10_with_a_named_order_and_split(cifar10_root):
    stream = ScenarioStream.from_name("seq-cifar10", root=cifar10_root, split="B4-Inc2", class_order="icarl-1993",
                                      resolution=32)
    order = np.random.RandomState(1993).permutation(10).tolist()
    assert stream.class_order == order and stream.classes_per_experience == [4, 2, 2, 2]
    assert stream[0].class_names == [stream.class_names[k] for k in range(4)]
    assert len(stream[0].train) == 4 * 5000 and len(stream[3].test) == 2 * 1000
