"""Bootstrap distributions and percentile CIs: RDM evaluations and block bootstraps of rows.

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
serially correlated rows (continuous designs: fMRI volumes, network activations over video frames)
are resampled by blocks instead, never by single rows, whose bootstrap ignores the autocorrelation
and gives too narrow intervals: :func:`bootstrap_blocks` draws whole blocks or runs with
replacement, :func:`bootstrap_circular_blocks` draws blocks of consecutive rows of one long run,
wrapped around its end (the circular block bootstrap of Politis & Romano 1992). Both draw from
``numpy.random.default_rng(seed)`` and return a :class:`BootstrapResult` that records the seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from nnbrain.core.cka import center_gram, sq_distances_of_rows
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
    evaluations : array of shape (n_bootstrap, k) or (n_bootstrap, ...)
    level : float
        Coverage, in (0, 1).

    Returns
    -------
    lower, upper : arrays of shape (k,) or (...)
    """
    _check_level(level)
    cut = (1 - level) / 2
    lower, upper = np.nanquantile(np.asarray(evaluations, dtype=np.float64), [cut, 1 - cut], axis=0)
    return lower, upper


def _check_level(level: float) -> None:
    """Raise unless the confidence level is in (0, 1)."""
    if not 0 < level < 1:
        raise ValueError(f"the confidence level must be in (0, 1), got {level}")


@dataclass(frozen=True)
class BootstrapResult:
    """A block bootstrap of a statistic of serially correlated rows.

    Attributes
    ----------
    estimate : float or array of shape (*statistic_shape)
        The statistic on all rows, in their order.
    draws : array of shape (n_bootstrap, *statistic_shape)
        The statistic on each bootstrap sample.
    lower, upper : float or arrays of shape (*statistic_shape)
        Percentile confidence interval (:func:`percentile_ci`), NaN draws ignored.
    level : float
        Coverage of the interval.
    seed : int
        Seed of ``numpy.random.default_rng`` that drew the samples (drawn when none was given);
        passing it again gives the same draws.
    scheme : {"blocks", "circular"}
        Whole blocks or runs (:func:`bootstrap_blocks`) or circular blocks of one run
        (:func:`bootstrap_circular_blocks`).
    n_rows : int
        Rows of the data.
    n_blocks : int
        Blocks drawn per sample: the number of labelled blocks, or ``ceil(n_rows / block_length)``.
    block_length : int or None
        Rows per circular block; None for labelled blocks.
    """

    estimate: float | np.ndarray
    draws: np.ndarray
    lower: float | np.ndarray
    upper: float | np.ndarray
    level: float
    seed: int
    scheme: str
    n_rows: int
    n_blocks: int
    block_length: int | None = None


def bootstrap_blocks(
    statistic: Callable[..., float | np.ndarray],
    x: ArrayLike,
    y: ArrayLike | None = None,
    *,
    blocks: ArrayLike,
    n_bootstrap: int = 1000,
    seed: int | None = None,
    level: float = 0.95,
    contiguous: bool = True,
) -> BootstrapResult:
    """Bootstrap a statistic of serially correlated rows over whole blocks or runs.

    Each sample draws as many blocks as the data have, uniformly with replacement, and
    concatenates their rows in the order drawn, each block's rows in their original order; rows
    of ``x`` and ``y`` are drawn together. Samples have as many rows as the drawn blocks hold
    (``n_rows`` when the blocks have equal lengths).

    Parameters
    ----------
    statistic : callable
        ``statistic(x_sample)``, or ``statistic(x_sample, y_sample)`` when ``y`` is given, returns
        a float or an array of fixed shape (e.g. ``lambda a, b: cka(a, b, unbiased=True)``).
    x : array of shape (n_rows, ...)
    y : array of shape (n_rows, ...) or None
    blocks : array of shape (n_rows,)
        Block (e.g. run) label of each row, integers or strings; at least 2 distinct labels.
    n_bootstrap : int
    seed : int or None
        Seed of ``numpy.random.default_rng``; None draws one, recorded in the result.
    level : float
        Coverage of the percentile interval, in (0, 1).
    contiguous : bool
        Require each block to be one run of consecutive rows (the default, as runs or blocks of
        a continuous design are); False allows a block's rows to be scattered.

    Returns
    -------
    BootstrapResult
        ``scheme="blocks"``, ``n_blocks`` the number of distinct labels.

    Examples
    --------
    >>> x = np.arange(6.0)
    >>> result = bootstrap_blocks(np.mean, x, blocks=[0, 0, 1, 1, 2, 2], n_bootstrap=50, seed=0)
    >>> result.draws.shape, result.n_blocks, result.seed
    ((50,), 3, 0)
    """
    arrays = _paired_rows(x, y)
    starts, lengths, order = _block_layout(np.asarray(blocks), arrays[0].shape[0], contiguous)
    rng, seed = _generator(seed, n_bootstrap, level)
    picks = rng.integers(0, starts.size, size=(n_bootstrap, starts.size))
    samples = (order[_concatenated_ranges(starts[pick], lengths[pick])] for pick in picks)
    return _bootstrap(statistic, arrays, samples, level, seed, "blocks", starts.size)


def bootstrap_circular_blocks(
    statistic: Callable[..., float | np.ndarray],
    x: ArrayLike,
    y: ArrayLike | None = None,
    *,
    block_length: int,
    n_bootstrap: int = 1000,
    seed: int | None = None,
    level: float = 0.95,
) -> BootstrapResult:
    """Circular block bootstrap (Politis & Romano 1992) of a statistic of one long run.

    The rows are wrapped on a circle; each sample draws ``ceil(n_rows / block_length)`` start
    rows uniformly with replacement, takes ``block_length`` consecutive rows from each (past the
    last row it continues at the first) and keeps the first ``n_rows`` rows of their
    concatenation. Rows of ``x`` and ``y`` are drawn together. Every row is equally likely in
    every position, so the sample mean is unbiased for the mean of the rows.

    Parameters
    ----------
    statistic : callable
        ``statistic(x_sample)``, or ``statistic(x_sample, y_sample)`` when ``y`` is given.
    x : array of shape (n_rows, ...)
    y : array of shape (n_rows, ...) or None
    block_length : int
        Rows per block, from 1 (the row bootstrap, for independent rows only) to
        ``n_rows // 2``; choose it well above the autocorrelation length.
    n_bootstrap : int
    seed : int or None
        Seed of ``numpy.random.default_rng``; None draws one, recorded in the result.
    level : float
        Coverage of the percentile interval, in (0, 1).

    Returns
    -------
    BootstrapResult
        ``scheme="circular"``, with ``block_length`` and ``n_blocks`` (blocks per sample).
    """
    arrays = _paired_rows(x, y)
    n_rows = arrays[0].shape[0]
    if not 1 <= block_length <= n_rows // 2:
        raise ValueError(
            f"block_length must be between 1 and n_rows // 2 = {n_rows // 2} (at least 2 blocks "
            f"of the {n_rows} rows), got {block_length}"
        )
    rng, seed = _generator(seed, n_bootstrap, level)
    n_blocks = -(-n_rows // block_length)
    starts = rng.integers(0, n_rows, size=(n_bootstrap, n_blocks, 1))
    rows = ((starts + np.arange(block_length)) % n_rows).reshape(n_bootstrap, -1)[:, :n_rows]
    return _bootstrap(
        statistic, arrays, rows, level, seed, "circular", n_blocks, block_length
    )


def _paired_rows(x: ArrayLike, y: ArrayLike | None) -> tuple[np.ndarray, ...]:
    """``(x,)`` or ``(x, y)`` as arrays with the same number of rows (axis 0)."""
    arrays = tuple(np.asarray(a) for a in ((x,) if y is None else (x, y)))
    if arrays[0].ndim == 0:
        raise ValueError("x must have a row axis (shape (n_rows, ...)), got a scalar")
    if len(arrays) == 2 and (arrays[1].ndim == 0 or arrays[1].shape[0] != arrays[0].shape[0]):
        raise ValueError(
            f"x and y must have the same number of rows, got shapes {arrays[0].shape} and "
            f"{arrays[1].shape}"
        )
    return arrays


def _block_layout(
    blocks: np.ndarray, n_rows: int, contiguous: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each block's rows lie in the rows sorted by block.

    Returns ``starts``, ``lengths`` (int arrays of shape (n_blocks,), blocks in sorted label
    order) and ``order`` (int array of shape (n_rows,)): the rows of block ``b`` are
    ``order[starts[b]:starts[b] + lengths[b]]``, in their original order.
    """
    if blocks.shape != (n_rows,):
        raise ValueError(f"blocks must label each of the {n_rows} rows, got shape {blocks.shape}")
    labels, codes, lengths = np.unique(blocks, return_inverse=True, return_counts=True)
    if labels.size < 2:
        raise ValueError(f"the block bootstrap needs at least 2 blocks, got {labels.size}")
    if contiguous:
        runs = np.flatnonzero(np.diff(codes)) + 1
        if runs.size + 1 != labels.size:
            split = np.bincount(codes[np.concatenate(([0], runs))]).argmax()
            raise ValueError(
                f"block {labels[split].item()!r} is not one run of consecutive rows; sort the "
                "rows by block, or pass contiguous=False if its rows are meant to be scattered"
            )
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return starts, lengths, np.argsort(codes, kind="stable")


def _concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorised."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())


def _generator(seed: int | None, n_bootstrap: int, level: float) -> tuple[np.random.Generator, int]:
    """A generator from ``seed``, or from a freshly drawn seed, and that seed."""
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    _check_level(level)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    return np.random.default_rng(seed), seed


def _bootstrap(
    statistic: Callable[..., float | np.ndarray],
    arrays: tuple[np.ndarray, ...],
    samples: Iterable[np.ndarray],
    level: float,
    seed: int,
    scheme: str,
    n_blocks: int,
    block_length: int | None = None,
) -> BootstrapResult:
    """Evaluate the statistic on all rows and on each sample of row indices."""
    estimate = statistic(*arrays)
    draws = np.stack([np.asarray(statistic(*(a[rows] for a in arrays))) for rows in samples])
    lower, upper = percentile_ci(draws, level)
    return BootstrapResult(
        estimate=estimate,
        draws=draws,
        lower=lower,
        upper=upper,
        level=level,
        seed=seed,
        scheme=scheme,
        n_rows=arrays[0].shape[0],
        n_blocks=n_blocks,
        block_length=block_length,
    )


def bootstrap_cka_stimuli(
    reference: ArrayLike, candidates: list[ArrayLike], kernel: str = "linear",
    unbiased: bool = True, sigma: float = 1.0, n_bootstrap: int = 1000, seed: int = 0,
    blocks: ArrayLike | None = None,
) -> np.ndarray:
    """CKA of ``k`` representations with a reference over bootstrap samples of the stimuli
    (or, for continuous designs, of blocks of rows).

    Stimuli are drawn as :func:`bootstrap_stimuli` draws them (the same samples for the same
    seed). The biased estimator is evaluated on the sample as drawn, copies included (the
    standard bootstrap). The unbiased estimator is evaluated over the distinct stimuli of each
    sample: a copy of a stimulus only adds pairs of a stimulus with itself, the CKA counterpart
    of the zero-dissimilarity pairs rsatoolbox drops, and would bias the U-statistic upward;
    the distinct stimuli (about 63% of n) make the interval slightly narrow (on linear CKA,
    n = 60: bootstrap SD 0.88 of the true SD, 93% coverage of a nominal 95% interval, where
    the biased estimator on distinct stimuli gave 0.81 and 75%). The RBF bandwidth is
    re-estimated in each sample (the colab's median over all entries of the rows compared).
    Samples with fewer than 4 distinct rows (the unbiased estimator divides by n - 3) or a
    constant representation give NaN.

    With ``blocks``, the units drawn are blocks (e.g. stimulation blocks of a time series,
    whose rows are serially correlated): a sample keeps all rows of its (distinct, for the
    unbiased estimator) blocks.

    Parameters
    ----------
    reference : array of shape (n_rows, n_features)
        E.g. an ROI's patterns or time series.
    candidates : list of k arrays of shape (n_rows, n_features_i)
        E.g. one activation matrix per layer.
    kernel : {"linear", "rbf"}
    unbiased : bool
    sigma : float
        RBF bandwidth as a multiple of the median distance (the colab's ``threshold``).
    n_bootstrap, seed : int
    blocks : array of shape (n_rows,), optional
        Block label of each row; None: every row (stimulus) is its own unit.

    Returns
    -------
    array of shape (n_bootstrap, k)
    """
    if kernel not in ("linear", "rbf"):
        raise ValueError(f"unknown kernel {kernel!r}; choose from linear, rbf")
    grams = np.stack([_raw_gram(np.asarray(x, dtype=np.float64), kernel)
                      for x in [reference, *candidates]])
    n = grams.shape[1]
    if blocks is None:
        members = [np.array([i]) for i in range(n)]
    else:
        labels = np.asarray(blocks)
        if labels.shape != (n,):
            raise ValueError(f"blocks must give one label per row ({n}), got {labels.shape}")
        members = [np.flatnonzero(labels == u) for u in np.unique(labels)]
    rng = np.random.RandomState(seed)
    evaluations = np.full((n_bootstrap, len(candidates)), np.nan)
    for row in evaluations:
        draw = rng.randint(0, len(members), size=len(members))
        units = np.unique(draw) if unbiased else np.sort(draw)
        kept = np.concatenate([members[u] for u in units])
        if np.unique(kept).size >= 4:
            row[:] = _cka_of_grams(grams[:, kept][:, :, kept], kernel, unbiased, sigma)
    return evaluations


def _raw_gram(x: np.ndarray, kernel: str) -> np.ndarray:
    """Linear Gram (x x^T) or squared distances of the rows as ``gram_rbf`` computes them: (n, n)."""
    return x @ x.T if kernel == "linear" else sq_distances_of_rows(x)


def _cka_of_grams(grams: np.ndarray, kernel: str, unbiased: bool, sigma: float) -> np.ndarray:
    """CKA of grams[0] with each of grams[1:]: array (k,), NaN where a Gram is constant.

    ``grams`` is (1 + k, n, n): linear Grams, or squared distances for the RBF kernel.
    """
    if kernel == "rbf":
        medians = np.median(grams.reshape(len(grams), -1), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            grams = np.exp(-grams / (2 * sigma ** 2 * medians[:, None, None]))
    centered = center_gram(grams, unbiased).reshape(len(grams), -1)
    norms = np.linalg.norm(centered, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = centered[1:] @ centered[0] / (norms[1:] * norms[0])
    out[~np.isfinite(out)] = np.nan
    return out


def bootstrap_subject_means(values: ArrayLike, n_bootstrap: int = 1000, seed: int = 0
                            ) -> np.ndarray:
    """Means of per-subject values over bootstrap samples of the subjects.

    Subjects are drawn as :func:`bootstrap_subjects` draws them, so for RDM comparisons the
    result equals ``bootstrap_subjects`` on the same seed.

    Parameters
    ----------
    values : array of shape (n_subjects, k)
        E.g. each subject's statistic for k layer x ROI pairs; NaN entries are ignored.
    n_bootstrap, seed : int

    Returns
    -------
    array of shape (n_bootstrap, k)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1:
        raise ValueError(f"values must be (n_subjects, k) with a subject, got {values.shape}")
    rng = np.random.RandomState(seed)
    n = values.shape[0]
    samples = np.stack([rng.randint(0, n, size=n) for _ in range(n_bootstrap)])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values[samples], axis=1)
