"""Whole-app run on an event-related design whose stimuli are audio clips, with a planted truth.

One module-scoped run on the dataset of :mod:`audio_demo` (20 synthetic WAV clips, 2 subjects x
3 runs, ``word_cnn2d`` on 32 log-mel bands x 32 frames): the participant level for both
subjects, then the group level, through the CLI as subprocesses. The official validator runs
(no ``--skip-bids-validation``): it accepts WAV files under ``stimuli/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import audio_demo

pytestmark = pytest.mark.integration
NNBRAIN = str(Path(sys.executable).parent / "nnbrain")
SPACE = "space-MNI152NLin2009cAsym_atlas-nnbrainDemo"


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("audio")
    ds = root / "ds"
    start = time.perf_counter()
    truth = audio_demo.generate(ds)
    timings = {"generate": time.perf_counter() - start}
    out = ds / "derivatives" / "nnbrain"
    commands = {
        "participant": [NNBRAIN, str(ds), str(out), "participant", "--model-spec",
                        str(truth["spec"]), "-w", str(root / "work"), "--nprocs", "2",
                        "--n-permutations", "200", "-q"],
        "group": [NNBRAIN, str(ds), str(out), "group", "-w", str(root / "workg"),
                  "--n-permutations", "200", "-q"],
    }
    procs = {}
    for level, command in commands.items():
        start = time.perf_counter()
        procs[level] = subprocess.run(command, capture_output=True, text=True, timeout=600)
        timings[level] = time.perf_counter() - start
    print("audio pipeline timings (s):", {k: round(v, 1) for k, v in timings.items()})
    return {"ds": ds, "out": out, "truth": truth, "procs": procs, "timings": timings}


def _table(out: Path, subject: str, measure: str) -> pd.DataFrame:
    path = (out / f"sub-{subject}" / "func"
            / f"sub-{subject}_task-{audio_demo.TASK}_{SPACE}_desc-{measure}_similarity.tsv")
    return pd.read_csv(path, sep="\t")


def test_both_levels_succeed(audio_run) -> None:
    for level, proc in audio_run["procs"].items():
        assert proc.returncode == 0, f"{level}:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("measure", ["rsa", "cka"])
@pytest.mark.parametrize("subject", audio_demo.SUBJECTS)
def test_planted_truth_is_recovered(audio_run, subject: str, measure: str) -> None:
    truth = audio_run["truth"]
    table = _table(audio_run["out"], subject, measure)
    trained = table[(table["model"] == audio_demo.MODEL) & (table["weights"] == "trained")]
    assert len(trained) == 3 * len(audio_demo.LAYERS)
    assert (trained["n_stimuli"] == audio_demo.N_CLIPS).all()
    for roi, layer in truth["plant"].items():
        rows = trained[trained["roi"] == roi].set_index("layer")
        assert (rows["n_voxels"] == truth["subjects"][f"sub-{subject}"]["n_voxels"][roi]).all()
        if layer is None:
            assert (rows["p_fwe"] >= 0.05).all(), rows
            continue
        assert rows["statistic"].idxmax() == layer, rows
        assert rows.loc[layer, "p_fwe"] < 0.05, rows


def test_activations_are_the_planted_ones(audio_run) -> None:
    """The app's activations of the trained network are those the plant was computed from."""
    models = audio_run["out"] / "models" / f"model-{audio_demo.MODEL}"
    for layer, expected in audio_run["truth"]["activations"].items():
        stem = f"model-{audio_demo.MODEL}_weights-trained_layer-{layer}_activations"
        got = np.load(models / f"{stem}.npy")
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=layer)


@pytest.mark.parametrize("weights", ["trained", "random1", "random2"])
def test_activation_sidecars_record_audio_input_and_preprocessing(audio_run,
                                                                  weights: str) -> None:
    models = audio_run["out"] / "models" / f"model-{audio_demo.MODEL}"
    n_units = {"conv1": 32, "fc1": 128, "fc2": 8}
    for layer in audio_demo.LAYERS:
        sidecar = json.loads((models / f"model-{audio_demo.MODEL}_weights-{weights}_layer-"
                                        f"{layer}_activations.json").read_text())
        assert sidecar["Input"] == {"kind": "audio", "shape": [32, 32]}
        assert sidecar["Preprocessing"] == {"audio": audio_demo.AUDIO}
        assert sidecar["Architecture"] == audio_demo.ARCHITECTURE
        assert sidecar["Pooling"] == "channelmean"
        assert sidecar["Shape"] == [audio_demo.N_CLIPS, n_units[layer]]
        assert sidecar["Stimuli"] == audio_run["truth"]["stimuli"]
        assert sidecar["Seed"] == (None if weights == "trained" else int(weights[-1]))


def test_nss_tables_exist(audio_run) -> None:
    out = audio_run["out"]
    for subject in audio_demo.SUBJECTS:
        nss = _table(out, subject, "nss")
        assert set(nss["weights"]) == {"trained"}
        assert len(nss) == 3 * len(audio_demo.LAYERS)
        assert (nss["n_seeds"] == len(audio_demo.RANDOM_SEEDS)).all()
        assert np.isfinite(nss["statistic"]).all()
    mean = pd.read_csv(out / f"task-{audio_demo.TASK}_{SPACE}_desc-nssMean_similarity.tsv",
                       sep="\t")
    assert (mean["n_participants"] == len(audio_demo.SUBJECTS)).all()
