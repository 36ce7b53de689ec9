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

RBF kernel, streamed over tiles
    ``K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2 m_x))`` where ``m_x`` is the median of the n x n
    matrix of squared Euclidean distances, diagonal zeros included, exactly as the colab's
    ``gram_rbf(x, threshold)`` with ``threshold = sigma``: the kernel bandwidth is
    ``sigma * sqrt(m_x)``, i.e. bandwidth^2 = sigma^2 * median(squared distances). One pass over
    the upper-triangle tiles of (block x block) accumulates, in float64, ``tr(KL)``,
    ``tr(KK)``, ``tr(LL)`` (with zeroed diagonals when unbiased) and the row sums of ``K`` and
    ``L``; the estimators above follow from those. Above ``median_max_rows`` rows (default
    10,000) the median comes from a seeded subsample of that many rows (the colab median of
    ``x[idx]``, ``idx = sort(default_rng(seed).choice(n, m, replace=False))``, the same rows for
    ``X`` and ``Y``) or from ``median_sq_distance``; the HSIC itself is always exact.
    :func:`cka_details` returns what was used, for the sidecar.

Cost and memory of :func:`cka_details`
    Linear: ``n (p_x + p_y)^2`` flops (two SYRKs and one GEMM per chunk of rows); memory of
    the inputs plus ``block * (p_x + p_y + 3)`` and ``(p_x + 3) (p_x + p_y) + p_y^2`` numbers,
    independent of n.

    RBF: the tile pass costs ``n^2 (p_x + p_y + 4)`` flops and ``n^2`` exponentials (half the
    pairs, twice); the exact median another ``n^2 (p_x + p_y + 4)`` flops. Memory: the centered,
    augmented inputs (``n (p_x + p_y + 4)`` numbers in the compute dtype), two ``block^2``
    tiles, two ``block (p + 2)`` row strips and ``2 n`` float64 row sums, i.e. O(n (p + block)),
    never O(n^2); the exact median adds the distances inside its bracket, about 4% of the
    ``n (n - 1) / 2`` pairs (14 MiB of float64 at n = 10,000). At the 7T study's size
    (n = 515,940, p = (1024, 500)) that is 6.3 GB in float64 (3.2 GB with
    ``compute_dtype="float32"``) plus 64 MiB of tiles at ``block=2048``.

``compute_dtype="float32"`` runs the GEMMs and exponentials in float32 (about twice as fast on
CPU); the HSIC sums still accumulate in float64 (they cancel badly otherwise). It agreed with
float64 to about 1e-8 (absolute, on CKA) in our tests; float64 is the default.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
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
COMPUTE_DTYPES = ("float32", "float64")
_CHECKPOINT_VERSION = 1


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
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    sq_norms = np.einsum("ij,ij->i", x, x)
    sq_distances = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * (x @ x.T), 0.0)
    np.fill_diagonal(sq_distances, 0.0)
    median = float(np.median(sq_distances))
    _check_median(median, "x")
    return np.exp(-sq_distances / (2 * threshold**2 * median))


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
        ``(m_x, m_y)``, the median squared distances used (RBF only).
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
        False when the run stopped early (``max_tiles``); resume from the checkpoint.
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
        ``compute_dtype``, ``checkpoint``, ``progress``, ...).

    Returns
    -------
    float
    """
    details = cka_details(x, y, kernel, unbiased, sigma, block_size, device, **options)
    if not details.complete:
        raise RuntimeError("the CKA tile pass stopped early; call again to resume")
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
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every_s: float = 300.0,
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
        RBF: user medians ``(m_x, m_y)`` of the squared distances; skips the median pass.
    median_max_rows : int or None
        RBF: above this many rows the median comes from a seeded subsample of this many rows;
        None: always exact (the bracket then holds about ``0.02 n^2`` float64 numbers).
    seed : int
        Seed of the subsample (and of the pairs that bracket the exact median, which affect
        only speed).
    compute_dtype : {"float64", "float32"}
        dtype of the Gram tiles / GEMMs. float64 (default) agrees with the colab formulas to
        about 1e-12; float32 is about twice as fast on CPU and agreed to about 1e-8 in our
        tests (data-dependent); sums accumulate in float64 either way.
    checkpoint : path or None
        RBF: file (``.npz``) for the partial sums; written atomically every
        ``checkpoint_every_s`` seconds and at the end, and resumed from when it exists and
        matches the inputs and parameters.
    checkpoint_every_s : float
    max_tiles : int or None
        RBF: stop after this many tiles in this call (e.g. a job's wall-time slice); needs
        ``checkpoint``; the result then has ``complete=False``.
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
    if max_tiles is not None and checkpoint is None:
        raise ValueError("max_tiles needs a checkpoint path to resume from")
    backend = _make_backend(device, compute_dtype)
    try:
        return CKA_KERNELS[kernel](
            x, y, unbiased=unbiased, sigma=sigma, block_size=block_size, backend=backend,
            median_sq_distance=median_sq_distance, median_max_rows=median_max_rows, seed=seed,
            checkpoint=checkpoint, checkpoint_every_s=checkpoint_every_s, max_tiles=max_tiles,
            progress=progress,
        )
    finally:
        backend.close()


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


class _NumpyBackend:
    """Tile operations with numpy: BLAS for GEMMs, dots and row sums; threads for exp."""

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

    def _map_rows(self, fn: Callable[[int, int], Any], n_rows: int) -> list[Any]:
        """``fn(r0, r1)`` over ``self.threads`` row ranges (numpy ufuncs release the GIL)."""
        if self.threads == 1 or n_rows < 256:
            return [fn(0, n_rows)]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads)
        edges = np.linspace(0, n_rows, self.threads + 1).astype(int)
        return list(self._pool.map(fn, edges[:-1], edges[1:]))

    def put(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype)

    def zeros64(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float64)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def from_numpy64(self, a: np.ndarray) -> np.ndarray:
        return np.array(a, dtype=np.float64)

    def take_columns(self, a: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[:, cols])

    def scale_columns_(self, a: np.ndarray, scale: np.ndarray) -> None:
        a *= scale.astype(self.dtype)

    def gram_tile(
        self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, diagonal: bool = False
    ) -> np.ndarray:
        """``a @ b.T``: the tile of ``-d^2 / 2`` (scaled: of RBF exponents).

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

    def exp_tile(
        self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None, diagonal: bool = False
    ) -> np.ndarray:
        t = self.gram_tile(a, b, out, diagonal)

        def exp(r0: int, r1: int) -> None:
            np.exp(t[r0:r1], out=t[r0:r1])

        self._map_rows(exp, t.shape[0])
        return t

    def zero_diag_(self, t: np.ndarray) -> None:
        np.fill_diagonal(t, 0.0)

    def dots(self, k: np.ndarray, l: np.ndarray) -> tuple[float, float, float]:  # noqa: E741
        if self.dtype == np.float64:
            return float(np.vdot(k, l)), float(np.vdot(k, k)), float(np.vdot(l, l))

        def part(r0: int, r1: int) -> tuple[float, float, float]:
            kf, lf = k[r0:r1].ravel(), l[r0:r1].ravel()
            return (float(np.add.reduce(kf * lf, dtype=np.float64)),
                    float(np.add.reduce(kf * kf, dtype=np.float64)),
                    float(np.add.reduce(lf * lf, dtype=np.float64)))

        parts = self._map_rows(part, k.shape[0])
        return tuple(math.fsum(v) for v in zip(*parts))  # type: ignore[return-value]

    def row_col_sums(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.dtype == np.float64:
            return t @ np.ones(t.shape[1]), np.ones(t.shape[0]) @ t
        return t.sum(axis=1, dtype=np.float64), t.sum(axis=0, dtype=np.float64)

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

    def zeros64(self, n: int) -> Any:
        return self.torch.zeros(n, dtype=self.torch.float64, device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().to("cpu", self.torch.float64).numpy()

    def from_numpy64(self, a: np.ndarray) -> Any:
        return self.torch.as_tensor(np.array(a, dtype=np.float64)).to(self.device)

    def take_columns(self, a: Any, cols: np.ndarray) -> Any:
        return a[:, self.torch.as_tensor(cols, device=self.device)].contiguous()

    def scale_columns_(self, a: Any, scale: np.ndarray) -> None:
        a *= self.torch.as_tensor(scale, device=self.device, dtype=self.dtype)

    def close(self) -> None:
        pass

    def exp_tile(self, a: Any, b: Any, out: Any | None, diagonal: bool = False) -> Any:
        return self.gram_tile(a, b, out, diagonal).exp_()

    def gram_tile(self, a: Any, b: Any, out: Any | None = None, diagonal: bool = False) -> Any:
        if out is not None:
            return self.torch.mm(a, b.T, out=out)
        return self.torch.mm(a, b.T)

    def zero_diag_(self, t: Any) -> None:
        t.fill_diagonal_(0.0)

    def dots(self, k: Any, l: Any) -> tuple[float, float, float]:  # noqa: E741
        torch = self.torch
        kf, lf = k.reshape(-1), l.reshape(-1)
        if self.dtype == torch.float64:
            vals = torch.stack([torch.dot(kf, lf), torch.dot(kf, kf), torch.dot(lf, lf)])
        else:
            vals = torch.stack([(kf * lf).sum(dtype=torch.float64),
                                (kf * kf).sum(dtype=torch.float64),
                                (lf * lf).sum(dtype=torch.float64)])
        return tuple(vals.tolist())  # type: ignore[return-value]

    def row_col_sums(self, t: Any) -> tuple[Any, Any]:
        f64 = self.torch.float64
        return t.sum(dim=1, dtype=f64), t.sum(dim=0, dtype=f64)

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
    one GEMM gives a tile of squared distances, and after scaling the columns by the
    bandwidth, of RBF exponents.
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
    n, p = raw.shape
    block = min(n, int(block_size) if block_size else backend.default_block)
    ranks = _median_ranks(n)
    needed = sorted({r for r in ranks if r > 0})
    values: dict[int, float] = {0: 0.0}
    if needed:
        m = n * (n - 1) // 2
        sample = None if m <= collect_all else _sample_pair_distances(raw, sample_pairs, seed)
        lo, hi = -math.inf, math.inf
        z = 5.0
        while True:
            if sample is not None:
                lo, hi = _bracket(sample, [r / m for r in needed], z)
            below, inside = _count_collect_pass(dev, p, n, block, backend, lo, hi)
            if all(below < r <= below + inside.size for r in needed):
                break
            LOGGER.debug("median bracket [%g, %g] missed; widening", lo, hi)
            z *= 4.0
            if z > 1e4:
                sample = None
                lo, hi = -math.inf, math.inf
        kth = [r - below - 1 for r in needed]
        part = np.partition(inside, kth)
        values.update({r: float(part[k]) for r, k in zip(needed, kth)})
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
    dev: Any, p: int, n: int, block: int, backend: _NumpyBackend | _TorchBackend,
    lo: float, hi: float,
) -> tuple[int, np.ndarray]:
    """Over the distinct pairs: #(d^2 < lo) and the d^2 in [lo, hi]."""
    perm = _swap_last_two(p)
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


class _Accumulators:
    """Partial sums of the RBF tile pass; what a checkpoint holds."""

    def __init__(self, backend: _NumpyBackend | _TorchBackend, n: int) -> None:
        self.next_tile = 0
        self.kl, self.kk, self.ll = _Sum(), _Sum(), _Sum()
        self.rk = backend.zeros64(n)
        self.rl = backend.zeros64(n)
        self.buffers: tuple[Any, Any] | None = None

    def arrays(self, backend: _NumpyBackend | _TorchBackend) -> dict[str, np.ndarray]:
        return {
            "next_tile": np.array(self.next_tile),
            "sums": np.array([self.kl.s, self.kl.c, self.kk.s, self.kk.c, self.ll.s, self.ll.c]),
            "rk": backend.to_numpy(self.rk),
            "rl": backend.to_numpy(self.rl),
        }

    def load(self, data: Any, backend: _NumpyBackend | _TorchBackend) -> None:
        self.next_tile = int(data["next_tile"])
        s = data["sums"]
        self.kl, self.kk, self.ll = _Sum(s[0], s[1]), _Sum(s[2], s[3]), _Sum(s[4], s[5])
        self.rk = backend.from_numpy64(data["rk"])
        self.rl = backend.from_numpy64(data["rl"])


def _save_checkpoint(path: Path, acc: _Accumulators, backend: Any, meta: dict) -> None:
    """np.savez to a temporary file in the same folder, then an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, version=np.array(_CHECKPOINT_VERSION), **acc.arrays(backend),
                 **{f"meta_{k}": np.asarray(v) for k, v in meta.items()})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _load_checkpoint(path: Path, acc: _Accumulators, backend: Any, meta: dict) -> None:
    with np.load(path) as data:
        if int(data["version"]) != _CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {path} has another format version; delete it")
        for key, want in meta.items():
            got = data[f"meta_{key}"]
            if got.shape != np.shape(want) or not np.allclose(got, want, rtol=1e-12, atol=0):
                raise ValueError(
                    f"checkpoint {path} was written for other inputs or parameters ({key}: "
                    f"{got.tolist()} != {np.asarray(want).tolist()}); delete it or pass "
                    "another path"
                )
        acc.load(data, backend)


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
    checkpoint: str | os.PathLike[str] | None,
    checkpoint_every_s: float,
    max_tiles: int | None,
    progress: bool,
) -> CKADetails:
    """Exact RBF CKA, streamed over the upper-triangle tiles."""
    n, px = x.shape
    py = y.shape[1]
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma}")
    block = min(n, int(block_size) if block_size else backend.default_block)
    if block < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    mu_x, mu_y = _column_means(x, "x"), _column_means(y, "y")
    host_dtype = np.dtype(backend.dtype_name)
    bx_host = _augmented_rows(x, mu_x, host_dtype)
    by_host = _augmented_rows(y, mu_y, host_dtype)
    fingerprint = [float(mu_x.sum()), float(bx_host[:, px].sum(dtype=np.float64)),
                   float(mu_y.sum()), float(by_host[:, py].sum(dtype=np.float64))]
    bx, by = backend.put(bx_host), backend.put(by_host)

    median_n_rows: int | None = None
    median_seed: int | None = None
    if median_sq_distance is not None:
        mx, my = (float(v) for v in median_sq_distance)
        source = "user"
    elif median_max_rows is None or n <= median_max_rows:
        LOGGER.info("exact median squared distances over %d rows", n)
        mx = _exact_median(x, bx, backend, block, seed)
        my = _exact_median(y, by, backend, block, seed)
        source, median_n_rows = "exact", n
    else:
        m = int(median_max_rows)
        idx = np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
        LOGGER.info("median squared distances over a subsample of %d of %d rows (seed %d)",
                    m, n, seed)
        mx = _exact_median(x[idx], backend.put(bx_host[idx]), backend, min(block, m), seed)
        my = _exact_median(y[idx], backend.put(by_host[idx]), backend, min(block, m), seed)
        source, median_n_rows, median_seed = "subsample", m, seed
    _check_median(mx, "x")
    _check_median(my, "y")
    bw2_x, bw2_y = sigma**2 * mx, sigma**2 * my
    for dev, p, bw2 in ((bx, px, bw2_x), (by, py, bw2_y)):
        scale = np.ones(p + 2)
        scale[:p] = 1.0 / math.sqrt(bw2)
        scale[p] = 1.0 / bw2
        backend.scale_columns_(dev, scale)
    del bx_host, by_host

    nb = -(-n // block)
    n_tiles = nb * (nb + 1) // 2
    acc = _Accumulators(backend, n)
    meta = {"n": n, "p": [px, py], "block": block, "unbiased": int(unbiased),
            "bw2": [bw2_x, bw2_y], "fingerprint": fingerprint,
            "dtype": int(host_dtype.itemsize)}
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        _load_checkpoint(path, acc, backend, meta)
        LOGGER.info("resuming the CKA tile pass from %s at tile %d of %d", path,
                    acc.next_tile, n_tiles)
    LOGGER.info("RBF CKA: n=%d, block=%d, %d tiles, device %s", n, block, n_tiles, backend.name)
    _tile_pass(bx, by, n, block, unbiased, backend, acc, n_tiles, max_tiles, path,
               checkpoint_every_s, progress, meta)

    complete = acc.next_tile >= n_tiles
    hxy = hxx = hyy = value = math.nan
    if complete:
        rk, rl = backend.to_numpy(acc.rk), backend.to_numpy(acc.rl)
        sk, sl_ = float(rk.sum()), float(rl.sum())
        hxy = _hsic_from_sums(n, unbiased, acc.kl.value, sk, sl_, float(rk @ rl))
        hxx = _hsic_from_sums(n, unbiased, acc.kk.value, sk, sk, float(rk @ rk))
        hyy = _hsic_from_sums(n, unbiased, acc.ll.value, sl_, sl_, float(rl @ rl))
        value = _ratio(hxy, hxx, hyy)
    return CKADetails(
        value=value, kernel="rbf", unbiased=unbiased, n=n, n_features=(px, py),
        block_size=block, device=backend.name, compute_dtype=backend.dtype_name, sigma=sigma,
        median_sq_distance=(mx, my), bandwidth=(math.sqrt(bw2_x), math.sqrt(bw2_y)),
        median_source=source, median_n_rows=median_n_rows, median_seed=median_seed,
        hsic_xy=hxy, hsic_xx=hxx, hsic_yy=hyy, complete=complete,
        tiles_done=acc.next_tile, n_tiles=n_tiles,
    )


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
    bx: Any, by: Any, n: int, block: int, unbiased: bool,
    backend: _NumpyBackend | _TorchBackend, acc: _Accumulators, n_tiles: int,
    max_tiles: int | None, path: Path | None, checkpoint_every_s: float, progress: bool,
    meta: dict,
) -> None:
    """Accumulate tr(KL), tr(KK), tr(LL) and the row sums over tiles acc.next_tile onwards.

    Tiles run row-major over the upper triangle (tile index t). The accumulators are saved
    (atomically) every ``checkpoint_every_s`` seconds and when the pass ends or stops at
    ``max_tiles``; an exception saves nothing, so a checkpoint always holds whole tiles.
    """
    if acc.next_tile >= n_tiles:
        return
    stop = n_tiles if max_tiles is None else min(n_tiles, acc.next_tile + int(max_tiles))
    bar = _Progress(n_tiles, acc.next_tile, progress)
    last_save = time.monotonic()
    try:
        for i0, j0, ax, ay, full in _pending_tiles(bx, by, n, block, backend, acc.next_tile, stop):
            i1, j1 = min(n, i0 + block), min(n, j0 + block)
            _one_tile(acc, backend, ax, ay, bx[j0:j1], by[j0:j1], i0, i1, j0, j1, unbiased,
                      full)
            acc.next_tile += 1
            bar.advance()
            if path is not None and time.monotonic() - last_save >= checkpoint_every_s:
                _save_checkpoint(path, acc, backend, meta)
                last_save = time.monotonic()
    finally:
        bar.close()
    if path is not None:
        _save_checkpoint(path, acc, backend, meta)


def _pending_tiles(
    bx: Any, by: Any, n: int, block: int, backend: _NumpyBackend | _TorchBackend,
    first: int, stop: int,
) -> Any:
    """Yield ``(i0, j0, a_x, a_y, full)`` for tiles ``first <= t < stop`` (row strips reused)."""
    perm_x, perm_y = _swap_last_two(bx.shape[1] - 2), _swap_last_two(by.shape[1] - 2)
    tile = 0
    for i0 in range(0, n, block):
        strip = -(-(n - i0) // block)
        if tile + strip <= first:
            tile += strip
            continue
        i1 = min(n, i0 + block)
        ax = backend.take_columns(bx[i0:i1], perm_x)
        ay = backend.take_columns(by[i0:i1], perm_y)
        for j0 in range(i0, n, block):
            if tile >= stop:
                return
            if tile >= first:
                full = (i1 - i0) == block and min(n, j0 + block) - j0 == block
                yield i0, j0, ax, ay, full
            tile += 1


def _one_tile(
    acc: _Accumulators, backend: _NumpyBackend | _TorchBackend, ax: Any, ay: Any, bx_j: Any,
    by_j: Any, i0: int, i1: int, j0: int, j1: int, unbiased: bool, full: bool,
) -> None:
    """Add one (i, j) tile (and, off the diagonal, its mirror (j, i)) to the accumulators."""
    if full and acc.buffers is None:
        acc.buffers = (_empty_tile(backend, i1 - i0), _empty_tile(backend, i1 - i0))
    buf_k, buf_l = acc.buffers if full else (None, None)
    diagonal = i0 == j0
    k = backend.exp_tile(ax, bx_j, buf_k, diagonal)
    l = backend.exp_tile(ay, by_j, buf_l, diagonal)  # noqa: E741
    if diagonal and unbiased:
        backend.zero_diag_(k)
        backend.zero_diag_(l)
    dkl, dkk, dll = backend.dots(k, l)
    rk_i, rk_j = backend.row_col_sums(k)
    rl_i, rl_j = backend.row_col_sums(l)
    w = 1.0 if diagonal else 2.0
    acc.kl.add(w * dkl)
    acc.kk.add(w * dkk)
    acc.ll.add(w * dll)
    acc.rk[i0:i1] += rk_i
    acc.rl[i0:i1] += rl_i
    if not diagonal:
        acc.rk[j0:j1] += rk_j
        acc.rl[j0:j1] += rl_j


def _empty_tile(backend: _NumpyBackend | _TorchBackend, block: int) -> Any:
    if isinstance(backend, _NumpyBackend):
        return np.empty((block, block), dtype=backend.dtype)
    return backend.torch.empty((block, block), dtype=backend.dtype, device=backend.device)


#: Kernel registry: one function per kernel.
CKA_KERNELS: dict[str, Callable[..., CKADetails]] = {"linear": _cka_linear, "rbf": _cka_rbf}
