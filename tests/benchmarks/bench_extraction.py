"""Benchmark: layer activation extraction, nnbrain vs torchvision's feature extractor vs thingsvision.

Same model (torchvision AlexNet, seeded random weights saved once to a local file), same images
(256 real photographs: 224 x 224 crops of scikit-learn's bundled sample images, written as PNG),
same layers (the 5 conv ReLUs and 2 fc ReLUs), batch size 64, CPU. Each side runs in its own
subprocess, so peak memory (``ru_maxrss``) is its own; the baseline after imports is subtracted.

- nnbrain: what the ``ExtractActivations`` node runs (``write_activations``): images read, one pass
  with forward hooks on all 7 layers, each layer streamed to disk batch by batch and the ``.npz``
  assembled layer by layer (float32, 125 MB for 64 images with flattened maps); then, through
  the activation disk cache, a first run (fills it) and cached reruns (a CRC-32 check of every
  layer and a hard link), with flattened conv maps (the comparison's setting) and with
  channel-mean pooling (the default).
- torchvision: ``create_feature_extractor`` with the 7 return nodes, one pass.
- thingsvision 2.7.3: cannot share nnbrain's environment (it pins torchvision==0.15.2 and numpy<2),
  so it runs from a separate venv given by ``--thingsvision-python``; its ``extract_features``
  takes one module per call, so 7 passes (how its users extract several layers).

Usage::

    python tests/benchmarks/bench_extraction.py [--n-images 256] [--threads 2] [--repeats 3]
        [--thingsvision-python /tmp/tvenv/bin/python] [--skip-comparison]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

LAYERS = ["features.1", "features.4", "features.7", "features.9", "features.11",
          "classifier.2", "classifier.5"]

COMMON = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    import numpy as np
    import torch
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    files = sorted(Path(args["images"]).glob("*.png"))
    layers = args["layers"]
    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
""")

SPEC = textwrap.dedent("""
    from nnbrain.interfaces.activations import write_activations
    from nnbrain.spec import load_model_spec
    spec_file = Path(args["tmp"]).parent / f"spec-{args['pooling']}.yaml"
    spec_file.write_text(
        "models:\\n  - name: alexnet\\n    architecture: torchvision:alexnet\\n"
        "    weights:\\n      - label: seeded\\n        file: " + args["weights"] + "\\n"
        "    layers: [" + ", ".join(layers) + "]\\n    pooling: " + args["pooling"] + "\\n"
        "    input: {kind: image, shape: [3, 224, 224]}\\n")
    model = load_model_spec(spec_file)[0]
    spec, weights = model.to_dict(), model.weights[0].to_dict()
    out = Path(args["tmp"]).parent / f"out-{args['pooling']}"
    out.mkdir(exist_ok=True)
""")

NNBRAIN = COMMON + SPEC + textwrap.dedent("""
    base = rss_mb()
    times = []
    for i in range(args["repeats"]):
        start = time.perf_counter()
        meta = write_activations(spec, weights, files, out / f"run{i}.npz",
                                 n_threads=args["threads"], batch_size=64)
        times.append(time.perf_counter() - start)
    with np.load(out / "run0.npz") as npz:
        shapes = {k: list(npz[k].shape) for k in layers}
        checksum = float(sum(npz[k].astype(np.float64).sum() for k in layers))
    print(json.dumps({"side": "nnbrain", "best_s": min(times), "times": times,
                      "peak_mb": rss_mb() - base, "shapes": shapes, "checksum": checksum}))
""")

NNBRAIN_CACHE = COMMON + SPEC + textwrap.dedent("""
    base = rss_mb()
    start = time.perf_counter()
    meta1 = write_activations(spec, weights, files, out / "first.npz", n_threads=args["threads"],
                              cache_dir=Path(args["cache"]))
    t_first = time.perf_counter() - start
    peak_first = rss_mb() - base
    times = []
    for i in range(args["repeats"]):
        start = time.perf_counter()
        meta2 = write_activations(spec, weights, files, out / f"rerun{i}.npz",
                                  n_threads=args["threads"], cache_dir=Path(args["cache"]))
        times.append(time.perf_counter() - start)
    assert meta1["CacheHits"] == [] and meta2["CacheHits"] == layers
    with np.load(out / "first.npz") as a, np.load(out / "rerun0.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in layers)
    print(json.dumps({"side": "cache-" + args["pooling"], "first_s": t_first, "best_s": min(times),
                      "times": times, "peak_mb": peak_first}))
""")

TORCHVISION = COMMON + textwrap.dedent("""
    import torchvision
    from PIL import Image
    from torchvision.models.feature_extraction import create_feature_extractor
    base = rss_mb()
    model = torchvision.models.alexnet(weights=None)
    model.load_state_dict(torch.load(args["weights"], weights_only=True))
    model.eval()
    nodes = {name: name for name in layers}
    extractor = create_feature_extractor(model, return_nodes=nodes)
    to_tensor = torchvision.transforms.functional
    times = []
    for _ in range(args["repeats"]):
        start = time.perf_counter()
        outs = {k: [] for k in layers}
        with torch.inference_mode():
            for s in range(0, len(files), 64):
                batch = torch.stack([to_tensor.to_tensor(Image.open(f).convert("RGB"))
                                     for f in files[s:s + 64]])
                for k, v in extractor(batch).items():
                    outs[k].append(v.flatten(1).double())
        acts = {k: torch.cat(v).numpy() for k, v in outs.items()}
        times.append(time.perf_counter() - start)
    print(json.dumps({"side": "torchvision", "best_s": min(times), "times": times,
                      "peak_mb": rss_mb() - base,
                      "checksum": float(sum(v.sum() for v in acts.values()))}))
""")

THINGSVISION = COMMON + textwrap.dedent("""
    from thingsvision import get_extractor
    from thingsvision.utils.data import ImageDataset, DataLoader
    base = rss_mb()
    extractor = get_extractor(model_name="alexnet", source="torchvision", device="cpu",
                              pretrained=False)
    extractor.model.load_state_dict(torch.load(args["weights"]))
    dataset = ImageDataset(root=args["images"], out_path=args["tmp"], backend="pt",
                           transforms=extractor.get_transformations(resize_dim=224, crop_dim=224))
    times = []
    for _ in range(args["repeats"]):
        start = time.perf_counter()
        acts = {}
        for layer in layers:
            batches = DataLoader(dataset=dataset, batch_size=64, backend="pt")
            acts[layer] = extractor.extract_features(batches=batches, module_name=layer,
                                                     flatten_acts=True, output_type="ndarray")
        times.append(time.perf_counter() - start)
    print(json.dumps({"side": "thingsvision", "best_s": min(times), "times": times,
                      "peak_mb": rss_mb() - base,
                      "shapes": {k: list(v.shape) for k, v in acts.items()}}))
""")


def make_images(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` random 224 x 224 crops of scikit-learn's two sample photographs, as PNG."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    for i in range(n):
        photo = photos[i % len(photos)]
        y = rng.integers(0, photo.shape[0] - 224)
        x = rng.integers(0, photo.shape[1] - 224)
        Image.fromarray(photo[y:y + 224, x:x + 224]).save(folder / f"img{i:04d}.png")


def run_side(python: str, code: str, args: dict) -> dict:
    proc = subprocess.run([python, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--thingsvision-python", default=None)
    parser.add_argument("--skip-comparison", action="store_true",
                        help="nnbrain and its cache only (no torchvision side)")
    opts = parser.parse_args()
    import torch
    import torchvision

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images" / "all").mkdir(parents=True)
        make_images(tmp / "images" / "all", opts.n_images)
        torch.manual_seed(0)
        torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp / "alexnet.pt")
        args = {"images": str(tmp / "images" / "all"), "weights": str(tmp / "alexnet.pt"),
                "layers": LAYERS, "threads": opts.threads, "repeats": opts.repeats,
                "cache": str(tmp / "cache"), "tmp": str(tmp / "tv")}
        results = [run_side(sys.executable, NNBRAIN, dict(args, pooling="flatten"))]
        if not opts.skip_comparison:
            results.append(run_side(sys.executable, TORCHVISION, args))
        if opts.thingsvision_python:
            tv_args = dict(args, images=str(tmp / "images"))
            results.append(run_side(opts.thingsvision_python, THINGSVISION, tv_args))
        caches = [run_side(sys.executable, NNBRAIN_CACHE,
                           dict(args, pooling=p, cache=str(tmp / f"cache-{p}")))
                  for p in ("flatten", "channelmean")]
    for r in results + caches:
        print(json.dumps(r))
    nn = results[0]["best_s"]
    print(f"\n{opts.n_images} images, 7 layers, batch 64, {opts.threads} threads")
    print(f"{'side':<14}{'best s':>9}{'img/s':>9}{'peak MB':>9}{'vs nnbrain':>12}")
    for r in results:
        if "error" in r:
            print(f"{'?':<14} error: {r['error']}")
            continue
        print(f"{r['side']:<14}{r['best_s']:>9.2f}{opts.n_images / r['best_s']:>9.1f}"
              f"{r['peak_mb']:>9.0f}{r['best_s'] / nn:>11.2f}x")
    for cache in caches:
        if "error" in cache:
            print(f"cache error: {cache['error']}")
            continue
        print(f"{cache['side']}: first run {cache['first_s']:.2f} s "
              f"({opts.n_images / cache['first_s']:.1f} images/s, peak {cache['peak_mb']:.0f} MB), "
              f"cached run {cache['best_s']:.3f} s ({cache['first_s'] / cache['best_s']:.0f}x "
              "faster)")


if __name__ == "__main__":
    main()
