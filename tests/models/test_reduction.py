"""nnbrain.models.reduction against scikit-learn on seeded data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.random_projection import SparseRandomProjection, johnson_lindenstrauss_min_dim

from nnbrain.models.reduction import (
    REDUCTION_METHODS,
    effective_components,
    reduce,
    reduction_memory,
    srp_matrix,
)


def _data(n: int, p: int, seed: int) -> np.ndarray:
    """Low-rank structure plus noise, so that PCA components are well separated."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 5)) * [10, 7, 5, 3, 2]) @ rng.normal(size=(5, p)) \
        + 0.1 * rng.normal(size=(n, p))


def _squared_distances(x: np.ndarray) -> np.ndarray:
    sq = (x ** 2).sum(axis=1)
    d = sq[:, None] + sq[None] - 2 * x @ x.T
    return d[np.triu_indices(len(x), 1)]


@pytest.mark.parametrize(("n", "p", "k"), [(40, 300, 10), (200, 30, 30), (25, 1000, 25)])
def test_pca_equals_sklearn_up_to_sign(n: int, p: int, k: int) -> None:
    x = _data(n, p, seed=n)
    got = reduce(x, "pca", k)
    want = PCA(n_components=k, svd_solver="full").fit_transform(x)
    assert got.shape == want.shape == (n, k)
    signs = np.sign((got * want).sum(axis=0))
    np.testing.assert_allclose(got * signs, want, rtol=1e-7, atol=1e-8 * np.abs(want).max())


def test_pca_caps_components_and_fixes_signs() -> None:
    x = _data(12, 50, seed=1)
    assert effective_components("pca", 12, 50, 100) == 12
    assert reduce(x, "pca", 100).shape == (12, 12)
    scores = reduce(x, "pca", 5)
    loadings = np.linalg.lstsq(scores, x - x.mean(axis=0), rcond=None)[0]
    biggest = loadings[np.arange(5), np.abs(loadings).argmax(axis=1)]
    assert (biggest > 0).all()


def test_srp_matrix_has_sklearns_density_and_values() -> None:
    n_features, k = 2500, 400
    indptr, indices, values = srp_matrix(n_features, k, seed=3)
    ours = np.zeros((k, n_features))
    for i in range(k):
        ours[i, indices[indptr[i]:indptr[i + 1]]] = values[indptr[i]:indptr[i + 1]]
    theirs = SparseRandomProjection(k, random_state=3).fit(np.zeros((2, n_features)))
    reference = theirs.components_.toarray()
    assert theirs.density_ == pytest.approx(1 / np.sqrt(n_features))
    np.testing.assert_allclose(sorted(set(np.unique(ours))), sorted(set(np.unique(reference))))
    # the share of non-zero entries: density +- 4 binomial standard deviations
    density, total = 1 / np.sqrt(n_features), k * n_features
    tolerance = 4 * np.sqrt(density * (1 - density) / total)
    assert abs(np.count_nonzero(ours) / total - density) < tolerance
    assert abs(np.count_nonzero(reference) / total - density) < tolerance
    assert abs((ours > 0).sum() / np.count_nonzero(ours) - 0.5) < 0.02
    assert all((np.diff(indices[indptr[i]:indptr[i + 1]]) > 0).all() for i in range(k))


def test_srp_preserves_distances_within_the_jl_bound_like_sklearn() -> None:
    n, p, eps = 60, 5000, 0.5
    k = johnson_lindenstrauss_min_dim(n, eps=eps)
    x = np.random.default_rng(4).normal(size=(n, p))
    original = _squared_distances(x)
    ours = _squared_distances(reduce(x, "srp", int(k), seed=7)) / original
    theirs = _squared_distances(
        SparseRandomProjection(int(k), random_state=7).fit_transform(x)) / original
    for ratio in (ours, theirs):
        assert ratio.min() > 1 - eps and ratio.max() < 1 + eps
        assert abs(ratio.mean() - 1) < 0.05
    assert abs(ours.std() - theirs.std()) < 0.5 * theirs.std()


def test_srp_is_seeded() -> None:
    x = np.random.default_rng(5).normal(size=(20, 800))
    a = reduce(x, "srp", 50, seed=1)
    np.testing.assert_array_equal(a, reduce(x, "srp", 50, seed=1))
    assert not np.allclose(a, reduce(x, "srp", 50, seed=2))
    with pytest.raises(ValueError, match="srp needs a seed"):
        reduce(x, "srp", 50)


def test_srp_equals_dense_product() -> None:
    x = np.random.default_rng(6).normal(size=(9, 300)).astype(np.float32)
    indptr, indices, values = srp_matrix(300, 20, seed=0)
    dense = np.zeros((20, 300))
    for i in range(20):
        dense[i, indices[indptr[i]:indptr[i + 1]]] = values[indptr[i]:indptr[i + 1]]
    np.testing.assert_allclose(reduce(x, "srp", 20, seed=0), x.astype(np.float64) @ dense.T,
                               rtol=1e-12, atol=1e-12)


def test_extra_axes_are_flattened_first() -> None:
    x = np.random.default_rng(7).normal(size=(10, 3, 4, 5))
    np.testing.assert_array_equal(reduce(x, "pca", 4), reduce(x.reshape(10, -1), "pca", 4))


@pytest.mark.parametrize("method", sorted(REDUCTION_METHODS))
def test_memory_estimate_is_positive_and_grows(method: str) -> None:
    small = reduction_memory(method, 10, 100, 5)
    assert 0 < small < reduction_memory(method, 100, 10_000, 50)


def test_unknown_method_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'ica'; choose from \['pca', 'srp'\]"):
        reduce(np.zeros((3, 3)), "ica", 2)
