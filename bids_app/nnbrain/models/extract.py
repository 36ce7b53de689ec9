"""Layer activations through forward hooks, batched, under ``torch.inference_mode``."""

from __future__ import annotations

from typing import Any

import numpy as np

POOLING = ("channelmean", "flatten")


def _pool(output: Any, pooling: str) -> Any:
    """Pool one layer's output of shape (batch, ...) to (batch, units)."""
    if pooling == "channelmean" and output.ndim > 2:
        return output.flatten(2).mean(dim=2)
    if pooling in POOLING:
        return output.flatten(1)
    raise ValueError(f"unknown pooling {pooling!r}; choose from {sorted(POOLING)}")


def extract_activations(
    model: Any,
    stimuli: np.ndarray,
    layers: list[str],
    *,
    pooling: str = "channelmean",
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
    pooling : {"channelmean", "flatten"}
        ``channelmean`` averages conv feature maps over space (one value per channel);
        outputs that are already (batch, units) are kept as they are.
    batch_size : int
        Stimuli per forward pass.
    device : str
        Torch device.

    Returns
    -------
    dict of str to array of shape (n_stimuli, n_units)
        float64 activations per layer, rows in stimulus order.
    """
    import torch

    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"layers {missing} are not modules of the model; available: "
                         f"{sorted(n for n in modules if n)}")
    collected: dict[str, list[Any]] = {name: [] for name in layers}

    def make_hook(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            collected[name].append(_pool(output, pooling).to("cpu", torch.float64))

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
