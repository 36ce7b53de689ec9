"""nnbrain.models.loading: seeded random init and safe loading of trained state_dicts."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from nnbrain.errors import EXIT_DATA, EXIT_NO_INPUT, DataError, MissingInputError, NnbrainError
from nnbrain.models.loading import init_random, load_trained, sha256_file
from nnbrain.models.zoo import build_architecture

DEMO = Path(__file__).resolve().parents[2] / "datalad_dataset"
WEIGHTS = DEMO / "code" / "models" / "digitcnn_trained.pt"


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _spec_sha() -> str:
    spec = yaml.safe_load((DEMO / "code" / "model_spec.yaml").read_text())
    (model,) = [m for m in spec["models"] if m["name"] == "digitcnn"]
    (trained,) = [w for w in model["weights"] if w["label"] == "trained"]
    return trained["sha256"]


# ----------------------------------------------------------------------------- init_random


def test_same_seed_identical_weights_whatever_the_global_state():
    torch.manual_seed(100)
    a = build_architecture("digitcnn")
    torch.manual_seed(200)  # a different construction-time init must not matter
    b = build_architecture("digitcnn")
    assert not torch.equal(a.conv1[0].weight, b.conv1[0].weight)
    init_random(a, 7)
    torch.rand(50)  # consume global RNG in between
    init_random(b, 7)
    sa, sb = _state(a), _state(b)
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_different_seeds_differ_in_every_parameter():
    a, b = build_architecture("digitcnn"), build_architecture("digitcnn")
    init_random(a, 1)
    init_random(b, 2)
    sa, sb = _state(a), _state(b)
    assert len(sa) == 10  # weight + bias of 3 convs and 2 linears
    for key in sa:
        assert not torch.equal(sa[key], sb[key]), key


def test_init_random_reinitialises_every_parameter():
    torch.manual_seed(0)
    model = build_architecture("digitcnn")
    before = _state(model)
    init_random(model, 1)
    after = _state(model)
    for key in before:
        assert not torch.equal(before[key], after[key]), key


def test_init_random_matches_torch_default_init_under_manual_seed():
    """Independent reference: seeding then reset_parameters() in module order."""
    model = build_architecture("digitcnn")
    init_random(model, 5)
    reference = build_architecture("digitcnn")
    saved = torch.random.get_rng_state()
    try:
        torch.manual_seed(5)
        for layer in (reference.conv1[0], reference.conv2[0], reference.conv3[0],
                      reference.fc1[0], reference.fc2):
            layer.reset_parameters()
    finally:
        torch.random.set_rng_state(saved)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_global_rng_state_unchanged():
    model = build_architecture("digitcnn")  # construction itself draws from the global RNG
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    init_random(model, 99)
    assert torch.equal(torch.random.get_rng_state(), state)
    after = torch.rand(5)
    torch.manual_seed(1234)
    assert torch.equal(after, torch.rand(5))


# ----------------------------------------------------------------------------- load_trained


def test_demo_weights_hash_matches_hashlib_and_spec():
    expected = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert sha256_file(WEIGHTS) == expected
    assert sha256_file(WEIGHTS, chunk=7) == expected  # chunked reading
    assert _spec_sha() == expected
    model = build_architecture("digitcnn")
    assert load_trained(model, WEIGHTS, _spec_sha()) == expected
    assert load_trained(build_architecture("digitcnn"), WEIGHTS) == expected  # no check asked
    assert load_trained(build_architecture("digitcnn"), WEIGHTS, expected.upper()) == expected
    # the model now holds exactly the file's tensors
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert set(state) == set(model.state_dict())
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_wrong_sha_is_data_error_naming_file(tmp_path):
    target = tmp_path / "weights.pt"
    target.write_bytes(WEIGHTS.read_bytes())
    model = build_architecture("digitcnn")
    before = _state(model)
    with pytest.raises(DataError) as info:
        load_trained(model, target, "0" * 64)
    err = info.value
    assert err.exit_code == EXIT_DATA == 65
    assert err.path == target
    assert "weights.pt" in str(err)
    assert hashlib.sha256(target.read_bytes()).hexdigest() in str(err)
    for key, value in before.items():  # nothing loaded
        assert torch.equal(model.state_dict()[key], value)


def test_missing_file_is_missing_input_error(tmp_path):
    with pytest.raises(MissingInputError) as info:
        load_trained(build_architecture("digitcnn"), tmp_path / "nope.pt", _spec_sha())
    assert info.value.exit_code == EXIT_NO_INPUT == 66
    assert info.value.path == tmp_path / "nope.pt"
    assert "nope.pt" in str(info.value)


def test_directory_is_missing_input_error(tmp_path):
    with pytest.raises(MissingInputError):
        load_trained(build_architecture("digitcnn"), tmp_path)


class _Exploit:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["pickle", "torch.save", "inside_state_dict"])
def test_code_executing_pickle_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    target = tmp_path / "evil.pt"
    exploit = _Exploit(marker)
    if how == "pickle":
        with open(target, "wb") as fh:
            pickle.dump(exploit, fh)
    elif how == "torch.save":
        torch.save(exploit, target)
    else:
        state = build_architecture("digitcnn").state_dict()
        state["fc2.bias"] = exploit
        torch.save(state, target)
    assert not marker.exists()
    with pytest.raises(DataError) as info:
        load_trained(build_architecture("digitcnn"), target)
    assert info.value.exit_code == 65
    assert info.value.path == target
    assert not marker.exists(), "unpickling executed code"
    # sanity: the crafted file really is an exploit when loaded unsafely
    if how == "pickle":
        with open(target, "rb") as fh:
            pickle.load(fh)  # noqa: S301 - deliberately unsafe, in tmp_path
        assert marker.exists()


@pytest.mark.parametrize("content", ["tensor", "list", "dict_of_lists", "empty_dict"])
def test_not_a_state_dict_is_data_error(tmp_path, content):
    target = tmp_path / f"{content}.pt"
    obj = {
        "tensor": torch.zeros(3, 3),
        "list": [torch.zeros(3), torch.ones(2)],
        "dict_of_lists": {"conv1.0.weight": [1.0, 2.0]},
        "empty_dict": {},
    }[content]
    torch.save(obj, target)
    with pytest.raises(DataError) as info:
        load_trained(build_architecture("digitcnn"), target)
    assert info.value.exit_code == 65
    assert info.value.path == target


def test_wrong_shapes_are_data_error(tmp_path):
    state = build_architecture("digitcnn").state_dict()
    state["fc2.weight"] = torch.zeros(5, 64)
    state["fc2.bias"] = torch.zeros(5)
    target = tmp_path / "five_classes.pt"
    torch.save(state, target)
    with pytest.raises(DataError, match="do not fit") as info:
        load_trained(build_architecture("digitcnn"), target)
    assert info.value.path == target


@pytest.mark.parametrize("change", ["missing_key", "extra_key"])
def test_wrong_keys_are_data_error(tmp_path, change):
    state = dict(build_architecture("digitcnn").state_dict())
    if change == "missing_key":
        del state["conv3.0.bias"]
    else:
        state["fc3.weight"] = torch.zeros(2, 2)
    target = tmp_path / "keys.pt"
    torch.save(state, target)
    with pytest.raises(DataError, match="do not fit"):
        load_trained(build_architecture("digitcnn"), target)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", [b"PK\x03\x04truncated zip", b"\x80\x02garbage" * 10])
def test_garbage_bytes_are_data_error(tmp_path, content):
    target = tmp_path / "garbage.pt"
    target.write_bytes(content)
    with pytest.raises(DataError):
        load_trained(build_architecture("digitcnn"), target)


@pytest.mark.parametrize("content", [b"hello world", b""])
def test_short_junk_files_are_data_error(tmp_path, content):
    target = tmp_path / "junk.pt"
    target.write_bytes(content)
    with pytest.raises(NnbrainError):
        load_trained(build_architecture("digitcnn"), target)


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint(directory: Path, epoch: int, value: float) -> Path:
    """A digitcnn state_dict whose every tensor is filled with ``value``."""
    state = {k: torch.full_like(v, value) for k, v in build_architecture("digitcnn")
             .state_dict().items()}
    path = directory / f"epoch_{epoch}.pt"
    torch.save(state, path)
    return path


def test_checkpoints_loaded_in_epoch_order(tmp_path):
    from nnbrain.models.loading import iter_checkpoints

    files = {epoch: _checkpoint(tmp_path, epoch, float(epoch)) for epoch in (10, 0, 3, 1)}
    model = build_architecture("digitcnn")
    given = [(10, files[10], None), (0, files[0], None), (3, files[3], None),
             (1, files[1], sha256_file(files[1]))]
    seen = []
    for epoch, path, digest in iter_checkpoints(model, given):
        assert path == files[epoch]
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
        # the model holds exactly this checkpoint while the loop body runs
        assert all(torch.all(v == float(epoch)) for v in model.state_dict().values())
        seen.append(epoch)
    assert seen == [0, 1, 3, 10]


def test_checkpoints_with_the_same_epoch_refused_before_loading(tmp_path):
    from nnbrain.models.loading import iter_checkpoints

    a, b = _checkpoint(tmp_path, 1, 1.0), _checkpoint(tmp_path, 2, 2.0)
    model = build_architecture("digitcnn")
    before = _state(model)
    with pytest.raises(DataError, match="epoch 5 is given twice"):
        list(iter_checkpoints(model, [(5, a, None), (5, b, None)]))
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)


def test_checkpoint_with_wrong_hash_stops_the_trajectory(tmp_path):
    from nnbrain.models.loading import iter_checkpoints

    a, b = _checkpoint(tmp_path, 1, 1.0), _checkpoint(tmp_path, 2, 2.0)
    steps = iter_checkpoints(build_architecture("digitcnn"), [(2, b, "0" * 64), (1, a, None)])
    assert next(steps)[0] == 1
    with pytest.raises(DataError) as info:
        next(steps)
    assert info.value.path == b


def test_code_executing_checkpoint_refused_in_a_trajectory(tmp_path):
    from nnbrain.models.loading import iter_checkpoints

    marker = tmp_path / "pwned"
    evil = tmp_path / "epoch_2.pt"
    torch.save(_Exploit(marker), evil)
    good = _checkpoint(tmp_path, 1, 1.0)
    with pytest.raises(DataError) as info:
        list(iter_checkpoints(build_architecture("digitcnn"), [(2, evil, None),
                                                               (1, good, None)]))
    assert info.value.path == evil
    assert not marker.exists()


# ----------------------------------------------------------------------------- random init


def test_build_with_seed_equals_init_random_for_digitcnn_and_restores_rng():
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    built = build_architecture("digitcnn", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    reinit = build_architecture("digitcnn")
    init_random(reinit, 7)
    for key, value in built.state_dict().items():
        assert torch.equal(reinit.state_dict()[key], value), key
    other = build_architecture("digitcnn", seed=8)
    assert not torch.equal(other.conv1[0].weight, built.conv1[0].weight)


def test_init_random_leaves_frozen_modules_alone():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    before = _state(model)
    init_random(model, 1)
    assert torch.equal(model[0].weight, before["0.weight"])
    assert torch.equal(model[0].bias, before["0.bias"])
    assert not torch.equal(model[1].weight, before["1.weight"])
