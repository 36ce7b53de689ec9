"""Permutation tests over stimulus labels, batched across layers with shared permutations.

Mantel tests (:func:`mantel_test`, :func:`mantel_test_batch`) permute the stimulus labels of the
reference RDM (its rows and columns together) and recompute the comparator of
:func:`nnbrain.core.compare.compare_rdms`; :func:`cka_permutation_batch` permutes the rows of a
representation. p-values are one-sided (upper tail): ``p = (1 + #{null >= stat}) / (1 + n)``.
Family-wise (max-statistic) p-values compare each statistic with the permutation distribution of
the maximum over the family (all layers tested against one ROI with the same permutations).

How the Mantel nulls are computed (``n`` stimuli, ``m = n (n - 1) / 2`` RDM entries):

* Permuting labels only reorders the entries of an RDM, so every rank or z transform is computed
  once. The dot-product comparators (pearson, spearman, cosine, rho-a) are then one gather of the
  transformed reference and one dot product per layer: O(m k) per permutation.
* Kendall's tau (tau-a, tau-b): walking the entries in the reference's sorted order (the same for
  every permutation), ``concordant - discordant = sum over pairs t < u of sign(b_u - b_t)`` on the
  permuted layer's values. Each permutation gathers the layer's dense ranks in that order and
  counts them in chunks of 16 entries (64 or 256 above 16,384 entries): against all earlier
  chunks with a 64-bit occupancy mask over "slots" (one per entry; rank ``r`` owns as many slots
  as it has ties, so ties stay exact) plus counts below each 64-slot word refreshed once per
  chunk, and within the chunk by direct (vectorized) comparison. Tied reference entries are
  handled by subtracting the same sum within each run of them. Integer arithmetic throughout:
  null and observed statistics are exact and their p-values need no tolerance. (numba, compiled
  once per machine and cached on disk; single-threaded kernels that release the GIL, run on a
  thread pool. Single-threaded about 3.6x faster here than a Fenwick-tree inversion count.)
* ``device="cpu"`` / ``"cuda"`` runs both on torch instead (batched gathers and matrix products;
  for Kendall a level-wise sort / searchsorted inversion count, O(m log^2 m) per permutation but
  fully batched), giving the same statistics and p-values as the default path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from nnbrain.core.cka import center_gram, check_not_constant, gram_linear, gram_rbf
from nnbrain.core.compare import as_condensed, prepare
from nnbrain.core.rdm import n_conditions

#: Runs of at most this many entries are counted by direct comparison (Kendall kernel).
_DIRECT = 64


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
    method : str
        The comparator ("" for CKA).
    seed : int or None
        Seed of the permutations (drawn from the OS when none was given), for the sidecar.
    """

    statistic: np.ndarray
    p_value: np.ndarray
    p_fwe: np.ndarray
    n_permutations: int
    method: str = ""
    seed: int | None = None


def stimulus_permutations(n: int, n_permutations: int, seed: int | None) -> np.ndarray:
    """Seeded permutations of ``n`` stimulus labels, array of shape (n_permutations, n).

    Row ``i`` is the argsort of ``n`` uniform draws (``numpy.random.default_rng(seed)``); large
    batches are sorted on a few threads (numpy releases the GIL), with the same result.
    """
    keys = np.random.default_rng(seed).random((n_permutations, n))
    if keys.size < 200_000:
        return np.argsort(keys, axis=1)
    from concurrent.futures import ThreadPoolExecutor

    pieces = np.array_split(keys, 4 * _n_threads())
    with ThreadPoolExecutor(_n_threads()) as pool:
        return np.concatenate(list(pool.map(lambda x: np.argsort(x, axis=1), pieces)))


def _inverse(perms: np.ndarray) -> np.ndarray:
    """Inverse of each permutation (row), array of the same shape."""
    inverse = np.empty_like(perms)
    np.put_along_axis(inverse, perms, np.broadcast_to(np.arange(perms.shape[1]), perms.shape),
                      axis=1)
    return inverse


def _n_threads() -> int:
    """Threads for the CPU kernels: ``NUMBA_NUM_THREADS`` if set, else the usable CPUs."""
    import os

    env = os.environ.get("NUMBA_NUM_THREADS")
    if env:
        return max(1, int(env))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _resolve_seed(seed: int | None) -> int:
    """The seed itself, or a fresh one from the OS (recorded so that the run can be repeated)."""
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    return int(seed)


def _cpu_chunk(n_perm: int, chunk: int, work_per_perm: int) -> int:
    """Permutations per numba call: at most ``chunk``; small enough to keep every thread busy,
    but one call for small jobs (under ~10 ms, where threads cost more than they save). The
    kernels hold O(m) scratch memory, not O(chunk m), so ``chunk`` only bounds the split."""
    if n_perm * work_per_perm < 4_000_000:
        return min(chunk, n_perm)
    return max(1, min(chunk, -(-n_perm // (4 * _n_threads()))))


def _p_values(stat: np.ndarray, null: np.ndarray, tol: float = 1e-12) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Uncorrected and max-statistic p-values from null of shape (n_permutations, k).

    ``tol`` absorbs rounding (a permutation that maps the RDM onto itself gives the statistic up
    to the last bits of a float dot product); 0 for exact (integer-derived) statistics.
    """
    n_perm = null.shape[0]
    p = (1 + (null >= stat[None, :] - tol).sum(axis=0)) / (1 + n_perm)
    max_null = null.max(axis=1)
    p_fwe = (1 + (max_null[:, None] >= stat[None, :] - tol).sum(axis=0)) / (1 + n_perm)
    return p, p_fwe


def _run_chunks(kernel: Callable[..., np.ndarray], perms: np.ndarray, chunk: int,
                *args: Any) -> np.ndarray:
    """``kernel(perms[i:i + chunk], *args)`` over all chunks, concatenated in order.

    The numba kernels release the GIL, so the chunks run on a thread pool (:func:`_n_threads`).
    Each permutation's result does not depend on the split.
    """
    pieces = [perms[i:i + chunk] for i in range(0, len(perms), chunk)]
    n_threads = min(_n_threads(), len(pieces))
    if n_threads <= 1:
        return np.concatenate([kernel(piece, *args) for piece in pieces])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n_threads) as pool:
        return np.concatenate(list(pool.map(lambda piece: kernel(piece, *args), pieces)))


# --- dot-product comparators: pearson, spearman, cosine, rho-a ---------------------------------

@cache
def _dot_kernel() -> Callable[..., np.ndarray]:
    """Compile (once per process; cached on disk) the gather-and-dot null of dot comparators."""
    import numba

    @numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
    def dot_null(perms, ref_square, cand):  # pragma: no cover - compiled
        # null[p, c] = sum_{i<j} ref_square[perm[i], perm[j]] * cand[c, (i, j)]
        n_perm, n = perms.shape
        k, m = cand.shape
        out = np.empty((n_perm, k))
        x = np.empty(m)
        for p in range(n_perm):
            perm = perms[p]
            if k == 1:  # fused gather and dot (no buffer): about twice as fast
                acc = 0.0
                cc = cand[0]
                t = 0
                for i in range(n - 1):
                    row = ref_square[perm[i]]
                    part = 0.0
                    for j in range(n - 1 - i):
                        part += row[perm[i + 1 + j]] * cc[t + j]
                    acc += part
                    t += n - 1 - i
                out[p, 0] = acc
                continue
            t = 0
            for i in range(n - 1):
                row = ref_square[perm[i]]
                for j in range(i + 1, n):
                    x[t] = row[perm[j]]
                    t += 1
            for c in range(k):
                acc = 0.0
                cc = cand[c]
                for t in range(m):
                    acc += x[t] * cc[t]
                out[p, c] = acc
        return out

    return dot_null


def _dot_null_torch(perms: np.ndarray, ref_square: np.ndarray, cand: np.ndarray, device: Any,
                    chunk: int) -> np.ndarray:
    """The dot kernel's null on torch: a batched gather, then one matrix product per chunk."""
    import torch

    dev = torch.device(device)
    n = ref_square.shape[0]
    ref_t = torch.as_tensor(ref_square, dtype=torch.float64, device=dev)
    cand_t = torch.as_tensor(cand, dtype=torch.float64, device=dev)
    iu, ju = torch.triu_indices(n, n, offset=1, device=dev)
    out = []
    for start in range(0, len(perms), chunk):
        p = torch.as_tensor(perms[start:start + chunk], device=dev)
        out.append(ref_t[p[:, iu], p[:, ju]] @ cand_t.T)
    return torch.cat(out).cpu().numpy()


def _dot_test(method: str, reference: np.ndarray, candidates: np.ndarray, perms: np.ndarray,
              device: Any, chunk: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Statistic and null of a dot-product comparator (a row transform, then a dot product)."""
    ref = prepare(reference, method)
    cand = prepare(candidates, method)
    stat = cand @ ref
    n = perms.shape[1]
    ref_square = np.zeros((n, n))
    iu, ju = np.triu_indices(n, k=1)
    ref_square[iu, ju] = ref
    ref_square[ju, iu] = ref
    if device is None:
        null = _run_chunks(_dot_kernel(), perms, _cpu_chunk(len(perms), chunk, cand.size),
                           ref_square, cand)
    else:
        null = _dot_null_torch(perms, ref_square, cand, device, chunk)
    return stat, null, 1e-12


# --- Kendall's tau-a and tau-b -----------------------------------------------------------------

@cache
def _kendall_kernel(chunk: int) -> Callable[..., np.ndarray]:
    """Compile (once per process and chunk length; cached on disk) the Kendall S null."""
    import numba

    direct = _DIRECT

    @numba.njit(nogil=True, cache=True)
    def kendall_s(inverse, rows, cols, codes, slot_start, tied_pairs, tie_lo,
                  tie_hi):  # pragma: no cover - compiled
        # For each permutation (given by its inverse) and candidate c: walk the reference's
        # entries in sorted order, t = 0..m-1, entry (rows[t], cols[t]); the permuted candidate
        # has the dense rank codes[c, inverse[rows[t]] * n + inverse[cols[t]]] there. S is
        # sum_{t<u} sign(rank_u - rank_t), minus the same sum within each run of tied reference
        # entries [tie_lo, tie_hi) (pairs tied in the reference count neither way).
        # Counting works on slots, unique in 0..m-1: rank r owns the slots slot_start[c, r]
        # onward, one per entry of that rank, handed out in walking order; so tied ranks compare
        # as "earlier is smaller", one per tied pair, which is subtracted (tied_pairs[c] for the
        # whole walk, counted for each run). Occupied slots: one bit each, and the number of
        # occupied slots below each 64-slot word, refreshed after every chunk of entries.
        # (np.int64 popcount: numba has none; LLVM turns this bit-twiddling into popcnt.)
        n_perm, n = inverse.shape
        k = codes.shape[0]
        m = rows.shape[0]
        n_words = (m + 63) >> 6
        one = np.uint64(1)
        out = np.zeros((n_perm, k), dtype=np.int64)
        row_off = np.empty(n, dtype=np.int64)
        code = np.empty(m, dtype=np.int32)
        slot = np.empty(m, dtype=np.int32)
        used = np.zeros(slot_start.shape[1], dtype=np.int64)
        occupied = np.zeros(n_words, dtype=np.uint64)
        word_count = np.zeros(n_words, dtype=np.int64)
        below = np.zeros(n_words, dtype=np.int64)
        vals = np.zeros(chunk, dtype=np.int32)
        for p in range(n_perm):
            inv = inverse[p]
            for i in range(n):
                row_off[i] = inv[i] * n
            for c in range(k):
                codes_c = codes[c]
                start = slot_start[c]
                tied = tied_pairs[c] > 0
                keep = tied or tie_lo.shape[0] > 0  # ranks and slots needed after the walk
                if m <= direct:
                    for t in range(m):
                        code[t] = codes_c[row_off[rows[t]] + inv[cols[t]]]
                total = 0
                for seg in range(tie_lo.shape[0] + 1):
                    if seg == 0:
                        lo, hi, sign = 0, m, 1
                    else:
                        lo, hi, sign = tie_lo[seg - 1], tie_hi[seg - 1], -1
                    length = hi - lo
                    if length <= direct:  # short: compare the ranks directly
                        acc = 0
                        for u in range(lo + 1, hi):
                            x = code[u]
                            for t in range(lo, u):
                                acc += (x > code[t]) - (x < code[t])
                        total += sign * acc
                        continue
                    equal = 0  # pairs of equal rank in this segment
                    if seg == 0:
                        equal = tied_pairs[c]
                    elif tied:
                        for t in range(lo, hi):
                            equal += used[code[t]]
                            used[code[t]] += 1
                        for t in range(lo, hi):
                            used[code[t]] = 0
                    occupied[:] = 0
                    word_count[:] = 0
                    below[:] = 0
                    smaller = 0  # pairs t < u with slot_t < slot_u
                    for c0 in range(lo, hi, chunk):
                        size = min(chunk, hi - c0)
                        # against earlier chunks: the occupied slots below this one
                        for u in range(size):
                            t = c0 + u
                            if seg == 0:  # first walk: gather ranks, hand out slots
                                r = codes_c[row_off[rows[t]] + inv[cols[t]]]
                                if tied:
                                    s = start[r] + used[r]
                                    used[r] += 1
                                else:
                                    s = r
                                if keep:
                                    code[t] = r
                                    slot[t] = s
                            else:
                                s = slot[t]
                            vals[u] = s
                            w = s >> 6
                            bits = occupied[w] & ((one << np.uint64(s & 63)) - one)
                            bits = bits - ((bits >> np.uint64(1)) & np.uint64(0x5555555555555555))
                            bits = ((bits & np.uint64(0x3333333333333333))
                                    + ((bits >> np.uint64(2)) & np.uint64(0x3333333333333333)))
                            bits = (bits + (bits >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
                            smaller += below[w] + np.int64((bits * np.uint64(0x0101010101010101))
                                                           >> np.uint64(56))
                        # within the chunk (a fixed-length masked loop vectorizes best)
                        if size == chunk:
                            for u in range(1, chunk):
                                x = vals[u]
                                cnt = 0
                                for t in range(chunk):
                                    cnt += (vals[t] < x) & (t < u)
                                smaller += cnt
                        else:
                            for u in range(1, size):
                                x = vals[u]
                                for t in range(u):
                                    smaller += vals[t] < x
                        # insert the chunk, then refresh the counts below each word
                        for u in range(size):
                            s = vals[u]
                            occupied[s >> 6] |= one << np.uint64(s & 63)
                            word_count[s >> 6] += 1
                        running = 0
                        for w in range(n_words):
                            below[w] = running
                            running += word_count[w]
                    if seg == 0 and tied:
                        for t in range(m):
                            used[code[t]] = 0
                    total += sign * (2 * smaller - length * (length - 1) // 2 - equal)
                out[p, c] = total
        return out

    return kendall_s


def _kendall_chunk(m: int) -> int:
    """Entries per chunk of the Kendall kernel: each entry costs about chunk direct comparisons
    (vectorized) plus its share, (m / 64) / chunk, of the refresh after its chunk."""
    n_words = (m + 63) // 64
    return 16 if n_words <= 256 else 64 if n_words <= 4096 else 256


def _ties(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Runs of equal values in a sorted vector: starts and stops of runs longer than one, and the
    number of tied pairs."""
    m = sorted_values.size
    edges = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1], True])
    sizes = np.diff(edges)
    long = sizes > 1
    return edges[:-1][long], edges[1:][long], int((sizes * (sizes - 1) // 2).sum()) if m else 0


def _kendall_s_torch(inverse: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     code_square: np.ndarray, group: np.ndarray | None, tied_ref: int,
                     tied_cand: np.ndarray, device: Any, chunk: int) -> np.ndarray:
    """Kendall S for every permutation and candidate on torch (see the module docstring)."""
    import torch

    dev = torch.device(device)
    m = rows.size
    total = m * (m - 1) // 2
    size = 1 << max(int(m - 1).bit_length(), 0)
    rows_t = torch.as_tensor(rows, dtype=torch.long, device=dev)
    cols_t = torch.as_tensor(cols, dtype=torch.long, device=dev)
    group_t = None if group is None else torch.as_tensor(group, dtype=torch.long, device=dev)
    position = torch.arange(m, device=dev)
    out = np.empty((len(inverse), len(code_square)), dtype=np.int64)
    for c, square in enumerate(code_square):
        n_codes = int(square.max()) + 1
        square_t = torch.as_tensor(square, dtype=torch.long, device=dev)
        for start in range(0, len(inverse), chunk):
            inv = torch.as_tensor(inverse[start:start + chunk], dtype=torch.long, device=dev)
            v = square_t[inv[:, rows_t], inv[:, cols_t]]
            joint = torch.zeros(len(v), dtype=torch.long, device=dev)
            if group_t is not None:
                # sort each run of tied reference entries by value: no discordance left inside
                # a run; pairs tied in both (joint ties) are counted from the sorted keys
                key = torch.sort(group_t * n_codes + v, dim=1).values
                v = key % n_codes
                new = torch.ones_like(key, dtype=torch.bool)
                new[:, 1:] = key[:, 1:] != key[:, :-1]
                first = torch.cummax(torch.where(new, position, 0), dim=1).values
                joint = (position - first).sum(dim=1)
            padded = torch.full((len(v), size), n_codes, dtype=torch.long, device=dev)
            padded[:, :m] = v
            discordant = torch.zeros(len(v), dtype=torch.long, device=dev)
            width = 1
            while width < size:
                blocks = torch.sort(padded.view(len(v), size // width, width), dim=2).values
                left = blocks[:, 0::2].contiguous()
                right = blocks[:, 1::2].contiguous()
                not_larger = torch.searchsorted(left, right, right=True)
                discordant += (width - not_larger).sum(dim=(1, 2))
                width *= 2
            s = total - tied_ref - int(tied_cand[c]) + joint - 2 * discordant
            out[start:start + len(v), c] = s.cpu().numpy()
    return out


def _kendall_test(variant: str, reference: np.ndarray, candidates: np.ndarray,
                  perms: np.ndarray, device: Any, chunk: int) -> tuple[np.ndarray, np.ndarray,
                                                                       float]:
    """Statistic and null of Kendall's tau-a or tau-b, from exact integer S = C - D."""
    m = reference.size
    n = perms.shape[1]
    total = m * (m - 1) // 2
    order = np.argsort(reference, kind="stable")
    iu, ju = np.triu_indices(n, k=1)
    rows, cols = iu[order], ju[order]
    tie_lo, tie_hi, tied_ref = _ties(reference[order])
    codes = np.empty(candidates.shape, dtype=np.int64)
    tied_cand = np.empty(len(candidates), dtype=np.int64)
    for c, cand in enumerate(candidates):
        _, codes[c], counts = np.unique(cand, return_inverse=True, return_counts=True)
        tied_cand[c] = (counts * (counts - 1) // 2).sum()
    if variant == "b" and (tied_ref == total or np.any(tied_cand == total)):
        raise ValueError("an RDM is constant; Kendall's tau-b with it is undefined")
    code_square = np.zeros((len(candidates), n, n), dtype=np.int64)
    code_square[:, iu, ju] = codes
    code_square[:, ju, iu] = codes
    # the observed statistic is the identity permutation, first row
    inverse = np.concatenate([np.arange(n)[None, :], _inverse(perms)])
    if device is None:
        n_codes = codes.max(axis=1) + 1
        slot_start = np.zeros((len(candidates), int(n_codes.max())), dtype=np.int64)
        for c in range(len(candidates)):
            counts = np.bincount(codes[c], minlength=slot_start.shape[1])
            slot_start[c] = np.cumsum(counts) - counts
        flat = code_square.reshape(len(candidates), n * n).astype(np.int32)
        s = _run_chunks(_kendall_kernel(_kendall_chunk(m)), inverse,
                        _cpu_chunk(len(inverse), chunk, m * len(candidates)),
                        rows.astype(np.int64), cols.astype(np.int64), flat, slot_start,
                        tied_cand, tie_lo.astype(np.int64), tie_hi.astype(np.int64))
    else:
        group = None
        if tied_ref:
            group = np.cumsum(np.r_[True, np.diff(reference[order]) != 0]) - 1
        s = _kendall_s_torch(inverse, rows, cols, code_square, group, tied_ref, tied_cand, device,
                             chunk)
    s = s.astype(np.float64)  # exact: |S| <= m (m - 1) / 2 < 2**53
    if variant == "a":
        tau = s / total
    else:
        tau = s / np.sqrt(total - tied_ref) / np.sqrt(total - tied_cand.astype(np.float64))
    return tau[0], tau[1:], 0.0


#: comparator -> function (reference (m,), candidates (k, m), permutations (n_perm, n), device,
#: chunk) -> (statistic (k,), null (n_perm, k), tolerance of the null >= statistic comparison).
MANTEL_METHODS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, float]]] = {
    "cosine": partial(_dot_test, "cosine"),
    "pearson": partial(_dot_test, "pearson"),
    "rho-a": partial(_dot_test, "rho-a"),
    "spearman": partial(_dot_test, "spearman"),
    "tau-a": partial(_kendall_test, "a"),
    "tau-b": partial(_kendall_test, "b"),
}


def mantel_test_batch(
    reference: ArrayLike,
    candidates: ArrayLike,
    method: str = "tau-a",
    n_permutations: int = 10000,
    seed: int | None = None,
    chunk: int = 1024,
    device: Any = None,
) -> PermutationResult:
    """Mantel test of one RDM against ``k`` others, stimulus labels permuted (rows and columns).

    All candidates share the permutations, so the max-statistic p-values control the family-wise
    error across them.

    Parameters
    ----------
    reference : array of shape (m,) or (n, n)
        E.g. a brain ROI's RDM, condensed (squareform order) or square; its labels are permuted.
    candidates : array of shape (m,), (n, n), (k, m) or (k, n, n)
        E.g. one RDM per layer (read as in :func:`nnbrain.core.compare.as_condensed`).
    method : {"cosine", "pearson", "rho-a", "spearman", "tau-a", "tau-b"}
        Comparator, as :func:`nnbrain.core.compare.compare_rdms`. "tau-a" (the default, Nili et al.
        2014) does not reward a categorical model RDM for its ties; tau-b does.
    n_permutations : int
    seed : int or None
        Seed of :func:`stimulus_permutations`; None draws one (recorded in the result).
    chunk : int
        Permutations evaluated per batch (bounds memory to about chunk x m values).
    device : None, str or torch.device
        None: numpy/numba on the CPU. Otherwise a torch device ("cpu", "cuda", ...): the same
        statistics and p-values, computed with torch.

    Returns
    -------
    PermutationResult
        ``statistic`` equals ``compare_rdms(candidate, reference, method)``.
    """
    if method not in MANTEL_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(MANTEL_METHODS)}")
    if int(n_permutations) < 1 or int(chunk) < 1:
        raise ValueError(f"n_permutations and chunk must be positive, got {n_permutations}, "
                         f"{chunk}")
    ref, single = as_condensed(reference)
    if not single:
        raise ValueError("reference must be one RDM, shape (m,) or (n, n); got "
                         f"{np.shape(reference)}")
    cand, _ = as_condensed(candidates)
    if cand.shape[1] != ref.shape[1]:
        raise ValueError(f"RDMs differ in length: reference {ref.shape[1]}, candidates "
                         f"{cand.shape[1]}")
    n = n_conditions(ref.shape[1])
    seed = _resolve_seed(seed)
    perms = stimulus_permutations(n, int(n_permutations), seed)
    stat, null, tol = MANTEL_METHODS[method](ref[0], cand, perms, device, int(chunk))
    p_value, p_fwe = _p_values(stat, null, tol)
    return PermutationResult(stat, p_value, p_fwe, int(n_permutations), method, seed)


def mantel_test(
    a: ArrayLike, b: ArrayLike, method: str = "tau-a", n_permutations: int = 10000,
    seed: int | None = None, device: Any = None,
) -> tuple[float, float]:
    """Mantel test of two RDMs: stimulus labels of ``a`` permuted, upper tail.

    Parameters
    ----------
    a, b : arrays of shape (m,) or (n, n)
        Condensed (squareform order) or square RDMs.
    method : {"cosine", "pearson", "rho-a", "spearman", "tau-a", "tau-b"}
    n_permutations : int
    seed : int or None
    device : None, str or torch.device
        See :func:`mantel_test_batch`.

    Returns
    -------
    (statistic, p) : the comparator of ``a`` and ``b`` and ``(1 + #{null >= stat}) / (1 + n)``.
    """
    b_stack, single = as_condensed(b)
    if not single:
        raise ValueError(f"b must be one RDM, shape (m,) or (n, n); got {np.shape(b)}")
    res = mantel_test_batch(a, b_stack, method, n_permutations, seed, device=device)
    return float(res.statistic[0]), float(res.p_value[0])


def cka_permutation_batch(
    reference: np.ndarray,
    candidates: list[np.ndarray],
    unbiased: bool = True,
    n_permutations: int = 1000,
    seed: int | None = 0,
    chunk: int = 256,
    kernel: str = "linear",
    sigma: float = 1.0,
) -> PermutationResult:
    """CKA of one representation against ``k`` others, stimulus rows permuted.

    The Gram matrices are built once (Kornblith et al. 2019 colab: ``gram_linear`` or
    ``gram_rbf(x, threshold=sigma)``, ``center_gram(gram, unbiased)``); permuting the rows of a
    representation permutes the rows and columns of its Gram matrix, and centering commutes
    with that, so each permutation is one gather and one dot product per candidate. The RBF
    bandwidth (a median over all pairs) is the same for every permutation.

    Parameters
    ----------
    reference : array of shape (n_samples, n_features)
        E.g. an ROI's patterns; its rows are permuted.
    candidates : list of k arrays of shape (n_samples, n_features_i)
        E.g. one activation matrix per layer.
    unbiased : bool
        Unbiased HSIC estimator (Song et al. 2007).
    n_permutations : int
        0 gives the statistics with NaN p-values.
    seed : int or None
        None draws one (recorded in the result).
    chunk : int
    kernel : {"linear", "rbf"}
    sigma : float
        RBF bandwidth as a multiple of the median distance (the colab's ``threshold``).

    Returns
    -------
    PermutationResult
        ``statistic[i]`` equals ``nnbrain.core.cka.cka(reference, candidates[i], kernel,
        unbiased, sigma)``.
    """
    lc = centered_gram(reference, kernel, unbiased, sigma, "reference representation")
    kcs = np.stack([centered_gram(c, kernel, unbiased, sigma, f"candidate representation {i}")
                    for i, c in enumerate(candidates)])
    n = lc.shape[0]
    norms = np.linalg.norm(kcs.reshape(len(candidates), -1), axis=1) * np.linalg.norm(lc)
    if np.any(norms == 0):
        raise ValueError("a centered Gram matrix is zero (constant representation); CKA undefined")
    k_flat = kcs.reshape(len(candidates), n * n)
    stat = k_flat @ lc.ravel() / norms
    seed = _resolve_seed(seed)
    if int(n_permutations) == 0:
        nan = np.full(len(candidates), np.nan)
        return PermutationResult(stat, nan, nan.copy(), 0, "", seed)
    perms = stimulus_permutations(n, n_permutations, seed)
    null = np.empty((n_permutations, len(candidates)))
    for start in range(0, n_permutations, chunk):
        p = perms[start:start + chunk]
        # Centering is permutation-equivariant: center(P K P^T) = P center(K) P^T.
        permuted = lc[p[:, :, None], p[:, None, :]].reshape(len(p), n * n)
        null[start:start + chunk] = permuted @ k_flat.T / norms
    p_value, p_fwe = _p_values(stat, null)
    return PermutationResult(stat, p_value, p_fwe, n_permutations, "", seed)


def centered_gram(x: np.ndarray, kernel: str, unbiased: bool, sigma: float = 1.0,
                  name: str = "representation") -> np.ndarray:
    """Centered Gram matrix of the rows of ``x`` (colab ``gram_*`` then ``center_gram``).

    Parameters
    ----------
    x : array of shape (n_samples, n_features)
    kernel : {"linear", "rbf"}
    unbiased : bool
    sigma : float
        RBF only: the colab's ``threshold``.
    name : str
        For the error message of a constant representation.

    Returns
    -------
    array of shape (n_samples, n_samples), float64
    """
    x = np.asarray(x, dtype=np.float64)
    check_not_constant(x, name)
    if kernel == "linear":
        gram = gram_linear(x)
    elif kernel == "rbf":
        gram = gram_rbf(x, sigma)
    else:
        raise ValueError(f"unknown kernel {kernel!r}; choose from linear, rbf")
    return center_gram(gram, unbiased)


def cka_assignment_test(
    reference: np.ndarray,
    slots: list[np.ndarray],
    played: ArrayLike,
    unbiased: bool = True,
    n_permutations: int = 1000,
    seed: int | None = 0,
    kernel: str = "linear",
    sigma: float = 1.0,
) -> PermutationResult:
    """CKA of time-series rows against ``k`` feature sets, tested by re-assigning the stimuli
    to the blocks (a randomization test for continuous designs).

    Under the null the brain does not depend on which stimulus played in which block, so every
    assignment of the stimuli to the block slots is as likely as the one played. The features
    an assignment would have given are recomputed exactly (they are linear in the stimulus
    features: a sum over slots of each slot's stimulus placed at that slot's onset,
    HRF-convolved and cleaned like the BOLD), so the null keeps everything about the rows'
    positions, filtering and autocorrelation and moves only the stimulus content. (Permuting
    blocks of rows instead is biased when both series share position-dependent cleaning:
    on the continuous test design its null centred at -0.026 around an observed 0.00.)

    Parameters
    ----------
    reference : array of shape (n_rows, n_features)
        E.g. an ROI's time series over the blocks.
    slots : list of k arrays of shape (n_stimuli, n_slots, n_rows, n_units_i)
        ``slots[i][s, b]``: candidate ``i``'s features if stimulus ``s`` played in slot ``b``.
    played : int array of shape (n_slots,)
        The stimulus that played in each slot.
    unbiased, n_permutations, seed, kernel, sigma
        As :func:`cka_permutation_batch`; the permutations re-order ``played``.

    Returns
    -------
    PermutationResult
        ``statistic[i]`` is the CKA of ``reference`` with the played features
        ``sum_b slots[i][played[b], b]``.
    """
    played = np.asarray(played, dtype=np.int64)
    lc = centered_gram(reference, kernel, unbiased, sigma, "reference representation")
    lc_norm = np.linalg.norm(lc)
    slot_index = np.arange(played.size)

    def stats(assignment: np.ndarray) -> np.ndarray:
        out = np.empty(len(slots))
        for i, features in enumerate(slots):
            kc = centered_gram(features[assignment, slot_index].sum(axis=0), kernel, unbiased,
                               sigma, f"candidate representation {i}")
            out[i] = float((kc * lc).sum() / (np.linalg.norm(kc) * lc_norm))
        return out

    statistic = stats(played)
    seed = _resolve_seed(seed)
    if int(n_permutations) == 0:
        nan = np.full(len(slots), np.nan)
        return PermutationResult(statistic, nan, nan.copy(), 0, "", seed)
    perms = stimulus_permutations(played.size, int(n_permutations), seed)
    null = np.stack([stats(played[perm]) for perm in perms])
    p_value, p_fwe = _p_values(statistic, null)
    return PermutationResult(statistic, p_value, p_fwe, int(n_permutations), "", seed)
