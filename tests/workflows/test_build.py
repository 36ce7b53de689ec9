"""Build every workflow without running it and inspect the graph (fMRIPrep's test_bold_wf style)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnbrain.cli.parser import build_bids_app_parser
from nnbrain.cli.run import _plan_participant, settings_from_args
from nnbrain.workflows.activations import init_activations_wf
from nnbrain.workflows.base import init_nnbrain_wf
from nnbrain.measures import Measure
from nnbrain.workflows.group import GroupInputs, init_group_wf
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
        for node in ("preprocess_wf.betas", "roi_wf.roi_patterns",
                     "similarity_wf.similarity", "ds_subject"):
            assert f"single_subject_{s}_wf.{node}" in names


def test_subworkflows_expose_their_contract() -> None:
    pre = init_preprocess_wf()
    assert _io(pre, "outputnode") == {"betas", "trials"}
    assert set(pre.get_node("inputnode").inputs.copyable_trait_names()) == {
        "bold", "mask", "confounds", "events", "t_r"}
    assert pre.get_node("betas").iterfield == ["bold", "mask", "confounds", "events", "t_r"]
    roi = init_roi_wf(stimuli=["a.png", "b.png"])
    assert _io(roi, "outputnode") == {"patterns", "rois"}
    assert roi.get_node("roi_patterns").inputs.stimuli == ["a.png", "b.png"]
    measures = (Measure("rsa", "rsa", permutations=50), Measure("k", "cka", kernel="rbf",
                                                                permutations=50),
                Measure("n", "nss", cka="k"))
    sources = [{"model": "m", "weights": "random1", "kind": "random", "group": "random"}]
    sim = init_similarity_wf(measures=measures, weight_sources=sources, seed=3)
    node = sim.get_node("similarity")
    assert node.inputs.seed == 3 and node.inputs.weight_sources == sources
    assert [Measure.from_dict(m) for m in node.inputs.measures] == list(measures)
    assert _io(sim, "outputnode") == {"tables", "brain_rdms"}


def test_plan_has_the_spec_measures_with_permutations_resolved(plan_and_settings) -> None:
    plan, settings = plan_and_settings("01")
    assert [(m.label, m.kind) for m in plan.measures] == [
        ("rsa", "rsa"), ("cka", "cka"), ("ckarbf", "cka"), ("nss", "nss")]
    assert plan.measures[0].comparator == "tau-a"
    assert plan.measures[2].kernel == "rbf" and plan.measures[3].cka == "ckarbf"
    assert [m.permutations for m in plan.measures] == [settings.n_permutations] * 3 + [None]
    wf = init_nnbrain_wf(settings, plan, Path(settings.work_dir) / "staging")
    node = wf.get_node("single_subject_01_wf").get_node("similarity_wf").get_node("similarity")
    assert [m["label"] for m in node.inputs.measures] == ["rsa", "cka", "ckarbf", "nss"]
    assert wf.get_node("ds_model").inputs.rdm_methods == ["correlation"]


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
    measures = [GroupInputs("rsa", {"Measure": "rsa"}, rows, {"roiA": [str(table)]}),
                GroupInputs("ckarbf", {"Measure": "cka"}, rows)]
    wf = init_group_wf(measures=measures, entities={"task": "t", "space": "s", "atlas": "a"},
                       seed=4, staging_dir=tmp_path, work_dir=tmp_path)
    assert sorted(wf.list_node_names()) == ["ds_group_ckarbf", "ds_group_rsa"]
    node = wf.get_node("ds_group_rsa")
    assert node.inputs.roi_rdms == {"roiA": [str(table)]} and node.inputs.seed == 4


def test_continuous_design_graph(plan_and_settings) -> None:
    import dataclasses

    plan, settings = plan_and_settings("01")
    settings = dataclasses.replace(settings, design="continuous", discard_seconds=4.0)
    plan = dataclasses.replace(plan, measures=tuple(m for m in plan.measures if m.kind != "rsa"))
    wf = init_nnbrain_wf(settings, plan, Path(settings.work_dir) / "staging")
    names = wf.list_node_names()
    stem = "single_subject_01_wf"
    for node in ("timeseries_wf.denoise", "timeseries_wf.roi_timeseries", "align_wf.align",
                 "similarity_wf.similarity", "ds_subject"):
        assert f"{stem}.{node}" in names
    assert not any(".preprocess_wf." in n or ".roi_wf." in n for n in names)
    subject = wf.get_node(stem)
    assert subject.get_node("timeseries_wf").get_node("roi_timeseries").inputs.discard_seconds \
        == 4.0
    extract = wf.get_node("activations_wf").get_node("extract_digitcnn_trained")
    assert extract.inputs.model_spec["frames"] is True
    similarity = subject.get_node("similarity_wf")
    assert "rows" in similarity.get_node("inputnode").inputs.copyable_trait_names()
