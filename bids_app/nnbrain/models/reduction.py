"""Dimensionality reduction of one layer's activations: PCA and sparse random projection.

Pure numpy. Both methods take the activations of one layer, ``x`` of shape
(n_stimuli, n_units), and return (n_stimuli, n_components) in float64:

- ``pca``: the scores on the leading principal components of the column-centred ``x``
  (``U S`` of its thin SVD), the sign of each component fixed so that its largest loading is
  positive. At most ``min(n_stimuli, n_units)`` components exist; a larger request is capped
  (:func:`effective_components` says how many).
- ``srp``: the sparse random projection of Li, Hastie and Church (2006), defined as
  scikit-learn's ``SparseRandomProjection(density="auto")``: each of the ``n_components`` rows
  of the projection matrix has ``Binomial(n_units, d)`` non-zero entries,
  ``d = 1 / sqrt(n_units)``, at distinct random columns, each
  ``+-sqrt(1 / d) / sqrt(n_components)`` with equal probability; the output is ``x @ R.T``.
  Seeded with numpy's ``default_rng(seed)``; the same seed gives the same matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Bytes of one float64 value (the working precision of both methods).
_FLOAT64 = 8


def effective_components(method: str, n_samples: int, n_features: int, n_components: int) -> int:
    """Number of output columns of ``method`` for an (n_samples, n_features) input.

    >>> effective_components("pca", 30, 1000, 100)
    30
    >>> effective_components("srp", 30, 1000, 100)
    100
    """
    _lookup(method)
    if method == "pca":
        return min(n_components, n_samples, n_features)
    return n_components


def pca(x: np.ndarray, n_components: int, seed: int | None = None) -> np.ndarray:
    """Scores on the leading principal components (centred, thin SVD).

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    n_components : int
        Requested components; capped at ``min(n_samples, n_features)``.
    seed : int, optional
        Unused (the SVD is deterministic); accepted so that every method has one signature.

    Returns
    -------
    array of shape (n_samples, min(n_components, n_samples, n_features)), float64
    """
    k = effective_components("pca", x.shape[0], x.shape[1], n_components)
    centred = np.asarray(x, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return u[:, :k] * (s[:k] * signs)


def srp_matrix(n_features: int, n_components: int,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sparse projection matrix ``R`` of shape (n_components, n_features), in CSR form.

    Parameters
    ----------
    n_features, n_components : int
    seed : int

    Returns
    -------
    indptr : array of shape (n_components + 1,), int64
        Row ``i``'s entries are ``indices[indptr[i]:indptr[i + 1]]``.
    indices : array of shape (nnz,), int64
        Column of each non-zero entry (sorted within a row).
    values : array of shape (nnz,), float64
        ``+-sqrt(1 / density) / sqrt(n_components)``.
    """
    if n_features < 1 or n_components < 1:
        raise ValueError(f"srp needs n_features >= 1 and n_components >= 1, got "
                         f"{n_features} and {n_components}")
    rng = np.random.default_rng(seed)
    density = 1.0 / np.sqrt(n_features)
    counts = rng.binomial(n_features, density, size=n_components)
    indices = np.concatenate([np.sort(rng.choice(n_features, size=c, replace=False))
                              for c in counts]).astype(np.int64)
    scale = np.sqrt(1.0 / density) / np.sqrt(n_components)
    values = (rng.integers(0, 2, size=indices.size) * 2.0 - 1.0) * scale
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, indices, values


def sparse_random_projection(x: np.ndarray, n_components: int, seed: int | None) -> np.ndarray:
    """``x @ R.T`` with the seeded sparse matrix of :func:`srp_matrix`.

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    n_components : int
    seed : int
        Required: the projection is random.

    Returns
    -------
    array of shape (n_samples, n_components), float64
    """
    if seed is None:
        raise ValueError("srp needs a seed")
    indptr, indices, values = srp_matrix(x.shape[1], n_components, seed)
    out = np.empty((x.shape[0], n_components))
    for i in range(n_components):
        cols = indices[indptr[i]:indptr[i + 1]]
        out[:, i] = np.asarray(x[:, cols], dtype=np.float64) @ values[indptr[i]:indptr[i + 1]]
    return out


#: Reduction methods by name; each maps (x, n_components, seed) to an array of shape
#: (n_samples, effective_components(...)).
REDUCTION_METHODS: dict[str, Callable[[np.ndarray, int, int | None], np.ndarray]] = {
    "pca": pca,
    "srp": sparse_random_projection,
}


def _lookup(method: str) -> Callable[[np.ndarray, int, int | None], np.ndarray]:
    try:
        return REDUCTION_METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose from "
                         f"{sorted(REDUCTION_METHODS)}") from None


def reduce(x: np.ndarray, method: str, n_components: int, seed: int | None = None) -> np.ndarray:
    """Reduce one layer's activations; axes after the first are flattened first.

    Parameters
    ----------
    x : array of shape (n_stimuli, ...)
    method : str
        A key of :data:`REDUCTION_METHODS`.
    n_components : int
    seed : int, optional
        Required for ``srp``.

    Returns
    -------
    array of shape (n_stimuli, effective_components(method, n_stimuli, n_units, n_components))
        float64.
    """
    function = _lookup(method)
    return function(np.reshape(x, (x.shape[0], -1)), n_components, seed)


def reduction_memory(method: str, n_samples: int, n_features: int, n_components: int) -> int:
    """Bytes of working memory :func:`reduce` needs beyond its input (an upper estimate).

    PCA holds the centred float64 copy, its right singular vectors and ``U``; SRP the
    projection matrix (about ``n_components sqrt(n_features)`` entries of 16 bytes), one
    gathered float64 column block and the output.
    """
    _lookup(method)
    k = effective_components(method, n_samples, n_features, n_components)
    if method == "pca":
        rank = min(n_samples, n_features)
        return _FLOAT64 * (n_samples * n_features + rank * n_features + n_samples * rank)
    nnz_per_row = int(np.ceil(np.sqrt(n_features))) + 1
    return (16 * n_components * nnz_per_row + _FLOAT64 * n_samples * nnz_per_row * 4
            + _FLOAT64 * n_samples * k)
