"""Group level: aggregate participant similarity tables read through pybids."""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from nnbrain.interfaces.group import GroupSimilarity


def init_group_wf(*, tables: dict[str, list[tuple[str, str, str]]], entities: dict[str, str],
                  staging_dir: Path, work_dir: Path, name: str = "group_wf") -> pe.Workflow:
    """One aggregation node per measure.

    Parameters
    ----------
    tables : dict of str to list of (subject, path, BIDS URI)
        Participant tables per measure (``rsa``, ``cka``), from the output layout.
    entities : dict
        ``task``, ``space``, ``atlas`` of the group outputs.
    staging_dir, work_dir : Path
    name : str
    """
    workflow = pe.Workflow(name=name)
    workflow.base_dir = str(work_dir)
    for measure, rows in tables.items():
        node = pe.Node(GroupSimilarity(measure=measure, entities=entities,
                                       subjects=[r[0] for r in rows], tables=[r[1] for r in rows],
                                       sources=[r[2] for r in rows],
                                       base_directory=str(staging_dir)),
                       name=f"ds_group_{measure}")
        workflow.add_nodes([node])
    return workflow
