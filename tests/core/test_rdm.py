"""compute_rdm / RDM_METHODS / n_conditions against scipy.spatial.distance."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

import nnbrain.core.rdm as rdm_module
from nnbrain.core.rdm import RDM_METHODS, compute_rdm, n_conditions

#: nnbrain method -> scipy.spatial.distance.pdist metric computing the same dissimilarity.
SCIPY_METRIC = {"correlation": "correlation", "cosine": "cosine", "euclidean": "euclidean"}


def _reference(patterns: np.ndarray, method: str) -> np.ndarray:
    if method not in SCIPY_METRIC:
        pytest.fail(f"RDM method {method!r} was added without an independent reference here")
    return pdist(patterns, metric=SCIPY_METRIC[method])


@pytest.mark.parametrize("method", sorted(RDM_METHODS))
@pytest.mark.parametrize(
    ("seed", "n_cond", "n_chan"),
    [(0, 3, 2), (1, 5, 40), (2, 12, 7), (3, 30, 200), (4, 64, 5)],
)
def test_matches_pdist(method, seed, n_cond, n_chan):
    rng = np.random.default_rng(seed)
    patterns = rng.normal(loc=rng.normal(), scale=rng.uniform(0.5, 3), size=(n_cond, n_chan))
    got = compute_rdm(patterns, method)
    want = _reference(patterns, method)
    assert got.shape == (n_cond * (n_cond - 1) // 2,)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", sorted(RDM_METHODS))
def test_condensed_order_is_squareform(method):
    """Entry k of the condensed RDM is the (i, j) pair of scipy's squareform (row-major i < j)."""
    rng = np.random.default_rng(11)
    patterns = rng.normal(size=(9, 13))
    square = squareform(compute_rdm(patterns, method))
    for i in range(9):
        for j in range(9):
            if i != j:
                want = _reference(patterns[[i, j]], method)[0]
                assert square[i, j] == pytest.approx(want, abs=1e-10)


@pytest.mark.parametrize("method", sorted(RDM_METHODS))
def test_accepts_float32_and_lists(method):
    rng = np.random.default_rng(5)
    patterns = rng.normal(size=(6, 10)).astype(np.float32)
    want = _reference(patterns.astype(np.float64), method)
    np.testing.assert_allclose(compute_rdm(patterns, method), want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(compute_rdm(patterns.tolist(), method), want, rtol=0, atol=1e-10)


def test_default_method_is_correlation():
    rng = np.random.default_rng(6)
    patterns = rng.normal(size=(7, 11))
    np.testing.assert_allclose(compute_rdm(patterns), pdist(patterns, "correlation"), atol=1e-10)


def test_docstring_example():
    failures, attempted = doctest.testmod(rdm_module, extraglobs={"np": np}, verbose=False)
    assert attempted > 0
    assert failures == 0


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError) as info:
        compute_rdm(np.eye(4), "mahalanobis")
    message = str(info.value)
    assert "mahalanobis" in message
    for name in RDM_METHODS:
        assert name in message


@pytest.mark.parametrize("constant", [0.0, 1.0, -2.5, 4.0])
def test_constant_pattern_correlation_raises(constant):
    patterns = np.random.default_rng(7).normal(size=(5, 8))
    patterns[3] = constant
    with pytest.raises(ValueError, match="constant"):
        compute_rdm(patterns, "correlation")


def test_zero_pattern_cosine_raises():
    patterns = np.random.default_rng(8).normal(size=(5, 8))
    patterns[1] = 0.0
    with pytest.raises(ValueError, match="zero"):
        compute_rdm(patterns, "cosine")


def test_constant_pattern_not_exactly_representable_mean_raises():
    patterns = np.random.default_rng(0).normal(size=(5, 7))
    patterns[2] = 0.1
    with pytest.raises(ValueError, match="constant"):
        compute_rdm(patterns, "correlation")


def test_euclidean_large_offset_relative_precision():
    rng = np.random.default_rng(1)
    patterns = 1e3 + 1e-3 * rng.normal(size=(6, 20))
    np.testing.assert_allclose(compute_rdm(patterns, "euclidean"), pdist(patterns), rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 5), (1, 5), (6,), (3, 4, 2)])
def test_bad_pattern_shape_raises(shape):
    with pytest.raises(ValueError, match="n_conditions"):
        compute_rdm(np.ones(shape), "euclidean")


@pytest.mark.parametrize("n", [2, 3, 4, 5, 12, 17, 100, 300])
def test_n_conditions_roundtrip(n):
    length = squareform(np.zeros((n, n))).size  # scipy's condensed length
    assert n_conditions(length) == n


def test_n_conditions_roundtrip_large():
    for n in (1000, 4097, 100_000, 1_000_003):
        assert n_conditions(n * (n - 1) // 2) == n


def test_n_conditions_of_computed_rdm():
    rng = np.random.default_rng(9)
    for n in (3, 8, 21):
        assert n_conditions(compute_rdm(rng.normal(size=(n, 4)), "euclidean").size) == n


@pytest.mark.parametrize("length", [2, 4, 5, 7, 9, 11, 14, 44, 46, 4950 + 1, 4950 - 1])
def test_n_conditions_bad_length_raises(length):
    with pytest.raises(ValueError, match=str(length)):
        n_conditions(length)
