"""The output directory as a DataLad dataset, safe under concurrent participant jobs."""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

from nnbrain.errors import CantCreateError, OutputIOError

LOGGER = logging.getLogger("nnbrain.datalad")


@contextmanager
def dataset_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on the dataset directory itself, for creation, moves and saves.

    Jobs on one node, or on a cluster file system with working ``flock`` (Lustre, GPFS, NFSv4
    with lock support), are serialised. The lock lives on the directory, so it leaves no file
    in the dataset.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_dataset(path: Path) -> bool:
    """True if ``path`` is the root of a DataLad dataset."""
    return (path / ".datalad" / "config").is_file()


def ensure_dataset(path: Path) -> None:
    """Create a DataLad dataset at ``path`` (``text2git``: tables and JSON in git) if absent.

    Must be called under :func:`dataset_lock`. An existing non-empty directory is turned into
    a dataset in place (``force=True``), keeping its files.
    """
    if is_dataset(path):
        return
    import datalad.api as dl
    from datalad.support.exceptions import CommandError, IncompleteResultsError

    try:
        dl.create(path=str(path), force=True, cfg_proc="text2git",
                  description="nnbrain derivatives", result_renderer="disabled")
    except (CommandError, IncompleteResultsError) as exc:
        raise CantCreateError(f"cannot create a DataLad dataset here: {exc}; is git-annex on "
                              "PATH and git configured (user.name, user.email)?", path) from exc
    _write_gitattributes(path)


def _write_gitattributes(path: Path) -> None:
    """Add OpenNeuro's recommended size rules for text files after ``text2git``."""
    attributes = path / ".gitattributes"
    rules = ["*.json annex.largefiles=largerthan=1mb", "*.tsv annex.largefiles=largerthan=1mb",
             "dataset_description.json annex.largefiles=nothing",
             ".bidsignore annex.largefiles=nothing", "README* annex.largefiles=nothing"]
    existing = attributes.read_text() if attributes.exists() else ""
    missing = [r for r in rules if r not in existing.splitlines()]
    if missing:
        attributes.write_text(existing + "".join(f"{r}\n" for r in missing))


def save(path: Path, message: str, paths: list[str]) -> None:
    """``datalad save`` of ``paths`` (relative to the dataset) with ``message``.

    Must be called under :func:`dataset_lock`.
    """
    import datalad.api as dl
    from datalad.support.exceptions import CommandError, IncompleteResultsError

    existing = [str(path / p) for p in dict.fromkeys(paths) if (path / p).exists()]
    try:
        dl.save(dataset=str(path), path=existing + [str(path / ".gitattributes")], message=message,
                result_renderer="disabled")
    except (CommandError, IncompleteResultsError) as exc:
        raise OutputIOError(f"datalad save failed: {exc}", path) from exc
    LOGGER.info("datalad save: %s", message.splitlines()[0])
