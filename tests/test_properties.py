"""Property-based tests (hypothesis) of ScenarioStream and of the metrics.

Streams: for any labels, class order and split, every sample lies in exactly one experience,
each experience's labels are its contiguous class range, and ``to_original`` inverts the remap.
Metrics: on random accuracy matrices they equal the definitions written out as plain loops,
and NaN is accepted above the diagonal only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.data import Dataset

from alta import ScenarioStream
from alta.errors import ShapeError
from alta.metrics import (
    accuracy_after_each,
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    last_accuracy,
    summarize,
)


class _Labels(Dataset):
    """Samples that are their own index, with labels readable from ``targets``."""

    def __init__(self, targets: list[int]) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return index, self.targets[index]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def streams(draw):
    """A (train, test, order, split kwargs) tuple where every class has train and test samples."""
    C = draw(st.integers(1, 10))
    splits = []
    for extra in (draw(st.lists(st.integers(0, C - 1), max_size=25)), draw(st.lists(st.integers(0, C - 1), max_size=25))):
        labels = list(range(C)) + extra  # every class at least once
        splits.append([labels[i] for i in draw(st.permutations(range(len(labels))))])
    order = draw(st.permutations(range(C)))
    initial = draw(st.none() | st.integers(1, C))
    if initial is None:
        split = {"num_experiences": draw(st.sampled_from(_divisors(C)))}
    elif initial == C:
        split = {"initial_classes": initial}
    else:
        split = {"initial_classes": initial, "classes_per_experience": draw(st.sampled_from(_divisors(C - initial)))}
    return splits[0], splits[1], list(order), split


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_stream_partitions_the_samples_into_contiguous_experiences(case):
    train_labels, test_labels, order, split = case
    C = len(order)
    stream = ScenarioStream(_Labels(train_labels), _Labels(test_labels), [f"class {c}" for c in range(C)],
                            class_order=order, **split)
    assert sum(stream.classes_per_experience) == C
    if "initial_classes" in split:
        assert stream.classes_per_experience[0] == split["initial_classes"]
    start = 0
    for split_name, labels in (("train", train_labels), ("test", test_labels)):
        seen: list[int] = []
        start = 0
        for experience in stream:
            data = getattr(experience, split_name)
            assert experience.classes == list(range(start, start + len(experience.classes)))  # contiguous
            start += len(experience.classes)
            delivered = data.targets.tolist()
            assert set(delivered) == set(experience.classes)  # every class of it has samples here
            indices = data.indices.tolist()
            seen.extend(indices)
            # delivered label = position in the class order; to_original gives the source label back
            assert stream.to_original(delivered) == [labels[i] for i in indices]
            assert [data[j][0] for j in range(len(data))] == indices  # items are the source's samples
        assert sorted(seen) == list(range(len(labels)))  # every sample in exactly one experience
    assert stream.to_original(list(range(C))) == order
    assert stream.from_original(stream.to_original(list(range(C)))) == list(range(C))
    assert stream.to_original(torch.arange(C)).tolist() == order


@st.composite
def accuracy_matrices(draw, *, nan_above: bool = True):
    T = draw(st.integers(1, 6))
    values = draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=T * T, max_size=T * T))
    R = np.array(values).reshape(T, T)
    if nan_above:
        for t in range(T):
            for k in range(t + 1, T):
                if draw(st.booleans()):
                    R[t, k] = np.nan
    return R


def _direct(R: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The definitions of alta.metrics (and their papers) as plain loops."""
    T = R.shape[0]
    after = [sum(R[t][k] for k in range(t + 1)) / (t + 1) for t in range(T)]
    out = {"after": after, "avg": sum(after) / T, "last": sum(R[T - 1]) / T}
    if T == 1:
        return {**out, "forgetting": math.nan, "bwt": math.nan, "fwt": math.nan}
    out["forgetting"] = sum(max(R[l][k] for l in range(k, T - 1)) - R[T - 1][k] for k in range(T - 1)) / (T - 1)
    out["bwt"] = sum(R[T - 1][k] - R[k][k] for k in range(T - 1)) / (T - 1)
    gaps = [R[k - 1][k] - b[k] for k in range(1, T)]
    out["fwt"] = math.nan if any(math.isnan(g) for g in gaps) else sum(gaps) / (T - 1)
    return out


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(accuracy_matrices(), st.lists(st.floats(0, 100, allow_nan=False), min_size=6, max_size=6))
def test_metrics_equal_their_definitions(R, baseline):
    T = R.shape[0]
    b = np.array(baseline[:T])
    expected = _direct(R, b)
    np.testing.assert_allclose(accuracy_after_each(R), expected["after"])
    assert _same(average_accuracy(R), expected["avg"])
    assert _same(last_accuracy(R), expected["last"])
    assert _same(forgetting(R), expected["forgetting"])
    assert _same(backward_transfer(R), expected["bwt"])
    assert _same(forward_transfer(R, b), expected["fwt"])
    summary = summarize(R, baseline=b)
    assert _same(summary["avg_accuracy"], expected["avg"]) and _same(summary["fwt"], expected["fwt"])
    assert math.isnan(summarize(R)["fwt"])
    if T >= 2:
        assert expected["forgetting"] >= -expected["bwt"] - 1e-9  # forgetting uses the best earlier accuracy


@settings(max_examples=100, deadline=None)
@given(accuracy_matrices(nan_above=False), st.data())
def test_metrics_refuse_nan_on_or_below_the_diagonal(R, data):
    T = R.shape[0]
    t = data.draw(st.integers(0, T - 1))
    k = data.draw(st.integers(0, t))
    R[t, k] = np.nan
    for metric in (accuracy_after_each, average_accuracy, last_accuracy, forgetting, backward_transfer, summarize):
        with pytest.raises(ShapeError, match="NaN on or below the diagonal"):
            metric(R)
    with pytest.raises(ShapeError):
        forward_transfer(R, np.zeros(T))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5))
def test_metrics_refuse_non_square_matrices(rows, cols):
    assume(rows != cols)
    with pytest.raises(ShapeError, match="square"):
        summarize(np.zeros((rows, cols)))
