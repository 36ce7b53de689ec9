"""Weight sources: trained state_dicts from local files (``weights_only=True``) and seeded random init."""

from __future__ import annotations

import hashlib
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
    """Re-initialise every parameterised module of ``model`` with torch's defaults, seeded.

    The same seed gives bit-identical weights; different seeds give different weights.
    """
    import torch

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    finally:
        torch.random.set_rng_state(generator_state)
