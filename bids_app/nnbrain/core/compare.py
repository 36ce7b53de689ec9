"""Comparators of RDMs, batched over stacks.

Each comparator equals (to 1e-10, with and without ties) the rsatoolbox 0.3.2 function named with
it (``rsatoolbox.rdm.compare``; rsatoolbox's method name in brackets):

- ``tau-a``: Kendall's tau-a, (concordant - discordant pairs) / all pairs, where a pair tied in
  either RDM counts as neither. ``compare_kendall_tau_a`` ("tau-a").
- ``tau-b``: Kendall's tau-b, as :func:`scipy.stats.kendalltau`. ``compare_kendall_tau``
  ("kendall", "tau-b").
- ``rho-a``: Spearman's rho without tie correction, 12 sum((r_a - mean)(r_b - mean)) / (m^3 - m)
  with tie-averaged ranks r. ``compare_rho_a`` ("rho-a").
- ``spearman``: Pearson r of the tie-averaged ranks. ``compare_spearman`` ("spearman").
- ``pearson``: Pearson r. ``compare_correlation`` ("corr").
- ``cosine``: cosine similarity. ``compare_cosine`` ("cosine").

With tied dissimilarities (categorical model RDMs) tau-a and tau-b differ: tau-b divides by the
geometric mean of the untied pairs of each RDM, and so rewards a model RDM for predicting ties.
Nili et al. (2014) therefore recommend tau-a (or rho-a) for RSA with categorical models, and tau-a
is the default of the Mantel tests (:mod:`nnbrain.core.permutation`). "tau-a" and "tau-b" here
are exactly those two; "kendall" is not a name, so that the choice is always explicit.
:func:`compare_rdms` keeps "spearman" as its default for existing callers.

The Kendall comparators count discordant pairs with a Fenwick tree in numba (O(m log m) per pair
of RDMs, large batches split over threads); the others are one matrix product after a row
transform (:func:`prepare`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.typing import ArrayLike

from nnbrain.core.rdm import n_conditions

#: relative tolerance for reading a 2-D (n, n) array as a square RDM (zero diagonal, symmetric).
_SQUARE_TOL = 1e-6
#: pairs x entries from which the Kendall counter splits its pairs over threads.
_PARALLEL_STEPS = 2**20


def as_condensed(rdms: ArrayLike) -> tuple[np.ndarray, bool]:
    """Condensed RDMs from condensed vectors, square RDMs or stacks of either.

    A 2-D array of shape (n, n) with a zero diagonal is one square RDM (it must be symmetric); any
    other 2-D array is a stack of condensed RDMs, one per row. (A stack of ``n`` condensed RDMs of
    length ``n`` with zeros on its diagonal is therefore read as a square RDM: pass such a stack
    as square matrices, shape (k, n, n).)

    Parameters
    ----------
    rdms : array of shape (m,), (n, n), (k, m) or (k, n, n)

    Returns
    -------
    stack : array of shape (k, m), float64
        Condensed RDMs in :func:`scipy.spatial.distance.squareform` order (k = 1 for one RDM).
    single : bool
        Whether the input was one RDM.
    """
    x = np.asarray(rdms, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("RDMs must be finite (no NaN or inf entries)")
    single = x.ndim == 1 or (x.ndim == 2 and _has_zero_diagonal(x))
    if x.ndim == 3 or (x.ndim == 2 and single):
        x = _square_to_condensed(x)
    elif x.ndim not in (1, 2):
        raise ValueError(f"RDMs must be of shape (m,), (n, n), (k, m) or (k, n, n), got {x.shape}")
    stack = np.atleast_2d(x)
    n_conditions(stack.shape[1])
    return stack, single


def _has_zero_diagonal(x: np.ndarray) -> bool:
    if x.shape[-1] != x.shape[-2]:
        return False
    scale = max(float(np.abs(x).max(initial=0.0)), np.finfo(np.float64).tiny)
    return bool(np.all(np.abs(np.diagonal(x, axis1=-2, axis2=-1)) <= _SQUARE_TOL * scale))


def _square_to_condensed(square: np.ndarray) -> np.ndarray:
    if not _has_zero_diagonal(square):
        raise ValueError(f"square RDMs must have a zero diagonal, got shape {square.shape} with "
                         "non-zero diagonal entries")
    scale = max(float(np.abs(square).max(initial=0.0)), np.finfo(np.float64).tiny)
    if np.abs(square - np.swapaxes(square, -1, -2)).max(initial=0.0) > _SQUARE_TOL * scale:
        raise ValueError("square RDMs must be symmetric")
    n = square.shape[-1]
    return square[..., np.arange(n)[:, None] < np.arange(n)]


# --- ranks and ties ---------------------------------------------------------------------------

def _sort_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of each row of x (k, m), and where each run of tied values starts in it.

    Returns
    -------
    order : int array of shape (k, m)
    starts : bool array of shape (k, m)
        ``starts[r, s]``: sorted entry ``s`` of row ``r`` differs from the one before it.
    """
    order = np.argsort(x, axis=1)
    ordered = np.take_along_axis(x, order, axis=1)
    starts = np.ones(x.shape, dtype=bool)
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=starts[:, 1:])
    return order, starts


def _tie_groups(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tie group of each sorted entry, numbered consecutively across rows, and group sizes."""
    group = np.cumsum(starts).reshape(starts.shape) - 1
    return group, np.bincount(group.ravel())


def _unsort(order: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values given in each row's sorted order, put back at the original positions."""
    out = np.empty(order.shape, dtype=values.dtype)
    out[np.arange(order.shape[0])[:, None], order] = values
    return out


def average_ranks(x: ArrayLike) -> np.ndarray:
    """Ranks along the last axis, ties averaged: :func:`scipy.stats.rankdata` (method "average").

    Parameters
    ----------
    x : array of shape (..., m)

    Returns
    -------
    array of shape (..., m), float64, values 1..m
    """
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    m = rows.shape[1]
    order, starts = _sort_rows(rows)
    if starts.all():
        return _unsort(order, np.broadcast_to(np.arange(1.0, m + 1), rows.shape)).reshape(x.shape)
    group, sizes = _tie_groups(starts)
    first = (np.cumsum(sizes) - sizes) % m  # position of each group's first entry in its row
    return _unsort(order, (first + (sizes + 1) / 2)[group]).reshape(x.shape)


# --- dot-product comparators: a row transform, then a matrix product ---------------------------

def _zscore_rows(x: np.ndarray) -> np.ndarray:
    if np.any(np.ptp(x, axis=-1) == 0):
        raise ValueError("an RDM is constant; correlation with it is undefined")
    centered = x - x.mean(axis=-1, keepdims=True)
    return centered / np.linalg.norm(centered, axis=-1, keepdims=True)


def _pearson_prep(x: np.ndarray) -> np.ndarray:
    return _zscore_rows(x)


def _spearman_prep(x: np.ndarray) -> np.ndarray:
    return _zscore_rows(average_ranks(x))


def _rho_a_prep(x: np.ndarray) -> np.ndarray:
    m = x.shape[-1]
    ranks = average_ranks(x)
    return (ranks - ranks.mean(axis=-1, keepdims=True)) * np.sqrt(12.0 / (m**3 - m))


def _cosine_prep(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("an RDM is all zeros; cosine similarity with it is undefined")
    return x / norms


#: comparator -> row transform after which the comparison is a plain dot product (see prepare).
ROW_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cosine": _cosine_prep,
    "pearson": _pearson_prep,
    "rho-a": _rho_a_prep,
    "spearman": _spearman_prep,
}


def prepare(rdms: ArrayLike, method: str) -> np.ndarray:
    """Transform condensed RDMs so that ``prepare(a) @ prepare(b).T`` is the comparison.

    Parameters
    ----------
    rdms : array of shape (n_pairs,) or (k, n_pairs)
    method : {"cosine", "pearson", "rho-a", "spearman"}
        The comparators that are a dot product after a row transform (not the Kendall taus).

    Returns
    -------
    array of the same shape, float64
    """
    if method not in ROW_TRANSFORMS:
        raise ValueError(f"unknown method {method!r} for prepare (a row transform making the "
                         f"comparison a dot product); choose from {sorted(ROW_TRANSFORMS)}")
    return ROW_TRANSFORMS[method](np.asarray(rdms, dtype=np.float64))


def _dot_comparator(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    transform = ROW_TRANSFORMS[method]

    def compare(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return transform(a) @ transform(b).T

    compare.__doc__ = f"{method} between rows of a (k, m) and b (k2, m): array (k, k2)."
    return compare


# --- Kendall's tau: discordant and jointly tied pairs counted in numba -------------------------

@cache
def _kendall_kernel() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Compile (once per process; cached on disk where a cache directory is writable) the
    pairwise discordance counter."""
    import numba

    def counts(orders, starts, ranks, n_ranks, rows_x, rows_y):
        # Per pair: walk x in increasing order, one group of tied x at a time. Before a group's
        # y ranks enter the Fenwick tree, each element counts the inserted (strictly smaller x)
        # elements with strictly larger y (discordant) and its earlier group members with equal
        # y (tied in both).
        n_pairs, m = rows_x.size, orders.shape[1]
        discordant = np.zeros(n_pairs, dtype=np.int64)
        joint_ties = np.zeros(n_pairs, dtype=np.int64)
        for p in range(n_pairs):
            order, start_flags = orders[rows_x[p]], starts[rows_x[p]]
            rank, n_rank = ranks[rows_y[p]], n_ranks[rows_y[p]]
            tree = np.zeros(n_rank + 1, dtype=np.int64)
            tied = np.zeros(n_rank, dtype=np.int64)
            start = 0
            while start < m:
                stop = start + 1
                while stop < m and not start_flags[stop]:
                    stop += 1
                for s in range(start, stop):
                    r = rank[order[s]]
                    i = r + 1
                    not_larger = 0
                    while i > 0:
                        not_larger += tree[i]
                        i -= i & -i
                    discordant[p] += start - not_larger
                    joint_ties[p] += tied[r]
                    tied[r] += 1
                for s in range(start, stop):
                    r = rank[order[s]]
                    tied[r] = 0
                    i = r + 1
                    while i <= n_rank:
                        tree[i] += 1
                        i += i & -i
                start = stop
        return discordant, joint_ties

    try:
        return numba.njit(nogil=True, cache=True)(counts)
    except RuntimeError:  # no writable cache location (read-only install, no NUMBA_CACHE_DIR)
        return numba.njit(nogil=True)(counts)


def _discordance_counts(
    order: np.ndarray, starts: np.ndarray, ranks: np.ndarray, n_ranks: np.ndarray,
    rows_x: np.ndarray, rows_y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Discordant and jointly tied pairs of each listed row pair, split over threads when large.

    The compiled counter releases the GIL; below about a million steps one thread is faster
    (and is not slowed down by waiting for a busy core).
    """
    import numba

    kernel = _kendall_kernel()
    n_threads = int(numba.config.NUMBA_NUM_THREADS)
    if n_threads == 1 or rows_x.size * order.shape[1] < _PARALLEL_STEPS:
        return kernel(order, starts, ranks, n_ranks, rows_x, rows_y)
    from concurrent.futures import ThreadPoolExecutor

    splits = np.array_split(np.arange(rows_x.size), n_threads)
    with ThreadPoolExecutor(n_threads) as pool:
        parts = list(pool.map(lambda idx: kernel(order, starts, ranks, n_ranks, rows_x[idx],
                                                 rows_y[idx]), splits))
    return (np.concatenate([d for d, _ in parts]), np.concatenate([t for _, t in parts]))


def _tied_pairs(starts: np.ndarray) -> np.ndarray:
    """Number of tied pairs in each row, from :func:`_sort_rows`: int array (k,)."""
    if starts.all():
        return np.zeros(starts.shape[0], dtype=np.int64)
    _, sizes = _tie_groups(starts)
    group_row = np.repeat(np.arange(starts.shape[0]), starts.sum(axis=1))
    pairs = np.bincount(group_row, weights=sizes * (sizes - 1) // 2, minlength=starts.shape[0])
    return pairs.astype(np.int64)


def kendall_taus(
    x: np.ndarray, y: np.ndarray, rows_x: np.ndarray, rows_y: np.ndarray, variant: str
) -> np.ndarray:
    """Kendall's tau between the listed row pairs of two stacks of vectors.

    Parameters
    ----------
    x : array of shape (k, m)
    y : array of shape (k2, m)
    rows_x, rows_y : int arrays of shape (p,)
        Pair ``q`` compares ``x[rows_x[q]]`` with ``y[rows_y[q]]``.
    variant : {"a", "b"}
        tau-a (all pairs in the denominator) or tau-b (as :func:`scipy.stats.kendalltau`).

    Returns
    -------
    array of shape (p,), float64, clipped to [-1, 1] as scipy and rsatoolbox do.
    """
    if variant not in ("a", "b"):
        raise ValueError(f"unknown tau variant {variant!r}; choose from ['a', 'b']")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.shape[1]
    order, starts = _sort_rows(x)
    y_order, y_starts = _sort_rows(y)
    # y's dense 0-based ranks (ties share one) at the original positions, and their number
    ranks = _unsort(y_order, np.cumsum(y_starts, axis=1) - 1)
    n_ranks = y_starts.sum(axis=1)
    rows_x = np.asarray(rows_x, dtype=np.int64)
    rows_y = np.asarray(rows_y, dtype=np.int64)
    discordant, joint_ties = _discordance_counts(order, starts, ranks, n_ranks, rows_x, rows_y)
    total = m * (m - 1) // 2
    xt, yt = _tied_pairs(starts)[rows_x], _tied_pairs(y_starts)[rows_y]
    # integers up to here: exact; concordant - discordant = total - xt - yt + joint - 2 discordant
    con_minus_dis = (total - xt - yt + joint_ties - 2 * discordant).astype(np.float64)
    if variant == "a":
        tau = con_minus_dis / total
    else:
        if np.any(xt == total) or np.any(yt == total):
            raise ValueError("an RDM is constant; Kendall's tau-b with it is undefined")
        tau = con_minus_dis / np.sqrt(total - xt) / np.sqrt(total - yt)
    return np.clip(tau, -1.0, 1.0)


def _kendall_comparator(variant: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def compare(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        rows_a, rows_b = np.divmod(np.arange(a.shape[0] * b.shape[0]), b.shape[0])
        return kendall_taus(a, b, rows_a, rows_b, variant).reshape(a.shape[0], b.shape[0])

    compare.__doc__ = f"tau-{variant} between rows of a (k, m) and b (k2, m): array (k, k2)."
    return compare


#: comparator -> function of condensed stacks a (k, m) and b (k2, m) giving the (k, k2) values.
COMPARATORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "cosine": _dot_comparator("cosine"),
    "pearson": _dot_comparator("pearson"),
    "rho-a": _dot_comparator("rho-a"),
    "spearman": _dot_comparator("spearman"),
    "tau-a": _kendall_comparator("a"),
    "tau-b": _kendall_comparator("b"),
}


def comparable_stacks(a: ArrayLike, b: ArrayLike, method: str
                      ) -> tuple[tuple[np.ndarray, bool], tuple[np.ndarray, bool]]:
    """Check ``method`` and turn ``a`` and ``b`` into condensed stacks of equal length.

    Returns
    -------
    ((stack_a, single_a), (stack_b, single_b))
        Stacks of shape (k, m) and (k2, m), and whether each input was a single RDM
        (see :func:`as_condensed`).
    """
    if method not in COMPARATORS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(COMPARATORS)}")
    stack_a, single_a = as_condensed(a)
    stack_b, single_b = as_condensed(b)
    if stack_a.shape[1] != stack_b.shape[1]:
        raise ValueError(f"RDMs differ in length: {stack_a.shape[1]} vs {stack_b.shape[1]}")
    return (stack_a, single_a), (stack_b, single_b)


def compare_rdms(a: ArrayLike, b: ArrayLike, method: str = "spearman") -> float | np.ndarray:
    """Compare RDMs (see the module docstring for each comparator and its rsatoolbox equivalent).

    Parameters
    ----------
    a : array of shape (m,), (n, n), (k, m) or (k, n, n)
        One RDM or a stack, condensed (squareform order) or square (see :func:`as_condensed`).
    b : array of shape (m,), (n, n), (k2, m) or (k2, n, n)
    method : {"cosine", "pearson", "rho-a", "spearman", "tau-a", "tau-b"}
        For RSA with categorical (tied) model RDMs prefer "tau-a" or "rho-a" (Nili et al. 2014).

    Returns
    -------
    float if both are single RDMs, else array of shape (k, k2) (a single RDM counts as k=1).
    """
    (stack_a, single_a), (stack_b, single_b) = comparable_stacks(a, b, method)
    result = COMPARATORS[method](stack_a, stack_b)
    if single_a and single_b:
        return float(result[0, 0])
    return result
