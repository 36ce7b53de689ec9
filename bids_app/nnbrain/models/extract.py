"""Layer activations through forward hooks, batched, deterministic, streamed to sinks.

:func:`stream_activations` runs the stimuli in batches under ``torch.inference_mode`` and hands
each layer's pooled batch (float32, on the CPU) to that layer's sink as soon as the hook fires,
so that nothing but one batch is held (the sinks write to disk:
``nnbrain.models.cache.NpyStream``).
:func:`extract_activations` is the in-memory form (preallocated float64 arrays).
:func:`probe_layers` runs one stimulus to learn every layer's shapes, and :func:`preflight`
refuses, before anything runs, a request whose largest layer cannot fit in memory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnbrain.errors import DataError

#: Pooling of one layer's output (batch, channels, *positions):
#: ``channelmean`` the mean of each feature map over its positions (space, frequency, time)
#: -> (batch, channels); ``globalmax`` the maximum of each feature map -> (batch, channels);
#: ``flatten`` every unit -> (batch, channels * positions); ``none`` the output as it is
#: (batch, channels, *positions), e.g. to keep the time axis of an audio network.
#: Outputs that are already (batch, units) are unchanged by all four.
POOLING = ("channelmean", "globalmax", "flatten", "none")
#: Bytes of one stored activation (float32).
ITEMSIZE = 4


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


def resolve_layers(model: Any, layers: list[str],
                   pooling: str | Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Check layer names and pooling; return (layer -> module, layer -> pooling).

    Parameters
    ----------
    model : torch.nn.Module
    layers : list of str
        Names of modules (``dict(model.named_modules())`` keys).
    pooling : str or mapping of str to str
        One of :data:`POOLING` for every layer, or a mapping covering every layer.
    """
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
    return {name: modules[name] for name in layers}, per_layer


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded torch RNGs and deterministic algorithms (warnings where none exist), then restored.

    cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment before CUDA starts
    (set in the container); without it torch warns rather than fails.
    """
    import torch

    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_on, warn_only=was_warn_only)
            torch.backends.cudnn.benchmark = benchmark


def stream_activations(
    model: Any,
    stimuli: np.ndarray,
    layers: list[str],
    sinks: Mapping[str, Callable[[np.ndarray], None]],
    *,
    pooling: str | Mapping[str, str] = "channelmean",
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
) -> None:
    """Run ``stimuli`` through ``model``; hand each layer's pooled batches to its sink, in order.

    Parameters
    ----------
    model : torch.nn.Module
        The network (its weights already set); put in eval mode.
    stimuli : array of shape (n_stimuli, *input_shape)
        Preprocessed inputs (float32).
    layers : list of str
        Names of modules (``dict(model.named_modules())`` keys).
    sinks : mapping of str to callable
        Layer -> function called with each batch's pooled output, an array of shape
        (batch, n_units) (``none`` pooling: (batch, *layer_shape)), float32, owned by the sink.
    pooling : str or mapping of str to str
        See :func:`resolve_layers` and :data:`POOLING`.
    batch_size : int
        Stimuli per forward pass.
    device : str
        Torch device.
    seed : int
        Seed of torch's RNGs during the passes (see :func:`deterministic`).
    """
    import torch

    modules, per_layer = resolve_layers(model, layers, pooling)

    def make_hook(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            # a copy taken now: in-place ReLUs may change ``output`` later
            pooled = _pool(output, per_layer[name]).to("cpu", torch.float32, copy=True)
            sinks[name](pooled.numpy())

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in modules.items()]
    model = model.to(device).eval()
    try:
        with deterministic(seed), torch.inference_mode():
            for start in range(0, len(stimuli), batch_size):
                batch = torch.as_tensor(stimuli[start:start + batch_size], dtype=torch.float32)
                model(batch.to(device))
    finally:
        for handle in handles:
            handle.remove()


class _Rows:
    """A sink filling a preallocated float64 array, allocated at the first batch."""

    def __init__(self, n_rows: int) -> None:
        self.n_rows = n_rows
        self.array: np.ndarray | None = None
        self.filled = 0

    def __call__(self, block: np.ndarray) -> None:
        if self.array is None:
            self.array = np.empty((self.n_rows, *block.shape[1:]), dtype=np.float64)
        self.array[self.filled:self.filled + len(block)] = block
        self.filled += len(block)


def extract_activations(
    model: Any,
    stimuli: np.ndarray,
    layers: list[str],
    *,
    pooling: str | Mapping[str, str] = "channelmean",
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Run ``stimuli`` through ``model`` and collect the outputs of ``layers`` in memory.

    Parameters
    ----------
    model : torch.nn.Module
        The network (its weights already set).
    stimuli : array of shape (n_stimuli, *input_shape)
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
    seed : int
        Seed of torch's RNGs during the passes.

    Returns
    -------
    dict of str to array of shape (n_stimuli, n_units)
        float64 activations per layer (float32 values), rows in stimulus order (``none``
        pooling keeps the layer's own shape after the stimulus axis).
    """
    sinks = {name: _Rows(len(stimuli)) for name in layers}
    stream_activations(model, stimuli, layers, sinks, pooling=pooling, batch_size=batch_size,
                       device=device, seed=seed)
    return {name: np.empty((0,)) if sink.array is None else sink.array
            for name, sink in sinks.items()}


@dataclass(frozen=True)
class LayerProbe:
    """Shapes of one layer's output for one stimulus (without the stimulus axis)."""

    output_shape: tuple[int, ...]
    """The module's output."""
    pooled_shape: tuple[int, ...]
    """After pooling: what is stored per stimulus."""

    @property
    def n_units(self) -> int:
        """Values stored per stimulus."""
        return int(np.prod(self.pooled_shape, dtype=np.int64))


def probe_layers(model: Any, stimulus: np.ndarray, layers: list[str], *,
                 pooling: str | Mapping[str, str] = "channelmean",
                 device: str = "cpu") -> dict[str, LayerProbe]:
    """One forward pass on one stimulus: every layer's output and pooled shapes.

    Parameters
    ----------
    model : torch.nn.Module
    stimulus : array of shape (1, *input_shape)
    layers : list of str
    pooling : str or mapping of str to str
    device : str

    Returns
    -------
    dict of str to LayerProbe
    """
    import torch

    modules, per_layer = resolve_layers(model, layers, pooling)
    shapes: dict[str, LayerProbe] = {}

    def make_hook(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            shapes[name] = LayerProbe(tuple(output.shape[1:]),
                                      tuple(_pool(output, per_layer[name]).shape[1:]))

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in modules.items()]
    model = model.to(device).eval()
    try:
        with torch.inference_mode():
            model(torch.as_tensor(stimulus[:1], dtype=torch.float32).to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: shapes[name] for name in layers}


def available_memory(meminfo: Path = Path("/proc/meminfo"),
                     cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes of memory this process can still get, or ``None`` when unknown.

    ``MemAvailable`` of ``/proc/meminfo`` (the kernel's estimate, page cache included), lowered
    to the cgroup v2 limit's headroom (``memory.max - memory.current``) inside a container;
    without ``/proc/meminfo`` (not Linux), free physical pages from ``sysconf``.
    """
    available = None
    with contextlib.suppress(OSError, ValueError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    if available is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(OSError, ValueError):
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            headroom = int(limit) - int((cgroup / "memory.current").read_text())
            available = headroom if available is None else min(available, headroom)
    return available


def layer_memory(probe: LayerProbe, n_stimuli: int, batch_size: int,
                 reduction: Mapping[str, Any] | None = None) -> int:
    """Bytes one layer needs at its peak.

    The whole layer (``n_stimuli x n_units`` float32: the reduction and every consumer of the
    activations, RDMs, CKA and the derivatives, read one whole layer at a time), plus the larger
    of one batch's temporaries (the module output and its pooled float32 copy) and the
    reduction's working memory (:func:`nnbrain.models.reduction.reduction_memory`).
    """
    from nnbrain.models.reduction import reduction_memory

    whole = n_stimuli * probe.n_units * ITEMSIZE
    output_units = int(np.prod(probe.output_shape, dtype=np.int64))
    batch = min(batch_size, n_stimuli) * (output_units + probe.n_units) * ITEMSIZE
    temporary = batch
    if reduction is not None:
        temporary = max(batch, reduction_memory(reduction["method"], n_stimuli, probe.n_units,
                                                int(reduction["n_components"])))
    return whole + temporary


def _size(n_bytes: float) -> str:
    """Human-readable bytes (powers of 1024).

    >>> _size(3 * 1024 ** 3)
    '3.0 GiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n_bytes) < 1024:
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


def preflight(model_name: str, probes: Mapping[str, LayerProbe], n_stimuli: int, *,
              batch_size: int, base_bytes: int, available: int | None,
              reduction: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Refuse a run whose largest layer cannot fit in memory, before it starts.

    Parameters
    ----------
    model_name : str
        For the message.
    probes : mapping of str to LayerProbe
        From :func:`probe_layers`.
    n_stimuli, batch_size : int
    base_bytes : int
        Memory held throughout (the network's parameters and the preprocessed stimuli).
    available : int or None
        Bytes available (:func:`available_memory`); ``None`` skips the check.
    reduction : mapping, optional
        The spec's ``reduction`` ({method, n_components, seed}).

    Returns
    -------
    dict of str to int
        Bytes of each layer's stored activations (``n_stimuli x n_units x 4``).

    Raises
    ------
    DataError
        Naming the model, the layer, the bytes needed and available, and what to change.
    """
    needs = {name: base_bytes + layer_memory(probe, n_stimuli, batch_size, reduction)
             for name, probe in probes.items()}
    if available is not None and needs:
        layer = max(needs, key=needs.__getitem__)
        if needs[layer] > available:
            probe = probes[layer]
            raise DataError(
                f"model {model_name!r}: layer {layer!r} needs {_size(needs[layer])} of memory "
                f"({n_stimuli} stimuli x {probe.n_units} units x {ITEMSIZE} bytes, plus "
                f"temporaries, the network and the stimuli) but {_size(available)} is "
                "available; pool it with 'channelmean' (or 'globalmax'), add a reduction "
                "(reduction: {method: srp, n_components: 1000, seed: 0}), extract fewer layers, "
                "or run with more memory")
    return {name: n_stimuli * probe.n_units * ITEMSIZE for name, probe in probes.items()}
