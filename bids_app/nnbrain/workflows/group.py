"""Group level: aggregate participant similarity tables read through pybids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nipype.pipeline import engine as pe

from nnbrain.interfaces.group import GroupSimilarity


@dataclass(frozen=True)
class GroupInputs:
    """One measure's participant tables, as found in the output dataset."""

    label: str
    """The measure label (``desc`` of the participant tables)."""
    measure: dict
    """Sidecar of a participant table (``Measure``, ``Method``, ``Parameters``, ...)."""
    tables: list[tuple[str, str, str]]
    """(subject, path, BIDS URI) per participant."""
    roi_rdms: dict[str, list[str]] = field(default_factory=dict)
    """rsa only: ROI label -> the participants' ROI RDM files (noise ceilings)."""


def init_group_wf(*, measures: list[GroupInputs], entities: dict[str, str], seed: int,
                  staging_dir: Path, work_dir: Path, name: str = "group_wf") -> pe.Workflow:
    """One aggregation node per measure.

    Parameters
    ----------
    measures : list of GroupInputs
        Participant tables per measure, from the output layout.
    entities : dict
        ``task``, ``space``, ``atlas`` of the group outputs.
    seed : int
        Seed of the bootstrap over participants.
    staging_dir, work_dir : Path
    name : str
    """
    workflow = pe.Workflow(name=name)
    workflow.base_dir = str(work_dir)
    for item in measures:
        node = pe.Node(GroupSimilarity(label=item.label, measure=item.measure,
                                       roi_rdms=item.roi_rdms, seed=seed, entities=entities,
                                       subjects=[r[0] for r in item.tables],
                                       tables=[r[1] for r in item.tables],
                                       sources=[r[2] for r in item.tables],
                                       base_directory=str(staging_dir)),
                       name=f"ds_group_{item.label}")
        workflow.add_nodes([node])
    return workflow
