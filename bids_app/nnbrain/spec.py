"""The model spec: which networks, weight sources and layers to compare with the brain.

First version (issue 15 grows it into a JSON-Schema-validated format)::

    models:
      - name: digitcnn              # label in file names (made BIDS-safe)
        architecture: digitcnn      # a name in nnbrain.models.zoo.ZOO
        weights:
          - {label: trained, file: models/digitcnn_trained.pt, sha256: <hex>}
          - {label: random, seed: 1}
        layers: [conv1, conv2, fc1]
        pooling: channelmean        # or flatten

Relative weight paths are resolved against the spec file's directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnbrain.errors import DataError, MissingInputError


@dataclass(frozen=True)
class WeightsSource:
    """One labelled weight source: a trained file or a seeded random initialisation."""

    label: str
    file: Path | None = None
    sha256: str | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "file": None if self.file is None else str(self.file),
                "sha256": self.sha256, "seed": self.seed}


@dataclass(frozen=True)
class ModelSpec:
    """One network of the spec."""

    name: str
    architecture: str
    weights: tuple[WeightsSource, ...]
    layers: tuple[str, ...]
    pooling: str = "channelmean"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "architecture": self.architecture,
                "weights": [w.to_dict() for w in self.weights], "layers": list(self.layers),
                "pooling": self.pooling}


def _require(entry: dict, key: str, where: str, path: Path) -> Any:
    if key not in entry:
        raise DataError(f"{where}: missing required key '{key}'", path)
    return entry[key]


def _parse_weights(entries: Any, where: str, base: Path, path: Path) -> tuple[WeightsSource, ...]:
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{where}: must be a non-empty list of weight sources", path)
    sources = []
    for i, w in enumerate(entries):
        here = f"{where}[{i}]"
        if not isinstance(w, dict):
            raise DataError(f"{here}: must be a mapping with 'label' and 'file' or 'seed'", path)
        label = str(_require(w, "label", here, path))
        if ("file" in w) == ("seed" in w):
            raise DataError(f"{here}: give exactly one of 'file' (trained) or 'seed' (random)", path)
        if "file" in w:
            file = Path(w["file"])
            file = file if file.is_absolute() else base / file
            if not file.is_file():
                raise MissingInputError(f"{here}.file: weights file {file} not found", path)
            sha = w.get("sha256")
            if sha is not None and not (isinstance(sha, str)
                                        and re.fullmatch(r"[0-9a-fA-F]{64}", sha)):
                raise DataError(f"{here}.sha256: must be a quoted string of 64 hex digits, got "
                                f"{sha!r}", path)
            sources.append(WeightsSource(label, file=file, sha256=sha))
        else:
            if not isinstance(w["seed"], int) or isinstance(w["seed"], bool):
                raise DataError(f"{here}.seed: must be an integer, got {w['seed']!r}", path)
            sources.append(WeightsSource(label, seed=w["seed"]))
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        raise DataError(f"{where}: weight labels must be unique, got {labels}", path)
    return tuple(sources)


def load_model_spec(path: Path) -> tuple[ModelSpec, ...]:
    """Read and check a model spec (YAML or JSON).

    Raises
    ------
    MissingInputError
        The spec or a weights file does not exist (exit 66).
    DataError
        The content is invalid; the message names the key path (exit 65).
    """
    import yaml

    from nnbrain.models.extract import POOLING
    from nnbrain.models.zoo import ZOO

    if not path.is_file():
        raise MissingInputError("model spec not found; pass an existing YAML/JSON file to "
                                "--model-spec", path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot be parsed: {str(exc).splitlines()[0]}", path) from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or not data["models"]:
        raise DataError("must be a mapping with a non-empty 'models' list", path)
    models = []
    for i, m in enumerate(data["models"]):
        where = f"models[{i}]"
        if not isinstance(m, dict):
            raise DataError(f"{where}: must be a mapping", path)
        name = str(_require(m, "name", where, path))
        arch = str(_require(m, "architecture", where, path))
        if arch not in ZOO:
            raise DataError(f"{where}.architecture: {arch!r} is not available; choose from "
                            f"{sorted(ZOO)}", path)
        layers = _require(m, "layers", where, path)
        if not isinstance(layers, list) or not layers:
            raise DataError(f"{where}.layers: must be a non-empty list of layer names", path)
        pooling = m.get("pooling", "channelmean")
        if pooling not in POOLING:
            raise DataError(f"{where}.pooling: {pooling!r} is not one of {list(POOLING)}", path)
        weights = _parse_weights(_require(m, "weights", where, path), f"{where}.weights",
                                 path.parent, path)
        models.append(ModelSpec(name, arch, weights, tuple(str(x) for x in layers), pooling))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise DataError(f"models: names must be unique, got {names}", path)
    return tuple(models)


def check_layers(models: tuple[ModelSpec, ...], path: Path) -> None:
    """Refuse layer names that are not modules of the architecture (builds each network)."""
    from nnbrain.models.zoo import build_architecture

    for i, m in enumerate(models):
        available = [n for n, _ in build_architecture(m.architecture).named_modules() if n]
        for j, layer in enumerate(m.layers):
            if layer not in available:
                raise DataError(
                    f"models[{i}].layers[{j}]: {layer!r} is not a layer of {m.architecture}; "
                    f"available: {', '.join(available)} (run: nnbrain list-layers {path})", path)


def check_weights(models: tuple[ModelSpec, ...]) -> None:
    """Load every trained weights file into its architecture once, before anything is written.

    Checks the SHA-256 given in the spec and refuses unsafe or ill-fitting files
    (see :func:`nnbrain.models.loading.load_trained`).
    """
    from nnbrain.models.loading import load_trained
    from nnbrain.models.zoo import build_architecture

    for m in models:
        for w in m.weights:
            if w.file is not None:
                load_trained(build_architecture(m.architecture), w.file, w.sha256)
