"""Permutation tests: Mantel (RDMs) and CKA, checked against brute-force loops.

The brute force permutes the *square* RDM (rows and columns together) / the reference's rows with
the very same permutations the package draws (``stimulus_permutations(n, n_perm, seed)``) and
recomputes the statistic from scratch with scipy / the published formulas (Kendall's tau-a from
all pairs of entries, tau-b from scipy, rho-a from scipy's ranks) / the published CKA formula.
Data with ties (categorical model RDMs, rounded RDMs) run through every Mantel path: the Kendall
kernel's direct comparisons (runs of <= 64 entries), its chunked slot counting (longer runs, and
runs of tied reference entries longer than 64), and the torch path (``device="cpu"``).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import kendalltau, kstest, pearsonr, rankdata, spearmanr

from nnbrain.core.cka import cka
from nnbrain.core.compare import compare_rdms
from nnbrain.core.permutation import (
    MANTEL_METHODS,
    PermutationResult,
    cka_assignment_test,
    cka_permutation_batch,
    mantel_test,
    mantel_test_batch,
    stimulus_permutations,
)

METHODS = sorted(MANTEL_METHODS)

TIE_TOL = 1e-9  # brute-force statistics are compared with this tolerance ...
AMBIGUOUS = 1e-13  # ... and must not fall in (AMBIGUOUS, TIE_TOL) of the observed one


def _cosine(a, b):
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def _tau_a(a, b):
    """(concordant - discordant) / all pairs, from the full m x m sign matrices."""
    m = len(a)
    signs = np.sign(a[:, None] - a[None, :]) * np.sign(b[:, None] - b[None, :])
    return float(signs.sum() / (m * (m - 1)))  # each pair twice


def _rho_a(a, b):
    """12 sum((r_a - mean)(r_b - mean)) / (m^3 - m), tie-averaged ranks (Nili et al. 2014)."""
    m = len(a)
    ra, rb = rankdata(a), rankdata(b)
    return float(12 * np.sum((ra - ra.mean()) * (rb - rb.mean())) / (m**3 - m))


REFERENCE = {
    "spearman": lambda a, b: float(spearmanr(a, b).statistic),
    "pearson": lambda a, b: float(pearsonr(a, b).statistic),
    "cosine": _cosine,
    "tau-a": _tau_a,
    "tau-b": lambda a, b: float(kendalltau(a, b).statistic),
    "rho-a": _rho_a,
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


def _categorical(rng, n: int, n_categories: int) -> np.ndarray:
    """A model RDM: 0 within a category, 1 between (massively tied)."""
    labels = rng.integers(0, n_categories, size=(n, 1)).astype(float)
    return (pdist(labels) > 0).astype(float)


def _tied_rdms(kind: str, seed: int, n: int):
    """(reference, candidates) with ties: "categorical" candidates (model RDMs against a brain
    RDM), "categorical-reference" (the model RDM's labels permuted), or "rounded" (both)."""
    rng = np.random.default_rng(seed)
    reference, candidates = _rdms(seed, n, strengths=(0.3, 1.0, 3.0))
    if kind == "categorical":
        model = _categorical(rng, n, 3)
        # a graded model too: 0 within, 1 or 2 between categories
        graded = pdist(rng.integers(0, 3, size=(n, 1)).astype(float))
        return reference, np.stack([model, graded, candidates[2]])
    if kind == "categorical-reference":
        return _categorical(rng, n, 2), candidates
    if kind == "rounded":
        return np.round(reference, 1), np.round(candidates, 1)
    raise AssertionError(kind)


TIED = ["categorical", "categorical-reference", "rounded"]


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
@pytest.mark.parametrize("method", METHODS)
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


@pytest.mark.parametrize("method", METHODS)
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


@pytest.mark.parametrize("method", METHODS)
def test_mantel_chunking_does_not_change_results(method):
    reference, candidates = _rdms(4, 9)
    whole = mantel_test_batch(reference, candidates, method, n_permutations=101, seed=5)
    chunked = mantel_test_batch(reference, candidates, method, n_permutations=101, seed=5, chunk=7)
    np.testing.assert_array_equal(whole.p_value, chunked.p_value)
    np.testing.assert_array_equal(whole.p_fwe, chunked.p_fwe)


def test_mantel_test_single_pair():
    reference, candidates = _rdms(6, 10)
    stat, p = mantel_test(reference, candidates[2], "spearman", n_permutations=99, seed=2)
    assert isinstance(stat, float) and isinstance(p, float)
    batch = mantel_test_batch(reference, candidates[2], "spearman", n_permutations=99, seed=2)
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
        method = METHODS[seed % len(METHODS)]
        res = mantel_test_batch(reference, candidates, method, n_permutations=n_perm, seed=seed)
        for p in (res.p_value, res.p_fwe):
            counts = p * (n_perm + 1)
            np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
            assert np.all(p >= 1 / (n_perm + 1)) and np.all(p <= 1)
        assert np.all(res.p_fwe >= res.p_value)


@pytest.mark.parametrize("method", METHODS)
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


@pytest.mark.parametrize("method", METHODS)
def test_mantel_related_rdms_are_significant(method):
    reference, candidates = _rdms(7, 12, strengths=(3.0,), n_chan=30, ref_noise=0.3)
    res = mantel_test_batch(reference, candidates, method, n_permutations=199, seed=0)
    if method != "cosine":  # cosine of two positive RDMs is near 1 anyway
        assert res.statistic[0] > 0.5
    assert res.p_value[0] < 0.01
    assert res.p_fwe[0] < 0.01


# --------------------------------------------------------------------------- Mantel with ties
RSATOOLBOX_NAME = {"cosine": "cosine", "pearson": "corr", "rho-a": "rho-a", "spearman": "spearman",
                   "tau-a": "tau-a", "tau-b": "tau-b"}


def _brute_null(reference, candidates, method, perms):
    square = squareform(reference)
    return np.array([[_compare(squareform(square[np.ix_(p, p)], checks=False), c, method)
                      for c in candidates] for p in perms])


@pytest.mark.parametrize("kind", TIED)
@pytest.mark.parametrize("method", METHODS)
def test_mantel_statistic_with_ties_equals_references(method, kind):
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.rdm import compare as rsa_compare

    reference, candidates = _tied_rdms(kind, 20, 24)
    res = mantel_test_batch(reference, candidates, method, n_permutations=9, seed=0)
    want = [_compare(reference, c, method) for c in candidates]
    np.testing.assert_allclose(res.statistic, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        res.statistic, compare_rdms(candidates, reference, method)[:, 0], rtol=0, atol=1e-12
    )
    peer = rsa_compare(RDMs(candidates), RDMs(reference[None]), RSATOOLBOX_NAME[method])[:, 0]
    np.testing.assert_allclose(res.statistic, peer, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["continuous", *TIED])
@pytest.mark.parametrize("method", ["tau-a", "tau-b"])
@pytest.mark.parametrize("n", [14, 40])
def test_kendall_null_equals_brute_force(method, kind, n):
    """Every null value, not just the p-values: n=14 (91 entries: one chunked walk, runs of tied
    reference entries short enough for direct comparison), n=40 (780 entries, tied runs >64)."""
    if kind == "continuous":
        reference, candidates = _rdms(21, n)
    else:
        reference, candidates = _tied_rdms(kind, 21, n)
    perms = stimulus_permutations(n, 6, 4)
    stat, null, _ = MANTEL_METHODS[method](reference, candidates, perms, None, 1024)
    np.testing.assert_allclose(stat, [_compare(reference, c, method) for c in candidates],
                               rtol=0, atol=1e-14)
    np.testing.assert_allclose(null, _brute_null(reference, candidates, method, perms), rtol=0,
                               atol=1e-14)


@pytest.mark.parametrize("kind", TIED)
@pytest.mark.parametrize("method", METHODS)
def test_mantel_p_values_with_ties_match_brute_force(method, kind):
    reference, candidates = _tied_rdms(kind, 22, 24)
    n_perm = 60
    res = mantel_test_batch(reference, candidates, method, n_permutations=n_perm, seed=8)
    stat, p, p_fwe = brute_force_mantel(reference, candidates, method,
                                        stimulus_permutations(24, n_perm, 8))
    np.testing.assert_allclose(res.statistic, stat, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(res.p_value, p)
    np.testing.assert_array_equal(res.p_fwe, p_fwe)
    assert np.all(res.p_fwe >= res.p_value)


@pytest.mark.parametrize(("method", "kind"), [
    *[(method, "rounded") for method in METHODS],
    *[(method, kind) for method in ("tau-a", "tau-b")
      for kind in ("continuous", "categorical", "categorical-reference")],
])
def test_torch_path_equals_default_path(method, kind):
    """device="cpu" runs the torch implementation (the one CUDA would run): same results."""
    if kind == "continuous":
        reference, candidates = _rdms(23, 24)
    else:
        reference, candidates = _tied_rdms(kind, 23, 24)
    default = mantel_test_batch(reference, candidates, method, n_permutations=50, seed=3)
    torch_cpu = mantel_test_batch(reference, candidates, method, n_permutations=50, seed=3,
                                  chunk=16, device="cpu")
    np.testing.assert_allclose(torch_cpu.statistic, default.statistic, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(torch_cpu.p_value, default.p_value)
    np.testing.assert_array_equal(torch_cpu.p_fwe, default.p_fwe)
    assert torch_cpu.seed == default.seed == 3 and torch_cpu.method == method


def test_kendall_longer_chunks(monkeypatch):
    """The kernel variant for long RDMs (chunks of 64 entries, used above 16384 entries) agrees
    with the default variant (checked here on a small RDM by forcing it)."""
    from nnbrain.core import permutation

    reference, candidates = _tied_rdms("rounded", 24, 40)
    want = mantel_test_batch(reference, candidates, "tau-a", n_permutations=40, seed=1)
    monkeypatch.setattr(permutation, "_kendall_chunk", lambda m: 64)
    got = mantel_test_batch(reference, candidates, "tau-a", n_permutations=40, seed=1)
    np.testing.assert_array_equal(got.statistic, want.statistic)
    np.testing.assert_array_equal(got.p_value, want.p_value)
    np.testing.assert_array_equal(got.p_fwe, want.p_fwe)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_tau_a_and_tau_b_differ_with_ties(device):
    """A categorical model RDM against a brain RDM: "tau-a" (the default, Nili et al. 2014) is
    (C - D) / all pairs, "tau-b" (scipy's kendalltau) divides by the untied pairs instead."""
    rng = np.random.default_rng(30)
    brain = pdist(rng.normal(size=(20, 6)), "correlation")
    labels = np.repeat(np.arange(4), 5)[:, None].astype(float)
    model = (pdist(labels) > 0).astype(float)  # 40 entries 0 (within), 150 entries 1
    m = model.size
    total = m * (m - 1) // 2
    tied_model = 40 * 39 // 2 + (m - 40) * (m - 41) // 2
    stat_default, p_default = mantel_test(brain, model, n_permutations=99, seed=1, device=device)
    stat_a, p_a = mantel_test(brain, model, "tau-a", n_permutations=99, seed=1, device=device)
    stat_b, p_b = mantel_test(brain, model, "tau-b", n_permutations=99, seed=1, device=device)
    assert (stat_default, p_default) == (stat_a, p_a)
    assert stat_a == pytest.approx(_tau_a(brain, model), abs=1e-14)
    assert stat_b == pytest.approx(kendalltau(brain, model).statistic, abs=1e-14)
    assert abs(stat_b) > abs(stat_a) + 0.01  # with ties the two differ ...
    assert stat_b / stat_a == pytest.approx(total / np.sqrt(total * (total - tied_model)))
    assert p_a == p_b  # ... by a constant factor: same permutation p-value
    batch = mantel_test_batch(brain, np.stack([model, brain + 0.0]), "tau-b", n_permutations=99,
                              seed=1, device=device)
    assert batch.statistic[0] == pytest.approx(stat_b, abs=1e-15)
    assert batch.statistic[1] == pytest.approx(1.0)  # without ties tau-b = tau-a
    # without ties in either RDM the two are the same number
    untied_a, _ = mantel_test(brain, brain[::-1].copy(), "tau-a", n_permutations=9, seed=1)
    untied_b, _ = mantel_test(brain, brain[::-1].copy(), "tau-b", n_permutations=9, seed=1)
    assert untied_a == untied_b


@pytest.mark.parametrize("method", ["tau-a", "spearman"])
def test_square_and_condensed_inputs_agree(method):
    reference, candidates = _tied_rdms("categorical", 31, 12)
    want = mantel_test_batch(reference, candidates, method, n_permutations=49, seed=2)
    square_ref = squareform(reference)
    square_cands = np.stack([squareform(c) for c in candidates])
    for ref, cands in [(square_ref, candidates), (reference, square_cands),
                       (square_ref, square_cands)]:
        got = mantel_test_batch(ref, cands, method, n_permutations=49, seed=2)
        np.testing.assert_array_equal(got.statistic, want.statistic)
        np.testing.assert_array_equal(got.p_value, want.p_value)
        np.testing.assert_array_equal(got.p_fwe, want.p_fwe)
    single = mantel_test(square_ref, square_cands[1], method, n_permutations=49, seed=2)
    assert single == mantel_test(reference, candidates[1], method, n_permutations=49, seed=2)
    assert single[0] == pytest.approx(want.statistic[1], abs=1e-15)
    assert single[1] == want.p_value[1]


def test_mantel_defaults_and_seed_none():
    reference, candidates = _rdms(32, 9, strengths=(3.0,))
    res = mantel_test_batch(reference, candidates, n_permutations=30)  # seed=None
    assert res.method == "tau-a" and res.n_permutations == 30
    assert isinstance(res.seed, int)
    again = mantel_test_batch(reference, candidates, n_permutations=30, seed=res.seed)
    np.testing.assert_array_equal(again.p_value, res.p_value)
    other = mantel_test_batch(reference, candidates, n_permutations=30)
    assert other.seed != res.seed
    stat, p = mantel_test(reference, candidates[0], n_permutations=30)
    assert stat == res.statistic[0] and 1 / 31 <= p <= 1
    # same seed, same p (for the default method and n_permutations=10000 too)
    assert mantel_test(reference, candidates[0], seed=5) == mantel_test(reference, candidates[0],
                                                                        seed=5)


def test_mantel_constant_candidate():
    reference, _ = _rdms(33, 9)
    stat, p = mantel_test(reference, np.ones_like(reference), "tau-a", n_permutations=19, seed=0)
    assert stat == 0.0 and p == 1.0
    with pytest.raises(ValueError, match="constant"):
        mantel_test(reference, np.ones_like(reference), "tau-b", n_permutations=19, seed=0)


def test_mantel_input_errors():
    reference, candidates = _rdms(34, 8)
    with pytest.raises(ValueError, match=r"unknown method 'kendall'; choose from \['cosine'"):
        mantel_test_batch(reference, candidates, "kendall")
    with pytest.raises(ValueError, match="reference must be one RDM"):
        mantel_test_batch(candidates, candidates, n_permutations=5)
    with pytest.raises(ValueError, match="differ in length"):
        mantel_test_batch(reference, _rdms(34, 9)[1], n_permutations=5)
    with pytest.raises(ValueError, match="b must be one RDM"):
        mantel_test(reference, candidates, n_permutations=5)
    with pytest.raises(ValueError, match="positive"):
        mantel_test_batch(reference, candidates, n_permutations=0)


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


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_cka_rbf_statistic_and_p_values_match_recomputed_cka(unbiased, sigma):
    reference, candidates = _patterns(15, 10, strengths=(0.0, 0.5, 3.0))
    n_perm = 60
    res = cka_permutation_batch(reference, candidates, unbiased, n_permutations=n_perm, seed=5,
                                kernel="rbf", sigma=sigma)
    want = [cka(reference, c, kernel="rbf", unbiased=unbiased, sigma=sigma) for c in candidates]
    np.testing.assert_allclose(res.statistic, want, rtol=0, atol=1e-10)
    # the null recomputed from scratch: CKA of the permuted rows (bandwidth re-estimated)
    perms = stimulus_permutations(10, n_perm, 5)
    null = np.array([[cka(reference[p], c, kernel="rbf", unbiased=unbiased, sigma=sigma)
                      for c in candidates] for p in perms])
    p = (1 + (null >= res.statistic - 1e-12).sum(axis=0)) / (1 + n_perm)
    p_fwe = (1 + (null.max(axis=1)[:, None] >= res.statistic - 1e-12).sum(axis=0)) / (1 + n_perm)
    np.testing.assert_array_equal(res.p_value, p)
    np.testing.assert_array_equal(res.p_fwe, p_fwe)
    assert res.p_value[-1] < 0.05 < res.p_value[0]


def test_cka_zero_permutations_give_statistics_and_nan_p():
    reference, candidates = _patterns(16, 9)
    res = cka_permutation_batch(reference, candidates, n_permutations=0, seed=None)
    np.testing.assert_allclose(res.statistic, [cka(reference, c, unbiased=True)
                                               for c in candidates], atol=1e-12)
    assert np.isnan(res.p_value).all() and np.isnan(res.p_fwe).all()
    assert isinstance(res.seed, int)
    with pytest.raises(ValueError, match="unknown kernel"):
        cka_permutation_batch(reference, candidates, n_permutations=3, kernel="poly")


def _slot_design(seed: int, n_slots: int = 6, rows_per_slot: int = 5, units: int = 3):
    """Slot features with a position-dependent part shared by every stimulus."""
    rng = np.random.default_rng(seed)
    n = n_slots * rows_per_slot
    content = rng.normal(size=(n_slots, n_slots, n, units))  # (stimulus, slot, rows, units)
    position = rng.normal(size=(n, units)) * 2
    slots = content * (np.arange(n)[None, None, :, None] // rows_per_slot
                       == np.arange(n_slots)[None, :, None, None])
    slots = slots + position / n_slots  # the same for every stimulus: sums to ``position``
    played = rng.permutation(n_slots)
    return slots, played, position


def test_cka_assignment_statistic_is_cka_of_the_played_features():
    slots, played, _ = _slot_design(1)
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(30, 4))
    res = cka_assignment_test(reference, [slots, slots[..., :2]], played, n_permutations=30,
                              seed=3, kernel="rbf")
    features = slots[played, np.arange(6)].sum(axis=0)
    np.testing.assert_allclose(res.statistic, [cka(reference, features, kernel="rbf",
                                                   unbiased=True),
                                               cka(reference, features[:, :2], kernel="rbf",
                                                   unbiased=True)], atol=1e-12)
    perms = stimulus_permutations(6, 30, 3)
    null = np.array([[cka(reference, slots[played[p], np.arange(6)].sum(axis=0)[:, :k],
                          kernel="rbf", unbiased=True) for k in (3, 2)] for p in perms])
    np.testing.assert_array_equal(
        res.p_value, (1 + (null >= res.statistic - 1e-12).sum(axis=0)) / 31)
    assert np.isnan(cka_assignment_test(reference, [slots], played, n_permutations=0).p_value[0])


def test_cka_assignment_test_is_valid_where_block_permutation_is_not():
    """A brain that shares only the position-dependent part (no stimulus content) is not
    significant; a brain driven by the played content is."""
    p_null, p_driven = [], []
    for seed in range(40):
        slots, played, position = _slot_design(100 + seed)
        rng = np.random.default_rng(seed)
        brain = position @ rng.normal(size=(3, 8)) + rng.normal(size=(30, 8))
        p_null.append(cka_assignment_test(brain, [slots], played, n_permutations=99,
                                          seed=seed).p_value[0])
        driven = slots[played, np.arange(6)].sum(axis=0) @ rng.normal(size=(3, 8))
        p_driven.append(cka_assignment_test(driven + rng.normal(size=(30, 8)), [slots], played,
                                            n_permutations=99, seed=seed).p_value[0])
    assert np.mean(np.array(p_null) <= 0.05) < 0.15
    assert np.mean(np.array(p_driven) <= 0.05) > 0.8
