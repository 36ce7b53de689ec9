"""Activations on disk: streamed ``.npy`` layers, ``.npz`` assembly, and the activation cache.

A layer's activations are written row block by row block into a ``.npy`` file
(:class:`NpyStream`) while a running CRC-32 of its bytes is kept, so that no layer has to be held
in memory. The node's ``.npz`` is then assembled member by member from those files
(:func:`assemble_npz`), exactly as :func:`numpy.savez` lays it out (uncompressed zip, one
``<name>.npy`` member per array).

The cache is keyed per layer by everything that determines its activations: architecture,
weights (SHA-256 of the file, or the random seed), layer, pooling, reduction, the stimulus files'
SHA-256 hashes and the transform. A rerun or a second participant never recomputes them. An
entry is a JSON file pointing at ``.npy`` bytes: a member of a *bundle* (the ``.npz`` of a run that
computed something, hard-linked into the cache, so no second copy is stored) or a standalone
``.npy``. Bundles are linked in under a temporary name and renamed; the JSON, holding the bytes'
CRC-32, size, offset and shape, is written last, so concurrent workers see whole entries or none.
A rerun of the same request checks every layer's CRC-32 and hard-links the bundle as its output;
any other request copies the members it needs, checking their CRC-32 on the way. An entry whose
bytes fail the check is deleted and recomputed.

CRC-32 (the zip member checksum) detects every burst error up to 32 bits and any other corruption
with probability 1 - 2^-32, at 2-4 GB/s here against 1.2 GB/s for SHA-256, which bounded cached
reruns of large layers (18x instead of >= 50x); the cache is not a trust boundary (whoever can
write the bytes can rewrite the JSON), so a cryptographic hash would buy nothing here. An output
that is a hard link into the cache must not be modified in place (nnbrain never does: outputs
are unlinked before they are rewritten); if it were, the check would catch it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mmap
import os
import shutil
import struct
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from nnbrain.utils.io import atomic_write, write_json

LOGGER = logging.getLogger("nnbrain.cache")
CACHE_FORMAT = 2
#: Bytes per write when a payload is copied into an ``.npz``.
_CHUNK = 1 << 22
#: Zip records (APPNOTE 4.3.7 and 4.3.12), the zip64 version (4.5) and the zip64 size marker.
_LOCAL = "<4s2B4HL2L2H"
_CENTRAL = "<4s4B4HL2L5H2L"
_VERSION = 45
_FFFF = 0xFFFFFFFF


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


@dataclass(frozen=True)
class StoredArray:
    """The bytes of one ``.npy`` file: a whole file, or a member stored inside an ``.npz``."""

    path: Path
    crc32: int
    """CRC-32 of the ``.npy`` bytes (header included), as a zip member records it."""
    nbytes: int
    """Length of the ``.npy`` bytes."""
    shape: tuple[int, ...]
    """Shape of the array."""
    offset: int = 0
    """Where the ``.npy`` bytes start in ``path``."""


class NpyStream:
    """A ``.npy`` file of known shape written block of rows by block of rows.

    Parameters
    ----------
    path : Path
        File to create.
    shape : tuple of int
        (n_rows, ...) of the whole array.
    dtype : numpy dtype
        Stored dtype; written blocks are converted to it.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.npy"
    >>> with NpyStream(path, (3, 2)) as stream:
    ...     stream.write(np.ones((2, 2)))
    ...     stream.write(np.zeros((1, 2)))
    >>> np.load(path).tolist()
    [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": self.shape})
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._stored: StoredArray | None = None
        self._crc = 0
        self._rows = 0
        self._nbytes = 0
        self._put(header.getvalue())

    def _put(self, data: Any) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._file.write(data)
        self._nbytes += memoryview(data).nbytes

    def write(self, rows: np.ndarray) -> None:
        """Append rows; ``rows`` has shape (n, *shape[1:])."""
        block = np.ascontiguousarray(rows, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self._rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.path.name}: block of shape {block.shape} does not fit "
                             f"rows {self._rows}.. of an array of shape {self.shape}")
        self._put(memoryview(block.reshape(-1)).cast("B"))
        self._rows += len(block)

    def close(self) -> StoredArray:
        """Close the file (again: no-op); every row must have been written."""
        if self._stored is None:
            self._file.close()
            if self._rows != self.shape[0]:
                raise ValueError(f"{self.path.name}: {self._rows} of {self.shape[0]} rows "
                                 "written")
            self._stored = StoredArray(self.path, self._crc, self._nbytes, self.shape)
        return self._stored

    def __enter__(self) -> NpyStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
            self.path.unlink(missing_ok=True)


def write_npy(path: Path, array: np.ndarray, dtype: Any = None) -> StoredArray:
    """Write a whole array as ``.npy`` and return its :class:`StoredArray`."""
    with NpyStream(path, array.shape, array.dtype if dtype is None else dtype) as stream:
        stream.write(array)
    return stream.close()


def _crc32_of(fd: int, offset: int, size: int) -> int:
    """CRC-32 of ``size`` bytes of an open file from ``offset`` (memory-mapped, no copy)."""
    with mmap.mmap(fd, offset + size, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)[offset:offset + size]
        try:
            return zlib.crc32(view)
        finally:
            view.release()


def _copy_bytes(source: int, offset: int, target: int, size: int) -> None:
    """Append ``size`` bytes of ``source`` from ``offset`` at ``target``'s position.

    Written from a memory map: one copy from the page cache into the target's pages, faster
    here than ``copy_file_range`` (which ext4 does page by page) and than read + write.
    """
    with mmap.mmap(source, offset + size, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            for start in range(offset, offset + size, _CHUNK):
                os.write(target, view[start:min(start + _CHUNK, offset + size)])
        finally:
            view.release()


def verify(stored: StoredArray) -> bool:
    """Whether the bytes of ``stored`` are still there and match their CRC-32."""
    try:
        source = os.open(stored.path, os.O_RDONLY)
    except OSError:
        return False
    try:
        if os.fstat(source).st_size < stored.offset + stored.nbytes:
            return False
        return _crc32_of(source, stored.offset, stored.nbytes) == stored.crc32
    finally:
        os.close(source)


def _dos_time() -> tuple[int, int]:
    """(time, date) of now in the zip (MS-DOS) format."""
    now = time.localtime()
    return ((now.tm_hour << 11) | (now.tm_min << 5) | (now.tm_sec // 2),
            ((now.tm_year - 1980) << 9) | (now.tm_mon << 5) | now.tm_mday)


def _end_records(written: list[tuple[bytes, int, int, int]], directory: int, clock: int,
                 day: int) -> bytes:
    """Central directory (zip64 extras), zip64 end record and locator, end record."""
    central = b"".join(
        struct.pack(_CENTRAL, b"PK\x01\x02", _VERSION, 3, _VERSION, 0, 0, 0, clock, day, crc32,
                    _FFFF, _FFFF, len(name), 28, 0, 0, 0, 0o100644 << 16, _FFFF)
        + name + struct.pack("<2H3Q", 1, 24, size, size, offset)
        for name, crc32, size, offset in written)
    end = directory + len(central)
    count = len(written)
    return (central
            + struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, _VERSION, _VERSION, 0, 0, count,
                          count, len(central), directory)
            + struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
            + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF),
                          min(count, 0xFFFF), min(len(central), _FFFF), min(directory, _FFFF), 0))


def assemble_npz(path: Path,
                 members: dict[str, StoredArray]) -> tuple[dict[str, StoredArray], list[str]]:
    """Write an uncompressed ``.npz`` (as :func:`numpy.savez`) from ``.npy`` bytes, one at a time.

    A zip64 archive with one stored ``<name>.npy`` member per array. Each member is copied from
    a memory map while a second thread computes the CRC-32 of the same bytes; a member whose
    CRC-32 differs from its :attr:`StoredArray.crc32` is cut off again. ``path`` is a new file
    (unlinked first, never truncated in place: it may be a hard link into the cache).

    Parameters
    ----------
    path : Path
        The ``.npz`` to create.
    members : dict of str to StoredArray
        Array name -> its ``.npy`` bytes, in member order.

    Returns
    -------
    placed : dict of str to StoredArray
        Name -> the member's ``.npy`` bytes inside ``path``.
    bad : list of str
        Names whose bytes were missing or did not match their CRC-32 (then ``path`` is
        removed: the caller rebuilds those members and assembles again).
    """
    bad: list[str] = []
    placed: dict[str, StoredArray] = {}
    written: list[tuple[bytes, int, int, int]] = []
    clock, day = _dos_time()
    Path(path).unlink(missing_ok=True)
    with open(path, "wb", buffering=0) as target, ThreadPoolExecutor(1) as worker:
        for name, stored in members.items():
            encoded = f"{name}.npy".encode()
            offset = target.tell()
            try:
                source = os.open(stored.path, os.O_RDONLY)
            except OSError:
                bad.append(name)
                continue
            try:
                if os.fstat(source).st_size < stored.offset + stored.nbytes:
                    bad.append(name)
                    continue
                target.write(struct.pack(_LOCAL, b"PK\x03\x04", _VERSION, 0, 0, 0, clock, day,
                                         stored.crc32, _FFFF, _FFFF, len(encoded), 20)
                             + encoded + struct.pack("<2H2Q", 1, 16, stored.nbytes,
                                                     stored.nbytes))
                crc = worker.submit(_crc32_of, source, stored.offset, stored.nbytes)
                start = target.tell()
                _copy_bytes(source, stored.offset, target.fileno(), stored.nbytes)
                if crc.result() != stored.crc32:
                    bad.append(name)
                    target.truncate(offset)
                    target.seek(offset)
                    continue
            finally:
                os.close(source)
            placed[name] = StoredArray(Path(path), stored.crc32, stored.nbytes, stored.shape,
                                       start)
            written.append((encoded, stored.crc32, stored.nbytes, offset))
        target.write(_end_records(written, target.tell(), clock, day))
    if bad:
        Path(path).unlink()
        placed = {}
    return placed, bad


class ActivationCache:
    """Activations on disk: ``root/<key[:2]>/<key>.json`` entries pointing at ``.npy`` bytes.

    An entry's bytes are a standalone ``root/<key[:2]>/<key>.npy`` (:meth:`put`) or a member
    of a bundle, ``root/bundles/<bundle key>.npz``: the ``.npz`` of a run that computed
    something, hard-linked into the cache (:meth:`commit_bundle`), so the layers cost no second
    copy on disk and a rerun of the same request is a CRC check and a hard link
    (:meth:`link_bundle`).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _meta(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def bundle_path(self, keys: list[str]) -> Path:
        """The bundle of exactly these entries, in this order."""
        return self.root / "bundles" / f"{cache_key({'bundle': keys})}.npz"

    def lookup(self, key: str) -> StoredArray | None:
        """Where the entry's bytes are and their checksum, or ``None``; reads only the JSON.

        The bytes are checked when they are used (:func:`assemble_npz`, :meth:`link_bundle`,
        :meth:`get`).
        """
        try:
            meta = json.loads(self._meta(key).read_text())
            return StoredArray(self.root / meta["file"], int(meta["crc32"]), int(meta["nbytes"]),
                               tuple(meta["shape"]), int(meta["offset"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def _record(self, key: str, stored: StoredArray, fields: dict[str, Any]) -> None:
        write_json(self._meta(key), {"file": str(stored.path.relative_to(self.root)),
                                     "offset": stored.offset, "crc32": stored.crc32,
                                     "nbytes": stored.nbytes, "shape": list(stored.shape),
                                     "fields": fields})

    def discard(self, key: str) -> None:
        """Delete an entry whose bytes are bad (its standalone ``.npy`` too, if it has one)."""
        stored = self.lookup(key)
        LOGGER.warning("cache entry %s is corrupted; recomputing", self._meta(key))
        self._meta(key).unlink(missing_ok=True)
        if stored is not None and stored.path.name == f"{key}.npy":
            stored.path.unlink(missing_ok=True)

    def link_bundle(self, keys: list[str], out_file: Path) -> bool:
        """Hard-link the bundle of ``keys`` to ``out_file`` when every entry lives in it intact.

        The members' CRC-32s are checked (two threads) before the link. ``False``: no such
        bundle, an entry elsewhere or corrupted, or no hard link possible (other file system);
        the caller then assembles ``out_file`` (which finds and discards corrupted entries).
        """
        bundle = self.bundle_path(keys)
        entries = [self.lookup(key) for key in keys]
        if not entries or any(e is None or e.path != bundle for e in entries):
            return False
        with ThreadPoolExecutor(2) as pool:
            if not all(pool.map(verify, entries)):
                return False
        Path(out_file).unlink(missing_ok=True)
        try:
            os.link(bundle, out_file)
        except OSError:
            return False
        return True

    def commit_bundle(self, keys: list[str], placed: list[StoredArray],
                      fields: list[dict[str, Any]]) -> None:
        """Hard-link an assembled ``.npz`` into the cache as the bundle of ``keys``.

        Parameters
        ----------
        keys : list of str
            Entry keys, in member order.
        placed : list of StoredArray
            The members inside the ``.npz`` (from :func:`assemble_npz`), aligned with ``keys``.
        fields : list of dict
            The fields that made each key (recorded for humans).

        The bundle is linked (copied, across file systems) to a temporary name and renamed into
        place; each entry's JSON, pointing at its member, is written after.
        """
        bundle = self.bundle_path(keys)
        source = placed[0].path

        def place(tmp: Path) -> None:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)

        atomic_write(bundle, place)
        for key, member, field in zip(keys, placed, fields):
            self._record(key, StoredArray(bundle, member.crc32, member.nbytes, member.shape,
                                          member.offset), field)

    def put(self, key: str, array: np.ndarray, fields: dict[str, Any]) -> StoredArray:
        """Store an in-memory array (its dtype kept) as a standalone ``.npy`` under ``key``."""
        array_path = self._meta(key).with_suffix(".npy")
        array_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=array_path.parent, prefix=f".{key}.", suffix=".tmp")
        os.close(fd)
        try:
            stored = write_npy(Path(tmp), np.asarray(array))
            os.replace(tmp, array_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        stored = StoredArray(array_path, stored.crc32, stored.nbytes, stored.shape)
        self._record(key, stored, fields)
        return stored

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, or ``None`` when absent or corrupted (then the entry is dropped)."""
        stored = self.lookup(key)
        if stored is None:
            return None
        try:
            with open(stored.path, "rb") as source:
                source.seek(stored.offset)
                payload = source.read(stored.nbytes)
        except OSError:
            return None
        if len(payload) != stored.nbytes or zlib.crc32(payload) != stored.crc32:
            self.discard(key)
            return None
        return np.lib.format.read_array(io.BytesIO(payload), allow_pickle=False)
