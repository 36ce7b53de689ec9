"""Single-trial GLM per run."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nnbrain.interfaces.preprocess import SingleTrialBetas


def init_preprocess_wf(*, high_pass: float = 1.0 / 128, name: str = "preprocess_wf") -> pe.Workflow:
    """Single-trial betas of every run, confounds and cosine drifts in the same GLM.

    Parameters
    ----------
    high_pass : float
        High-pass cutoff in Hz of the GLM's cosine drift model.
    name : str

    Inputs
    ------
    bold, mask, confounds, events : list of str
        One entry per run.
    t_r : list of float
        Repetition time per run.

    Outputs
    -------
    betas : list of str
        4D single-trial beta images per run.
    trials : list of str
        JSON lists of stim_file per beta volume, per run.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["bold", "mask", "confounds", "events", "t_r"]),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials"]), name="outputnode")
    betas = pe.MapNode(SingleTrialBetas(high_pass=high_pass), name="betas",
                       iterfield=["bold", "mask", "confounds", "events", "t_r"])
    workflow.connect([
        (inputnode, betas, [("bold", "bold"), ("mask", "mask"), ("confounds", "confounds"),
                            ("events", "events"), ("t_r", "t_r")]),
        (betas, outputnode, [("betas", "betas"), ("trials", "trials")]),
    ])
    return workflow
