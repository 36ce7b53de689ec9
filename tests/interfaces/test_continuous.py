"""Continuous designs: block time series per ROI and frame features aligned to the same scans."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnbrain.core.hrf import clean_like_bold, features_to_scans, played_features, slot_features
from nnbrain.core.roi import zscore_scans
from nnbrain.errors import DataError
from nnbrain.interfaces.continuous import ROITimeseries, read_blocks


def align_features(acts, meta, rows, confounds=None, high_pass=None):
    """The features as played (the AlignFeatures output) for the tests."""
    return played_features(*slot_features(acts, meta, rows, confounds, high_pass))


def _events(path: Path, rows: list[tuple[float, float, str]]) -> Path:
    path.write_text("onset\tduration\tstim_file\n"
                    + "".join(f"{o}\t{d}\t{s}\n" for o, d, s in rows))
    return path


def test_read_blocks_and_its_errors(tmp_path: Path) -> None:
    onsets, durations, stims = read_blocks(_events(tmp_path / "e.tsv", [(4, 20, "a.wav"),
                                                                       (40, 24.5, "b.wav")]))
    np.testing.assert_array_equal(onsets, [4, 40])
    np.testing.assert_array_equal(durations, [20, 24.5])
    assert stims == ["a.wav", "b.wav"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("onset\tstim_file\n4\ta.wav\n")
    with pytest.raises(DataError, match="missing duration"):
        read_blocks(bad)
    with pytest.raises(DataError, match="duration > 0"):
        read_blocks(_events(tmp_path / "z.tsv", [(4, 0, "a.wav")]))


def test_zscore_scans() -> None:
    values = np.c_[np.arange(10.0), np.full(10, 3.0)]
    out = zscore_scans(values)
    np.testing.assert_allclose(out[:, 0].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(out[:, 0].std(), 1)
    assert np.all(out[:, 1] == 0)


def test_roi_timeseries_keeps_block_scans_zscored_per_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    labels = np.zeros((4, 4, 2), dtype=np.int16)
    labels[:2] = 1
    labels[2:, :2] = 2
    atlas = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), atlas)
    (tmp_path / "atlas.tsv").write_text("index\tname\n1\tA\n2\tB\n")
    bolds, events, data = [], [], []
    for run, n_scans in enumerate((40, 30)):
        values = rng.normal(size=(4, 4, 2, n_scans)) * (run + 1) + 100
        data.append(values)
        bolds.append(str(tmp_path / f"bold{run}.nii.gz"))
        nib.save(nib.Nifti1Image(values, affine), bolds[-1])
        events.append(str(_events(tmp_path / f"ev{run}.tsv",
                                  [(4.0, 20.0, "a.wav"), (40.0, 24.0, "b.wav")] if run == 0
                                  else [(10.0, 30.0, "c.wav")])))
    node = ROITimeseries(bold=bolds, events=events, t_r=[2.0, 2.0], atlas=str(atlas),
                         atlas_labels=str(tmp_path / "atlas.tsv"), discard_seconds=4.0)
    result = node.run(cwd=str(tmp_path))
    rows = json.loads(Path(result.outputs.rows).read_text())
    # scans: run0 b0 8 <= t < 24 -> 4..11 (8); b1 44 <= t < 64 -> 22..31 (10); run1 14 <= t < 40
    assert rows["scans_per_block"] == 8
    assert rows["block"] == [0] * 8 + [1] * 8 + [2] * 8
    assert rows["scan"] == list(range(4, 12)) + list(range(22, 30)) + list(range(7, 15))
    assert rows["n_scans"] == [40, 30] and [b["stim_file"] for b in rows["blocks"]] == [
        "a.wav", "b.wav", "c.wav"]
    with np.load(result.outputs.timeseries) as npz:
        series = npz["A"]
    assert series.shape == (24, 16)
    want0 = zscore_scans(data[0][labels == 1].T)[rows["scan"][:16]]
    want1 = zscore_scans(data[1][labels == 1].T)[rows["scan"][16:]]
    np.testing.assert_allclose(series, np.r_[want0, want1], atol=1e-10)
    assert json.loads(Path(result.outputs.rois).read_text()) == [
        {"name": "A", "index": 1, "n_voxels": 16}, {"name": "B", "index": 2, "n_voxels": 8}]


def test_align_features_equals_hrf_regressors_at_the_kept_scans() -> None:
    rng = np.random.default_rng(1)
    counts = [50, 30, 40]
    acts = {"conv": rng.normal(size=(sum(counts), 3))}
    meta = {"stimuli": ["a.wav", "b.wav", "c.wav"], "FrameCounts": counts, "FrameRate": 5.0}
    rows = {"run": [0, 0, 1, 1], "scan": [5, 6, 3, 4], "n_scans": [20, 15], "t_r": [2.0, 2.0],
            "blocks": [{"run": 0, "onset": 2.0, "duration": 10.0, "stim_file": "b.wav"},
                       {"run": 1, "onset": 1.0, "duration": 10.0, "stim_file": "sub/a.wav"}]}
    out = align_features(acts, meta, rows)["conv"]
    run0 = features_to_scans([acts["conv"][50:80]], [2.0], 5.0, np.arange(20) * 2.0)
    run1 = features_to_scans([acts["conv"][:50]], [1.0], 5.0, np.arange(15) * 2.0)
    np.testing.assert_allclose(out, np.r_[run0[[5, 6]], run1[[3, 4]]], atol=1e-12)


def test_aligned_features_are_cleaned_like_the_bold() -> None:
    from nilearn.signal import clean

    rng = np.random.default_rng(2)
    acts = {"fc": rng.normal(size=(60, 2)) + 3}
    meta = {"stimuli": ["a.wav"], "FrameCounts": [60], "FrameRate": 2.0}
    rows = {"run": [0, 0, 0], "scan": [10, 11, 12], "n_scans": [40], "t_r": [2.0],
            "blocks": [{"run": 0, "onset": 8.0, "duration": 30.0, "stim_file": "a.wav"}]}
    confounds = [rng.normal(size=(40, 3))]
    out = align_features(acts, meta, rows, confounds, 1 / 128)["fc"]
    raw = features_to_scans([acts["fc"]], [8.0], 2.0, np.arange(40) * 2.0)
    want = clean(raw, detrend=True, standardize=None, confounds=confounds[0], high_pass=1 / 128,
                 t_r=2.0)[[10, 11, 12]]
    np.testing.assert_allclose(out, want, atol=1e-12)
    cleaned = clean_like_bold(raw, confounds[0], 2.0, 1 / 128)
    np.testing.assert_allclose(cleaned[[10, 11, 12]], want, atol=1e-12)
    assert np.abs(out - raw[[10, 11, 12]]).max() > 0.1


def test_slot_features_place_every_stimulus_at_every_slot() -> None:
    rng = np.random.default_rng(5)
    acts = {"fc": rng.normal(size=(50, 2))}
    meta = {"stimuli": ["a.wav", "b.wav"], "FrameCounts": [30, 20], "FrameRate": 2.0}
    rows = {"run": [0, 0, 1, 1], "scan": [8, 9, 6, 7], "n_scans": [30, 30], "t_r": [2.0, 2.0],
            "blocks": [{"run": 0, "onset": 10.0, "duration": 12.0, "stim_file": "b.wav"},
                       {"run": 1, "onset": 6.0, "duration": 12.0, "stim_file": "a.wav"}]}
    confounds = [rng.normal(size=(30, 2)), rng.normal(size=(30, 2))]
    slots, played = slot_features(acts, meta, rows, confounds, 1 / 128)
    np.testing.assert_array_equal(played, [0, 1])  # stimuli in order of first play: b, a
    assert slots["fc"].shape == (2, 2, 4, 2)
    a_at_slot0 = features_to_scans([acts["fc"][:30]], [10.0], 2.0, np.arange(30) * 2.0)
    want = clean_like_bold(a_at_slot0, confounds[0], 2.0, 1 / 128)[[8, 9]]
    np.testing.assert_allclose(slots["fc"][1, 0, :2], want, atol=1e-12)
    assert np.all(slots["fc"][:, 0, 2:] == 0) and np.all(slots["fc"][:, 1, :2] == 0)
    aligned = align_features(acts, meta, rows, confounds, 1 / 128)["fc"]
    np.testing.assert_allclose(aligned, slots["fc"][0, 0] + slots["fc"][1, 1], atol=1e-12)
