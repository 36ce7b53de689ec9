"""The demo generator is deterministic: regenerating gives the committed dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import DEMO


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("regen")
    subprocess.run([sys.executable, str(DEMO / "code" / "generate_demo.py"), str(out)],
                   check=True, capture_output=True)
    return out


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "code/generate_demo.py" not in p.as_posix()}


def test_same_file_list(regenerated: Path) -> None:
    committed = _files(DEMO)
    assert _files(regenerated) == committed
    assert len([f for f in committed if f.startswith("stimuli/")]) == 30


def test_images_tables_and_json_identical(regenerated: Path) -> None:
    for rel in sorted(_files(DEMO)):
        if rel.endswith((".png", ".tsv", ".json", ".yaml")) and "confounds" not in rel:
            if rel == "code/ground_truth.json":
                continue
            assert (regenerated / rel).read_bytes() == (DEMO / rel).read_bytes(), rel


def test_weights_and_truth_match(regenerated: Path) -> None:
    new = torch.load(regenerated / "code/models/digitcnn_trained.pt", weights_only=True)
    old = torch.load(DEMO / "code/models/digitcnn_trained.pt", weights_only=True)
    assert new.keys() == old.keys()
    for key in old:
        np.testing.assert_allclose(new[key].numpy(), old[key].numpy(), atol=1e-6)
    truth_new = json.loads((regenerated / "code/ground_truth.json").read_text())
    truth_old = json.loads((DEMO / "code/ground_truth.json").read_text())
    truth_new.pop("weights_sha256")
    truth_old.pop("weights_sha256")
    assert truth_new == truth_old
    assert truth_old["plant"] == {"roiA": "conv1", "roiB": "fc1", "roiC": None}


def test_bold_confounds_and_atlas_arrays_match(regenerated: Path) -> None:
    images = sorted(f for f in _files(DEMO) if f.endswith(".nii.gz"))
    assert len(images) == 6 + 6 + 6 + 1
    for rel in images:
        a, b = nib.load(regenerated / rel), nib.load(DEMO / rel)
        np.testing.assert_array_equal(a.affine, b.affine)
        np.testing.assert_allclose(np.asarray(a.dataobj), np.asarray(b.dataobj), atol=1, err_msg=rel)
    for rel in sorted(f for f in _files(DEMO) if "confounds_timeseries.tsv" in f):
        a = pd.read_csv(regenerated / rel, sep="\t", na_values="n/a")
        b = pd.read_csv(DEMO / rel, sep="\t", na_values="n/a")
        pd.testing.assert_frame_equal(a, b, atol=1e-3)


def test_committed_dataset_is_small() -> None:
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size < 10 * 1024 * 1024
