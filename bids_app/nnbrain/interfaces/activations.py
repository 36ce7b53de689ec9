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
                        n_threads: int, cache_dir: Path | None = None,
                        allow_custom_code: bool = False
                        ) -> tuple[dict[str, np.ndarray], dict]:
    """Build the network, set its weights, run the stimuli; return activations and provenance.

    With ``cache_dir``, each layer's activations are looked up in (and added to) the
    :class:`~nnbrain.models.cache.ActivationCache`; when every layer is cached the network is
    not even built.

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
    cache_dir : Path, optional
        Root of the activation cache.
    allow_custom_code : bool
        Allow building a user's architecture from a Python file (``--allow-custom-code``).

    Returns
    -------
    activations : dict of str to array of shape (n_stimuli, n_units)
    provenance : dict
        Includes ``CacheHits``: the layers read from the cache.
    """
    import torch

    from nnbrain.models.cache import ActivationCache, cache_key, file_sha256
    from nnbrain.models.extract import extract_activations
    from nnbrain.errors import DataError
    from nnbrain.models.loading import load_trained
    from nnbrain.models.transforms import load_images
    from nnbrain.models.zoo import build_from_dict

    architecture = model_spec["architecture"]
    kind, shape = model_spec["input"]["kind"], tuple(model_spec["input"]["shape"])
    if kind != "image":
        raise DataError(f"model {model_spec['name']!r} takes {kind} input; event-related "
                        "extraction handles image stimuli in this version")
    digest = (file_sha256(Path(weights["file"]), cache_dir)
              if weights["file"] is not None and cache_dir is not None else None)
    layers = list(model_spec["layers"])
    keys: dict[str, str] = {}
    fields: dict[str, dict] = {}
    cached: dict[str, np.ndarray] = {}
    cache = ActivationCache(cache_dir) if cache_dir is not None else None
    if cache is not None:
        stimulus_hashes = [[p.name, file_sha256(p, cache_dir)] for p in stimuli]
        for layer in layers:
            fields[layer] = {"architecture": architecture, "weights_sha256": digest,
                             "seed": weights["seed"], "layer": layer,
                             "pooling": model_spec["layer_pooling"][layer],
                             "stimuli": stimulus_hashes, "custom": model_spec.get("custom"),
                             "transform": {"input": model_spec["input"],
                                           "preprocessing": model_spec.get("preprocessing")}}
            keys[layer] = cache_key(fields[layer])
            hit = cache.get(keys[layer])
            if hit is not None:
                cached[layer] = hit
    missing = [layer for layer in layers if layer not in cached]
    if missing:
        torch.set_num_threads(n_threads)
        model = build_from_dict(model_spec, seed=weights["seed"],
                                allow_custom_code=allow_custom_code)
        if weights["file"] is not None:
            # load_trained hashes the file; reuse that hash when no cache computed one
            digest = load_trained(model, Path(weights["file"]), weights["sha256"])
        images = load_images(stimuli, shape)
        computed = extract_activations(model, images, missing,
                                       pooling={k: model_spec["layer_pooling"][k]
                                                for k in missing})
        for layer, array in computed.items():
            if cache is not None:
                cache.put(keys[layer], array, fields[layer])
            cached[layer] = array
    provenance = {
        "Architecture": architecture,
        "WeightsSource": weights["kind"],
        "Epoch": weights["epoch"],
        "WeightsFile": None if weights["file"] is None else Path(weights["file"]).name,
        "WeightsSHA256": digest,
        "Seed": weights["seed"],
        "Pooling": model_spec["layer_pooling"],
        "SoftwareVersions": {"torch": torch.__version__},
        "CacheHits": [layer for layer in layers if layer not in missing],
    }
    return {layer: cached[layer] for layer in layers}, provenance


class _ExtractActivationsInputSpec(BaseInterfaceInputSpec):
    model_spec = traits.Dict(mandatory=True, desc="ModelSpec.to_dict() of one network")
    weights = traits.Dict(mandatory=True, desc="WeightsSource.to_dict() of one weight source")
    stimuli = traits.List(File(exists=True), mandatory=True, desc="stimulus files, in order")
    n_threads = traits.Int(1, usedefault=True, desc="torch threads")
    cache_dir = traits.Either(None, traits.Str, usedefault=True,
                              desc="activation cache root (None: no disk cache)")
    allow_custom_code = traits.Bool(False, usedefault=True,
                                    desc="allow a user's architecture from a Python file")


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
                                         self.inputs.n_threads,
                                         Path(self.inputs.cache_dir)
                                         if self.inputs.cache_dir else None,
                                         self.inputs.allow_custom_code)
        meta.update(model=self.inputs.model_spec["name"], weights=self.inputs.weights["label"],
                    layers=list(acts), stimuli=[Path(s).name for s in self.inputs.stimuli])
        out = Path(runtime.cwd) / "activations.npz"
        np.savez(out, **acts)
        meta_file = Path(runtime.cwd) / "activations.json"
        meta_file.write_text(json.dumps(meta))
        self._results.update(activations=str(out), meta=str(meta_file))
        return runtime
