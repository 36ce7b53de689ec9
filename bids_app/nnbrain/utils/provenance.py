"""Top-level files of the output dataset, written atomically and only when missing or different."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nnbrain import __version__
from nnbrain.utils.bids import derivatives_spec, pybids_config
from nnbrain.utils.io import atomic_write

CODE_URL = "https://github.com/nnbrain/nnbrain"


def _relative_link(target: Path, output_dir: Path) -> str:
    """A DatasetLinks value: a relative path when both share a parent directory, else a URI."""
    target, output_dir = target.resolve(), output_dir.resolve()
    if Path(os.path.commonpath([target, output_dir])) != Path(target.anchor):
        return os.path.relpath(target, output_dir)
    return target.as_uri()


def dataset_description(output_dir: Path, links: dict[str, Path]) -> dict[str, Any]:
    """``dataset_description.json`` content for the derivative dataset."""
    container = os.environ.get("NNBRAIN_CONTAINER")
    generated: dict[str, Any] = {"Name": "nnbrain", "Version": __version__, "CodeURL": CODE_URL}
    if container:
        generated["Container"] = {"Type": "docker", "Tag": container}
    return {
        "Name": "nnbrain: layer x ROI similarity between deep networks and brain activity",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": f"bids:{name}:"} for name in links],
        "DatasetLinks": {name: _relative_link(path, output_dir) for name, path in links.items()},
        "License": "CC0",
        "Authors": ["nnbrain users", "nnbrain developers"],
    }


def top_level_files(output_dir: Path, links: dict[str, Path],
                    measure_descriptions: dict[str, str] | None = None) -> dict[str, str]:
    """Relative path -> text of every top-level file an nnbrain dataset carries.

    ``measure_descriptions`` (desc label -> text) adds the spec's measures to
    ``descriptions.tsv``, after the fixed labels of ``derivatives_spec/``.
    """
    spec = derivatives_spec()
    descriptions = {**spec["descriptions"], **(measure_descriptions or {})}
    readme = (
        "# nnbrain derivatives\n\nLayer x ROI similarity between deep neural networks and brain "
        "activity, written by nnbrain " + __version__ + ".\nEvery table has a JSON sidecar "
        "stating its method, parameters, seeds and sources (BIDS URIs).\n"
        "`code/` holds the model spec and settings of each level; `logs/<run-uuid>/` the log of "
        "every run; `models/` per-layer activations and model RDMs.\n"
    )
    return {
        "dataset_description.json": json.dumps(dataset_description(output_dir, links), indent=2)
        + "\n",
        ".bidsignore": "\n".join(spec["bidsignore"]) + "\n",
        "README.md": readme,
        "descriptions.tsv": "desc_id\tdescription\n"
        + "".join(f"desc-{k}\t{v}\n" for k, v in descriptions.items()),
        "descriptions.json": json.dumps({
            "Description": "meaning of each desc- label used in this dataset",
            "desc_id": {"Description": "the desc- entity (desc-<label>)"},
            "description": {"Description": "what that value means"}}, indent=2) + "\n",
        "code/nnbrain_bids_config.json": json.dumps(pybids_config(), indent=2) + "\n",
    }


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically write ``text`` unless the file already holds exactly it; True if written."""
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write(path, lambda p: p.write_text(text))
    return True
