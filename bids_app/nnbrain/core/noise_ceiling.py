"""Noise ceiling of RDM comparisons across subjects.

The bounds of rsatoolbox 0.3.2's ``rsatoolbox.inference.boot_noise_ceiling`` (equal to 1e-10):
each subject's RDM is compared with a pooled RDM, and the comparisons are averaged over subjects.
The upper bound pools all subjects (the subject itself included), the lower bound all other subjects
(leave one subject out). Pooling follows rsatoolbox's ``pool_rdm`` for the comparator:

=========================================== ===============================================
comparator                                  pooled RDM
=========================================== ===============================================
cosine                                      mean of the RDMs scaled to unit root mean square
pearson                                     mean of the z-scored RDMs (ddof=0)
spearman, rho-a, tau-a, tau-b               mean of the tie-averaged ranks
=========================================== ===============================================

(rsatoolbox also shifts the pooled pearson RDM to a minimum of zero, which no correlation sees.)
The taus are computed on the mean ranks, as rsatoolbox does (it warns "Noise ceiling for tau based
on averaged ranks!"). The leave-one-out pools are ``(sum - own) / (n_subjects - 1)``, so every
bound costs one pass over the data instead of rsatoolbox's re-pooling per subject.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from nnbrain.core.compare import ROW_TRANSFORMS, as_condensed, average_ranks, kendall_taus


def _unit_rms(rdms: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(rdms**2, axis=1, keepdims=True))
    if np.any(rms == 0):
        raise ValueError("an RDM is all zeros; cosine similarity with it is undefined")
    return rdms / rms


def _zscore(rdms: np.ndarray) -> np.ndarray:
    std = np.std(rdms, axis=1, keepdims=True)
    if np.any(std == 0):
        raise ValueError("an RDM is constant; correlation with it is undefined")
    return (rdms - rdms.mean(axis=1, keepdims=True)) / std


#: comparator -> per-subject transform whose mean over subjects is rsatoolbox's pooled RDM.
POOLING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cosine": _unit_rms,
    "pearson": _zscore,
    "rho-a": average_ranks,
    "spearman": average_ranks,
    "tau-a": average_ranks,
    "tau-b": average_ranks,
}


def _with_own_pool(
    leave_one_out: np.ndarray, pooled: np.ndarray, rdms: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Comparator of each subject's RDM with the pool without it and with the full pool.

    Parameters
    ----------
    leave_one_out : array of shape (n_subjects, m)
        Row s pools every subject but s.
    pooled : array of shape (m,)
    rdms : array of shape (n_subjects, m)
    method : str

    Returns
    -------
    lower, upper : arrays of shape (n_subjects,)
    """
    if method in ROW_TRANSFORMS:
        transform = ROW_TRANSFORMS[method]
        prepared = transform(rdms)
        return (np.einsum("ij,ij->i", transform(leave_one_out), prepared),
                prepared @ transform(pooled))
    n_subjects = rdms.shape[0]
    subjects = np.arange(n_subjects)
    # one kernel call: pool rows 0..n-1 (leave one out) and row n (all) against every subject
    taus = kendall_taus(np.vstack([leave_one_out, pooled]), rdms,
                        np.r_[subjects, np.full(n_subjects, n_subjects)], np.r_[subjects, subjects],
                        variant=method.removeprefix("tau-"))
    return taus[:n_subjects], taus[n_subjects:]


def rdm_noise_ceiling(rdms: ArrayLike, method: str) -> tuple[float, float]:
    """Lower and upper noise ceiling of a comparator over subjects' RDMs.

    Parameters
    ----------
    rdms : array of shape (n_subjects, n_pairs) or (n_subjects, n_conditions, n_conditions)
        One RDM per subject (condensed in squareform order, or square), n_subjects >= 2.
    method : {"cosine", "pearson", "rho-a", "spearman", "tau-a", "tau-b"}
        Comparator, as in :func:`nnbrain.core.compare.compare_rdms`.

    Returns
    -------
    lower : float
        Mean over subjects of the comparison with the pool of the other subjects.
    upper : float
        Mean over subjects of the comparison with the pool of all subjects.
    """
    if method not in POOLING:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(POOLING)}")
    stack, single = as_condensed(rdms)
    if single or stack.shape[0] < 2:
        raise ValueError(f"a noise ceiling needs the RDMs of at least 2 subjects, got "
                         f"{1 if single else stack.shape[0]}")
    n_subjects = stack.shape[0]
    terms = POOLING[method](stack)
    total = terms.sum(axis=0)
    lower, upper = _with_own_pool((total[None, :] - terms) / (n_subjects - 1), total / n_subjects,
                                  stack, method)
    return float(np.mean(lower)), float(np.mean(upper))
