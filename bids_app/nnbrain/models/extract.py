"""Layer activations through forward hooks, batched, under ``torch.inference_mode``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Pooling of one layer's output (batch, channels, *positions):
#: ``channelmean`` the mean of each feature map over its positions (space, frequency, time)
#: -> (batch, channels); ``globalmax`` the maximum of each feature map -> (batch, channels);
#: ``flatten`` every unit -> (batch, channels * positions); ``none`` the output as it is
#: (batch, channels, *positions), e.g. to keep the time axis of an audio network.
#: Outputs that are already (batch, units) are unchanged by all four.
POOLING = ("channelmean", "globalmax", "flatten", "none")


def _pool(output: Any, pooling: str) -> Any:
    """Pool one layer's output of shape (batch, ...) (see :data:`POOLING`)."""
    if pooling == "channelmean" and output.ndim > 2:
        return output.flatten(2).mean(dim=2)
    if pooling == "globalmax" and output.ndim > 2:
        return output.flatten(2).amax(dim=2)
    if pooling == "none":
        return output
    if pooling in POOLING:
        return output.flatten(1)
    raise ValueError(f"unknown pooling {pooling!r}; choose from {sorted(POOLING)}")


def extract_activations(
    model: Any,
    stimuli: np.ndarray,
    layers: list[str],
    *,
    pooling: str | Mapping[str, str] = "channelmean",
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Run ``stimuli`` through ``model`` and collect the outputs of ``layers``.

    Parameters
    ----------
    model : torch.nn.Module
        The network (its weights already set).
    stimuli : array of shape (n_stimuli, channels, height, width)
        Preprocessed inputs.
    layers : list of str
        Names of modules (``dict(model.named_modules())`` keys).
    pooling : str or mapping of str to str
        One of :data:`POOLING` for every layer, or a mapping layer -> pooling (every layer of
        ``layers`` must be a key). ``channelmean`` averages conv feature maps over space (one
        value per channel); outputs that are already (batch, units) are kept as they are.
    batch_size : int
        Stimuli per forward pass.
    device : str
        Torch device.

    Returns
    -------
    dict of str to array of shape (n_stimuli, n_units)
        float64 activations per layer, rows in stimulus order (``none`` pooling keeps the
        layer's own shape after the stimulus axis).
    """
    import torch

    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"layers {missing} are not modules of the model; available: "
                         f"{sorted(n for n in modules if n)}")
    if isinstance(pooling, str):
        per_layer = {name: pooling for name in layers}
    else:
        absent = [name for name in layers if name not in pooling]
        if absent:
            raise ValueError(f"no pooling given for layers {absent}")
        per_layer = {name: pooling[name] for name in layers}
    unknown = sorted({p for p in per_layer.values() if p not in POOLING})
    if unknown:
        raise ValueError(f"unknown pooling {unknown[0]!r}; choose from {sorted(POOLING)}")
    collected: dict[str, list[Any]] = {name: [] for name in layers}

    def make_hook(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            # a copy (float64 on the CPU) taken now: in-place ReLUs may change ``output`` later
            collected[name].append(_pool(output, per_layer[name]).to("cpu", torch.float64,
                                                                     copy=True))

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in layers]
    model = model.to(device).eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(stimuli), batch_size):
                batch = torch.as_tensor(stimuli[start:start + batch_size], dtype=torch.float32)
                model(batch.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts).numpy() for name, parts in collected.items()}
