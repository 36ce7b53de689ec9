"""Weight sources: trained state_dicts from local files (``weights_only=True``), checkpoints in
epoch order, and seeded random init."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nnbrain.errors import DataError, MissingInputError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    """First line of an exception message, or its type name when the message is empty."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_trained(model: Any, path: Path, expected_sha256: str | None = None) -> str:
    """Load a state_dict into ``model`` safely; return the file's SHA-256.

    ``torch.load(..., weights_only=True)`` refuses pickles that would execute code.

    Raises
    ------
    MissingInputError
        The file does not exist.
    DataError
        Hash mismatch, unsafe or non-state_dict content, or keys/shapes that do not fit.
    """
    import torch

    if not path.is_file():
        raise MissingInputError("weights file not found; check the path in the model spec", path)
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise DataError(
            f"SHA-256 is {digest}, the model spec expects {expected_sha256}; "
            "the file changed or the spec names the wrong file",
            path,
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on junk (KeyError, IndexError, ...)
        raise DataError(
            "not a loadable state_dict (refused by torch.load(weights_only=True): "
            f"{_first_line(exc)}); save weights with torch.save(model.state_dict(), f)",
            path,
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError("is not a state_dict (a dict of tensors); save model.state_dict()", path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(
            f"weights do not fit the architecture: {_first_line(exc)}", path
        ) from exc
    return digest


def init_random(model: Any, seed: int) -> None:
    """Re-initialise ``model`` with its own initialisation scheme, seeded.

    A model that defines ``init_weights()`` (nnbrain's DeepCluster AlexNet: DeepCluster's
    normal init) gets that; otherwise every parameterised module runs torch's default
    ``reset_parameters()`` in module order. Modules whose parameters are all frozen
    (``requires_grad=False``, e.g. DeepCluster's fixed Sobel front end) are left unchanged.
    The same seed gives bit-identical weights; different seeds give different weights; the
    global RNG state is restored afterwards.

    For torchvision models, whose constructors use their own schemes (e.g. ResNet's Kaiming
    normal), :func:`nnbrain.models.zoo.build_architecture` with ``seed=`` reproduces the
    constructor's initialisation instead.
    """
    import torch

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        if callable(getattr(model, "init_weights", None)):
            model.init_weights()
            return
        for module in model.modules():
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                continue
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    finally:
        torch.random.set_rng_state(generator_state)


def iter_checkpoints(model: Any, checkpoints: Iterable[tuple[int, Path, str | None]],
                     ) -> Iterator[tuple[int, Path, str]]:
    """Load each checkpoint into ``model`` in epoch order; yield after each load.

    Parameters
    ----------
    model : torch.nn.Module
        Receives each state_dict in turn (see :func:`load_trained`).
    checkpoints : iterable of (epoch, path, expected SHA-256 or None)
        In any order; loaded sorted by epoch.

    Yields
    ------
    epoch : int
    path : Path
    sha256 : str
        The file's SHA-256; ``model`` holds that checkpoint's weights until the next step.

    Raises
    ------
    DataError
        Two checkpoints share an epoch, or a file is refused by :func:`load_trained`.
    """
    ordered = sorted(checkpoints, key=lambda item: item[0])
    for (a, path_a, _), (b, path_b, _) in zip(ordered, ordered[1:]):
        if a == b:
            raise DataError(f"epoch {a} is given twice (also for {path_a}); give each checkpoint "
                            "its own epoch", path_b)
    for epoch, path, expected in ordered:
        yield epoch, path, load_trained(model, path, expected)
