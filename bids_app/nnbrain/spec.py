"""The model spec: which networks, weight sources and layers to compare with the brain.

A YAML (or JSON) file validated against ``nnbrain/data/model_spec.schema.json``; relative
paths are resolved against the spec file's directory. Every error names the file, the key path
and what is allowed::

    models:
      - name: alexnet                      # label in file names (made BIDS-safe)
        architecture: torchvision:alexnet  # or a built-in (nnbrain.models.zoo.ZOO), or
                                           # {file: nets/mine.py, class: Net, sha256: ...}
                                           # (custom code: only with --allow-custom-code)
        input: {kind: image, shape: [3, 224, 224]}   # optional for built-in/torchvision
        weights:
          - {label: trained, file: models/alexnet.pt, sha256: <hex>}   # a local state_dict
          - {label: run1, checkpoints: "ckpt/epoch_*.pt"}   # epochs from the file names
          - {label: run2, checkpoints: [a.pt, b.pt], epochs: [0, 5]}
          - {label: random, seeds: [1, 2]}    # -> random1, random2 (``seed: 1`` -> random)
        layers:
          - features.1                        # a module name
          - "classifier.*"                    # a glob over module names (fnmatch)
          - {auto: [Conv2d, Linear]}          # every module of these types
          - {name: classifier.5, pooling: flatten}   # per-layer pooling (overrides a glob)
        pooling: channelmean                  # default: channelmean, globalmax, flatten, none
        preprocessing:                        # image or audio; carried through to_dict()
          image: {resize: 256, crop: 224, mean: [0.485, 0.456, 0.406],
                  std: [0.229, 0.224, 0.225], color: rgb}
        reduction: {method: pca, n_components: 100, seed: 0}   # or srp (seed required)
    measures:                               # optional; see nnbrain.measures (desc-<label>)
      rsa: {measure: rsa, rdm: correlation, comparator: tau-a}
      ckarbf: {measure: cka, kernel: rbf, estimator: unbiased, sigma: 1.0}
      nss: {measure: nss, cka: ckarbf, reference: random}

:func:`load_model_spec` returns concrete :class:`ModelSpec` objects: layer globs and ``auto``
are expanded into module names (in module order), checkpoints into one :class:`WeightsSource`
per epoch (label ``<label>epoch<N>``, sorted by epoch), ``seeds`` into one per seed (label
``<label><seed>``). Model, weights and layer names must stay distinct once made BIDS labels.
:func:`load_measures` returns the spec's similarity measures.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob as globlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any

from nnbrain.errors import DataError, MissingInputError
from nnbrain.measures import Measure
from nnbrain.utils.bids import bids_label

#: Pooling names (kept in sync with nnbrain.models.extract.POOLING, which imports torch lazily).
POOLING = ("channelmean", "globalmax", "flatten", "none")
#: How many names an error message lists before "... and N more".
_LIST_LIMIT = 40


# --------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class WeightsSource:
    """One labelled weight source: a trained file, one checkpoint, or a seeded random init."""

    label: str
    """Label in file names (``weights-<label>``), unique within its model."""
    file: Path | None = None
    """State-dict file (trained or checkpoint); ``None`` for random weights."""
    sha256: str | None = None
    """Expected (spec) or recorded (after :func:`check_weights`) SHA-256 of ``file``."""
    seed: int | None = None
    """``torch.manual_seed`` of a random initialisation."""
    epoch: int | None = None
    """Training epoch of a checkpoint."""
    group: str | None = None
    """The spec entry's label this source was expanded from (``seeds``/``checkpoints``)."""

    @property
    def kind(self) -> str:
        """``trained``, ``checkpoint`` or ``random``."""
        if self.epoch is not None:
            return "checkpoint"
        return "trained" if self.file is not None else "random"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "file": None if self.file is None else str(self.file),
                "sha256": self.sha256, "seed": self.seed, "epoch": self.epoch,
                "kind": self.kind, "group": self.group or self.label}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightsSource:
        return cls(data["label"], file=None if data.get("file") is None else Path(data["file"]),
                   sha256=data.get("sha256"), seed=data.get("seed"), epoch=data.get("epoch"),
                   group=data.get("group"))

    def to_spec(self) -> dict[str, Any]:
        """This source as a spec entry that loads back to an equal source."""
        group = self.group or self.label
        if self.kind == "checkpoint":
            return {"label": group, "checkpoints": [str(self.file)], "epochs": [self.epoch]}
        if self.kind == "trained":
            entry: dict[str, Any] = {"label": self.label, "file": str(self.file)}
            if self.sha256:
                entry["sha256"] = self.sha256
            return entry
        if self.label == group:
            return {"label": self.label, "seed": self.seed}
        return {"label": group, "seeds": [self.seed]}


@dataclass(frozen=True)
class CustomArchitecture:
    """A user's ``torch.nn.Module`` subclass in a local Python file."""

    file: Path
    class_name: str
    sha256: str
    """SHA-256 of ``file`` when the spec was loaded (recorded in the outputs)."""
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "class": self.class_name, "sha256": self.sha256,
                "kwargs": dict(self.kwargs)}


@dataclass(frozen=True)
class ModelSpec:
    """One network of the spec, with concrete layer names and weight sources."""

    name: str
    architecture: str
    """Built-in name, ``torchvision:<name>``, or ``custom:<Class>`` (see ``custom``)."""
    weights: tuple[WeightsSource, ...]
    layers: tuple[str, ...]
    """Module names (``dict(model.named_modules())`` keys), in selection order."""
    pooling: str = "channelmean"
    """Default pooling."""
    layer_pooling: tuple[str, ...] = ()
    """Pooling per layer, aligned with ``layers``; empty means ``pooling`` for all."""
    input_kind: str = ""
    """``image`` or ``audio``; empty: the architecture's declared kind."""
    input_shape: tuple[int, ...] = ()
    """One stimulus: (channels, height, width) or (n_freq, n_frames); empty: declared."""
    custom: CustomArchitecture | None = None
    preprocessing: dict[str, Any] | None = field(default=None, hash=False)
    reduction: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.layer_pooling and len(self.layer_pooling) != len(self.layers):
            raise ValueError("layer_pooling must give one pooling per layer")

    def pooling_of(self, layer: str) -> str:
        """Pooling of ``layer`` (one of ``layers``)."""
        if not self.layer_pooling:
            return self.pooling
        return self.layer_pooling[self.layers.index(layer)]

    @property
    def pooling_map(self) -> dict[str, str]:
        """Layer -> pooling (for ``extract_activations(..., pooling=...)``)."""
        return {layer: self.pooling_of(layer) for layer in self.layers}

    @property
    def layer_labels(self) -> dict[str, str]:
        """Layer -> BIDS label in file names (``layer-<label>``)."""
        return {layer: bids_label(layer) for layer in self.layers}

    def declared_input(self) -> tuple[str, tuple[int, ...]]:
        """(kind, shape) of one stimulus: the spec's ``input`` or the architecture's."""
        if self.input_kind and self.input_shape:
            return self.input_kind, tuple(self.input_shape)
        from nnbrain.models.zoo import architecture_input

        return architecture_input(self.architecture)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form passed to interfaces (absolute paths as strings)."""
        kind, shape = self.declared_input()
        return {"name": self.name, "architecture": self.architecture,
                "weights": [w.to_dict() for w in self.weights], "layers": list(self.layers),
                "pooling": self.pooling, "layer_pooling": self.pooling_map,
                "layer_labels": self.layer_labels,
                "input": {"kind": kind, "shape": list(shape)},
                "custom": None if self.custom is None else self.custom.to_dict(),
                "preprocessing": self.preprocessing, "reduction": self.reduction}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`."""
        custom = data.get("custom")
        layers = tuple(data["layers"])
        layer_pooling = data.get("layer_pooling") or {}
        return cls(
            name=data["name"], architecture=data["architecture"],
            weights=tuple(WeightsSource.from_dict(w) for w in data["weights"]), layers=layers,
            pooling=data.get("pooling", "channelmean"),
            layer_pooling=tuple(layer_pooling[x] for x in layers) if layer_pooling else (),
            input_kind=(data.get("input") or {}).get("kind", ""),
            input_shape=tuple((data.get("input") or {}).get("shape", ())),
            custom=None if not custom else CustomArchitecture(
                Path(custom["file"]), custom["class"], custom["sha256"],
                dict(custom.get("kwargs") or {})),
            preprocessing=data.get("preprocessing"), reduction=data.get("reduction"))

    def to_spec(self) -> dict[str, Any]:
        """This model as a spec entry (concrete layers, explicit input) that loads back equal."""
        kind, shape = self.declared_input()
        architecture: Any = self.architecture
        if self.custom is not None:
            architecture = {"file": str(self.custom.file), "class": self.custom.class_name,
                            "sha256": self.custom.sha256, "kwargs": dict(self.custom.kwargs)}
        entry: dict[str, Any] = {
            "name": self.name, "architecture": architecture,
            "input": {"kind": kind, "shape": list(shape)},
            "weights": [w.to_spec() for w in self.weights],
            "layers": [{"name": x, "pooling": self.pooling_of(x)} for x in self.layers],
            "pooling": self.pooling}
        if self.preprocessing is not None:
            entry["preprocessing"] = self.preprocessing
        if self.reduction is not None:
            entry["reduction"] = self.reduction
        return entry


# --------------------------------------------------------------------------- helpers


def compress_names(names: Sequence[str], limit: int = _LIST_LIMIT) -> str:
    """Names joined by commas, runs of 3+ consecutive numbers shown as ranges.

    >>> compress_names(["conv1", "conv2", "conv3", "fc1", "fc2"])
    'conv1..conv3, fc1, fc2'
    >>> compress_names(["features.0", "features.1", "features.2", "features.3", "avgpool"])
    'features.0..features.3, avgpool'
    """
    items = [{"text": n, "pos": i, "fields": re.split(r"(\d+)", n), "done": False}
             for i, n in enumerate(names)]
    depth = max((len(it["fields"]) // 2 for it in items), default=0)
    for back in range(1, depth + 1):  # vary the last number first, then the one before, ...
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for it in items:
            fields = it["fields"]
            index = len(fields) - 2 * back
            if it["done"] or index < 1 or fields[index] != str(int(fields[index])):
                continue
            template = tuple(fields[:index]) + ("#",) + tuple(fields[index + 1:])
            groups.setdefault(template, []).append(it)
        merged: list[dict[str, Any]] = []
        for template, members in groups.items():
            index = template.index("#")
            members = sorted(members, key=lambda it: int(it["fields"][index]))
            run = [members[0]]
            for it in members[1:] + [None]:
                if it is not None and int(it["fields"][index]) == int(run[-1]["fields"][index]) + 1:
                    run.append(it)
                    continue
                if len(run) >= 3:
                    merged.append({"text": f"{run[0]['text']}..{run[-1]['text']}",
                                   "pos": min(r["pos"] for r in run), "fields": [],
                                   "done": True})
                    for r in run:
                        r["gone"] = True
                run = [it]
        items = [it for it in items if not it.get("gone")] + merged
    texts = [it["text"] for it in sorted(items, key=lambda it: it["pos"])]
    if len(texts) > limit:
        return ", ".join(texts[:limit]) + f", ... ({len(texts) - limit} more)"
    return ", ".join(texts)


def _where(path: Iterable[Any]) -> str:
    """``models[1].layers[3]`` from a JSON path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _at(where: str, text: str) -> str:
    return f"{where}: {text}" if where else text


def _show(value: Any) -> str:
    """A value as the user wrote it, for messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)


def _closest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _resolve(base: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


#: File extensions stripped before reading a checkpoint's epoch from its name.
_CHECKPOINT_SUFFIX = re.compile(r"(\.(pt|pth|tar|ckpt|bin|pkl))+$", re.IGNORECASE)


def epoch_from_name(name: str) -> int | None:
    """The epoch of a checkpoint file: the last number in its name before the extension.

    >>> epoch_from_name("resnet50_seed2_epoch_010.pth.tar")
    10
    >>> epoch_from_name("final.pt") is None
    True
    """
    numbers = re.findall(r"\d+", _CHECKPOINT_SUFFIX.sub("", name))
    return int(numbers[-1]) if numbers else None


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


# --------------------------------------------------------------------------- parsing + schema


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of model specs shipped in ``nnbrain/data/model_spec.schema.json``."""
    from importlib import resources

    return json.loads(resources.files("nnbrain").joinpath("data/model_spec.schema.json")
                      .read_text())


def _parse(path: Path) -> Any:
    """YAML (duplicate keys refused) or, for ``.json`` files, JSON."""
    import yaml

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"cannot be parsed as JSON: {exc.msg} (line {exc.lineno}, column "
                            f"{exc.colno})", path) from exc

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _value in node.value:  # the keys written here (merged keys may repeat)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        loader.flatten_mapping(node)
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                    construct_mapping)
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise DataError(f"cannot be parsed as YAML: {exc.problem}{where}", path) from exc
    except yaml.YAMLError as exc:
        raise DataError(f"cannot be parsed as YAML: {str(exc).splitlines()[0]}", path) from exc


_TYPES = {"array": "a list", "object": "a mapping", "string": "a string",
          "integer": "an integer", "number": "a number", "boolean": "true or false",
          "null": "null"}
#: Which error to report first among errors at the same key path.
_RANK = {"type": 0, "additionalProperties": 1, "required": 2, "oneOf": 3, "anyOf": 4}


def _doc_order(instance: Any, path: Iterable[Any]) -> list[int]:
    """Position of a key path in the document (keys in the order they were written)."""
    key, node = [], instance
    for part in path:
        if isinstance(node, dict):
            keys = list(node)
            key.append(keys.index(part) if part in keys else len(keys))
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            key.append(part)
            node = node[part]
        else:
            key.append(0)
    return key


def _first(errors: Iterable[Any], document: Any) -> Any:
    return min(errors, key=lambda e: (_doc_order(document, e.absolute_path),
                                      _RANK.get(e.validator, 9)))


def _describe(error: Any, document: Any) -> str:
    """One schema error as ``<key path>: <what is wrong and what is allowed>``."""
    where = _where(error.absolute_path)
    value, kind, rule = error.instance, error.validator, error.validator_value
    custom = (error.schema.get("x-messages") or {}) if isinstance(error.schema, dict) else {}
    if kind in custom:
        got = f", got {_show(value)}" if kind in ("type", "pattern", "enum", "minLength") else ""
        return _at(where, custom[kind] + got)
    if kind in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        viable = [errs for errs in branches.values()
                  if not any(e.validator == "type" and not e.relative_path for e in errs)]
        if len(viable) == 1:
            return _describe(_first(viable[0], document), document)
        if not viable:
            types = [e.validator_value for errs in branches.values() for e in errs
                     if e.validator == "type" and not e.relative_path]
            names = [_TYPES.get(t, t) for t in types]
            return _at(where, f"must be {' or '.join(dict.fromkeys(names))}, got {_show(value)}")
    if kind == "type":
        return _at(where, f"must be {_TYPES.get(rule, rule)}, got {_show(value)}")
    if kind == "required":
        missing = next(k for k in rule if k not in value)
        return _at(where, f"missing required key {missing!r}")
    if kind == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = next(k for k in value if k not in allowed)
        return _at(where, f"unknown key {extra!r}{_closest(str(extra), allowed)}; allowed: "
                          f"{', '.join(allowed)}")
    if kind == "enum":
        return _at(where, f"{_show(value)} is not allowed; choose from "
                          f"{', '.join(str(x) for x in rule)}")
    if kind == "minItems":
        return _at(where, "must not be empty" if rule == 1 else
                   f"must have at least {rule} items, got {len(value)}")
    if kind == "maxItems":
        return _at(where, f"must have at most {rule} items, got {len(value)}")
    if kind == "minLength":
        return _at(where, "must not be empty")
    if kind == "minimum":
        return _at(where, f"must be >= {rule}, got {_show(value)}")
    if kind == "exclusiveMinimum":
        return _at(where, f"must be > {rule}, got {_show(value)}")
    if kind == "uniqueItems":
        dup = next(v for k, v in enumerate(value) if v in value[:k])
        return _at(where, f"{_show(dup)} is listed more than once")
    if kind == "dependentRequired":
        key, needs = next((k, d) for k, d in rule.items() if k in value
                          and any(x not in value for x in d))
        return _at(where, f"{key!r} is only allowed together with {needs[0]!r}")
    if kind == "pattern":
        return _at(where, f"{_show(value)} does not match the pattern {rule}")
    return _at(where, error.message)


def validate_document(document: Any, path: Path) -> None:
    """Check a parsed spec against :func:`schema`; raise the first error in document order.

    Raises
    ------
    DataError
        ``<file>: <key path>: <what is wrong>; <what is allowed>``.
    """
    from jsonschema import Draft202012Validator

    errors = list(Draft202012Validator(schema()).iter_errors(document))
    if errors:
        raise DataError(_describe(_first(errors, document), document), path)


# --------------------------------------------------------------------------- semantics


def _check_unique(items: Sequence[tuple[str, str]], where: str, what: str, path: Path) -> None:
    """Refuse names given twice or equal once made BIDS labels; ``items``: (name, origin)."""
    by_name: dict[str, str] = {}
    by_label: dict[str, tuple[str, str]] = {}
    for name, origin in items:
        if name in by_name:
            raise DataError(f"{where}: {what} {name!r} is given twice ({by_name[name]} and "
                            f"{origin}); {what}s must be unique", path)
        by_name[name] = origin
        label = bids_label(name)
        if label in by_label:
            other, other_origin = by_label[label]
            raise DataError(f"{where}: {what}s {other!r} ({other_origin}) and {name!r} ({origin}) "
                            f"both become the label {label!r} in file names; rename or drop "
                            "one", path)
        by_label[label] = (name, origin)


def _checkpoints(entry: Mapping[str, Any], here: str, base: Path,
                 path: Path) -> list[WeightsSource]:
    spec = entry["checkpoints"]
    if isinstance(spec, str):
        pattern = str(_resolve(base, spec))
        files = sorted((Path(p) for p in globlib.glob(pattern, recursive=True)
                        if Path(p).is_file()), key=_natural_key)
        if not files:
            raise MissingInputError(f"{here}.checkpoints: {spec!r} matches no file "
                                    f"(searched {pattern})", path)
    else:
        files = [_resolve(base, f) for f in spec]
        for j, file in enumerate(files):
            if not file.is_file():
                raise MissingInputError(f"{here}.checkpoints[{j}]: checkpoint file {file} not "
                                        "found", path)
    if "epochs" in entry:
        epochs = list(entry["epochs"])
        if len(epochs) != len(files):
            order = " (sorted by name)" if isinstance(spec, str) else ""
            raise DataError(f"{here}.epochs: {len(epochs)} epochs for {len(files)} checkpoint "
                            f"files; give one epoch per file, in the order of the files{order}",
                            path)
    else:
        epochs = []
        for file in files:
            epoch = epoch_from_name(file.name)
            if epoch is None:
                raise DataError(f"{here}.checkpoints: no epoch number in the file name "
                                f"{file.name!r}; name the files like epoch_3.pt or give "
                                "'epochs'", path)
            epochs.append(epoch)
    seen: dict[int, Path] = {}
    for epoch, file in zip(epochs, files):
        if epoch in seen:
            raise DataError(f"{here}: epoch {epoch} is given twice ({seen[epoch].name} and "
                            f"{file.name}); each checkpoint needs its own epoch", path)
        seen[epoch] = file
    label = entry["label"]
    return [WeightsSource(f"{label}epoch{epoch}", file=seen[epoch], epoch=epoch, group=label)
            for epoch in sorted(seen)]


def _parse_weights(entries: list[Mapping[str, Any]], where: str, base: Path,
                   path: Path) -> tuple[WeightsSource, ...]:
    sources: list[WeightsSource] = []
    origins: list[str] = []
    for k, entry in enumerate(entries):
        here = f"{where}[{k}]"
        label = entry["label"]
        if "file" in entry:
            file = _resolve(base, entry["file"])
            if not file.is_file():
                raise MissingInputError(f"{here}.file: weights file {file} not found", path)
            new = [WeightsSource(label, file=file, sha256=entry.get("sha256"), group=label)]
        elif "checkpoints" in entry:
            new = _checkpoints(entry, here, base, path)
        elif "seed" in entry:
            new = [WeightsSource(label, seed=int(entry["seed"]), group=label)]
        else:
            new = [WeightsSource(f"{label}{int(s)}", seed=int(s), group=label)
                   for s in entry["seeds"]]
        sources += new
        origins += [f"weights[{k}]"] * len(new)
    _check_unique([(s.label, o) for s, o in zip(sources, origins)], where, "weights label",
                  path)
    return tuple(sources)


def _arch_name(model: ModelSpec) -> str:
    """The architecture as messages name it."""
    return (model.architecture if model.custom is None
            else f"{model.custom.class_name} ({model.custom.file.name})")


def _structure(model: ModelSpec, allow_custom_code: bool) -> dict[str, Any]:
    """``named_modules()`` of the architecture, built on the meta device (no weights)."""
    from nnbrain.models.zoo import build_from_dict

    description = {"architecture": model.architecture,
                   "custom": None if model.custom is None else model.custom.to_dict()}
    try:
        net = build_from_dict(description, allow_custom_code=allow_custom_code, device="meta")
    except DataError:
        raise
    except Exception:  # noqa: BLE001 - code that cannot build on "meta" builds on the CPU
        net = build_from_dict(description, allow_custom_code=allow_custom_code)
    return dict(net.named_modules())


def _type_names(module: Any) -> list[str]:
    return [c.__name__ for c in type(module).__mro__ if c.__name__ not in ("Module", "object")]


def _resolve_layers(items: list[Any], where: str, modules: dict[str, Any], default: str,
                    arch: str, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Expand names, globs and ``auto`` into (layers, poolings) in selection order."""
    names = [n for n in modules if n]
    hint = f"(run: nnbrain list-layers {path})"
    chosen: dict[str, tuple[str, str, bool]] = {}  # layer -> (pooling, origin, explicit)
    for j, item in enumerate(items):
        here = f"{where}.layers[{j}]"
        if isinstance(item, str):
            item = {"glob": item} if any(c in item for c in "*?[") else {"name": item}
        pooling = item.get("pooling", default)
        if "name" in item:
            if item["name"] not in modules or not item["name"]:
                raise DataError(f"{here}: {item['name']!r} is not a layer of {arch}; available: "
                                f"{compress_names(names)} {hint}", path)
            matched = [item["name"]]
        elif "glob" in item:
            matched = [n for n in names if fnmatchcase(n, item["glob"])]
            if not matched:
                raise DataError(f"{here}: {item['glob']!r} matches no layer of {arch}; "
                                f"available: {compress_names(names)} {hint}", path)
        else:
            present = sorted({t for n in names for t in _type_names(modules[n])})
            public = [t for t in present if not t.startswith("_")]
            for t in item["auto"]:
                if t not in present:
                    raise DataError(f"{here}.auto: no module of type {t!r} in {arch}"
                                    f"{_closest(t, public)}; types present: "
                                    f"{', '.join(public)}", path)
            wanted = set(item["auto"])
            matched = [n for n in names if wanted & set(_type_names(modules[n]))]
        explicit = "name" in item
        for layer in matched:
            if layer in chosen and chosen[layer][0] != pooling:
                old_pooling, origin, old_explicit = chosen[layer]
                if old_explicit or not explicit:
                    raise DataError(f"{here}: {layer!r} is also selected by {origin} with "
                                    f"pooling {old_pooling!r}, here with {pooling!r}; give one "
                                    "pooling per layer (a layer given by name overrides globs "
                                    "and auto listed before it)", path)
            if layer not in chosen or explicit:
                chosen[layer] = (pooling, f"layers[{j}]", explicit)
    _check_unique([(layer, origin) for layer, (_p, origin, _e) in chosen.items()],
                  f"{where}.layers", "layer", path)
    return tuple(chosen), tuple(p for p, _o, _e in chosen.values())


def _check_input(entry: Mapping[str, Any], where: str, kind: str, shape: tuple[int, ...],
                 arch: str, path: Path) -> None:
    """Shape length per kind, and preprocessing consistent with the input."""
    if "input" in entry:
        if kind == "image" and len(shape) != 3:
            raise DataError(f"{where}.input.shape: an image input is [channels, height, width], "
                            f"got {list(shape)}", path)
        if kind == "audio" and len(shape) != 2:
            raise DataError(f"{where}.input.shape: an audio input is [n_freq, n_frames], got "
                            f"{list(shape)}", path)
    prep = entry.get("preprocessing")
    if not prep:
        return
    (prep_kind, options), = prep.items()
    here = f"{where}.preprocessing.{prep_kind}"
    shape_text = "x".join(map(str, shape))
    if prep_kind != kind:
        raise DataError(f"{here}: {arch} takes {kind} input ({shape_text}); give "
                        f"preprocessing.{kind}", path)
    if kind == "audio":
        if "n_mels" in options and options["n_mels"] != shape[0]:
            raise DataError(f"{here}.n_mels: {options['n_mels']} bands, but the network input "
                            f"is {shape[0]} bands x {shape[1]} frames", path)
        if "fmin" in options and "fmax" in options and options["fmin"] >= options["fmax"]:
            raise DataError(f"{here}.fmax: must be above fmin ({options['fmin']}), got "
                            f"{options['fmax']}", path)
        return
    if "mean" in options and "std" in options and len(options["mean"]) != len(options["std"]):
        raise DataError(f"{here}.std: {len(options['std'])} values but mean has "
                        f"{len(options['mean'])}; give one per channel", path)
    for key in ("crop", "resize"):
        size = options.get(key)
        if size is None or (key == "resize" and isinstance(size, int)):
            continue  # an integer resize sets the shorter side only
        h, w = (size, size) if isinstance(size, int) else size
        if (h, w) != tuple(shape[1:]):
            raise DataError(f"{here}.{key}: gives {h}x{w} images but the network input is "
                            f"{shape_text}; {key} to {shape[1]}x{shape[2]} or declare input: "
                            f"{{kind: image, shape: [{shape[0]}, {h}, {w}]}}", path)
        break  # the crop, when given, decides the final size


def _parse_model(entry: Mapping[str, Any], i: int, base: Path, path: Path,
                 allow_custom_code: bool) -> ModelSpec:
    from nnbrain.models.loading import sha256_file
    from nnbrain.models.zoo import TORCHVISION_PREFIX, ZOO, architecture_input, torchvision_models

    where = f"models[{i}]"
    arch = entry["architecture"]
    custom = None
    if isinstance(arch, dict):
        file = _resolve(base, arch["file"])
        if not allow_custom_code:
            raise DataError(f"{where}.architecture: a custom architecture runs the Python code "
                            f"in {file}; pass --allow-custom-code to allow it (only for code "
                            "you trust)", path)
        if not file.is_file():
            raise MissingInputError(f"{where}.architecture.file: {file} not found", path)
        digest = sha256_file(file)
        if "sha256" in arch and arch["sha256"].lower() != digest:
            raise DataError(f"{where}.architecture.sha256: {file.name} has SHA-256 {digest}, the "
                            f"spec expects {arch['sha256']}; the file changed or the spec names "
                            "the wrong file", path)
        if "input" not in entry:
            raise DataError(f"{where}: missing required key 'input' (a custom architecture "
                            "declares its input, e.g. input: {kind: image, shape: [3, 224, "
                            "224]})", path)
        custom = CustomArchitecture(file, arch["class"], digest, dict(arch.get("kwargs", {})))
        name = f"custom:{arch['class']}"
    else:
        name = arch
        try:
            declared = architecture_input(arch)
        except ValueError:
            known = list(ZOO)
            if arch.startswith(TORCHVISION_PREFIX):
                known = [TORCHVISION_PREFIX + n for n in torchvision_models()]
            raise DataError(f"{where}.architecture: {arch!r} is not available"
                            f"{_closest(arch, known)}; choose a built-in "
                            f"({', '.join(sorted(ZOO))}), '{TORCHVISION_PREFIX}<name>' (a "
                            "torchvision classification model) or a custom {file, class}",
                            path) from None
    if "input" in entry:
        kind, shape = entry["input"]["kind"], tuple(entry["input"]["shape"])
    else:
        kind, shape = declared
    model = ModelSpec(name=str(entry["name"]), architecture=name, weights=(), layers=(),
                      pooling=entry.get("pooling", "channelmean"), input_kind=kind,
                      input_shape=shape, custom=custom,
                      preprocessing=entry.get("preprocessing"),
                      reduction=entry.get("reduction"))
    _check_input(entry, where, kind, shape, _arch_name(model), path)
    weights = _parse_weights(entry["weights"], f"{where}.weights", base, path)
    modules = _structure(model, allow_custom_code)
    layers, poolings = _resolve_layers(entry["layers"], where, modules, model.pooling,
                                       _arch_name(model), path)
    return dataclasses.replace(model, weights=weights, layers=layers, layer_pooling=poolings)


def load_model_spec(path: Path, *, allow_custom_code: bool = False) -> tuple[ModelSpec, ...]:
    """Read, validate and resolve a model spec (YAML, or JSON for ``.json`` files).

    Builds each architecture on torch's meta device (no weights) to expand layer globs and
    ``auto``; runs a custom architecture's code only when ``allow_custom_code``.

    Raises
    ------
    MissingInputError
        The spec, a weights/checkpoint file or a custom architecture file does not exist
        (exit 66).
    DataError
        The content is invalid; the message names the key path and what is allowed (exit 65).
    """
    if not path.is_file():
        raise MissingInputError("model spec not found; pass an existing YAML/JSON file to "
                                "--model-spec", path)
    try:
        document = _parse(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot be parsed: not UTF-8 text ({exc.reason})", path) from exc
    validate_document(document, path)
    models = tuple(_parse_model(entry, i, path.parent, path, allow_custom_code)
                   for i, entry in enumerate(document["models"]))
    _check_unique([(m.name, f"models[{i}]") for i, m in enumerate(models)], "models",
                  "model name", path)
    return models


def load_measures(path: Path, models: tuple[ModelSpec, ...],
                  design: str = "event") -> tuple[Measure, ...]:
    """The similarity measures of a spec (:mod:`nnbrain.measures`), checked against its models.

    Parameters
    ----------
    path : Path
        The spec file (already loaded by :func:`load_model_spec`).
    models : tuple of ModelSpec
        Its models, whose random weight sources an nss ``reference`` must name.
    design : {"event", "continuous"}
        A continuous design has no stimulus RDMs: rsa measures are dropped from the defaults
        and refused when the spec lists them.

    The default nss measure is dropped when no model has random-init weights; a listed one is
    refused then.

    Raises
    ------
    DataError
        Invalid measures; the message names the key path (exit 65).
    """
    from nnbrain.measures import check_references, measures_from_document

    document = _parse(path)
    validate_document(document, path)
    measures = measures_from_document(document, path, design)
    if document.get("measures") is None and not any(w.kind == "random" for m in models
                                                    for w in m.weights):
        measures = tuple(m for m in measures if m.kind != "nss")
    check_references(measures, {m.name: [(w.label, w.group or w.label, w.kind)
                                         for w in m.weights] for m in models}, path)
    return measures


def check_layers(models: tuple[ModelSpec, ...], path: Path, *,
                 allow_custom_code: bool = False) -> tuple[ModelSpec, ...]:
    """Refuse layer names that are not modules of the architecture; return ``models``.

    :func:`load_model_spec` already expands and checks layers; this re-checks specs built
    in code (e.g. from :meth:`ModelSpec.from_dict`).
    """
    for i, model in enumerate(models):
        modules = _structure(model, allow_custom_code)
        names = [n for n in modules if n]
        for j, layer in enumerate(model.layers):
            if layer not in modules or not layer:
                raise DataError(
                    f"models[{i}].layers[{j}]: {layer!r} is not a layer of {_arch_name(model)}; "
                    f"available: {compress_names(names)} (run: nnbrain list-layers {path})",
                    path)
        _check_unique([(layer, f"layers[{j}]") for j, layer in enumerate(model.layers)],
                      f"models[{i}].layers", "layer", path)
    return models


def check_weights(models: tuple[ModelSpec, ...], *,
                  allow_custom_code: bool = False) -> tuple[ModelSpec, ...]:
    """Load every trained and checkpoint file into its architecture once (checkpoints in epoch
    order), before anything is written; return ``models`` with each file's SHA-256 recorded.

    Checks the SHA-256 given in the spec and refuses unsafe or ill-fitting files
    (see :func:`nnbrain.models.loading.load_trained`; errors name the weights file).
    """
    from nnbrain.models.loading import load_trained
    from nnbrain.models.zoo import build_from_dict

    checked = []
    for model in models:
        files = sorted((w for w in model.weights if w.file is not None),
                       key=lambda w: (w.group or w.label, w.epoch or 0))
        digests: dict[str, str] = {}
        if files:
            net = build_from_dict({"architecture": model.architecture,
                                   "custom": None if model.custom is None
                                   else model.custom.to_dict()},
                                  allow_custom_code=allow_custom_code)
            for source in files:
                digests[source.label] = load_trained(net, source.file, source.sha256)
        checked.append(dataclasses.replace(model, weights=tuple(
            dataclasses.replace(w, sha256=digests[w.label]) if w.label in digests else w
            for w in model.weights)))
    return tuple(checked)
