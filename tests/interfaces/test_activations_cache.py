"""Activations through the disk cache: a second run reads every layer, a corrupted entry recomputes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from conftest import DEMO, compute_activations
from nnbrain.interfaces.activations import write_activations
from nnbrain.spec import load_model_spec

LAYERS = ["conv1", "conv2", "conv3", "fc1", "fc2"]


def _run(cache: Path | None, weights_index: int = 0):
    model = load_model_spec(DEMO / "code" / "model_spec.yaml")[0]
    stimuli = sorted((DEMO / "stimuli").glob("*.png"))
    return compute_activations(model.to_dict(), model.weights[weights_index].to_dict(), stimuli, 1,
                               cache)


def _entries(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in cache.glob("??/*.json")]


def test_second_run_reads_every_layer_from_the_cache(tmp_path: Path) -> None:
    reference, _ = _run(None)
    first, meta1 = _run(tmp_path)
    second, meta2 = _run(tmp_path)
    assert meta1["CacheHits"] == [] and meta2["CacheHits"] == LAYERS
    for layer in LAYERS:
        np.testing.assert_array_equal(first[layer], reference[layer])
        np.testing.assert_array_equal(second[layer], reference[layer])
    assert len(_entries(tmp_path)) == len(LAYERS)
    assert len(list((tmp_path / "bundles").glob("*.npz"))) == 1


def test_rerun_links_the_cached_npz(tmp_path: Path) -> None:
    model = load_model_spec(DEMO / "code" / "model_spec.yaml")[0]
    stimuli = sorted((DEMO / "stimuli").glob("*.png"))
    args = (model.to_dict(), model.weights[0].to_dict(), stimuli)
    write_activations(*args, tmp_path / "a.npz", cache_dir=tmp_path / "cache")
    meta = write_activations(*args, tmp_path / "b.npz", cache_dir=tmp_path / "cache")
    assert meta["CacheHits"] == LAYERS
    assert os.path.samefile(tmp_path / "a.npz", tmp_path / "b.npz")
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert a.files == b.files == [f for f in LAYERS]
    # a subset of the layers is assembled from the bundle's members
    subset = dict(model.to_dict(), layers=["fc1", "conv2"])
    meta = write_activations(subset, *args[1:], tmp_path / "c.npz", cache_dir=tmp_path / "cache")
    assert meta["CacheHits"] == ["fc1", "conv2"]
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "c.npz") as c:
        assert c.files == ["fc1", "conv2"]
        np.testing.assert_array_equal(c["conv2"], a["conv2"])


def test_weights_sources_do_not_share_entries(tmp_path: Path) -> None:
    trained, _ = _run(tmp_path, 0)
    random, meta = _run(tmp_path, -1)
    assert meta["CacheHits"] == [] and meta["Seed"] == 2
    assert not np.allclose(trained["fc1"], random["fc1"])
    assert len(_entries(tmp_path)) == 2 * len(LAYERS)


def test_corrupted_entry_is_recomputed(tmp_path: Path) -> None:
    _run(tmp_path)
    victim = next(e for e in _entries(tmp_path) if e["fields"]["layer"] == "conv2")
    bundle = tmp_path / victim["file"]
    raw = bytearray(bundle.read_bytes())
    end = victim["offset"] + victim["nbytes"]
    raw[end - 8:end] = bytes(b ^ 0xFF for b in raw[end - 8:end])
    bundle.write_bytes(bytes(raw))
    acts, meta = _run(tmp_path)
    reference, _ = _run(None)
    assert meta["CacheHits"] == ["conv1", "conv3", "fc1", "fc2"]
    for layer in LAYERS:
        np.testing.assert_array_equal(acts[layer], reference[layer])
    _acts, meta = _run(tmp_path)
    assert meta["CacheHits"] == LAYERS
