"""Comparators of condensed RDMs, batched over stacks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    if np.any(np.ptp(x, axis=-1) == 0):
        raise ValueError("an RDM is constant; correlation with it is undefined")
    centered = x - x.mean(axis=-1, keepdims=True)
    return centered / np.linalg.norm(centered, axis=-1, keepdims=True)


def _pearson_prep(x: np.ndarray) -> np.ndarray:
    return _zscore_rows(x)


def _spearman_prep(x: np.ndarray) -> np.ndarray:
    return _zscore_rows(rankdata(x, axis=-1))


def _cosine_prep(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("an RDM is all zeros; cosine similarity with it is undefined")
    return x / norms


#: comparator -> row transform after which the comparison is a plain dot product.
COMPARATORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "pearson": _pearson_prep,
    "spearman": _spearman_prep,
    "cosine": _cosine_prep,
}


def prepare(rdms: np.ndarray, method: str) -> np.ndarray:
    """Transform condensed RDMs so that ``prepare(a) @ prepare(b).T`` is the comparison.

    Parameters
    ----------
    rdms : array of shape (n_pairs,) or (k, n_pairs)
    method : {"pearson", "spearman", "cosine"}

    Returns
    -------
    array of the same shape, float64
    """
    if method not in COMPARATORS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(COMPARATORS)}")
    return COMPARATORS[method](np.asarray(rdms, dtype=np.float64))


def compare_rdms(a: np.ndarray, b: np.ndarray, method: str = "spearman") -> float | np.ndarray:
    """Compare condensed RDMs.

    Parameters
    ----------
    a : array of shape (n_pairs,) or (k, n_pairs)
    b : array of shape (n_pairs,) or (k2, n_pairs)
    method : {"pearson", "spearman", "cosine"}

    Returns
    -------
    float if both are single RDMs, else array of shape (k, k2) (a single RDM counts as k=1).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"RDMs differ in length: {a.shape[-1]} vs {b.shape[-1]}")
    result = np.atleast_2d(prepare(a, method)) @ np.atleast_2d(prepare(b, method)).T
    if a.ndim == 1 and b.ndim == 1:
        return float(result[0, 0])
    return result
