"""ROI patterns from single-trial betas."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nnbrain.interfaces.roi import ROIPatterns


def init_roi_wf(*, stimuli: list[str], name: str = "roi_wf") -> pe.Workflow:
    """Average single-trial betas per stimulus within each atlas ROI.

    Parameters
    ----------
    stimuli : list of str
        Stimulus names (``stim_file`` values), the row order of every output.
    name : str

    Inputs
    ------
    betas, trials : list of str
        Per run: 4D beta image and JSON list of stim_file per volume.
    atlas, atlas_labels : str
        dseg NIfTI and its TSV.

    Outputs
    -------
    patterns : str
        npz of (n_stimuli, n_voxels) arrays per ROI.
    rois : str
        JSON of ROI names, indices and voxel counts.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "atlas", "atlas_labels"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["patterns", "rois"]), name="outputnode")
    roi_patterns = pe.Node(ROIPatterns(stimuli=stimuli), name="roi_patterns")
    workflow.connect([
        (inputnode, roi_patterns, [("betas", "betas"), ("trials", "trials"), ("atlas", "atlas"),
                                   ("atlas_labels", "atlas_labels")]),
        (roi_patterns, outputnode, [("patterns", "patterns"), ("rois", "rois")]),
    ])
    return workflow
