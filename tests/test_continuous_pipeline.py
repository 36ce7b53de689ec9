"""Whole-app run of a continuous design (the 7T study's recipe) with a planted truth.

The dataset (``tests/continuous_demo.py``): one participant, 2 runs x 4 blocks of synthetic
sound quilts; roiA carries the HRF-convolved ``fc1`` frame features of the 'trained' network,
roiB those of ``fc2``, roiC only a common block-onset response. One module-scoped run of the
participant level (``--design continuous --discard-seconds 6``) and the group level.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import continuous_demo  # noqa: E402

NNBRAIN = str(Path(sys.executable).parent / "nnbrain")
STEM = (f"sub-01_task-{continuous_demo.TASK}_space-MNI152NLin2009cAsym_atlas-nnbrainDemo")
CKA_MEASURES = ("cka", "ckarbf")


def _participant(ds: Path, out: Path, work: Path, spec: Path) -> list[str]:
    return [NNBRAIN, str(ds), str(out), "participant", "--model-spec", str(spec),
            "--participant-label", "01", "--design", "continuous", "--discard-seconds",
            str(continuous_demo.DISCARD_S), "--n-permutations", "200", "-w", str(work),
            "--nprocs", "1", "-q"]


@pytest.fixture(scope="module")
def continuous_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("continuous")
    ds = root / "ds"
    truth = continuous_demo.generate(ds)
    out = ds / "derivatives" / "nnbrain"
    participant = subprocess.run(_participant(ds, out, root / "work", truth["spec"]),
                                 capture_output=True, text=True, timeout=900)
    group = subprocess.run([NNBRAIN, str(ds), str(out), "group", "-w", str(root / "workg"), "-q"],
                           capture_output=True, text=True, timeout=900)
    return {"ds": ds, "out": out, "root": root, "truth": truth,
            "codes": [participant.returncode, group.returncode],
            "logs": [participant.stdout + participant.stderr, group.stdout + group.stderr]}


@pytest.mark.integration
def test_both_levels_succeed(continuous_run) -> None:
    assert continuous_run["codes"] == [0, 0], "\n".join(continuous_run["logs"])


def _table(out: Path, measure: str) -> pd.DataFrame:
    return pd.read_csv(out / "sub-01" / "func" / f"{STEM}_desc-{measure}_similarity.tsv",
                       sep="\t")


@pytest.mark.integration
@pytest.mark.parametrize("measure", CKA_MEASURES)
def test_planted_layers_are_recovered(continuous_run, measure: str) -> None:
    truth = continuous_run["truth"]
    table = _table(continuous_run["out"], measure)
    trained = table[(table["model"] == truth["model"]) & (table["weights"] == "trained")]
    assert len(trained) == 3 * len(truth["layers"])
    for roi, layer in truth["plant"].items():
        rows = trained[trained["roi"] == roi].set_index("layer")
        if layer is None:
            assert (rows["p_fwe"] >= 0.05).all(), rows
            continue
        assert rows["statistic"].idxmax() == layer, rows
        assert rows.loc[layer, "p_fwe"] < 0.05, rows
        assert rows.loc[layer, "n_voxels"] == truth["subjects"]["sub-01"]["n_voxels"][roi]


@pytest.mark.integration
def test_sidecars_describe_the_continuous_design(continuous_run) -> None:
    truth = continuous_run["truth"]
    for measure in (*CKA_MEASURES, "nss"):
        sidecar = json.loads((continuous_run["out"] / "sub-01" / "func"
                              / f"{STEM}_desc-{measure}_similarity.json").read_text())
        design = sidecar["Design"]
        assert design["Type"] == "continuous", (measure, design)
        assert design["DiscardSeconds"] == continuous_demo.DISCARD_S
        assert design["Blocks"] == truth["n_blocks"]
        assert design["ScansPerBlock"] == truth["rows_per_block"]
        assert design["Rows"] == truth["n_rows"]
    table = _table(continuous_run["out"], "cka")
    assert (table["n_scans"] == truth["n_rows"]).all()


@pytest.mark.integration
def test_group_level_writes_the_continuous_tables(continuous_run) -> None:
    for measure in (*CKA_MEASURES, "nss"):
        found = list(continuous_run["out"].glob(f"task-{continuous_demo.TASK}_*_desc-{measure}"
                                                "_similarity.tsv"))
        assert found, measure


@pytest.mark.integration
def test_rsa_is_refused_in_continuous_mode(continuous_run) -> None:
    root, ds = continuous_run["root"], continuous_run["ds"]
    out = root / "rsa_out"
    proc = subprocess.run(_participant(ds, out, root / "work_rsa", ds / "code"
                                       / "model_spec_rsa.yaml"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 65, proc.stdout + proc.stderr
    assert "rsa" in (proc.stdout + proc.stderr).lower()
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not written, written


def test_generator_is_deterministic(tmp_path: Path) -> None:
    """Two generations give identical stimuli, weights, BOLD, confounds, events and truth."""
    import nibabel as nib
    import soundfile
    import torch

    first = continuous_demo.generate(tmp_path / "a")
    second = continuous_demo.generate(tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*")
                           if p.is_file())
    for rel in files:
        a, b = tmp_path / "a" / rel, tmp_path / "b" / rel
        if rel.name.endswith(".nii.gz"):
            np.testing.assert_array_equal(np.asarray(nib.load(a).dataobj),
                                          np.asarray(nib.load(b).dataobj), err_msg=str(rel))
        elif rel.suffix == ".wav":
            np.testing.assert_array_equal(soundfile.read(str(a))[0], soundfile.read(str(b))[0])
        elif rel.suffix == ".pt":
            sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
            assert sa.keys() == sb.keys()
            for key in sa:
                assert torch.equal(sa[key], sb[key]), key
        else:
            assert a.read_bytes() == b.read_bytes(), rel
    for sa, sb in zip(first["signals"], second["signals"]):
        np.testing.assert_array_equal(sa, sb)
    # the design the app should find
    assert first["n_blocks"] == len(continuous_demo.RUNS) * continuous_demo.BLOCKS_PER_RUN
    assert first["n_rows"] == first["n_blocks"] * first["rows_per_block"]
    assert sorted(s for r in first["runs"] for s in r["stim_file"]) == first["stimuli"]
    events = pd.read_csv(tmp_path / "a" / "sub-01" / "func"
                         / f"sub-01_task-{continuous_demo.TASK}_run-01_events.tsv", sep="\t")
    assert list(events.columns) == ["onset", "duration", "trial_type", "stim_file"]
    assert len(events) == continuous_demo.BLOCKS_PER_RUN
    confounds = pd.read_csv(tmp_path / "a" / "derivatives" / "fmriprep" / "sub-01" / "func"
                            / f"sub-01_task-{continuous_demo.TASK}_run-01_desc-confounds_"
                            "timeseries.tsv", sep="\t")
    assert {"trans_x", "rot_z_derivative1_power2", "non_steady_state_outlier00"} <= set(
        confounds.columns)
