"""nnbrain.utils.io (atomic writes) and nnbrain.utils.provenance (top-level dataset files)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from pathlib import Path

import pytest

import nnbrain
from nnbrain.utils.bids import derivatives_spec, pybids_config
from nnbrain.utils.io import atomic_write, write_json
from nnbrain.measures import DEFAULT_MEASURES, descriptions
from nnbrain.utils.provenance import dataset_description, top_level_files, write_if_changed


class Boom(RuntimeError):
    pass


# ----------------------------------------------------------------------------- atomic_write


def test_atomic_write_creates_parents_and_content(tmp_path):
    target = tmp_path / "a" / "b" / "file.txt"
    atomic_write(target, lambda p: p.write_text("hello\n"))
    assert target.read_text() == "hello\n"
    assert os.listdir(target.parent) == ["file.txt"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_failure_keeps_previous_content_and_no_temp(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("previous\n")
    seen = []

    def write(path: Path) -> None:
        seen.append(path)
        assert path.parent == tmp_path and path != target
        path.write_text("partial garbage")
        raise Boom("disk on fire")

    with pytest.raises(Boom):
        atomic_write(target, write)
    assert len(seen) == 1
    assert not seen[0].exists()
    assert target.read_text() == "previous\n"
    assert os.listdir(tmp_path) == ["file.txt"]


def test_atomic_write_failure_on_new_file_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "new.tsv"

    def write(path: Path) -> None:
        path.write_text("half")
        raise KeyboardInterrupt  # BaseException too

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert not target.exists()
    assert os.listdir(tmp_path / "sub") == []


def test_write_json_sorted_and_pretty(tmp_path):
    target = tmp_path / "x.json"
    write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


# ----------------------------------------------------------------------------- write_if_changed


def test_write_if_changed(tmp_path):
    target = tmp_path / "README.md"
    assert write_if_changed(target, "one\n") is True
    assert target.read_text() == "one\n"
    past = 1_000_000_000
    os.utime(target, ns=(past * 10**9, past * 10**9))
    inode = target.stat().st_ino
    assert write_if_changed(target, "one\n") is False
    assert target.stat().st_mtime_ns == past * 10**9
    assert target.stat().st_ino == inode
    assert write_if_changed(target, "two\n") is True
    assert target.read_text() == "two\n"
    assert target.stat().st_mtime_ns != past * 10**9
    assert os.listdir(tmp_path) == ["README.md"]


# ----------------------------------------------------------------------------- top_level_files


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.delenv("NNBRAIN_CONTAINER", raising=False)
    raw = tmp_path / "raw"
    fmriprep = tmp_path / "raw" / "derivatives" / "fmriprep"
    fmriprep.mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    return top_level_files(out, {"raw": raw, "fmriprep": fmriprep},
                           descriptions(DEFAULT_MEASURES))


def test_top_level_file_names(files):
    assert set(files) == {"dataset_description.json", ".bidsignore", "README.md",
                          "descriptions.tsv", "descriptions.json", "code/nnbrain_bids_config.json"}
    for text in files.values():
        assert text.endswith("\n")


def test_bidsignore(files):
    lines = files[".bidsignore"].splitlines()
    assert lines == derivatives_spec()["bidsignore"]
    assert lines and all(line and not line.endswith("/") for line in lines)
    for entry in ("models", "figures", "logs", "*_similarity.tsv"):
        assert entry in lines


def test_dataset_description(files):
    desc = json.loads(files["dataset_description.json"])
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "nnbrain"
    assert desc["GeneratedBy"][0]["Version"] == nnbrain.__version__
    assert "Container" not in desc["GeneratedBy"][0]
    assert re.fullmatch(r"\d+\.\d+\.\d+", desc["BIDSVersion"])
    assert desc["SourceDatasets"] == [{"URL": "bids:raw:"}, {"URL": "bids:fmriprep:"}]
    assert desc["DatasetLinks"] == {"raw": "../raw", "fmriprep": "../raw/derivatives/fmriprep"}
    assert desc["Name"]


def test_dataset_description_container(tmp_path, monkeypatch):
    monkeypatch.setenv("NNBRAIN_CONTAINER", "nnbrain/nnbrain:1.2.3")
    desc = dataset_description(tmp_path, {})
    assert desc["GeneratedBy"][0]["Container"] == {"Type": "docker", "Tag": "nnbrain/nnbrain:1.2.3"}
    assert desc["SourceDatasets"] == [] and desc["DatasetLinks"] == {}


def test_descriptions_tsv(files):
    rows = list(csv.DictReader(io.StringIO(files["descriptions.tsv"]), delimiter="\t"))
    fixed = [f"desc-{k}" for k in derivatives_spec()["descriptions"]]
    assert [r["desc_id"] for r in rows] == fixed + [
        "desc-rsa", "desc-rsaMean", "desc-cka", "desc-ckaMean", "desc-ckarbf", "desc-ckarbfMean",
        "desc-nss", "desc-nssMean"]
    by_id = {r["desc_id"]: r["description"] for r in rows}
    assert "tau-a" in by_id["desc-rsa"] and "rbf" in by_id["desc-ckarbf"]
    assert "desc-ckarbf" in by_id["desc-nss"]
    for row in rows:
        assert re.fullmatch(r"desc-[A-Za-z0-9]+", row["desc_id"]), row
        assert row["description"]
    assert {r["desc_id"] for r in rows} >= {"desc-rsa", "desc-cka", "desc-betas",
                                           "desc-correlation", "desc-rsaMean", "desc-ckaMean"}
    sidecar = json.loads(files["descriptions.json"])
    assert set(sidecar) >= {"desc_id", "description"}


def test_pybids_config_file(files):
    assert json.loads(files["code/nnbrain_bids_config.json"]) == pybids_config()


def test_top_level_files_written_once(tmp_path, files):
    out = tmp_path / "written"
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        assert write_if_changed(out / rel, text) is True
    assert [write_if_changed(out / rel, text) for rel, text in files.items()] == [False] * 6
