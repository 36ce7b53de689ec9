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

import numpy as np
import pytest
from scipy.stats import ortho_group

from nnbrain.core.cka import center_gram, cka, cka_from_centered, gram_linear


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
def test_rbf_kernel_not_available_yet():
    x, y = _pair(9, 10, 3, 3)
    with pytest.raises(ValueError, match="rbf"):
        cka(x, y, kernel="rbf")
    with pytest.raises(ValueError, match="linear"):
        cka(x, y, kernel="rbf", unbiased=True)


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
