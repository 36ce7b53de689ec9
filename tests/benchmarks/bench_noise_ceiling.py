"""Benchmark: RDM noise ceilings, nnbrain.core.noise_ceiling vs rsatoolbox 0.3.2, same data.

nnbrain's ``rdm_noise_ceiling(rdms, method)`` against rsatoolbox's
``boot_noise_ceiling(RDMs(rdms), method)`` (leave-one-subject-out lower bound, all-subjects upper
bound), for every comparator, at 20 subjects x 92 stimuli and 100 subjects x 500 stimuli. The
subject RDMs are a shared random structure plus independent noise (seeded, identical on both sides).

Each side of each case runs in its own subprocess (this script with ``--worker``), so its peak
memory (``ru_maxrss``) is its own. After imports and data generation the kernel's peak-RSS mark
is reset to the current RSS (``/proc/self/clear_refs``), which is then the baseline subtracted.
The parent checks that both bounds agree to 1e-10.

Usage::

    python tests/benchmarks/bench_noise_ceiling.py [--sizes 20x92,100x500] [--methods ...]
        [--repeats 5] [--peer-repeats 3] [--peer-repeats-large 1] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

METHODS = ["cosine", "pearson", "spearman", "rho-a", "tau-a", "tau-b"]
#: nnbrain comparator -> rsatoolbox's name for it.
RSATOOLBOX_NAME = {"pearson": "corr"}
TOLERANCE = 1e-10
#: cases with more subject x stimulus pairs than this run rsatoolbox --peer-repeats-large times.
LARGE = 1_000_000


def _rdms(n_subjects: int, n_stimuli: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    m = n_stimuli * (n_stimuli - 1) // 2
    return rng.random(m) + rng.normal(scale=0.5, size=(n_subjects, m)) + 1.0


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Reset ru_maxrss to the current RSS (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def _worker(spec: dict) -> None:
    """One side of one case: time it (best of repeats), print a JSON line with the bounds."""
    import time
    import warnings

    if spec["side"] == "nnbrain":
        from nnbrain.core.noise_ceiling import rdm_noise_ceiling

        def run(rdms):
            return rdm_noise_ceiling(rdms, spec["method"])
    else:
        from rsatoolbox.inference import boot_noise_ceiling
        from rsatoolbox.rdm import RDMs

        warnings.simplefilter("ignore", UserWarning)  # "Noise ceiling for tau based on ..."

        def run(rdms):
            method = RSATOOLBOX_NAME.get(spec["method"], spec["method"])
            return boot_noise_ceiling(RDMs(rdms), method=method)
    rdms = _rdms(spec["subjects"], spec["stimuli"])
    if spec["side"] == "nnbrain":
        run(rdms[:3, :10])  # load the compiled Kendall kernel (numba's on-disk cache) first
    _reset_peak()
    base = _rss_mb()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        lower, upper = run(rdms)
        times.append(time.perf_counter() - start)
    print(json.dumps({"best_s": min(times), "peak_mb": _rss_mb() - base,
                      "bounds": [float(lower), float(upper)]}))


def _run_side(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20x92,100x500", help="subjects x stimuli, comma-sep.")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=5, help="nnbrain repeats (best of)")
    parser.add_argument("--peer-repeats", type=int, default=3, help="rsatoolbox repeats (best of)")
    parser.add_argument("--peer-repeats-large", type=int, default=1,
                        help="rsatoolbox repeats at the large size (about 100 s each)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternating nnbrain / rsatoolbox runs per case (best of all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return
    print("| subjects x stimuli | comparator | nnbrain s | rsatoolbox s | ratio | nnbrain peak MB "
          "| rsatoolbox peak MB | lower | upper | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed = False
    for size in args.sizes.split(","):
        subjects, stimuli = map(int, size.split("x"))
        large = subjects * stimuli * (stimuli - 1) // 2 > LARGE
        for method in args.methods.split(","):
            spec = {"method": method, "subjects": subjects, "stimuli": stimuli}
            peer_repeats = args.peer_repeats_large if large else args.peer_repeats
            runs = [(_run_side({**spec, "side": "nnbrain", "repeats": args.repeats}),
                     _run_side({**spec, "side": "rsatoolbox", "repeats": peer_repeats}))
                    for _ in range(args.rounds)]
            ours = min((r[0] for r in runs), key=lambda r: r["best_s"])
            peer = min((r[1] for r in runs), key=lambda r: r["best_s"])
            diff = float(np.abs(np.subtract(ours["bounds"], peer["bounds"])).max())
            failed |= not diff <= TOLERANCE
            lower, upper = ours["bounds"]
            print(f"| {subjects} x {stimuli} | {method} | {ours['best_s']:.4f} | "
                  f"{peer['best_s']:.3f} | {peer['best_s'] / ours['best_s']:.0f}x | "
                  f"{ours['peak_mb']:.0f} | {peer['peak_mb']:.0f} | {lower:.4f} | {upper:.4f} | "
                  f"{diff:.1e} |", flush=True)
    if failed:
        sys.exit(f"some noise ceilings differ from rsatoolbox's by more than {TOLERANCE}")


if __name__ == "__main__":
    main()
