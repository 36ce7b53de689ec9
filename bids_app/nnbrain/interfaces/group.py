"""Group level: gather participant similarity tables, average over participants, draw heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from nnbrain.interfaces.bids import DerivativeWriter

KEYS = ["model", "weights", "layer", "layer_name", "roi", "roi_name"]


def subject_mean(table):
    """Mean, SD (ddof=1) and count of ``statistic`` over participants per model/weights/layer/ROI.

    Parameters
    ----------
    table : pandas.DataFrame
        Participant rows with ``participant_id``, :data:`KEYS` and ``statistic``.

    Returns
    -------
    pandas.DataFrame with :data:`KEYS`, ``mean``, ``sd``, ``n_participants``.
    """
    grouped = table.groupby(KEYS, sort=False)["statistic"]
    out = grouped.agg(mean="mean", sd="std", n_participants="count").reset_index()
    return out


class _GroupInputSpec(BaseInterfaceInputSpec):
    tables = InputMultiObject(File(exists=True), mandatory=True,
                              desc="participant similarity TSVs of one measure")
    subjects = traits.List(traits.Str, mandatory=True, desc="participant label of each table")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URI of each table")
    measure = traits.Str(mandatory=True, desc="rsa or cka")
    entities = traits.Dict(mandatory=True, desc="task, space, atlas of the group outputs")
    base_directory = Directory(mandatory=True, desc="staging root mirroring the output dataset")


class _GroupOutputSpec(TraitedSpec):
    out_files = traits.List(traits.Str, desc="paths written, relative to base_directory")


class GroupSimilarity(SimpleInterface):
    """Write the all-participant table, the subject-mean table and a heatmap for one measure."""

    input_spec = _GroupInputSpec
    output_spec = _GroupOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from nnbrain.reports.figures import similarity_heatmaps

        base = Path(self.inputs.base_directory)
        measure = self.inputs.measure
        ents = dict(self.inputs.entities)
        frames = []
        for subject, table in zip(self.inputs.subjects, self.inputs.tables):
            frame = pd.read_csv(table, sep="\t")
            frame.insert(0, "participant_id", f"sub-{subject}")
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        mean = subject_mean(table)
        writer = DerivativeWriter(base)
        meta = {"Participants": [f"sub-{s}" for s in self.inputs.subjects],
                "Sources": list(self.inputs.sources),
                "SoftwareVersions": {"pandas": pd.__version__, "numpy": np.__version__}}
        for desc, frame, method in [
            (measure, table, f"participant {measure} tables stacked (participant_id first)"),
            (f"{measure}Mean", mean, f"subject mean of the {measure} statistic (sd: ddof=1)"),
        ]:
            writer.write("group_similarity", {**ents, "desc": desc},
                         lambda p, f=frame: f.to_csv(p, sep="\t", index=False, na_rep="n/a",
                                                     float_format="%.10g"),
                         {**meta, "Method": method})
        panels = []
        for (model, weights), part in mean.groupby(["model", "weights"], sort=False):
            layers = list(dict.fromkeys(part["layer"]))
            rois = list(dict.fromkeys(part["roi"]))
            grid = part.pivot(index="roi", columns="layer", values="mean").loc[rois, layers]
            panels.append((f"{model} ({weights})", layers, rois, grid.to_numpy()))
        writer.write("group_figure", {**ents, "desc": measure},
                     lambda p: similarity_heatmaps(
                         panels, f"{measure.upper()}: mean over {len(frames)} participants", p,
                         f"mean {measure}"))
        written = writer.written
        (Path(runtime.cwd) / "written.json").write_text(json.dumps(written))
        self._results["out_files"] = written
        return runtime
