"""Benchmark: RDM computation, nnbrain.core.rdm vs rsatoolbox 0.3.2 (calc_rdm), same data, one run.

Each side of each case runs in its own subprocess (this script with ``--worker``), so its peak
memory (``ru_maxrss``) is its own. After imports and data generation the kernel's peak-RSS mark
is reset to the current RSS (``/proc/self/clear_refs``), which is then the baseline subtracted.
Both sides generate the same seeded data; the parent checks that the RDMs agree.

Cases (n conditions x c channels):

- correlation, euclidean: 1000 x 4096, ``compute_rdm`` vs ``calc_rdm(Dataset(X), method)``.
  rsatoolbox's euclidean is the squared distance per channel; nnbrain's values are converted
  (``d**2 / c``) before the check.
- cosine: 1000 x 4096. rsatoolbox 0.3.2 has no cosine RDM; its correlation RDM on the same data
  (the same work plus centring) is the peer timing, and the values are checked against
  ``scipy.spatial.distance.pdist(X, "cosine")`` (computed untimed in the peer's process).
- mahalanobis: 1000 x 1024 with a noise precision.
- crossnobis: 200 conditions x 4 runs x 1024 channels with a noise precision,
  ``calc_rdm(..., descriptor="stim", cv_descriptor="run", noise=P)``.
- batched-correlation: 8 layers of 500 x 2048, ``compute_rdms(stack)`` vs ``calc_rdm([datasets])``.

Usage::

    python tests/benchmarks/bench_rdm.py [--repeats 5] [--peer-repeats 3] [--rounds 2]
        [--cases correlation,cosine,...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: case -> nnbrain method, rsatoolbox method ("peer"), sizes
CASES: dict[str, dict] = {
    "correlation": {"method": "correlation", "peer": "correlation", "n": 1000, "c": 4096},
    "cosine": {"method": "cosine", "peer": "correlation", "n": 1000, "c": 4096},
    "euclidean": {"method": "euclidean", "peer": "euclidean", "n": 1000, "c": 4096},
    "mahalanobis": {"method": "mahalanobis", "peer": "mahalanobis", "n": 1000, "c": 1024},
    "crossnobis": {"method": "crossnobis", "peer": "crossnobis", "n": 200, "c": 1024, "runs": 4},
    "batched-correlation": {"method": "correlation", "peer": "correlation", "n": 500, "c": 2048,
                            "layers": 8},
}
TOLERANCE = 1e-10


def _data(case: dict) -> dict:
    """Seeded patterns (and design / noise precision) of a case, identical in every process."""
    rng = np.random.default_rng(0)
    n, c = case["n"], case["c"]
    if "layers" in case:
        return {"patterns": rng.normal(size=(case["layers"], n, c)) + 1.0}
    data = {}
    if "runs" in case:
        conditions = np.tile(np.arange(n), case["runs"])
        data["conditions"] = conditions
        data["partitions"] = np.repeat(np.arange(case["runs"]), n)
        noise = rng.normal(size=(conditions.size, c))
        data["patterns"] = rng.normal(size=(n, c))[conditions] + noise
    else:
        data["patterns"] = rng.normal(size=(n, c)) + rng.normal(size=(n, 1))
    if case["method"] in ("mahalanobis", "crossnobis"):
        a = rng.normal(size=(c, 2 * c)) / np.sqrt(2 * c)
        data["precision"] = a @ a.T + 0.1 * np.eye(c)
    return data


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Reset ru_maxrss to the current RSS (Linux), so that import and data-generation
    temporaries do not hide the peak of the computation."""
    Path("/proc/self/clear_refs").write_text("5")


def _best_of(repeats: int, run) -> tuple[float, np.ndarray]:
    import time

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def _nnbrain(case: dict, data: dict, repeats: int) -> tuple[float, np.ndarray]:
    from nnbrain.core.rdm import compute_rdm, compute_rdms

    if "layers" in case:
        return _best_of(repeats, lambda: compute_rdms(data["patterns"], case["method"]))
    kwargs = {}
    if "conditions" in data:
        kwargs = {"conditions": data["conditions"], "partitions": data["partitions"]}
    if "precision" in data:
        kwargs["noise_precision"] = data["precision"]
    return _best_of(repeats, lambda: compute_rdm(data["patterns"], case["method"], **kwargs))


def _rsatoolbox(case: dict, data: dict, repeats: int) -> tuple[float, np.ndarray]:
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    if "layers" in case:
        datasets = [Dataset(p) for p in data["patterns"]]
        return _best_of(repeats,
                        lambda: calc_rdm(datasets, method=case["peer"]).get_vectors())
    kwargs = {"noise": data.get("precision")}
    descriptors = None
    if "conditions" in data:
        descriptors = {"stim": data["conditions"], "run": data["partitions"]}
        kwargs.update(descriptor="stim", cv_descriptor="run")
    dataset = Dataset(data["patterns"], obs_descriptors=descriptors)
    return _best_of(repeats,
                    lambda: calc_rdm(dataset, method=case["peer"], **kwargs).get_vectors()[0])


def _worker(spec: dict) -> None:
    """One side of one case: time it, write the RDMs, print a JSON line."""
    case = CASES[spec["case"]]
    if spec["side"] == "nnbrain":
        import nnbrain.core.rdm  # noqa: F401  (imports before the baseline)
        run = _nnbrain
    else:
        import rsatoolbox.rdm  # noqa: F401
        run = _rsatoolbox
    data = _data(case)
    _reset_peak()
    base = _rss_mb()
    best, result = run(case, data, spec["repeats"])
    peak = _rss_mb() - base
    if case["method"] == "cosine" and spec["side"] == "rsatoolbox":
        from scipy.spatial.distance import pdist

        result = pdist(data["patterns"], "cosine")  # reference values (rsatoolbox has none)
    if case["method"] == "euclidean" and spec["side"] == "nnbrain":
        result = result**2 / case["c"]  # rsatoolbox's convention: squared, per channel
    np.save(spec["out"], np.asarray(result))
    print(json.dumps({"best_s": best, "peak_mb": peak}))


def _run_side(case: str, side: str, repeats: int, out: Path) -> dict:
    spec = json.dumps({"case": case, "side": side, "repeats": repeats, "out": str(out)})
    done = subprocess.run([sys.executable, __file__, "--worker", spec], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="nnbrain repeats (best of)")
    parser.add_argument("--peer-repeats", type=int, default=3, help="rsatoolbox repeats (best of)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating nnbrain / rsatoolbox runs per case (best of all), so "
                             "that both sides meet the same fluctuations of machine load")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return
    print("| case | size | nnbrain s | rsatoolbox s | ratio | nnbrain peak MB | rsatoolbox peak MB "
          "| max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            case = CASES[name]
            runs = [(_run_side(name, "nnbrain", args.repeats, Path(tmp) / "ours.npy"),
                     _run_side(name, "rsatoolbox", args.peer_repeats, Path(tmp) / "peer.npy"))
                    for _ in range(args.rounds)]
            ours = min((r[0] for r in runs), key=lambda r: r["best_s"])
            peer = min((r[1] for r in runs), key=lambda r: r["best_s"])
            diff = float(np.abs(np.load(Path(tmp) / "ours.npy") - np.load(Path(tmp) / "peer.npy"))
                         .max())
            failed |= not diff <= TOLERANCE
            size = f"{case.get('layers', 1)} x {case['n']} x {case['c']}" + (
                f", {case['runs']} runs" if "runs" in case else "")
            print(f"| {name} | {size} | {ours['best_s']:.3f} | {peer['best_s']:.3f} | "
                  f"{peer['best_s'] / ours['best_s']:.1f}x | {ours['peak_mb']:.0f} | "
                  f"{peer['peak_mb']:.0f} | {diff:.1e} |", flush=True)
    if failed:
        sys.exit(f"some RDMs differ from rsatoolbox's by more than {TOLERANCE}")


if __name__ == "__main__":
    main()
