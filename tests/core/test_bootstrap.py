"""Bootstrap over stimuli and subjects against rsatoolbox 0.3.2 (eval_bootstrap_pattern /
eval_bootstrap_rdm, RDMs.subsample_pattern) and numpy's quantiles; block bootstraps of
autocorrelated rows against the exact sampling SD of an AR(1) mean."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.spatial.distance import squareform

from nnbrain.core.bootstrap import (
    BootstrapResult,
    bootstrap_blocks,
    bootstrap_circular_blocks,
    bootstrap_stimuli,
    bootstrap_subjects,
    percentile_ci,
    resample_stimuli,
)
from nnbrain.core.cka import cka
from nnbrain.core.compare import COMPARATORS

#: nnbrain comparator -> rsatoolbox's name for it.
RSATOOLBOX_NAME = {"pearson": "corr"}


def _rdms(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two model RDMs (continuous, categorical) and 4 subjects' rounded (tied) data RDMs."""
    rng = np.random.default_rng(seed)
    m = n * (n - 1) // 2
    categories = rng.integers(0, 2, size=n)
    iu, ju = np.triu_indices(n, k=1)
    models = np.stack([rng.random(m), (categories[iu] != categories[ju]).astype(float)])
    data = np.round(models.mean(axis=0) + rng.normal(scale=0.3, size=(4, m)), 1)
    return models, data


def _rsatoolbox_evaluations(kind: str, models, data, method: str, n_bootstrap: int, seed: int):
    from rsatoolbox.inference import eval_bootstrap_pattern, eval_bootstrap_rdm
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs

    evaluate = eval_bootstrap_pattern if kind == "stimuli" else eval_bootstrap_rdm
    np.random.seed(seed)  # rsatoolbox draws from numpy's global RandomState
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate([ModelFixed(f"model{i}", RDMs(rdm)) for i, rdm in enumerate(models)],
                          RDMs(data), method=RSATOOLBOX_NAME.get(method, method), N=n_bootstrap,
                          boot_noise_ceil=False)
    return result.evaluations


@pytest.mark.parametrize("method", sorted(COMPARATORS))
@pytest.mark.parametrize(("kind", "bootstrap"), [("stimuli", bootstrap_stimuli),
                                                 ("subjects", bootstrap_subjects)])
def test_evaluations_equal_rsatoolbox(method, kind, bootstrap):
    models, data = _rdms(0, 9)
    got = bootstrap(models, data, method, n_bootstrap=15, seed=7)
    want = _rsatoolbox_evaluations(kind, models, data, method, 15, 7)
    assert got.shape == (15, 2)
    defined = ~np.isnan(got)
    np.testing.assert_allclose(got[defined], want[defined], rtol=0, atol=1e-10)
    # undefined here (a model constant over the sample): rsatoolbox's 0 or NaN
    assert defined.sum() >= 25
    assert np.all((want[~defined] == 0) | np.isnan(want[~defined]))


def test_model_constant_over_a_sample_is_nan_for_that_model_only():
    models, data = _rdms(0, 9)
    evaluations = bootstrap_stimuli(models, data, "pearson", n_bootstrap=15, seed=7)
    sample = np.random.RandomState(7).randint(0, 9, size=9)  # the first sample
    kept = resample_stimuli(models[1], sample)
    assert np.ptp(kept) == 0  # the categorical model is constant over it
    assert np.isnan(evaluations[0, 1]) and np.isfinite(evaluations[0, 0])


def test_resample_stimuli_equals_rsatoolbox_subsample_pattern():
    from rsatoolbox.rdm import RDMs

    models, _ = _rdms(1, 7)
    sample = np.array([5, 0, 3, 3, 6, 0, 0])
    want = RDMs(models).subsample_pattern("index", sample).get_vectors()
    want = want[:, ~np.isnan(want[0])]
    got = resample_stimuli(models, sample)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (2, 21 - 4)  # 7 draws: 21 pairs, 3 + 1 pairs of copies (of 0, of 3)
    np.testing.assert_array_equal(resample_stimuli(squareform(models[0]), sample), want[0])


def test_without_repeats_resampling_is_reordering():
    models, _ = _rdms(2, 6)
    np.testing.assert_array_equal(resample_stimuli(models, np.arange(6)[::-1]), models)


def test_samples_with_fewer_than_3_stimuli_are_nan():
    models, data = _rdms(3, 3)
    evaluations = bootstrap_stimuli(models, data, "pearson", n_bootstrap=40, seed=0)
    draws = np.random.RandomState(0).randint(0, 3, size=(40, 3))
    too_few = np.array([np.unique(d).size < 3 for d in draws])
    assert too_few.any() and not too_few.all()
    np.testing.assert_array_equal(np.isnan(evaluations).all(axis=1), too_few)


def test_same_seed_same_samples_and_subject_bootstrap_centres_on_the_mean():
    models, data = _rdms(4, 10)
    first = bootstrap_subjects(models, data, "spearman", n_bootstrap=400, seed=1)
    np.testing.assert_array_equal(first, bootstrap_subjects(models, data, "spearman",
                                                            n_bootstrap=400, seed=1))
    full = COMPARATORS["spearman"](models, data).mean(axis=1)
    np.testing.assert_allclose(first.mean(axis=0), full, atol=0.05)
    lower, upper = percentile_ci(first)
    assert np.all(lower < full) and np.all(full < upper)


def test_percentile_ci_is_the_nan_ignoring_quantile():
    rng = np.random.default_rng(5)
    evaluations = rng.normal(size=(200, 3))
    evaluations[::7] = np.nan
    lower, upper = percentile_ci(evaluations, 0.9)
    valid = evaluations[~np.isnan(evaluations[:, 0])]
    np.testing.assert_allclose(lower, np.quantile(valid, 0.05, axis=0))
    np.testing.assert_allclose(upper, np.quantile(valid, 0.95, axis=0))
    with pytest.raises(ValueError, match="level"):
        percentile_ci(evaluations, 95)


def test_errors():
    models, data = _rdms(6, 5)
    with pytest.raises(ValueError, match="choose from"):
        bootstrap_stimuli(models, data, "kendall")
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_subjects(models, data[:, :6], "cosine")
    with pytest.raises(ValueError, match="0..4"):
        resample_stimuli(models, [0, 1, 5])



# --------------------------------------------------------------------------- block bootstraps
#: AR(1) simulation: coefficient, rows per series, rows per block, series bootstrapped.
PHI, N_ROWS, BLOCK, N_SERIES = 0.6, 600, 30, 200


def _recorder(samples: list[np.ndarray]):
    """A statistic of (x, y) that records x (row ids) and checks that y's rows stay paired."""

    def statistic(x: np.ndarray, y: np.ndarray) -> float:
        np.testing.assert_array_equal(y, 10 * x)
        samples.append(x.copy())
        return float(x.mean())

    return statistic


def _pieces(sample: np.ndarray, blocks: np.ndarray) -> list[np.ndarray]:
    """Split row ids where the block changes or the next row is not the following row."""
    cuts = (np.diff(blocks[sample]) != 0) | (np.diff(sample) != 1)
    return np.split(sample, np.flatnonzero(cuts) + 1)


def test_each_block_sample_is_whole_blocks_with_x_and_y_rows_together():
    blocks = np.repeat([3, 7, 5, 9], [4, 6, 3, 5])  # unequal runs, labels not in row order
    x = np.arange(blocks.size)
    samples: list[np.ndarray] = []
    result = bootstrap_blocks(_recorder(samples), x, 10 * x, blocks=blocks, n_bootstrap=60,
                              seed=3)
    np.testing.assert_array_equal(samples[0], x)  # the estimate: all rows, in order
    members = {label: np.flatnonzero(blocks == label) for label in np.unique(blocks)}
    drawn = set()
    for sample in samples[1:]:
        pieces = _pieces(sample, blocks)
        assert len(pieces) == 4  # as many blocks as the data have, each whole, rows in order
        for piece in pieces:
            np.testing.assert_array_equal(piece, members[blocks[piece[0]]])
        drawn.add(tuple(blocks[piece[0]] for piece in pieces))
    assert len(drawn) > 40  # drawn with replacement, in varying order
    assert result.draws.shape == (60,) and result.n_blocks == 4 and result.n_rows == 18
    assert result.scheme == "blocks" and result.block_length is None
    np.testing.assert_allclose(result.draws, [s.mean() for s in samples[1:]])


def test_scattered_blocks_keep_their_rows_in_order():
    blocks = np.array([0, 0, 1, 1, 0, 2, 2, 1])
    x = np.arange(blocks.size)
    with pytest.raises(ValueError, match="block 0 is not one run"):
        bootstrap_blocks(np.mean, x, blocks=blocks, seed=0)
    samples: list[np.ndarray] = []
    bootstrap_blocks(_recorder(samples), x, 10 * x, blocks=blocks, n_bootstrap=30, seed=0,
                     contiguous=False)
    members = {0: [0, 1, 4], 1: [2, 3, 7], 2: [5, 6]}
    for sample in samples[1:]:
        position = 0
        while position < sample.size:
            block = members[blocks[sample[position]]]
            assert sample[position:position + len(block)].tolist() == block
            position += len(block)


def test_each_circular_sample_is_wrapped_runs_of_the_block_length():
    x = np.arange(23)
    samples: list[np.ndarray] = []
    result = bootstrap_circular_blocks(_recorder(samples), x, 10 * x, block_length=5,
                                       n_bootstrap=200, seed=4)
    assert result.scheme == "circular" and result.block_length == 5 and result.n_blocks == 5
    starts = []
    for sample in samples[1:]:
        assert sample.size == 23
        runs = sample[:20].reshape(4, 5)
        np.testing.assert_array_equal(runs, (runs[:, :1] + np.arange(5)) % 23)
        np.testing.assert_array_equal(sample[20:], (sample[20] + np.arange(3)) % 23)
        starts.extend(runs[:, 0])
    assert set(starts) == set(range(23))  # every row starts a block, the last ones wrap


@pytest.mark.parametrize("scheme", ["blocks", "circular"])
def test_same_seed_same_draws_and_a_drawn_seed_is_recorded(scheme):
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))

    def run(seed):
        if scheme == "blocks":
            return bootstrap_blocks(lambda a, b: a.T @ b, x, y, blocks=np.arange(40) // 8,
                                    n_bootstrap=25, seed=seed)
        return bootstrap_circular_blocks(lambda a, b: a.T @ b, x, y, block_length=8,
                                         n_bootstrap=25, seed=seed)

    first = run(11)
    assert isinstance(first, BootstrapResult) and first.seed == 11
    assert first.draws.shape == (25, 3, 2) and first.lower.shape == (3, 2)
    np.testing.assert_array_equal(first.draws, run(11).draws)
    assert not np.array_equal(first.draws, run(12).draws)
    unseeded = run(None)
    assert isinstance(unseeded.seed, int)
    np.testing.assert_array_equal(unseeded.draws, run(unseeded.seed).draws)
    np.testing.assert_allclose(first.estimate, x.T @ y)
    np.testing.assert_allclose(first.lower, np.quantile(first.draws, 0.025, axis=0), rtol=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_block_bootstrap_of_linear_cka(unbiased):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(48, 6))
    y = x @ rng.normal(size=(6, 4)) + rng.normal(scale=2.0, size=(48, 4))

    def statistic(a: np.ndarray, b: np.ndarray) -> float:
        return cka(a, b, "linear", unbiased=unbiased)

    result = bootstrap_blocks(statistic, x, y, blocks=np.repeat(np.arange(8), 6), n_bootstrap=40,
                              seed=2, level=0.9)
    assert result.estimate == pytest.approx(cka(x, y, "linear", unbiased=unbiased))
    assert np.all(np.isfinite(result.draws)) and result.draws.std() > 0
    assert result.lower < result.estimate < result.upper
    circular = bootstrap_circular_blocks(statistic, x, y, block_length=6, n_bootstrap=40,
                                         seed=2, level=0.9)
    assert circular.lower < circular.estimate < circular.upper


def test_block_bootstrap_errors():
    x = np.zeros((10, 2))
    blocks = np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match="same number of rows"):
        bootstrap_blocks(np.mean, x, np.zeros((9, 2)), blocks=blocks)
    with pytest.raises(ValueError, match="label each of the 10 rows"):
        bootstrap_blocks(np.mean, x, blocks=blocks[:9])
    with pytest.raises(ValueError, match="at least 2 blocks, got 1"):
        bootstrap_blocks(np.mean, x, blocks=np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="n_bootstrap"):
        bootstrap_blocks(np.mean, x, blocks=blocks, n_bootstrap=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_circular_blocks(np.mean, x, block_length=2, level=95)
    for length in (0, 6):
        with pytest.raises(ValueError, match="between 1 and n_rows // 2 = 5"):
            bootstrap_circular_blocks(np.mean, x, block_length=length)


def _ar1_sd_of_mean(phi: float, n: int) -> float:
    """Exact SD of the mean of n rows of a stationary AR(1) with unit innovation variance."""
    lags = np.arange(1, n)
    variance = 1 / (1 - phi**2)
    return float(np.sqrt(variance / n * (1 + 2 * np.sum((1 - lags / n) * phi**lags))))


@pytest.fixture(scope="module")
def ar1_bootstraps() -> dict[str, np.ndarray]:
    """Stationary AR(1) series and, per scheme, each series' bootstrap SE and 90% CI hit of 0."""
    rng = np.random.default_rng(2024)
    innovations = rng.normal(size=(4000, N_ROWS))
    innovations[:, 0] /= np.sqrt(1 - PHI**2)  # start in the stationary distribution
    series = lfilter([1.0], [1.0, -PHI], innovations, axis=1)
    schemes = {
        "blocks": lambda s, seed: bootstrap_blocks(
            np.mean, s, blocks=np.arange(N_ROWS) // BLOCK, n_bootstrap=200, seed=seed, level=0.9),
        "circular": lambda s, seed: bootstrap_circular_blocks(
            np.mean, s, block_length=BLOCK, n_bootstrap=200, seed=seed, level=0.9),
        "rows": lambda s, seed: bootstrap_blocks(  # every row its own block: the naive bootstrap
            np.mean, s, blocks=np.arange(N_ROWS), n_bootstrap=200, seed=seed, level=0.9),
    }
    out = {"means": series.mean(axis=1)}
    for name, bootstrap in schemes.items():
        results = [bootstrap(s, seed) for seed, s in enumerate(series[:N_SERIES])]
        out[f"{name}_se"] = np.array([r.draws.std(ddof=1) for r in results])
        out[f"{name}_covers"] = np.array([r.lower <= 0 <= r.upper for r in results])
    return out


def test_block_bootstrap_se_matches_the_ar1_sampling_sd_and_the_row_bootstrap_does_not(
    ar1_bootstraps,
):
    true_sd = _ar1_sd_of_mean(PHI, N_ROWS)  # 0.102, twice the iid SE 1/sqrt(n (1 - phi^2))
    # Monte Carlo over 4000 series agrees with the formula (SE of an SD estimate ~1.1%)
    assert ar1_bootstraps["means"].std(ddof=1) == pytest.approx(true_sd, rel=0.05)
    # mean over 200 series of each SE (relative SD of one block SE ~0.16, of the mean ~0.012);
    # blocks of 30 rows lose a little of the lag-covariance at their edges: expect ~0.93
    for scheme in ("blocks", "circular"):
        ratio = ar1_bootstraps[f"{scheme}_se"].mean() / true_sd
        assert 0.88 < ratio < 1.05, (scheme, ratio)
    # resampling rows gives the iid SE, sqrt((1 - phi) / (1 + phi)) = 0.5 of the truth
    ratio = ar1_bootstraps["rows_se"].mean() / true_sd
    assert 0.45 < ratio < 0.55, ratio


def test_block_bootstrap_intervals_cover_the_mean_and_row_intervals_do_not(ar1_bootstraps):
    # nominal 90%; ~0.85 here, the block SE being ~0.93 of the truth (binomial SD over 200 series
    # ~0.025); the row bootstrap's half-width intervals cover P(|Z| < 1.645 / 2) = 0.59 of the time
    for scheme in ("blocks", "circular"):
        assert 0.78 <= ar1_bootstraps[f"{scheme}_covers"].mean() <= 0.96, scheme
    assert 0.45 <= ar1_bootstraps["rows_covers"].mean() <= 0.7


# --------------------------------------------------------------------------- CKA over stimuli
def _cka_data(seed: int, n: int = 14):
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(n, 9))
    candidates = [reference @ rng.normal(size=(9, 5)) + rng.normal(size=(n, 5)) * s
                  for s in (0.3, 3.0)]
    return reference, candidates


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_bootstrap_cka_equals_cka_of_the_drawn_stimuli(kernel, unbiased):
    """Unbiased: the distinct drawn stimuli; biased: the sample as drawn, copies included."""
    from nnbrain.core.bootstrap import bootstrap_cka_stimuli
    from nnbrain.core.cka import cka

    reference, candidates = _cka_data(1)
    boot = bootstrap_cka_stimuli(reference, candidates, kernel, unbiased, 0.8, 25, seed=3)
    rng = np.random.RandomState(3)
    for row in boot:
        draw = rng.randint(0, 14, size=14)
        kept = np.unique(draw) if unbiased else np.sort(draw)
        want = [cka(reference[kept], c[kept], kernel=kernel, unbiased=unbiased, sigma=0.8)
                for c in candidates]
        np.testing.assert_allclose(row, want, rtol=0, atol=1e-10)
    assert boot.shape == (25, 2)
    # the better-aligned candidate has the higher CKA in (almost) every sample
    assert np.mean(boot[:, 0] > boot[:, 1]) > 0.9


def test_bootstrap_cka_small_samples_are_nan_and_kernel_checked():
    from nnbrain.core.bootstrap import bootstrap_cka_stimuli

    reference, candidates = _cka_data(2, n=4)
    boot = bootstrap_cka_stimuli(reference, candidates, n_bootstrap=40, seed=0)
    assert np.isnan(boot).any(axis=1).sum() >= 30  # 4 distinct of 4 drawn is rare (4!/4^4)
    with pytest.raises(ValueError, match="unknown kernel"):
        bootstrap_cka_stimuli(reference, candidates, kernel="poly")


def test_bootstrap_subject_means_equal_bootstrap_subjects():
    from nnbrain.core.bootstrap import bootstrap_subject_means, bootstrap_subjects
    from nnbrain.core.compare import compare_rdms

    rng = np.random.default_rng(5)
    models = rng.random((3, 45))
    data = rng.random((6, 45))
    values = compare_rdms(models, data, "spearman").T  # (subjects, models)
    np.testing.assert_allclose(bootstrap_subject_means(values, 200, seed=9),
                               bootstrap_subjects(models, data, "spearman", 200, seed=9),
                               rtol=0, atol=1e-12)
    with_nan = values.copy()
    with_nan[0, 1] = np.nan
    means = bootstrap_subject_means(with_nan, 50, seed=1)
    assert np.isfinite(means[:, 1]).all()


def test_bootstrap_cka_over_blocks_keeps_whole_blocks():
    from nnbrain.core.bootstrap import bootstrap_cka_stimuli
    from nnbrain.core.cka import cka

    rng = np.random.default_rng(4)
    reference = rng.normal(size=(24, 5))
    candidate = reference @ rng.normal(size=(5, 3)) + rng.normal(size=(24, 3))
    blocks = np.repeat(np.arange(6), 4)
    boot = bootstrap_cka_stimuli(reference, [candidate], n_bootstrap=20, seed=2, blocks=blocks)
    draws = np.random.RandomState(2)
    for value in boot[:, 0]:
        units = np.unique(draws.randint(0, 6, size=6))
        rows = np.flatnonzero(np.isin(blocks, units))
        want = cka(reference[rows], candidate[rows], unbiased=True) if rows.size >= 4 else np.nan
        np.testing.assert_allclose(value, want, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="one label per row"):
        bootstrap_cka_stimuli(reference, [candidate], blocks=blocks[:-1])
