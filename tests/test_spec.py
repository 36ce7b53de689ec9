"""nnbrain.spec: the model spec's JSON Schema, exact error messages, expansion and round trips."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from nnbrain.errors import EXIT_DATA, EXIT_NO_INPUT, DataError, MissingInputError
from nnbrain.spec import (
    ModelSpec,
    WeightsSource,
    check_layers,
    check_weights,
    compress_names,
    epoch_from_name,
    load_model_spec,
    schema,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "datalad_dataset" / "code" / "model_spec.yaml"
WEIGHTS = ROOT / "datalad_dataset" / "code" / "models" / "digitcnn_trained.pt"
WEIGHTS_SHA = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()

#: A user's architecture file: two modules whose names collide once made BIDS labels, and a
#: module-level side effect that shows whether the file was executed.
CUSTOM_NET = """
from pathlib import Path
import torch
from torch import nn

Path(__file__).with_name("executed").touch()


class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.Conv2d(width, 8, 3),
                                      nn.ReLU())
        self.features3 = nn.Linear(8, 5)

    def forward(self, x):
        return self.features3(self.features(x).mean(dim=(2, 3)))
"""

DIGIT = """models:
  - name: digits
    architecture: digitcnn
    weights:
      - {label: trained, file: w.pt}
      - {label: random, seed: 1}
    layers: [conv1, fc1]
"""

AVAILABLE_DIGITCNN = ("conv1..conv3, conv1.0..conv3.0, conv1.1..conv3.1, pool, flatten, fc1, "
                      "fc1.0, fc1.1, fc2")


@pytest.fixture
def specdir(tmp_path: Path) -> Path:
    """A directory with the demo weights (``w.pt``), three checkpoints and a custom net."""
    shutil.copyfile(WEIGHTS, tmp_path / "w.pt")
    (tmp_path / "ckpt").mkdir()
    for epoch in (10, 2, 0):
        shutil.copyfile(WEIGHTS, tmp_path / "ckpt" / f"digit_epoch_{epoch}.pt")
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "net.py").write_text(CUSTOM_NET)
    return tmp_path


def _write(directory: Path, text: str, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- bad specs

#: (id, spec text, error class, message after "<spec path>: "); ``{d}`` is the spec directory.
BAD_SPECS = [
    ("empty file", "", DataError,
     "must be a mapping with a non-empty 'models' list, got null"),
    ("top level is a list", "- name: x\n", DataError,
     "must be a mapping with a non-empty 'models' list, got a list"),
    ("no models", "models: []\n", DataError, "models: must not be empty"),
    ("misspelt top key", "model:\n  - name: x\n", DataError,
     "unknown key 'model' (did you mean 'models'?); allowed: description, models, measures"),
    ("missing name", DIGIT.replace("  - name: digits\n    architecture", "  - architecture"),
     DataError, "models[0]: missing required key 'name'"),
    ("name without letters", DIGIT.replace("name: digits", "name: '...'"), DataError,
     "models[0].name: must contain a letter or digit (it becomes a BIDS label in file names), "
     "got '...'"),
    ("misspelt model key", DIGIT.replace("layers:", "layer:"), DataError,
     "models[0]: unknown key 'layer' (did you mean 'layers'?); allowed: name, description, "
     "architecture, input, weights, layers, pooling, preprocessing, reduction"),
    ("unknown built-in", DIGIT.replace("architecture: digitcnn", "architecture: digitcn"),
     DataError,
     "models[0].architecture: 'digitcn' is not available (did you mean 'digitcnn'?); choose a "
     "built-in (alexnet, deepcluster_alexnet, deepcluster_alexnet_in1k, digitcnn, resnet50, "
     "speech_cnn, word_cnn1d_grouped, word_cnn2d), 'torchvision:<name>' (a torchvision "
     "classification model) or a custom {file, class}"),
    ("unknown torchvision model",
     DIGIT.replace("architecture: digitcnn", "architecture: torchvision:resnet5"), DataError,
     "models[0].architecture: 'torchvision:resnet5' is not available (did you mean "
     "'torchvision:resnet50'?); choose a built-in (alexnet, deepcluster_alexnet, "
     "deepcluster_alexnet_in1k, digitcnn, resnet50, speech_cnn, word_cnn1d_grouped, "
     "word_cnn2d), 'torchvision:<name>' (a torchvision classification model) or a custom "
     "{file, class}"),
    ("architecture is a number", DIGIT.replace("architecture: digitcnn", "architecture: 5"),
     DataError, "models[0].architecture: must be a string or a mapping, got 5"),
    ("custom code without the flag",
     DIGIT.replace("architecture: digitcnn",
                   "architecture: {file: nets/net.py, class: Net}\n"
                   "    input: {kind: image, shape: [3, 16, 16]}"), DataError,
     "models[0].architecture: a custom architecture runs the Python code in {d}/nets/net.py; "
     "pass --allow-custom-code to allow it (only for code you trust)"),
    ("custom class not an identifier",
     DIGIT.replace("architecture: digitcnn", "architecture: {file: nets/net.py, class: 1Net}"),
     DataError,
     "models[0].architecture.class: must be a Python class name, got '1Net'"),
    ("trained file and seed", DIGIT.replace("{label: trained, file: w.pt}",
                                            "{label: trained, file: w.pt, seed: 3}"), DataError,
     "models[0].weights[0]: give exactly one of 'file' (trained), 'checkpoints', 'seed' or "
     "'seeds' (random)"),
    ("no weight kind", DIGIT.replace("{label: random, seed: 1}", "{label: random}"), DataError,
     "models[0].weights[1]: give exactly one of 'file' (trained), 'checkpoints', 'seed' or "
     "'seeds' (random)"),
    ("misspelt weights key", DIGIT.replace("file: w.pt}", "file: w.pt, sha: abc}"), DataError,
     "models[0].weights[0]: unknown key 'sha' (did you mean 'sha256'?); allowed: label, file, "
     "sha256, checkpoints, epochs, seed, seeds"),
    ("unquoted all-digit hash", DIGIT.replace("file: w.pt}", "file: w.pt, sha256: " + "0" * 64
                                              + "}"), DataError,
     "models[0].weights[0].sha256: must be a quoted string of 64 hex digits, got 0"),
    ("short hash", DIGIT.replace("file: w.pt}", "file: w.pt, sha256: 'abc123'}"), DataError,
     "models[0].weights[0].sha256: must be a quoted string of 64 hex digits, got 'abc123'"),
    ("epochs without checkpoints",
     DIGIT.replace("{label: random, seed: 1}", "{label: random, seed: 1, epochs: [1]}"),
     DataError, "models[0].weights[1]: 'epochs' is only allowed together with 'checkpoints'"),
    ("negative seed", DIGIT.replace("seed: 1}", "seed: -1}"), DataError,
     "models[0].weights[1].seed: must be >= 0, got -1"),
    ("seed as text", DIGIT.replace("seed: 1}", "seed: one}"), DataError,
     "models[0].weights[1].seed: must be an integer, got 'one'"),
    ("repeated seeds", DIGIT.replace("seed: 1}", "seeds: [1, 2, 1]}"), DataError,
     "models[0].weights[1].seeds: 1 is listed more than once"),
    ("missing weights file", DIGIT.replace("file: w.pt", "file: missing.pt"), MissingInputError,
     "models[0].weights[0].file: weights file {d}/missing.pt not found"),
    ("glob matching no checkpoint",
     DIGIT.replace("{label: random, seed: 1}", "{label: run, checkpoints: 'ckpt/*.pth'}"),
     MissingInputError,
     "models[0].weights[1].checkpoints: 'ckpt/*.pth' matches no file (searched {d}/ckpt/*.pth)"),
    ("missing checkpoint in a list",
     DIGIT.replace("{label: random, seed: 1}",
                   "{label: run, checkpoints: [ckpt/digit_epoch_0.pt, ckpt/nope.pt]}"),
     MissingInputError,
     "models[0].weights[1].checkpoints[1]: checkpoint file {d}/ckpt/nope.pt not found"),
    ("epochs do not match the files",
     DIGIT.replace("{label: random, seed: 1}",
                   "{label: run, checkpoints: 'ckpt/*.pt', epochs: [1, 2]}"), DataError,
     "models[0].weights[1].epochs: 2 epochs for 3 checkpoint files; give one epoch per file, "
     "in the order of the files (sorted by name)"),
    ("checkpoint name without an epoch",
     DIGIT.replace("{label: random, seed: 1}", "{label: run, checkpoints: [w.pt]}"), DataError,
     "models[0].weights[1].checkpoints: no epoch number in the file name 'w.pt'; name the "
     "files like epoch_3.pt or give 'epochs'"),
    ("two checkpoints, one epoch",
     DIGIT.replace("{label: random, seed: 1}",
                   "{label: run, checkpoints: [ckpt/digit_epoch_0.pt, w.pt], epochs: [4, 4]}"),
     DataError,
     "models[0].weights[1]: epoch 4 is given twice (digit_epoch_0.pt and w.pt); each checkpoint "
     "needs its own epoch"),
    ("label given twice", DIGIT.replace("{label: random, seed: 1}",
                                        "{label: random, seed: 1}\n      - {label: random, "
                                        "seed: 2}"), DataError,
     "models[0].weights: weights label 'random' is given twice (weights[1] and weights[2]); "
     "weights labels must be unique"),
    ("seeds expand onto a label", DIGIT.replace("{label: random, seed: 1}",
                                                "{label: random1, seed: 1}\n      - "
                                                "{label: random, seeds: [1, 2]}"), DataError,
     "models[0].weights: weights label 'random1' is given twice (weights[1] and weights[2]); "
     "weights labels must be unique"),
    ("weight labels collide as BIDS labels",
     DIGIT.replace("{label: random, seed: 1}",
                   "{label: rand.1, seed: 1}\n      - {label: rand1, seed: 2}"), DataError,
     "models[0].weights: weights labels 'rand.1' (weights[1]) and 'rand1' (weights[2]) both "
     "become the label 'rand1' in file names; rename or drop one"),
    ("layers not a list", DIGIT.replace("layers: [conv1, fc1]", "layers: conv1"), DataError,
     "models[0].layers: must be a list, got 'conv1'"),
    ("unknown layer", DIGIT.replace("layers: [conv1, fc1]", "layers: [conv1, fc1, conv10]"),
     DataError,
     f"models[0].layers[2]: 'conv10' is not a layer of digitcnn; available: {AVAILABLE_DIGITCNN}"
     " (run: nnbrain list-layers {d}/spec.yaml)"),
    ("glob matching nothing", DIGIT.replace("layers: [conv1, fc1]", "layers: ['dense*']"),
     DataError,
     f"models[0].layers[0]: 'dense*' matches no layer of digitcnn; available: "
     f"{AVAILABLE_DIGITCNN} (run: nnbrain list-layers {{d}}/spec.yaml)"),
    ("auto with an unknown type",
     DIGIT.replace("layers: [conv1, fc1]", "layers: [{auto: [Conv2D]}]"), DataError,
     "models[0].layers[0].auto: no module of type 'Conv2D' in digitcnn (did you mean "
     "'Conv2d'?); types present: Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential"),
    ("layer with name and glob",
     DIGIT.replace("layers: [conv1, fc1]", "layers: [{name: conv1, glob: 'fc*'}]"), DataError,
     "models[0].layers[0]: give exactly one of 'name', 'glob' or 'auto'"),
    ("unknown pooling", DIGIT + "    pooling: mean\n", DataError,
     "models[0].pooling: 'mean' is not allowed; choose from channelmean, globalmax, flatten, "
     "none"),
    ("conflicting pooling",
     DIGIT.replace("layers: [conv1, fc1]",
                   "layers: [{name: conv1, pooling: flatten}, {glob: 'conv?', "
                   "pooling: globalmax}]"), DataError,
     "models[0].layers[1]: 'conv1' is also selected by layers[0] with pooling 'flatten', here "
     "with 'globalmax'; give one pooling per layer (a layer given by name overrides globs and "
     "auto listed before it)"),
    ("model names collide as BIDS labels",
     DIGIT.replace("name: digits", "name: my.net") + DIGIT.split("\n", 1)[1].replace(
         "name: digits", "name: mynet"), DataError,
     "models: model names 'my.net' (models[0]) and 'mynet' (models[1]) both become the label "
     "'mynet' in file names; rename or drop one"),
    ("audio preprocessing for an image net",
     DIGIT + "    preprocessing: {audio: {n_mels: 45}}\n", DataError,
     "models[0].preprocessing.audio: digitcnn takes image input (1x8x8); give "
     "preprocessing.image"),
    ("image and audio preprocessing",
     DIGIT + "    preprocessing: {audio: {n_mels: 45}, image: {crop: 8}}\n", DataError,
     "models[0].preprocessing: give either 'image' or 'audio'"),
    ("crop does not fit the input", DIGIT + "    preprocessing: {image: {resize: 16, crop: 12}}\n",
     DataError,
     "models[0].preprocessing.image.crop: gives 12x12 images but the network input is 1x8x8; "
     "crop to 8x8 or declare input: {kind: image, shape: [1, 12, 12]}"),
    ("resize of zero", DIGIT + "    preprocessing: {image: {resize: 0}}\n", DataError,
     "models[0].preprocessing.image.resize: must be >= 1, got 0"),
    ("mel bands do not fit speech_cnn",
     DIGIT.replace("architecture: digitcnn", "architecture: speech_cnn").replace(
         "{label: trained, file: w.pt}", "{label: random0, seed: 0}").replace(
         "[conv1, fc1]", "[conv1, fc1]\n    preprocessing: {audio: {n_mels: 40}}"), DataError,
     "models[0].preprocessing.audio.n_mels: 40 bands, but the network input is 45 bands x 11 "
     "frames"),
    ("audio input with three axes",
     DIGIT.replace("architecture: digitcnn",
                   "architecture: word_cnn2d\n    input: {kind: audio, shape: [1, 32, 32]}")
     .replace("{label: trained, file: w.pt}", "{label: random0, seed: 0}"), DataError,
     "models[0].input.shape: an audio input is [n_freq, n_frames], got [1, 32, 32]"),
    ("sparse random projection without seed",
     DIGIT + "    reduction: {method: srp, n_components: 10}\n", DataError,
     "models[0].reduction: missing required key 'seed'"),
    ("unknown reduction", DIGIT + "    reduction: {method: ica, n_components: 10}\n", DataError,
     "models[0].reduction.method: 'ica' is not allowed; choose from pca, srp"),
    ("duplicate YAML key", DIGIT + "    layers: [conv2]\n", DataError,
     "cannot be parsed as YAML: duplicate key 'layers' (line 8, column 5)"),
    ("YAML syntax", "models: [\n", DataError,
     "cannot be parsed as YAML: expected the node content, but found '<stream end>' "
     "(line 2, column 1)"),
]


@pytest.mark.parametrize(("text", "error", "message"), [b[1:] for b in BAD_SPECS],
                         ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_exact_message(specdir: Path, text: str, error: type, message: str) -> None:
    spec = _write(specdir, text)
    with pytest.raises(error) as info:
        load_model_spec(spec)
    assert type(info.value) is error
    assert str(info.value) == f"{spec}: {message.replace('{d}', str(specdir))}"
    assert info.value.path == spec
    assert info.value.exit_code == (EXIT_NO_INPUT if error is MissingInputError else EXIT_DATA)


def test_enough_bad_specs() -> None:
    assert len(BAD_SPECS) >= 15
    assert len({b[0] for b in BAD_SPECS}) == len(BAD_SPECS)


def test_bad_json(specdir: Path) -> None:
    spec = _write(specdir, '{"models": [}', "spec.json")
    with pytest.raises(DataError) as info:
        load_model_spec(spec)
    assert str(info.value) == (f"{spec}: cannot be parsed as JSON: Expecting value (line 1, "
                               "column 13)")


def test_missing_spec_is_exit_66(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError) as info:
        load_model_spec(tmp_path / "nope.yaml")
    assert str(info.value) == (f"{tmp_path / 'nope.yaml'}: model spec not found; pass an "
                               "existing YAML/JSON file to --model-spec")


def test_custom_code_refused_executes_nothing(specdir: Path) -> None:
    spec = _write(specdir, DIGIT.replace(
        "architecture: digitcnn", "architecture: {file: nets/net.py, class: Net}\n"
        "    input: {kind: image, shape: [3, 16, 16]}"))
    with pytest.raises(DataError, match="--allow-custom-code"):
        load_model_spec(spec)
    assert not (specdir / "nets" / "executed").exists()


def test_custom_layers_colliding_as_labels(specdir: Path) -> None:
    spec = _write(specdir, DIGIT.replace(
        "architecture: digitcnn", "architecture: {file: nets/net.py, class: Net}\n"
        "    input: {kind: image, shape: [3, 16, 16]}").replace(
        "      - {label: trained, file: w.pt}\n", "").replace("[conv1, fc1]",
                                                         "[features.3, features3]"))
    with pytest.raises(DataError) as info:
        load_model_spec(spec, allow_custom_code=True)
    assert str(info.value) == (
        f"{spec}: models[0].layers: layers 'features.3' (layers[0]) and 'features3' (layers[1]) "
        "both become the label 'features3' in file names; rename or drop one")


def test_custom_hash_mismatch(specdir: Path) -> None:
    spec = _write(specdir, DIGIT.replace(
        "architecture: digitcnn", f"architecture: {{file: nets/net.py, class: Net, sha256: "
        f"'{'ab' * 32}'}}\n    input: {{kind: image, shape: [3, 16, 16]}}"))
    digest = hashlib.sha256(CUSTOM_NET.encode()).hexdigest()
    with pytest.raises(DataError) as info:
        load_model_spec(spec, allow_custom_code=True)
    assert str(info.value) == (f"{spec}: models[0].architecture.sha256: net.py has SHA-256 "
                               f"{digest}, the spec expects {'ab' * 32}; the file changed or "
                               "the spec names the wrong file")
    assert not (specdir / "nets" / "executed").exists()


def test_custom_without_input(specdir: Path) -> None:
    spec = _write(specdir, DIGIT.replace("architecture: digitcnn",
                                         "architecture: {file: nets/net.py, class: Net}"))
    with pytest.raises(DataError) as info:
        load_model_spec(spec, allow_custom_code=True)
    assert str(info.value) == (f"{spec}: models[0]: missing required key 'input' (a custom "
                               "architecture declares its input, e.g. input: {kind: image, "
                               "shape: [3, 224, 224]})")


def test_custom_missing_class(specdir: Path) -> None:
    spec = _write(specdir, DIGIT.replace(
        "architecture: digitcnn", "architecture: {file: nets/net.py, class: Nett}\n"
        "    input: {kind: image, shape: [3, 16, 16]}"))
    with pytest.raises(DataError) as info:
        load_model_spec(spec, allow_custom_code=True)
    assert str(info.value) == f"{specdir / 'nets' / 'net.py'}: defines no class 'Nett'; " \
                              "classes defined: Net"


# ----------------------------------------------------------------------------- good specs


def test_demo_spec_loads_with_every_weight_source_kind() -> None:
    (model,) = load_model_spec(DEMO_SPEC)
    assert model.name == "digitcnn" and model.architecture == "digitcnn"
    assert model.layers == ("conv1", "conv2", "conv3", "fc1", "fc2")
    assert model.pooling == "channelmean"
    assert model.pooling_map == dict.fromkeys(model.layers, "channelmean")
    trained, *checkpoints, random1, random2 = model.weights
    assert trained == WeightsSource("trained", file=DEMO_SPEC.parent / "models" /
                                    "digitcnn_trained.pt", sha256=WEIGHTS_SHA, group="trained")
    assert trained.kind == "trained" and random1.kind == random2.kind == "random"
    assert [(c.label, c.epoch, c.kind, c.file.name) for c in checkpoints] == [
        ("ckptepoch1", 1, "checkpoint", "digitcnn_epoch-01.pt"),
        ("ckptepoch2", 2, "checkpoint", "digitcnn_epoch-02.pt"),
        ("ckptepoch4", 4, "checkpoint", "digitcnn_epoch-04.pt")]
    assert (random1.label, random1.seed, random1.file) == ("random1", 1, None)
    assert (random2.label, random2.seed, random2.group) == ("random2", 2, "random")
    data = model.to_dict()
    assert {"name", "architecture", "weights", "layers", "pooling"} <= set(data)
    assert data["input"] == {"kind": "image", "shape": [1, 8, 8]}
    assert {"label", "file", "sha256", "seed"} <= set(data["weights"][0])
    assert check_layers((model,), DEMO_SPEC) == (model,)
    (checked,) = check_weights((model,))
    assert checked.weights[0].sha256 == WEIGHTS_SHA


def test_torchvision_zoo_checkpoints_seeds_globs_auto(specdir: Path) -> None:
    spec = _write(specdir, """
models:
  - name: alex
    architecture: torchvision:alexnet
    weights:
      - {label: random, seeds: [3, 1]}
    layers: [{auto: [ReLU]}]
    pooling: globalmax
    preprocessing:
      image: {resize: 256, crop: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
    reduction: {method: pca, n_components: 20}
  - name: digits
    architecture: digitcnn
    weights:
      - {label: trained, file: w.pt, sha256: '%s'}
      - {label: run, checkpoints: 'ckpt/digit_epoch_*.pt'}
      - {label: pick, checkpoints: [ckpt/digit_epoch_10.pt, w.pt], epochs: [7, 3]}
    layers:
      - 'conv?'
      - {auto: [Linear], pooling: flatten}
      - {name: conv2, pooling: none}
  - name: speech
    architecture: speech_cnn
    weights: [{label: untrained, seed: 0}]
    layers: ['conv*', {glob: 'fc[12]', pooling: flatten}]
    preprocessing: {audio: {sample_rate: 16000, n_mels: 45, hop_ms: 10, frame_step: 2}}
    reduction: {method: srp, n_components: 50, seed: 4}
  - name: res
    architecture: resnet50
    weights: [{label: random, seed: 0}]
    layers: ['layer?']
""" % WEIGHTS_SHA)
    alex, digits, speech, res = load_model_spec(spec)
    assert alex.layers == ("features.1", "features.4", "features.7", "features.9",
                           "features.11", "classifier.2", "classifier.5")
    assert set(alex.pooling_map.values()) == {"globalmax"}
    assert [(w.label, w.seed, w.group) for w in alex.weights] == [("random3", 3, "random"),
                                                                  ("random1", 1, "random")]
    assert alex.declared_input() == ("image", (3, 224, 224))
    assert alex.reduction == {"method": "pca", "n_components": 20}
    assert alex.preprocessing["image"]["crop"] == 224

    assert [w.label for w in digits.weights] == ["trained", "runepoch0", "runepoch2",
                                                 "runepoch10", "pickepoch3", "pickepoch7"]
    assert [w.epoch for w in digits.weights] == [None, 0, 2, 10, 3, 7]
    assert [w.kind for w in digits.weights] == ["trained"] + ["checkpoint"] * 5
    assert digits.weights[1].file == specdir / "ckpt" / "digit_epoch_0.pt"
    assert digits.weights[4].file == specdir / "w.pt"
    assert digits.layers == ("conv1", "conv2", "conv3", "fc1.0", "fc2")
    assert digits.pooling_map == {"conv1": "channelmean", "conv2": "none",
                                  "conv3": "channelmean", "fc1.0": "flatten", "fc2": "flatten"}
    assert digits.layer_labels["fc1.0"] == "fc10"

    assert speech.layers == tuple(f"conv{i}" for i in range(1, 10)) + ("fc1", "fc2")
    assert speech.pooling_of("fc2") == "flatten" and speech.pooling_of("conv9") == "channelmean"
    assert speech.declared_input() == ("audio", (45, 11))
    assert speech.to_dict()["input"] == {"kind": "audio", "shape": [45, 11]}
    assert res.layers == ("layer1", "layer2", "layer3", "layer4")

    checked = check_weights((digits,))[0]
    assert {w.sha256 for w in checked.weights if w.file} == {WEIGHTS_SHA}


def test_name_overrides_glob_pooling_in_place(specdir: Path) -> None:
    spec = _write(specdir, DIGIT.replace("[conv1, fc1]",
                                         "['conv?', {name: conv2, pooling: flatten}, conv1]"))
    (model,) = load_model_spec(spec)
    assert model.layers == ("conv1", "conv2", "conv3")
    assert model.layer_pooling == ("channelmean", "flatten", "channelmean")


def test_custom_architecture_with_flag(specdir: Path) -> None:
    spec = _write(specdir, DIGIT.replace(
        "architecture: digitcnn", "architecture: {file: nets/net.py, class: Net, kwargs: "
        "{width: 6}}\n    input: {kind: image, shape: [3, 16, 16]}").replace(
        "      - {label: trained, file: w.pt}\n", "").replace("[conv1, fc1]", "['features.?']"))
    (model,) = load_model_spec(spec, allow_custom_code=True)
    assert (specdir / "nets" / "executed").exists()
    assert model.architecture == "custom:Net"
    assert model.custom.sha256 == hashlib.sha256(CUSTOM_NET.encode()).hexdigest()
    assert model.custom.file == specdir / "nets" / "net.py"
    assert model.custom.kwargs == {"width": 6}
    assert model.layers == ("features.0", "features.1", "features.2", "features.3")
    assert model.to_dict()["custom"]["class"] == "Net"
    with pytest.raises(DataError, match="--allow-custom-code"):
        check_layers((model,), spec)
    assert check_layers((model,), spec, allow_custom_code=True) == (model,)


def test_json_spec_equals_yaml(specdir: Path) -> None:
    text = DIGIT.replace("[conv1, fc1]", "['conv?', {auto: [Linear], pooling: flatten}]")
    from_yaml = load_model_spec(_write(specdir, text))
    from_json = load_model_spec(_write(specdir, json.dumps(yaml.safe_load(text)), "spec.json"))
    assert from_json == from_yaml


def test_round_trips(specdir: Path) -> None:
    spec = _write(specdir, """
models:
  - name: digits
    architecture: digitcnn
    weights:
      - {label: trained, file: w.pt, sha256: '%s'}
      - {label: run, checkpoints: 'ckpt/*.pt'}
      - {label: random, seed: 5}
      - {label: rnd, seeds: [1, 2]}
    layers: ['conv?', {name: fc2, pooling: flatten}]
    pooling: globalmax
    preprocessing: {image: {crop: 8, mean: [0.5], std: [0.25], color: grayscale}}
    reduction: {method: srp, n_components: 3, seed: 9}
  - name: custom
    architecture: {file: nets/net.py, class: Net}
    input: {kind: image, shape: [3, 16, 16]}
    weights: [{label: random, seed: 0}]
    layers: [features.0]
""" % WEIGHTS_SHA)
    models = load_model_spec(spec, allow_custom_code=True)
    for model in models:
        assert ModelSpec.from_dict(json.loads(json.dumps(model.to_dict()))) == model
        for source in model.weights:
            assert WeightsSource.from_dict(source.to_dict()) == source
    document = {"models": [m.to_spec() for m in models]}
    again_yaml = load_model_spec(_write(specdir, yaml.safe_dump(document), "again.yaml"),
                                 allow_custom_code=True)
    again_json = load_model_spec(_write(specdir, json.dumps(document), "again.json"),
                                 allow_custom_code=True)
    assert again_yaml == models
    assert again_json == models


def test_check_layers_refuses_unknown_layer_of_a_built_spec() -> None:
    (model,) = load_model_spec(DEMO_SPEC)
    data = model.to_dict()
    data["layers"] = ["conv1", "conv10"]
    data["layer_pooling"] = {"conv1": "channelmean", "conv10": "channelmean"}
    with pytest.raises(DataError) as info:
        check_layers((ModelSpec.from_dict(data),), DEMO_SPEC)
    assert str(info.value) == (f"{DEMO_SPEC}: models[0].layers[1]: 'conv10' is not a layer of "
                               f"digitcnn; available: {AVAILABLE_DIGITCNN} (run: nnbrain "
                               f"list-layers {DEMO_SPEC})")


def test_old_style_model_spec_still_works() -> None:
    model = ModelSpec("m", "digitcnn", (WeightsSource("random", seed=1),), ("conv1",), "flatten")
    assert model.pooling_of("conv1") == "flatten"
    data = model.to_dict()
    assert data["layer_pooling"] == {"conv1": "flatten"}
    assert data["weights"][0] == {"label": "random", "file": None, "sha256": None, "seed": 1,
                                  "epoch": None, "kind": "random", "group": "random"}


# ----------------------------------------------------------------------------- helpers


def test_schema_is_valid_draft_2020_12() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    assert schema()["properties"]["models"]["items"] == {"$ref": "#/$defs/model"}


@pytest.mark.parametrize(("names", "expected"), [
    (["conv1", "conv2"], "conv1, conv2"),
    ([f"conv{i}" for i in range(1, 10)] + ["fc1", "fc2", "fc3"], "conv1..conv9, fc1..fc3"),
    (["a1", "a2", "a4", "a5", "a6"], "a1, a2, a4..a6"),
    (["features.0", "features.01", "features.1", "features.2"],
     "features.0..features.2, features.01"),
    (["x"] * 0, ""),
])
def test_compress_names(names: list[str], expected: str) -> None:
    assert compress_names(names) == expected


def test_compress_names_truncates() -> None:
    names = [f"b{i}x" for i in range(0, 100, 2)]
    assert compress_names(names, limit=3) == "b0x, b2x, b4x, ... (47 more)"


@pytest.mark.parametrize(("name", "epoch"), [
    ("epoch_3.pt", 3), ("resnet50_seed2_epoch_010.pth.tar", 10), ("ckpt.12.ckpt", 12),
    ("model.pt", None), ("7", 7)])
def test_epoch_from_name(name: str, epoch: int | None) -> None:
    assert epoch_from_name(name) == epoch


# ----------------------------------------------------------------------------- list-layers


def test_list_layers_shows_study_models_with_shapes(specdir: Path) -> None:
    from nnbrain.cli.run import list_layers

    spec = _write(specdir, """
models:
  - name: speech
    architecture: speech_cnn
    weights: [{label: random, seed: 0}]
    layers: ['conv?', {name: fc1, pooling: flatten}]
  - name: alex
    architecture: deepcluster_alexnet
    weights: [{label: random, seed: 0}]
    layers: [features.2]
""")
    lines = list_layers(spec, None).splitlines()
    assert lines[0] == "speech (speech_cnn), audio input (bands, frames) (45, 11):"
    assert lines[1].split() == ["*", "conv1", "1024x45x11"]
    assert lines[10].split() == ["*", "fc1", "600"]
    assert lines[12].split() == ["fc3", "9000"]
    assert lines[13] == "alex (deepcluster_alexnet), input (3, 224, 224):"
    rows = {line.split()[-2]: line.split() for line in lines[14:-1]}
    assert rows["sobel"] == ["sobel", "2x224x224"]
    assert rows["features.2"] == ["*", "features.2", "96x55x55"]
    assert rows["top_layer"] == ["top_layer", "10000"]
    assert lines[-1] == "(* = listed in the spec)"


def test_list_layers_runs_an_image_stimulus(specdir: Path) -> None:
    from nnbrain.cli.run import list_layers

    stimulus = sorted((ROOT / "datalad_dataset" / "stimuli").glob("*.png"))[0]
    spec = _write(specdir, DIGIT)
    lines = list_layers(spec, stimulus).splitlines()
    assert lines[0] == "digits (digitcnn), input (1, 8, 8):"
    assert "  * conv1                8x8x8" in lines
    assert "    pool                 16x4x4" in lines


def test_yaml_merge_keys_may_override(specdir: Path) -> None:
    spec = _write(specdir, """
models:
  - &a
    name: a
    architecture: digitcnn
    weights: [{label: random, seeds: [1, 2]}]
    pooling: flatten
    layers: [conv1]
  - <<: *a
    name: b
    pooling: globalmax
""")
    a, b = load_model_spec(spec)
    assert (a.name, a.pooling, b.name, b.pooling) == ("a", "flatten", "b", "globalmax")
    assert b.layers == ("conv1",) and [w.label for w in b.weights] == ["random1", "random2"]
