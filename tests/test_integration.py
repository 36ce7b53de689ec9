"""Whole-app runs on the demo dataset: planted truth, validator, pybids, DataLad, concurrency.

One module-scoped run: sub-01 and sub-02 as two concurrent participant jobs writing into the
same output dataset, then sub-03, then the group level.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import DEMO

pytestmark = pytest.mark.integration
NNBRAIN = str(Path(sys.executable).parent / "nnbrain")
#: The demo spec's measure labels.
MEASURES = ("rsa", "cka", "ckarbf", "nss")


def _participant(ds: Path, out: Path, work: Path, *labels: str) -> list[str]:
    return [NNBRAIN, str(ds), str(out), "participant", "--model-spec",
            str(ds / "code" / "model_spec.yaml"), "--participant-label", *labels,
            "-w", str(work), "--nprocs", "1", "-q"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("integration")
    ds = root / "ds"
    shutil.copytree(DEMO, ds)
    out = ds / "derivatives" / "nnbrain"
    jobs = [subprocess.Popen(_participant(ds, out, root / f"work{s}", s), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for s in ("01", "02")]
    logs = [job.communicate(timeout=600)[0] for job in jobs]
    codes = [job.returncode for job in jobs]
    third = subprocess.run(_participant(ds, out, root / "work03", "03"), capture_output=True,
                           text=True, timeout=600)
    group = subprocess.run([NNBRAIN, str(ds), str(out), "group", "-w", str(root / "workg"), "-q"],
                           capture_output=True, text=True, timeout=600)
    return {"ds": ds, "out": out, "root": root, "codes": codes + [third.returncode,
                                                                   group.returncode],
            "logs": logs + [third.stderr, group.stderr]}


def test_all_levels_succeed(demo_run) -> None:
    assert demo_run["codes"] == [0, 0, 0, 0], "\n".join(demo_run["logs"])


def _table(out: Path, subject: str, measure: str) -> pd.DataFrame:
    path = (out / f"sub-{subject}" / "func" / f"sub-{subject}_task-digits_space-"
            f"MNI152NLin2009cAsym_atlas-nnbrainDemo_desc-{measure}_similarity.tsv")
    return pd.read_csv(path, sep="\t")


@pytest.mark.parametrize("measure", ["rsa", "cka", "ckarbf"])
@pytest.mark.parametrize("subject", ["01", "02", "03"])
def test_planted_truth_is_recovered(demo_run, subject: str, measure: str) -> None:
    """Per participant: the planted layers are significant (FWE) with a CI above 0, and peak.

    roiB's plant (fc1) has a near twin, fc2 (a linear readout of fc1: their RDMs correlate
    0.88), so for RSA its peak is checked on the subject mean
    (:func:`test_planted_truth_peaks_in_the_subject_mean`); sub-03's RSA puts fc2 0.014 above.
    """
    truth = json.loads((DEMO / "code" / "ground_truth.json").read_text())
    table = _table(demo_run["out"], subject, measure)
    trained = table[(table["model"] == "digitcnn") & (table["weights"] == "trained")]
    assert len(trained) == 3 * 5
    for roi, layer in truth["plant"].items():
        rows = trained[trained["roi"] == roi].set_index("layer")
        assert rows["n_voxels"].iloc[0] == truth["subjects"][f"sub-{subject}"]["n_voxels"][roi]
        if layer is None:
            continue
        if roi == "roiA" or measure != "rsa":
            assert rows["statistic"].idxmax() == layer, rows
        assert rows.loc[layer, "p_value"] < 0.05 and rows.loc[layer, "p_fwe"] < 0.05
        assert 0 < rows.loc[layer, "ci_low"] < rows.loc[layer, "statistic"] < rows.loc[
            layer, "ci_high"]


def test_unplanted_roi_is_not_significant_beyond_chance(demo_run) -> None:
    """roiC holds no stimulus-specific signal: each (participant, measure) family of layers is
    tested at a 5% family-wise level, so of its 9 families at most one may reach p_fwe < .05
    (expected 0.45 under the null), and no layer has a subject-mean statistic above 0.1."""
    significant = 0
    for subject in ("01", "02", "03"):
        for measure in ("rsa", "cka", "ckarbf"):
            table = _table(demo_run["out"], subject, measure)
            rows = table[(table["weights"] == "trained") & (table["roi"] == "roiC")]
            significant += int((rows["p_fwe"] < 0.05).any())
    assert significant <= 1
    space = "space-MNI152NLin2009cAsym_atlas-nnbrainDemo"
    for measure in ("rsa", "cka", "ckarbf"):
        mean = pd.read_csv(demo_run["out"] / f"task-digits_{space}_desc-{measure}Mean_similarity"
                                             ".tsv", sep="\t")
        roi_c = mean[(mean["weights"] == "trained") & (mean["roi"] == "roiC")]
        assert (roi_c["mean"] < 0.1).all(), roi_c


@pytest.mark.parametrize("measure", ["rsa", "cka", "ckarbf"])
def test_planted_truth_peaks_in_the_subject_mean(demo_run, measure: str) -> None:
    truth = json.loads((DEMO / "code" / "ground_truth.json").read_text())
    space = "space-MNI152NLin2009cAsym_atlas-nnbrainDemo"
    mean = pd.read_csv(demo_run["out"] / f"task-digits_{space}_desc-{measure}Mean_similarity.tsv",
                       sep="\t")
    trained = mean[mean["weights"] == "trained"]
    for roi in ("roiA", "roiB"):
        rows = trained[trained["roi"] == roi].set_index("layer")
        assert rows["mean"].idxmax() == truth["plant"][roi], rows


def test_validator_passes_on_output_root(demo_run) -> None:
    validator = Path(sys.executable).parent / "bids-validator-deno"
    proc = subprocess.run([str(validator), "--format", "json", str(demo_run["out"])],
                          capture_output=True, text=True)
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert proc.returncode == 0 and not errors, errors


def _expected_files() -> set[str]:
    space = "space-MNI152NLin2009cAsym_atlas-nnbrainDemo"
    files = {"dataset_description.json", ".bidsignore", "README.md", "descriptions.tsv",
             "descriptions.json", ".gitattributes", "code/model_spec.yaml", "code/nnbrain.toml",
             "code/nnbrain_bids_config.json"}
    for sub in ("01", "02", "03"):
        stem = f"sub-{sub}/func/sub-{sub}_task-digits_{space}"
        for roi in ("roiA", "roiB", "roiC"):
            for name in (f"label-{roi}_desc-betas_patterns", f"label-{roi}_desc-correlation_relmat"):
                files |= {f"{stem}_{name}.tsv", f"{stem}_{name}.json"}
        for measure in MEASURES:
            files |= {f"{stem}_desc-{measure}_similarity.tsv", f"{stem}_desc-{measure}_similarity.json"}
    for weights in ("trained", "ckptepoch1", "ckptepoch2", "ckptepoch4", "random1", "random2"):
        for layer in ("conv1", "conv2", "conv3", "fc1", "fc2"):
            stem = f"models/model-digitcnn/model-digitcnn_weights-{weights}_layer-{layer}"
            files |= {f"{stem}_activations.npy", f"{stem}_activations.json",
                      f"{stem}_desc-correlation_relmat.tsv", f"{stem}_desc-correlation_relmat.json"}
    for desc in [d for m in MEASURES for d in (m, f"{m}Mean")]:
        files |= {f"task-digits_{space}_desc-{desc}_similarity.tsv",
                  f"task-digits_{space}_desc-{desc}_similarity.json"}
    files |= {f"figures/task-digits_{space}_desc-{m}_similarity.png" for m in MEASURES}
    return files


def _tree(out: Path) -> set[str]:
    found = set()
    for path in out.rglob("*"):
        rel = path.relative_to(out).as_posix()
        if rel.startswith((".git/", ".datalad/", "logs/")) or rel in (".git", ".datalad"):
            continue
        if path.is_file() or path.is_symlink():
            found.add(rel)
    return found


def test_output_tree_matches_golden_list(demo_run) -> None:
    expected, found = _expected_files(), _tree(demo_run["out"])
    missing, extra = sorted(expected - found), sorted(found - expected)
    assert not missing and not extra, (f"expected but not found: {missing}\n"
                                       f"found but not expected: {extra}")
    logs = sorted((demo_run["out"] / "logs").iterdir())
    assert len(logs) == 4
    assert all((d / "nnbrain.log").is_file() and (d / "nnbrain.toml").is_file() for d in logs)


def test_pybids_indexes_every_output(demo_run) -> None:
    from nnbrain.utils.bids import output_layout

    layout = output_layout(demo_run["out"])
    indexed = {Path(f).relative_to(demo_run["out"]).as_posix() for f in layout.get(return_type="file")}
    data = {f for f in _expected_files() if f.startswith(("sub-", "models/", "task-"))}
    assert data <= indexed, sorted(data - indexed)
    acts = layout.get(suffix="activations", weights="trained", layer="fc1", extension=".npy")
    assert [Path(a.path).name for a in acts] == [
        "model-digitcnn_weights-trained_layer-fc1_activations.npy"]
    assert len(layout.get(suffix="similarity", desc="rsa", subject=["01", "02", "03"],
                          extension=".tsv")) == 3


def test_sidecars_state_method_parameters_and_sources(demo_run) -> None:
    sidecar = json.loads((demo_run["out"] / "sub-02" / "func" / (
        "sub-02_task-digits_space-MNI152NLin2009cAsym_atlas-nnbrainDemo_desc-rsa_similarity.json"
    )).read_text())
    assert sidecar["PermutationTest"]["NumberOfPermutations"] == 1000
    assert sidecar["PermutationTest"]["Seed"] == 0
    assert sidecar["Parameters"] == {"Comparator": "tau-a", "RDM": "correlation",
                                     "Permutations": 1000, "BootstrapSamples": 1000}
    assert sidecar["Measure"] == "rsa"
    assert sidecar["ConfidenceInterval"]["Samples"] == 1000
    assert sidecar["ConfidenceInterval"]["Seed"] == 0
    rbf = json.loads((demo_run["out"] / "sub-02" / "func" / (
        "sub-02_task-digits_space-MNI152NLin2009cAsym_atlas-nnbrainDemo_desc-ckarbf_similarity"
        ".json")).read_text())
    assert rbf["Parameters"]["Kernel"] == "rbf" and rbf["Parameters"]["Sigma"] == 1.0
    assert rbf["Parameters"]["Estimator"].startswith("unbiased")
    assert sidecar["NumberOfStimuli"] == 30
    assert "bids:fmriprep:sub-02/func/sub-02_task-digits_run-01_space-MNI152NLin2009cAsym_res-2" \
           "_desc-preproc_bold.nii.gz" in sidecar["Sources"]
    truth = json.loads((DEMO / "code" / "ground_truth.json").read_text())
    trained = [m for m in sidecar["Models"] if m["weights"] == "trained"][0]
    assert trained["WeightsSHA256"] == truth["weights_sha256"]
    random = [m for m in sidecar["Models"] if m["weights"] == "random2"][0]
    assert random["Seed"] == 2 and random["WeightsSHA256"] is None
    assert random["WeightsSource"] == "random"
    checkpoints = sorted((m["Epoch"], m["weights"]) for m in sidecar["Models"]
                         if m["WeightsSource"] == "checkpoint")
    assert checkpoints == [(1, "ckptepoch1"), (2, "ckptepoch2"), (4, "ckptepoch4")]
    acts = json.loads((demo_run["out"] / "models" / "model-digitcnn" / (
        "model-digitcnn_weights-random2_layer-conv1_activations.json")).read_text())
    assert acts["Input"] == {"kind": "image", "shape": [1, 8, 8]}
    assert acts["Dtype"] == "float32" and acts["Seed"] == 2 and acts["Pooling"] == "channelmean"
    assert acts["Shape"] == [30, 8] and "Reduction" not in acts
    description = json.loads((demo_run["out"] / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "nnbrain"
    assert description["DatasetLinks"]["raw"] == "../.."


def _git(out: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(out), *args], capture_output=True, text=True,
                          check=True).stdout


def test_datalad_saves_one_commit_per_level_and_is_clean(demo_run) -> None:
    out = demo_run["out"]
    assert (out / ".datalad" / "config").is_file()
    subjects = sorted(s for s in _git(out, "log", "--format=%s").splitlines()
                      if s.startswith("nnbrain"))
    assert subjects == ["nnbrain group level: 3 participants (sub-01, sub-02, sub-03)",
                        "nnbrain participant level: sub-01", "nnbrain participant level: sub-02",
                        "nnbrain participant level: sub-03"]
    status = _git(out, "status", "--porcelain")
    assert status == "", status
    subprocess.run(["git", "-C", str(out), "fsck", "--no-progress"], check=True,
                   capture_output=True)
    annexed = _git(out, "annex", "find", "--include=*").split()
    assert any(f.endswith("_activations.npy") for f in annexed)
    assert not any(f.endswith(".tsv") for f in annexed)


def test_rerun_refuses_to_overwrite_without_flag(demo_run) -> None:
    ds, out, root = demo_run["ds"], demo_run["out"], demo_run["root"]
    head = _git(out, "rev-parse", "HEAD")
    proc = subprocess.run(_participant(ds, out, root / "work01", "01"), capture_output=True,
                          text=True)
    assert proc.returncode == 73
    assert "outputs exist (sub-01); pass --overwrite" in proc.stderr
    group = [NNBRAIN, str(ds), str(out), "group", "-w", str(root / "workg"), "-q"]
    proc = subprocess.run(group, capture_output=True, text=True)
    assert proc.returncode == 73 and "pass --overwrite" in proc.stderr
    assert _git(out, "rev-parse", "HEAD") == head
    proc = subprocess.run(group + ["--overwrite"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert _git(out, "status", "--porcelain") == ""


def test_neural_similarity_score_ranks_trained_above_random(demo_run) -> None:
    """The plant is in the trained network: its score at the planted ROI-layer pairs is > 0."""
    from nnbrain.core.scores import neural_similarity_score

    cka = _table(demo_run["out"], "01", "ckarbf")
    nss = _table(demo_run["out"], "01", "nss")
    assert set(nss["weights"]) == {"trained", "ckptepoch1", "ckptepoch2", "ckptepoch4"}
    assert (nss["n_seeds"] == 2).all() and nss["p_value"].isna().all()

    def grid(weights: str) -> np.ndarray:
        part = cka[cka["weights"] == weights].pivot(index="roi", columns="layer",
                                                    values="statistic")
        return part.loc[["roiA", "roiB", "roiC"], ["conv1", "conv2", "conv3", "fc1", "fc2"]]

    trained = ["trained", "ckptepoch1", "ckptepoch2", "ckptepoch4"]
    expected = neural_similarity_score(np.stack([grid(w).to_numpy() for w in trained]),
                                       np.stack([grid(w).to_numpy() for w in ("random1",
                                                                                "random2")]))
    got = nss[nss["weights"] == "trained"].pivot(index="roi", columns="layer",
                                                  values="statistic")
    np.testing.assert_allclose(got.loc[["roiA", "roiB", "roiC"],
                                       ["conv1", "conv2", "conv3", "fc1", "fc2"]].to_numpy(),
                               expected.score[0], rtol=0, atol=1e-8)  # TSVs keep 10 digits
    assert got.loc["roiB", "fc1"] > 0.5 and got.loc["roiA", "conv1"] > 0


def test_group_mean_has_noise_ceilings_and_subject_bootstrap_cis(demo_run) -> None:
    from nnbrain.core.noise_ceiling import rdm_noise_ceiling
    from nnbrain.interfaces.group import read_relmat

    out = demo_run["out"]
    space = "space-MNI152NLin2009cAsym_atlas-nnbrainDemo"
    mean = pd.read_csv(out / f"task-digits_{space}_desc-rsaMean_similarity.tsv", sep="\t")
    stacked = pd.read_csv(out / f"task-digits_{space}_desc-rsa_similarity.tsv", sep="\t")
    for roi in ("roiA", "roiB", "roiC"):
        rdms = np.stack([read_relmat(str(
            out / f"sub-{s}" / "func" / f"sub-{s}_task-digits_{space}_label-{roi}_desc-"
                                        "correlation_relmat.tsv")) for s in ("01", "02", "03")])
        lower, upper = rdm_noise_ceiling(rdms, "tau-a")
        rows = mean[mean["roi"] == roi]
        np.testing.assert_allclose(rows["noise_ceiling_lower"], lower, rtol=1e-8)
        np.testing.assert_allclose(rows["noise_ceiling_upper"], upper, rtol=1e-8)
        assert lower < upper
    top = mean[(mean["weights"] == "trained") & (mean["roi"] == "roiA") & (mean["layer"] == "conv1")]
    values = stacked[(stacked["weights"] == "trained") & (stacked["roi"] == "roiA")
                     & (stacked["layer"] == "conv1")]["statistic"]
    assert float(top["mean"].iloc[0]) == pytest.approx(values.mean())
    # three participants: the bootstrap means lie between the smallest and largest value
    assert values.min() - 1e-12 <= float(top["ci_low"].iloc[0]) <= float(top["ci_high"].iloc[0])
    assert float(top["ci_high"].iloc[0]) <= values.max() + 1e-12
    assert float(top["noise_ceiling_upper"].iloc[0]) > float(top["mean"].iloc[0])
    sidecar = json.loads((out / f"task-digits_{space}_desc-rsaMean_similarity.json").read_text())
    assert sidecar["NoiseCeiling"]["Comparator"] == "tau-a"
    assert sidecar["ConfidenceInterval"]["Samples"] == 1000
    nss_mean = pd.read_csv(out / f"task-digits_{space}_desc-nssMean_similarity.tsv", sep="\t")
    assert "noise_ceiling_lower" not in nss_mean
