"""Network activations for the stimuli, one node per (model, weights source)."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nnbrain.interfaces.activations import ExtractActivations
from nnbrain.spec import ModelSpec
from nnbrain.utils.bids import bids_label


def init_activations_wf(*, models: tuple[ModelSpec, ...], stimuli: list[str], omp_nthreads: int,
                        cache_dir: str | None = None, allow_custom_code: bool = False,
                        device: str = "cpu", batch_size: int = 64, frames: bool = False,
                        name: str = "activations_wf") -> pe.Workflow:
    """Extract the listed layers of every model x weights source.

    Parameters
    ----------
    models : tuple of ModelSpec
    stimuli : list of str
        Absolute stimulus paths, in stimulus order.
    omp_nthreads : int
        torch threads per node.
    cache_dir : str, optional
        Root of the activation disk cache.
    allow_custom_code : bool
        Allow architectures from the user's Python files.
    device : str
        Torch device of the forward passes (``--device``).
    batch_size : int
        Stimuli per forward pass.
    frames : bool
        Continuous designs: one row per kept frame of every (audio) stimulus instead of one
        per stimulus; the metas give ``FrameRate`` and ``FrameCounts``.
    name : str

    Outputs
    -------
    activations, metas : list of str
        npz (one float32 (n_stimuli, n_units) array per layer, streamed to disk layer by layer)
        and JSON per (model, weights), in spec order.
    """
    workflow = pe.Workflow(name=name)
    sources = [(m, w) for m in models for w in m.weights]
    outputnode = pe.Node(niu.IdentityInterface(fields=["activations", "metas"]), name="outputnode")
    merge_acts = pe.Node(niu.Merge(len(sources)), name="merge_acts")
    merge_metas = pe.Node(niu.Merge(len(sources)), name="merge_metas")
    for i, (model, weights) in enumerate(sources, start=1):
        spec = {**model.to_dict(), "frames": True} if frames else model.to_dict()
        node = pe.Node(ExtractActivations(model_spec=spec, weights=weights.to_dict(),
                                          stimuli=stimuli, n_threads=omp_nthreads,
                                          cache_dir=cache_dir, device=device,
                                          batch_size=batch_size,
                                          allow_custom_code=allow_custom_code),
                       name=f"extract_{bids_label(model.name)}_{bids_label(weights.label)}",
                       n_procs=omp_nthreads)
        workflow.connect([(node, merge_acts, [("activations", f"in{i}")]),
                          (node, merge_metas, [("meta", f"in{i}")])])
    workflow.connect([(merge_acts, outputnode, [("out", "activations")]),
                      (merge_metas, outputnode, [("out", "metas")])])
    return workflow
