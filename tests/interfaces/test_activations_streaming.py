"""Streamed activations: .npy streams, .npz assembly, reduction in the outputs, memory preflight."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO
from nnbrain.errors import EXIT_DATA, DataError
from nnbrain.models.cache import NpyStream, assemble_npz, write_npy
from nnbrain.models.reduction import reduce
from nnbrain.spec import load_model_spec

LAYERS = ["conv1", "conv2", "conv3", "fc1", "fc2"]


def _spec(**changes) -> tuple[dict, dict, list[Path]]:
    model = load_model_spec(DEMO / "code" / "model_spec.yaml")[0]
    stimuli = sorted((DEMO / "stimuli").glob("*.png"))
    return dict(model.to_dict(), **changes), model.weights[0].to_dict(), stimuli


def test_npy_stream_writes_what_numpy_saves(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(10, 3, 4)).astype(np.float32)
    with NpyStream(tmp_path / "a.npy", data.shape) as stream:
        for start in range(0, 10, 3):
            stream.write(data[start:start + 3])
    saved = io.BytesIO()
    np.save(saved, data)
    assert (tmp_path / "a.npy").read_bytes() == saved.getvalue()
    stored = stream.close()
    assert stored.nbytes == len(saved.getvalue()) and stored.shape == (10, 3, 4)


def test_npy_stream_refuses_wrong_blocks_and_removes_partial_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"block of shape \(2, 5\) does not fit"):
        with NpyStream(tmp_path / "a.npy", (4, 4)) as stream:
            stream.write(np.zeros((2, 5)))
    assert not (tmp_path / "a.npy").exists()
    with pytest.raises(ValueError, match="3 of 4 rows written"):
        with NpyStream(tmp_path / "b.npy", (4, 4)) as stream:
            stream.write(np.zeros((3, 4)))


def test_assembled_npz_reads_like_savez(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {"features.1": rng.normal(size=(7, 30)).astype(np.float32),
              "fc": rng.normal(size=(7, 2, 3)).astype(np.float32), "empty": np.zeros((0, 4))}
    members = {name: write_npy(tmp_path / f"{i}.npy", a)
               for i, (name, a) in enumerate(arrays.items())}
    placed, bad = assemble_npz(tmp_path / "out.npz", members)
    assert bad == []
    with zipfile.ZipFile(tmp_path / "out.npz") as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [f"{name}.npy" for name in arrays]
    with np.load(tmp_path / "out.npz") as npz:
        assert npz.files == list(arrays)
        for name, array in arrays.items():
            np.testing.assert_array_equal(npz[name], array)
            assert npz[name].dtype == array.dtype
    raw = (tmp_path / "out.npz").read_bytes()
    for name, member in placed.items():
        assert raw[member.offset:member.offset + member.nbytes] == members[name].path.read_bytes()


def test_assembly_reports_members_failing_their_checksum(tmp_path: Path) -> None:
    good = write_npy(tmp_path / "good.npy", np.ones((3, 3), np.float32))
    bad = write_npy(tmp_path / "bad.npy", np.ones((3, 3), np.float32))
    raw = bytearray(bad.path.read_bytes())
    raw[-1] ^= 0xFF
    bad.path.write_bytes(bytes(raw))
    gone = write_npy(tmp_path / "gone.npy", np.ones((3, 3), np.float32))
    gone.path.unlink()
    placed, failed = assemble_npz(tmp_path / "out.npz", {"a": good, "b": bad, "c": gone})
    assert failed == ["b", "c"] and placed == {}
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize(("method", "n_components", "expected"),
                         [("pca", 100, {"conv1": 30, "fc2": 10}),
                          ("srp", 12, {"conv1": 12, "fc2": 12})])
def test_reduction_is_applied_recorded_and_keyed(tmp_path: Path, method: str, n_components: int,
                                                 expected: dict) -> None:
    from nnbrain.interfaces.activations import write_activations

    reduction = {"method": method, "n_components": n_components, "seed": 3}
    plain = write_activations(*_spec(pooling="flatten",
                                     layer_pooling={k: "flatten" for k in LAYERS}),
                              tmp_path / "plain.npz", cache_dir=tmp_path / "cache")
    spec, weights, stimuli = _spec(pooling="flatten", layer_pooling={k: "flatten" for k in LAYERS},
                                   reduction=reduction)
    meta = write_activations(spec, weights, stimuli, tmp_path / "reduced.npz",
                             cache_dir=tmp_path / "cache")
    assert plain["Reduction"] is None and meta["CacheHits"] == []
    assert meta["Reduction"]["method"] == method
    for layer, k in expected.items():
        assert meta["Reduction"]["EffectiveComponents"][layer] == k
        assert meta["Shapes"][layer] == [30, k]
    with np.load(tmp_path / "plain.npz") as full, np.load(tmp_path / "reduced.npz") as small:
        for layer in LAYERS:
            want = reduce(full[layer], method, n_components, 3).astype(np.float32)
            np.testing.assert_array_equal(small[layer], want)
    again = write_activations(spec, weights, stimuli, tmp_path / "again.npz",
                              cache_dir=tmp_path / "cache")
    assert again["CacheHits"] == LAYERS


def test_preflight_refuses_what_cannot_fit(tmp_path: Path, monkeypatch) -> None:
    import nnbrain.models.extract as extract
    from nnbrain.interfaces.activations import write_activations

    monkeypatch.setattr(extract, "available_memory", lambda: 200_000)
    spec, weights, stimuli = _spec(pooling="flatten", layer_pooling={k: "flatten" for k in LAYERS})
    with pytest.raises(DataError) as info:
        write_activations(spec, weights, stimuli, tmp_path / "a.npz")
    message = str(info.value)
    assert info.value.exit_code == EXIT_DATA == 65
    assert message.startswith("model 'digitcnn': layer 'conv2' needs 521.3 KiB of memory "
                              "(30 stimuli x 1024 units x 4 bytes, plus temporaries, the network "
                              "and the stimuli) but 195.3 KiB is available; pool it with "
                              "'channelmean'")
    assert "add a reduction" in message and "fewer layers" in message
    assert not (tmp_path / "a.npz").exists()


def test_preflight_names_the_largest_layer() -> None:
    from nnbrain.models.extract import LayerProbe, preflight

    probes = {"small": LayerProbe((8,), (8,)), "big": LayerProbe((64, 55, 55), (193600,))}
    sizes = preflight("alexnet", probes, 1000, batch_size=64, base_bytes=0, available=None)
    assert sizes == {"small": 32_000, "big": 774_400_000}
    with pytest.raises(DataError, match=r"layer 'big' needs 833\.1 MiB .* but 512\.0 MiB"):
        preflight("alexnet", probes, 1000, batch_size=64, base_bytes=0, available=512 * 2 ** 20)
    preflight("alexnet", probes, 1000, batch_size=64, base_bytes=0, available=2 ** 31)


def test_available_memory_reads_meminfo_and_the_cgroup_limit(tmp_path: Path) -> None:
    from nnbrain.models.extract import available_memory

    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemAvailable:    2048 kB\n")
    assert available_memory(tmp_path / "meminfo", tmp_path / "none") == 2048 * 1024
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("400000\n")
    assert available_memory(tmp_path / "meminfo", tmp_path) == 600_000
    (tmp_path / "memory.max").write_text("max\n")
    assert available_memory(tmp_path / "meminfo", tmp_path) == 2048 * 1024
    assert available_memory(tmp_path / "missing", tmp_path / "none") > 0


def test_interface_writes_npz_and_meta(tmp_path: Path, monkeypatch) -> None:
    from nnbrain.interfaces.activations import ExtractActivations

    spec, weights, stimuli = _spec(reduction={"method": "pca", "n_components": 5})
    monkeypatch.chdir(tmp_path)
    result = ExtractActivations(model_spec=spec, weights=weights,
                                stimuli=[str(s) for s in stimuli]).run(cwd=str(tmp_path))
    meta = json.loads(Path(result.outputs.meta).read_text())
    assert {"model", "weights", "layers", "stimuli", "Reduction", "CacheHits"} <= set(meta)
    assert meta["layers"] == LAYERS and len(meta["stimuli"]) == 30
    with np.load(result.outputs.activations) as npz:
        assert npz.files == LAYERS
        assert all(npz[k].shape == (30, 5) and npz[k].dtype == np.float32 for k in LAYERS)
    assert not list(tmp_path.glob(".scratch-*"))


STREAM_MEMORY = textwrap.dedent("""
    import sys, tempfile
    from pathlib import Path
    import numpy as np
    import torch
    from nnbrain.models.cache import NpyStream
    from nnbrain.models.extract import extract_activations, stream_activations
    from nnbrain.models.zoo import build_architecture
    def status_mb(field):
        line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                    if x.startswith(field + ":"))
        return int(line.split()[1]) / 1024
    model = build_architecture("digitcnn", seed=0)
    x = np.random.default_rng(0).uniform(size=(20000, 1, 8, 8)).astype(np.float32)
    layers = ["conv1", "conv2"]
    extract_activations(model, x[:64], layers, pooling="flatten")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    base = status_mb("VmRSS")
    if sys.argv[1] == "stream":
        folder = Path(tempfile.mkdtemp())
        streams = {k: NpyStream(folder / f"{k}.npy", (20000, n)) for k, n in
                   zip(layers, (512, 1024))}
        stream_activations(model, x, layers, {k: s.write for k, s in streams.items()},
                           pooling="flatten")
        for s in streams.values():
            s.close()
    else:
        extract_activations(model, x, layers, pooling="flatten")
    print(status_mb("VmHWM") - base)
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_streaming_keeps_memory_to_about_one_batch() -> None:
    """123 MB of float32 activations stream through less than a fifth of that (one batch).

    Peak RSS growth after a warm-up, the peak reset through ``/proc/self/clear_refs``.
    """
    grown = {how: float(subprocess.run([sys.executable, "-c", STREAM_MEMORY, how],
                                       capture_output=True, text=True,
                                       check=True).stdout.split()[-1])
             for how in ("stream", "memory")}
    assert grown["memory"] > 200, grown  # float64 in memory: 246 MB
    assert grown["stream"] < 25, grown
