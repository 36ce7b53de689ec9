"""The spec-bound derivatives writer and its Nipype sinks.

Every output file goes through :class:`DerivativeWriter`, which takes its name from
``derivatives_spec/`` (via :func:`nnbrain.utils.bids.build_path`), refuses undescribed files and
sidecars missing required keys, and writes atomically (temporary file + ``os.replace``). Sinks
write into a staging directory; the CLI moves staged files into the output dataset only when
the whole workflow succeeded, so a crash leaves no half-written outputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from collections.abc import Callable

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

from nnbrain.utils.bids import bids_label, build_path, check_sidecar, sidecar_path
from nnbrain.utils.io import atomic_write, write_json


class DerivativeWriter:
    """Writes spec-described outputs and their sidecars under ``base_dir``."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self.written: list[str] = []

    def write(self, output: str, entities: dict[str, str], write: Callable[[Path], None],
              metadata: dict[str, Any] | None = None) -> str:
        """Write one output; return its path relative to ``base_dir``."""
        rel = build_path(output, **entities)
        if metadata is not None:
            check_sidecar(output, metadata)
        atomic_write(self.base_dir / rel, write)
        self.written.append(rel)
        if metadata is not None:
            write_json(self.base_dir / sidecar_path(rel), metadata)
            self.written.append(sidecar_path(rel))
        return rel


def _square_tsv(condensed: np.ndarray, labels: list[str]) -> Callable[[Path], None]:
    from scipy.spatial.distance import squareform

    def write(path: Path) -> None:
        square = squareform(condensed)
        lines = ["\t".join(labels)] + ["\t".join(f"{v:.10g}" for v in row) for row in square]
        path.write_text("\n".join(lines) + "\n")

    return write


def _npy_writer(array: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, array)

    return write


def _relmat_meta(measure: str, labels: list[str]) -> dict[str, Any]:
    return {"RelationshipMeasure": measure, "Directed": False, "Weighted": True,
            "ValidDiagonal": False, "NodeLabels": labels,
            "Description": "square matrix; rows and columns in the order of NodeLabels"}


def _column_descriptions(kind: str, statistic: str, continuous: bool = False) -> dict[str, str]:
    """What the value columns of a similarity table of one measure kind mean."""
    counts = ({"n_scans": "scans compared (the stimulation blocks' scans, all runs)"}
              if continuous else {"n_stimuli": "stimuli (rows) compared"})
    if kind == "nss":
        return {"statistic": statistic, "p_value": "n/a (no test for the score)",
                "p_fwe": "n/a", "ci_low": "n/a", "ci_high": "n/a", **counts,
                "n_units": "units of the layer", "n_voxels": "voxels of the ROI",
                "score_sd": "SD (ddof=0) of the score over random seeds",
                "n_seeds": "number of random-init seeds"}
    return {"statistic": statistic,
            "p_value": "one-sided permutation p, (1 + #{null >= stat}) / (1 + n_permutations); "
                       "n/a without permutations",
            "p_fwe": "max-statistic family-wise p across the layers of one model and weights "
                     "source",
            "ci_low": "lower bound of the percentile bootstrap interval "
                      "(ConfidenceInterval)",
            "ci_high": "upper bound of that interval",
            **counts, "n_units": "units of the layer", "n_voxels": "voxels of the ROI"}


def _write_timeseries(writer: DerivativeWriter, entities: dict[str, str], series: np.ndarray,
                      rows: dict, roi: dict, sources: list[str], denoising: str) -> None:
    """One ROI's time series over the compared scans (continuous designs), with its rows."""
    import pandas as pd

    def write(path: Path) -> None:
        table = pd.DataFrame(series, columns=[f"voxel{v:05d}" for v in range(series.shape[1])])
        table.insert(0, "block", rows["block"])
        table.insert(0, "scan", rows["scan"])
        table.insert(0, "run", [r + 1 for r in rows["run"]])
        table.to_csv(path, sep="\t", index=False, float_format="%.8g")

    writer.write("roi_timeseries", {**entities, "desc": "blocks"}, write, {
        "Description": "scans (rows) of the stimulation blocks x ROI voxels (columns); run "
                       "(1-based), scan (0-based index in the run) and block number first",
        "Sources": sources, "ROIName": roi["name"], "ROIIndex": roi["index"],
        "NumberOfVoxels": roi["n_voxels"], "RepetitionTime": rows["t_r"],
        "Blocks": rows["blocks"],
        "Method": {"Denoising": denoising, "Standardization": "z-score per run and voxel",
                   "DiscardSeconds": rows["discard_seconds"],
                   "ScansPerBlock": rows["scans_per_block"]}})


class _SubjectSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = Directory(mandatory=True, desc="staging root mirroring the output dataset")
    subject = traits.Str(mandatory=True, desc="participant label without 'sub-'")
    task = traits.Str(mandatory=True, desc="task label")
    space = traits.Str(mandatory=True, desc="template space of the BOLD")
    atlas = traits.Str(mandatory=True, desc="atlas label")
    stimuli = traits.List(traits.Str, mandatory=True, desc="stimulus names, row order")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the inputs")
    parameters = traits.Dict(mandatory=True, desc="method parameters for the sidecars")
    patterns = File(exists=True, mandatory=True,
                    desc="npz of ROI patterns (continuous designs: ROI time series)")
    rows = traits.Either(None, File(exists=True), usedefault=True,
                         desc="continuous designs: JSON rows of ROITimeseries; None: event-"
                              "related patterns")
    rois = File(exists=True, mandatory=True, desc="JSON of ROI names/indices/voxel counts")
    brain_rdms = File(exists=True, mandatory=True, desc="npz of condensed ROI RDMs")
    tables = InputMultiObject(File(exists=True), mandatory=True,
                              desc="one similarity TSV per measure, named <label>.tsv")
    activation_metas = traits.List(File(exists=True), mandatory=True,
                                   desc="JSON provenance of each activations file")


class _SinkOutputSpec(TraitedSpec):
    out_files = traits.List(traits.Str, desc="paths written, relative to base_directory")


class SubjectDerivativesSink(SimpleInterface):
    """Write a participant's ROI patterns, ROI RDMs and similarity tables through the spec."""

    input_spec = _SubjectSinkInputSpec
    output_spec = _SinkOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        inp = self.inputs
        writer = DerivativeWriter(Path(inp.base_directory))
        common = {"subject": inp.subject, "task": inp.task, "space": inp.space, "atlas": inp.atlas}
        rois = json.loads(Path(inp.rois).read_text())
        stimuli = list(inp.stimuli)
        params = dict(inp.parameters)
        rows = json.loads(Path(inp.rows).read_text()) if inp.rows else None
        with np.load(inp.patterns) as patterns, np.load(inp.brain_rdms) as rdms:
            for roi in rois:
                label = bids_label(roi["name"])
                pattern = patterns[roi["name"]]

                def write_patterns(path: Path, pattern=pattern) -> None:
                    table = pd.DataFrame(pattern, columns=[f"voxel{v:05d}"
                                                           for v in range(pattern.shape[1])])
                    table.insert(0, "stim_file", stimuli)
                    table.to_csv(path, sep="\t", index=False, float_format="%.8g")

                if rows is not None:
                    _write_timeseries(writer, {**common, "label": label}, pattern, rows, roi,
                                      list(inp.sources), params["denoising"])
                    continue
                writer.write("roi_patterns", {**common, "label": label, "desc": "betas"},
                             write_patterns, {
                                 "Description": "mean least-squares-all single-trial GLM beta "
                                                "per stimulus (rows), per ROI voxel (columns)",
                                 "Sources": list(inp.sources), "ROIName": roi["name"],
                                 "ROIIndex": roi["index"], "NumberOfVoxels": roi["n_voxels"],
                                 "Stimuli": stimuli, "Method": params["glm"]})
                for method in params["rdm_methods"]:
                    meta = _relmat_meta(method, stimuli)
                    meta.update(Sources=list(inp.sources), ROIName=roi["name"])
                    writer.write("brain_rdm", {**common, "label": label, "desc": method},
                                 _square_tsv(rdms[f"{method}/{roi['name']}"], stimuli), meta)
        act_metas = [json.loads(Path(f).read_text()) for f in inp.activation_metas]
        for source in map(Path, inp.tables):
            measure = params["measures"][source.stem]
            table = pd.read_csv(source, sep="\t")
            if table.empty:
                continue
            writer.write("similarity", {**common, "desc": source.stem},
                         lambda p, src=source: shutil.copyfile(src, p),
                         {
                             "Measure": measure["Measure"],
                             "Method": measure["Method"],
                             "Parameters": measure["Parameters"],
                             "PermutationTest": measure["PermutationTest"],
                             "ConfidenceInterval": measure["ConfidenceInterval"],
                             "NumberOfStimuli": len(stimuli),
                             "Design": ("event-related" if rows is None else {
                                 "Type": "continuous", "Rows": len(rows["run"]),
                                 "Blocks": len(rows["blocks"]),
                                 "ScansPerBlock": rows["scans_per_block"],
                                 "DiscardSeconds": rows["discard_seconds"]}),
                             "Sources": list(inp.sources),
                             "SoftwareVersions": params["software"],
                             "LayerNames": {r.layer: r.layer_name for r in table.itertuples()},
                             "ROINames": {r.roi: r.roi_name for r in table.itertuples()},
                             "Models": [{k: m[k] for k in ("model", "weights", "Architecture",
                                                           "WeightsSource", "WeightsSHA256",
                                                           "Seed", "Epoch", "Pooling")}
                                        for m in act_metas],
                             "Columns": _column_descriptions(measure["Measure"],
                                                             measure["Statistic"],
                                                             rows is not None),
                         })
        self._results["out_files"] = writer.written
        return runtime


class _ModelSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = Directory(mandatory=True, desc="staging root mirroring the output dataset")
    activations = File(exists=True, mandatory=True, desc="npz of layer activations")
    meta = File(exists=True, mandatory=True, desc="JSON provenance of the activations")
    rdm_methods = traits.List(traits.Str, mandatory=True,
                              desc="dissimilarities of the model RDMs (one RDM file each)")


class ModelDerivativesSink(SimpleInterface):
    """Write one (model, weights)'s per-layer activations and model RDMs through the spec."""

    input_spec = _ModelSinkInputSpec
    output_spec = _SinkOutputSpec

    def _run_interface(self, runtime):
        from nnbrain.core.rdm import compute_rdm

        writer = DerivativeWriter(Path(self.inputs.base_directory))
        meta = json.loads(Path(self.inputs.meta).read_text())
        ents = {"model": bids_label(meta["model"]), "weights": bids_label(meta["weights"])}
        with np.load(self.inputs.activations) as npz:
            for layer in meta["layers"]:
                acts = npz[layer]
                sidecar = {k: meta[k] for k in ("Architecture", "WeightsSource", "WeightsFile",
                                                "WeightsSHA256", "Seed", "Epoch",
                                                "SoftwareVersions")}
                sidecar["Pooling"] = meta["Pooling"][layer]
                sidecar["Input"] = meta["Input"]
                sidecar["Preprocessing"] = meta["Preprocessing"]
                sidecar["Dtype"] = meta["Dtype"]
                if "FrameRate" in meta:
                    sidecar["FrameRate"] = meta["FrameRate"]
                    sidecar["FrameCounts"] = meta["FrameCounts"]
                if meta["Reduction"] is not None:
                    reduction = dict(meta["Reduction"])
                    components = reduction.pop("EffectiveComponents")
                    sidecar["Reduction"] = {**reduction, "EffectiveComponents": components[layer]}
                sidecar.update(LayerName=layer, Shape=list(acts.shape), Stimuli=meta["stimuli"])
                writer.write("activations", {**ents, "layer": bids_label(layer)},
                             _npy_writer(acts), sidecar)
                for method in self.inputs.rdm_methods:
                    rdm_meta = _relmat_meta(method, meta["stimuli"])
                    rdm_meta["LayerName"] = layer
                    writer.write("model_rdm", {**ents, "layer": bids_label(layer),
                                               "desc": method},
                                 _square_tsv(compute_rdm(acts, method), meta["stimuli"]),
                                 rdm_meta)
        self._results["out_files"] = writer.written
        return runtime
