"""The planted confounds are really in the BOLD: skipping denoising recovers the plant worse."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from conftest import DEMO
from nnbrain.core.cka import cka
from nnbrain.interfaces.activations import compute_activations
from nnbrain.interfaces.preprocess import denoise, single_trial_betas
from nnbrain.spec import load_model_spec


def _roi_patterns(tmp_path: Path, clean: bool) -> np.ndarray:
    prep = DEMO / "derivatives" / "fmriprep" / "sub-01" / "func"
    labels = nib.load(next((DEMO / "derivatives" / "atlas").rglob("*_dseg.nii.gz"))).get_fdata()
    roi_a = labels[::2, ::2, ::2] == 1
    betas, trials = [], []
    for run in ("01", "02"):
        stem = f"sub-01_task-digits_run-{run}_space-MNI152NLin2009cAsym_res-2"
        bold, mask = prep / f"{stem}_desc-preproc_bold.nii.gz", prep / f"{stem}_desc-brain_mask.nii.gz"
        if clean:
            cleaned = tmp_path / f"clean{run}.nii.gz"
            denoise(bold, mask, prep / f"sub-01_task-digits_run-{run}_desc-confounds_timeseries.tsv",
                    2.0, 1 / 128, cleaned)
            bold = cleaned
        out = tmp_path / f"betas{run}{clean}.nii.gz"
        trials += single_trial_betas(bold, mask, DEMO / "sub-01" / "func" /
                                     f"sub-01_task-digits_run-{run}_events.tsv", 2.0, 1 / 128, out)
        betas.append(nib.load(out).get_fdata()[roi_a])
    data, trials = np.concatenate(betas, axis=1), np.array(trials)
    stimuli = sorted(set(trials))
    return np.stack([data[:, trials == s].mean(axis=1) for s in stimuli])


def test_denoising_improves_recovery_of_the_plant(tmp_path: Path) -> None:
    model = load_model_spec(DEMO / "code" / "model_spec.yaml")[0]
    stimuli = sorted((DEMO / "stimuli").glob("*.png"))
    acts, _ = compute_activations(model.to_dict(), model.weights[0].to_dict(), stimuli, 1)
    with_denoising = cka(_roi_patterns(tmp_path, True), acts["conv1"], unbiased=True)
    without = cka(_roi_patterns(tmp_path, False), acts["conv1"], unbiased=True)
    truth = json.loads((DEMO / "code" / "ground_truth.json").read_text())
    assert truth["plant"]["roiA"] == "conv1"
    assert with_denoising > 0.7
    assert without < with_denoising - 0.3, (with_denoising, without)
