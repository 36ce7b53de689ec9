"""Build every workflow without running it and inspect the graph (fMRIPrep's test_bold_wf style)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnbrain.cli.parser import build_bids_app_parser
from nnbrain.cli.run import _plan_participant, settings_from_args
from nnbrain.workflows.activations import init_activations_wf
from nnbrain.workflows.base import init_nnbrain_wf
from nnbrain.workflows.group import init_group_wf
from nnbrain.workflows.preprocess import init_preprocess_wf
from nnbrain.workflows.roi import init_roi_wf
from nnbrain.workflows.similarity import init_similarity_wf


@pytest.fixture
def plan_and_settings(demo_copy: Path):
    def make(*labels: str):
        argv = [str(demo_copy), str(demo_copy.parent / "out"), "participant", "--model-spec",
                str(demo_copy / "code" / "model_spec.yaml"), "-w", str(demo_copy.parent / "w")]
        if labels:
            argv += ["--participant-label", *labels]
        settings = settings_from_args(build_bids_app_parser().parse_args(argv))
        return _plan_participant(settings), settings
    return make


def _io(workflow, node: str) -> set[str]:
    return set(workflow.get_node(node).outputs.copyable_trait_names())


@pytest.mark.parametrize("labels, n_subjects", [((), 3), (("01",), 1), (("sub-02", "03"), 2)])
def test_nnbrain_wf_graph(plan_and_settings, labels, n_subjects) -> None:
    plan, settings = plan_and_settings(*labels)
    assert len(plan.subjects) == n_subjects
    assert plan.task == "digits" and len(plan.stimuli) == 30 and plan.atlas.label == "nnbrainDemo"
    wf = init_nnbrain_wf(settings, plan, Path(settings.work_dir) / "staging")
    names = wf.list_node_names()
    subject_wfs = sorted({n.split(".")[0] for n in names if n.startswith("single_subject_")})
    assert subject_wfs == [f"single_subject_{s}_wf" for s in sorted(plan.subjects)]
    assert "activations_wf.extract_digitcnn_trained" in names
    for weights in ("ckptepoch1", "ckptepoch2", "ckptepoch4", "random1", "random2"):
        assert f"activations_wf.extract_digitcnn_{weights}" in names
    assert "ds_model" in names
    for s in plan.subjects:
        for node in ("preprocess_wf.denoise", "preprocess_wf.betas", "roi_wf.roi_patterns",
                     "similarity_wf.similarity", "ds_subject"):
            assert f"single_subject_{s}_wf.{node}" in names


def test_subworkflows_expose_their_contract() -> None:
    pre = init_preprocess_wf()
    assert _io(pre, "outputnode") == {"betas", "trials"}
    assert set(pre.get_node("inputnode").inputs.copyable_trait_names()) == {
        "bold", "mask", "confounds", "events", "t_r"}
    assert pre.get_node("denoise").iterfield == ["bold", "mask", "confounds", "t_r"]
    roi = init_roi_wf(stimuli=["a.png", "b.png"])
    assert _io(roi, "outputnode") == {"patterns", "rois"}
    assert roi.get_node("roi_patterns").inputs.stimuli == ["a.png", "b.png"]
    sim = init_similarity_wf(n_permutations=50, seed=3)
    node = sim.get_node("similarity")
    assert (node.inputs.n_permutations, node.inputs.seed, node.inputs.comparator) == (50, 3,
                                                                                        "spearman")
    assert _io(sim, "outputnode") == {"rsa", "cka", "nss", "brain_rdms"}


def test_activations_wf_one_node_per_weights_source(plan_and_settings, demo_copy) -> None:
    plan, _ = plan_and_settings("01")
    stimuli = [str(demo_copy / "stimuli" / s) for s in plan.stimuli]
    wf = init_activations_wf(models=plan.models, stimuli=stimuli, omp_nthreads=2)
    extract = sorted(n for n in wf.list_node_names() if n.startswith("extract_"))
    assert extract == ["extract_digitcnn_ckptepoch1", "extract_digitcnn_ckptepoch2",
                       "extract_digitcnn_ckptepoch4", "extract_digitcnn_random1",
                       "extract_digitcnn_random2", "extract_digitcnn_trained"]
    assert wf.get_node("extract_digitcnn_random2").inputs.weights["seed"] == 2
    assert wf.get_node("extract_digitcnn_ckptepoch4").inputs.weights["epoch"] == 4
    assert wf.get_node("extract_digitcnn_trained").n_procs == 2


def test_group_wf_one_sink_per_measure(tmp_path: Path) -> None:
    table = tmp_path / "a.tsv"
    table.write_text("model\n")
    rows = [("01", str(table), "bids::a.tsv")]
    wf = init_group_wf(tables={"rsa": rows, "cka": rows}, entities={"task": "t", "space": "s",
                                                                    "atlas": "a"},
                       staging_dir=tmp_path, work_dir=tmp_path)
    assert sorted(wf.list_node_names()) == ["ds_group_cka", "ds_group_rsa"]
