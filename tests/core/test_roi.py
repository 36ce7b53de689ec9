"""average_by_condition against pandas; roi_values against an explicit C-order voxel loop."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from nnbrain.core.roi import average_by_condition, roi_values


@pytest.mark.parametrize(("seed", "n_trials", "n_voxels"), [(0, 12, 1), (1, 50, 7), (2, 333, 40)])
def test_average_by_condition_matches_pandas_groupby(seed, n_trials, n_voxels):
    rng = np.random.default_rng(seed)
    names = ["face", "house", "tool", "body", "scene"]
    trial_conditions = list(rng.choice(names, size=n_trials))
    trial_conditions[:5] = names  # every condition occurs at least once
    rng.shuffle(trial_conditions)
    values = rng.normal(loc=3.0, size=(n_trials, n_voxels))
    conditions = ["tool", "face", "scene", "body", "house"]  # neither sorted nor first-seen order

    got = average_by_condition(values, trial_conditions, conditions)
    want = pd.DataFrame(values).groupby(np.asarray(trial_conditions)).mean().loc[conditions]
    assert got.shape == (len(conditions), n_voxels)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-12, atol=1e-12)


def test_average_by_condition_subset_and_integer_input():
    rng = np.random.default_rng(3)
    trial_conditions = ["a", "b", "c", "a", "c", "c", "b", "d"]
    values = rng.integers(-5, 5, size=(8, 3))
    got = average_by_condition(values, trial_conditions, ["c", "a"])  # b and d ignored
    np.testing.assert_allclose(got[0], values[[2, 4, 5]].mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(got[1], values[[0, 3]].mean(axis=0), rtol=1e-14)
    assert got.dtype == np.float64


def test_average_by_condition_missing_condition_raises():
    values = np.ones((4, 2))
    with pytest.raises(ValueError, match="'shoe'"):
        average_by_condition(values, ["a", "b", "a", "b"], ["a", "shoe", "b"])


def _loop_roi(data: np.ndarray, labels: np.ndarray, index: int) -> np.ndarray:
    columns = [
        data[x, y, z, :]
        for x, y, z in itertools.product(*(range(s) for s in labels.shape))  # z fastest: C order
        if labels[x, y, z] == index
    ]
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("index", [1, 2, 5])
def test_roi_values_picks_c_order_voxels(index):
    rng = np.random.default_rng(4)
    shape = (4, 5, 3)
    labels = rng.integers(0, 6, size=shape)
    data = rng.normal(size=(*shape, 7))
    got = roi_values(data, labels, index)
    want = _loop_roi(data, labels, index)
    assert got.shape == (7, int((labels == index).sum()))
    np.testing.assert_array_equal(got, want)


def test_roi_values_is_not_fortran_order():
    """Guard: the C-order check above can tell C from Fortran order."""
    shape = (2, 3, 2)
    labels = np.ones(shape, dtype=int)
    data = np.arange(np.prod(shape) * 2, dtype=float).reshape(*shape, 2)
    got = roi_values(data, labels, 1)
    np.testing.assert_array_equal(got[0], data[..., 0].ravel(order="C"))
    assert not np.array_equal(got[0], data[..., 0].ravel(order="F"))


def test_roi_values_float_labels_and_empty_roi():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, size=(3, 3, 3)).astype(np.float64)  # as from get_fdata()
    data = rng.normal(size=(3, 3, 3, 4))
    np.testing.assert_array_equal(roi_values(data, labels, 2), _loop_roi(data, labels, 2))
    assert roi_values(data, labels, 9).shape == (4, 0)
