"""Continuous designs: ROI time series over the stimulation blocks and aligned network features."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nnbrain.interfaces.continuous import AlignFeatures, ROITimeseries
from nnbrain.interfaces.preprocess import Denoise


def init_timeseries_wf(*, high_pass: float = 1.0 / 128, discard_seconds: float = 6.0,
                       name: str = "timeseries_wf") -> pe.Workflow:
    """Denoise every run (confounds and the block response regressed out, detrend, high-pass) and
    take each ROI's voxel time series over the stimulation blocks.

    Parameters
    ----------
    high_pass : float
        High-pass cutoff (Hz) of the denoising.
    discard_seconds : float
        Seconds dropped at the start of every block.
    name : str

    Inputs
    ------
    bold, mask, confounds, events : list of str
        One entry per run (``events``: one row per block).
    t_r : list of float
    atlas, atlas_labels : str

    Outputs
    -------
    timeseries : str
        npz of (n_rows, n_voxels) arrays per ROI.
    rois, rows : str
        JSON of the ROIs, and of the run, scan and block of every row.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["bold", "mask", "confounds", "events",
                                                      "t_r", "atlas", "atlas_labels"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["timeseries", "rois", "rows"]),
                         name="outputnode")
    denoise = pe.MapNode(Denoise(high_pass=high_pass), name="denoise",
                         iterfield=["bold", "mask", "confounds", "events", "t_r"])
    series = pe.Node(ROITimeseries(discard_seconds=discard_seconds), name="roi_timeseries")
    workflow.connect([
        (inputnode, denoise, [("bold", "bold"), ("mask", "mask"), ("confounds", "confounds"),
                              ("events", "events"), ("t_r", "t_r")]),
        (inputnode, series, [("events", "events"), ("t_r", "t_r"), ("atlas", "atlas"),
                             ("atlas_labels", "atlas_labels")]),
        (denoise, series, [("out_file", "bold")]),
        (series, outputnode, [("timeseries", "timeseries"), ("rois", "rois"), ("rows", "rows")]),
    ])
    return workflow


def init_align_wf(*, high_pass: float = 1.0 / 128, name: str = "align_wf") -> pe.Workflow:
    """HRF-convolved frame activations of every (model, weights) at the compared scans, cleaned
    as the BOLD (confounds, detrend, ``high_pass``).

    Inputs
    ------
    activations, activation_metas : list of str
        Frame-level npz and JSON per (model, weights).
    rows : str
        JSON rows of the ROI time series.
    confounds : list of str
        fMRIPrep confounds per run.

    Outputs
    -------
    activations, activation_metas : list of str
        npz of (n_rows, n_units) per layer and JSON, per (model, weights), in input order.
    slots : list of str
        npz per (model, weights): every stimulus at every block slot (the randomization test's
        features).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["activations", "activation_metas",
                                                      "rows", "confounds"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["activations", "activation_metas",
                                                       "slots"]), name="outputnode")
    align = pe.MapNode(AlignFeatures(high_pass=high_pass), name="align",
                       iterfield=["activations", "meta"])
    workflow.connect([
        (inputnode, align, [("activations", "activations"), ("activation_metas", "meta"),
                            ("rows", "rows"), ("confounds", "confounds")]),
        (align, outputnode, [("activations", "activations"), ("meta", "activation_metas"),
                             ("slots", "slots")]),
    ])
    return workflow
