"""Benchmark: CKA, nnbrain's streamed/feature-space CKA vs the colab of Kornblith et al. (2019).

Cases (each side in its own subprocess; peak memory is that process's ``ru_maxrss`` minus its
resident size after imports and data generation, the high-water mark being reset there through
``/proc/self/clear_refs``; so the inputs are not counted, the working memory is):

- ``rbf10k``: unbiased RBF CKA, n=10,000 rows x (1024, 500) features (``--features``), float64
  inputs: the colab code as released (written out below: ``gram_rbf`` via squared distances and
  ``np.median``, ``center_gram``, ``cka``) vs ``nnbrain.core.cka.cka(kernel="rbf",
  unbiased=True)`` with float64 tiles (default) and with float32 tiles (``nnbrain_f32``).
- ``linear10k``: unbiased linear CKA, same data: the colab through Gram matrices vs nnbrain's
  feature-space CKA.
- ``linear``: nnbrain unbiased linear CKA at the 7T study's size, n=515,940 x (1024, 500),
  float32 inputs (3.1 GB), float64 GEMMs (default) and float32 GEMMs.
- ``rbf50k``: nnbrain unbiased RBF CKA at n=50,000 x (1024, 500) float32 (bandwidth from the
  seeded 10,000-row subsample), extrapolated to n=515,940 as O(n^2) for the tile pass.

Rounds alternate the two sides of a comparison, so that both see the same load; the table gives
the best time of each side and the ratio of the best times (and the median of the per-round
ratios). Timings on a shared 2-core machine are noisy: each case records the 1-minute load
average before and after it (``load_before``, ``load_after``). nnbrain's RBF kernel is compiled
by numba on first use and cached on disk (``__pycache__`` or ``NUMBA_CACHE_DIR``); a warm-up call
outside the timings fills that cache, so the timed runs load it as an installed app would.

Usage::

    python tests/benchmarks/bench_cka.py [--cases rbf10k,linear10k,linear,rbf50k]
        [--rounds 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

COMMON = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    args = json.loads(sys.argv[1])

    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def baseline_mb():
        # Reset the high-water mark to the current RSS (Linux >= 4.0), so that transients of
        # the data generation do not hide the peak of the computation; return the current RSS.
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            with open("/proc/self/status") as fh:
                rss = next(line for line in fh if line.startswith("VmRSS:"))
            return int(rss.split()[1]) / 1024
        except OSError:
            return rss_mb()

    def make_data(n, px, py, dtype, seed=0, chunk=8192):
        # X: a non-linear view of an 8-d latent plus noise; Y: a linear view plus noise.
        rng = np.random.default_rng(seed)
        w1 = rng.standard_normal((8, px)) / np.sqrt(8)
        w2 = rng.standard_normal((8, py)) / np.sqrt(8)
        x = np.empty((n, px), dtype)
        y = np.empty((n, py), dtype)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            z = rng.standard_normal((e - s, 8))
            x[s:e] = np.tanh(z @ w1) + 0.5 * rng.standard_normal((e - s, px), dtype=np.float32)
            y[s:e] = z @ w2 + rng.standard_normal((e - s, py), dtype=np.float32)
        return x, y
""")

COLAB = COMMON + textwrap.dedent("""
    # The colab released with Kornblith et al. (2019), as published.
    def gram_linear(x):
        return x.dot(x.T)

    def gram_rbf(x, threshold=1.0):
        dot_products = x.dot(x.T)
        sq_norms = np.diag(dot_products)
        sq_distances = -2 * dot_products + sq_norms[:, None] + sq_norms[None, :]
        sq_median_distance = np.median(sq_distances)
        return np.exp(-sq_distances / (2 * threshold ** 2 * sq_median_distance))

    def center_gram(gram, unbiased=False):
        if not np.allclose(gram, gram.T):
            raise ValueError('Input must be a symmetric matrix.')
        gram = gram.copy()
        if unbiased:
            n = gram.shape[0]
            np.fill_diagonal(gram, 0)
            means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
            means -= np.sum(means) / (2 * (n - 1))
            gram -= means[:, None]
            gram -= means[None, :]
            np.fill_diagonal(gram, 0)
        else:
            means = np.mean(gram, 0, dtype=np.float64)
            means -= np.mean(means) / 2
            gram -= means[:, None]
            gram -= means[None, :]
        return gram

    def cka(gram_x, gram_y, debiased=False):
        gram_x = center_gram(gram_x, unbiased=debiased)
        gram_y = center_gram(gram_y, unbiased=debiased)
        scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
        normalization_x = np.linalg.norm(gram_x)
        normalization_y = np.linalg.norm(gram_y)
        return scaled_hsic / (normalization_x * normalization_y)

    x, y = make_data(args["n"], args["px"], args["py"], np.dtype(args["dtype"]))
    base = baseline_mb()
    gram = gram_rbf if args["kernel"] == "rbf" else gram_linear
    start, cpu = time.perf_counter(), time.process_time()
    value = float(cka(gram(x), gram(y), debiased=args["unbiased"]))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "value": value,
                      "peak_mb": rss_mb() - base, "base_mb": base}))
""")

NNBRAIN = COMMON + textwrap.dedent("""
    from nnbrain.core.cka import cka_details, median_sq_distance
    x, y = make_data(args["n"], args["px"], args["py"], np.dtype(args["dtype"]))
    base = baseline_mb()
    median_s = None
    if args.get("time_median"):  # the subsample median alone (a fixed cost when extrapolating)
        idx = np.sort(np.random.default_rng(0).choice(x.shape[0], 10_000, replace=False))
        start = time.perf_counter()
        median_sq_distance(x[idx])
        median_sq_distance(y[idx])
        median_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    details = cka_details(x, y, args["kernel"], args["unbiased"],
                          compute_dtype=args.get("compute_dtype", "float64"))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "value": details.value,
                      "peak_mb": rss_mb() - base, "base_mb": base, "median_s": median_s,
                      "details": details.to_dict()}))
""")


def run_side(code: str, params: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(name: str, params: dict, rounds: int, variants: dict[str, dict]) -> dict:
    """Alternate the colab and each nnbrain variant for ``rounds`` rounds.

    Returns the best time of each side, the ratio of the best times and the median of the
    per-round ratios (each round's sides ran back to back, under the same load).
    """
    runs: dict[str, list[dict]] = {"colab": [], **{v: [] for v in variants}}
    for r in range(rounds):
        runs["colab"].append(run_side(COLAB, params))
        for v, extra in variants.items():
            runs[v].append(run_side(NNBRAIN, {**params, **extra}))
        print(f"  {name} round {r + 1}: " + ", ".join(
            f"{k} {v[-1]['seconds']:.2f} s" for k, v in runs.items()), file=sys.stderr,
            flush=True)
    out = {"case": name, "params": params, "colab_s": min(c["seconds"] for c in runs["colab"]),
           "colab_cpu_s": min(c["cpu_s"] for c in runs["colab"]),
           "colab_peak_mb": max(c["peak_mb"] for c in runs["colab"]), "rounds": runs}
    for v in variants:
        best = min(o["seconds"] for o in runs[v])
        out[f"{v}_s"] = best
        out[f"{v}_cpu_s"] = min(o["cpu_s"] for o in runs[v])
        out[f"{v}_peak_mb"] = max(o["peak_mb"] for o in runs[v])
        out[f"{v}_ratio_best"] = out["colab_s"] / best
        out[f"{v}_ratio_median_of_rounds"] = statistics.median(
            c["seconds"] / o["seconds"] for c, o in zip(runs["colab"], runs[v]))
        out[f"{v}_abs_diff"] = abs(runs["colab"][0]["value"] - runs[v][0]["value"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="rbf10k,linear10k,linear,rbf50k")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-big", type=int, default=50_000)
    parser.add_argument("--n-full", type=int, default=515_940)
    parser.add_argument("--features", default="1024,500",
                        help="p_x,p_y of the n=10,000 comparisons")
    parser.add_argument("--json", default=None)
    opts = parser.parse_args(argv)
    px, py = (int(v) for v in opts.features.split(","))
    feats = {"px": px, "py": py}
    results = []
    cases = opts.cases.split(",")
    if any(case.startswith("rbf") for case in cases):  # fill numba's on-disk kernel cache
        run_side(NNBRAIN, {"n": 64, "px": 8, "py": 8, "dtype": "float64", "kernel": "rbf",
                           "unbiased": True})
    for case in cases:
        print(f"case {case}", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        if case in ("rbf10k", "linear10k"):
            kernel = "rbf" if case == "rbf10k" else "linear"
            params = {"n": 10_000, **feats, "dtype": "float64", "kernel": kernel,
                      "unbiased": True}
            variants = {"nnbrain": {}}
            if kernel == "rbf":
                variants["nnbrain_f32"] = {"compute_dtype": "float32"}
            results.append(compare(case, params, opts.rounds, variants))
        elif case == "linear":
            for compute in ("float64", "float32"):
                params = {"n": opts.n_full, "px": 1024, "py": 500, "dtype": "float32",
                      "kernel": "linear",
                          "unbiased": True, "compute_dtype": compute}
                runs = [run_side(NNBRAIN, params) for _ in range(max(1, opts.rounds - 1))]
                results.append({"case": f"linear-{compute}", "params": params,
                                "nnbrain_s": min(r["seconds"] for r in runs),
                                "nnbrain_cpu_s": min(r["cpu_s"] for r in runs),
                                "nnbrain_peak_mb": max(r["peak_mb"] for r in runs),
                                "value": runs[0]["value"], "rounds": {"nnbrain": runs}})
                print(f"  linear {compute}: {[round(r['seconds'], 2) for r in runs]} s",
                      file=sys.stderr, flush=True)
        elif case == "rbf50k":
            params = {"n": opts.n_big, "px": 1024, "py": 500, "dtype": "float32", "kernel": "rbf",
                      "unbiased": True, "time_median": True}
            run = run_side(NNBRAIN, params)
            tiles_s = run["seconds"] - run["median_s"]
            scale = (opts.n_full / opts.n_big) ** 2
            results.append({"case": "rbf50k", "params": params, "nnbrain_s": run["seconds"],
                            "nnbrain_cpu_s": run["cpu_s"],
                            "median_s": run["median_s"], "tile_pass_s": tiles_s,
                            "extrapolated_full_s": tiles_s * scale + run["median_s"],
                            "nnbrain_peak_mb": run["peak_mb"], "value": run["value"],
                            "rounds": {"nnbrain": [run]}})
            print(f"  rbf50k: {run['seconds']:.1f} s", file=sys.stderr, flush=True)
        else:
            parser.error(f"unknown case {case!r}")
        results[-1].update(load_before=load_before, load_after=os.getloadavg()[0])
    for r in results:
        line = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in r.items()
                if k not in ("rounds", "params")}
        print(json.dumps(line))
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
