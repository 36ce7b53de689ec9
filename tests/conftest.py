"""Shared fixtures: the repository root and fresh copies of the demo dataset."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
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


def compute_activations(model_spec: dict, weights: dict, stimuli: list[Path],
                        n_threads: int, cache_dir: Path | None = None,
                        allow_custom_code: bool = False
                        ) -> tuple[dict[str, np.ndarray], dict]:
    """``write_activations`` into a temporary file, read back into memory (test helper).

    Returns
    -------
    activations : dict of str to array of shape (n_stimuli, n_units), float32
    provenance : dict
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "activations.npz"
        from nnbrain.interfaces.activations import write_activations

        provenance = write_activations(model_spec, weights, stimuli, out, n_threads=n_threads,
                                       cache_dir=cache_dir, allow_custom_code=allow_custom_code)
        with np.load(out) as npz:
            return {layer: npz[layer] for layer in model_spec["layers"]}, provenance
