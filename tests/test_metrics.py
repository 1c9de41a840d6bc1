"""Metrics are pure functions of the accuracy matrix; checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

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

# R[t, k]: accuracy on experience k after experience t (upper triangle: before training on k)
R = np.array([
    [90.0, 10.0, 12.0],
    [70.0, 80.0, 15.0],
    [60.0, 50.0, 85.0],
])


def test_accuracy_after_each_and_avg_last():
    np.testing.assert_allclose(accuracy_after_each(R), [90.0, 75.0, 65.0])
    assert average_accuracy(R) == pytest.approx((90 + 75 + 65) / 3)
    assert last_accuracy(R) == pytest.approx(65.0)


def test_forgetting_uses_the_best_earlier_accuracy():
    # k=0: max(90, 70) - 60 = 30; k=1: 80 - 50 = 30
    assert forgetting(R) == pytest.approx(30.0)
    R2 = R.copy()
    R2[1, 0] = 95.0  # a later peak counts
    assert forgetting(R2) == pytest.approx(((95 - 60) + 30) / 2)


def test_bwt_and_fwt():
    assert backward_transfer(R) == pytest.approx(((60 - 90) + (50 - 80)) / 2)
    baseline = [50.0, 12.0, 10.0]
    # R[0,1] - b1 = 10 - 12 = -2; R[1,2] - b2 = 15 - 10 = 5
    assert forward_transfer(R, baseline) == pytest.approx(1.5)


def test_single_experience_and_summary():
    one = np.array([[42.0]])
    assert average_accuracy(one) == 42.0 and last_accuracy(one) == 42.0
    assert math.isnan(forgetting(one)) and math.isnan(backward_transfer(one))
    s = summarize(R, baseline=[50.0, 12.0, 10.0])
    assert s["avg_accuracy"] == pytest.approx(average_accuracy(R)) and s["fwt"] == pytest.approx(1.5)
    assert math.isnan(summarize(R)["fwt"])


def test_unmeasured_upper_triangle_is_allowed_but_lower_is_not():
    partial = R.copy()
    partial[0, 1] = np.nan
    assert average_accuracy(partial) == pytest.approx(average_accuracy(R))
    assert math.isnan(forward_transfer(partial, [0, 0, 0]))
    partial[2, 0] = np.nan
    with pytest.raises(ShapeError, match="NaN on or below the diagonal"):
        average_accuracy(partial)
    with pytest.raises(ShapeError, match="square"):
        average_accuracy(np.zeros((2, 3)))


def test_per_class_and_old_new_accuracy_from_a_confusion_matrix():
    import numpy as np

    from alta.errors import ShapeError
    from alta.metrics import old_new_accuracy, per_class_accuracy

    #             predicted: 0  1  2  3
    M = np.array([[8, 2, 0, 0],   # class 0: 10 samples, 8 right
                  [1, 3, 0, 0],   # class 1: 4 samples, 3 right
                  [0, 0, 5, 5],   # class 2: 10, 5
                  [0, 0, 0, 0]])  # class 3: no test samples
    np.testing.assert_allclose(per_class_accuracy(M), [80.0, 75.0, 50.0, np.nan])
    owner = [0, 0, 1, 1]
    split = old_new_accuracy(M, owner, 1)
    assert split["old"] == pytest.approx(100 * 11 / 14) and split["new"] == pytest.approx(50.0)
    first = old_new_accuracy(M, owner, 0)
    assert np.isnan(first["old"]) and first["new"] == pytest.approx(100 * 11 / 14)
    with pytest.raises(ShapeError, match="3 entries"):
        old_new_accuracy(M, [0, 0, 1], 1)
    with pytest.raises(ShapeError, match="square"):
        per_class_accuracy(np.zeros((2, 3)))
