"""Layer x ROI similarity."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nnbrain.interfaces.similarity import LayerROISimilarity
from nnbrain.measures import Measure


def init_similarity_wf(*, measures: tuple[Measure, ...], weight_sources: list[dict], seed: int,
                       continuous: bool = False, name: str = "similarity_wf") -> pe.Workflow:
    """Every measure of the model spec for every layer x ROI.

    Parameters
    ----------
    measures : tuple of Measure
        RSA (Mantel test), CKA (row permutations) and neural similarity score measures, with
        their permutation and bootstrap counts resolved.
    weight_sources : list of dict
        ``model``, ``weights``, ``kind`` and ``group`` of every weight source (the nss
        reference is chosen among them).
    seed : int
        Seed of the permutations (shared across the layers of a network: max-statistic FWE)
        and of the bootstrap samples over stimuli.
    continuous : bool
        Rows are scans of a continuous design (inputs ``rows``, ``slots``): stimuli are
        re-assigned to the block slots for the tests, whole blocks resampled for the CIs.
    name : str

    Inputs
    ------
    patterns : str
        npz of ROI patterns.
    activations, activation_metas : list of str
        npz and JSON per (model, weights).
    rows, slots : str, list of str
        ``continuous`` only: JSON rows of the ROI time series, and every stimulus's features
        at every block slot per (model, weights) (the randomization test).

    Outputs
    -------
    tables : list of str
        One TSV per measure, named ``<label>.tsv``, in spec order.
    brain_rdms : str
        npz of ROI RDMs (keys ``<rdm method>/<ROI>``).
    """
    workflow = pe.Workflow(name=name)
    fields = ["patterns", "activations", "activation_metas"] + (["rows", "slots"] if continuous
                                                                 else [])
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["tables", "brain_rdms"]),
                         name="outputnode")
    similarity = pe.Node(LayerROISimilarity(measures=[m.to_dict() for m in measures],
                                            weight_sources=weight_sources, seed=seed),
                         name="similarity")
    workflow.connect([
        (inputnode, similarity, [(f, f) for f in fields]),
        (similarity, outputnode, [("tables", "tables"), ("brain_rdms", "brain_rdms")]),
    ])
    return workflow
