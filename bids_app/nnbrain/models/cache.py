"""Disk cache of layer activations, safe under concurrent workers.

An entry is keyed by everything that determines the activations: architecture, weights
(SHA-256 of the file, or the random seed), layer, pooling, the stimulus files' SHA-256 hashes and
the transform. A rerun or a second participant never recomputes them. Entries are written
atomically (temporary file + rename; the metadata, holding the array's SHA-256, last), so readers
see whole entries or none; an entry whose array no longer matches its hash is deleted and
recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from nnbrain.utils.io import atomic_write, write_json

LOGGER = logging.getLogger("nnbrain.cache")
CACHE_FORMAT = 1


def cache_key(fields: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``fields`` (plus the cache format version)."""
    canonical = json.dumps({"format": CACHE_FORMAT, **fields}, sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime, inode) under ``memo_dir``.

    Hashing a 240 MB checkpoint takes about a second; the memo makes cached reruns instant
    while any change of the file (size, mtime or inode) triggers a fresh hash, as git does.
    """
    from nnbrain.models.loading import sha256_file

    if memo_dir is None:
        return sha256_file(path)
    path = Path(path).resolve()
    info = path.stat()
    stamp = {"path": str(path), "size": info.st_size, "mtime_ns": info.st_mtime_ns,
             "inode": info.st_ino}
    memo = memo_dir / "hashes" / f"{hashlib.sha256(str(path).encode()).hexdigest()}.json"
    try:
        saved = json.loads(memo.read_text())
        if {k: saved.get(k) for k in stamp} == stamp:
            return saved["sha256"]
    except (OSError, json.JSONDecodeError, KeyError):
        pass
    digest = sha256_file(path)
    write_json(memo, {**stamp, "sha256": digest})
    return digest


class ActivationCache:
    """Activations on disk under ``root/<key[:2]>/<key>.npy`` with a ``.json`` beside it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, or ``None`` when absent or corrupted (a corrupted entry is removed).

        The file is read once: its bytes are hashed and the array is a view on them.
        """
        array_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            payload = array_path.read_bytes()
        except (OSError, json.JSONDecodeError):
            return None
        if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
            LOGGER.warning("cache entry %s is corrupted; recomputing", array_path)
            array_path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None
        array = _from_npy_bytes(payload)
        return array.astype(meta["dtype"]) if str(array.dtype) != meta["dtype"] else array

    def put(self, key: str, array: np.ndarray, fields: dict[str, Any]) -> None:
        """Store ``array`` under ``key`` with the fields that made the key (for humans).

        float64 arrays whose values are all float32-representable (activations of float32
        networks) are stored as float32, halving reads; :meth:`get` returns float64 again.
        """
        array_path, meta_path = self._paths(key)
        array = np.ascontiguousarray(array)
        stored = array
        if array.dtype == np.float64:
            narrow = array.astype(np.float32)
            if np.array_equal(narrow, array, equal_nan=True):
                stored = narrow
        buffer = io.BytesIO()
        np.save(buffer, stored, allow_pickle=False)
        payload = buffer.getvalue()
        atomic_write(array_path, lambda path: path.write_bytes(payload))
        digest = hashlib.sha256(payload).hexdigest()
        write_json(meta_path, {"sha256": digest, "shape": list(array.shape),
                               "dtype": str(array.dtype), "stored_dtype": str(stored.dtype),
                               "fields": fields})


def _from_npy_bytes(payload: bytes) -> np.ndarray:
    """A read-only array viewing the data of an in-memory ``.npy`` file."""
    stream = io.BytesIO(payload)
    major, _minor = np.lib.format.read_magic(stream)
    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(stream)
    array = np.frombuffer(payload, dtype=dtype, offset=stream.tell(),
                          count=int(np.prod(shape, dtype=np.int64)))
    return array.reshape(shape, order="F" if fortran else "C")
