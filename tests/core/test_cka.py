"""Linear CKA against independent references.

References written here from the published formulas (not from nnbrain's code):

* Kornblith et al. (2019), "Similarity of Neural Network Representations Revisited", and its
  released colab: ``gram_linear``, ``center_gram(gram, unbiased)``, ``cka(gram_x, gram_y,
  debiased)``. The biased centering is ``H K H`` with ``H = I - 11'/n``; the unbiased one is the
  U-centering ``K~_ij - r_i/(n-2) - r_j/(n-2) + S/((n-1)(n-2))`` off the diagonal (0 on it),
  ``K~`` being ``K`` with a zeroed diagonal, ``r`` its row sums and ``S`` its total.
* Song et al. (2007), "Supervised feature selection via dependence estimation", unbiased
  HSIC_1 = [tr(K~L~) + 1'K~1 1'L~1/((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ortho_group

import nnbrain.core.cka as cka_module
from nnbrain.core.cka import (
    center_gram,
    cka,
    cka_details,
    cka_from_centered,
    gram_linear,
    median_sq_distance,
)


# --------------------------------------------------------------------------- references
def ref_gram_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.einsum("if,jf->ij", x, x)


def ref_center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    gram = np.asarray(gram, dtype=np.float64)
    assert np.allclose(gram, gram.T), "Gram matrix must be symmetric"
    n = gram.shape[0]
    if not unbiased:
        h = np.eye(n) - np.ones((n, n)) / n
        return h @ gram @ h
    k = gram * (1.0 - np.eye(n))  # zeroed diagonal
    row = k.sum(axis=1)
    total = k.sum()
    centered = k - row[:, None] / (n - 2) - row[None, :] / (n - 2) + total / ((n - 1) * (n - 2))
    return centered * (1.0 - np.eye(n))


def ref_cka(gram_x: np.ndarray, gram_y: np.ndarray, debiased: bool = False) -> float:
    kx = ref_center_gram(gram_x, unbiased=debiased)
    ky = ref_center_gram(gram_y, unbiased=debiased)
    return float(np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky)))


def hsic_unbiased_song(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    n = k.shape[0]
    kt = k * (1.0 - np.eye(n))
    lt = l * (1.0 - np.eye(n))
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h) / (n - 1) ** 2)


def cka_song(x: np.ndarray, y: np.ndarray) -> float:
    k, l = ref_gram_linear(x), ref_gram_linear(y)  # noqa: E741
    return hsic_unbiased_song(k, l) / np.sqrt(hsic_unbiased_song(k, k) * hsic_unbiased_song(l, l))


def cka_biased_formula(x: np.ndarray, y: np.ndarray) -> float:
    k, l = ref_gram_linear(x), ref_gram_linear(y)  # noqa: E741
    return hsic_biased(k, l) / np.sqrt(hsic_biased(k, k) * hsic_biased(l, l))


def _pair(seed: int, n: int, px: int, py: int, dtype=np.float64, shared: float = 0.7):
    """Two representations of the same n samples sharing a latent signal."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    x = latent @ rng.normal(size=(3, px)) * shared + rng.normal(size=(n, px)) + rng.normal()
    y = latent @ rng.normal(size=(3, py)) * shared + rng.normal(size=(n, py))
    return x.astype(dtype), y.astype(dtype)


CASES = [(0, 4, 3, 5), (1, 7, 20, 2), (2, 16, 8, 8), (3, 40, 100, 30), (4, 97, 13, 250)]


# --------------------------------------------------------------------------- the references agree
def test_references_are_consistent_with_each_other():
    """Song's HSIC_1 equals the U-centered Frobenius product / (n(n-3)) (sanity of references)."""
    x, y = _pair(99, 11, 6, 9)
    k, l = ref_gram_linear(x), ref_gram_linear(y)  # noqa: E741
    product = np.sum(ref_center_gram(k, True) * ref_center_gram(l, True))
    assert product / (11 * 8) == pytest.approx(hsic_unbiased_song(k, l), rel=1e-10)
    assert ref_cka(k, l, debiased=True) == pytest.approx(cka_song(x, y), rel=1e-10)
    assert ref_cka(k, l, debiased=False) == pytest.approx(cka_biased_formula(x, y), rel=1e-10)


# --------------------------------------------------------------------------- gram / centering
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_linear(dtype):
    x, _ = _pair(0, 9, 5, 1, dtype=dtype)
    got = gram_linear(x)
    assert got.dtype == np.float64 and got.shape == (9, 9)
    np.testing.assert_allclose(got, ref_gram_linear(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("seed", "n", "px", "py"), CASES)
@pytest.mark.parametrize("unbiased", [False, True])
def test_center_gram_matches_reference(seed, n, px, py, unbiased):
    x, _ = _pair(seed, n, px, py)
    gram = ref_gram_linear(x)
    before = gram.copy()
    got = center_gram(gram, unbiased=unbiased)
    np.testing.assert_array_equal(gram, before)  # input left alone (a copy is centered)
    scale = np.abs(gram).max()
    np.testing.assert_allclose(got, ref_center_gram(gram, unbiased), rtol=0, atol=1e-12 * scale)
    if unbiased:
        assert np.all(np.diag(got) == 0.0)
    else:
        np.testing.assert_allclose(got.sum(axis=0), 0.0, atol=1e-10 * scale)


@pytest.mark.parametrize(("seed", "n", "px", "py"), CASES)
def test_unbiased_centering_frobenius_is_n_n3_times_hsic1(seed, n, px, py):
    """Docstring claim: <center(K), center(L)> = n (n - 3) HSIC_1(K, L) (Song et al. 2007)."""
    x, y = _pair(seed, n, px, py)
    k, l = ref_gram_linear(x), ref_gram_linear(y)  # noqa: E741
    product = np.sum(center_gram(k, unbiased=True) * center_gram(l, unbiased=True))
    want = n * (n - 3) * hsic_unbiased_song(k, l)
    assert product == pytest.approx(want, rel=1e-9, abs=1e-9 * np.abs(k).max() * np.abs(l).max())


def test_unbiased_centering_needs_four_samples():
    with pytest.raises(ValueError, match="n >= 4"):
        center_gram(np.eye(3), unbiased=True)
    center_gram(np.eye(3), unbiased=False)  # the biased one is fine


# --------------------------------------------------------------------------- cka values
@pytest.mark.parametrize(("seed", "n", "px", "py"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unbiased_cka_equals_song_hsic_ratio(seed, n, px, py, dtype):
    x, y = _pair(seed, n, px, py, dtype=dtype)
    got = cka(x, y, unbiased=True)
    assert isinstance(got, float)
    want = cka_song(x.astype(np.float64), y.astype(np.float64))
    assert got == pytest.approx(want, abs=1e-8)
    assert got == pytest.approx(
        ref_cka(ref_gram_linear(x), ref_gram_linear(y), debiased=True), abs=1e-10
    )


@pytest.mark.parametrize(("seed", "n", "px", "py"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_biased_cka_equals_hkh_formula(seed, n, px, py, dtype):
    x, y = _pair(seed, n, px, py, dtype=dtype)
    got = cka(x, y)  # biased is the default
    assert isinstance(got, float)
    want = cka_biased_formula(x.astype(np.float64), y.astype(np.float64))
    assert got == pytest.approx(want, abs=1e-10)
    assert got == pytest.approx(
        ref_cka(ref_gram_linear(x), ref_gram_linear(y), debiased=False), abs=1e-10
    )


def test_biased_and_unbiased_differ():
    x, y = _pair(5, 12, 30, 30, shared=0.0)
    assert abs(cka(x, y) - cka(x, y, unbiased=True)) > 0.1


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_from_centered(unbiased):
    x, y = _pair(6, 20, 7, 11)
    kc = center_gram(gram_linear(x), unbiased)
    lc = center_gram(gram_linear(y), unbiased)
    got = cka_from_centered(kc, lc)
    want = ref_cka(ref_gram_linear(x), ref_gram_linear(y), unbiased)
    assert got == pytest.approx(want, abs=1e-10)
    assert got == pytest.approx(cka(x, y, unbiased=unbiased), abs=1e-14)
    with pytest.raises(ValueError, match="zero"):
        cka_from_centered(kc, np.zeros_like(lc))


# --------------------------------------------------------------------------- properties
def test_unbiased_cka_of_independent_noise_is_near_zero_biased_is_not():
    """Why the pipeline uses the unbiased estimator: biased CKA of noise is large at small n."""
    unbiased, biased = [], []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(30, 50))
        y = rng.normal(size=(30, 40))
        unbiased.append(cka(x, y, unbiased=True))
        biased.append(cka(x, y))
    assert abs(np.mean(unbiased)) < 0.02
    assert np.mean(biased) > 0.2
    assert min(biased) > 0.2


@pytest.mark.parametrize("unbiased", [False, True])
def test_invariances(unbiased):
    x, y = _pair(7, 25, 12, 9)
    base = cka(x, y, unbiased=unbiased)
    assert abs(base) > 0.05  # a non-trivial value to be invariant
    qx = ortho_group.rvs(12, random_state=np.random.default_rng(1))
    qy = ortho_group.rvs(9, random_state=np.random.default_rng(2))
    np.testing.assert_allclose(qx @ qx.T, np.eye(12), atol=1e-12)
    assert cka(x @ qx, y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    assert cka(x @ qx, y @ qy, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    for scale in (1e-3, 0.5, 7.0, 1e4):
        assert cka(scale * x, y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
        assert cka(x, scale * y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    # translation of the features (centering removes it)
    shift = np.random.default_rng(3).normal(size=12) * 5
    assert cka(x + shift, y, unbiased=unbiased) == pytest.approx(base, abs=1e-10)
    # symmetric, and 1 against itself
    assert cka(y, x, unbiased=unbiased) == pytest.approx(base, abs=1e-12)
    assert cka(x, x, unbiased=unbiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_not_invariant_to_anisotropic_scaling(unbiased):
    """Guard: the invariance test is discriminating (non-orthogonal maps change CKA)."""
    x, y = _pair(7, 25, 12, 9)
    stretch = np.diag(np.linspace(0.1, 10.0, 12))
    assert abs(cka(x @ stretch, y, unbiased=unbiased) - cka(x, y, unbiased=unbiased)) > 1e-3


@pytest.mark.parametrize("unbiased", [False, True])
def test_permuting_samples_jointly_keeps_cka(unbiased):
    x, y = _pair(8, 15, 6, 4)
    p = np.random.default_rng(4).permutation(15)
    want = cka(x, y, unbiased=unbiased)
    assert cka(x[p], y[p], unbiased=unbiased) == pytest.approx(want, abs=1e-12)


# --------------------------------------------------------------------------- errors
def test_unknown_kernel_raises_and_lists_the_kernels():
    """(Was: the RBF kernel not available yet. It is now; an unknown name lists both.)"""
    x, y = _pair(9, 10, 3, 3)
    with pytest.raises(ValueError, match="rbf"):
        cka(x, y, kernel="poly")
    with pytest.raises(ValueError, match="linear"):
        cka(x, y, kernel="poly", unbiased=True)
    assert np.isfinite(cka(x, y, kernel="rbf")) and np.isfinite(cka(x, y, "rbf", unbiased=True))


def test_sample_mismatch_raises():
    rng = np.random.default_rng(10)
    with pytest.raises(ValueError, match="samples"):
        cka(rng.normal(size=(10, 3)), rng.normal(size=(11, 3)))


@pytest.mark.parametrize("unbiased", [False, True])
def test_unbiased_needs_four_samples_in_cka(unbiased):
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 2))
    if unbiased:
        with pytest.raises(ValueError, match="n >= 4"):
            cka(x, y, unbiased=True)
    else:
        assert cka(x, y) == pytest.approx(cka_biased_formula(x, y), abs=1e-10)


@pytest.mark.parametrize("unbiased", [False, True])
def test_constant_zero_representation_raises(unbiased):
    x = np.random.default_rng(12).normal(size=(12, 5))
    with pytest.raises(ValueError, match="constant"):
        cka(x, np.zeros((12, 3)), unbiased=unbiased)


def test_constant_ones_representation_raises_biased():
    x = np.random.default_rng(12).normal(size=(12, 5))
    with pytest.raises(ValueError, match="constant"):
        cka(x, np.ones((12, 2)))


def test_constant_ones_representation_raises_unbiased():
    x = np.random.default_rng(12).normal(size=(12, 5))
    with pytest.raises(ValueError, match="constant"):
        cka(x, np.ones((12, 2)), unbiased=True)


# =========================================================================== issue 14: streaming
# The colab released with Kornblith et al. (2019), written out here from its published text
# (evaluated in float64 on the same numbers as the streamed version gets):
#
#   gram_rbf(x, threshold): dot = x x'; sq_norms = diag(dot);
#       sq_distances = -2 dot + sq_norms[:, None] + sq_norms[None, :];
#       sq_median_distance = np.median(sq_distances);
#       exp(-sq_distances / (2 threshold^2 sq_median_distance))
#   center_gram(gram, unbiased): as ref_center_gram above, in the colab's own operations
#   cka(gram_x, gram_y, debiased): <center(x), center(y)>_F / (||center(x)|| ||center(y)||)
def colab_gram_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.dot(x.T)


def colab_sq_distances(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    dot_products = x.dot(x.T)
    sq_norms = np.diag(dot_products)
    return -2 * dot_products + sq_norms[:, None] + sq_norms[None, :]


def colab_gram_rbf(x: np.ndarray, threshold: float = 1.0, median: float | None = None):
    sq_distances = colab_sq_distances(x)
    sq_median_distance = np.median(sq_distances) if median is None else median
    return np.exp(-sq_distances / (2 * threshold**2 * sq_median_distance))


def colab_center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    if not np.allclose(gram, gram.T):
        raise ValueError("Input must be a symmetric matrix.")
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def colab_cka(gram_x: np.ndarray, gram_y: np.ndarray, debiased: bool = False) -> float:
    gram_x = colab_center_gram(gram_x, unbiased=debiased)
    gram_y = colab_center_gram(gram_y, unbiased=debiased)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    return float(scaled_hsic / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y)))


def colab_value(x, y, kernel, unbiased, sigma=1.0, medians=None):
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if kernel == "linear":
        return colab_cka(colab_gram_linear(x64), colab_gram_linear(y64), unbiased)
    mx, my = medians if medians is not None else (None, None)
    return colab_cka(colab_gram_rbf(x64, sigma, mx), colab_gram_rbf(y64, sigma, my), unbiased)


def _nonlinear_pair(seed: int, n: int, px: int, py: int, dtype=np.float64):
    """A pair related non-linearly, with a feature offset (centering must not matter)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    x = np.tanh(latent @ rng.normal(size=(2, px))) + 0.4 * rng.normal(size=(n, px)) + 3.0
    y = (latent + 0.5 * latent**2) @ rng.normal(size=(2, py)) + 0.6 * rng.normal(size=(n, py))
    return x.astype(dtype), y.astype(dtype)


N_STREAM = 37
BLOCKS = [None, 1, 5, 8, N_STREAM, N_STREAM + 20]  # 5 and 8 do not divide 37


@pytest.mark.parametrize("block_size", BLOCKS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_streamed_cka_equals_colab_for_every_block(kernel, unbiased, dtype, block_size):
    x, y = _nonlinear_pair(20, N_STREAM, 6, 4, dtype)
    want = colab_value(x, y, kernel, unbiased)
    got = cka(x, y, kernel=kernel, unbiased=unbiased, block_size=block_size)
    assert isinstance(got, float)
    assert got == pytest.approx(want, abs=1e-8)
    assert abs(want) > 0.05  # a non-trivial value


@pytest.mark.parametrize("sigma", [0.3, 0.8, 2.5])
@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_sigma_is_the_colab_threshold(sigma, unbiased):
    x, y = _nonlinear_pair(21, 60, 5, 7)
    want = colab_value(x, y, "rbf", unbiased, sigma=sigma)
    for block in (None, 13):
        got = cka_details(x, y, "rbf", unbiased, sigma=sigma, block_size=block)
        assert got.value == pytest.approx(want, abs=1e-8)
        mx = np.median(colab_sq_distances(x))
        assert got.median_sq_distance[0] == pytest.approx(mx, rel=1e-12)
        assert got.bandwidth[0] == pytest.approx(sigma * np.sqrt(mx), rel=1e-12)
        assert got.median_source == "exact" and got.median_n_rows == 60


@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_against_song_hsic_formula(unbiased):
    """The streamed RBF HSIC estimates equal Song's HSIC_1 / the biased trace formula."""
    x, y = _nonlinear_pair(22, 30, 4, 3)
    k, l = colab_gram_rbf(x), colab_gram_rbf(y)  # noqa: E741
    hsic = hsic_unbiased_song if unbiased else hsic_biased
    got = cka_details(x, y, "rbf", unbiased, block_size=7)
    assert got.hsic_xy == pytest.approx(hsic(k, l), rel=1e-9)
    assert got.hsic_xx == pytest.approx(hsic(k, k), rel=1e-9)
    assert got.hsic_yy == pytest.approx(hsic(l, l), rel=1e-9)


@pytest.mark.parametrize("block_size", [None, 1, 3, 64, 500])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("unbiased", [False, True])
def test_feature_space_linear_equals_gram_linear(unbiased, dtype, block_size):
    x, y = _pair(23, 64, 90, 12, dtype=dtype)
    x = x + np.asarray(100.0, dtype)  # a large offset: centering is exact in feature space
    want = cka_from_centered(
        center_gram(gram_linear(x), unbiased), center_gram(gram_linear(y), unbiased)
    )
    got = cka_details(x, y, "linear", unbiased, block_size=block_size)
    assert got.value == pytest.approx(want, abs=1e-9)
    n = 64
    if unbiased:  # the HSIC values themselves: Song's HSIC_1
        k, l = ref_gram_linear(x), ref_gram_linear(y)  # noqa: E741
        assert got.hsic_xy == pytest.approx(hsic_unbiased_song(k, l), rel=1e-7)
    else:
        kc = center_gram(gram_linear(x))
        lc = center_gram(gram_linear(y))
        assert got.hsic_xy == pytest.approx(np.sum(kc * lc) / (n - 1) ** 2, rel=1e-7)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 36, 37])
def test_exact_median_equals_np_median_of_the_full_matrix(n):
    x = np.random.default_rng(n).normal(size=(n, 3))
    want = np.median(colab_sq_distances(x))
    for block in (None, 1, 2, 7):
        assert median_sq_distance(x, block_size=block) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("sample_pairs", "seed"), [(500, 0), (500, 1), (3, 0), (1, 5)])
def test_exact_median_bracket_path_is_exact_and_seed_free(sample_pairs, seed):
    """Bracketing by a pair sample (and widening when a tiny sample misses) stays exact."""
    x = np.random.default_rng(24).normal(size=(301, 5)) ** 3  # skewed distances
    want = np.median(colab_sq_distances(x))
    rows = cka_module._augmented_rows(x, x.mean(axis=0), np.dtype(np.float64))
    backend = cka_module._NumpyBackend("float64")
    got = cka_module._exact_median(x, rows, backend, 17, seed, sample_pairs=sample_pairs,
                                   collect_all=100)
    backend.close()
    assert got == pytest.approx(want, rel=1e-12)


def test_subsample_median_is_seeded_and_recorded():
    x, y = _nonlinear_pair(25, 90, 5, 4)
    d = cka_details(x, y, "rbf", True, median_max_rows=40, seed=3, block_size=16)
    assert (d.median_source, d.median_n_rows, d.median_seed) == ("subsample", 40, 3)
    idx = np.sort(np.random.default_rng(3).choice(90, 40, replace=False))
    mx = np.median(colab_sq_distances(x[idx]))
    my = np.median(colab_sq_distances(y[idx]))
    assert d.median_sq_distance == pytest.approx((mx, my), rel=1e-12)
    # the HSIC itself is exact over all 90 rows, with that bandwidth
    assert d.value == pytest.approx(colab_value(x, y, "rbf", True, medians=(mx, my)), abs=1e-8)
    again = cka_details(x, y, "rbf", True, median_max_rows=40, seed=3)
    assert again.median_sq_distance == d.median_sq_distance and again.value == pytest.approx(
        d.value, abs=1e-12)
    other = cka_details(x, y, "rbf", True, median_max_rows=40, seed=4)
    assert other.median_sq_distance != d.median_sq_distance
    full = cka_details(x, y, "rbf", True, median_max_rows=90)
    assert full.median_source == "exact" and full.median_seed is None
    record = json.loads(json.dumps(d.to_dict()))  # sidecar-ready
    assert record["median_seed"] == 3 and record["median_sq_distance"] == list(
        d.median_sq_distance)


def test_user_median_is_used_and_recorded():
    x, y = _nonlinear_pair(26, 40, 5, 4)
    d = cka_details(x, y, "rbf", False, sigma=0.5, median_sq_distance=(2.0, 3.0))
    assert d.median_source == "user" and d.median_n_rows is None
    assert d.bandwidth == pytest.approx((0.5 * np.sqrt(2.0), 0.5 * np.sqrt(3.0)))
    want = colab_value(x, y, "rbf", False, sigma=0.5, medians=(2.0, 3.0))
    assert d.value == pytest.approx(want, abs=1e-8)


@pytest.mark.parametrize("unbiased", [False, True])
def test_resume_from_a_state_gives_the_identical_value(unbiased):
    x, y = _nonlinear_pair(27, 50, 6, 5, np.float32)
    full = cka_details(x, y, "rbf", unbiased, block_size=8)  # 7 x 8 / 2 = 28 tiles
    assert full.n_tiles == 28
    states = []
    first = cka_details(x, y, "rbf", unbiased, block_size=8, on_progress=states.append,
                        max_tiles=5)
    assert (first.complete, first.tiles_done, np.isnan(first.value)) == (False, 5, True)
    assert [s.next_tile for s in states] == [1, 2, 3, 4, 5]
    assert first.median_sq_distance is None  # the exact median is still deferred
    second = cka_details(x, y, "rbf", unbiased, block_size=8, on_progress=states.append,
                         progress_every=4, resume_from=states[-1], max_tiles=10)
    assert (second.complete, second.tiles_done) == (False, 15)
    assert [s.next_tile for s in states[5:]] == [9, 13, 15]
    last = cka_details(x, y, "rbf", unbiased, block_size=8, resume_from=states[-1])
    assert last.complete and last.tiles_done == 28
    assert last.value == full.value  # identical, not just close
    assert (last.hsic_xy, last.hsic_xx, last.hsic_yy) == (full.hsic_xy, full.hsic_xx,
                                                          full.hsic_yy)
    assert last.median_sq_distance == full.median_sq_distance
    again = cka_details(x, y, "rbf", unbiased, block_size=8, resume_from=states[2])
    assert again.value == full.value  # any earlier state, too


def test_on_progress_gets_a_complete_state_at_the_end():
    x, y = _concentrated_pair(27, 30, 60)
    states = []
    d = cka_details(x, y, "rbf", True, block_size=8, on_progress=states.append,
                    progress_every=100)
    assert len(states) == 1 and states[0].complete and states[0].next_tile == d.n_tiles == 10
    assert cka_details(x, y, "rbf", True, block_size=8, resume_from=states[0]).value == d.value
    assert json.loads(json.dumps(states[0].key)) == states[0].key  # JSON-able


def test_resume_refuses_a_state_of_other_inputs_or_parameters():
    x, y = _nonlinear_pair(28, 30, 4, 4)
    states = []
    cka_details(x, y, "rbf", True, block_size=8, on_progress=states.append, max_tiles=2)
    state = states[-1]
    with pytest.raises(cka_module.StateMismatchError, match="data"):
        cka_details(x + 1e-3 * np.arange(4), y, "rbf", True, block_size=8, resume_from=state)
    with pytest.raises(ValueError, match="unbiased"):
        cka_details(x, y, "rbf", False, block_size=8, resume_from=state)
    with pytest.raises(ValueError, match="sigma: 1.0 != 2.0"):
        cka_details(x, y, "rbf", True, block_size=8, sigma=2.0, resume_from=state)
    with pytest.raises(ValueError, match="n: 30 != 29"):
        cka_details(x[:29], y[:29], "rbf", True, block_size=8, resume_from=state)
    with pytest.raises(ValueError, match="block_size"):
        cka_details(x, y, "rbf", True, block_size=9, resume_from=state)
    with pytest.raises(ValueError, match="compute_dtype"):
        cka_details(x, y, "rbf", True, block_size=8, compute_dtype="float32",
                    resume_from=state)
    with pytest.raises(ValueError, match="median_source"):
        cka_details(x, y, "rbf", True, block_size=8, median_sq_distance=(1.0, 1.0),
                    resume_from=state)
    with pytest.raises(ValueError, match="max_tiles"):
        cka_details(x, y, "rbf", True, max_tiles=2)
    with pytest.raises(ValueError, match="RBF kernel only"):
        cka_details(x, y, "linear", True, resume_from=state)


# --------------------------------------------------------------------------- one-pass RBF
def _count_passes(monkeypatch) -> list[int]:
    """Record the Taylor order of every tile pass."""
    orders = []
    original = cka_module._tile_pass

    def counting(devs, n, block, backend, bw, *args, **kwargs):
        orders.append(bw.order)
        return original(devs, n, block, backend, bw, *args, **kwargs)

    monkeypatch.setattr(cka_module, "_tile_pass", counting)
    return orders


def _concentrated_pair(seed: int, n: int, p: int):
    """High-dimensional rows: distances concentrate, the sample median is close to the exact."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    x = np.tanh(latent @ rng.normal(size=(3, p))) + rng.normal(size=(n, p))
    y = latent @ rng.normal(size=(3, p // 2)) + rng.normal(size=(n, p // 2))
    return x, y


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shift", [1.0, 0.998, 0.993])
def test_deferred_median_one_pass_equals_colab(monkeypatch, unbiased, shift):
    """One pass at a reference bandwidth, corrected by the Taylor moments, is exact."""
    x, y = _concentrated_pair(40, 160, 120)
    original = cka_module._sample_median
    monkeypatch.setattr(cka_module, "_sample_median",
                        lambda sample, n: shift * original(sample, n))
    orders = _count_passes(monkeypatch)
    for block in (None, 7, 64):
        d = cka_details(x, y, "rbf", unbiased, block_size=block)
        assert d.value == pytest.approx(colab_value(x, y, "rbf", unbiased), abs=1e-12)
        want = (np.median(colab_sq_distances(x)), np.median(colab_sq_distances(y)))
        assert d.median_sq_distance == pytest.approx(want, rel=1e-12)
    assert orders == [cka_module.TAYLOR_ORDER] * 3  # never a second pass


@pytest.mark.parametrize("unbiased", [False, True])
def test_poor_reference_bandwidth_falls_back_to_a_second_pass(monkeypatch, unbiased):
    x, y = _concentrated_pair(41, 90, 40)
    original = cka_module._sample_median
    monkeypatch.setattr(cka_module, "_sample_median",
                        lambda sample, n: 1.3 * original(sample, n))
    orders = _count_passes(monkeypatch)
    d = cka_details(x, y, "rbf", unbiased, block_size=16)
    assert orders == [cka_module.TAYLOR_ORDER, 0]
    assert d.value == pytest.approx(colab_value(x, y, "rbf", unbiased), abs=1e-12)
    assert d.tiles_done == d.n_tiles == 21


def test_resume_in_the_second_pass_skips_the_first(monkeypatch):
    x, y = _concentrated_pair(42, 60, 20)
    original = cka_module._sample_median
    monkeypatch.setattr(cka_module, "_sample_median",
                        lambda sample, n: 1.3 * original(sample, n))
    full = cka_details(x, y, "rbf", True, block_size=8)
    states = []
    d = cka_details(x, y, "rbf", True, block_size=8, on_progress=states.append, max_tiles=40)
    assert not d.complete and d.tiles_done == 4  # 36 tiles of the first pass, 4 of the second
    assert states[-1].key["order"] == 0 and states[-1].key["median_source"] == "exact"
    orders = _count_passes(monkeypatch)
    resumed = cka_details(x, y, "rbf", True, block_size=8, resume_from=states[-1])
    assert orders == [0] and resumed.value == full.value


@pytest.mark.parametrize("sample_pairs", [1, 3, 40])
def test_pass_bracket_that_misses_is_recounted(monkeypatch, sample_pairs):
    """A bracket from a tiny sample misses the median: a widening count pass finds it."""
    x, y = _nonlinear_pair(43, 70, 3, 2)
    monkeypatch.setattr(cka_module, "MEDIAN_COLLECT_ALL", 10)
    monkeypatch.setattr(cka_module, "MEDIAN_SAMPLE_PAIRS", sample_pairs)
    for unbiased in (False, True):
        d = cka_details(x, y, "rbf", unbiased, block_size=9)
        assert d.value == pytest.approx(colab_value(x, y, "rbf", unbiased), abs=1e-10)
        want = (np.median(colab_sq_distances(x)), np.median(colab_sq_distances(y)))
        assert d.median_sq_distance == pytest.approx(want, rel=1e-12)


def test_compiled_exp_is_accurate():
    """The kernel's exp(-w) (range reduction + polynomial) is within 2 ulp over its range."""
    w = np.concatenate([np.linspace(0.0, 1.0, 1001), np.geomspace(1e-300, 700.0, 1001)])
    g = (-0.5 * w)[None, :]  # d^2 = w at c = 1
    stats_kernel, _ = cka_module._rbf_kernels()
    rows = np.zeros((2, 1, 1))
    stats_kernel(g, g, 0, 1, False, 1.0, 1.0, np.array(cka_module._NO_BRACKET), 0,
                 np.zeros(cka_module._n_moments(0)), rows, np.zeros((2, 1, w.size)),
                 np.zeros(4, dtype=np.int64), np.zeros((2, 1), dtype=np.int64), np.zeros(2))
    cols = np.zeros((2, 1, w.size))
    stats_kernel(g, g, 0, 1, False, 1.0, 1.0, np.array(cka_module._NO_BRACKET), 0,
                 np.zeros(cka_module._n_moments(0)), rows, cols,
                 np.zeros(4, dtype=np.int64), np.zeros((2, 1), dtype=np.int64), np.zeros(2))
    want = np.exp(-w)
    np.testing.assert_allclose(cols[0, 0], want, rtol=3 * np.finfo(float).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_torch_cpu_path_equals_numpy_path(kernel, unbiased, dtype):
    pytest.importorskip("torch")
    x, y = _nonlinear_pair(30, 45, 7, 3, dtype)
    want = cka_details(x, y, kernel, unbiased, block_size=10)
    got = cka_details(x, y, kernel, unbiased, block_size=10, device="cpu")
    assert got.device == "torch:cpu" and want.device == "numpy"
    assert got.value == pytest.approx(want.value, abs=1e-12)
    assert got.median_sq_distance == pytest.approx(want.median_sq_distance or (0, 0), rel=1e-12) \
        if kernel == "rbf" else got.median_sq_distance is None


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_float32_compute_is_close_and_sums_stay_float64(kernel):
    """float32 tiles / GEMMs with float64 sums: close to float64 (the docstring says ~1e-8)."""
    x, y = _nonlinear_pair(31, 200, 30, 20, np.float32)
    want = cka(x, y, kernel, True)
    got = cka_details(x, y, kernel, True, block_size=32, compute_dtype="float32")
    assert got.compute_dtype == "float32"
    assert got.value == pytest.approx(want, abs=1e-5)
    if kernel == "rbf":
        torch_got = pytest.importorskip("torch") and cka(
            x, y, kernel, True, block_size=32, device="cpu", compute_dtype="float32")
        assert torch_got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_invariances(unbiased):
    x, y = _nonlinear_pair(32, 30, 6, 4)
    base = cka(x, y, "rbf", unbiased)
    q = ortho_group.rvs(6, random_state=np.random.default_rng(5))
    assert cka(x @ q, y, "rbf", unbiased) == pytest.approx(base, abs=1e-10)
    assert cka(7.0 * x - 3.0, y, "rbf", unbiased) == pytest.approx(base, abs=1e-10)
    assert cka(y, x, "rbf", unbiased) == pytest.approx(base, abs=1e-12)
    assert cka(x, x, "rbf", unbiased) == pytest.approx(1.0, abs=1e-12)
    p = np.random.default_rng(6).permutation(30)
    assert cka(x[p], y[p], "rbf", unbiased, block_size=7) == pytest.approx(base, abs=1e-12)


def test_progress_bar_and_details(capsys):
    x, y = _nonlinear_pair(33, 40, 4, 4)
    d = cka_details(x, y, "rbf", True, block_size=8, progress=True)
    assert d.complete and d.tiles_done == d.n_tiles == 15
    assert d.n == 40 and d.n_features == (4, 4) and d.block_size == 8
    assert "15/15" in capsys.readouterr().err  # tqdm's bar


def test_streaming_errors():
    x, y = _nonlinear_pair(34, 20, 3, 3)
    with pytest.raises(ValueError, match="compute_dtype"):
        cka(x, y, compute_dtype="float16")
    with pytest.raises(ValueError, match="sigma"):
        cka(x, y, "rbf", sigma=0.0)
    with pytest.raises(ValueError, match="block_size"):
        cka(x, y, "rbf", block_size=-1)
    dup = np.vstack([np.repeat(x[:1], 16, axis=0), x[1:5]])  # most pairs coincide
    with pytest.raises(ValueError, match="median"):
        cka(dup, y, "rbf")
    with pytest.raises(ValueError, match="n >= 4"):
        cka(x[:3], y[:3], "rbf", unbiased=True)
    with pytest.raises(ValueError, match="NaN"):
        cka(np.where(np.eye(20, 3) > 0, np.nan, x), y, "rbf")
