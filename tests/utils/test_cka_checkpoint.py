"""Checkpoint files of the resumable RBF CKA pass: atomic save/load, resume, refusal."""

from __future__ import annotations

import numpy as np
import pytest

from nnbrain.core.cka import cka_details
from nnbrain.errors import DataError
from nnbrain.utils.cka_checkpoint import (
    CheckpointWriter,
    cka_details_resumable,
    load_state,
    save_state,
)


def _pair(seed: int, n: int, p: int):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    x = np.tanh(latent @ rng.normal(size=(3, p))) + rng.normal(size=(n, p))
    y = latent @ rng.normal(size=(3, p // 2)) + rng.normal(size=(n, p // 2))
    return x.astype(np.float32), y.astype(np.float32)


def test_save_load_round_trip(tmp_path):
    x, y = _pair(0, 40, 30)
    states = []
    cka_details(x, y, "rbf", True, block_size=8, on_progress=states.append, max_tiles=4)
    path = tmp_path / "c.npz"
    save_state(path, states[-1])
    got = load_state(path)
    assert got.key == states[-1].key and (got.next_tile, got.n_tiles) == (4, 15)
    for name in ("sums", "rows", "below", "inside_x", "inside_y", "wmax"):
        np.testing.assert_array_equal(getattr(got, name), getattr(states[-1], name))
    assert load_state(tmp_path / "missing.npz") is None
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left


@pytest.mark.parametrize("unbiased", [False, True])
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, unbiased):
    x, y = _pair(1, 50, 24)
    full = cka_details(x, y, "rbf", unbiased, block_size=8)  # 28 tiles
    path = tmp_path / "cka_checkpoint.npz"
    first = cka_details_resumable(path, x, y, "rbf", unbiased, block_size=8, max_tiles=5)
    assert (first.complete, first.tiles_done, np.isnan(first.value)) == (False, 5, True)
    assert load_state(path).next_tile == 5
    second = cka_details_resumable(path, x, y, "rbf", unbiased, block_size=8, max_tiles=10)
    assert (second.complete, second.tiles_done) == (False, 15)
    last = cka_details_resumable(path, x, y, "rbf", unbiased, block_size=8)
    assert last.complete and last.value == full.value  # identical, not just close
    assert (last.hsic_xy, last.hsic_xx, last.hsic_yy) == (full.hsic_xy, full.hsic_xx,
                                                          full.hsic_yy)
    done = cka_details_resumable(path, x, y, "rbf", unbiased, block_size=8)
    assert done.value == full.value  # a complete checkpoint: nothing left to compute


def test_interrupted_run_keeps_the_last_saved_state(tmp_path, monkeypatch):
    """A crash mid-pass leaves the last whole tile on disk, and the run resumes from it."""
    x, y = _pair(2, 40, 24)
    full = cka_details(x, y, "rbf", True, block_size=8)
    path = tmp_path / "c.npz"
    original = CheckpointWriter.__call__

    def crash_after_seven(self, state):
        original(self, state)
        if state.next_tile == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointWriter, "__call__", crash_after_seven)
    with pytest.raises(KeyboardInterrupt):
        cka_details_resumable(path, x, y, "rbf", True, block_size=8, every_s=3600.0)
    monkeypatch.setattr(CheckpointWriter, "__call__", original)
    assert load_state(path).next_tile == 7
    assert cka_details_resumable(path, x, y, "rbf", True, block_size=8).value == full.value


def test_writer_saves_at_most_every_every_s(tmp_path):
    x, y = _pair(3, 30, 24)
    path = tmp_path / "c.npz"
    writer = CheckpointWriter(path, every_s=3600.0)
    cka_details(x, y, "rbf", True, block_size=8, on_progress=writer, max_tiles=3)
    assert not path.exists()  # throttled
    writer.flush()
    assert load_state(path).next_tile == 3
    eager = CheckpointWriter(path, every_s=0.0)
    eager(load_state(path))
    assert writer._pending is None and eager._pending is None


def test_mismatched_checkpoint_is_refused_with_its_path(tmp_path):
    x, y = _pair(4, 30, 24)
    path = tmp_path / "c.npz"
    cka_details_resumable(path, x, y, "rbf", True, block_size=8, max_tiles=2)
    with pytest.raises(DataError, match="data") as err:
        cka_details_resumable(path, x + np.float32(1e-3), y, "rbf", True, block_size=8)
    assert str(path) in str(err.value) and "delete the checkpoint" in str(err.value)
    with pytest.raises(DataError, match="n: 30 != 29"):
        cka_details_resumable(path, x[:29], y[:29], "rbf", True, block_size=8)
    with pytest.raises(DataError, match="sigma: 1.0 != 2.0"):
        cka_details_resumable(path, x, y, "rbf", True, block_size=8, sigma=2.0)
    with pytest.raises(DataError, match="unbiased"):
        cka_details_resumable(path, x, y, "rbf", False, block_size=8)
    assert load_state(path).next_tile == 2  # the refused calls left it alone


def test_unreadable_checkpoint_is_a_data_error(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable CKA checkpoint"):
        load_state(path)
