"""Scores built on similarity values: the neural similarity score of the 7T CKA study.

The study (``papers/000_de39df9e364f5508.txt``, section 2.8.1, eq. 3) compares each trained
network with an untrained (randomly initialised) network of the same architecture. Within one
subject ``s``, every CKA value of every network -- the trained ones and the untrained one --
over every ROI-layer pair is pooled; its mean ``mu_s`` and standard deviation ``sigma_s``
standardize both the trained and the untrained values, and the score is the difference of the
two z-scores::

    phi_s[m, r, l] = (cka_m[r, l] - mu_s) / sigma_s - (cka_untrained[r, l] - mu_s) / sigma_s

(``mu_s`` cancels; it is kept in the result for the record). A score of 1 means the trained
network reaches one pooled standard deviation more similarity than the untrained one on that
ROI-layer pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: How the pool is formed when several untrained seeds are given.
NSS_POOLS = {
    "per_seed": "for each seed, every trained network plus that seed's untrained network",
    "all_seeds": "every trained network plus every untrained seed (one pool for all seeds)",
}


@dataclass(frozen=True)
class NeuralSimilarityScore:
    """Neural similarity scores of one subject.

    Attributes
    ----------
    score : array of shape (n_models, n_rois, n_layers)
        Mean over untrained seeds of the per-seed scores.
    score_sd : array of shape (n_models, n_rois, n_layers)
        Standard deviation (ddof=0) over seeds of the per-seed scores; 0 with one seed.
    per_seed : array of shape (n_seeds, n_models, n_rois, n_layers)
    mu, sigma : arrays of shape (n_seeds,)
        Mean and standard deviation (ddof=0) of each seed's pool.
    pool : str
        A key of :data:`NSS_POOLS`.
    pool_size : int
        Number of CKA values in each pool.
    """

    score: np.ndarray
    score_sd: np.ndarray
    per_seed: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    pool: str
    pool_size: int


def neural_similarity_score(
    cka_models: np.ndarray, cka_untrained: np.ndarray, *, pool: str = "per_seed"
) -> NeuralSimilarityScore:
    """The 7T study's neural similarity score (eq. 3), for one subject.

    The pool: within the subject, the CKA values of every network, trained and untrained,
    over all ROI-layer pairs, i.e. ``(n_models + 1) * n_rois * n_layers`` values with one
    untrained network; ``mu_s`` is their mean and ``sigma_s`` their standard deviation with
    ddof=0 (``np.std``). Then ``score = (cka_model - mu_s) / sigma_s - (cka_untrained - mu_s) /
    sigma_s`` for every trained network and ROI-layer pair.

    With several untrained seeds (``pool="per_seed"``, the default) each seed is scored as in
    the study, its pool being every trained network plus that one seed's untrained network; the
    result is the mean over seeds of the per-seed scores, with their standard deviation (ddof=0)
    over seeds. ``pool="all_seeds"`` instead pools every trained network and every untrained
    seed once (``(n_models + n_seeds) * n_rois * n_layers`` values) and uses that single
    ``mu_s``, ``sigma_s`` for every seed.

    Parameters
    ----------
    cka_models : array of shape (n_models, n_rois, n_layers)
        CKA of each trained network for each ROI-layer pair (one subject).
    cka_untrained : array of shape (n_seeds, n_rois, n_layers) or (n_rois, n_layers)
        CKA of the untrained network(s) of the same architecture.
    pool : {"per_seed", "all_seeds"}

    Returns
    -------
    NeuralSimilarityScore

    Examples
    --------
    >>> trained = np.array([[[0.5, 0.3]]])        # 1 model, 1 ROI, 2 layers
    >>> untrained = np.array([[0.1, 0.3]])        # pool: 0.5, 0.3, 0.1, 0.3 -> sd 0.1414
    >>> neural_similarity_score(trained, untrained).score.round(4)
    array([[[2.8284, 0.    ]]])
    """
    if pool not in NSS_POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose from {sorted(NSS_POOLS)}")
    models = np.asarray(cka_models, dtype=np.float64)
    untrained = np.asarray(cka_untrained, dtype=np.float64)
    if untrained.ndim == 2:
        untrained = untrained[None]
    if models.ndim != 3 or untrained.ndim != 3:
        raise ValueError(
            "cka_models must be (n_models, n_rois, n_layers) and cka_untrained "
            f"(n_seeds, n_rois, n_layers); got {models.shape} and {untrained.shape}"
        )
    if models.shape[1:] != untrained.shape[1:]:
        raise ValueError(
            f"trained and untrained CKA differ in ROI-layer pairs: {models.shape[1:]} vs "
            f"{untrained.shape[1:]} (the untrained network must share the architecture)"
        )
    if models.shape[0] < 1 or untrained.shape[0] < 1 or models[0].size == 0:
        raise ValueError("the neural similarity score needs at least one trained and one "
                         "untrained network and one ROI-layer pair")
    if not (np.all(np.isfinite(models)) and np.all(np.isfinite(untrained))):
        raise ValueError("CKA values hold NaN or infinite entries; the pooled z-score is undefined")
    n_seeds = untrained.shape[0]
    if pool == "per_seed":
        pools = [np.concatenate([models.ravel(), untrained[s].ravel()]) for s in range(n_seeds)]
    else:
        pools = [np.concatenate([models.ravel(), untrained.ravel()])] * n_seeds
    mu = np.array([p.mean() for p in pools])
    sigma = np.array([p.std(ddof=0) for p in pools])
    if np.any(sigma == 0):
        raise ValueError("all pooled CKA values are equal (sigma_s = 0); the score is undefined")
    per_seed = np.stack([
        (models - mu[s]) / sigma[s] - (untrained[s][None] - mu[s]) / sigma[s]
        for s in range(n_seeds)
    ])
    return NeuralSimilarityScore(
        score=per_seed.mean(axis=0), score_sd=per_seed.std(axis=0, ddof=0), per_seed=per_seed,
        mu=mu, sigma=sigma, pool=pool, pool_size=int(pools[0].size),
    )
