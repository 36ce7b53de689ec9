"""Denoising and single-trial GLM (nilearn), as functions and thin Nipype interfaces."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

#: fMRIPrep confound columns regressed out by default: 24 motion parameters + NSS spikes.
MOTION_24 = tuple(
    f"{p}{suffix}"
    for p in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
    for suffix in ("", "_derivative1", "_power2", "_derivative1_power2")
)


def select_confounds(confounds_tsv: Path) -> tuple[np.ndarray, list[str]]:
    """Read fMRIPrep confounds: 24 motion parameters and ``non_steady_state_outlier*`` columns.

    ``n/a`` (first row of derivatives) becomes the column mean, as nilearn's ``load_confounds``
    does.

    Returns
    -------
    confounds : array of shape (n_scans, n_confounds)
    names : list of str
    """
    import pandas as pd

    from nnbrain.errors import DataError

    table = pd.read_csv(confounds_tsv, sep="\t", na_values="n/a")
    missing = [c for c in MOTION_24 if c not in table.columns]
    if missing:
        raise DataError(f"confounds file lacks motion columns {missing[:4]}...; is it fMRIPrep's "
                        "desc-confounds_timeseries.tsv?", confounds_tsv)
    names = list(MOTION_24) + [c for c in table.columns if c.startswith("non_steady_state_outlier")]
    values = table[names].astype(float)
    values = values.fillna(values.mean())
    return values.to_numpy(), names


def denoise(bold: Path, mask: Path, confounds_tsv: Path, t_r: float, high_pass: float,
            out_file: Path, extra: np.ndarray | None = None) -> dict:
    """Regress confounds out of the BOLD and high-pass it (nilearn ``clean_img``), within the mask.

    ``extra`` (n_scans, k) adds regressors to :func:`select_confounds`' (continuous designs: the
    block response). Returns a dictionary describing what was done (for the sidecar).
    """
    from nilearn.image import clean_img

    confounds, names = select_confounds(confounds_tsv)
    if extra is not None:
        confounds = np.column_stack([confounds, extra])
        names = names + [f"extra{i}" for i in range(np.shape(extra)[1])]
    cleaned = clean_img(str(bold), detrend=True, standardize=None, confounds=confounds,
                        high_pass=high_pass, t_r=t_r, mask_img=str(mask))
    cleaned.to_filename(str(out_file))
    return {"Confounds": names, "HighPassHz": high_pass, "Detrend": True, "Software": "nilearn"}


def single_trial_betas(bold: Path, mask: Path, events_tsv: Path, t_r: float, high_pass: float,
                       out_file: Path, confounds_tsv: Path | None = None) -> list[str]:
    """Least-squares-all single-trial betas with nilearn's ``FirstLevelModel``.

    Every trial of ``events_tsv`` gets its own Glover-HRF regressor; a cosine drift basis (the
    high-pass), an intercept and, with ``confounds_tsv``, the confounds of
    :func:`select_confounds` are added to the same design, so trials and nuisance are estimated
    together. (Regressing the confounds out of the BOLD first and fitting the trials on the
    cleaned data with an uncleaned design biases the betas: on the audio test data each beta
    shrank to 0.26-0.77 of its value and took up to 0.30 of its neighbours'.) Writes a 4D NIfTI
    with one effect-size volume per trial (in event order) and returns the trial's
    ``stim_file`` values in the same order.
    """
    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.image import concat_imgs

    from nnbrain.errors import DataError

    events = pd.read_csv(events_tsv, sep="\t")
    for column in ("onset", "duration", "stim_file"):
        if column not in events.columns:
            raise DataError(f"events file lacks the '{column}' column", events_tsv)
    events = events.sort_values("onset").reset_index(drop=True)
    lsa = pd.DataFrame({"onset": events["onset"], "duration": events["duration"],
                        "trial_type": [f"trial{i:04d}" for i in range(len(events))]})
    confounds = None
    if confounds_tsv is not None:
        values, names = select_confounds(confounds_tsv)
        confounds = pd.DataFrame(values, columns=names)
    glm = FirstLevelModel(t_r=t_r, hrf_model="glover", drift_model="cosine", high_pass=high_pass,
                          mask_img=str(mask), noise_model="ols", signal_scaling=False,
                          minimize_memory=True)
    with warnings.catch_warnings():
        # nilearn warns that a mask is "requested" although the given mask_img is used
        warnings.filterwarnings("ignore", message=".*Generation of a mask has been requested")
        glm.fit(str(bold), events=lsa, confounds=confounds)
    maps = [glm.compute_contrast(name, output_type="effect_size") for name in lsa["trial_type"]]
    concat_imgs(maps).to_filename(str(out_file))
    return events["stim_file"].astype(str).tolist()


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="preprocessed BOLD (4D NIfTI)")
    mask = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    confounds = File(exists=True, mandatory=True, desc="fMRIPrep desc-confounds_timeseries.tsv")
    events = File(exists=True, mandatory=True,
                  desc="events.tsv of a continuous design (one row per block): the block "
                       "response joins the confounds")
    t_r = traits.Float(mandatory=True, desc="repetition time (s)")
    high_pass = traits.Float(1.0 / 128, usedefault=True, desc="high-pass cutoff (Hz)")


class _DenoiseOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="denoised BOLD")
    out_meta = File(exists=True, desc="JSON describing the denoising")


class Denoise(SimpleInterface):
    """Continuous designs: confound regression (24 motion + non-steady-state spikes + the block
    response), detrend and high-pass."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "denoised_bold.nii.gz"
        import nibabel as nib

        from nnbrain.interfaces.continuous import block_response_of

        n_scans = nib.load(self.inputs.bold).shape[3]
        extra = block_response_of(Path(self.inputs.events), n_scans, self.inputs.t_r)
        meta = denoise(Path(self.inputs.bold), Path(self.inputs.mask), Path(self.inputs.confounds),
                       self.inputs.t_r, self.inputs.high_pass, out, extra)
        meta_file = Path(runtime.cwd) / "denoise.json"
        meta_file.write_text(json.dumps(meta))
        self._results.update(out_file=str(out), out_meta=str(meta_file))
        return runtime


class _SingleTrialBetasInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="preprocessed BOLD (4D NIfTI)")
    mask = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")
    events = File(exists=True, mandatory=True, desc="BIDS events.tsv with a stim_file column")
    confounds = File(exists=True, mandatory=True,
                     desc="fMRIPrep confounds TSV (24 motion + NSS columns join the design)")
    t_r = traits.Float(mandatory=True, desc="repetition time (s)")
    high_pass = traits.Float(1.0 / 128, usedefault=True, desc="cosine drift cutoff (Hz)")


class _SingleTrialBetasOutputSpec(TraitedSpec):
    betas = File(exists=True, desc="4D NIfTI: one effect-size volume per trial")
    trials = File(exists=True, desc="JSON list: the stim_file of each trial volume")


class SingleTrialBetas(SimpleInterface):
    """Least-squares-all single-trial betas with the confounds in the design (nilearn
    ``FirstLevelModel``)."""

    input_spec = _SingleTrialBetasInputSpec
    output_spec = _SingleTrialBetasOutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "betas.nii.gz"
        stims = single_trial_betas(Path(self.inputs.bold), Path(self.inputs.mask),
                                   Path(self.inputs.events), self.inputs.t_r,
                                   self.inputs.high_pass, out, Path(self.inputs.confounds))
        trials = Path(runtime.cwd) / "trials.json"
        trials.write_text(json.dumps(stims))
        self._results.update(betas=str(out), trials=str(trials))
        return runtime
