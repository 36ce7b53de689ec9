"""Nipype input specs of nnbrain's interfaces are documented; DerivativeWriter follows the spec."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
from pathlib import Path

import numpy as np
import pytest
from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, traits

import nnbrain.interfaces
from nnbrain.errors import SpecViolation
from nnbrain.interfaces.bids import DerivativeWriter

INHERITED = set(BaseInterfaceInputSpec().trait_names()) | set(
    BaseInterfaceInputSpec().copyable_trait_names())


def _interfaces() -> list[type]:
    found = []
    for info in pkgutil.iter_modules(nnbrain.interfaces.__path__):
        module = importlib.import_module(f"nnbrain.interfaces.{info.name}")
        for _name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, SimpleInterface) and obj.__module__ == module.__name__:
                found.append(obj)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__name__}")


def _trait_problems(spec_class: type) -> list[str]:
    spec = spec_class()
    problems = []
    for name in spec.copyable_trait_names():
        if name in INHERITED:
            continue
        trait = spec.trait(name)
        if not (isinstance(trait.desc, str) and trait.desc.strip()):
            problems.append(f"{name}: no desc")
        if not (trait.mandatory or trait.usedefault):
            problems.append(f"{name}: neither mandatory nor usedefault")
    return problems


INTERFACES = _interfaces()


def test_discovery_finds_the_interfaces():
    names = {c.__name__ for c in INTERFACES}
    assert {"ExtractActivations", "SubjectDerivativesSink", "ModelDerivativesSink",
            "GroupSimilarity", "Denoise", "SingleTrialBetas", "ROIPatterns",
            "LayerROISimilarity"} <= names


def test_checker_flags_bad_specs():
    class Bad(BaseInterfaceInputSpec):
        undocumented = traits.Int(mandatory=True)
        optional = traits.Int(desc="neither mandatory nor defaulted")
        fine = traits.Int(3, usedefault=True, desc="ok")

    assert sorted(_trait_problems(Bad)) == ["optional: neither mandatory nor usedefault",
                                            "undocumented: no desc"]


@pytest.mark.parametrize("interface", INTERFACES, ids=lambda c: c.__name__)
def test_input_traits_documented_and_required_or_defaulted(interface):
    spec = interface.input_spec()
    own = [n for n in spec.copyable_trait_names() if n not in INHERITED]
    assert own, f"{interface.__name__} has no inputs"
    assert _trait_problems(interface.input_spec) == []


@pytest.mark.parametrize("interface", INTERFACES, ids=lambda c: c.__name__)
def test_output_traits_documented(interface):
    spec = interface.output_spec()
    names = spec.copyable_trait_names()
    assert names
    for name in names:
        desc = spec.trait(name).desc
        assert isinstance(desc, str) and desc.strip(), f"{interface.__name__}.{name}"


# ----------------------------------------------------------------------------- DerivativeWriter


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


ACT_META = {"Architecture": "digitcnn", "WeightsSource": "trained", "WeightsSHA256": "ab" * 32,
            "Seed": None, "LayerName": "conv1", "Pooling": "channelmean", "Shape": [3, 8],
            "Stimuli": ["a.png", "b.png", "c.png"], "SoftwareVersions": {"torch": "x"}}


def test_writer_refuses_output_not_in_spec(tmp_path):
    writer = DerivativeWriter(tmp_path / "out")
    called = []
    with pytest.raises(SpecViolation):
        writer.write("brain_mask", {"subject": "01"}, lambda p: called.append(p), {"a": 1})
    assert called == []
    assert writer.written == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("entities", [
    {"model": "digitcnn", "weights": "trained"},                                   # missing
    {"model": "digitcnn", "weights": "trained", "layer": "conv1", "run": "1"},     # extra
    {"model": "digitcnn", "weights": "trained", "layer": "conv.1"},                # not a label
])
def test_writer_refuses_bad_entities(tmp_path, entities):
    writer = DerivativeWriter(tmp_path)
    with pytest.raises(SpecViolation):
        writer.write("activations", entities, lambda p: p.write_text("x"), ACT_META)
    assert _all_files(tmp_path) == [] and writer.written == []


def test_writer_refuses_incomplete_sidecar_before_writing(tmp_path):
    writer = DerivativeWriter(tmp_path)
    meta = {k: v for k, v in ACT_META.items() if k != "WeightsSHA256"}
    with pytest.raises(SpecViolation, match="WeightsSHA256"):
        writer.write("activations", {"model": "digitcnn", "weights": "trained", "layer": "conv1"},
                     lambda p: p.write_text("x"), meta)
    assert _all_files(tmp_path) == [] and writer.written == []


def test_writer_writes_file_and_sidecar(tmp_path):
    writer = DerivativeWriter(tmp_path)
    array = np.arange(24, dtype=np.float64).reshape(3, 8)

    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, array)

    rel = writer.write("activations", {"model": "digitcnn", "weights": "trained", "layer": "conv1"},
                       write, ACT_META)
    expected = "models/model-digitcnn/model-digitcnn_weights-trained_layer-conv1_activations.npy"
    sidecar = expected.replace(".npy", ".json")
    assert rel == expected
    assert writer.written == [expected, sidecar]
    assert _all_files(tmp_path) == sorted([expected, sidecar])
    np.testing.assert_array_equal(np.load(tmp_path / expected), array)
    assert json.loads((tmp_path / sidecar).read_text()) == ACT_META


def test_writer_without_metadata_writes_no_sidecar(tmp_path):
    writer = DerivativeWriter(tmp_path)
    rel = writer.write("group_figure", {"task": "digits", "space": "MNI152NLin2009cAsym",
                                        "atlas": "demo", "desc": "rsa"},
                       lambda p: p.write_bytes(b"\x89PNG"))
    assert rel == "figures/task-digits_space-MNI152NLin2009cAsym_atlas-demo_desc-rsa_similarity.png"
    assert _all_files(tmp_path) == [rel]
    assert writer.written == [rel]


def test_writer_failing_write_function_leaves_nothing(tmp_path):
    writer = DerivativeWriter(tmp_path)

    def write(path: Path) -> None:
        path.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        writer.write("activations", {"model": "m", "weights": "w", "layer": "l"}, write, ACT_META)
    assert _all_files(tmp_path) == []
    assert writer.written == []
    assert not any(os.scandir(tmp_path / "models" / "model-m"))
