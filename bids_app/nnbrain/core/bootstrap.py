"""Bootstrap distributions and percentile confidence intervals of model-RDM evaluations.

An evaluation of a model RDM is the mean over the data RDMs (subjects) of its comparison with each
(:func:`nnbrain.core.compare.compare_rdms`), as in rsatoolbox 0.3.2's ``eval_bootstrap_pattern``
(resampling stimuli) and ``eval_bootstrap_rdm`` (resampling subjects).

Resampled stimuli are handled as rsatoolbox's ``bootstrap_sample_pattern`` and
``RDMs.subsample_pattern`` do: the sample is sorted, every pair of sampled stimuli is kept except
pairs of two copies of the same stimulus (their zero dissimilarity is trivially predicted), and a
sample with fewer than 3 distinct stimuli gives NaN evaluations. A model whose comparison is
undefined in a sample (an RDM constant over the sampled pairs, e.g. a categorical model when all
sampled stimuli share a category) gets NaN there too, where rsatoolbox gives 0 for cosine,
pearson and spearman and NaN for tau-b.

Samples are drawn as rsatoolbox draws them (``randint`` of numpy's legacy ``RandomState``, one call
of size n per sample), so with ``np.random.seed(seed)`` rsatoolbox's evaluations equal these.

These resample stimuli (conditions) or subjects, the independent units of an RSA design. Data with
serially correlated rows (continuous designs) must be resampled by blocks or runs, never by rows;
that is not what these functions do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from nnbrain.core.compare import COMPARATORS, as_condensed, comparable_stacks
from nnbrain.core.rdm import n_conditions


def resample_stimuli(rdms: ArrayLike, sample: ArrayLike) -> np.ndarray:
    """Condensed RDMs over a bootstrap sample of stimuli, pairs of copies dropped.

    Parameters
    ----------
    rdms : array of shape (m,), (n, n), (k, m) or (k, n, n)
        RDMs over n stimuli (see :func:`nnbrain.core.compare.as_condensed`).
    sample : int array of shape (n_sample,)
        Stimulus indices drawn with replacement; their order does not matter.

    Returns
    -------
    array of shape (n_kept,) for one RDM, else (k, n_kept)
        Entries for the pairs ``i < j`` of the sorted sample with ``sample[i] != sample[j]``, in
        squareform order of the sorted sample.
    """
    stack, single = as_condensed(rdms)
    resampled = stack[:, _resampled_pairs(n_conditions(stack.shape[1]), sample)]
    return resampled[0] if single else resampled


def _resampled_pairs(n: int, sample: ArrayLike) -> np.ndarray:
    """Condensed indices (over n stimuli) of the kept pairs of a sample: int array (n_kept,)."""
    sample = np.sort(np.asarray(sample, dtype=np.int64))
    if sample.size and (sample[0] < 0 or sample[-1] >= n):
        raise ValueError(f"stimulus indices must be in 0..{n - 1}")
    i, j = np.triu_indices(sample.size, k=1)
    a, b = sample[i], sample[j]
    keep = a != b
    a, b = a[keep], b[keep]
    return n * a - a * (a + 1) // 2 + b - a - 1


def bootstrap_stimuli(
    models: ArrayLike, data: ArrayLike, method: str, n_bootstrap: int = 1000, seed: int = 0
) -> np.ndarray:
    """Evaluations of model RDMs over bootstrap samples of the stimuli.

    Parameters
    ----------
    models : array of shape (m,), (n, n), (k, m) or (k, n, n)
        Model RDMs (e.g. one per layer).
    data : array of shape (m,), (n, n), (s, m) or (s, n, n)
        Data RDMs (e.g. one per subject).
    method : str
        Comparator (see :data:`nnbrain.core.compare.COMPARATORS`).
    n_bootstrap : int
    seed : int

    Returns
    -------
    array of shape (n_bootstrap, k)
        Mean over data RDMs of each model's comparison, per sample; NaN for samples with fewer
        than 3 distinct stimuli and where the comparison is undefined.
    """
    (model_stack, _), (data_stack, _) = comparable_stacks(models, data, method)
    n = n_conditions(model_stack.shape[1])
    compare = COMPARATORS[method]
    rng = np.random.RandomState(seed)
    evaluations = np.full((n_bootstrap, model_stack.shape[0]), np.nan)
    for row in evaluations:
        sample = rng.randint(0, n, size=n)
        if np.unique(sample).size >= 3:
            pairs = _resampled_pairs(n, sample)
            row[:] = _mean_comparisons(compare, model_stack[:, pairs], data_stack[:, pairs])
    return evaluations


def _mean_comparisons(
    compare: Callable[[np.ndarray, np.ndarray], np.ndarray], models: np.ndarray, data: np.ndarray
) -> np.ndarray:
    """Mean over data rows of each model row's comparison, NaN where undefined: array (k,)."""
    try:
        return compare(models, data).mean(axis=1)
    except ValueError:  # an RDM is constant over these pairs; find the models that are defined
        means = np.full(models.shape[0], np.nan)
        for i, model in enumerate(models):
            try:
                means[i] = compare(model[None], data).mean()
            except ValueError:
                continue
        return means


def bootstrap_subjects(
    models: ArrayLike, data: ArrayLike, method: str, n_bootstrap: int = 1000, seed: int = 0
) -> np.ndarray:
    """Evaluations of model RDMs over bootstrap samples of the data RDMs (subjects).

    Each model is compared with each data RDM once; a sample averages the comparisons of the
    data RDMs it draws.

    Parameters
    ----------
    models : array of shape (m,), (n, n), (k, m) or (k, n, n)
    data : array of shape (s, m) or (s, n, n)
    method : str
    n_bootstrap : int
    seed : int

    Returns
    -------
    array of shape (n_bootstrap, k)
    """
    (model_stack, _), (data_stack, _) = comparable_stacks(models, data, method)
    comparisons = COMPARATORS[method](model_stack, data_stack)
    rng = np.random.RandomState(seed)
    n_data = data_stack.shape[0]
    samples = np.stack([rng.randint(0, n_data, size=n_data) for _ in range(n_bootstrap)])
    return comparisons[:, samples].mean(axis=2).T


def percentile_ci(evaluations: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap confidence interval of each column, NaN samples ignored.

    Parameters
    ----------
    evaluations : array of shape (n_bootstrap, k)
    level : float
        Coverage, in (0, 1).

    Returns
    -------
    lower, upper : arrays of shape (k,)
    """
    if not 0 < level < 1:
        raise ValueError(f"the confidence level must be in (0, 1), got {level}")
    cut = (1 - level) / 2
    lower, upper = np.nanquantile(np.asarray(evaluations, dtype=np.float64), [cut, 1 - cut], axis=0)
    return lower, upper
