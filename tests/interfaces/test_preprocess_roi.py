"""Confound selection, single-trial betas and ROI patterns on sub-01 run-01 of the demo dataset."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnbrain.errors import DataError
from nnbrain.interfaces.preprocess import select_confounds, single_trial_betas
from nnbrain.interfaces.roi import ROIPatterns, read_atlas_labels

DEMO = Path(__file__).resolve().parents[2] / "datalad_dataset"
FUNC = DEMO / "derivatives" / "fmriprep" / "sub-01" / "func"
PREFIX = "sub-01_task-digits_run-01"
BOLD = FUNC / f"{PREFIX}_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz"
MASK = FUNC / f"{PREFIX}_space-MNI152NLin2009cAsym_res-2_desc-brain_mask.nii.gz"
CONFOUNDS = FUNC / f"{PREFIX}_desc-confounds_timeseries.tsv"
EVENTS = DEMO / "sub-01" / "func" / f"{PREFIX}_events.tsv"
ATLAS = (DEMO / "derivatives" / "atlas" / "atlas-nnbrainDemo"
         / "atlas-nnbrainDemo_space-MNI152NLin2009cAsym_res-1_dseg")
GROUND_TRUTH = json.loads((DEMO / "code" / "ground_truth.json").read_text())
TR = json.loads(BOLD.with_name(BOLD.name.replace(".nii.gz", ".json")).read_text())["RepetitionTime"]


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


# ----------------------------------------------------------------------------- confounds


def test_select_confounds_columns_and_values():
    values, names = select_confounds(CONFOUNDS)
    motion = [f"{p}{s}" for p in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
              for s in ("", "_derivative1", "_power2", "_derivative1_power2")]
    assert len(names) == 26
    assert sorted(names[:24]) == sorted(motion)
    assert names[24:] == ["non_steady_state_outlier00", "non_steady_state_outlier01"]
    n_scans = nib.load(BOLD).shape[3]
    assert values.shape == (n_scans, 26)
    assert not np.isnan(values).any()

    rows = _read_tsv(CONFOUNDS)
    assert len(rows) == n_scans
    n_missing = 0
    for j, name in enumerate(names):
        column = [r[name] for r in rows]
        present = [float(v) for v in column if v != "n/a"]
        mean = math.fsum(present) / len(present)
        for i, raw in enumerate(column):
            want = mean if raw == "n/a" else float(raw)
            n_missing += raw == "n/a"
            assert values[i, j] == pytest.approx(want, rel=1e-12, abs=1e-12), (name, i)
    assert n_missing == 12  # first row of the 12 derivative columns was n/a
    # the spikes are one-hot columns
    np.testing.assert_array_equal(values[:, 24:].sum(axis=0), [1, 1])


def test_select_confounds_refuses_non_fmriprep_table(tmp_path):
    bad = tmp_path / "confounds.tsv"
    bad.write_text("trans_x\ttrans_y\n0\t0\n")
    with pytest.raises(DataError) as info:
        select_confounds(bad)
    assert info.value.path == bad


# ----------------------------------------------------------------------------- single-trial betas


@pytest.fixture(scope="module")
def lsa(tmp_path_factory):
    """Betas of run-01 fitted from its events, and from the same events with rows shuffled."""
    tmp = tmp_path_factory.mktemp("lsa")
    lines = EVENTS.read_text().splitlines()
    order = np.random.default_rng(20261123).permutation(len(lines) - 1)
    shuffled = tmp / "shuffled_events.tsv"
    shuffled.write_text("\n".join([lines[0]] + [lines[1 + i] for i in order]) + "\n")
    assert shuffled.read_text() != EVENTS.read_text()
    out = {}
    for name, events in (("original", EVENTS), ("shuffled", shuffled)):
        path = tmp / f"{name}_betas.nii.gz"
        stims = single_trial_betas(BOLD, MASK, events, TR, 1.0 / 128, path)
        out[name] = (path, stims)
    return out


def test_single_trial_betas_one_volume_per_event(lsa):
    path, stims = lsa["original"]
    rows = _read_tsv(EVENTS)
    img = nib.load(path)
    bold = nib.load(BOLD)
    assert img.shape == (*bold.shape[:3], len(rows)) == (12, 12, 8, 60)
    np.testing.assert_allclose(img.affine, bold.affine)
    assert len(stims) == len(rows)
    data = img.get_fdata()
    mask = nib.load(MASK).get_fdata() > 0
    assert np.isfinite(data).all()
    assert np.all(data[~mask] == 0)
    assert np.all(np.abs(data[mask]).max(axis=0) > 0)  # every trial has a real estimate


def test_single_trial_betas_sorted_by_onset(lsa):
    rows = sorted(_read_tsv(EVENTS), key=lambda r: float(r["onset"]))
    want = [r["stim_file"] for r in rows]
    assert lsa["original"][1] == want
    assert lsa["shuffled"][1] == want  # the file order does not matter, onsets do
    # and the volumes follow the same order
    a = nib.load(lsa["original"][0]).get_fdata()
    b = nib.load(lsa["shuffled"][0]).get_fdata()
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-8 * np.abs(a).max())


def test_single_trial_betas_requires_columns(tmp_path):
    events = tmp_path / "events.tsv"
    events.write_text("onset\tduration\ttrial_type\n10\t1\tdigit1\n")
    with pytest.raises(DataError, match="stim_file"):
        single_trial_betas(BOLD, MASK, events, TR, 1.0 / 128, tmp_path / "out.nii.gz")
    assert not (tmp_path / "out.nii.gz").exists()


# ----------------------------------------------------------------------------- ROI patterns


def test_read_atlas_labels():
    assert read_atlas_labels(ATLAS.with_suffix(".tsv")) == [(1, "roiA"), (2, "roiB"), (3, "roiC")]


def test_roi_patterns_voxel_counts_and_values(lsa, tmp_path, monkeypatch):
    betas_path, stims = lsa["original"]
    trials = tmp_path / "trials.json"
    trials.write_text(json.dumps(stims))
    stimuli = sorted(set(stims))
    assert len(stimuli) == GROUND_TRUTH["n_stimuli"] == 30

    monkeypatch.chdir(tmp_path)
    result = ROIPatterns(betas=[str(betas_path)], trials=[str(trials)],
                         atlas=str(ATLAS.with_name(ATLAS.name + ".nii.gz")),
                         atlas_labels=str(ATLAS.with_suffix(".tsv")), stimuli=stimuli).run()
    out = result.outputs
    assert Path(out.patterns).parent == tmp_path
    rois = json.loads(Path(out.rois).read_text())
    counts = GROUND_TRUTH["subjects"]["sub-01"]["n_voxels"]
    assert rois == [{"name": name, "index": i, "n_voxels": counts[name]}
                    for i, name in ((1, "roiA"), (2, "roiB"), (3, "roiC"))]

    # Independent reference: the 1 mm atlas and the 2 mm BOLD share their origin, so the
    # nearest 1 mm voxel of 2 mm voxel (i, j, k) is (2i, 2j, 2k).
    atlas_img = nib.load(ATLAS.with_name(ATLAS.name + ".nii.gz"))
    betas_img = nib.load(betas_path)
    np.testing.assert_allclose(betas_img.affine[:3, 3], atlas_img.affine[:3, 3])
    np.testing.assert_allclose(np.diag(betas_img.affine)[:3], 2 * np.diag(atlas_img.affine)[:3])
    labels = np.rint(atlas_img.get_fdata()).astype(int)[::2, ::2, ::2]
    assert labels.shape == betas_img.shape[:3]
    for name, index in (("roiA", 1), ("roiB", 2), ("roiC", 3)):
        assert int((labels == index).sum()) == counts[name]
        # the 1 mm ROI holds 8x as many voxels: the counts are not those of the atlas grid
        assert int((np.rint(atlas_img.get_fdata()) == index).sum()) == 8 * counts[name]
    betas = betas_img.get_fdata()
    trial_stims = np.array(stims)
    with np.load(out.patterns) as npz:
        assert sorted(npz.files) == ["roiA", "roiB", "roiC"]
        for name, index in (("roiA", 1), ("roiB", 2), ("roiC", 3)):
            voxels = betas[labels == index]  # (n_voxels, n_trials), C order
            want = np.stack([voxels[:, trial_stims == s].mean(axis=1) for s in stimuli])
            assert npz[name].shape == (30, counts[name])
            np.testing.assert_allclose(npz[name], want, rtol=1e-10, atol=1e-12)
