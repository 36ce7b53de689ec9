"""Mantel permutation tests: nnbrain vs an rsatoolbox loop, same data and permutations (#14).

The peer is how a user would run a Mantel test with rsatoolbox 0.3.2: permute the stimulus labels
of the brain RDM with ``rsatoolbox.rdm.rdms.permute_rdms`` (rows and columns together) and call
``rsatoolbox.rdm.compare`` once per permutation ("rdms" peer), or the leaner loop on numpy arrays
(index the square matrix, compare the upper triangle; "array" peer). Both use the very
permutations nnbrain draws (``stimulus_permutations(n, n_permutations, seed)``), so the statistic,
the p-value and the max-statistic (FWE) p-value of every side must agree; the script checks that.

Each timing runs in its own subprocess (so ``ru_maxrss`` is that side's peak); memory is the peak
RSS minus the RSS after imports, data and a small warm-up call (numba kernels compile or load
from their on-disk cache there), the peak mark being reset to it (``/proc/self/clear_refs``).
Sides alternate, repeat ``--repeats`` times, and the table reports the best time of each side
and the ratio of best times from the same run.

Usage::

    python tests/benchmarks/bench_mantel.py                       # n=92, 10k permutations
    python tests/benchmarks/bench_mantel.py --methods tau-a --repeats 2 --layers 1
    python tests/benchmarks/bench_mantel.py --device cuda          # nnbrain on torch/CUDA
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: nnbrain comparator -> rsatoolbox.rdm.compare method
PEER_METHOD = {"tau-a": "tau-a", "tau-b": "tau-b", "spearman": "spearman", "pearson": "corr",
               "cosine": "cosine", "rho-a": "rho-a"}


def _data(n: int, layers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 100))
    brain = pdist(shared + 2.0 * rng.normal(size=(n, 100)), "correlation")
    cand = np.stack([pdist(s * shared + rng.normal(size=(n, 100)), "correlation")
                     for s in np.linspace(0.05, 0.3, layers)])
    return brain, cand


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _baseline_mb() -> float:
    """Reset the peak RSS to the current RSS (Linux ``/proc/self/clear_refs``), so that imports,
    data and warm-up temporaries do not hide the computation's peak; returns that RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux: the peak so far is the baseline
        return _peak_mb()
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024.0


def _worker(side: str, method: str, n: int, n_perm: int, layers: int, seed: int, inner: int,
            device: str | None) -> dict:
    brain, cand = _data(n, layers, seed)
    if side == "nnbrain":
        from nnbrain.core.permutation import mantel_test_batch

        mantel_test_batch(brain, cand, method, 20, seed, device=device)  # warm-up (cache load)
        base = _baseline_mb()
        times = []
        for _ in range(inner):
            t0 = time.perf_counter()
            res = mantel_test_batch(brain, cand, method, n_perm, seed, device=device)
            times.append(time.perf_counter() - t0)
        return {"time": min(times), "mem_mb": _peak_mb() - base, "stat": res.statistic.tolist(),
                "p": res.p_value.tolist(), "p_fwe": res.p_fwe.tolist()}
    from rsatoolbox.rdm import RDMs, compare
    from rsatoolbox.rdm.rdms import permute_rdms

    from nnbrain.core.permutation import stimulus_permutations

    perms = stimulus_permutations(n, n_perm, seed)
    peer = PEER_METHOD[method]
    brain_rdm, cand_rdm = RDMs(brain[None]), RDMs(cand)
    compare(permute_rdms(brain_rdm, perms[0]), cand_rdm, method=peer)  # warm-up
    square = brain_rdm.get_matrices()[0]
    iu = np.triu_indices(n, k=1)
    base = _baseline_mb()
    t0 = time.perf_counter()
    stat = compare(brain_rdm, cand_rdm, method=peer)[0]
    null = np.empty((n_perm, layers))
    for i, p in enumerate(perms):
        if side == "rdms":
            null[i] = compare(permute_rdms(brain_rdm, p), cand_rdm, method=peer)[0]
        else:
            null[i] = compare(square[np.ix_(p, p)][iu][None], cand, method=peer)[0]
    p_value = (1 + (null >= stat - 1e-12).sum(axis=0)) / (1 + n_perm)
    p_fwe = (1 + (null.max(axis=1)[:, None] >= stat - 1e-12).sum(axis=0)) / (1 + n_perm)
    return {"time": time.perf_counter() - t0, "mem_mb": _peak_mb() - base, "stat": stat.tolist(),
            "p": p_value.tolist(), "p_fwe": p_fwe.tolist()}


def _run(side: str, args: argparse.Namespace, method: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--methods", method, "--n", str(args.n),
           "--n-permutations", str(args.n_permutations), "--layers", str(args.layers),
           "--seed", str(args.seed), "--inner", str(args.inner)]
    if args.device:
        cmd += ["--device", args.device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["tau-a", "spearman", "pearson"],
                        choices=sorted(PEER_METHOD))
    parser.add_argument("--n", type=int, default=92, help="stimuli")
    parser.add_argument("--n-permutations", type=int, default=10000)
    parser.add_argument("--layers", type=int, default=1, help="candidate RDMs per test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds of all sides")
    parser.add_argument("--inner", type=int, default=3, help="nnbrain timings per round (best)")
    parser.add_argument("--peers", nargs="+", default=["rdms", "array"], choices=["rdms", "array"])
    parser.add_argument("--device", default=None, help="torch device for nnbrain (default numba)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.methods[0], args.n, args.n_permutations,
                                 args.layers, args.seed, args.inner, args.device)))
        return 0

    print(f"n={args.n} stimuli, {args.n_permutations} permutations, {args.layers} layer(s), "
          f"best of {args.repeats} rounds (nnbrain: best of {args.repeats} x {args.inner})")
    print("| comparator | side | best time (s) | peak memory (MB) | peer / nnbrain | "
          "stat, p, p_fwe agree |")
    print("|---|---|---|---|---|---|")
    for method in args.methods:
        sides = ["nnbrain", *args.peers]
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for _ in range(args.repeats):
            for side in sides:
                runs[side].append(_run(side, args, method))
        best = {side: min(r["time"] for r in runs[side]) for side in sides}
        mine = runs["nnbrain"][0]
        for side in sides:
            r = runs[side][0]
            agree = (np.allclose(r["stat"], mine["stat"], rtol=0, atol=1e-10)
                     and np.array_equal(r["p"], mine["p"])
                     and np.array_equal(r["p_fwe"], mine["p_fwe"]))
            ratio = "" if side == "nnbrain" else f"{best[side] / best['nnbrain']:.1f}x"
            label = {"nnbrain": f"nnbrain ({args.device or 'numba'})",
                     "rdms": "rsatoolbox permute_rdms + compare",
                     "array": "rsatoolbox square[ix_(p, p)] + compare"}[side]
            mem = max(0.0, max(x["mem_mb"] for x in runs[side]))
            print(f"| {method} | {label} | {best[side]:.3f} | {mem:.1f} | {ratio} | "
                  f"{'yes' if agree else 'NO'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
