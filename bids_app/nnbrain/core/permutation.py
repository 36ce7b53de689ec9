"""Permutation tests over stimulus labels, batched across layers with shared permutations.

p-values are one-sided (upper tail): ``p = (1 + #{null >= stat}) / (1 + n_permutations)``.
Family-wise (max-statistic) p-values compare each statistic with the permutation
distribution of the maximum over the family (all layers tested against one ROI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnbrain.core.cka import center_gram, check_not_constant, gram_linear
from nnbrain.core.compare import prepare
from nnbrain.core.rdm import n_conditions


@dataclass(frozen=True)
class PermutationResult:
    """Statistics and p-values of one reference tested against ``k`` candidates.

    Attributes
    ----------
    statistic : array of shape (k,)
    p_value : array of shape (k,)
        Uncorrected permutation p-values.
    p_fwe : array of shape (k,)
        Max-statistic family-wise corrected p-values across the ``k`` candidates.
    n_permutations : int
    """

    statistic: np.ndarray
    p_value: np.ndarray
    p_fwe: np.ndarray
    n_permutations: int


def stimulus_permutations(n: int, n_permutations: int, seed: int) -> np.ndarray:
    """Seeded permutations of ``n`` stimulus labels, array of shape (n_permutations, n)."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_permutations, n)), axis=1)


def _p_values(stat: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uncorrected and max-statistic p-values from null of shape (n_permutations, k)."""
    n_perm = null.shape[0]
    p = (1 + (null >= stat[None, :] - 1e-12).sum(axis=0)) / (1 + n_perm)
    max_null = null.max(axis=1)
    p_fwe = (1 + (max_null[:, None] >= stat[None, :] - 1e-12).sum(axis=0)) / (1 + n_perm)
    return p, p_fwe


def mantel_test_batch(
    reference: np.ndarray,
    candidates: np.ndarray,
    method: str = "spearman",
    n_permutations: int = 1000,
    seed: int = 0,
    chunk: int = 1024,
) -> PermutationResult:
    """Mantel test of one condensed RDM against ``k`` others, rows and columns permuted together.

    Parameters
    ----------
    reference : array of shape (n_pairs,)
        E.g. a brain ROI's RDM.
    candidates : array of shape (k, n_pairs)
        E.g. one RDM per layer.
    method : {"pearson", "spearman", "cosine"}
        Comparator (see :func:`nnbrain.core.compare.compare_rdms`).
    n_permutations : int
    seed : int
    chunk : int
        Permutations evaluated per matrix product (bounds memory to chunk x n_pairs).

    Returns
    -------
    PermutationResult
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidates = np.atleast_2d(np.asarray(candidates, dtype=np.float64))
    n = n_conditions(reference.shape[0])
    ref = prepare(reference, method)
    cand = prepare(candidates, method)
    stat = cand @ ref
    square_index = np.zeros((n, n), dtype=np.int64)
    iu, ju = np.triu_indices(n, k=1)
    square_index[iu, ju] = np.arange(iu.size)
    square_index[ju, iu] = np.arange(iu.size)
    perms = stimulus_permutations(n, n_permutations, seed)
    null = np.empty((n_permutations, cand.shape[0]))
    for start in range(0, n_permutations, chunk):
        p = perms[start:start + chunk]
        # Permuting labels only reorders entries, so the rank/z transform commutes with it.
        permuted = ref[square_index[p[:, iu], p[:, ju]]]
        null[start:start + chunk] = permuted @ cand.T
    p_value, p_fwe = _p_values(stat, null)
    return PermutationResult(stat, p_value, p_fwe, n_permutations)


def mantel_test(
    a: np.ndarray, b: np.ndarray, method: str = "spearman", n_permutations: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Mantel test of two condensed RDMs of shape (n_pairs,); returns (statistic, p)."""
    res = mantel_test_batch(a, np.asarray(b)[None, :], method, n_permutations, seed)
    return float(res.statistic[0]), float(res.p_value[0])


def cka_permutation_batch(
    reference: np.ndarray,
    candidates: list[np.ndarray],
    unbiased: bool = True,
    n_permutations: int = 1000,
    seed: int = 0,
    chunk: int = 256,
) -> PermutationResult:
    """Linear CKA of one representation against ``k`` others, stimulus rows permuted.

    Parameters
    ----------
    reference : array of shape (n_samples, n_features)
        E.g. an ROI's patterns.
    candidates : list of k arrays of shape (n_samples, n_features_i)
        E.g. one activation matrix per layer.
    unbiased : bool
        Unbiased HSIC estimator (Song et al. 2007).
    n_permutations, seed, chunk : int

    Returns
    -------
    PermutationResult
    """
    check_not_constant(np.asarray(reference), "reference representation")
    for i, c in enumerate(candidates):
        check_not_constant(np.asarray(c), f"candidate representation {i}")
    lc = center_gram(gram_linear(reference), unbiased)
    kcs = np.stack([center_gram(gram_linear(c), unbiased) for c in candidates])
    n = lc.shape[0]
    norms = np.linalg.norm(kcs.reshape(len(candidates), -1), axis=1) * np.linalg.norm(lc)
    if np.any(norms == 0):
        raise ValueError("a centered Gram matrix is zero (constant representation); CKA undefined")
    k_flat = kcs.reshape(len(candidates), n * n)
    stat = k_flat @ lc.ravel() / norms
    perms = stimulus_permutations(n, n_permutations, seed)
    null = np.empty((n_permutations, len(candidates)))
    for start in range(0, n_permutations, chunk):
        p = perms[start:start + chunk]
        # Centering is permutation-equivariant: center(P K P^T) = P center(K) P^T.
        permuted = lc[p[:, :, None], p[:, None, :]].reshape(len(p), n * n)
        null[start:start + chunk] = permuted @ k_flat.T / norms
    p_value, p_fwe = _p_values(stat, null)
    return PermutationResult(stat, p_value, p_fwe, n_permutations)
