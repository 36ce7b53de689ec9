"""Activations through the disk cache: a second run reads every layer, a corrupted entry recomputes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import DEMO
from nnbrain.interfaces.activations import compute_activations
from nnbrain.spec import load_model_spec

LAYERS = ["conv1", "conv2", "conv3", "fc1", "fc2"]


def _run(cache: Path | None, weights_index: int = 0):
    model = load_model_spec(DEMO / "code" / "model_spec.yaml")[0]
    stimuli = sorted((DEMO / "stimuli").glob("*.png"))
    return compute_activations(model.to_dict(), model.weights[weights_index].to_dict(), stimuli, 1,
                               cache)


def test_second_run_reads_every_layer_from_the_cache(tmp_path: Path) -> None:
    reference, _ = _run(None)
    first, meta1 = _run(tmp_path)
    second, meta2 = _run(tmp_path)
    assert meta1["CacheHits"] == [] and meta2["CacheHits"] == LAYERS
    for layer in LAYERS:
        np.testing.assert_array_equal(first[layer], reference[layer])
        np.testing.assert_array_equal(second[layer], reference[layer])
    assert len(list(tmp_path.rglob("*.npy"))) == len(LAYERS)


def test_weights_sources_do_not_share_entries(tmp_path: Path) -> None:
    trained, _ = _run(tmp_path, 0)
    random, meta = _run(tmp_path, -1)
    assert meta["CacheHits"] == [] and meta["Seed"] == 2
    assert not np.allclose(trained["fc1"], random["fc1"])
    assert len(list(tmp_path.rglob("*.npy"))) == 2 * len(LAYERS)


def test_corrupted_entry_is_recomputed(tmp_path: Path) -> None:
    _run(tmp_path)
    victim = sorted(tmp_path.rglob("*.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:-8] + b"\x00" * 8)
    acts, meta = _run(tmp_path)
    reference, _ = _run(None)
    assert len(meta["CacheHits"]) == len(LAYERS) - 1
    for layer in LAYERS:
        np.testing.assert_array_equal(acts[layer], reference[layer])
