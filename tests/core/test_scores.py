"""Neural similarity score (7T study, eq. 3) against hand-computed values and its pool definition.

Eq. 3 (``papers/000_de39df9e364f5508.txt``, section 2.8.1): within a subject, mean ``mu_s`` and
standard deviation ``sigma_s`` over the CKA values of all models (trained and untrained) and all
ROI-layer pairs; ``phi = (cka_m - mu_s) / sigma_s - (cka_untrained - mu_s) / sigma_s``.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import nnbrain.core.scores as scores_module
from nnbrain.core.scores import NSS_POOLS, neural_similarity_score

# 2 trained models x 2 ROIs x 1 layer, and 2 untrained seeds
MODELS = np.array([[[0.6], [0.2]], [[0.4], [0.0]]])
SEED0 = np.array([[0.2], [0.2]])
SEED1 = np.array([[0.0], [0.4]])


def test_hand_computed_single_untrained_network():
    # pool: 0.6 0.2 0.4 0.0 | 0.2 0.2 -> mean 4/15, variance (ddof=0) 8/225, sd 2 sqrt(2) / 15
    got = neural_similarity_score(MODELS, SEED0)
    sd = 2 * math.sqrt(2) / 15
    assert got.mu == pytest.approx([4 / 15]) and got.sigma == pytest.approx([sd])
    want = np.array([[[0.4 / sd], [0.0]], [[0.2 / sd], [-0.2 / sd]]])
    np.testing.assert_allclose(got.score, want, rtol=1e-12, atol=1e-12)
    assert want[0, 0, 0] == pytest.approx(3 / math.sqrt(2))
    np.testing.assert_array_equal(got.score_sd, 0.0)
    assert got.per_seed.shape == (1, 2, 2, 1) and got.pool_size == 6 and got.pool == "per_seed"
    # the (n_rois, n_layers) form of a single untrained network is the same thing
    np.testing.assert_array_equal(neural_similarity_score(MODELS, SEED0[None]).score, got.score)


def test_pool_is_every_network_and_every_roi_layer_pair_with_ddof0():
    rng = np.random.default_rng(0)
    models = rng.uniform(-0.2, 0.9, size=(9, 18, 12))  # the study: 9 networks, 18 ROIs, 12 layers
    untrained = rng.uniform(-0.2, 0.5, size=(18, 12))
    got = neural_similarity_score(models, untrained)
    pool = np.concatenate([models.ravel(), untrained.ravel()])
    assert got.pool_size == pool.size == 10 * 18 * 12
    assert got.mu[0] == pytest.approx(pool.mean(), rel=1e-14)
    assert got.sigma[0] == pytest.approx(pool.std(ddof=0), rel=1e-14)
    assert got.sigma[0] != pytest.approx(pool.std(ddof=1), rel=1e-6)  # ddof=0, not 1
    z = (models - pool.mean()) / pool.std() - (untrained - pool.mean()) / pool.std()
    np.testing.assert_allclose(got.score, z, rtol=1e-12, atol=1e-12)
    # the pool is not per ROI, per layer or per model
    per_model = (models[0] - untrained) / np.concatenate([models[0].ravel(),
                                                          untrained.ravel()]).std()
    assert not np.allclose(got.score[0], per_model)


def test_several_seeds_per_seed_pool_then_mean_and_sd_over_seeds():
    untrained = np.stack([SEED0, SEED1])
    got = neural_similarity_score(MODELS, untrained)
    # seed 1 pool: 0.6 0.2 0.4 0.0 | 0.0 0.4 -> mean 4/15, variance 11/225, sd sqrt(11) / 15
    sd0, sd1 = 2 * math.sqrt(2) / 15, math.sqrt(11) / 15
    s0 = np.array([[[0.4 / sd0], [0.0]], [[0.2 / sd0], [-0.2 / sd0]]])
    s1 = np.array([[[0.6 / sd1], [-0.2 / sd1]], [[0.4 / sd1], [-0.4 / sd1]]])
    np.testing.assert_allclose(got.per_seed, np.stack([s0, s1]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.score, (s0 + s1) / 2, rtol=1e-12)
    np.testing.assert_allclose(got.score_sd, np.abs(s0 - s1) / 2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.sigma, [sd0, sd1], rtol=1e-12)
    assert got.pool_size == 6


def test_all_seeds_pool():
    untrained = np.stack([SEED0, SEED1])
    got = neural_similarity_score(MODELS, untrained, pool="all_seeds")
    pool = np.concatenate([MODELS.ravel(), SEED0.ravel(), SEED1.ravel()])
    assert got.pool_size == 8
    np.testing.assert_allclose(got.sigma, [pool.std(ddof=0)] * 2, rtol=1e-14)
    np.testing.assert_allclose(
        got.score, np.mean([(MODELS - u) / pool.std() for u in (SEED0, SEED1)], axis=0),
        rtol=1e-12)
    assert set(NSS_POOLS) == {"per_seed", "all_seeds"}


def test_errors():
    with pytest.raises(ValueError, match="pool"):
        neural_similarity_score(MODELS, SEED0, pool="per_model")
    with pytest.raises(ValueError, match="ROI-layer"):
        neural_similarity_score(MODELS, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_models"):
        neural_similarity_score(MODELS[0], SEED0)
    with pytest.raises(ValueError, match="NaN"):
        neural_similarity_score(np.where(MODELS > 0.5, np.nan, MODELS), SEED0)
    with pytest.raises(ValueError, match="sigma"):
        neural_similarity_score(np.full((2, 2, 1), 0.3), np.full((2, 1), 0.3))


def test_docstring_example():
    result = doctest.testmod(scores_module, extraglobs={"np": np})
    assert result.attempted >= 1 and result.failed == 0
