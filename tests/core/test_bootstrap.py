"""Bootstrap over stimuli and subjects against rsatoolbox 0.3.2 (eval_bootstrap_pattern /
eval_bootstrap_rdm, RDMs.subsample_pattern) and numpy's quantiles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import squareform

from nnbrain.core.bootstrap import (
    bootstrap_stimuli,
    bootstrap_subjects,
    percentile_ci,
    resample_stimuli,
)
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
