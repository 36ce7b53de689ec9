"""Layer activations of one model and weight source for the stimuli."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


def compute_activations(model_spec: dict, weights: dict, stimuli: list[Path],
                        n_threads: int) -> tuple[dict[str, np.ndarray], dict]:
    """Build the network, set its weights, run the stimuli; return activations and provenance.

    Parameters
    ----------
    model_spec : dict
        ``ModelSpec.to_dict()``.
    weights : dict
        ``WeightsSource.to_dict()``.
    stimuli : list of Path
        Image files in stimulus order.
    n_threads : int
        torch intra-op threads.

    Returns
    -------
    activations : dict of str to array of shape (n_stimuli, n_units)
    provenance : dict
    """
    import torch

    from nnbrain.models.extract import extract_activations
    from nnbrain.models.loading import init_random, load_trained
    from nnbrain.models.transforms import load_images
    from nnbrain.models.zoo import build_architecture, input_shape

    torch.set_num_threads(n_threads)
    model = build_architecture(model_spec["architecture"])
    digest = None
    if weights["file"] is not None:
        digest = load_trained(model, Path(weights["file"]), weights["sha256"])
    else:
        init_random(model, int(weights["seed"]))
    images = load_images(stimuli, input_shape(model_spec["architecture"]))
    acts = extract_activations(model, images, list(model_spec["layers"]),
                               pooling=model_spec["pooling"])
    provenance = {
        "Architecture": model_spec["architecture"],
        "WeightsSource": "trained" if weights["file"] is not None else "random",
        "WeightsFile": None if weights["file"] is None else Path(weights["file"]).name,
        "WeightsSHA256": digest,
        "Seed": weights["seed"],
        "Pooling": model_spec["pooling"],
        "SoftwareVersions": {"torch": torch.__version__},
    }
    return acts, provenance


class _ExtractActivationsInputSpec(BaseInterfaceInputSpec):
    model_spec = traits.Dict(mandatory=True, desc="ModelSpec.to_dict() of one network")
    weights = traits.Dict(mandatory=True, desc="WeightsSource.to_dict() of one weight source")
    stimuli = traits.List(File(exists=True), mandatory=True, desc="stimulus files, in order")
    n_threads = traits.Int(1, usedefault=True, desc="torch threads")


class _ExtractActivationsOutputSpec(TraitedSpec):
    activations = File(exists=True, desc="npz: one (n_stimuli, n_units) array per layer")
    meta = File(exists=True, desc="JSON provenance: architecture, weights hash, seed, pooling")


class ExtractActivations(SimpleInterface):
    """Forward hooks on the listed layers, batched, under ``torch.inference_mode``."""

    input_spec = _ExtractActivationsInputSpec
    output_spec = _ExtractActivationsOutputSpec

    def _run_interface(self, runtime):
        acts, meta = compute_activations(self.inputs.model_spec, self.inputs.weights,
                                         [Path(s) for s in self.inputs.stimuli],
                                         self.inputs.n_threads)
        meta.update(model=self.inputs.model_spec["name"], weights=self.inputs.weights["label"],
                    layers=list(acts), stimuli=[Path(s).name for s in self.inputs.stimuli])
        out = Path(runtime.cwd) / "activations.npz"
        np.savez(out, **acts)
        meta_file = Path(runtime.cwd) / "activations.json"
        meta_file.write_text(json.dumps(meta))
        self._results.update(activations=str(out), meta=str(meta_file))
        return runtime
