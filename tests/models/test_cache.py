"""The activation cache: keys, round trips, corruption detection, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np

from nnbrain.models.cache import ActivationCache, cache_key

FIELDS = {"architecture": "digitcnn", "weights_sha256": "ab" * 32, "layer": "conv1",
          "pooling": "channelmean", "stimuli": [["a.png", "cd" * 32]], "transform": {"size": 8}}


def test_key_depends_on_every_field_and_not_on_order() -> None:
    key = cache_key(FIELDS)
    assert key == cache_key(dict(reversed(list(FIELDS.items()))))
    for name, value in [("layer", "conv2"), ("pooling", "flatten"), ("weights_sha256", "00"),
                        ("stimuli", [["a.png", "ef" * 32]]), ("transform", {"size": 9})]:
        assert cache_key({**FIELDS, name: value}) != key


def test_roundtrip_and_miss(tmp_path: Path) -> None:
    cache = ActivationCache(tmp_path)
    key = cache_key(FIELDS)
    assert cache.get(key) is None
    data = np.random.default_rng(0).normal(size=(30, 8))
    cache.put(key, data, FIELDS)
    np.testing.assert_array_equal(cache.get(key), data)
    assert not list(tmp_path.rglob("*.tmp"))


def test_corrupted_entry_is_detected_removed_and_missed(tmp_path: Path) -> None:
    cache = ActivationCache(tmp_path)
    key = cache_key(FIELDS)
    cache.put(key, np.arange(12.0).reshape(3, 4), FIELDS)
    (npy,) = tmp_path.rglob("*.npy")
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF
    npy.write_bytes(bytes(raw))
    assert cache.get(key) is None
    assert not npy.exists()
    cache.put(key, np.arange(12.0).reshape(3, 4), FIELDS)
    np.testing.assert_array_equal(cache.get(key), np.arange(12.0).reshape(3, 4))


def _writer(root: str, seed: int) -> None:
    cache = ActivationCache(Path(root))
    data = np.arange(40000.0).reshape(200, 200)
    for _ in range(20):
        cache.put(cache_key(FIELDS), data, FIELDS)
        got = cache.get(cache_key(FIELDS))
        assert got is None or np.array_equal(got, data)


def test_concurrent_writers_never_expose_partial_entries(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s)) for s in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    np.testing.assert_array_equal(ActivationCache(tmp_path).get(cache_key(FIELDS)),
                                  np.arange(40000.0).reshape(200, 200))


def test_file_hash_memo_follows_changes(tmp_path: Path) -> None:
    import hashlib
    import os

    from nnbrain.models.cache import file_sha256

    target = tmp_path / "w.pt"
    target.write_bytes(b"first")
    memo = tmp_path / "memo"
    assert file_sha256(target, memo) == hashlib.sha256(b"first").hexdigest()
    assert len(list((memo / "hashes").iterdir())) == 1
    assert file_sha256(target, memo) == hashlib.sha256(b"first").hexdigest()
    target.write_bytes(b"second!")
    os.utime(target, ns=(1, 1))
    assert file_sha256(target, memo) == hashlib.sha256(b"second!").hexdigest()
    assert file_sha256(target, None) == hashlib.sha256(b"second!").hexdigest()
