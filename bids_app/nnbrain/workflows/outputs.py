"""Every derivative sink of nnbrain (``ds_<output>`` nodes)."""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from nnbrain.interfaces.bids import ModelDerivativesSink, SubjectDerivativesSink


def ds_subject(*, staging_dir: Path, subject: str, task: str, space: str, atlas: str,
               stimuli: list[str], sources: list[str], parameters: dict,
               name: str = "ds_subject") -> pe.Node:
    """Sink of a participant's ROI patterns, ROI RDMs and similarity tables."""
    return pe.Node(SubjectDerivativesSink(base_directory=str(staging_dir), subject=subject,
                                          task=task, space=space, atlas=atlas, stimuli=stimuli,
                                          sources=sources, parameters=parameters),
                   name=name, run_without_submitting=True)


def ds_model(*, staging_dir: Path, rdm_methods: list[str], name: str = "ds_model") -> pe.MapNode:
    """Sink of per-layer activations and model RDMs, one iteration per (model, weights)."""
    return pe.MapNode(ModelDerivativesSink(base_directory=str(staging_dir),
                                           rdm_methods=rdm_methods),
                      iterfield=["activations", "meta"], name=name, run_without_submitting=True)
