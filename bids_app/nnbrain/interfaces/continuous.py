"""Continuous designs: ROI time series over the stimulation blocks, and network features aligned
to the same scans (HRF-convolved frame activations)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from nnbrain.core.hrf import (
    HRF_LENGTH_S,
    block_response,
    design_rows,
    played_features,
    slot_features,
)
from nnbrain.core.roi import roi_values, zscore_scans
from nnbrain.interfaces.roi import read_atlas_labels


def read_blocks(events_tsv: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Onsets, durations (s) and ``stim_file`` of the blocks of one run's ``events.tsv``.

    Raises
    ------
    DataError
        A block without onset, duration or stim_file, or with a duration not above 0.
    """
    import pandas as pd

    from nnbrain.errors import DataError

    table = pd.read_csv(events_tsv, sep="\t", na_values="n/a")
    missing = [c for c in ("onset", "duration", "stim_file") if c not in table.columns]
    if missing:
        raise DataError(f"a continuous design needs columns onset, duration and stim_file (one "
                        f"row per stimulation block); missing {', '.join(missing)}", events_tsv)
    table = table.dropna(subset=["stim_file"])
    if table[["onset", "duration"]].isna().any().any() or (table["duration"] <= 0).any():
        raise DataError("every block needs a numeric onset and a duration > 0 s", events_tsv)
    return (table["onset"].to_numpy(float), table["duration"].to_numpy(float),
            [str(s) for s in table["stim_file"]])


def block_response_of(events_tsv: Path, n_scans: int, t_r: float) -> np.ndarray:
    """The run's block response (:func:`nnbrain.core.hrf.block_response`), shape (n_scans, 1).

    It joins the confounds of both the BOLD and the network features of a continuous design:
    the response to sound onset and offset, common to every block, every sound-responsive voxel
    and every layer, is removed, and the comparison rests on what varies with the sounds.
    """
    onsets, durations, _ = read_blocks(events_tsv)
    return block_response(onsets, durations, np.arange(n_scans) * t_r)[:, None]


class _ROITimeseriesInputSpec(BaseInterfaceInputSpec):
    bold = InputMultiObject(File(exists=True), mandatory=True, desc="denoised BOLD per run")
    events = InputMultiObject(File(exists=True), mandatory=True,
                              desc="events.tsv per run: one row per stimulation block")
    t_r = traits.List(traits.Float, mandatory=True, desc="repetition time (s) per run")
    atlas = File(exists=True, mandatory=True, desc="dseg atlas NIfTI (any grid; resampled)")
    atlas_labels = File(exists=True, mandatory=True, desc="dseg TSV with index and name")
    discard_seconds = traits.Float(6.0, usedefault=True,
                                   desc="seconds dropped at the start of every block")


class _ROITimeseriesOutputSpec(TraitedSpec):
    timeseries = File(exists=True, desc="npz: one (n_rows, n_voxels) array per ROI name")
    rois = File(exists=True, desc="JSON: ROI names, indices and voxel counts")
    rows = File(exists=True, desc="JSON: run, scan and block of every row, the blocks, and the "
                                  "scan count and times of every run")


class ROITimeseries(SimpleInterface):
    """Voxel time series of every ROI over the stimulation blocks, z-scored per run and voxel;
    every block trimmed to the shortest block's scan count after the discarded seconds."""

    input_spec = _ROITimeseriesInputSpec
    output_spec = _ROITimeseriesOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        from nilearn.image import resample_to_img

        from nnbrain.errors import DataError

        images = [nib.load(f) for f in self.inputs.bold]
        atlas = resample_to_img(self.inputs.atlas, images[0], interpolation="nearest",
                                force_resample=True, copy_header=True)
        labels = np.rint(atlas.get_fdata()).astype(int)
        blocks = [read_blocks(Path(e)) for e in self.inputs.events]
        times = [np.arange(img.shape[3]) * t_r for img, t_r in zip(images, self.inputs.t_r)]
        try:
            run, scan, block = design_rows([b[0] for b in blocks], [b[1] for b in blocks],
                                           times, self.inputs.discard_seconds)
        except ValueError as exc:
            raise DataError(f"no usable scans in the stimulation blocks ({exc})",
                            self.inputs.events[0]) from exc
        series: dict[str, list[np.ndarray]] = {}
        info = []
        for r, img in enumerate(images):
            data = img.get_fdata()
            for index, name in read_atlas_labels(Path(self.inputs.atlas_labels)):
                values = roi_values(data, labels, index)
                if values.shape[1] == 0:
                    raise DataError(f"ROI {name!r} (index {index}) has no voxel on the BOLD grid",
                                    self.inputs.atlas)
                series.setdefault(name, []).append(zscore_scans(values)[scan[run == r]])
                if r == 0:
                    info.append({"name": name, "index": index, "n_voxels": int(values.shape[1])})
        cwd = Path(runtime.cwd)
        np.savez(cwd / "timeseries.npz", **{k: np.concatenate(v) for k, v in series.items()})
        (cwd / "rois.json").write_text(json.dumps(info))
        rows = {"run": run.tolist(), "scan": scan.tolist(), "block": block.tolist(),
                "n_scans": [img.shape[3] for img in images], "t_r": list(self.inputs.t_r),
                "blocks": [{"run": r, "onset": float(o), "duration": float(d), "stim_file": s}
                           for r, (on, du, st) in enumerate(blocks)
                           for o, d, s in zip(on, du, st)],
                "discard_seconds": self.inputs.discard_seconds,
                "scans_per_block": int(np.bincount(block).min())}
        (cwd / "rows.json").write_text(json.dumps(rows))
        self._results.update(timeseries=str(cwd / "timeseries.npz"), rois=str(cwd / "rois.json"),
                             rows=str(cwd / "rows.json"))
        return runtime


class _AlignFeaturesInputSpec(BaseInterfaceInputSpec):
    activations = File(exists=True, mandatory=True,
                       desc="npz of frame-level activations of one (model, weights)")
    meta = File(exists=True, mandatory=True, desc="JSON provenance with FrameRate, FrameCounts")
    rows = File(exists=True, mandatory=True, desc="JSON rows of ROITimeseries")
    confounds = InputMultiObject(File(exists=True), mandatory=True,
                                 desc="fMRIPrep confounds TSV per run (as for the BOLD)")
    high_pass = traits.Float(1.0 / 128, usedefault=True, desc="the BOLD's high-pass (Hz)")


class _AlignFeaturesOutputSpec(TraitedSpec):
    activations = File(exists=True, desc="npz: one (n_rows, n_units) array per layer")
    meta = File(exists=True, desc="JSON provenance, with the HRF and the rows")
    slots = File(exists=True, desc="npz: per layer (n_stimuli, n_slots, n_rows, n_units), every "
                                   "stimulus at every block slot, and 'played'")


class AlignFeatures(SimpleInterface):
    """Place frame activations at the block onsets, convolve with the Glover HRF, sample them at
    the ROI time series' scans, clean them as the BOLD was cleaned."""

    input_spec = _AlignFeaturesInputSpec
    output_spec = _AlignFeaturesOutputSpec

    def _run_interface(self, runtime):
        meta = json.loads(Path(self.inputs.meta).read_text())
        rows = json.loads(Path(self.inputs.rows).read_text())
        from nnbrain.interfaces.preprocess import select_confounds

        confounds = []
        for r, tsv in enumerate(self.inputs.confounds):
            blocks = [b for b in rows["blocks"] if b["run"] == r]
            response = block_response(np.array([b["onset"] for b in blocks]),
                                      np.array([b["duration"] for b in blocks]),
                                      np.arange(rows["n_scans"][r]) * rows["t_r"][r])
            confounds.append(np.column_stack([select_confounds(Path(tsv))[0], response]))
        with np.load(self.inputs.activations) as npz:
            slots, played = slot_features({k: npz[k] for k in meta["layers"]}, meta, rows,
                                          confounds, self.inputs.high_pass)
        cwd = Path(runtime.cwd)
        np.savez(cwd / "aligned.npz", **played_features(slots, played))
        np.savez(cwd / "slots.npz", played=played, **slots)
        meta["Alignment"] = {"HRF": "glover", "HRFLengthSeconds": HRF_LENGTH_S,
                             "Sampling": "linear interpolation at scan onsets (t = i * TR)",
                             "Cleaning": "as the BOLD: confounds and the block response "
                                         "regressed out, linear detrend, high-pass "
                                         f"{self.inputs.high_pass:.6g} Hz",
                             "Rows": len(rows["run"])}
        (cwd / "aligned.json").write_text(json.dumps(meta))
        self._results.update(activations=str(cwd / "aligned.npz"),
                             meta=str(cwd / "aligned.json"), slots=str(cwd / "slots.npz"))
        return runtime
