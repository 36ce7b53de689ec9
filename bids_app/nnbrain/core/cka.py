"""Centered kernel alignment (Kornblith et al. 2019), with the unbiased HSIC estimator.

Follows the colab released with Kornblith et al. (2019): ``gram_linear``, ``gram_rbf(x,
threshold)``, ``center_gram(gram, unbiased)`` and ``cka(gram_x, gram_y, debiased)``; the
unbiased centering gives the HSIC estimator of Song et al. (2007), whose expectation for
independent representations is 0.

The in-memory functions (``gram_linear``, ``gram_rbf``, ``center_gram``, ``cka_from_centered``)
build n x n Gram matrices and are meant for small n. :func:`cka` and :func:`cka_details` never
do: they give the same value for any n, with memory O(n * (p + block)).

Linear kernel, in feature space
    With ``K = X X'`` and ``L = Y Y'`` (``X`` of shape (n, p_x)), every quantity either HSIC
    estimator needs comes from ``X'Y``, ``X'X``, ``Y'Y`` (p x p), the column sums ``s_x``,
    ``s_y``, the squared row norms ``a_i = |x_i|^2``, ``b_i = |y_i|^2``, and ``X'b``, ``Y'a``:

    * ``tr(KL) = ||X'Y||_F^2``, ``1'K1 = |s_x|^2``, ``1'KL1 = s_x' X'Y s_y``;
    * with zeroed diagonals (``K~ = K - diag(a)``, ``L~ = L - diag(b)``):
      ``tr(K~L~) = ||X'Y||_F^2 - a'b``, ``1'K~1 = |s_x|^2 - 1'a`` and
      ``1'K~L~1 = (X s_x - a)'(Y s_y - b) = s_x' X'Y s_y - s_x' X'b - s_y' Y'a + a'b``.

    The biased HSIC is ``tr(KHLH) = tr(KL) - 2/n 1'KL1 + 1'K1 1'L1 / n^2`` and the unbiased one
    (Song et al. 2007) ``n(n-3) HSIC_1 = tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2))
    - 2/(n-2) 1'K~L~1``. The features are centered first (column means in float64), which only
    improves rounding: both estimators are invariant to translating the features. Cost
    ``n (p_x + p_y)^2`` flops, streamed over ``block_size`` rows.

RBF kernel, one pass over the upper-triangle tiles
    ``K_ij = exp(-d_ij^2 c_x)`` with ``c_x = 1 / (2 sigma^2 m_x)``, where ``m_x`` is the median
    of the n x n matrix of squared Euclidean distances, diagonal zeros included, exactly as the
    colab's ``gram_rbf(x, threshold)`` with ``threshold = sigma`` (bandwidth^2 = sigma^2 m_x).
    Each (block x block) tile of ``-d^2 / 2`` is one GEMM of augmented rows; a compiled kernel
    then adds, per tile, everything the estimators need: ``tr(KL)``, ``tr(KK)``, ``tr(LL)``
    (zero diagonals when unbiased) and the row sums of ``K`` and ``L``, in float64.

    The exact median is only known once every distance has been seen, so the pass does not
    wait for it. A seeded sample of pair distances gives a reference ``m0`` (and a bracket
    around the median); the kernel evaluates ``K0 = exp(-w)`` with ``w = c0 d^2`` and also
    accumulates the moments ``sum K0 L0 w_x^a w_y^b`` (``a + b <= TAYLOR_ORDER``),
    ``sum K0^2 w_x^a``, ``sum L0^2 w_y^b`` and the row sums of ``K0 w_x^a`` and ``L0 w_y^b``,
    while it counts the distances below the bracket and keeps those inside. At the end the
    exact median ``m`` gives ``eps = m0 / m - 1``, and since ``K = K0 exp(-eps w)`` every sum
    follows from its moments as a Taylor series in ``eps``. The truncation error is bounded
    by ``z^(q+1) / (q+1)! e^z`` relative to the sums (``q`` the order, ``z`` at most
    ``2 |eps| max w``); above :data:`TAYLOR_TOL` (spread-out distances, a poor sample) a second
    pass with the exact bandwidth runs instead, so the value never depends on the sample.
    With a known bandwidth (``median_sq_distance``, or the seeded subsample median above
    ``median_max_rows`` rows: the colab median of ``x[idx]``, ``idx = sort(default_rng(seed)
    .choice(n, m, replace=False))``, the same rows for ``X`` and ``Y``) the order is 0: plain
    sums. :func:`cka_details` returns what was used, for the sidecar.

Cost and memory of :func:`cka_details`
    Linear: ``n (p_x + p_y)^2`` flops (two SYRKs and one GEMM per chunk of rows); memory of
    the inputs plus ``block * (p_x + p_y + 3)`` and ``(p_x + 3) (p_x + p_y) + p_y^2`` numbers,
    independent of n.

    RBF: ``n^2 (p_x + p_y + 4)`` GEMM flops (half the pairs, counted twice), ``n^2``
    exponentials and, with a deferred median, about ``n^2 (q + 1)(q + 8) / 2`` more flops of
    moments in the compiled kernel. Memory: the centered, augmented inputs (``n (p_x + p_y +
    4)`` numbers in the compute dtype), two ``block^2`` tiles, two ``block (p + 2)`` row
    strips and ``2 (q + 1) n`` float64 row sums, i.e. O(n (p + block)), never O(n^2); the exact
    median adds the distances inside its bracket, about 4% of the ``n (n - 1) / 2`` pairs
    (14 MiB of float64 at n = 10,000). At the 7T study's size (n = 515,940, p = (1024, 500),
    subsample median) that is 6.3 GB in float64 (3.2 GB with ``compute_dtype="float32"``)
    plus 64 MiB of tiles at ``block=2048``.

Resuming (RBF)
    ``on_progress(state)`` receives an :class:`RBFState` (the partial sums, a copy) every
    ``progress_every`` tiles and when the call ends; ``resume_from=state`` continues from it,
    with the same result as an uninterrupted run, and refuses a state made for other inputs
    or parameters (:class:`StateMismatchError`). Files are the caller's business
    (``nnbrain.utils.cka_checkpoint``).

``compute_dtype="float32"`` runs the GEMMs in float32 (about twice as fast on CPU); the
exponentials and sums stay in float64. It agreed with float64 to about 1e-8 (absolute, on CKA)
in our tests; float64 is the default.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

LOGGER = logging.getLogger(__name__)

#: Above this many rows the RBF bandwidth comes from a seeded subsample of this many rows.
MEDIAN_MAX_ROWS = 10_000
#: Default tile edge for the RBF kernel on CPU (two float64 tiles of 32 MiB).
RBF_BLOCK_CPU = 2048
#: Default tile edge for the RBF kernel on a GPU.
RBF_BLOCK_GPU = 8192
#: Default number of rows per chunk for the linear kernel.
LINEAR_BLOCK = 8192
#: Pairs sampled to bracket the exact median; only speed depends on it, not the value.
MEDIAN_SAMPLE_PAIRS = 20_000
#: Up to this many distinct pair distances the exact median collects them all.
MEDIAN_COLLECT_ALL = 2_000_000
#: Taylor order of the moments accumulated while the exact median is not known yet.
TAYLOR_ORDER = 6
#: Largest accepted bound on the relative truncation error of those Taylor series.
TAYLOR_TOL = 1e-14
#: Tile rows per call of the compiled kernel (fixed, so that sums do not depend on threads).
KERNEL_ROWS = 128
#: Format version of :class:`RBFState`.
STATE_VERSION = 2
COMPUTE_DTYPES = ("float32", "float64")

# exp(-w) in the compiled kernel: Cody-Waite reduction, degree-13 Taylor polynomial (< 1 ulp).
_JB = 512  # columns per step of the kernel (its scratch rows stay in L1)
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125
_LN2_LO = 1.4286068203094172321e-06
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer
_ROUND_MAGIC_BITS = 0x4338000000000000  # its bit pattern
_EXP_POLY = tuple(1.0 / math.factorial(k) for k in range(14))
_NO_BRACKET = (-1.0, -1.0, -1.0, -1.0)  # squared distances are >= 0: count and keep nothing

# --------------------------------------------------------------------------- in-memory (colab)
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


def sq_distances_of_rows(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows (centred first; exact zeros on the
    diagonal, negatives from rounding clipped).

    Parameters
    ----------
    x : array of shape (n_samples, n_features)

    Returns
    -------
    array of shape (n_samples, n_samples), float64
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    sq_norms = np.einsum("ij,ij->i", x, x)
    sq_distances = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * (x @ x.T), 0.0)
    np.fill_diagonal(sq_distances, 0.0)
    return sq_distances


def gram_rbf(x: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """RBF Gram matrix as in the colab: bandwidth^2 = threshold^2 * median squared distance.

    The median is over all n x n squared distances, the n diagonal zeros included. O(n^2)
    memory; :func:`cka` streams instead.

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    threshold : float
        Fraction of the median distance used as the bandwidth (``sigma`` of :func:`cka`).

    Returns
    -------
    array of shape (n_samples, n_samples)
    """
    sq_distances = sq_distances_of_rows(x)
    median = float(np.median(sq_distances))
    _check_median(median, "x")
    return np.exp(-sq_distances / (2 * threshold**2 * median))


def center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    """Center a symmetric Gram matrix, or each of a stack of them (a copy).

    With ``unbiased=True`` the diagonal is zeroed and the U-statistic centering of
    Song et al. (2007) is applied, so that the Frobenius inner product of two centered
    Grams is ``n * (n - 3)`` times the unbiased HSIC.

    Parameters
    ----------
    gram : array of shape (n_samples, n_samples) or (..., n_samples, n_samples)
    unbiased : bool

    Returns
    -------
    array of the shape of ``gram``, float64
    """
    gram = np.array(gram, dtype=np.float64, copy=True)
    n = gram.shape[-1]
    diagonal = np.arange(n)
    if unbiased:
        if n < 4:
            raise ValueError(f"the unbiased HSIC estimator needs n >= 4 samples, got {n}")
        gram[..., diagonal, diagonal] = 0.0
        means = gram.sum(axis=-2) / (n - 2)
        means -= means.sum(axis=-1, keepdims=True) / (2 * (n - 1))
    else:
        means = gram.mean(axis=-2)
        means -= means.mean(axis=-1, keepdims=True) / 2
    gram -= means[..., :, None]
    gram -= means[..., None, :]
    if unbiased:
        gram[..., diagonal, diagonal] = 0.0
    return gram


def cka_from_centered(kc: np.ndarray, lc: np.ndarray) -> float:
    """CKA of two already centered Gram matrices of shape (n_samples, n_samples)."""
    denom = np.linalg.norm(kc) * np.linalg.norm(lc)
    if denom == 0:
        raise ValueError("a centered Gram matrix is zero (constant representation); CKA undefined")
    return float(kc.ravel() @ lc.ravel() / denom)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CKADetails:
    """A CKA value and everything needed to reproduce it (for the sidecar).

    Attributes
    ----------
    value : float
        The CKA; NaN when ``complete`` is False.
    kernel : str
    unbiased : bool
    n : int
        Number of samples (rows).
    n_features : tuple of int
        ``(p_x, p_y)``.
    block_size : int
        Rows per chunk (linear) or tile edge (RBF).
    device : str
        ``"numpy"`` or the torch device used.
    compute_dtype : str
        dtype of the tiles; sums always accumulate in float64.
    sigma : float or None
        The colab's ``threshold`` (RBF only).
    median_sq_distance : tuple of float or None
        ``(m_x, m_y)``, the median squared distances used (RBF only; None while an exact
        median is incomplete).
    bandwidth : tuple of float or None
        ``(sigma * sqrt(m_x), sigma * sqrt(m_y))`` (RBF only).
    median_source : str or None
        ``"exact"`` (all n rows), ``"subsample"`` or ``"user"`` (RBF only).
    median_n_rows : int or None
        Rows the median was taken over (RBF, exact or subsample).
    median_seed : int or None
        Seed of the row subsample (RBF, subsample only).
    hsic_xy, hsic_xx, hsic_yy : float
        The HSIC estimates (biased: ``tr(KHLH) / (n-1)^2``; unbiased: Song's ``HSIC_1``).
    complete : bool
        False when the run stopped early (``max_tiles``); resume from the last state given
        to ``on_progress``.
    tiles_done, n_tiles : int
        Progress of the RBF tile pass (chunks for the linear kernel).
    """

    value: float
    kernel: str
    unbiased: bool
    n: int
    n_features: tuple[int, int]
    block_size: int
    device: str
    compute_dtype: str
    sigma: float | None = None
    median_sq_distance: tuple[float, float] | None = None
    bandwidth: tuple[float, float] | None = None
    median_source: str | None = None
    median_n_rows: int | None = None
    median_seed: int | None = None
    hsic_xy: float = math.nan
    hsic_xx: float = math.nan
    hsic_yy: float = math.nan
    complete: bool = True
    tiles_done: int = 0
    n_tiles: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dictionary (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}



class StateMismatchError(ValueError):
    """A resume state (:class:`RBFState`) was made for other inputs or parameters."""


@dataclass(frozen=True)
class RBFState:
    """Partial sums of the RBF tile pass: what ``on_progress`` receives and ``resume_from`` takes.

    Attributes
    ----------
    key : dict
        What the sums belong to (JSON-able): format version, n, feature counts, tile edge,
        estimator, sigma, compute dtype, a BLAKE2b hash of x and y, the median source, seed
        and medians (the reference ones while the exact median is deferred), the bracket
        and the Taylor order. A state resumes only a call with an equal key.
    next_tile : int
        Tiles ``0 .. next_tile - 1`` (row-major over the upper triangle) are in the sums.
    n_tiles : int
    sums : array of shape (2, n_moments)
        Neumaier-compensated float64 sums (value, correction) of the moments over the pairs
        ``i < j``: ``K0 L0 w_x^a w_y^b`` (``a + b <= order``, ``a`` major), then ``K0^2 w_x^a``
        and ``L0^2 w_y^a`` (``a <= order``).
    rows : array of shape (2, order + 1, n)
        Row sums over ``j != i`` of ``K0 w_x^a`` and of ``L0 w_y^a``.
    below : int array of shape (2,)
        Pair squared distances below the median bracket, for x and y.
    inside_x : array of shape (k_x,)
        The pair squared distances of x inside its bracket.
    inside_y : array of shape (k_y,)
    wmax : array of shape (2,)
        Largest ``w = c0 d^2`` seen, for x and y.
    """

    key: dict[str, Any]
    next_tile: int
    n_tiles: int
    sums: np.ndarray = field(repr=False)
    rows: np.ndarray = field(repr=False)
    below: np.ndarray = field(repr=False)
    inside_x: np.ndarray = field(repr=False)
    inside_y: np.ndarray = field(repr=False)
    wmax: np.ndarray = field(repr=False)

    @property
    def complete(self) -> bool:
        """Whether every tile is in the sums."""
        return self.next_tile >= self.n_tiles


# --------------------------------------------------------------------------- public entry points
def cka(
    x: np.ndarray,
    y: np.ndarray,
    kernel: str = "linear",
    unbiased: bool = False,
    sigma: float = 1.0,
    block_size: int | None = None,
    device: str | None = None,
    **options: Any,
) -> float:
    """CKA between two representations of the same samples.

    Parameters
    ----------
    x : array of shape (n_samples, n_features_x)
    y : array of shape (n_samples, n_features_y)
    kernel : {"linear", "rbf"}
    unbiased : bool
        Use the unbiased HSIC estimator of Song et al. (2007) (recommended at small n: the
        biased CKA of independent noise is far from 0).
    sigma : float
        RBF only: the colab's ``threshold``; bandwidth^2 = sigma^2 * median squared distance.
    block_size : int or None
        Rows per chunk (linear) or tile edge (RBF); the value does not depend on it.
    device : str or None
        None: numpy. ``"cpu"``, ``"cuda"``, ``"cuda:1"``: torch on that device. ``"auto"``:
        CUDA when torch sees one, else numpy.
    **options
        Passed to :func:`cka_details` (``median_sq_distance``, ``median_max_rows``, ``seed``,
        ``compute_dtype``, ``on_progress``, ``resume_from``, ``progress``, ...).

    Returns
    -------
    float
    """
    details = cka_details(x, y, kernel, unbiased, sigma, block_size, device, **options)
    if not details.complete:
        raise RuntimeError(
            "the CKA tile pass stopped early; call again with resume_from=<its last state>"
        )
    return details.value


def cka_details(
    x: np.ndarray,
    y: np.ndarray,
    kernel: str = "linear",
    unbiased: bool = False,
    sigma: float = 1.0,
    block_size: int | None = None,
    device: str | None = None,
    *,
    median_sq_distance: tuple[float, float] | None = None,
    median_max_rows: int | None = MEDIAN_MAX_ROWS,
    seed: int = 0,
    compute_dtype: str = "float64",
    on_progress: Callable[[RBFState], None] | None = None,
    progress_every: int = 1,
    resume_from: RBFState | None = None,
    max_tiles: int | None = None,
    progress: bool = False,
) -> CKADetails:
    """CKA with the parameters it used (see the module docstring for the algorithms).

    Parameters
    ----------
    x : array of shape (n_samples, n_features_x)
    y : array of shape (n_samples, n_features_y)
    kernel : {"linear", "rbf"}
    unbiased : bool
    sigma : float
        RBF: bandwidth^2 = sigma^2 * median squared distance (the colab's ``threshold``).
    block_size : int or None
        Rows per chunk (linear, default :data:`LINEAR_BLOCK`) or tile edge (RBF, default
        :data:`RBF_BLOCK_CPU` or :data:`RBF_BLOCK_GPU`), clipped to n.
    device : str or None
        None: numpy; a torch device name; ``"auto"``.
    median_sq_distance : (float, float) or None
        RBF: user medians ``(m_x, m_y)`` of the squared distances.
    median_max_rows : int or None
        RBF: above this many rows the median comes from a seeded subsample of this many rows;
        None: always exact (the bracket then holds about ``0.02 n^2`` float64 numbers).
    seed : int
        Seed of the subsample (and of the pairs that bracket the exact median, which affect
        only speed).
    compute_dtype : {"float64", "float32"}
        dtype of the GEMMs. float64 (default) agrees with the colab formulas to about 1e-12;
        float32 is about twice as fast on CPU and agreed to about 1e-8 in our tests
        (data-dependent); exponentials and sums are float64 either way.
    on_progress : callable or None
        RBF: called with an :class:`RBFState` every ``progress_every`` tiles and when the
        call ends (e.g. to save a checkpoint: ``nnbrain.utils.cka_checkpoint``).
    progress_every : int
        Tiles between two ``on_progress`` calls.
    resume_from : RBFState or None
        RBF: continue the pass from this state (from ``on_progress``); it must match the
        inputs and parameters (:class:`StateMismatchError` otherwise).
    max_tiles : int or None
        RBF: stop after this many tiles in this call (e.g. a job's wall-time slice); needs
        ``on_progress`` to keep the state; the result then has ``complete=False``.
    progress : bool
        Show a tqdm progress bar (or log progress every 30 s when tqdm is missing).

    Returns
    -------
    CKADetails
    """
    if kernel not in CKA_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {sorted(CKA_KERNELS)}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"unknown compute_dtype {compute_dtype!r}; choose from {sorted(COMPUTE_DTYPES)}"
        )
    x = _as_2d(x, "x")
    y = _as_2d(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y differ in samples: {x.shape[0]} vs {y.shape[0]}")
    n = x.shape[0]
    if unbiased and n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs n >= 4 samples, got {n}")
    if n < 2:
        raise ValueError(f"CKA needs at least 2 samples, got {n}")
    check_not_constant(x, "representation x")
    check_not_constant(y, "representation y")
    if max_tiles is not None and on_progress is None:
        raise ValueError("max_tiles needs on_progress to keep the state to resume from")
    if progress_every < 1:
        raise ValueError(f"progress_every must be >= 1, got {progress_every}")
    if resume_from is not None and kernel != "rbf":
        raise ValueError("resume_from applies to the RBF kernel only")
    backend = _make_backend(device, compute_dtype)
    try:
        return CKA_KERNELS[kernel](
            x, y, unbiased=unbiased, sigma=sigma, block_size=block_size, backend=backend,
            median_sq_distance=median_sq_distance, median_max_rows=median_max_rows, seed=seed,
            resume=_Resume(on_progress, progress_every, resume_from, max_tiles), progress=progress,
        )
    finally:
        backend.close()


@dataclass(frozen=True)
class _Resume:
    """The state arguments of :func:`cka_details`, passed on together."""

    on_progress: Callable[[RBFState], None] | None
    every: int
    state: RBFState | None
    max_tiles: int | None


# --------------------------------------------------------------------------- helpers
def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be of shape (n_samples, n_features), got {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return a


def _check_median(median: float, name: str) -> None:
    if not np.isfinite(median) or median <= 0:
        raise ValueError(
            f"the median squared distance of {name} is {median}: more than half of its rows "
            "coincide (or it holds NaN/inf); pass median_sq_distance explicitly"
        )


def _column_means(x: np.ndarray, name: str) -> np.ndarray:
    mu = x.mean(axis=0, dtype=np.float64)
    if not np.all(np.isfinite(mu)):
        raise ValueError(f"representation {name} holds NaN or infinite values")
    return mu


def _hsic_from_sums(
    n: int, unbiased: bool, trace: float, sum_k: float, sum_l: float, row_dot: float
) -> float:
    """HSIC from ``tr(KL)``, ``1'K1``, ``1'L1``, ``1'KL1`` (zero-diagonal versions if unbiased)."""
    if unbiased:
        scaled = trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * row_dot
        return scaled / (n * (n - 3))
    scaled = trace - 2.0 / n * row_dot + sum_k * sum_l / n**2
    return scaled / (n - 1) ** 2


def _ratio(hxy: float, hxx: float, hyy: float) -> float:
    if not (hxx > 0 and hyy > 0):
        raise ValueError(
            "a representation has zero HSIC with itself (constant or degenerate); CKA undefined"
        )
    return float(hxy / math.sqrt(hxx * hyy))


class _Sum:
    """Neumaier-compensated float64 running sum."""

    __slots__ = ("s", "c")

    def __init__(self, s: float = 0.0, c: float = 0.0) -> None:
        self.s, self.c = float(s), float(c)

    def add(self, v: float) -> None:
        t = self.s + v
        if abs(self.s) >= abs(v):
            self.c += (self.s - t) + v
        else:
            self.c += (v - t) + self.s
        self.s = t

    @property
    def value(self) -> float:
        return self.s + self.c


# --------------------------------------------------------------------------- backends
def _n_threads() -> int:
    """CPU threads for element-wise tile work: the affinity mask, capped by OMP_NUM_THREADS."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        n = min(n, int(env))
    return max(1, n)


@dataclass(frozen=True)
class _TileStats:
    """What one tile adds to the pass (float64 numpy arrays; see :class:`RBFState`).

    ``moments`` (n_moments,) over the tile's pairs (strict upper triangle of a diagonal
    tile); ``rows`` (2, order + 1, tile rows) and ``cols`` (2, order + 1, tile columns), the
    row and column sums of ``K0 w^a``; ``below`` (2,) and ``inside`` (x, y) for the median;
    ``wmax`` (2,).
    """

    moments: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    below: np.ndarray
    inside: tuple[np.ndarray, np.ndarray]
    wmax: np.ndarray


def _n_moments(order: int) -> int:
    """Number of moment sums at a Taylor order: the KL ones, then KK and LL."""
    return (order + 1) * (order + 2) // 2 + 2 * (order + 1)


class _NumpyBackend:
    """Tile operations with numpy (BLAS GEMMs) and a compiled numba kernel per tile."""

    def __init__(self, compute_dtype: str) -> None:
        self.dtype = np.dtype(compute_dtype)
        self.dtype_name = compute_dtype
        self.name = "numpy"
        self.default_block = RBF_BLOCK_CPU
        self.threads = _n_threads()
        self._pool: Any = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _map(self, fn: Callable[[int], Any], n_tasks: int) -> list[Any]:
        """``fn(k)`` for k < n_tasks on ``self.threads`` threads (the work releases the GIL)."""
        if self.threads == 1 or n_tasks == 1:
            return [fn(k) for k in range(n_tasks)]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads)
        return list(self._pool.map(fn, range(n_tasks)))

    def _map_rows(self, fn: Callable[[int, int], Any], n_rows: int) -> list[Any]:
        """``fn(r0, r1)`` over ``self.threads`` row ranges."""
        if n_rows < 256:
            return [fn(0, n_rows)]
        edges = np.linspace(0, n_rows, self.threads + 1).astype(int)
        return self._map(lambda k: fn(edges[k], edges[k + 1]), self.threads)

    def put(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def take_columns(self, a: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.take(a, cols, axis=1)

    def empty_tile(self, block: int) -> np.ndarray:
        return np.empty((block, block), dtype=self.dtype)

    def gram_tile(
        self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, diagonal: bool = False
    ) -> np.ndarray:
        """``a @ b.T``: the tile of ``-d^2 / 2``.

        A diagonal tile (``b`` is the strip ``a`` came from) runs as one SYRK on the data
        columns (half the flops), then adds the row terms.
        """
        if not diagonal:
            return np.matmul(a, b.T, out=out)
        p = b.shape[1] - 2
        xb = np.ascontiguousarray(b[:, :p])
        t = np.matmul(xb, xb.T, out=out)
        alpha = np.ascontiguousarray(b[:, p])

        def add(r0: int, r1: int) -> None:
            t[r0:r1] += alpha[r0:r1, None]
            t[r0:r1] += alpha[None, :]

        self._map_rows(add, t.shape[0])
        return t

    def tile_stats(
        self, gx: np.ndarray, gy: np.ndarray, diagonal: bool, scales: tuple[float, float],
        bounds: tuple[float, float, float, float], order: int,
    ) -> _TileStats:
        """Moments, row/column sums and median counts of one tile pair (compiled kernel).

        Parameters
        ----------
        gx, gy : arrays of shape (rows, cols)
            Tiles of ``-d^2 / 2`` for x and y.
        diagonal : bool
            Only the strict upper triangle counts.
        scales : (float, float)
            ``c0`` of x and y: ``w = c0 d^2``, ``K0 = exp(-w)``.
        bounds : (lo_x, hi_x, lo_y, hi_y)
            Median bracket; distances below are counted, those inside kept.
        order : int
            Taylor order of the moments.
        """
        stats_kernel, collect_kernel = _rbf_kernels()
        bi, bj = gx.shape
        n_chunks = -(-bi // KERNEL_ROWS)
        moments = np.zeros((n_chunks, _n_moments(order)))
        rows = np.zeros((2, order + 1, bi))
        cols = np.zeros((n_chunks, 2, order + 1, bj))
        counts = np.zeros((n_chunks, 4), dtype=np.int64)
        inside_rows = np.zeros((2, bi), dtype=np.int64)
        wmax = np.zeros((n_chunks, 2))
        bounds_arr = np.array(bounds, dtype=np.float64)

        def run(k: int) -> None:
            r0 = k * KERNEL_ROWS
            stats_kernel(gx, gy, r0, min(bi, r0 + KERNEL_ROWS), diagonal, scales[0],
                         scales[1], bounds_arr, order, moments[k], rows, cols[k], counts[k],
                         inside_rows, wmax[k])

        self._map(run, n_chunks)
        totals = counts.sum(axis=0)
        inside = []
        for s, g in enumerate((gx, gy)):
            offsets = np.concatenate([[0], np.cumsum(inside_rows[s])])
            kept = np.empty(int(totals[2 * s + 1]))
            if kept.size:
                self._map(lambda k, g=g, offsets=offsets, kept=kept, s=s: collect_kernel(
                    g, k * KERNEL_ROWS, min(bi, (k + 1) * KERNEL_ROWS), diagonal,
                    bounds[2 * s], bounds[2 * s + 1], offsets, kept), n_chunks)
            inside.append(kept)
        return _TileStats(moments.sum(axis=0), rows, cols.sum(axis=0), totals[0::2],
                          (inside[0], inside[1]), wmax.max(axis=0))

    def count_collect(
        self, t: np.ndarray, lo: float, hi: float, upper_only: bool
    ) -> tuple[int, np.ndarray]:
        """From a tile ``t = -d^2 / 2``: #(d^2 < lo) and the d^2 in [lo, hi] (d^2 clipped at 0).

        With ``upper_only`` (a diagonal tile) only the strict upper triangle counts.
        """

        def part(r0: int, r1: int) -> tuple[int, np.ndarray]:
            rows = t[r0:r1]
            if upper_only:  # NaN fails every comparison
                rows[np.tri(r1 - r0, rows.shape[1], k=r0, dtype=bool)] = np.nan
            if lo > 0:
                below = int(np.count_nonzero(rows > -0.5 * lo))
                mask = rows <= -0.5 * lo
                mask &= rows >= -0.5 * hi
            else:
                below = 0
                mask = rows >= -0.5 * hi
            inside = np.multiply(rows[mask], -2.0, dtype=np.float64)
            return below, np.maximum(inside, 0.0, out=inside)

        parts = self._map_rows(part, t.shape[0])
        return sum(b for b, _ in parts), np.concatenate([v for _, v in parts])

    # linear kernel
    def linear_chunk(
        self, x: np.ndarray, mu_x: np.ndarray, y: np.ndarray, mu_y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cross-products of one chunk of centered rows, augmented as in :func:`_cka_linear`.

        The rows ``[x_i, 1, a_i, b_i, y_i]`` go through one SYRK (its blocks are ``X'X``,
        ``X'Y``, ``Y'Y`` and the augmented sums), a little faster than three calls.
        """
        m, px = x.shape
        py = y.shape[1]
        width = px + 3 + py
        if getattr(self, "_lin_buf", None) is None or self._lin_buf.shape[1] != width or (
                self._lin_buf.shape[0] < m):
            self._lin_buf = np.empty((m, width), self.dtype)
        z = self._lin_buf[:m]
        np.subtract(x, mu_x, out=z[:, :px], casting="same_kind")
        np.subtract(y, mu_y, out=z[:, px + 3:], casting="same_kind")
        a = np.einsum("ij,ij->i", z[:, :px], z[:, :px], dtype=np.float64)
        b = np.einsum("ij,ij->i", z[:, px + 3:], z[:, px + 3:], dtype=np.float64)
        z[:, px] = 1.0
        z[:, px + 1] = a
        z[:, px + 2] = b
        full = np.asarray(z.T @ z, dtype=np.float64)  # one SYRK
        return full[:px + 3, :px + 3], full[:px + 3, px + 3:], full[px + 3:, px + 3:], a, b



class _TorchBackend:
    """The same operations on a torch device (imported lazily)."""

    def __init__(self, device: str, compute_dtype: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = getattr(torch, compute_dtype)
        self.dtype_name = compute_dtype
        self.name = f"torch:{self.device}"
        self.default_block = RBF_BLOCK_GPU if self.device.type == "cuda" else RBF_BLOCK_CPU

    def put(self, a: np.ndarray) -> Any:
        return self.torch.as_tensor(np.ascontiguousarray(a)).to(self.device, self.dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().to("cpu", self.torch.float64).numpy()

    def take_columns(self, a: Any, cols: np.ndarray) -> Any:
        return a[:, self.torch.as_tensor(cols, device=self.device)].contiguous()

    def empty_tile(self, block: int) -> Any:
        return self.torch.empty((block, block), dtype=self.dtype, device=self.device)

    def close(self) -> None:
        pass

    def gram_tile(self, a: Any, b: Any, out: Any | None = None, diagonal: bool = False) -> Any:
        if out is not None:
            return self.torch.mm(a, b.T, out=out)
        return self.torch.mm(a, b.T)

    def tile_stats(
        self, gx: Any, gy: Any, diagonal: bool, scales: tuple[float, float],
        bounds: tuple[float, float, float, float], order: int,
    ) -> _TileStats:
        """As :meth:`_NumpyBackend.tile_stats`, with float64 tensor operations."""
        torch = self.torch
        upper = None
        if diagonal:
            upper = torch.ones(gx.shape, dtype=torch.bool, device=self.device).triu_(1)
        w, e, below, inside, wmax = [], [], [], [], []
        for s, g in enumerate((gx, gy)):
            d2 = (g.to(torch.float64) * -2.0).clamp_(min=0.0)
            pairs = d2 if upper is None else d2[upper]
            lo, hi = bounds[2 * s], bounds[2 * s + 1]
            below.append(int((pairs < lo).sum().item()))
            inside.append(self.to_numpy(pairs[(pairs >= lo) & (pairs <= hi)]))
            ws = d2 * scales[s]
            wmax.append(float(pairs.max().item()) * scales[s] if pairs.numel() else 0.0)
            es = torch.exp(-ws)
            if upper is not None:
                es *= upper
            w.append(ws)
            e.append(es)
        sums = []
        t = e[0] * e[1]
        for a in range(order + 1):
            q = t
            for b in range(order + 1 - a):
                sums.append(q.sum())
                q = q * w[1]
            t = t * w[0]
        rows, cols = [], []
        for s in range(2):
            q = e[s]
            for a in range(order + 1):
                rows.append(q.sum(dim=1))
                cols.append(q.sum(dim=0))
                sums.append((q * e[s]).sum())
                q = q * w[s]
        shape = (2, order + 1, -1)
        return _TileStats(
            self.to_numpy(torch.stack(sums)), self.to_numpy(torch.stack(rows)).reshape(shape),
            self.to_numpy(torch.stack(cols)).reshape(shape), np.array(below, dtype=np.int64),
            (inside[0], inside[1]), np.array(wmax),
        )

    def count_collect(
        self, t: Any, lo: float, hi: float, upper_only: bool
    ) -> tuple[int, np.ndarray]:
        torch = self.torch
        if upper_only:
            mask = torch.ones(t.shape, dtype=torch.bool, device=self.device).tril_()
            t.masked_fill_(mask, float("nan"))
        if lo > 0:
            below = int((t > -0.5 * lo).sum().item())
            mask = (t <= -0.5 * lo) & (t >= -0.5 * hi)
        else:
            below = 0
            mask = t >= -0.5 * hi
        inside = (t[mask].to(torch.float64) * -2.0).clamp_(min=0.0)
        return below, self.to_numpy(inside)

    def linear_chunk(
        self, x: np.ndarray, mu_x: np.ndarray, y: np.ndarray, mu_y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        torch = self.torch
        f64 = torch.float64
        xc = torch.as_tensor(np.ascontiguousarray(x)).to(self.device).to(f64)
        xc = (xc - torch.as_tensor(mu_x, device=self.device)).to(self.dtype)
        yc = torch.as_tensor(np.ascontiguousarray(y)).to(self.device).to(f64)
        yc = (yc - torch.as_tensor(mu_y, device=self.device)).to(self.dtype)
        a = (xc.to(f64) ** 2).sum(dim=1)
        b = (yc.to(f64) ** 2).sum(dim=1)
        ones = torch.ones((xc.shape[0], 1), dtype=self.dtype, device=self.device)
        xa = torch.cat([xc, ones, a[:, None].to(self.dtype), b[:, None].to(self.dtype)], dim=1)
        return (self.to_numpy(xa.T @ xa), self.to_numpy(xa.T @ yc), self.to_numpy(yc.T @ yc),
                self.to_numpy(a), self.to_numpy(b))


def _make_backend(device: str | None, compute_dtype: str) -> _NumpyBackend | _TorchBackend:
    if device is None:
        return _NumpyBackend(compute_dtype)
    if device == "auto":
        try:
            import torch
        except ImportError:
            return _NumpyBackend(compute_dtype)
        if torch.cuda.is_available():
            return _TorchBackend("cuda", compute_dtype)
        return _NumpyBackend(compute_dtype)
    return _TorchBackend(device, compute_dtype)


# --------------------------------------------------------------------------- linear kernel
def _cka_linear(
    x: np.ndarray,
    y: np.ndarray,
    *,
    unbiased: bool,
    block_size: int | None,
    backend: _NumpyBackend | _TorchBackend,
    **_: Any,
) -> CKADetails:
    """Linear CKA in feature space (no n x n Gram), streamed over chunks of rows.

    Per chunk, the centered rows are augmented to ``[x_i, 1, a_i, b_i]`` so that one SYRK
    gives ``X'X``, ``s_x``, ``X'a``, ``X'b`` and one GEMM with ``Y`` gives ``X'Y``, ``s_y``,
    ``Y'a``, ``Y'b``; the scalar sums of ``a`` and ``b`` accumulate in float64.
    """
    n, px = x.shape
    py = y.shape[1]
    block = min(n, int(block_size) if block_size else LINEAR_BLOCK)
    if block < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    mu_x, mu_y = _column_means(x, "x"), _column_means(y, "y")
    g = np.zeros((px + 3, px + 3))
    h = np.zeros((px + 3, py))
    syy = np.zeros((py, py))
    sums = {k: _Sum() for k in ("a", "b", "aa", "bb", "ab")}
    n_chunks = -(-n // block)
    for start in range(0, n, block):
        sl = slice(start, min(n, start + block))
        gc, hc, sc, a, b = backend.linear_chunk(x[sl], mu_x, y[sl], mu_y)
        g += gc
        h += hc
        syy += sc
        for key, val in (("a", a.sum()), ("b", b.sum()), ("aa", a @ a), ("bb", b @ b),
                         ("ab", a @ b)):
            sums[key].add(float(val))
    sa, sb, saa, sbb, sab = (sums[k].value for k in ("a", "b", "aa", "bb", "ab"))
    sxx, sxy = g[:px, :px], h[:px]
    s_x, xt_a, xt_b = g[:px, px], g[:px, px + 1], g[:px, px + 2]
    s_y, yt_a, yt_b = h[px], h[px + 1], h[px + 2]
    fxy, fxx, fyy = float(np.vdot(sxy, sxy)), float(np.vdot(sxx, sxx)), float(np.vdot(syy, syy))
    if unbiased:
        hxy = _hsic_from_sums(
            n, True, fxy - sab, s_x @ s_x - sa, s_y @ s_y - sb,
            s_x @ sxy @ s_y - s_x @ xt_b - s_y @ yt_a + sab,
        )
        hxx = _hsic_from_sums(
            n, True, fxx - saa, s_x @ s_x - sa, s_x @ s_x - sa,
            s_x @ sxx @ s_x - 2 * s_x @ xt_a + saa,
        )
        hyy = _hsic_from_sums(
            n, True, fyy - sbb, s_y @ s_y - sb, s_y @ s_y - sb,
            s_y @ syy @ s_y - 2 * s_y @ yt_b + sbb,
        )
    else:
        hxy = _hsic_from_sums(n, False, fxy, s_x @ s_x, s_y @ s_y, s_x @ sxy @ s_y)
        hxx = _hsic_from_sums(n, False, fxx, s_x @ s_x, s_x @ s_x, s_x @ sxx @ s_x)
        hyy = _hsic_from_sums(n, False, fyy, s_y @ s_y, s_y @ s_y, s_y @ syy @ s_y)
    return CKADetails(
        value=_ratio(hxy, hxx, hyy), kernel="linear", unbiased=unbiased, n=n,
        n_features=(px, py), block_size=block, device=backend.name,
        compute_dtype=backend.dtype_name, hsic_xy=hxy, hsic_xx=hxx, hsic_yy=hyy,
        tiles_done=n_chunks, n_tiles=n_chunks,
    )


# --------------------------------------------------------------------------- RBF kernel
def _augmented_rows(x: np.ndarray, mu: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rows ``[x_i - mu, -|x_i - mu|^2 / 2, 1]`` (computed in float64, stored in ``dtype``).

    With ``a_i`` the same row with its last two entries swapped, ``a_i . b_j = -d_ij^2 / 2``:
    one GEMM gives a tile of squared distances.
    """
    n, p = x.shape
    out = np.empty((n, p + 2), dtype=dtype)
    step = max(1, 2**22 // max(p, 1))
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        xc = np.subtract(x[sl], mu, dtype=np.float64)
        out[sl, :p] = xc
        out[sl, p] = -0.5 * np.einsum("ij,ij->i", xc, xc)
        out[sl, p + 1] = 1.0
    return out


def _swap_last_two(p: int) -> np.ndarray:
    return np.r_[np.arange(p), p + 1, p]


def _median_ranks(n: int) -> list[int]:
    """1-based ranks, among the ``n (n-1) / 2`` distinct pair distances, of the n x n median.

    The n x n matrix holds n diagonal zeros and every pair distance twice, so its k-th
    smallest entry is 0 for k <= n and the ``ceil((k - n) / 2)``-th pair distance otherwise
    (rank 0 stands for a diagonal zero).
    """
    total = n * n
    ks = [(total + 1) // 2] if total % 2 else [total // 2, total // 2 + 1]
    return [0 if k <= n else (k - n + 1) // 2 for k in ks]


def median_sq_distance(
    x: np.ndarray, *, block_size: int | None = None, seed: int = 0, device: str | None = None
) -> float:
    """The colab's median of the n x n squared distances of ``x``, computed exactly, streamed.

    ``np.median`` of the full matrix of squared Euclidean distances between the rows, the n
    diagonal zeros included (as in the colab's ``gram_rbf``), without building it: memory
    O(n * block) plus a bracket of about 1% of the pair distances.

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    block_size : int or None
        Tile edge; the value does not depend on it.
    seed : int
        Seed of the sample that brackets the median (the value does not depend on it).
    device : str or None
        As in :func:`cka`.

    Returns
    -------
    float
    """
    x = _as_2d(x, "x")
    backend = _make_backend(device, "float64")
    rows = _augmented_rows(x, _column_means(x, "x"), np.dtype(np.float64))
    try:
        return _exact_median(x, backend.put(rows), backend, block_size, seed)
    finally:
        backend.close()


def _exact_median(
    raw: np.ndarray,
    dev: Any,
    backend: _NumpyBackend | _TorchBackend,
    block_size: int | None,
    seed: int,
    sample_pairs: int = MEDIAN_SAMPLE_PAIRS,
    collect_all: int = MEDIAN_COLLECT_ALL,
) -> float:
    """Exact colab median of the rows of ``raw`` (n, p); ``dev``: their augmented rows.

    Streams over the upper-triangle tiles: a seeded sample of pair distances brackets the
    median, one pass counts the distances below the bracket and keeps those inside, and the
    median is selected among them. If the sample missed, the bracket widens and the pass
    repeats, so the value never depends on the seed.
    """
    n = raw.shape[0]
    block = min(n, int(block_size) if block_size else backend.default_block)
    sample = None
    if n * (n - 1) // 2 > collect_all:
        sample = _sample_pair_distances(raw, sample_pairs, seed)
    return _widening_median(dev, n, block, backend, sample, 5.0)


def _widening_median(
    dev: Any, n: int, block: int, backend: _NumpyBackend | _TorchBackend,
    sample: np.ndarray | None, z: float,
) -> float:
    """Count/collect passes over the augmented rows ``dev`` until the bracket holds the median.

    The bracket is ``z`` binomial standard errors around the median in the sorted pair
    ``sample`` (everything when None); it widens four-fold after each miss.
    """
    while True:
        lo, hi = _median_bracket(sample, n, z)
        below, inside = _count_collect_pass(dev, n, block, backend, lo, hi)
        median = _median_from_counts(n, below, inside)
        if median is not None:
            return median
        LOGGER.debug("median bracket [%g, %g] missed; widening", lo, hi)
        z *= 4.0
        if z > 1e4:
            sample = None


def _median_from_counts(n: int, below: int, inside: np.ndarray) -> float | None:
    """The colab median from #(pair d^2 < lo) and the pair d^2 in [lo, hi] (any order).

    None when a median rank falls outside the bracket.
    """
    ranks = _median_ranks(n)
    needed = sorted({r for r in ranks if r > 0})
    if not all(below < r <= below + inside.size for r in needed):
        return None
    kth = [r - below - 1 for r in needed]
    part = np.partition(inside, kth) if kth else inside
    values = {0: 0.0, **{r: float(part[k]) for r, k in zip(needed, kth)}}
    return float(np.mean([values[r] for r in ranks]))


def _sample_pair_distances(raw: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted squared distances of ``size`` uniformly drawn pairs ``i != j`` (seeded)."""
    n, p = raw.shape
    rng = np.random.default_rng([seed, 1])
    i = rng.integers(0, n, size)
    j = rng.integers(0, n - 1, size)
    j += j >= i
    out = np.empty(size)
    step = max(1, 2**21 // max(p, 1))
    for start in range(0, size, step):
        sl = slice(start, min(size, start + step))
        diff = np.subtract(raw[i[sl]], raw[j[sl]], dtype=np.float64)
        out[sl] = np.einsum("ij,ij->i", diff, diff)
    out.sort()
    return out


def _sample_median(sample: np.ndarray, n: int) -> float:
    """The colab median estimated from a sorted sample of pair distances."""
    m = n * (n - 1) // 2
    picks = [0.0 if r == 0 else float(sample[min(sample.size - 1, r * sample.size // m)])
             for r in _median_ranks(n)]
    return float(np.mean(picks))


def _median_bracket(sample: np.ndarray | None, n: int, z: float) -> tuple[float, float]:
    """``(lo, hi)`` around the median ranks in a sorted pair sample; everything when None."""
    needed = [r for r in _median_ranks(n) if r > 0]
    if sample is None or not needed:
        return -math.inf, math.inf
    m = n * (n - 1) // 2
    return _bracket(sample, [r / m for r in needed], z)


def _bracket(sample: np.ndarray, quantiles: list[float], z: float) -> tuple[float, float]:
    s = sample.size
    q_lo, q_hi = min(quantiles), max(quantiles)
    d_lo = z * math.sqrt(q_lo * (1 - q_lo) / s) + 2.0 / s
    d_hi = z * math.sqrt(q_hi * (1 - q_hi) / s) + 2.0 / s
    i_lo = math.floor((q_lo - d_lo) * s)
    i_hi = math.ceil((q_hi + d_hi) * s)
    lo = float(sample[i_lo]) if i_lo >= 0 else -math.inf
    hi = float(sample[i_hi]) if i_hi < s else math.inf
    return lo, hi


def _count_collect_pass(
    dev: Any, n: int, block: int, backend: _NumpyBackend | _TorchBackend, lo: float, hi: float,
) -> tuple[int, np.ndarray]:
    """Over the distinct pairs: #(d^2 < lo) and the d^2 in [lo, hi]."""
    perm = _swap_last_two(dev.shape[1] - 2)
    below = 0
    kept: list[np.ndarray] = []
    for i0 in range(0, n, block):
        a_i = backend.take_columns(dev[i0:i0 + block], perm)
        for j0 in range(i0, n, block):
            t = backend.gram_tile(a_i, dev[j0:j0 + block], diagonal=(i0 == j0))
            b, inside = backend.count_collect(t, lo, hi, upper_only=(i0 == j0))
            below += b
            if inside.size:
                kept.append(inside)
    return below, (np.concatenate(kept) if kept else np.empty(0))


@dataclass(frozen=True)
class _Bandwidth:
    """How a tile pass scales the distances.

    ``medians`` are the final ones when ``order`` is 0, else the sample's reference medians
    ``m0`` (the exact ones come from the pass's ``bounds`` and the ``samples`` if it missed).
    """

    source: str
    medians: tuple[float, float]
    order: int = 0
    bounds: tuple[float, float, float, float] = _NO_BRACKET
    n_rows: int | None = None
    seed: int | None = None
    samples: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def scales(self, sigma: float) -> tuple[float, float]:
        """``c0 = 1 / (2 sigma^2 m0)`` of x and y."""
        return tuple(1.0 / (2.0 * sigma**2 * m) for m in self.medians)  # type: ignore[return-value]


def _plan_bandwidth(
    x: np.ndarray, y: np.ndarray, hosts: tuple[np.ndarray, np.ndarray], devs: tuple[Any, Any],
    backend: _NumpyBackend | _TorchBackend, block: int, *,
    median_sq_distance: tuple[float, float] | None, median_max_rows: int | None, seed: int,
) -> _Bandwidth:
    """User medians, the seeded subsample's exact medians, or a deferred exact median.

    A deferred median needs a positive sample median (else the exact median is computed
    first, in its own passes).
    """
    n = x.shape[0]
    if median_sq_distance is not None:
        mx, my = (float(v) for v in median_sq_distance)
        return _Bandwidth("user", (mx, my))
    if median_max_rows is not None and n > median_max_rows:
        m = int(median_max_rows)
        idx = np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
        LOGGER.info("median squared distances over a subsample of %d of %d rows (seed %d)",
                    m, n, seed)
        mx = _exact_median(x[idx], backend.put(hosts[0][idx]), backend, min(block, m), seed)
        my = _exact_median(y[idx], backend.put(hosts[1][idx]), backend, min(block, m), seed)
        return _Bandwidth("subsample", (mx, my), n_rows=m, seed=seed)
    samples = (_sample_pair_distances(x, MEDIAN_SAMPLE_PAIRS, seed),
               _sample_pair_distances(y, MEDIAN_SAMPLE_PAIRS, seed))
    ref = (_sample_median(samples[0], n), _sample_median(samples[1], n))
    if not all(np.isfinite(ref)) or min(ref) <= 0:
        LOGGER.info("exact median squared distances over %d rows, before the pass", n)
        medians = (_widening_median(devs[0], n, block, backend, samples[0], 5.0),
                   _widening_median(devs[1], n, block, backend, samples[1], 5.0))
        return _Bandwidth("exact", medians, n_rows=n)
    collect_all = n * (n - 1) // 2 <= MEDIAN_COLLECT_ALL
    bx, by = ((-math.inf, math.inf) if collect_all else _median_bracket(s, n, 5.0)
              for s in samples)
    return _Bandwidth("exact", ref, TAYLOR_ORDER, (*bx, *by), n, samples=samples)


def _data_digest(x: np.ndarray, y: np.ndarray) -> str:
    """BLAKE2b (128 bits) of the dtypes, shapes and values of x and y."""
    digest = hashlib.blake2b(digest_size=16)
    for a in (x, y):
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        step = max(1, 2**24 // max(a.itemsize * a.shape[1], 1))
        for start in range(0, a.shape[0], step):
            digest.update(np.ascontiguousarray(a[start:start + step]).data)
    return digest.hexdigest()


def _state_key(base: dict[str, Any], bw: _Bandwidth) -> dict[str, Any]:
    """The key of :class:`RBFState`: the call's ``base`` fields plus the bandwidth plan."""
    return {**base, "median_source": bw.source, "median_rows": bw.n_rows,
            "median_seed": bw.seed, "medians": list(bw.medians), "bracket": list(bw.bounds),
            "order": bw.order}


def _check_state(state: RBFState, key: dict[str, Any]) -> None:
    """Raise :class:`StateMismatchError` naming every field where ``state.key`` differs."""
    diffs = [f"{k}: {state.key.get(k)!r} != {v!r}" for k, v in key.items()
             if state.key.get(k) != v]
    if diffs:
        raise StateMismatchError(
            "the RBF CKA state was made for other inputs or parameters ("
            + "; ".join(diffs) + "); start without it"
        )


def _resume_bandwidth(state: RBFState, base: dict[str, Any], bw: _Bandwidth) -> _Bandwidth:
    """The bandwidth to resume ``state`` with (checked against the call).

    A state of the second pass of a deferred exact median (order 0, exact medians) resumes
    that pass, skipping the first.
    """
    _check_state(state, base)
    key = state.key
    if bw.source == "exact" and key.get("median_source") == "exact" and key.get("order") == 0:
        medians = (float(key["medians"][0]), float(key["medians"][1]))
        bw = _Bandwidth("exact", medians, n_rows=bw.n_rows)
    _check_state(state, _state_key(base, bw))
    return bw


class _PassSums:
    """Running sums of one tile pass (mutable); :class:`RBFState` is its snapshot."""

    def __init__(self, n: int, order: int, state: RBFState | None = None) -> None:
        self.next_tile = 0
        self.sums = np.zeros((2, _n_moments(order)))
        self.rows = np.zeros((2, order + 1, n))
        self.below = np.zeros(2, dtype=np.int64)
        self.inside: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.wmax = np.zeros(2)
        if state is not None:
            self.next_tile = int(state.next_tile)
            self.sums[...] = state.sums
            self.rows[...] = state.rows
            self.below[...] = state.below
            self.inside = ([np.array(state.inside_x, dtype=np.float64)],
                           [np.array(state.inside_y, dtype=np.float64)])
            self.wmax[...] = state.wmax

    def add(self, stats: _TileStats, i0: int, i1: int, j0: int, j1: int) -> None:
        """Add a tile's pairs (twice: ``(i, j)`` and ``(j, i)``) and its row/column sums."""
        value, correction = self.sums
        v = 2.0 * stats.moments
        t = value + v
        correction += np.where(np.abs(value) >= np.abs(v), (value - t) + v, (v - t) + value)
        value[...] = t
        self.rows[:, :, i0:i1] += stats.rows
        self.rows[:, :, j0:j1] += stats.cols
        self.below += stats.below
        for kept, new in zip(self.inside, stats.inside):
            if new.size:
                kept.append(new)
        np.maximum(self.wmax, stats.wmax, out=self.wmax)
        self.next_tile += 1

    def inside_values(self, side: int) -> np.ndarray:
        """The kept distances of x (0) or y (1), as one array."""
        kept = self.inside[side]
        if len(kept) != 1:
            kept[:] = [np.concatenate(kept) if kept else np.empty(0)]
        return kept[0]

    def snapshot(self, key: dict[str, Any], n_tiles: int) -> RBFState:
        return RBFState(key=dict(key), next_tile=self.next_tile, n_tiles=n_tiles,
                        sums=self.sums.copy(), rows=self.rows.copy(), below=self.below.copy(),
                        inside_x=self.inside_values(0).copy(),
                        inside_y=self.inside_values(1).copy(), wmax=self.wmax.copy())


def _taylor_coefficients(eps: float, order: int) -> np.ndarray:
    """``(-eps)^a / a!`` for ``a = 0 .. order``: array of shape (order + 1,)."""
    return np.array([(-eps) ** a / math.factorial(a) for a in range(order + 1)])


def _taylor_bound(eps: tuple[float, float], wmax: np.ndarray, order: int) -> float:
    """Bound on the relative truncation error of every Taylor-summed quantity."""
    zx, zy = abs(eps[0]) * float(wmax[0]), abs(eps[1]) * float(wmax[1])
    z = max(zx + zy, 2.0 * zx, 2.0 * zy)
    return z ** (order + 1) / math.factorial(order + 1) * math.exp(z)


def _hsic_from_pass(
    acc: _PassSums, n: int, unbiased: bool, order: int, eps: tuple[float, float]
) -> tuple[float, float, float]:
    """``(HSIC_xy, HSIC_xx, HSIC_yy)`` from the moments, at ``K = K0 exp(-eps w)``.

    The diagonal (``K_ii = 1``, ``w = 0``) enters here when the estimator is biased.
    """
    cx, cy = _taylor_coefficients(eps[0], order), _taylor_coefficients(eps[1], order)
    total = acc.sums[0] + acc.sums[1]
    n_kl = (order + 1) * (order + 2) // 2
    pairs = [(a, b) for a in range(order + 1) for b in range(order + 1 - a)]
    tr_kl = math.fsum(cx[a] * cy[b] * total[m] for m, (a, b) in enumerate(pairs))
    kk = total[n_kl:n_kl + order + 1]
    ll = total[n_kl + order + 1:]
    tr_kk = math.fsum(_taylor_coefficients(2.0 * eps[0], order) * kk)
    tr_ll = math.fsum(_taylor_coefficients(2.0 * eps[1], order) * ll)
    rk, rl = cx @ acc.rows[0], cy @ acc.rows[1]
    if not unbiased:
        tr_kl, tr_kk, tr_ll = tr_kl + n, tr_kk + n, tr_ll + n
        rk += 1.0
        rl += 1.0
    sk, sl_ = float(rk.sum()), float(rl.sum())
    return (_hsic_from_sums(n, unbiased, tr_kl, sk, sl_, float(rk @ rl)),
            _hsic_from_sums(n, unbiased, tr_kk, sk, sk, float(rk @ rk)),
            _hsic_from_sums(n, unbiased, tr_ll, sl_, sl_, float(rl @ rl)))


def _cka_rbf(
    x: np.ndarray,
    y: np.ndarray,
    *,
    unbiased: bool,
    sigma: float,
    block_size: int | None,
    backend: _NumpyBackend | _TorchBackend,
    median_sq_distance: tuple[float, float] | None,
    median_max_rows: int | None,
    seed: int,
    resume: _Resume,
    progress: bool,
) -> CKADetails:
    """Exact RBF CKA in one pass over the upper-triangle tiles (two if the Taylor bound fails)."""
    n, px = x.shape
    py = y.shape[1]
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma}")
    block = min(n, int(block_size) if block_size else backend.default_block)
    if block < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    host_dtype = np.dtype(backend.dtype_name)
    hosts = (_augmented_rows(x, _column_means(x, "x"), host_dtype),
             _augmented_rows(y, _column_means(y, "y"), host_dtype))
    devs = (backend.put(hosts[0]), backend.put(hosts[1]))
    bw = _plan_bandwidth(x, y, hosts, devs, backend, block, median_sq_distance=median_sq_distance,
                         median_max_rows=median_max_rows, seed=seed)
    del hosts
    base: dict[str, Any] = {}
    if resume.on_progress is not None or resume.state is not None:
        base = {"version": STATE_VERSION, "n": n, "n_features": [px, py], "block_size": block,
                "unbiased": unbiased, "sigma": float(sigma), "compute_dtype": backend.dtype_name,
                "data": _data_digest(x, y)}
    if resume.state is not None:
        bw = _resume_bandwidth(resume.state, base, bw)
    if bw.order == 0:
        _check_median(bw.medians[0], "x")
        _check_median(bw.medians[1], "y")
    nb = -(-n // block)
    n_tiles = nb * (nb + 1) // 2
    acc = _PassSums(n, bw.order, resume.state)
    LOGGER.info("RBF CKA: n=%d, block=%d, %d tiles, order %d, device %s", n, block, n_tiles,
                bw.order, backend.name)
    budget = _tile_pass(devs, n, block, backend, bw, sigma, acc, n_tiles, resume.max_tiles,
                        _state_key(base, bw), resume, progress)
    details = functools.partial(
        CKADetails, kernel="rbf", unbiased=unbiased, n=n, n_features=(px, py), block_size=block,
        device=backend.name, compute_dtype=backend.dtype_name, sigma=sigma,
        median_source=bw.source, median_n_rows=bw.n_rows, median_seed=bw.seed,
        tiles_done=acc.next_tile, n_tiles=n_tiles,
    )
    if acc.next_tile < n_tiles:
        return details(value=math.nan, complete=False,
                       median_sq_distance=bw.medians if bw.order == 0 else None)
    medians, eps = bw.medians, (0.0, 0.0)
    if bw.order > 0:
        medians = _deferred_medians(acc, bw, devs, n, block, backend)
        eps = (bw.medians[0] / medians[0] - 1.0, bw.medians[1] / medians[1] - 1.0)
        bound = _taylor_bound(eps, acc.wmax, bw.order)
        if bound > TAYLOR_TOL:
            LOGGER.info("Taylor bound %.2g at eps = (%.2g, %.2g): second pass with the exact "
                        "bandwidth", bound, *eps)
            bw = _Bandwidth("exact", medians, n_rows=n)
            acc, eps = _PassSums(n, 0), (0.0, 0.0)
            _tile_pass(devs, n, block, backend, bw, sigma, acc, n_tiles, budget,
                       _state_key(base, bw), resume, progress)
            details = functools.partial(details, tiles_done=acc.next_tile)
            if acc.next_tile < n_tiles:
                return details(value=math.nan, complete=False)
    hxy, hxx, hyy = _hsic_from_pass(acc, n, unbiased, bw.order, eps)
    bandwidth = (sigma * math.sqrt(medians[0]), sigma * math.sqrt(medians[1]))
    return details(value=_ratio(hxy, hxx, hyy), median_sq_distance=medians, bandwidth=bandwidth,
                   hsic_xy=hxy, hsic_xx=hxx, hsic_yy=hyy)


def _deferred_medians(
    acc: _PassSums, bw: _Bandwidth, devs: tuple[Any, Any], n: int, block: int,
    backend: _NumpyBackend | _TorchBackend,
) -> tuple[float, float]:
    """Exact medians from the pass's counts; a widening count pass where the bracket missed."""
    medians = []
    for s, name in enumerate(("x", "y")):
        median = _median_from_counts(n, int(acc.below[s]), acc.inside_values(s))
        if median is None:
            LOGGER.info("median bracket of %s missed; counting again", name)
            samples = bw.samples
            median = _widening_median(devs[s], n, block, backend,
                                      None if samples is None else samples[s], 20.0)
        _check_median(median, name)
        medians.append(median)
    return medians[0], medians[1]

class _Progress:
    """A tqdm bar over the tiles when asked for (and installed); else a log line every 30 s."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.total, self.done, self.initial, self.enabled = total, initial, initial, enabled
        self.bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, unit="tile", desc="RBF CKA")
        self.start = self.last = time.monotonic()

    def advance(self, k: int = 1) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        if now - self.last >= 30.0 or self.done >= self.total:
            self.last = now
            rate = (self.done - self.initial) / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            LOGGER.log(logging.INFO if self.enabled else logging.DEBUG,
                       "RBF CKA: tile %d of %d, %.0f s left", self.done, self.total, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()




def _tile_pass(
    devs: tuple[Any, Any], n: int, block: int, backend: _NumpyBackend | _TorchBackend,
    bw: _Bandwidth, sigma: float, acc: _PassSums, n_tiles: int, budget: int | None,
    key: dict[str, Any], resume: _Resume, progress: bool,
) -> int | None:
    """Add tiles ``acc.next_tile`` onwards (at most ``budget``) to ``acc``; return what is left.

    Tiles run row-major over the upper triangle. ``resume.on_progress`` gets a snapshot every
    ``resume.every`` tiles and after the last tile of the call, so a state always holds whole
    tiles.
    """
    if acc.next_tile >= n_tiles:
        return budget
    stop = n_tiles if budget is None else min(n_tiles, acc.next_tile + budget)
    first = acc.next_tile
    scales = bw.scales(sigma)
    bar = _Progress(n_tiles, acc.next_tile, progress)
    buffers = None
    try:
        for i0, j0, ax, ay, full in _pending_tiles(devs, n, block, backend, first, stop):
            if full and buffers is None:
                buffers = (backend.empty_tile(block), backend.empty_tile(block))
            out_x, out_y = buffers if full else (None, None)
            i1, j1 = min(n, i0 + block), min(n, j0 + block)
            diagonal = i0 == j0
            gx = backend.gram_tile(ax, devs[0][j0:j1], out_x, diagonal)
            gy = backend.gram_tile(ay, devs[1][j0:j1], out_y, diagonal)
            acc.add(backend.tile_stats(gx, gy, diagonal, scales, bw.bounds, bw.order),
                    i0, i1, j0, j1)
            bar.advance()
            report = (acc.next_tile - first) % resume.every == 0 or acc.next_tile == stop
            if resume.on_progress is not None and report:
                resume.on_progress(acc.snapshot(key, n_tiles))
    finally:
        bar.close()
    return None if budget is None else budget - (acc.next_tile - first)


def _pending_tiles(
    devs: tuple[Any, Any], n: int, block: int, backend: _NumpyBackend | _TorchBackend,
    first: int, stop: int,
) -> Any:
    """Yield ``(i0, j0, a_x, a_y, full)`` for tiles ``first <= t < stop`` (row strips reused)."""
    perm_x, perm_y = (_swap_last_two(d.shape[1] - 2) for d in devs)
    tile = 0
    for i0 in range(0, n, block):
        strip = -(-(n - i0) // block)
        if tile + strip <= first:
            tile += strip
            continue
        i1 = min(n, i0 + block)
        ax = backend.take_columns(devs[0][i0:i1], perm_x)
        ay = backend.take_columns(devs[1][i0:i1], perm_y)
        for j0 in range(i0, n, block):
            if tile >= stop:
                return
            if tile >= first:
                full = (i1 - i0) == block and min(n, j0 + block) - j0 == block
                yield i0, j0, ax, ay, full
            tile += 1


# --------------------------------------------------------------------------- compiled kernels
def _tile_stats_kernel(gx, gy, r0, r1, diagonal, cx, cy, bounds, order, moments, rows, cols,
                       counts, inside_rows, wmax):  # pragma: no cover - compiled by numba
    """Rows ``r0 .. r1`` of a tile pair: see :meth:`_NumpyBackend.tile_stats`.

    Per row and step of ``_JB`` columns: ``d^2 = max(-2 g, 0)`` (median counts, ``w = c d^2``,
    ``max w``), ``exp(-w)`` for both sides (vectorized: Cody-Waite reduction, polynomial, and
    ``2^k`` built in the exponent bits), then the moments, one vectorized sweep each.
    """
    bj = gx.shape[1]
    w = np.empty((2, _JB))
    e = np.empty((2, _JB))
    pow2 = np.empty(_JB)
    pow2_bits = pow2.view(np.int64)
    q = np.empty(_JB)
    t = np.empty(_JB)
    for i in range(r0, r1):
        for c0 in range(i + 1 if diagonal else 0, bj, _JB):
            m = min(bj, c0 + _JB) - c0
            for s in range(2):
                g = gx if s == 0 else gy
                scale = cx if s == 0 else cy
                lo = bounds[2 * s]
                hi = bounds[2 * s + 1]
                ws = w[s]
                es = e[s]
                below = 0
                inside = 0
                top = 0.0
                row = g[i, c0:c0 + m]
                for j in range(m):
                    d = -2.0 * row[j]
                    d = d if d > 0.0 else 0.0
                    below += 1 if d < lo else 0
                    inside += 1 if (d >= lo) & (d <= hi) else 0
                    v = scale * d
                    ws[j] = v
                    top = top if top >= v else v
                counts[2 * s] += below
                counts[2 * s + 1] += inside
                inside_rows[s, i] += inside
                wmax[s] = max(wmax[s], top)
                for j in range(m):
                    arg = -min(ws[j], 708.0)
                    shifted = arg * _LOG2E + _ROUND_MAGIC
                    k = shifted - _ROUND_MAGIC
                    r = (arg - k * _LN2_HI) - k * _LN2_LO
                    p = _EXP_POLY[13]
                    for c in range(12, -1, -1):
                        p = p * r + _EXP_POLY[c]
                    es[j] = p
                    pow2[j] = shifted
                for j in range(m):
                    pow2_bits[j] = (pow2_bits[j] - _ROUND_MAGIC_BITS + 1023) << 52
                for j in range(m):
                    es[j] *= pow2[j]
            idx = 0
            wx, wy, kx, ky = w[0], w[1], e[0], e[1]
            for j in range(m):
                t[j] = kx[j] * ky[j]
            for a in range(order + 1):
                for j in range(m):
                    q[j] = t[j]
                for b in range(order + 1 - a):
                    acc = 0.0
                    for j in range(m):
                        v = q[j]
                        acc += v
                        q[j] = v * wy[j]
                    moments[idx] += acc
                    idx += 1
                if a < order:
                    for j in range(m):
                        t[j] *= wx[j]
            for s in range(2):
                ws = w[s]
                es = e[s]
                for j in range(m):
                    q[j] = es[j]
                for a in range(order + 1):
                    acc = 0.0
                    acc2 = 0.0
                    col = cols[s, a, c0:c0 + m]
                    for j in range(m):
                        v = q[j]
                        acc += v
                        acc2 += v * es[j]
                        col[j] += v
                        q[j] = v * ws[j]
                    rows[s, a, i] += acc
                    moments[idx] += acc2
                    idx += 1


def _collect_kernel(g, r0, r1, diagonal, lo, hi, offsets, out):  # pragma: no cover - compiled
    """Write the d^2 in [lo, hi] of rows ``r0 .. r1`` of a tile at ``out[offsets[i]:]``."""
    bj = g.shape[1]
    for i in range(r0, r1):
        pos = offsets[i]
        for j in range(i + 1 if diagonal else 0, bj):
            d = -2.0 * g[i, j]
            d = d if d > 0.0 else 0.0
            if (d >= lo) & (d <= hi):
                out[pos] = d
                pos += 1


@functools.cache
def _rbf_kernels() -> tuple[Callable[..., None], Callable[..., None]]:
    """Compile (once per process; cached on disk where a cache directory is writable) the
    tile kernels. ``fastmath`` only allows reassociating sums (to vectorize them)."""
    import numba

    options = {"nogil": True, "fastmath": {"reassoc", "contract"}}
    try:
        return (numba.njit(cache=True, **options)(_tile_stats_kernel),
                numba.njit(cache=True, **options)(_collect_kernel))
    except RuntimeError:  # no writable cache location (read-only install, no NUMBA_CACHE_DIR)
        return (numba.njit(**options)(_tile_stats_kernel), numba.njit(**options)(_collect_kernel))


#: Kernel registry: one function per kernel.
CKA_KERNELS: dict[str, Callable[..., CKADetails]] = {"linear": _cka_linear, "rbf": _cka_rbf}
