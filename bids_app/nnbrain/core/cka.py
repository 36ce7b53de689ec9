"""Centered kernel alignment (Kornblith et al. 2019), with the unbiased HSIC estimator.

Follows the released colab: ``gram_linear``, ``center_gram(gram, unbiased)`` and
``cka(gram_x, gram_y, debiased)``; the unbiased centering gives the HSIC estimator of
Song et al. (2007), whose expectation for independent representations is 0.
"""

from __future__ import annotations

import numpy as np


def check_not_constant(x: np.ndarray, name: str = "representation") -> None:
    """Raise ``ValueError`` if every feature of ``x`` (n_samples, n_features) is constant."""
    if np.all(np.ptp(x, axis=0) == 0):
        raise ValueError(f"the {name} is constant over samples; CKA is undefined")


def gram_linear(x: np.ndarray) -> np.ndarray:
    """Linear Gram matrix.

    Parameters
    ----------
    x : array of shape (n_samples, n_features)

    Returns
    -------
    array of shape (n_samples, n_samples)
    """
    x = np.asarray(x, dtype=np.float64)
    return x @ x.T


def center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    """Center a symmetric Gram matrix (a copy).

    With ``unbiased=True`` the diagonal is zeroed and the U-statistic centering of
    Song et al. (2007) is applied, so that the Frobenius inner product of two centered
    Grams is ``n * (n - 3)`` times the unbiased HSIC.

    Parameters
    ----------
    gram : array of shape (n_samples, n_samples)
    unbiased : bool

    Returns
    -------
    array of shape (n_samples, n_samples)
    """
    gram = np.array(gram, dtype=np.float64, copy=True)
    n = gram.shape[0]
    if unbiased:
        if n < 4:
            raise ValueError(f"the unbiased HSIC estimator needs n >= 4 samples, got {n}")
        np.fill_diagonal(gram, 0.0)
        means = gram.sum(axis=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0.0)
    else:
        means = gram.mean(axis=0)
        means -= means.mean() / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def cka_from_centered(kc: np.ndarray, lc: np.ndarray) -> float:
    """CKA of two already centered Gram matrices of shape (n_samples, n_samples)."""
    denom = np.linalg.norm(kc) * np.linalg.norm(lc)
    if denom == 0:
        raise ValueError("a centered Gram matrix is zero (constant representation); CKA undefined")
    return float(kc.ravel() @ lc.ravel() / denom)


def cka(x: np.ndarray, y: np.ndarray, kernel: str = "linear", unbiased: bool = False) -> float:
    """CKA between two representations of the same samples.

    Parameters
    ----------
    x : array of shape (n_samples, n_features_x)
    y : array of shape (n_samples, n_features_y)
    kernel : {"linear"}
        The RBF kernel arrives with the similarity core (issue 14).
    unbiased : bool
        Use the unbiased HSIC estimator (recommended at small n: the biased CKA of
        independent noise is far from 0).

    Returns
    -------
    float
    """
    if kernel != "linear":
        raise ValueError(f"unknown kernel {kernel!r}; choose from ['linear']")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y differ in samples: {x.shape[0]} vs {y.shape[0]}")
    check_not_constant(x, "representation x")
    check_not_constant(y, "representation y")
    return cka_from_centered(
        center_gram(gram_linear(x), unbiased), center_gram(gram_linear(y), unbiased)
    )
