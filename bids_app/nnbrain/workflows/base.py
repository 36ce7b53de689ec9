"""The top-level participant workflow: the only module that reads the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nnbrain import __version__
from nnbrain.config import Settings
from nnbrain.interfaces.similarity import CI_LEVEL
from nnbrain.measures import Measure
from nnbrain.spec import ModelSpec
from nnbrain.utils.bids import SPACE, AtlasFiles, RunData, bids_uri
from nnbrain.workflows.activations import init_activations_wf
from nnbrain.workflows.continuous import init_align_wf, init_timeseries_wf
from nnbrain.workflows.outputs import ds_model, ds_subject
from nnbrain.workflows.preprocess import init_preprocess_wf
from nnbrain.workflows.roi import init_roi_wf
from nnbrain.workflows.similarity import init_similarity_wf

HIGH_PASS_HZ = 1.0 / 128
#: Per-run inputs of the preprocessing workflows.
RUN_FIELDS = ["bold", "mask", "confounds", "events", "t_r"]


@dataclass(frozen=True)
class Plan:
    """What the participant level will process, resolved from the dataset before any writing."""

    subjects: dict[str, list[RunData]]
    task: str
    stimuli: list[str]
    atlas: AtlasFiles
    models: tuple[ModelSpec, ...]
    measures: tuple[Measure, ...]
    """With permutation counts resolved (:func:`nnbrain.measures.resolve_measures`)."""
    dataset_links: dict[str, Path]


def _measure_parameters(measure: Measure, seed: int, design: str = "event") -> dict:
    """Sidecar description of one measure: method, parameters, statistic, test and CI."""
    if measure.kind == "nss":
        return {"Measure": "nss",
                "Method": "neural similarity score (eq. 3 of the 7T speech-CNN study)",
                "Parameters": {**measure.parameters(),
                               "Pool": "within subject, per random seed: every trained and "
                                       "checkpoint source of the model plus that seed's "
                                       "random network, over all ROI-layer pairs",
                               "SD": "ddof=0", "Seeds": "mean over random seeds; score_sd "
                                                        "is their SD (ddof=0)"},
                "Statistic": f"z(CKA of this weights source) - z(CKA of the random network), "
                             f"CKA from the desc-{measure.cka} table",
                "PermutationTest": None, "ConfidenceInterval": None}
    if measure.kind == "rsa":
        method = "representational similarity analysis"
        statistic = (f"{measure.comparator} between the ROI RDM and the layer RDM "
                     f"({measure.rdm} dissimilarity)")
        permuted = "stimulus labels (rows and columns of the ROI RDM together)"
        resampled = ("stimuli with replacement; pairs of two copies of a stimulus dropped "
                     "(rsatoolbox bootstrap_sample_pattern)")
    else:
        method = "centered kernel alignment (Kornblith et al. 2019)"
        statistic = (f"{'unbiased' if measure.unbiased else 'biased'} {measure.kernel} CKA "
                     "between the ROI patterns and the layer activations")
        permuted = "rows (stimuli) of the ROI patterns"
        resampled = ("stimuli with replacement; unbiased estimator over the distinct drawn "
                     "stimuli (a copy adds only self-pairs), biased estimator over the sample "
                     "as drawn; RBF bandwidth re-estimated per sample")
        if design == "continuous":
            permuted = ("the assignment of stimuli to block slots (randomization test): the "
                        "features of each assignment recomputed (placed at the slots' onsets, "
                        "HRF-convolved, cleaned like the BOLD); rows and the BOLD untouched")
            resampled = ("stimulation blocks with replacement; CKA over the scans of the "
                         "drawn blocks (distinct blocks for the unbiased estimator); RBF "
                         "bandwidth re-estimated per sample")
    test = None
    if measure.permutations:
        test = {"NumberOfPermutations": measure.permutations, "Seed": seed,
                "Permuted": permuted, "Tail": "upper (one-sided)",
                "PValue": "(1 + #{null >= statistic}) / (1 + NumberOfPermutations)",
                "FamilyWiseCorrection": "max-statistic across the layers of a model x weights"}
    ci = None
    if measure.bootstrap:
        ci = {"Level": CI_LEVEL, "Method": "percentile bootstrap", "Samples": measure.bootstrap,
              "Seed": seed, "Resampled": resampled}
    return {"Measure": measure.kind, "Method": method, "Parameters": measure.parameters(),
            "Statistic": statistic, "PermutationTest": test, "ConfidenceInterval": ci}


def method_parameters(settings: Settings, measures: tuple[Measure, ...]) -> dict:
    """Everything the sidecars must state about how the numbers were made."""
    import nilearn
    import numpy
    import scipy
    import torch

    return {
        "glm": {"Model": "least-squares-all (one regressor per trial)", "HRF": "glover",
                "DriftModel": "cosine", "HighPassHz": HIGH_PASS_HZ, "NoiseModel": "ols",
                "Confounds": "24 motion parameters + non_steady_state_outlier columns in the "
                             "design, beside the trial and cosine drift regressors",
                "Aggregation": "mean beta over repetitions of each stimulus"},
        "denoising": ("24 motion parameters + non_steady_state_outlier columns + the block "
                      "response (a boxcar per block, Glover HRF) regressed out, linear detrend, "
                      "high-pass (nilearn clean_img); the aligned network features are cleaned "
                      "identically (nilearn signal.clean)"),
        "rdm_methods": list(dict.fromkeys(m.rdm for m in measures if m.kind == "rsa")),
        "measures": {m.label: _measure_parameters(m, settings.random_seed, settings.design)
                     for m in measures},
        "software": {"nnbrain": __version__, "numpy": numpy.__version__,
                     "scipy": scipy.__version__, "nilearn": nilearn.__version__,
                     "torch": torch.__version__},
    }


def weight_sources(models: tuple[ModelSpec, ...]) -> list[dict]:
    """``model``, ``weights``, ``kind`` and ``group`` of every weight source of the spec."""
    return [{"model": m.name, "weights": w.label, "kind": w.kind, "group": w.group or w.label}
            for m in models for w in m.weights]


def init_single_subject_wf(*, subject: str, runs: list[RunData], plan: Plan, settings: Settings,
                           staging_dir: Path, name: str) -> pe.Workflow:
    """Preprocess, extract ROI patterns (or time series) and compare with the network layers for
    one participant.

    Inputs
    ------
    activations, activation_metas : list of str
        From :func:`init_activations_wf` (frame-level for a continuous design).
    """
    workflow = pe.Workflow(name=name)
    continuous = settings.design == "continuous"
    inputnode = pe.Node(niu.IdentityInterface(fields=["activations", "activation_metas"]),
                        name="inputnode")
    runs_node = pe.Node(niu.IdentityInterface(fields=["bold", "mask", "confounds", "events",
                                                      "t_r"]), name="runs")
    runs_node.inputs.bold = [str(r.bold) for r in runs]
    runs_node.inputs.mask = [str(r.mask) for r in runs]
    runs_node.inputs.confounds = [str(r.confounds) for r in runs]
    runs_node.inputs.events = [str(r.events) for r in runs]
    runs_node.inputs.t_r = [r.tr for r in runs]
    similarity_wf = init_similarity_wf(measures=plan.measures,
                                       weight_sources=weight_sources(plan.models),
                                       seed=settings.random_seed, continuous=continuous)
    sources = [bids_uri(p, plan.dataset_links) for r in runs
               for p in (r.bold, r.mask, r.confounds, r.events)]
    sources += [bids_uri(plan.atlas.image, plan.dataset_links)]
    ds_sub = ds_subject(staging_dir=staging_dir, subject=subject, task=plan.task, space=SPACE,
                        atlas=plan.atlas.label, stimuli=plan.stimuli, sources=sources,
                        parameters=method_parameters(settings, plan.measures))
    brain = (_connect_continuous if continuous else _connect_event)(
        workflow, runs_node, inputnode, similarity_wf, ds_sub, plan, settings)
    workflow.connect([
        (brain, ds_sub, [("outputnode.rois", "rois")]),
        (similarity_wf, ds_sub, [("outputnode.tables", "tables"),
                                 ("outputnode.brain_rdms", "brain_rdms")]),
        (inputnode, ds_sub, [("activation_metas", "activation_metas")]),
    ])
    return workflow


def _connect_event(workflow: pe.Workflow, runs_node: pe.Node, inputnode: pe.Node,
                   similarity_wf: pe.Workflow, ds_sub: pe.Node, plan: Plan,
                   settings: Settings) -> pe.Workflow:
    """Event-related: single-trial betas -> ROI patterns per stimulus; returns the ROI
    workflow (outputs ``patterns``, ``rois``)."""
    preprocess_wf = init_preprocess_wf(high_pass=HIGH_PASS_HZ)
    roi_wf = init_roi_wf(stimuli=plan.stimuli)
    roi_wf.inputs.inputnode.atlas = str(plan.atlas.image)
    roi_wf.inputs.inputnode.atlas_labels = str(plan.atlas.labels)
    workflow.connect([
        (runs_node, preprocess_wf, [(f, f"inputnode.{f}") for f in RUN_FIELDS]),
        (preprocess_wf, roi_wf, [("outputnode.betas", "inputnode.betas"),
                                 ("outputnode.trials", "inputnode.trials")]),
        (roi_wf, similarity_wf, [("outputnode.patterns", "inputnode.patterns")]),
        (inputnode, similarity_wf, [("activations", "inputnode.activations"),
                                    ("activation_metas", "inputnode.activation_metas")]),
        (roi_wf, ds_sub, [("outputnode.patterns", "patterns")]),
    ])
    return roi_wf


def _connect_continuous(workflow: pe.Workflow, runs_node: pe.Node, inputnode: pe.Node,
                        similarity_wf: pe.Workflow, ds_sub: pe.Node, plan: Plan,
                        settings: Settings) -> pe.Workflow:
    """Continuous: ROI time series over the blocks, frame activations aligned to the same scans;
    returns the time-series workflow (outputs ``timeseries``, ``rois``, ``rows``)."""
    series_wf = init_timeseries_wf(high_pass=HIGH_PASS_HZ,
                                   discard_seconds=settings.discard_seconds)
    series_wf.inputs.inputnode.atlas = str(plan.atlas.image)
    series_wf.inputs.inputnode.atlas_labels = str(plan.atlas.labels)
    align_wf = init_align_wf(high_pass=HIGH_PASS_HZ)
    workflow.connect([
        (runs_node, series_wf, [(f, f"inputnode.{f}") for f in RUN_FIELDS]),
        (runs_node, align_wf, [("confounds", "inputnode.confounds")]),
        (inputnode, align_wf, [("activations", "inputnode.activations"),
                               ("activation_metas", "inputnode.activation_metas")]),
        (series_wf, align_wf, [("outputnode.rows", "inputnode.rows")]),
        (series_wf, similarity_wf, [("outputnode.timeseries", "inputnode.patterns"),
                                    ("outputnode.rows", "inputnode.rows")]),
        (align_wf, similarity_wf, [("outputnode.activations", "inputnode.activations"),
                                   ("outputnode.activation_metas",
                                    "inputnode.activation_metas"),
                                   ("outputnode.slots", "inputnode.slots")]),
        (series_wf, ds_sub, [("outputnode.timeseries", "patterns"), ("outputnode.rows", "rows")]),
    ])
    return series_wf


def init_nnbrain_wf(settings: Settings, plan: Plan, staging_dir: Path) -> pe.Workflow:
    """The participant-level workflow: shared activations, then one sub-workflow per participant.

    Parameters
    ----------
    settings : Settings
    plan : Plan
        Resolved inputs (see :class:`Plan`).
    staging_dir : Path
        Where the sinks write; moved into the output dataset after success.
    """
    workflow = pe.Workflow(name="nnbrain_wf")
    workflow.base_dir = str(settings.work_dir)
    stimuli = [str(settings.bids_dir / "stimuli" / s) for s in plan.stimuli]
    activations_wf = init_activations_wf(
        models=plan.models, stimuli=stimuli, omp_nthreads=settings.omp_nthreads,
        cache_dir=str(settings.cache_dir) if settings.cache_dir else None,
        allow_custom_code=settings.allow_custom_code, device=settings.device,
        frames=settings.design == "continuous")
    ds_models = ds_model(staging_dir=staging_dir,
                         rdm_methods=list(dict.fromkeys(m.rdm for m in plan.measures
                                                        if m.kind == "rsa")))
    workflow.connect([(activations_wf, ds_models, [("outputnode.activations", "activations"),
                                                   ("outputnode.metas", "meta")])])
    for subject, runs in plan.subjects.items():
        subject_wf = init_single_subject_wf(subject=subject, runs=runs, plan=plan,
                                            settings=settings, staging_dir=staging_dir,
                                            name=f"single_subject_{subject}_wf")
        workflow.connect([(activations_wf, subject_wf, [
            ("outputnode.activations", "inputnode.activations"),
            ("outputnode.metas", "inputnode.activation_metas")])])
    return workflow
