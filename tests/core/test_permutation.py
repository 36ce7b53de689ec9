"""Permutation tests: Mantel (RDMs) and CKA, checked against brute-force loops.

The brute force permutes the *square* RDM (rows and columns together) / the reference's rows with
the very same permutations the package draws (``stimulus_permutations(n, n_perm, seed)``) and
recomputes the statistic from scratch with scipy / the published CKA formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import kstest, pearsonr, spearmanr

from nnbrain.core.cka import cka
from nnbrain.core.compare import COMPARATORS, compare_rdms
from nnbrain.core.permutation import (
    PermutationResult,
    cka_permutation_batch,
    mantel_test,
    mantel_test_batch,
    stimulus_permutations,
)

TIE_TOL = 1e-9  # brute-force statistics are compared with this tolerance ...
AMBIGUOUS = 1e-13  # ... and must not fall in (AMBIGUOUS, TIE_TOL) of the observed one


def _cosine(a, b):
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


REFERENCE = {
    "spearman": lambda a, b: float(spearmanr(a, b).statistic),
    "pearson": lambda a, b: float(pearsonr(a, b).statistic),
    "cosine": _cosine,
}


def _compare(a, b, method):
    if method not in REFERENCE:
        pytest.fail(f"comparator {method!r} was added without an independent reference here")
    return REFERENCE[method](a, b)


def _p_from_null(stat: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p = (1 + #{null >= stat}) / (1 + n), and its max-statistic (FWE) version."""
    diff = null - stat[None, :]
    assert not np.any((np.abs(diff) > AMBIGUOUS) & (np.abs(diff) < TIE_TOL)), "near-tie in null"
    n = null.shape[0]
    p = (1 + (null >= stat[None, :] - TIE_TOL).sum(axis=0)) / (1 + n)
    max_null = null.max(axis=1)
    p_fwe = (1 + (max_null[:, None] >= stat[None, :] - TIE_TOL).sum(axis=0)) / (1 + n)
    return p, p_fwe


def brute_force_mantel(reference, candidates, method, perms):
    square = squareform(reference)
    stat = np.array([_compare(reference, c, method) for c in candidates])
    null = np.empty((len(perms), len(candidates)))
    for i, p in enumerate(perms):
        permuted = squareform(square[np.ix_(p, p)], checks=False)
        null[i] = [_compare(permuted, c, method) for c in candidates]
    return (stat, *_p_from_null(stat, null))


def _hsic1(k, l):  # noqa: E741  Song et al. (2007) unbiased HSIC
    n = k.shape[0]
    kt, lt = k * (1 - np.eye(n)), l * (1 - np.eye(n))
    one = np.ones(n)
    return (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    ) / (n * (n - 3))


def _hsic_biased(k, l):  # noqa: E741
    h = np.eye(k.shape[0]) - 1.0 / k.shape[0]
    return np.trace(k @ h @ l @ h)


def _cka_ref(x, y, unbiased):
    k, l = x @ x.T, y @ y.T  # noqa: E741
    hsic = _hsic1 if unbiased else _hsic_biased
    return float(hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l)))


def brute_force_cka(reference, candidates, unbiased, perms):
    stat = np.array([_cka_ref(c, reference, unbiased) for c in candidates])
    null = np.array([[_cka_ref(c, reference[p], unbiased) for c in candidates] for p in perms])
    return (stat, *_p_from_null(stat, null))


def _patterns(seed: int, n: int, strengths=(0.0, 0.35, 0.6, 3.0), n_chan: int = 15,
              ref_noise: float = 1.0):
    """A reference pattern set and candidates sharing ``strength`` x a common signal with it."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, n_chan))
    reference = shared + ref_noise * rng.normal(size=(n, n_chan))
    candidates = [s * shared + rng.normal(size=(n, n_chan)) for s in strengths]
    return reference, candidates


def _rdms(seed: int, n: int, **kwargs):
    reference, candidates = _patterns(seed, n, **kwargs)
    return pdist(reference, "correlation"), np.stack([pdist(c, "correlation") for c in candidates])


# --------------------------------------------------------------------------- permutations
def test_stimulus_permutations():
    perms = stimulus_permutations(9, 500, seed=3)
    assert perms.shape == (500, 9)
    np.testing.assert_array_equal(np.sort(perms, axis=1), np.tile(np.arange(9), (500, 1)))
    np.testing.assert_array_equal(perms, stimulus_permutations(9, 500, seed=3))
    assert not np.array_equal(perms, stimulus_permutations(9, 500, seed=4))
    assert len({tuple(p) for p in perms}) > 490  # 9! = 362880: nearly all distinct
    # every label lands in every position roughly uniformly (500 / 9 ~ 56 each)
    counts = np.array([[np.sum(perms[:, pos] == lab) for lab in range(9)] for pos in range(9)])
    assert counts.min() > 25 and counts.max() < 95


# --------------------------------------------------------------------------- Mantel
@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_mantel_statistic_equals_compare_rdms(method):
    reference, candidates = _rdms(0, 11)
    res = mantel_test_batch(reference, candidates, method=method, n_permutations=50, seed=1)
    assert isinstance(res, PermutationResult)
    assert res.n_permutations == 50
    assert res.statistic.shape == res.p_value.shape == res.p_fwe.shape == (len(candidates),)
    want = [compare_rdms(c, reference, method) for c in candidates]
    np.testing.assert_allclose(res.statistic, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        res.statistic, [_compare(reference, c, method) for c in candidates], rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("method", sorted(COMPARATORS))
@pytest.mark.parametrize(("seed", "n", "n_perm"), [(2, 10, 199), (3, 7, 150)])
def test_mantel_p_values_match_brute_force(method, seed, n, n_perm):
    reference, candidates = _rdms(seed, n)
    res = mantel_test_batch(reference, candidates, method=method, n_permutations=n_perm, seed=seed)
    perms = stimulus_permutations(n, n_perm, seed)
    stat, p, p_fwe = brute_force_mantel(reference, candidates, method, perms)
    np.testing.assert_allclose(res.statistic, stat, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(res.p_value, p)
    np.testing.assert_array_equal(res.p_fwe, p_fwe)
    # the comparison is informative: intermediate p-values, and FWE differs from uncorrected
    assert np.any((p > 0.02) & (p < 0.9))
    assert np.any(p_fwe != p)


def test_mantel_p_uses_the_seeded_permutations():
    """Another seed gives other permutations and so (here) other p-values."""
    reference, candidates = _rdms(2, 10)
    a = mantel_test_batch(reference, candidates, n_permutations=199, seed=0)
    b = mantel_test_batch(reference, candidates, n_permutations=199, seed=0)
    c = mantel_test_batch(reference, candidates, n_permutations=199, seed=1)
    np.testing.assert_array_equal(a.p_value, b.p_value)
    np.testing.assert_array_equal(a.p_fwe, b.p_fwe)
    assert not np.array_equal(a.p_value, c.p_value)
    np.testing.assert_array_equal(a.statistic, c.statistic)


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_mantel_chunking_does_not_change_results(method):
    reference, candidates = _rdms(4, 9)
    whole = mantel_test_batch(reference, candidates, method, n_permutations=101, seed=5)
    chunked = mantel_test_batch(reference, candidates, method, n_permutations=101, seed=5, chunk=7)
    np.testing.assert_array_equal(whole.p_value, chunked.p_value)
    np.testing.assert_array_equal(whole.p_fwe, chunked.p_fwe)


def test_mantel_test_single_pair():
    reference, candidates = _rdms(6, 10)
    stat, p = mantel_test(reference, candidates[2], n_permutations=99, seed=2)
    assert isinstance(stat, float) and isinstance(p, float)
    batch = mantel_test_batch(reference, candidates[2], n_permutations=99, seed=2)
    assert stat == batch.statistic[0] and p == batch.p_value[0]
    assert batch.p_fwe[0] == batch.p_value[0]  # a family of one
    want_stat, want_p, _ = brute_force_mantel(
        reference, candidates[2:3], "spearman", stimulus_permutations(10, 99, 2)
    )
    assert stat == pytest.approx(want_stat[0], abs=1e-10)
    assert p == want_p[0]


def test_p_value_grid_and_fwe_dominates():
    for seed in range(15):
        rng = np.random.default_rng(100 + seed)
        n = int(rng.integers(5, 14))
        n_perm = int(rng.integers(20, 120))
        reference, candidates = _rdms(seed, n, strengths=tuple(rng.uniform(0, 1, size=5)))
        method = sorted(COMPARATORS)[seed % len(COMPARATORS)]
        res = mantel_test_batch(reference, candidates, method, n_permutations=n_perm, seed=seed)
        for p in (res.p_value, res.p_fwe):
            counts = p * (n_perm + 1)
            np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
            assert np.all(p >= 1 / (n_perm + 1)) and np.all(p <= 1)
        assert np.all(res.p_fwe >= res.p_value)


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_mantel_null_p_values_are_uniform(method):
    n_perm = 199
    pvals = []
    for seed in range(200):
        rng = np.random.default_rng(10_000 + seed)
        a = pdist(rng.normal(size=(12, 8)), "correlation")
        b = pdist(rng.normal(size=(12, 8)), "euclidean")
        pvals.append(mantel_test_batch(a, b, method, n_permutations=n_perm, seed=seed).p_value[0])
    pvals = np.array(pvals)
    assert kstest(pvals, "uniform").pvalue > 0.01
    assert 0.005 < np.mean(pvals <= 0.05) < 0.12  # the test's size is about nominal


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_mantel_related_rdms_are_significant(method):
    reference, candidates = _rdms(7, 12, strengths=(3.0,), n_chan=30, ref_noise=0.3)
    res = mantel_test_batch(reference, candidates, method, n_permutations=199, seed=0)
    if method != "cosine":  # cosine of two positive RDMs is near 1 anyway
        assert res.statistic[0] > 0.5
    assert res.p_value[0] < 0.01
    assert res.p_fwe[0] < 0.01


# --------------------------------------------------------------------------- CKA
@pytest.mark.parametrize("unbiased", [True, False])
def test_cka_statistic_equals_cka(unbiased):
    reference, candidates = _patterns(8, 14)
    candidates = [c[:, : 3 + 4 * i] for i, c in enumerate(candidates)]  # differing widths
    res = cka_permutation_batch(reference, candidates, unbiased=unbiased, n_permutations=40, seed=0)
    assert isinstance(res, PermutationResult) and res.n_permutations == 40
    want = [cka(c, reference, unbiased=unbiased) for c in candidates]
    np.testing.assert_allclose(res.statistic, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        res.statistic, [_cka_ref(c, reference, unbiased) for c in candidates], rtol=0, atol=1e-9
    )


def test_cka_default_is_unbiased():
    reference, candidates = _patterns(9, 10)
    res = cka_permutation_batch(reference, candidates, n_permutations=10)
    np.testing.assert_allclose(
        res.statistic, [cka(c, reference, unbiased=True) for c in candidates], atol=1e-12
    )


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize(("seed", "n", "n_perm"), [(10, 10, 199), (11, 8, 120)])
def test_cka_p_values_match_brute_force(unbiased, seed, n, n_perm):
    reference, candidates = _patterns(seed, n, strengths=(0.0, 0.3, 0.5, 3.0))
    res = cka_permutation_batch(reference, candidates, unbiased, n_permutations=n_perm, seed=seed)
    perms = stimulus_permutations(n, n_perm, seed)
    stat, p, p_fwe = brute_force_cka(reference, candidates, unbiased, perms)
    np.testing.assert_allclose(res.statistic, stat, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(res.p_value, p)
    np.testing.assert_array_equal(res.p_fwe, p_fwe)
    assert np.any((p > 0.02) & (p < 0.9))
    assert np.all(res.p_fwe >= res.p_value)


def test_cka_chunking_and_seed():
    reference, candidates = _patterns(12, 9)
    a = cka_permutation_batch(reference, candidates, n_permutations=77, seed=3)
    b = cka_permutation_batch(reference, candidates, n_permutations=77, seed=3, chunk=5)
    c = cka_permutation_batch(reference, candidates, n_permutations=77, seed=4)
    np.testing.assert_array_equal(a.p_value, b.p_value)
    np.testing.assert_array_equal(a.p_fwe, b.p_fwe)
    assert not np.array_equal(a.p_value, c.p_value)


def test_cka_null_p_values_are_uniform():
    pvals = []
    for seed in range(200):
        rng = np.random.default_rng(20_000 + seed)
        reference = rng.normal(size=(12, 10))
        candidate = rng.normal(size=(12, 6))
        res = cka_permutation_batch(reference, [candidate], n_permutations=199, seed=seed)
        pvals.append(res.p_value[0])
    pvals = np.array(pvals)
    assert kstest(pvals, "uniform").pvalue > 0.01
    assert 0.005 < np.mean(pvals <= 0.05) < 0.12


def test_cka_related_representations_are_significant():
    reference, candidates = _patterns(13, 12, strengths=(3.0,), n_chan=30, ref_noise=0.3)
    res = cka_permutation_batch(reference, candidates, n_permutations=199, seed=0)
    assert res.statistic[0] > 0.5
    assert res.p_value[0] < 0.01
    assert res.p_fwe[0] < 0.01


def test_cka_constant_representation_raises():
    reference, candidates = _patterns(14, 8)
    with pytest.raises(ValueError, match="constant"):
        cka_permutation_batch(reference, [candidates[0], np.zeros((8, 3))], n_permutations=5)
