"""nnbrain.models.zoo (digitcnn) and nnbrain.models.extract against manual forward passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nnbrain.models.extract import POOLING, extract_activations
from nnbrain.models.loading import init_random
from nnbrain.models.zoo import ZOO, build_architecture, input_shape

#: float32 forward passes with different batch sizes take different kernels: equal to ~1e-6
#: relative (observed max 1e-5 relative on near-zero units, 3e-6 absolute on values ~17).
TOL = {"rtol": 1e-5, "atol": 1e-5}

DEMO = Path(__file__).resolve().parents[2] / "datalad_dataset"
WEIGHTS = DEMO / "code" / "models" / "digitcnn_trained.pt"

#: layer -> output shape (without the batch axis) for one 1x8x8 input, from the zoo docstring.
EXPECTED_SHAPES = {
    "conv1": (8, 8, 8),
    "conv2": (16, 8, 8),
    "pool": (16, 4, 4),
    "conv3": (32, 4, 4),
    "fc1": (64,),
    "fc2": (10,),
}


def _trained_model() -> torch.nn.Module:
    model = build_architecture("digitcnn")
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def _stimuli(n: int, seed: int) -> np.ndarray:
    """The 30 demo PNGs (read with PIL, /255) followed by seeded uniform noise images."""
    pngs = sorted((DEMO / "stimuli").glob("*.png"))
    demo = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255 for p in pngs])
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 1, size=(max(n - len(demo), 0), 8, 8)).astype(np.float32)
    return np.concatenate([demo, noise])[:n, None]


def _manual(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every named layer's output, calling the submodules by hand."""
    with torch.no_grad():
        conv1 = model.conv1(x)
        conv2 = model.conv2(conv1)
        pool = model.pool(conv2)
        conv3 = model.conv3(pool)
        fc1 = model.fc1(model.flatten(conv3))
        fc2 = model.fc2(fc1)
    return {"conv1": conv1, "conv2": conv2, "pool": pool, "conv3": conv3, "fc1": fc1, "fc2": fc2}


# ----------------------------------------------------------------------------- zoo


def test_digitcnn_is_registered_with_its_input_shape():
    assert "digitcnn" in ZOO
    assert input_shape("digitcnn") == (1, 8, 8)


def test_digitcnn_layer_output_shapes():
    torch.manual_seed(0)
    model = build_architecture("digitcnn").eval()
    modules = dict(model.named_modules())
    seen: dict[str, tuple[int, ...]] = {}
    handles = [modules[name].register_forward_hook(
        lambda _m, _i, out, name=name: seen.__setitem__(name, tuple(out.shape)))
        for name in EXPECTED_SHAPES]
    try:
        with torch.no_grad():
            logits = model(torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    finally:
        for h in handles:
            h.remove()
    assert seen == {name: (1, *shape) for name, shape in EXPECTED_SHAPES.items()}
    assert tuple(logits.shape) == (1, 10)


def test_digitcnn_parameter_count():
    # conv: in*out*k*k + out bias; linear: in*out + out bias
    conv1 = 1 * 8 * 3 * 3 + 8            # 80
    conv2 = 8 * 16 * 3 * 3 + 16          # 1168
    conv3 = 16 * 32 * 3 * 3 + 32         # 4640
    fc1 = (32 * 4 * 4) * 64 + 64         # 32832
    fc2 = 64 * 10 + 10                   # 650
    expected = conv1 + conv2 + conv3 + fc1 + fc2
    assert expected == 39370
    model = build_architecture("digitcnn")
    assert sum(p.numel() for p in model.parameters()) == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


def test_build_returns_fresh_instances():
    a, b = build_architecture("digitcnn"), build_architecture("digitcnn")
    assert a is not b
    assert a.conv1[0].weight.data_ptr() != b.conv1[0].weight.data_ptr()


@pytest.mark.parametrize("func", [build_architecture, input_shape])
def test_unknown_architecture_lists_choices(func):
    with pytest.raises(ValueError) as info:
        func("resnet9000")
    message = str(info.value)
    assert "resnet9000" in message
    for name in ZOO:
        assert name in message


# ----------------------------------------------------------------------------- extract


@pytest.mark.parametrize("layer", list(EXPECTED_SHAPES))
def test_flatten_pooling_equals_manual_forward(layer):
    model = _trained_model()
    stimuli = _stimuli(40, seed=10)
    got = extract_activations(model, stimuli, [layer], pooling="flatten")
    want = _manual(model, torch.from_numpy(stimuli))[layer].double().numpy()
    assert set(got) == {layer}
    assert got[layer].dtype == np.float64
    assert got[layer].shape == (40, int(np.prod(EXPECTED_SHAPES[layer])))
    np.testing.assert_allclose(got[layer], want.reshape(40, -1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layer", list(EXPECTED_SHAPES))
def test_channelmean_pooling_is_spatial_mean(layer):
    model = _trained_model()
    stimuli = _stimuli(35, seed=11)
    got = extract_activations(model, stimuli, [layer], pooling="channelmean")[layer]
    out = _manual(model, torch.from_numpy(stimuli))[layer].double().numpy()
    # conv-like maps (n, c, h, w): mean over h and w; already-flat (n, units): unchanged
    want = out.mean(axis=(2, 3)) if out.ndim == 4 else out
    assert got.shape == (35, EXPECTED_SHAPES[layer][0])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_channelmean_differs_from_flatten_on_conv_layers():
    model = _trained_model()
    stimuli = _stimuli(30, seed=0)
    mean = extract_activations(model, stimuli, ["conv2"], pooling="channelmean")["conv2"]
    flat = extract_activations(model, stimuli, ["conv2"], pooling="flatten")["conv2"]
    assert mean.shape == (30, 16) and flat.shape == (30, 16 * 8 * 8)
    np.testing.assert_allclose(flat.reshape(30, 16, 64).mean(axis=2), mean, rtol=1e-6, atol=1e-7)


def test_named_layers_are_post_relu():
    model = _trained_model()
    stimuli = _stimuli(30, seed=0)
    acts = extract_activations(model, stimuli, ["conv1", "conv2", "conv3", "fc1", "fc2"],
                               pooling="flatten")
    for layer in ("conv1", "conv2", "conv3", "fc1"):
        assert acts[layer].min() >= 0, layer
        assert acts[layer].max() > 0, layer
    assert acts["fc2"].min() < 0  # logits: no ReLU


def test_several_layers_in_one_pass_keep_request_order():
    model = _trained_model()
    stimuli = _stimuli(30, seed=0)
    layers = ["fc1", "conv1", "conv3"]
    both = extract_activations(model, stimuli, layers)
    assert list(both) == layers
    for layer in layers:
        alone = extract_activations(model, stimuli, [layer])[layer]
        np.testing.assert_array_equal(both[layer], alone)


def test_batch_size_does_not_change_results():
    model = _trained_model()
    stimuli = _stimuli(70, seed=12)  # > 64: the default batch size really splits
    layers = ["conv1", "conv2", "pool", "conv3", "fc1", "fc2"]
    one = extract_activations(model, stimuli, layers, batch_size=1)
    sixty_four = extract_activations(model, stimuli, layers, batch_size=64)
    seven = extract_activations(model, stimuli, layers, batch_size=7)
    manual = _manual(model, torch.from_numpy(stimuli))
    for layer in layers:
        assert one[layer].shape[0] == 70
        np.testing.assert_allclose(one[layer], sixty_four[layer], **TOL)
        np.testing.assert_allclose(seven[layer], sixty_four[layer], **TOL)
        want = manual[layer].double().numpy()
        want = want.mean(axis=(2, 3)) if want.ndim == 4 else want
        np.testing.assert_allclose(one[layer], want, **TOL)


def test_rows_follow_stimulus_order():
    model = _trained_model()
    stimuli = _stimuli(30, seed=0)
    perm = np.random.default_rng(3).permutation(30)
    base = extract_activations(model, stimuli, ["fc1"])["fc1"]
    permuted = extract_activations(model, stimuli[perm], ["fc1"], batch_size=4)["fc1"]
    np.testing.assert_allclose(permuted, base[perm], **TOL)


def test_hooks_removed_and_model_in_eval_mode():
    model = _trained_model().train()
    extract_activations(model, _stimuli(5, seed=0), ["conv1", "fc1"])
    assert not model.training
    for name, module in model.named_modules():
        assert len(module._forward_hooks) == 0, name


def test_random_init_gives_different_activations_than_trained():
    trained = _trained_model()
    random = build_architecture("digitcnn")
    init_random(random, 1)
    stimuli = _stimuli(30, seed=0)
    a = extract_activations(trained, stimuli, ["fc1"])["fc1"]
    b = extract_activations(random, stimuli, ["fc1"])["fc1"]
    assert not np.allclose(a, b)


def test_unknown_layer_raises_listing_available():
    model = build_architecture("digitcnn")
    with pytest.raises(ValueError) as info:
        extract_activations(model, _stimuli(2, seed=0), ["conv1", "conv9"])
    message = str(info.value)
    assert "conv9" in message
    for layer in EXPECTED_SHAPES:
        assert layer in message
    # no hook leaked by the refused call
    for _name, module in model.named_modules():
        assert len(module._forward_hooks) == 0


def test_unknown_pooling_raises():
    assert set(POOLING) == {"channelmean", "globalmax", "flatten", "none"}
    with pytest.raises(ValueError, match="pooling"):
        extract_activations(build_architecture("digitcnn"), _stimuli(2, seed=0), ["conv1"],
                            pooling="max")


def test_pooling_names_match_the_spec():
    from nnbrain.spec import POOLING as SPEC_POOLING, schema

    assert tuple(POOLING) == SPEC_POOLING
    assert tuple(schema()["$defs"]["pooling"]["enum"]) == SPEC_POOLING


@pytest.mark.parametrize("layer", list(EXPECTED_SHAPES))
def test_globalmax_pooling_is_spatial_max(layer):
    model = _trained_model()
    stimuli = _stimuli(33, seed=13)
    got = extract_activations(model, stimuli, [layer], pooling="globalmax")[layer]
    out = _manual(model, torch.from_numpy(stimuli))[layer].double().numpy()
    want = out.max(axis=(2, 3)) if out.ndim == 4 else out
    assert got.shape == (33, EXPECTED_SHAPES[layer][0])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layer", list(EXPECTED_SHAPES))
def test_none_pooling_keeps_the_layer_shape(layer):
    model = _trained_model()
    stimuli = _stimuli(31, seed=14)
    got = extract_activations(model, stimuli, [layer], pooling="none", batch_size=8)[layer]
    want = _manual(model, torch.from_numpy(stimuli))[layer].double().numpy()
    assert got.shape == (31, *EXPECTED_SHAPES[layer])
    np.testing.assert_allclose(got, want, **TOL)


def test_per_layer_pooling_mapping():
    model = _trained_model()
    stimuli = _stimuli(30, seed=15)
    pooling = {"conv1": "flatten", "conv2": "globalmax", "pool": "none", "fc1": "channelmean"}
    got = extract_activations(model, stimuli, list(pooling), pooling=pooling)
    for layer, how in pooling.items():
        alone = extract_activations(model, stimuli, [layer], pooling=how)[layer]
        np.testing.assert_array_equal(got[layer], alone)
    assert got["conv1"].shape == (30, 8 * 8 * 8)
    assert got["conv2"].shape == (30, 16)
    assert got["pool"].shape == (30, 16, 4, 4)
    assert got["fc1"].shape == (30, 64)


def test_per_layer_pooling_must_cover_every_layer():
    model = build_architecture("digitcnn")
    with pytest.raises(ValueError, match=r"no pooling given for layers \['fc1'\]"):
        extract_activations(model, _stimuli(2, seed=0), ["conv1", "fc1"],
                            pooling={"conv1": "flatten"})
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        extract_activations(model, _stimuli(2, seed=0), ["conv1"], pooling={"conv1": "max"})
    for _name, module in model.named_modules():
        assert len(module._forward_hooks) == 0


def test_inplace_relu_after_hooked_conv_does_not_change_none_pooling():
    """AlexNet's ReLUs are in-place: the conv output must be copied in the hook."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3),
                                                    torch.nn.ReLU(inplace=True)))
    x = np.random.default_rng(0).normal(size=(5, 3, 9, 9)).astype(np.float32)
    got = extract_activations(model, x, ["0.0", "0.1"], pooling="none")
    with torch.no_grad():
        conv = model[0][0](torch.from_numpy(x))
    np.testing.assert_allclose(got["0.0"], conv.double().numpy(), **TOL)
    assert got["0.0"].min() < 0  # pre-ReLU values survived
    np.testing.assert_allclose(got["0.1"], np.maximum(got["0.0"], 0), **TOL)


def test_extraction_is_deterministic_and_restores_torch_settings():
    model = _trained_model()
    stimuli = _stimuli(40, seed=16)
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    state = torch.random.get_rng_state()
    seen = []
    hook = model.fc1.register_forward_hook(
        lambda _m, _i, _o: seen.append(torch.are_deterministic_algorithms_enabled()))
    try:
        a = extract_activations(model, stimuli, ["conv2", "fc2"], pooling="flatten")
    finally:
        hook.remove()
    b = extract_activations(model, stimuli, ["conv2", "fc2"], pooling="flatten")
    assert seen and all(seen)
    assert (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled()) == before
    assert torch.equal(torch.random.get_rng_state(), state)
    for layer in a:
        np.testing.assert_array_equal(a[layer], b[layer])


def test_probe_reports_output_and_pooled_shapes():
    from nnbrain.models.extract import probe_layers

    probes = probe_layers(_trained_model(), _stimuli(1, seed=0), ["conv2", "pool", "fc1"],
                          pooling={"conv2": "channelmean", "pool": "flatten", "fc1": "none"})
    assert {k: (p.output_shape, p.pooled_shape, p.n_units) for k, p in probes.items()} == {
        "conv2": ((16, 8, 8), (16,), 16), "pool": ((16, 4, 4), (256,), 256),
        "fc1": ((64,), (64,), 64)}
