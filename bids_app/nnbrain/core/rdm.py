"""Representational dissimilarity matrices (RDMs) in condensed form.

A condensed RDM over ``n`` conditions is the upper triangle (``i < j``, row-major, the order of
:func:`scipy.spatial.distance.squareform`) of length ``n * (n - 1) / 2``.

Methods (``RDM_METHODS``):

- ``euclidean``: Euclidean distance, as :func:`scipy.spatial.distance.pdist`. (rsatoolbox's
  ``euclidean`` is the *squared* distance divided by the number of channels; that is ``mahalanobis``
  here with the identity as noise precision.)
- ``correlation``: 1 - Pearson r between patterns (rsatoolbox and scipy agree).
- ``cosine``: 1 - cosine similarity (scipy).
- ``mahalanobis``: squared Mahalanobis distance divided by the number of channels,
  ``(x_i - x_j) P (x_i - x_j)^T / n_channels`` with noise precision ``P`` (identity by default), as
  rsatoolbox's ``calc_rdm(..., method="mahalanobis", noise=P)``.
- ``crossnobis``: the cross-validated squared Mahalanobis distance of rsatoolbox 0.3.2's
  ``calc_rdm(..., method="crossnobis", descriptor=conditions, cv_descriptor=partitions, noise=P)``:
  for every partition ``f``, ``d_f(i, j) = (a_i - a_j) P (b_i - b_j)^T / n_channels`` where
  ``b`` are the condition means of the observations in ``f`` and ``a`` those of all other
  observations (means over observations, not over partitions), averaged over partitions. An
  unbiased estimate of the ``mahalanobis`` RDM of the true patterns.

With ``conditions``, observations sharing a label are averaged (crossnobis: within each training and
test split) and the RDM's conditions are the sorted unique labels (:func:`numpy.unique`), the order
rsatoolbox gives its RDMs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: largest number of Gram-matrix entries held at once by :func:`compute_rdms` (512 MiB of float64).
_MAX_GRAM_ENTRIES = 2**26


@dataclass(frozen=True)
class _Observations:
    """Validated inputs of one RDM (or of a stack of RDMs sharing the design).

    Attributes
    ----------
    patterns : array of shape (..., n_observations, n_channels), float64
    conditions : int array of shape (n_observations,) or None
        Codes 0..n_conditions-1 of the sorted unique labels; None: one condition per observation.
    partitions : int array of shape (n_observations,) or None
        Codes 0..n_partitions-1 of the cross-validation folds.
    precision : array of shape (..., n_channels, n_channels) or None
        Noise precision; None is the identity.
    """

    patterns: np.ndarray
    conditions: np.ndarray | None
    partitions: np.ndarray | None
    precision: np.ndarray | None

    def condition_means(self) -> np.ndarray:
        """Patterns averaged per condition, array of shape (..., n_conditions, n_channels)."""
        if self.conditions is None:
            return self.patterns
        sums, counts = _group_sums(self.patterns, self.conditions)
        return sums / counts[:, None]


def _group_sums(patterns: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums of rows per code (every code 0..max present): (..., n_codes, n_channels), (n_codes,)."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.add.reduceat(patterns[..., order, :], starts, axis=-2), counts


def _upper(square: np.ndarray) -> np.ndarray:
    """Condensed (squareform-order) upper triangles of array of shape (..., n, n)."""
    n = square.shape[-1]
    return square[..., np.arange(n)[:, None] < np.arange(n)]


def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b^T`` over the last two axes of equally shaped stacks.

    One 2-D product per matrix: numpy then calls BLAS SYRK when ``b is a`` (half the work of the
    GEMM that a stacked matmul would call).
    """
    if a.ndim == 2:
        return a @ b.T
    return np.stack([x @ y.T for x, y in zip(a, b)])


def _one_minus_normalized(gram: np.ndarray) -> np.ndarray:
    """``1 - g_ij / sqrt(g_ii g_jj)`` over the condensed upper triangles of Gram matrices of
    shape (..., n, n) (modified in place): the norms come from the diagonal, so the patterns
    themselves are never rescaled."""
    norms = np.sqrt(np.diagonal(gram, axis1=-2, axis2=-1))
    gram /= norms[..., :, None]
    gram /= norms[..., None, :]
    upper = _upper(gram)
    return np.subtract(1.0, upper, out=upper)


def _correlation(obs: _Observations) -> np.ndarray:
    patterns = obs.condition_means()
    if np.any(np.ptp(patterns, axis=-1) == 0):
        raise ValueError("correlation distance is undefined for a constant pattern (zero variance)")
    centered = patterns - patterns.mean(axis=-1, keepdims=True)
    return _one_minus_normalized(_gram(centered, centered))


def _cosine(obs: _Observations) -> np.ndarray:
    patterns = obs.condition_means()
    gram = _gram(patterns, patterns)
    if np.any(np.diagonal(gram, axis1=-2, axis2=-1) == 0):
        raise ValueError("cosine distance is undefined for an all-zero pattern")
    return _one_minus_normalized(gram)


def _centred_if_offset(patterns: np.ndarray) -> np.ndarray:
    """Patterns minus their mean pattern when that mean outweighs their spread.

    Distances are translation invariant, and the Gram trick ``|x|^2 + |y|^2 - 2 x.y`` loses
    precision in proportion to ``|x|^2`` (the squared offset plus the spread): centring makes the
    error relative to the spread alone. Estimated on at most 64 evenly spaced patterns; below
    that ratio centring would gain at most a factor of 2 and cost a copy of the patterns.
    """
    sample = patterns[..., ::max(1, patterns.shape[-2] // 64), :]
    mean = sample.mean(axis=-2, keepdims=True)
    offset = np.sum(mean**2, axis=-1)
    spread = np.mean(np.sum((sample - mean) ** 2, axis=-1), axis=-1, keepdims=True)
    if np.all(offset <= spread):
        return patterns
    return patterns - patterns.mean(axis=-2, keepdims=True)


def _euclidean(obs: _Observations) -> np.ndarray:
    patterns = _centred_if_offset(obs.condition_means())
    d2 = _gram(patterns, patterns)
    sq = np.diagonal(d2, axis1=-2, axis2=-1).copy()
    d2 *= -2.0
    d2 += sq[..., :, None]
    d2 += sq[..., None, :]
    upper = np.clip(_upper(d2), 0.0, None)
    return np.sqrt(upper, out=upper)


def _cross_kernel_rdm(kernel: np.ndarray) -> np.ndarray:
    """``k_ii + k_jj - k_ij - k_ji`` for i < j, from kernel of shape (..., n, n)."""
    diag = np.diagonal(kernel, axis1=-2, axis2=-1)
    i, j = np.triu_indices(kernel.shape[-1], k=1)
    return diag[..., i] + diag[..., j] - kernel[..., i, j] - kernel[..., j, i]


def _weighted(patterns: np.ndarray, precision: np.ndarray | None) -> np.ndarray:
    return patterns if precision is None else patterns @ precision


def _mahalanobis(obs: _Observations) -> np.ndarray:
    patterns = _centred_if_offset(obs.condition_means())
    kernel = _gram(_weighted(patterns, obs.precision), patterns)
    return _cross_kernel_rdm(kernel) / patterns.shape[-1]


def _crossnobis(obs: _Observations) -> np.ndarray:
    n_cond = int(obs.conditions.max()) + 1
    n_parts = int(obs.partitions.max()) + 1
    # sums and counts of the observations of each (partition, condition)
    sums, counts = _group_sums(obs.patterns, obs.partitions * n_cond + obs.conditions)
    sums = sums.reshape(*sums.shape[:-2], n_parts, n_cond, sums.shape[-1])
    counts = counts.reshape(n_parts, n_cond, 1)
    total_sum, total_count = sums.sum(axis=-3), counts.sum(axis=0)
    kernel = 0.0
    for part in range(n_parts):
        test = sums[..., part, :, :] / counts[part]
        train = (total_sum - sums[..., part, :, :]) / (total_count - counts[part])
        # (a_i - a_j) P (b_i - b_j) is unchanged by shifting all a (or all b) by one vector
        test -= test.mean(axis=-2, keepdims=True)
        train -= train.mean(axis=-2, keepdims=True)
        kernel = kernel + _gram(_weighted(train, obs.precision), test)
    return _cross_kernel_rdm(kernel) / (n_parts * obs.patterns.shape[-1])


#: method name -> function from validated observations to condensed RDMs (see module docstring).
RDM_METHODS: dict[str, Callable[[_Observations], np.ndarray]] = {
    "correlation": _correlation,
    "cosine": _cosine,
    "crossnobis": _crossnobis,
    "euclidean": _euclidean,
    "mahalanobis": _mahalanobis,
}

_NOISE_METHODS = ("crossnobis", "mahalanobis")


def _lookup(method: str) -> Callable[[_Observations], np.ndarray]:
    if method not in RDM_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(RDM_METHODS)}")
    return RDM_METHODS[method]


def _codes(labels: ArrayLike, n_observations: int, name: str) -> tuple[np.ndarray, int]:
    """Integer codes of the sorted unique ``labels`` and their number."""
    labels = np.asarray(labels)
    if labels.shape != (n_observations,):
        raise ValueError(f"{name} must have one label per observation (row of patterns): "
                         f"shape ({n_observations},), got {labels.shape}")
    unique, codes = np.unique(labels, return_inverse=True)
    return codes.reshape(-1), unique.size


def _check_crossnobis_design(conditions: np.ndarray, partitions: np.ndarray) -> None:
    n_parts = int(partitions.max()) + 1
    if n_parts < 2:
        raise ValueError("crossnobis needs at least 2 partitions (e.g. runs) to cross-validate")
    present = np.zeros((n_parts, int(conditions.max()) + 1), dtype=bool)
    present[partitions, conditions] = True
    if not present.all():
        part, cond = np.argwhere(~present)[0]
        raise ValueError(f"crossnobis needs every condition in every partition; condition code "
                         f"{cond} (sorted unique label order) is missing from partition code "
                         f"{part}")


def _noise_precision(
    method: str, precision: ArrayLike | None, covariance: ArrayLike | None, n_channels: int
) -> np.ndarray | None:
    """Noise precision of shape (..., n_channels, n_channels), or None for the identity."""
    if precision is None and covariance is None:
        return None
    if method not in _NOISE_METHODS:
        raise ValueError(f"a noise precision or covariance applies to {list(_NOISE_METHODS)} only, "
                         f"not {method!r}")
    if precision is not None and covariance is not None:
        raise ValueError("give either noise_precision or noise_covariance, not both")
    matrix = np.asarray(precision if precision is not None else covariance, dtype=np.float64)
    if matrix.shape[-2:] != (n_channels, n_channels) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"the noise matrix must be finite, of shape (n_channels, n_channels) = "
                         f"({n_channels}, {n_channels}), got {matrix.shape}")
    if precision is not None:
        return matrix
    try:
        return np.linalg.inv(matrix)
    except np.linalg.LinAlgError as err:
        raise ValueError("the noise covariance is singular; regularise it (e.g. shrinkage) or "
                         "pass noise_precision") from err


def _observations(
    patterns: np.ndarray,
    method: str,
    conditions: ArrayLike | None,
    partitions: ArrayLike | None,
    noise_precision: ArrayLike | None,
    noise_covariance: ArrayLike | None,
) -> _Observations:
    n_obs, n_channels = patterns.shape[-2:]
    n_cond = n_obs
    cond_codes = part_codes = None
    if conditions is not None:
        cond_codes, n_cond = _codes(conditions, n_obs, "conditions")
    if n_cond < 3:
        raise ValueError(f"patterns must be (n_conditions >= 3, n_channels), got {n_cond} "
                         f"conditions from patterns of shape {patterns.shape}")
    if method == "crossnobis":
        if cond_codes is None or partitions is None:
            raise ValueError("crossnobis needs conditions and partitions (e.g. runs), one label "
                             "per observation")
        part_codes, _ = _codes(partitions, n_obs, "partitions")
        _check_crossnobis_design(cond_codes, part_codes)
    elif partitions is not None:
        raise ValueError(f"partitions apply to cross-validated methods (crossnobis), "
                         f"not {method!r}")
    precision = _noise_precision(method, noise_precision, noise_covariance, n_channels)
    if precision is not None and precision.shape[:-2] not in ((), patterns.shape[:-2]):
        raise ValueError(f"noise matrices of shape {precision.shape} do not match patterns of "
                         f"shape {patterns.shape}: give one (n_channels, n_channels) matrix or "
                         f"one per set")
    return _Observations(patterns, cond_codes, part_codes, precision)


def compute_rdm(
    patterns: ArrayLike,
    method: str = "correlation",
    *,
    conditions: ArrayLike | None = None,
    partitions: ArrayLike | None = None,
    noise_precision: ArrayLike | None = None,
    noise_covariance: ArrayLike | None = None,
) -> np.ndarray:
    """Condensed RDM of ``patterns``.

    Parameters
    ----------
    patterns : array of shape (n_observations, n_channels)
        One response pattern per observation; without ``conditions`` each observation is a
        condition (stimulus).
    method : {"correlation", "cosine", "crossnobis", "euclidean", "mahalanobis"}
        Dissimilarity; see the module docstring for the exact definitions.
    conditions : array of shape (n_observations,), optional
        Condition label of each observation. Required for crossnobis. Observations sharing a label
        are averaged; the RDM's conditions are the sorted unique labels.
    partitions : array of shape (n_observations,), optional
        Cross-validation fold (e.g. run) of each observation; crossnobis only, where it is required
        and every condition must occur in every partition.
    noise_precision : array of shape (n_channels, n_channels), optional
        Noise precision (inverse covariance) for mahalanobis and crossnobis; identity by default.
    noise_covariance : array of shape (n_channels, n_channels), optional
        Noise covariance instead of the precision (it is inverted).

    Returns
    -------
    array of shape (n_conditions * (n_conditions - 1) // 2,), float64

    Examples
    --------
    >>> compute_rdm(np.array([[0., 1.], [1., 0.], [0., 2.]]), "euclidean").round(3).tolist()
    [1.414, 1.0, 2.236]
    >>> compute_rdm(np.array([[0., 1.], [1., 0.], [0., 2.]]), "mahalanobis").round(12).tolist()
    [1.0, 0.5, 2.5]
    """
    rdm_function = _lookup(method)
    patterns = np.asarray(patterns, dtype=np.float64)
    if patterns.ndim != 2:
        raise ValueError(f"patterns must be (n_conditions >= 3, n_channels), got {patterns.shape}")
    obs = _observations(patterns, method, conditions, partitions, noise_precision,
                        noise_covariance)
    return rdm_function(obs)


def compute_rdms(
    patterns: Sequence[ArrayLike] | np.ndarray,
    method: str = "correlation",
    *,
    conditions: ArrayLike | None = None,
    partitions: ArrayLike | None = None,
    noise_precision: ArrayLike | Sequence[ArrayLike] | None = None,
    noise_covariance: ArrayLike | Sequence[ArrayLike] | None = None,
) -> np.ndarray:
    """Condensed RDMs of many pattern sets (layers, ROIs) over the same observations.

    A 3-D array is processed batched (stacked BLAS calls, in chunks that bound the memory of the
    Gram matrices); a sequence of arrays with different channel counts one set at a time.

    Parameters
    ----------
    patterns : array of shape (k, n_observations, n_channels), or sequence of k arrays
        One pattern set per layer or ROI; in a sequence, set ``i`` is an array of shape
        (n_observations, n_channels_i).
    method : str
        As in :func:`compute_rdm`.
    conditions, partitions : array of shape (n_observations,), optional
        Shared by all k sets; as in :func:`compute_rdm`.
    noise_precision, noise_covariance : array or sequence of k arrays, optional
        One (n_channels, n_channels) matrix for all sets, or one per set: an array of shape
        (k, n_channels, n_channels) or a sequence of k (n_channels_i, n_channels_i) arrays.

    Returns
    -------
    array of shape (k, n_conditions * (n_conditions - 1) // 2), float64
    """
    rdm_function = _lookup(method)
    if isinstance(patterns, np.ndarray) and patterns.ndim != 3:
        raise ValueError(f"compute_rdms takes an array of shape (k, n_observations, n_channels) "
                         f"or a sequence of (n_observations, n_channels) arrays, got "
                         f"{patterns.shape}")
    if isinstance(patterns, np.ndarray):
        stack = patterns.astype(np.float64, copy=False)
        obs = _observations(stack, method, conditions, partitions, noise_precision,
                            noise_covariance)
        n = stack.shape[1]
        chunk = max(1, _MAX_GRAM_ENTRIES // (n * n))
        return np.concatenate([
            rdm_function(_Observations(stack[start:start + chunk], obs.conditions,
                                       obs.partitions, _chunk_of(obs.precision, start, chunk)))
            for start in range(0, stack.shape[0], chunk)
        ])
    if len(patterns) == 0:
        raise ValueError("compute_rdms needs at least one pattern set")
    rdms = [
        compute_rdm(p, method, conditions=conditions, partitions=partitions,
                    noise_precision=_item(noise_precision, i, len(patterns)),
                    noise_covariance=_item(noise_covariance, i, len(patterns)))
        for i, p in enumerate(patterns)
    ]
    if len({r.size for r in rdms}) > 1:
        raise ValueError("the pattern sets differ in their number of conditions")
    return np.stack(rdms)


def _chunk_of(precision: np.ndarray | None, start: int, size: int) -> np.ndarray | None:
    """Rows of a per-set precision stack, or the shared precision."""
    if precision is None or precision.ndim == 2:
        return precision
    return precision[start:start + size]


def _item(matrices: ArrayLike | Sequence[ArrayLike] | None, i: int, k: int) -> ArrayLike | None:
    """The i-th of k per-set noise matrices, or the one shared matrix."""
    if matrices is None or np.ndim(matrices[0]) < 2:
        return matrices
    if len(matrices) != k:
        raise ValueError(f"give one noise matrix for all {k} pattern sets or one per set, "
                         f"got {len(matrices)}")
    return matrices[i]


def n_conditions(condensed_length: int) -> int:
    """Number of conditions of a condensed RDM of the given length."""
    n = int(round((1 + np.sqrt(1 + 8 * condensed_length)) / 2))
    if n * (n - 1) // 2 != condensed_length:
        raise ValueError(f"{condensed_length} is not the length of a condensed RDM")
    return n
