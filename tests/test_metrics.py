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


# ---- MTIL / X-TAIL: Transfer, Avg, Last over the full matrix ---------------------------------

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from alta.metrics import mtil_summary  # noqa: E402

ZSCL_ROWS = json.loads((Path(__file__).parent / "data" / "zscl_mtil_results.json").read_text())["rows"]


@pytest.mark.parametrize("row", sorted(ZSCL_ROWS))
def test_mtil_summary_reproduces_zscls_published_rows(row):
    # ZSCL's committed matrices (mtil/results/*.npy) -> the Transfer/Avg/Last its notebook prints,
    # rounded as it rounds them (np.around(x, 1)), and every per-dataset value
    entry = ZSCL_ROWS[row]
    got = mtil_summary(entry["matrix"])
    assert [float(np.around(got[k], 1)) for k in ("transfer", "avg", "last")] == [
        entry["published"][k] for k in ("transfer", "avg", "last")]
    for key in ("transfer", "avg", "last"):
        values = got[f"{key}_per_dataset"]
        if key == "transfer":
            assert values[0] is None  # the first dataset is never evaluated before it is learned
            values = values[1:]
        assert [float(np.around(v, 1)) for v in values] == entry["published_per_dataset"][key]


def test_mtil_rows_of_both_orders_are_covered():
    orders = {entry["order"] for entry in ZSCL_ROWS.values()}
    assert orders == {"I", "II"}
    assert sum(entry["order"] == "II" for entry in ZSCL_ROWS.values()) >= 3


def test_mtil_transfer_is_the_mean_of_column_means_not_of_the_upper_triangle():
    # column 1 has one entry above the diagonal, column 2 two: the two means differ
    M = np.array([[50.0, 10.0, 20.0],
                  [60.0, 70.0, 40.0],
                  [55.0, 65.0, 80.0]])
    got = mtil_summary(M)
    assert got["transfer_per_dataset"] == [None, 10.0, 30.0]
    assert got["transfer"] == pytest.approx(20.0)  # (10 + 30) / 2, not (10 + 20 + 40) / 3
    assert got["avg"] == pytest.approx(M.mean())  # the whole matrix, upper triangle included
    assert got["last"] == pytest.approx((55 + 65 + 80) / 3)
    assert got["avg_per_dataset"] == pytest.approx(M.mean(axis=0).tolist())


def test_mtil_transfer_depends_on_the_order_for_a_constant_matrix():
    # zero-shot CLIP: every row the same vector; Transfer leaves the first dataset out
    row = [24.3, 88.4, 68.2]
    got = mtil_summary([row] * 3)
    assert got["transfer"] == pytest.approx((88.4 + 68.2) / 2)
    assert got["avg"] == pytest.approx(np.mean(row)) and got["last"] == pytest.approx(np.mean(row))


def test_mtil_summary_needs_the_full_matrix():
    M = np.full((3, 3), 50.0)
    M[0, 2] = np.nan  # a dataset not evaluated before it was learned
    with pytest.raises(ShapeError, match=r"R\[0, 2\].*including datasets not learned yet"):
        mtil_summary(M)
    with pytest.raises(ShapeError, match="square"):
        mtil_summary(np.ones((2, 3)))
    single = mtil_summary([[42.0]])
    assert math.isnan(single["transfer"]) and single["avg"] == single["last"] == 42.0
