"""Shared fixtures: the repository root and fresh copies of the demo dataset."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "datalad_dataset"

# git-annex (PyPI wheel) and the validator live in the venv's bin/, which DataLad needs on PATH.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """A writable copy of the demo dataset under ``tmp_path/ds``."""
    target = tmp_path / "ds"
    shutil.copytree(DEMO, target)
    return target
