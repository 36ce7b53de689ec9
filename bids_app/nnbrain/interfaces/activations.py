"""Layer activations of one model and weight source for the stimuli, streamed to an ``.npz``.

Every layer goes to disk as it is computed (:class:`~nnbrain.models.cache.NpyStream`), is
reduced one layer at a time when the spec asks for it, and the ``.npz`` is assembled member by
member from those files or from cache entries, so memory holds one batch or one layer, never all
layers. Stored activations are float32 (the networks' own precision; PCA and SRP scores are
computed in float64 and stored as float32).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from nnbrain.errors import OutputIOError

LOGGER = logging.getLogger("nnbrain.activations")


def _cache_fields(model_spec: dict, weights: dict, stimuli: list[Path], digest: str | None,
                  cache_dir: Path) -> dict[str, dict]:
    """Per layer, everything that determines its activations (the cache key's fields)."""
    from nnbrain.models.cache import file_sha256

    stimulus_hashes = [[p.name, file_sha256(p, cache_dir)] for p in stimuli]
    return {layer: {"architecture": model_spec["architecture"], "weights_sha256": digest,
                    "seed": weights["seed"], "layer": layer,
                    "pooling": model_spec["layer_pooling"][layer],
                    "reduction": model_spec.get("reduction"),
                    "stimuli": stimulus_hashes, "custom": model_spec.get("custom"),
                    "transform": {"input": model_spec["input"],
                                  "preprocessing": model_spec.get("preprocessing"),
                                  "frames": bool(model_spec.get("frames"))}}
            for layer in model_spec["layers"]}


def network_inputs(stimuli: list[Path], model_spec: dict) -> np.ndarray:
    """The network inputs of the stimuli: one per stimulus, or with ``model_spec["frames"]``
    (continuous designs, audio) one per kept frame of every stimulus, stimulus after stimulus.

    Returns
    -------
    array of shape (n_rows, *input_shape), float32
    """
    from nnbrain.models.stimuli import load_frame_inputs, load_stimuli

    if not model_spec.get("frames"):
        return load_stimuli(stimuli, model_spec)
    return np.concatenate([load_frame_inputs(path, model_spec).inputs
                           for path in stimuli]).astype(np.float32, copy=False)


def _extract(model_spec: dict, weights: dict, stimuli: list[Path], layers: list[str],
             scratch: Path, *, n_threads: int, batch_size: int, device: str,
             allow_custom_code: bool) -> tuple[dict[str, Any], str | None]:
    """Build the network and stream ``layers`` into ``.npy`` files under ``scratch``.

    Returns
    -------
    stored : dict of str to StoredArray
        Layer -> its file, final (after the spec's reduction), shape (n_stimuli, n_units).
    digest : str or None
        SHA-256 of the weights file.
    """
    import torch

    from nnbrain.models.cache import NpyStream, write_npy
    from nnbrain.models.extract import (
        available_memory,
        preflight,
        probe_layers,
        stream_activations,
    )
    from nnbrain.models.loading import load_trained
    from nnbrain.models.reduction import reduce
    from nnbrain.models.zoo import build_from_dict

    torch.set_num_threads(n_threads)
    model = build_from_dict(model_spec, seed=weights["seed"], allow_custom_code=allow_custom_code)
    digest = None
    if weights["file"] is not None:
        digest = load_trained(model, Path(weights["file"]), weights["sha256"])
    pooling = {layer: model_spec["layer_pooling"][layer] for layer in layers}
    inputs = network_inputs(stimuli, model_spec)
    probes = probe_layers(model, inputs[:1], layers, pooling=pooling, device=device)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    reduction = model_spec.get("reduction")
    preflight(model_spec["name"], probes, len(inputs), batch_size=batch_size,
              base_bytes=parameters + inputs.nbytes, available=available_memory(),
              reduction=reduction)
    with contextlib.ExitStack() as stack:
        streams = {layer: stack.enter_context(NpyStream(
            scratch / f"raw{i}.npy", (len(inputs), *probes[layer].pooled_shape)))
            for i, layer in enumerate(layers)}
        stream_activations(model, inputs, layers, {k: s.write for k, s in streams.items()},
                           pooling=pooling, batch_size=batch_size, device=device,
                           seed=weights["seed"] or 0)
    stored = {layer: stream.close() for layer, stream in streams.items()}
    del inputs, model
    if reduction is None:
        return stored, digest
    for i, layer in enumerate(layers):
        raw = np.load(stored[layer].path, mmap_mode="r")
        reduced = reduce(raw, reduction["method"], int(reduction["n_components"]),
                         reduction.get("seed"))
        del raw
        stored[layer].path.unlink()
        stored[layer] = write_npy(scratch / f"reduced{i}.npy", reduced, np.float32)
    return stored, digest


def _assemble(model_spec: dict, weights: dict, stimuli: list[Path], out_file: Path,
              cache: Any, keys: dict[str, str], fields: dict[str, dict],
              **options: Any) -> tuple[dict[str, Any], list[str], str | None]:
    """Compute what the cache lacks, assemble ``out_file``, bundle it into the cache.

    A cached layer whose bytes fail their CRC-32 is discarded and computed (one retry).

    Returns
    -------
    stored : dict of str to StoredArray
        Layer -> its member in ``out_file``.
    computed : list of str
        The layers that were computed.
    digest : str or None
        SHA-256 of the weights file when the network was built.
    """
    from nnbrain.models.cache import assemble_npz

    layers = list(model_spec["layers"])
    digest = None
    with contextlib.ExitStack() as stack:
        for _attempt in range(2):
            found = {layer: cache.lookup(keys[layer]) for layer in layers} if cache else {}
            computed = [layer for layer in layers if found.get(layer) is None]
            if computed:
                scratch = stack.enter_context(tempfile.TemporaryDirectory(
                    dir=out_file.parent, prefix=".scratch-"))
                fresh, digest = _extract(model_spec, weights, stimuli, computed, Path(scratch),
                                         **options)
                found.update(fresh)
            stored, bad = assemble_npz(out_file, {layer: found[layer] for layer in layers})
            if not bad:
                break
            if set(bad) & set(computed) or cache is None:
                raise OutputIOError(f"activations of layers {bad} changed on disk while being "
                                    "written; check the disk and the work directory", out_file)
            for layer in bad:
                cache.discard(keys[layer])
        else:
            raise OutputIOError("cache entries keep failing their checksum; delete the cache",
                                cache.root)
    if cache is not None and computed:
        cache.commit_bundle([keys[layer] for layer in layers],
                            [stored[layer] for layer in layers],
                            [fields[layer] for layer in layers])
    return stored, computed, digest


def write_activations(model_spec: dict, weights: dict, stimuli: list[Path], out_file: Path, *,
                      n_threads: int = 1, cache_dir: Path | None = None,
                      allow_custom_code: bool = False, batch_size: int = 64,
                      device: str = "cpu") -> dict:
    """Build the network, set its weights, run the stimuli; write the activations ``.npz``.

    With ``cache_dir``, each layer's activations are looked up in (and added to) the
    :class:`~nnbrain.models.cache.ActivationCache`; when every layer is cached the network is
    not even built, and when the same request ran before, ``out_file`` is a hard link to its
    cached ``.npz`` (after a CRC-32 check of every layer). A cached layer whose bytes no longer
    match their checksum is deleted and recomputed.

    Parameters
    ----------
    model_spec : dict
        ``ModelSpec.to_dict()``; its ``reduction`` ({method, n_components, seed}) is applied
        to every layer after pooling.
    weights : dict
        ``WeightsSource.to_dict()``.
    stimuli : list of Path
        Stimulus files (images or audio) in stimulus order.
    out_file : Path
        The ``.npz`` to write: one float32 array of shape (n_stimuli, n_units) per layer
        (``none`` pooling: (n_stimuli, *layer_shape)), keyed by module name. Scratch files go
        beside it.
    n_threads : int
        torch intra-op threads.
    cache_dir : Path, optional
        Root of the activation cache.
    allow_custom_code : bool
        Allow building a user's architecture from a Python file (``--allow-custom-code``).
    batch_size : int
        Stimuli per forward pass.
    device : str
        Torch device.

    Returns
    -------
    dict
        Provenance, including ``CacheHits`` (the layers read from the cache), ``Reduction``
        (the spec's, with ``EffectiveComponents`` per layer) and ``Shapes``.
    """
    import torch

    from nnbrain.models.cache import ActivationCache, cache_key, file_sha256

    layers = list(model_spec["layers"])
    out_file = Path(out_file)
    cache = None if cache_dir is None else ActivationCache(cache_dir)
    digest = (file_sha256(Path(weights["file"]), cache_dir)
              if weights["file"] is not None and cache_dir is not None else None)
    keys: dict[str, str] = {}
    fields: dict[str, dict] = {}
    if cache is not None:
        fields = _cache_fields(model_spec, weights, stimuli, digest, cache_dir)
        keys = {layer: cache_key(fields[layer]) for layer in layers}
    if cache is not None and cache.link_bundle([keys[layer] for layer in layers], out_file):
        stored = {layer: cache.lookup(keys[layer]) for layer in layers}
        computed: list[str] = []
    else:
        stored, computed, loaded = _assemble(
            model_spec, weights, stimuli, out_file, cache, keys, fields, n_threads=n_threads,
            batch_size=batch_size, device=device, allow_custom_code=allow_custom_code)
        digest = loaded or digest
    LOGGER.info("%s/%s: %d of %d layers from the cache", model_spec["name"], weights["label"],
                len(layers) - len(computed), len(layers))
    reduction = model_spec.get("reduction")
    return {
        "Architecture": model_spec["architecture"],
        "WeightsSource": weights["kind"],
        "Epoch": weights["epoch"],
        "WeightsFile": None if weights["file"] is None else Path(weights["file"]).name,
        "WeightsSHA256": digest,
        "Seed": weights["seed"],
        "Pooling": model_spec["layer_pooling"],
        "Input": model_spec["input"],
        "Preprocessing": model_spec.get("preprocessing"),
        "Reduction": None if reduction is None else {
            **reduction,
            "EffectiveComponents": {layer: int(stored[layer].shape[-1]) for layer in layers}},
        "Shapes": {layer: list(stored[layer].shape) for layer in layers},
        "Dtype": "float32",
        "SoftwareVersions": {"torch": torch.__version__, "numpy": np.__version__},
        "CacheHits": [layer for layer in layers if layer not in computed],
        **frame_provenance(stimuli, model_spec),
    }


def frame_provenance(stimuli: list[Path], model_spec: dict) -> dict:
    """Frame mode: ``FrameRate`` (frames/s after ``frame_step``) and ``FrameCounts`` (rows of
    each stimulus), from the stimuli's features without the network (cache hits need them
    too); empty for one row per stimulus."""
    from nnbrain.models.stimuli import audio_features, audio_preprocessing

    if not model_spec.get("frames"):
        return {}
    settings = audio_preprocessing(model_spec)
    step = settings.frame_step
    return {"FrameRate": settings.frame_rate / step,
            "FrameCounts": [-(-audio_features(p, settings).shape[1] // step) for p in stimuli]}


class _ExtractActivationsInputSpec(BaseInterfaceInputSpec):
    model_spec = traits.Dict(mandatory=True, desc="ModelSpec.to_dict() of one network")
    weights = traits.Dict(mandatory=True, desc="WeightsSource.to_dict() of one weight source")
    stimuli = traits.List(File(exists=True), mandatory=True, desc="stimulus files, in order")
    n_threads = traits.Int(1, usedefault=True, desc="torch threads")
    batch_size = traits.Int(64, usedefault=True, desc="stimuli per forward pass")
    device = traits.Str("cpu", usedefault=True, desc="torch device (cpu, cuda, cuda:1, ...)")
    cache_dir = traits.Either(None, traits.Str, usedefault=True,
                              desc="activation cache root (None: no disk cache)")
    allow_custom_code = traits.Bool(False, usedefault=True,
                                    desc="allow a user's architecture from a Python file")


class _ExtractActivationsOutputSpec(TraitedSpec):
    activations = File(exists=True, desc="npz: one (n_stimuli, n_units) float32 array per layer")
    meta = File(exists=True, desc="JSON provenance: architecture, weights hash, seed, pooling, "
                                  "reduction")


class ExtractActivations(SimpleInterface):
    """Forward hooks on the listed layers, batched, streamed layer by layer to an ``.npz``."""

    input_spec = _ExtractActivationsInputSpec
    output_spec = _ExtractActivationsOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        out = Path(runtime.cwd) / "activations.npz"
        meta = write_activations(inputs.model_spec, inputs.weights,
                                 [Path(s) for s in inputs.stimuli], out,
                                 n_threads=inputs.n_threads,
                                 cache_dir=Path(inputs.cache_dir) if inputs.cache_dir else None,
                                 allow_custom_code=inputs.allow_custom_code,
                                 batch_size=inputs.batch_size, device=inputs.device)
        meta.update(model=inputs.model_spec["name"], weights=inputs.weights["label"],
                    layers=list(inputs.model_spec["layers"]),
                    stimuli=[Path(s).name for s in inputs.stimuli])
        meta_file = Path(runtime.cwd) / "activations.json"
        meta_file.write_text(json.dumps(meta))
        self._results.update(activations=str(out), meta=str(meta_file))
        return runtime
