"""Representational dissimilarity matrices (RDMs) in condensed form.

A condensed RDM over ``n`` conditions is the upper triangle (``i < j``, row-major, the order of
:func:`scipy.spatial.distance.squareform`) of length ``n * (n - 1) / 2``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _upper(square: np.ndarray) -> np.ndarray:
    n = square.shape[-1]
    i, j = np.triu_indices(n, k=1)
    return square[..., i, j]


def _correlation(patterns: np.ndarray) -> np.ndarray:
    if np.any(np.ptp(patterns, axis=1) == 0):
        raise ValueError("correlation distance is undefined for a constant pattern (zero variance)")
    centered = patterns - patterns.mean(axis=1, keepdims=True)
    unit = centered / np.linalg.norm(centered, axis=1, keepdims=True)
    return _upper(1.0 - unit @ unit.T)


def _cosine(patterns: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(patterns, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("cosine distance is undefined for an all-zero pattern")
    unit = patterns / norms
    return _upper(1.0 - unit @ unit.T)


def _euclidean(patterns: np.ndarray) -> np.ndarray:
    # distances are translation invariant; centring first keeps the Gram trick precise
    patterns = patterns - patterns.mean(axis=0)
    sq = np.einsum("ij,ij->i", patterns, patterns)
    d2 = sq[:, None] + sq[None, :] - 2.0 * patterns @ patterns.T
    return np.sqrt(np.clip(_upper(d2), 0.0, None))


#: method name -> function from (n_conditions, n_channels) patterns to a condensed RDM.
RDM_METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "correlation": _correlation,
    "cosine": _cosine,
    "euclidean": _euclidean,
}


def compute_rdm(patterns: np.ndarray, method: str = "correlation") -> np.ndarray:
    """Condensed RDM of ``patterns``.

    Parameters
    ----------
    patterns : array of shape (n_conditions, n_channels)
        One response pattern per condition (stimulus).
    method : {"correlation", "cosine", "euclidean"}
        Dissimilarity: 1 - Pearson r, 1 - cosine similarity, or Euclidean distance.

    Returns
    -------
    array of shape (n_conditions * (n_conditions - 1) // 2,)

    Examples
    --------
    >>> compute_rdm(np.array([[0., 1.], [1., 0.], [0., 2.]]), "euclidean").round(3).tolist()
    [1.414, 1.0, 2.236]
    """
    if method not in RDM_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(RDM_METHODS)}")
    patterns = np.asarray(patterns, dtype=np.float64)
    if patterns.ndim != 2 or patterns.shape[0] < 3:
        raise ValueError(f"patterns must be (n_conditions >= 3, n_channels), got {patterns.shape}")
    return RDM_METHODS[method](patterns)


def n_conditions(condensed_length: int) -> int:
    """Number of conditions of a condensed RDM of the given length."""
    n = int(round((1 + np.sqrt(1 + 8 * condensed_length)) / 2))
    if n * (n - 1) // 2 != condensed_length:
        raise ValueError(f"{condensed_length} is not the length of a condensed RDM")
    return n
