"""Checkpoint files for the resumable RBF CKA pass (``nnbrain.core.cka``).

The core hands out its partial sums as :class:`~nnbrain.core.cka.RBFState` objects and takes
one back to resume; this module keeps them in a ``.npz`` file, written atomically (a
temporary file in the same folder, flushed to disk, then renamed), so a job killed at any
moment leaves either the previous checkpoint or the new one. A wall-time-limited job::

    details = cka_details_resumable(path, x, y, "rbf", True, max_tiles=1000)
    if not details.complete:
        ...  # resubmit: the next call continues from the file
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nnbrain.core.cka import CKADetails, RBFState, StateMismatchError, cka_details
from nnbrain.errors import DataError
from nnbrain.utils.io import atomic_write

_ARRAYS = ("sums", "rows", "below", "inside_x", "inside_y", "wmax")


def save_state(path: str | os.PathLike[str], state: RBFState) -> None:
    """Write ``state`` to ``path`` (``.npz``) atomically.

    Parameters
    ----------
    path : path
    state : RBFState
    """
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(json.dumps(state.key, sort_keys=True)),
                     next_tile=np.array(state.next_tile), n_tiles=np.array(state.n_tiles),
                     **{name: getattr(state, name) for name in _ARRAYS})
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(Path(path), write)


def load_state(path: str | os.PathLike[str]) -> RBFState | None:
    """The state saved at ``path``, or None when there is no file.

    Raises
    ------
    DataError
        The file is not a readable CKA checkpoint.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return RBFState(key=json.loads(str(data["key"])), next_tile=int(data["next_tile"]),
                            n_tiles=int(data["n_tiles"]),
                            **{name: np.array(data[name]) for name in _ARRAYS})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise DataError(f"not a readable CKA checkpoint ({err}); delete it to start over",
                        path) from err


class CheckpointWriter:
    """An ``on_progress`` callback that saves the states it gets to one file.

    It saves when ``every_s`` seconds have passed since the last save; :meth:`flush` saves
    the last state received if it is not on disk yet.

    Parameters
    ----------
    path : path
    every_s : float
    """

    def __init__(self, path: str | os.PathLike[str], every_s: float = 300.0) -> None:
        self.path = Path(path)
        self.every_s = float(every_s)
        self._last_save = time.monotonic()
        self._pending: RBFState | None = None

    def __call__(self, state: RBFState) -> None:
        self._pending = state
        if time.monotonic() - self._last_save >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Save the last state received, if any is unsaved."""
        if self._pending is not None:
            save_state(self.path, self._pending)
            self._pending = None
            self._last_save = time.monotonic()


def cka_details_resumable(
    path: str | os.PathLike[str],
    x: np.ndarray,
    y: np.ndarray,
    kernel: str = "rbf",
    unbiased: bool = False,
    sigma: float = 1.0,
    block_size: int | None = None,
    device: str | None = None,
    *,
    every_s: float = 300.0,
    **options: Any,
) -> CKADetails:
    """:func:`~nnbrain.core.cka.cka_details` resumed from, and saved to, a checkpoint file.

    Starts from the state in ``path`` when the file exists, saves the partial sums every
    ``every_s`` seconds and when the call ends: complete, stopped by ``max_tiles``, or
    interrupted by an exception (then with the last whole tile reported to ``on_progress``).

    Parameters
    ----------
    path : path
        The checkpoint (``.npz``).
    x : array of shape (n_samples, n_features_x)
    y : array of shape (n_samples, n_features_y)
    kernel, unbiased, sigma, block_size, device
        As in :func:`~nnbrain.core.cka.cka_details`.
    every_s : float
        Seconds between two saves.
    **options
        Passed to :func:`~nnbrain.core.cka.cka_details` (``max_tiles``, ``seed``, ...).

    Returns
    -------
    CKADetails

    Raises
    ------
    DataError
        The checkpoint was written for other inputs or parameters, or is unreadable.
    """
    writer = CheckpointWriter(path, every_s)
    try:
        return cka_details(x, y, kernel, unbiased, sigma, block_size, device,
                           on_progress=writer, resume_from=load_state(path), **options)
    except StateMismatchError as err:
        raise DataError(f"{err} (delete the checkpoint or pass another path)", path) from err
    finally:
        writer.flush()
