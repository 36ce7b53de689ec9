"""Layer x ROI similarity."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nnbrain.interfaces.similarity import LayerROISimilarity


def init_similarity_wf(*, n_permutations: int, seed: int, rdm_method: str = "correlation",
                       comparator: str = "spearman", name: str = "similarity_wf") -> pe.Workflow:
    """RSA (Mantel test) and unbiased linear CKA (row permutations) for every layer x ROI.

    Parameters
    ----------
    n_permutations, seed : int
        Stimulus-label permutations, shared across layers of a network (max-statistic FWE).
    rdm_method, comparator : str
    name : str

    Inputs
    ------
    patterns : str
        npz of ROI patterns.
    activations, activation_metas : list of str
        npz and JSON per (model, weights).

    Outputs
    -------
    rsa, cka, nss : str
        TSV tables (nss: neural similarity score, empty without random weights).
    brain_rdms : str
        npz of ROI RDMs.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["patterns", "activations",
                                                      "activation_metas"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["rsa", "cka", "nss", "brain_rdms"]),
                         name="outputnode")
    similarity = pe.Node(LayerROISimilarity(n_permutations=n_permutations, seed=seed,
                                            rdm_method=rdm_method, comparator=comparator),
                         name="similarity")
    workflow.connect([
        (inputnode, similarity, [("patterns", "patterns"), ("activations", "activations"),
                                 ("activation_metas", "activation_metas")]),
        (similarity, outputnode, [("rsa", "rsa"), ("cka", "cka"), ("nss", "nss"),
                                  ("brain_rdms", "brain_rdms")]),
    ])
    return workflow
