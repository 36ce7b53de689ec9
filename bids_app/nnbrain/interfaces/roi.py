"""ROI patterns from single-trial betas and an atlas."""

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

from nnbrain.core.roi import average_by_condition, roi_values


def read_atlas_labels(tsv: Path) -> list[tuple[int, str]]:
    """(index, name) rows of a BIDS dseg TSV (columns ``index`` and ``name``); names must stay
    distinct once made BIDS labels."""
    import pandas as pd

    from nnbrain.errors import DataError

    from nnbrain.utils.bids import bids_label

    table = pd.read_csv(tsv, sep="\t")
    if not {"index", "name"} <= set(table.columns):
        raise DataError("atlas label table needs columns 'index' and 'name'", tsv)
    rows = [(int(i), str(n)) for i, n in zip(table["index"], table["name"]) if int(i) != 0]
    seen: dict[str, str] = {}
    for _, name in rows:
        label = bids_label(name)
        if label in seen:
            raise DataError(f"ROI names {seen[label]!r} and {name!r} both become the label "
                            f"{label!r} in file names (or repeat); rename one in the label "
                            "table", tsv)
        seen[label] = name
    return rows


class _ROIPatternsInputSpec(BaseInterfaceInputSpec):
    betas = InputMultiObject(File(exists=True), mandatory=True, desc="4D single-trial betas per run")
    trials = InputMultiObject(File(exists=True), mandatory=True,
                              desc="JSON list of stim_file per beta volume, per run")
    atlas = File(exists=True, mandatory=True, desc="dseg atlas NIfTI (any grid; resampled)")
    atlas_labels = File(exists=True, mandatory=True, desc="dseg TSV with index and name")
    stimuli = traits.List(traits.Str, mandatory=True, desc="stimulus order of the output rows")


class _ROIPatternsOutputSpec(TraitedSpec):
    patterns = File(exists=True, desc="npz: one (n_stimuli, n_voxels) array per ROI name")
    rois = File(exists=True, desc="JSON: ROI names, indices and voxel counts")


class ROIPatterns(SimpleInterface):
    """Resample the atlas to the beta grid (nearest neighbour); average trials per stimulus per ROI."""

    input_spec = _ROIPatternsInputSpec
    output_spec = _ROIPatternsOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        from nilearn.image import resample_to_img

        from nnbrain.errors import DataError

        first = nib.load(self.inputs.betas[0])
        atlas = resample_to_img(self.inputs.atlas, first, interpolation="nearest",
                                force_resample=True, copy_header=True)
        labels = np.rint(atlas.get_fdata()).astype(int)
        data = np.concatenate([nib.load(f).get_fdata() for f in self.inputs.betas], axis=3)
        trials = sum((json.loads(Path(f).read_text()) for f in self.inputs.trials), [])
        patterns, info = {}, []
        for index, name in read_atlas_labels(Path(self.inputs.atlas_labels)):
            values = roi_values(data, labels, index)
            if values.shape[1] == 0:
                raise DataError(f"ROI {name!r} (index {index}) has no voxel on the BOLD grid",
                                self.inputs.atlas)
            patterns[name] = average_by_condition(values, trials, list(self.inputs.stimuli))
            info.append({"name": name, "index": index, "n_voxels": int(values.shape[1])})
        out = Path(runtime.cwd) / "patterns.npz"
        np.savez(out, **patterns)
        rois = Path(runtime.cwd) / "rois.json"
        rois.write_text(json.dumps(info))
        self._results.update(patterns=str(out), rois=str(rois))
        return runtime
