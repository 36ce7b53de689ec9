"""compare_rdms / prepare / COMPARATORS against scipy.stats, direct formulas and rsatoolbox
0.3.2."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from scipy.spatial.distance import squareform
from scipy.stats import kendalltau, pearsonr, rankdata, spearmanr

from nnbrain.core.compare import (
    COMPARATORS,
    ROW_TRANSFORMS,
    as_condensed,
    average_ranks,
    compare_rdms,
    kendall_taus,
    prepare,
)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def _tau_a(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-a by its definition: mean of sign products over all pairs."""
    i, j = np.triu_indices(a.size, k=1)
    return float(np.mean(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])))


def _rho_a(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho without tie correction: 1 - 6 sum(d^2) / (m^3 - m) with centred ranks."""
    m = a.size
    ra, rb = rankdata(a) - (m + 1) / 2, rankdata(b) - (m + 1) / 2
    return float(12 * np.sum(ra * rb) / (m**3 - m))


REFERENCE = {
    "pearson": lambda a, b: float(pearsonr(a, b).statistic),
    "spearman": lambda a, b: float(spearmanr(a, b).statistic),
    "cosine": _cosine,
    "tau-a": _tau_a,
    "tau-b": lambda a, b: float(kendalltau(a, b, variant="b").statistic),
    "rho-a": _rho_a,
}

#: nnbrain comparator -> the rsatoolbox.rdm.compare function it equals.
RSATOOLBOX = {
    "cosine": "compare_cosine",
    "pearson": "compare_correlation",
    "rho-a": "compare_rho_a",
    "spearman": "compare_spearman",
    "tau-a": "compare_kendall_tau_a",
    "tau-b": "compare_kendall_tau",
}


def _rsatoolbox(method: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # rsatoolbox.rdm re-exports a function named compare, shadowing the module attribute
    module = importlib.import_module("rsatoolbox.rdm.compare")
    return getattr(module, RSATOOLBOX[method])(np.atleast_2d(a), np.atleast_2d(b))


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


@pytest.mark.parametrize("method", sorted(ROW_TRANSFORMS))
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


# --- rsatoolbox 0.3.2 parity, ties, input forms --------------------------------------------------

def _stacks(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Brain-like RDM stack (3, m) and model stack (4, m) over n conditions."""
    rng = np.random.default_rng(seed)
    m = n * (n - 1) // 2
    brain = rng.random((3, m))
    model = 0.5 * brain[rng.integers(0, 3, size=4)] + rng.random((4, m))
    if kind == "rounded":
        brain, model = np.round(brain, 1), np.round(model, 1)
    elif kind == "categorical":
        categories = rng.integers(0, 3, size=(4, n))
        iu, ju = np.triu_indices(n, k=1)
        model = (categories[:, iu] != categories[:, ju]).astype(float)
        brain = np.round(brain + 0.5 * model[:3], 2)
    return brain, model


@pytest.mark.parametrize("method", sorted(COMPARATORS))
@pytest.mark.parametrize("kind", ["continuous", "rounded", "categorical"])
@pytest.mark.parametrize(("n", "seed"), [(5, 0), (40, 1)])
def test_stacks_match_rsatoolbox(method, kind, n, seed):
    brain, model = _stacks(kind, n, seed)
    got = compare_rdms(brain, model, method)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, _rsatoolbox(method, brain, model), rtol=0, atol=1e-10)
    assert compare_rdms(brain[0], model[1], method) == pytest.approx(
        float(_rsatoolbox(method, brain[0], model[1])[0, 0]), abs=1e-10)


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_many_ties_large_rdm_matches_rsatoolbox(method):
    """n = 100 conditions (4950 pairs), few distinct values: exercises the tie bookkeeping."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, size=(2, 4950)).astype(float)
    b = a[::-1] + rng.integers(0, 3, size=(2, 4950))
    np.testing.assert_allclose(compare_rdms(a, b, method), _rsatoolbox(method, a, b),
                               rtol=0, atol=1e-10)


def test_tau_a_and_tau_b_differ_with_ties_and_each_path_is_the_named_one():
    """With a categorical model RDM, "tau-a" is rsatoolbox's tau-a (Nili et al. 2014) and not
    scipy's kendalltau (tau-b); "tau-b" is scipy's kendalltau."""
    brain, model = _stacks("categorical", 12, 4)
    a, b = brain[0], model[0]
    tau_a = compare_rdms(a, b, "tau-a")
    tau_b = compare_rdms(a, b, "tau-b")
    scipy_tau_b = float(kendalltau(a, b).statistic)
    assert tau_b == pytest.approx(scipy_tau_b, abs=1e-12)
    assert tau_a == pytest.approx(float(_rsatoolbox("tau-a", a, b)[0, 0]), abs=1e-12)
    assert tau_a == pytest.approx(_tau_a(a, b), abs=1e-12)
    assert abs(tau_a - tau_b) > 0.05  # tau-b is larger: it discounts the model's tied pairs
    # without ties the two agree
    c, d = _stacks("continuous", 12, 4)
    assert compare_rdms(c[0], d[0], "tau-a") == pytest.approx(compare_rdms(c[0], d[0], "tau-b"))


@pytest.mark.parametrize("method", sorted(COMPARATORS))
def test_square_condensed_and_stack_inputs_agree(method):
    brain, model = _stacks("rounded", 9, 5)
    square_brain = np.stack([squareform(v) for v in brain])
    square_model = np.stack([squareform(v) for v in model])
    want = compare_rdms(brain, model, method)
    np.testing.assert_allclose(compare_rdms(square_brain, square_model, method), want, atol=1e-15)
    np.testing.assert_allclose(compare_rdms(brain, square_model, method), want, atol=1e-15)
    single = compare_rdms(square_brain[1], model[2], method)
    assert isinstance(single, float) and single == pytest.approx(want[1, 2], abs=1e-15)
    assert compare_rdms(square_brain[1], square_model, method).shape == (1, 4)


def test_as_condensed_forms_and_errors():
    v = np.arange(1.0, 7.0)  # 4 conditions
    square = squareform(v)
    for x, single in ((v, True), (square, True), (v[None], False), (square[None], False),
                      (np.stack([v, v, v]), False)):
        stack, is_single = as_condensed(x)
        np.testing.assert_array_equal(stack, np.atleast_2d(v) if single else
                                      np.broadcast_to(v, stack.shape))
        assert is_single == single
    # a nearly symmetric square RDM from float32 arithmetic is still a square RDM
    assert as_condensed(square + 1e-9 * np.triu(np.ones((4, 4)), 1))[1]
    asymmetric = square.copy()
    asymmetric[0, 1] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        as_condensed(asymmetric)
    with pytest.raises(ValueError, match="zero diagonal"):
        as_condensed((square + np.eye(4))[None])
    with pytest.raises(ValueError, match="finite"):
        as_condensed(np.r_[v[:-1], np.nan])
    with pytest.raises(ValueError, match="shape"):
        as_condensed(np.zeros((2, 2, 4, 4)))
    with pytest.raises(ValueError, match="length"):
        as_condensed(np.ones((3, 5)))  # neither square nor rows of a condensed length


def test_constant_rdms_tau_a_and_rho_a_give_zero_tau_b_raises():
    a = np.random.default_rng(6).random(15)
    constant = np.full(15, 0.5)
    for method in ("tau-a", "rho-a"):
        assert compare_rdms(a, constant, method) == 0.0
        assert float(_rsatoolbox(method, a, constant)[0, 0]) == 0.0
    with pytest.raises(ValueError, match="constant"):
        compare_rdms(a, constant, "tau-b")


def test_prepare_refuses_kendall_taus():
    for method in ("tau-a", "tau-b"):
        with pytest.raises(ValueError, match="dot product"):
            prepare(np.arange(6.0), method)


def test_average_ranks_equals_rankdata():
    rng = np.random.default_rng(7)
    x = np.round(rng.random((5, 300)), 1)
    np.testing.assert_array_equal(average_ranks(x), rankdata(x, axis=-1))
    np.testing.assert_array_equal(average_ranks(x[0]), rankdata(x[0]))
    np.testing.assert_array_equal(average_ranks(x.reshape(5, 3, 100)),
                                  rankdata(x.reshape(5, 3, 100), axis=-1))


def test_kendall_taus_on_listed_pairs():
    rng = np.random.default_rng(8)
    x, y = np.round(rng.random((3, 45)), 1), np.round(rng.random((4, 45)), 1)
    rows_x, rows_y = np.array([2, 0, 2]), np.array([1, 3, 3])
    for variant in ("a", "b"):
        got = kendall_taus(x, y, rows_x, rows_y, variant)
        grid = compare_rdms(x, y, f"tau-{variant}")
        np.testing.assert_array_equal(got, grid[rows_x, rows_y])


def test_comparator_registry_names():
    assert set(COMPARATORS) == {"tau-a", "tau-b", "rho-a", "spearman", "pearson", "cosine"}
    assert set(ROW_TRANSFORMS) == set(COMPARATORS) - {"tau-a", "tau-b"}
