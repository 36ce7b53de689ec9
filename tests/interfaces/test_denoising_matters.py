"""The planted confounds are really in the BOLD: the GLM recovers the plant only with them."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from conftest import DEMO, compute_activations
from nnbrain.core.cka import cka
from nnbrain.interfaces.preprocess import denoise, select_confounds, single_trial_betas
from nnbrain.spec import load_model_spec

PREP = DEMO / "derivatives" / "fmriprep" / "sub-01" / "func"


def _roi_patterns(tmp_path: Path, confounds: bool) -> np.ndarray:
    labels = nib.load(next((DEMO / "derivatives" / "atlas").rglob("*_dseg.nii.gz"))).get_fdata()
    roi_a = labels[::2, ::2, ::2] == 1
    betas, trials = [], []
    for run in ("01", "02"):
        stem = f"sub-01_task-digits_run-{run}_space-MNI152NLin2009cAsym_res-2"
        bold, mask = PREP / f"{stem}_desc-preproc_bold.nii.gz", PREP / f"{stem}_desc-brain_mask.nii.gz"
        out = tmp_path / f"betas{run}{confounds}.nii.gz"
        trials += single_trial_betas(
            bold, mask, DEMO / "sub-01" / "func" / f"sub-01_task-digits_run-{run}_events.tsv",
            2.0, 1 / 128, out,
            PREP / f"sub-01_task-digits_run-{run}_desc-confounds_timeseries.tsv" if confounds
            else None)
        betas.append(nib.load(out).get_fdata()[roi_a])
    data, trials = np.concatenate(betas, axis=1), np.array(trials)
    stimuli = sorted(set(trials))
    return np.stack([data[:, trials == s].mean(axis=1) for s in stimuli])


def test_confounds_in_the_glm_improve_recovery_of_the_plant(tmp_path: Path) -> None:
    model = load_model_spec(DEMO / "code" / "model_spec.yaml")[0]
    stimuli = sorted((DEMO / "stimuli").glob("*.png"))
    acts, _ = compute_activations(model.to_dict(), model.weights[0].to_dict(), stimuli, 1)
    with_confounds = cka(_roi_patterns(tmp_path, True), acts["conv1"], unbiased=True)
    without = cka(_roi_patterns(tmp_path, False), acts["conv1"], unbiased=True)
    truth = json.loads((DEMO / "code" / "ground_truth.json").read_text())
    assert truth["plant"]["roiA"] == "conv1"
    assert with_confounds > 0.7
    assert without < with_confounds - 0.3, (with_confounds, without)


def test_betas_are_exact_with_confounds_in_the_design_and_biased_after_precleaning(
        tmp_path: Path) -> None:
    """Noise-free voxels = trial regressors @ betas + confounds @ weights: the joint GLM gives
    the betas back; cleaning the BOLD first and fitting an uncleaned design does not."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    t_r, n_scans = 2.0, 150
    rng = np.random.default_rng(3)
    onsets = np.arange(6.0, 280.0, 9.0)
    events = pd.DataFrame({"onset": onsets, "duration": 1.0,
                           "stim_file": [f"s{i % 7}.png" for i in range(len(onsets))]})
    events_tsv = tmp_path / "events.tsv"
    events.to_csv(events_tsv, sep="\t", index=False)
    confounds_tsv = tmp_path / "confounds.tsv"
    table = pd.read_csv(PREP / "sub-01_task-digits_run-01_desc-confounds_timeseries.tsv",
                        sep="\t", na_values="n/a")
    table = pd.concat([table] * (n_scans // len(table) + 1)).iloc[:n_scans]
    table.to_csv(confounds_tsv, sep="\t", index=False, na_rep="n/a")
    values, _ = select_confounds(confounds_tsv)
    lsa = pd.DataFrame({"onset": onsets, "duration": 1.0,
                        "trial_type": [f"trial{i:04d}" for i in range(len(onsets))]})
    design = make_first_level_design_matrix(np.arange(n_scans) * t_r, lsa, hrf_model="glover",
                                            drift_model=None)
    trials = design[[c for c in design.columns if c.startswith("trial")]].to_numpy()
    true = rng.normal(2.0, 1.0, size=(len(onsets), 4))
    confound = values - values.mean(axis=0)
    series = trials @ true + confound @ rng.normal(0, 0.5, size=(confound.shape[1], 4)) + 100
    shape = (2, 2, 1)
    bold = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(series.T.reshape(*shape, n_scans), np.eye(4)), bold)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, dtype=np.uint8), np.eye(4)), mask)

    def betas(bold_file: Path, confounds: Path | None, name: str) -> np.ndarray:
        out = tmp_path / name
        single_trial_betas(bold_file, mask, events_tsv, t_r, 1 / 128, out, confounds)
        return nib.load(out).get_fdata().reshape(4, -1).T

    np.testing.assert_allclose(betas(bold, confounds_tsv, "joint.nii.gz"), true, rtol=0,
                               atol=1e-6)
    cleaned = tmp_path / "clean.nii.gz"
    denoise(bold, mask, confounds_tsv, t_r, 1 / 128, cleaned)
    biased = betas(cleaned, None, "precleaned.nii.gz")
    assert np.abs(biased - true).max() > 0.2
