"""compare_rdms / prepare / COMPARATORS against scipy.stats and a direct cosine formula."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from nnbrain.core.compare import COMPARATORS, compare_rdms, prepare


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


REFERENCE = {
    "pearson": lambda a, b: float(pearsonr(a, b).statistic),
    "spearman": lambda a, b: float(spearmanr(a, b).statistic),
    "cosine": _cosine,
}


def _reference(a: np.ndarray, b: np.ndarray, method: str) -> float:
    if method not in REFERENCE:
        pytest.fail(f"comparator {method!r} was added without an independent reference here")
    return REFERENCE[method](a, b)


def _rdm_pair(seed: int, m: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Two related RDM-like vectors; ``kind`` selects continuous, rounded (ties) or categorical."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.2, 1.8, size=m)
    b = 0.5 * a + rng.uniform(0.0, 1.0, size=m)
    if kind == "rounded":
        a, b = np.round(a, 1), np.round(b, 1)
        assert np.unique(a).size < m and np.unique(b).size < m  # there really are ties
    elif kind == "categorical":
        b = (a > np.median(a)).astype(float)  # model RDM with values in {0, 1}
        flip = rng.random(m) < 0.2
        b[flip] = 1.0 - b[flip]
        assert set(np.unique(b)) == {0.0, 1.0}
    return a, b


@pytest.mark.parametrize("method", sorted(COMPARATORS))
@pytest.mark.parametrize(
    ("kind", "seed", "m"),
    [
        (kind, seed, m)
        for kind in ("continuous", "rounded", "categorical")
        for seed, m in ((0, 3), (1, 15), (2, 66), (3, 435))
        if not (kind == "rounded" and m < 10)  # too few entries to force ties by rounding
    ],
)
def test_single_matches_reference(method, kind, seed, m):
    a, b = _rdm_pair(seed, m, kind)
    got = compare_rdms(a, b, method)
    assert isinstance(got, float)
    assert got == pytest.approx(_reference(a, b, method), abs=1e-10)
    # symmetric
    assert compare_rdms(b, a, method) == pytest.approx(got, abs=1e-12)


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_categorical_model_rdm_with_many_ties(method):
    rng = np.random.default_rng(21)
    categories = rng.integers(0, 3, size=12)
    iu, ju = np.triu_indices(12, k=1)
    model = (categories[iu] != categories[ju]).astype(float)  # 0 within, 1 between category
    brain = model + rng.normal(scale=0.8, size=model.size)
    got = compare_rdms(brain, model, method)
    assert got == pytest.approx(_reference(brain, model, method), abs=1e-10)
    # a clearly non-trivial value (the check above is not a 0 == 0 comparison)
    assert 0.1 < abs(got) < 0.99


def test_default_method_is_spearman():
    a, b = _rdm_pair(4, 28, "rounded")
    assert compare_rdms(a, b) == pytest.approx(float(spearmanr(a, b).statistic), abs=1e-10)
    # and spearman differs from pearson on this data, so the check above is discriminating
    assert abs(compare_rdms(a, b, "pearson") - compare_rdms(a, b)) > 1e-4


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_batched_equals_pairwise_loop(method):
    rng = np.random.default_rng(5)
    k, k2, m = 4, 6, 45
    a = rng.random((k, m))
    b = np.round(rng.random((k2, m)) + 0.3 * a[rng.integers(0, k, size=k2)], 1)
    got = compare_rdms(a, b, method)
    assert isinstance(got, np.ndarray)
    assert got.shape == (k, k2)
    want = np.array([[_reference(a[i], b[j], method) for j in range(k2)] for i in range(k)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(compare_rdms(b, a, method), want.T, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_single_vs_stack_shapes(method):
    rng = np.random.default_rng(6)
    a = rng.random(21)
    b = rng.random((3, 21))
    one_vs_many = compare_rdms(a, b, method)
    many_vs_one = compare_rdms(b, a, method)
    assert one_vs_many.shape == (1, 3)
    assert many_vs_one.shape == (3, 1)
    want = [_reference(a, row, method) for row in b]
    np.testing.assert_allclose(one_vs_many[0], want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(many_vs_one[:, 0], want, rtol=0, atol=1e-10)
    # a (1, m) stack is a stack, not a single RDM
    assert compare_rdms(a[None, :], b[0], method).shape == (1, 1)


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_prepare_makes_dot_product_the_comparison(method):
    rng = np.random.default_rng(7)
    a = rng.random((3, 36))
    pa = prepare(a, method)
    assert pa.shape == a.shape and pa.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(pa, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(prepare(a[1], method), pa[1], atol=1e-15)
    np.testing.assert_allclose(pa @ pa.T, compare_rdms(a, a, method), atol=1e-12)
    np.testing.assert_allclose(np.diag(pa @ pa.T), 1.0, atol=1e-12)


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_self_and_negation(method):
    rng = np.random.default_rng(8)
    a = rng.random(28) + 0.1
    assert compare_rdms(a, a, method) == pytest.approx(1.0, abs=1e-12)
    assert compare_rdms(a, 2.5 * a, method) == pytest.approx(1.0, abs=1e-12)
    assert compare_rdms(a, -a, method) == pytest.approx(-1.0, abs=1e-12)


def test_rank_and_shift_invariances_distinguish_comparators():
    rng = np.random.default_rng(9)
    a = rng.random(45)
    b = rng.random(45) + a
    monotone = np.exp(3 * b)
    assert compare_rdms(a, monotone, "spearman") == pytest.approx(compare_rdms(a, b, "spearman"))
    assert compare_rdms(a, monotone, "pearson") != pytest.approx(compare_rdms(a, b, "pearson"))
    shifted = b + 10.0
    assert compare_rdms(a, shifted, "pearson") == pytest.approx(compare_rdms(a, b, "pearson"))
    assert compare_rdms(a, shifted, "cosine") != pytest.approx(compare_rdms(a, b, "cosine"))


@pytest.mark.parametrize("method", sorted(COMPARATORS))
@pytest.mark.parametrize(
    ("shape_a", "shape_b"), [((10,), (15,)), ((2, 10), (3, 11)), ((10,), (2, 9))]
)
def test_length_mismatch_raises(method, shape_a, shape_b):
    with pytest.raises(ValueError, match="length"):
        compare_rdms(np.ones(shape_a), np.ones(shape_b), method)


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError) as info:
        compare_rdms(np.arange(6.0), np.arange(6.0) ** 2, "kendall")
    for name in COMPARATORS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="kendall"):
        prepare(np.arange(6.0), "kendall")


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("constant", [0.0, 1.0, 3.0])
def test_constant_rdm_raises_for_correlations(method, constant):
    a = np.random.default_rng(10).random(15)
    with pytest.raises(ValueError, match="constant"):
        compare_rdms(a, np.full(15, constant), method)
    with pytest.raises(ValueError, match="constant"):
        compare_rdms(np.stack([a, np.full(15, constant)]), a, method)


def test_zero_rdm_raises_for_cosine():
    a = np.random.default_rng(11).random(15)
    with pytest.raises(ValueError, match="zero"):
        compare_rdms(a, np.zeros(15), "cosine")


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_constant_rdm_not_exactly_representable_raises(method):
    a = np.random.default_rng(3).random(15)
    with pytest.raises(ValueError, match="constant"):
        compare_rdms(a, np.full(15, 0.1), method)
