"""compute_rdm / compute_rdms / RDM_METHODS / n_conditions against scipy.spatial.distance and
rsatoolbox 0.3.2's calc_rdm."""

from __future__ import annotations

import doctest
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

import nnbrain.core.rdm as rdm_module
from nnbrain.core.rdm import RDM_METHODS, compute_rdm, compute_rdms, n_conditions


def _sqeuclidean_per_channel(patterns: np.ndarray) -> np.ndarray:
    return pdist(patterns, "sqeuclidean") / patterns.shape[1]


#: nnbrain method -> scipy.spatial.distance computation of the same dissimilarity (identity noise;
#: noise-free crossnobis repeats are the mahalanobis RDM of the repeated patterns).
SCIPY_REFERENCE = {
    "correlation": lambda p: pdist(p, "correlation"),
    "cosine": lambda p: pdist(p, "cosine"),
    "crossnobis": _sqeuclidean_per_channel,
    "euclidean": lambda p: pdist(p, "euclidean"),
    "mahalanobis": _sqeuclidean_per_channel,
}


def _reference(patterns: np.ndarray, method: str) -> np.ndarray:
    if method not in SCIPY_REFERENCE:
        pytest.fail(f"RDM method {method!r} was added without an independent reference here")
    return SCIPY_REFERENCE[method](np.asarray(patterns, dtype=np.float64))


def _compute(patterns, method: str) -> np.ndarray:
    """compute_rdm on one pattern per condition; crossnobis sees the patterns in 2 runs."""
    if method != "crossnobis":
        return compute_rdm(patterns, method)
    patterns = np.asarray(patterns)
    n = patterns.shape[0]
    return compute_rdm(np.vstack([patterns, patterns]), method,
                       conditions=np.tile(np.arange(n), 2), partitions=np.repeat([0, 1], n))


@pytest.mark.parametrize("method", sorted(RDM_METHODS))
@pytest.mark.parametrize(
    ("seed", "n_cond", "n_chan"),
    [(0, 3, 2), (1, 5, 40), (2, 12, 7), (3, 30, 200), (4, 64, 5)],
)
def test_matches_pdist(method, seed, n_cond, n_chan):
    rng = np.random.default_rng(seed)
    patterns = rng.normal(loc=rng.normal(), scale=rng.uniform(0.5, 3), size=(n_cond, n_chan))
    got = _compute(patterns, method)
    want = _reference(patterns, method)
    assert got.shape == (n_cond * (n_cond - 1) // 2,)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", sorted(RDM_METHODS))
def test_condensed_order_is_squareform(method):
    """Entry k of the condensed RDM is the (i, j) pair of scipy's squareform (row-major i < j)."""
    rng = np.random.default_rng(11)
    patterns = rng.normal(size=(9, 13))
    square = squareform(_compute(patterns, method))
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
    np.testing.assert_allclose(_compute(patterns, method), want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(_compute(patterns.tolist(), method), want, rtol=0, atol=1e-10)


def test_default_method_is_correlation():
    rng = np.random.default_rng(6)
    patterns = rng.normal(size=(7, 11))
    np.testing.assert_allclose(compute_rdm(patterns), pdist(patterns, "correlation"), atol=1e-10)


def test_docstring_example():
    failures, attempted = doctest.testmod(rdm_module, extraglobs={"np": np}, verbose=False)
    assert attempted > 0
    assert failures == 0


@pytest.mark.parametrize("patterns", [np.eye(4), np.eye(4)[None]])
def test_unknown_method_lists_choices(patterns):
    # "mahalanobis" was the unknown name here until #14 added the method
    compute = compute_rdm if patterns.ndim == 2 else compute_rdms
    with pytest.raises(ValueError) as info:
        compute(patterns, "manhattan")
    message = str(info.value)
    assert "manhattan" in message
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


@pytest.mark.parametrize("n_cond", [6, 300])
def test_mahalanobis_and_stacks_large_offset_relative_precision(n_cond):
    rng = np.random.default_rng(2)
    patterns = 1e3 + 1e-3 * rng.normal(size=(n_cond, 20))
    want = pdist(patterns, "sqeuclidean") / 20
    np.testing.assert_allclose(compute_rdm(patterns, "mahalanobis"), want, rtol=1e-6)
    stack = np.stack([patterns, rng.normal(size=(n_cond, 20))])  # one offset set, one not
    np.testing.assert_allclose(compute_rdms(stack, "euclidean")[0], np.sqrt(want * 20), rtol=1e-6)


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


# --- rsatoolbox 0.3.2 parity: calc_rdm with descriptors, noise and cross-validation ------------

def _design(seed: int, n_cond: int, n_runs: int, n_chan: int, unbalanced: bool):
    """Observations of n_cond conditions in n_runs runs, string labels, shuffled rows; with
    ``unbalanced`` some conditions are repeated within some runs."""
    rng = np.random.default_rng(seed)
    conditions = np.tile(np.arange(n_cond), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    if unbalanced:
        extra = rng.integers(0, n_cond, size=n_cond)
        conditions = np.r_[conditions, extra]
        runs = np.r_[runs, rng.integers(0, n_runs, size=n_cond)]
    true = rng.normal(size=(n_cond, n_chan))
    patterns = true[conditions] + rng.normal(scale=0.7, size=(conditions.size, n_chan)) + 3.0
    order = rng.permutation(conditions.size)
    labels = np.array([f"stim{c:02d}" for c in conditions])[order]
    return patterns[order], labels, (runs[order] + 1) * 10


def _precision(seed: int, n_chan: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n_chan, n_chan))
    return a @ a.T / n_chan + np.eye(n_chan)


def _rsatoolbox_rdm(patterns, method, conditions=None, partitions=None, noise=None):
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    descriptors = {}
    if conditions is not None:
        descriptors["stim"] = conditions
    if partitions is not None:
        descriptors["run"] = partitions
    dataset = Dataset(patterns, obs_descriptors=descriptors or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rsatoolbox casts string descriptors
        rdms = calc_rdm(dataset, method=method,
                        descriptor="stim" if conditions is not None else None,
                        cv_descriptor="run" if partitions is not None else None, noise=noise)
    return rdms.get_vectors()[0]


@pytest.mark.parametrize("unbalanced", [False, True])
@pytest.mark.parametrize("with_noise", [False, True])
@pytest.mark.parametrize(("seed", "n_cond", "n_runs", "n_chan"), [(0, 5, 2, 7), (1, 12, 4, 30)])
def test_crossnobis_matches_rsatoolbox(seed, n_cond, n_runs, n_chan, with_noise, unbalanced):
    patterns, labels, runs = _design(seed, n_cond, n_runs, n_chan, unbalanced)
    noise = _precision(seed, n_chan) if with_noise else None
    want = _rsatoolbox_rdm(patterns, "crossnobis", labels, runs, noise)
    got = compute_rdm(patterns, "crossnobis", conditions=labels, partitions=runs,
                      noise_precision=noise)
    assert got.shape == (n_cond * (n_cond - 1) // 2,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("method", "with_noise"), [
    ("correlation", False), ("euclidean", False), ("mahalanobis", False), ("mahalanobis", True)])
def test_averaged_conditions_match_rsatoolbox(method, with_noise):
    patterns, labels, _ = _design(2, 9, 3, 11, unbalanced=True)
    noise = _precision(3, 11) if with_noise else None
    want = _rsatoolbox_rdm(patterns, method, labels, noise=noise)
    got = compute_rdm(patterns, method, conditions=labels, noise_precision=noise)
    if method == "euclidean":  # rsatoolbox's is the squared distance per channel
        got = got**2 / patterns.shape[1]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["correlation", "mahalanobis", "euclidean"])
def test_single_trials_match_rsatoolbox(method):
    patterns = np.random.default_rng(4).normal(loc=2.0, size=(20, 50))
    got = compute_rdm(patterns, method)
    if method == "euclidean":
        got = got**2 / patterns.shape[1]
    np.testing.assert_allclose(got, _rsatoolbox_rdm(patterns, method), rtol=0, atol=1e-10)


def test_noise_covariance_is_the_inverse_precision():
    patterns, labels, runs = _design(5, 6, 3, 8, unbalanced=False)
    precision = _precision(5, 8)
    for method, kwargs in (("mahalanobis", {}), ("crossnobis", {"partitions": runs})):
        with_precision = compute_rdm(patterns, method, conditions=labels,
                                     noise_precision=precision, **kwargs)
        with_covariance = compute_rdm(patterns, method, conditions=labels,
                                      noise_covariance=np.linalg.inv(precision), **kwargs)
        np.testing.assert_allclose(with_covariance, with_precision, rtol=1e-10, atol=1e-12)


def test_crossnobis_is_unbiased_where_mahalanobis_is_not():
    """Over many noisy repeats crossnobis averages to the true distances; mahalanobis inflates."""
    rng = np.random.default_rng(6)
    true = rng.normal(size=(4, 20))
    conditions, runs = np.tile(np.arange(4), 3), np.repeat(np.arange(3), 4)
    want = compute_rdm(true, "mahalanobis")
    cv = np.mean([compute_rdm(true[conditions] + rng.normal(size=(12, 20)), "crossnobis",
                              conditions=conditions, partitions=runs) for _ in range(400)], axis=0)
    plain = np.mean([compute_rdm(true[conditions] + rng.normal(size=(12, 20)), "mahalanobis",
                                 conditions=conditions) for _ in range(400)], axis=0)
    np.testing.assert_allclose(cv, want, atol=0.05)
    # noise of two 3-run means adds 2/3 per channel to every squared distance
    assert np.all(plain > want + 0.3)


def test_conditions_order_is_sorted_labels():
    patterns = np.random.default_rng(7).normal(size=(4, 6))
    labels = np.array(["d", "b", "a", "c"])
    got = compute_rdm(patterns, "euclidean", conditions=labels)
    np.testing.assert_allclose(got, pdist(patterns[np.argsort(labels)]), atol=1e-12)


# --- compute_rdms: batched over layers / ROIs ---------------------------------------------

@pytest.mark.parametrize("method", sorted(RDM_METHODS))
def test_compute_rdms_stack_equals_loop(method, monkeypatch):
    rng = np.random.default_rng(8)
    stack = rng.normal(size=(5, 12, 9))
    design = {}
    if method == "crossnobis":
        design = {"conditions": np.tile(np.arange(6), 2), "partitions": np.repeat([0, 1], 6)}
    precisions = [None] * 5
    if method in ("mahalanobis", "crossnobis"):
        precisions = [_precision(i, 9) for i in range(5)]
    loop = np.stack([compute_rdm(p, method, noise_precision=precision, **design)
                     for p, precision in zip(stack, precisions)])
    as_array = {} if precisions[0] is None else {"noise_precision": np.stack(precisions)}
    as_list = {} if precisions[0] is None else {"noise_precision": precisions}
    np.testing.assert_allclose(compute_rdms(stack, method, **design, **as_array), loop,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(compute_rdms(list(stack), method, **design, **as_list), loop,
                               rtol=0, atol=1e-12)
    monkeypatch.setattr("nnbrain.core.rdm._MAX_GRAM_ENTRIES", 2 * 12 * 12)  # chunks of 2 sets
    np.testing.assert_allclose(compute_rdms(stack, method, **design, **as_array), loop,
                               rtol=0, atol=1e-12)


def test_compute_rdms_layers_of_different_widths_and_shared_noise():
    rng = np.random.default_rng(9)
    layers = [rng.normal(size=(10, width)) for width in (3, 17, 64)]
    got = compute_rdms(layers, "correlation")
    assert got.shape == (3, 45)
    for rdm, layer in zip(got, layers):
        np.testing.assert_allclose(rdm, pdist(layer, "correlation"), atol=1e-10)
    shared = _precision(1, 5)
    stack = rng.normal(size=(2, 10, 5))
    np.testing.assert_allclose(
        compute_rdms(stack, "mahalanobis", noise_precision=shared),
        [compute_rdm(p, "mahalanobis", noise_precision=shared) for p in stack], atol=1e-12)


# --- errors ----------------------------------------------------------------------------------

def test_crossnobis_needs_conditions_and_partitions():
    patterns, labels, runs = _design(10, 4, 2, 5, unbalanced=False)
    for kwargs in ({}, {"conditions": labels}, {"partitions": runs}):
        with pytest.raises(ValueError, match="conditions and partitions"):
            compute_rdm(patterns, "crossnobis", **kwargs)


def test_crossnobis_needs_two_partitions_and_complete_ones():
    patterns, labels, runs = _design(11, 4, 2, 5, unbalanced=False)
    with pytest.raises(ValueError, match="at least 2 partitions"):
        compute_rdm(patterns, "crossnobis", conditions=labels, partitions=np.zeros(runs.size))
    missing = labels != labels[0]
    missing |= runs != runs[0]  # drop labels[0] from the first row's run only
    with pytest.raises(ValueError, match="every condition in every partition"):
        compute_rdm(patterns[missing], "crossnobis", conditions=labels[missing],
                    partitions=runs[missing])


@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean"])
def test_noise_only_for_mahalanobis_and_crossnobis(method):
    with pytest.raises(ValueError, match="mahalanobis"):
        compute_rdm(np.eye(4), method, noise_precision=np.eye(4))


def test_partitions_only_for_crossnobis():
    with pytest.raises(ValueError, match="crossnobis"):
        compute_rdm(np.eye(4), "mahalanobis", partitions=[0, 0, 1, 1])


def test_noise_argument_errors():
    patterns = np.random.default_rng(12).normal(size=(5, 4))
    with pytest.raises(ValueError, match="not both"):
        compute_rdm(patterns, "mahalanobis", noise_precision=np.eye(4), noise_covariance=np.eye(4))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        compute_rdm(patterns, "mahalanobis", noise_precision=np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        compute_rdm(patterns, "mahalanobis", noise_covariance=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="one per set"):
        compute_rdms(np.stack([patterns] * 3), "mahalanobis",
                     noise_precision=np.stack([np.eye(4)] * 2))
    with pytest.raises(ValueError, match="one per set"):
        compute_rdms([patterns] * 3, "mahalanobis", noise_precision=[np.eye(4)] * 2)


def test_conditions_errors():
    patterns = np.random.default_rng(13).normal(size=(6, 4))
    with pytest.raises(ValueError, match="one label per observation"):
        compute_rdm(patterns, "euclidean", conditions=[0, 1, 2])
    with pytest.raises(ValueError, match="n_conditions >= 3"):
        compute_rdm(patterns, "euclidean", conditions=[0, 1, 0, 1, 0, 1])


def test_compute_rdms_input_errors():
    with pytest.raises(ValueError, match="k, n_observations, n_channels"):
        compute_rdms(np.ones((5, 4)), "euclidean")
    with pytest.raises(ValueError, match="at least one"):
        compute_rdms([], "euclidean")
    rng = np.random.default_rng(14)
    with pytest.raises(ValueError, match="number of conditions"):
        compute_rdms([rng.normal(size=(5, 3)), rng.normal(size=(6, 3))], "euclidean")
