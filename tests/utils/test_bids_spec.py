"""nnbrain.utils.bids: spec-bound output names, pybids config, atlas/stimuli/subject queries."""

from __future__ import annotations

import csv
import doctest
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

import nnbrain.utils.bids as bids_module
from nnbrain.errors import DataError, MissingInputError, NoDataError, SpecViolation
from nnbrain.utils.bids import (
    bids_label,
    bids_uri,
    build_path,
    check_sidecar,
    collect_stimuli,
    derivatives_spec,
    find_atlas,
    output_layout,
    pybids_config,
    select_subjects,
    sidecar_path,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "datalad_dataset"
ATLAS_DIR = DEMO / "derivatives" / "atlas"
ATLAS_STEM = "atlas-nnbrainDemo_space-MNI152NLin2009cAsym_res-1_dseg"
SPACE = "MNI152NLin2009cAsym"


def test_doctests():
    result = doctest.testmod(bids_module)
    assert result.attempted >= 3
    assert result.failed == 0


def test_packaged_spec_is_the_repository_spec():
    shipped = json.loads((ROOT / "derivatives_spec" / "nnbrain.json").read_text())
    assert derivatives_spec() == shipped


# ----------------------------------------------------------------------------- build_path

PINNED = [
    ("roi_patterns",
     dict(subject="01", task="digits", space=SPACE, atlas="nnbrainDemo", label="roiA",
          desc="betas"),
     "sub-01/func/sub-01_task-digits_space-MNI152NLin2009cAsym_atlas-nnbrainDemo_label-roiA"
     "_desc-betas_patterns.tsv"),
    ("roi_timeseries",
     dict(subject="01", task="quilts", space=SPACE, atlas="nnbrainDemo", label="roiB",
          desc="blocks"),
     "sub-01/func/sub-01_task-quilts_space-MNI152NLin2009cAsym_atlas-nnbrainDemo_label-roiB"
     "_desc-blocks_timeseries.tsv"),
    ("brain_rdm",
     dict(subject="02", task="digits", space=SPACE, atlas="nnbrainDemo", label="roiC",
          desc="correlation"),
     "sub-02/func/sub-02_task-digits_space-MNI152NLin2009cAsym_atlas-nnbrainDemo_label-roiC"
     "_desc-correlation_relmat.tsv"),
    ("similarity",
     dict(subject="01", task="digits", space=SPACE, atlas="demo", desc="rsa"),
     "sub-01/func/sub-01_task-digits_space-MNI152NLin2009cAsym_atlas-demo_desc-rsa_similarity.tsv"),
    ("activations",
     dict(model="digitcnn", weights="trained", layer="conv1"),
     "models/model-digitcnn/model-digitcnn_weights-trained_layer-conv1_activations.npy"),
    ("model_rdm",
     dict(model="digitcnn", weights="random", layer="fc2", desc="correlation"),
     "models/model-digitcnn/model-digitcnn_weights-random_layer-fc2_desc-correlation_relmat.tsv"),
    ("group_similarity",
     dict(task="digits", space=SPACE, atlas="nnbrainDemo", desc="ckaMean"),
     "task-digits_space-MNI152NLin2009cAsym_atlas-nnbrainDemo_desc-ckaMean_similarity.tsv"),
    ("group_figure",
     dict(task="digits", space=SPACE, atlas="nnbrainDemo", desc="rsa"),
     "figures/task-digits_space-MNI152NLin2009cAsym_atlas-nnbrainDemo_desc-rsa_similarity.png"),
]


@pytest.mark.parametrize(("output", "entities", "expected"), PINNED, ids=[p[0] for p in PINNED])
def test_build_path_pinned(output, entities, expected):
    assert build_path(output, **entities) == expected


def test_every_output_is_pinned():
    assert {p[0] for p in PINNED} == set(derivatives_spec()["outputs"])


def test_unknown_output():
    with pytest.raises(SpecViolation) as info:
        build_path("brain_mask", subject="01")
    assert "brain_mask" in str(info.value)
    assert "similarity" in str(info.value)  # lists the described outputs
    assert info.value.exit_code == 1


def test_missing_entity():
    with pytest.raises(SpecViolation, match="layer"):
        build_path("activations", model="digitcnn", weights="trained")


def test_extra_entity():
    with pytest.raises(SpecViolation, match="run"):
        build_path("activations", model="digitcnn", weights="trained", layer="conv1", run="1")


@pytest.mark.parametrize("value", ["conv-1", "conv_1", "features.3", "a b", "", "x/y", "Ü"])
def test_non_alphanumeric_value(value):
    with pytest.raises(SpecViolation, match="BIDS label"):
        build_path("activations", model="digitcnn", weights="trained", layer=value)


# ----------------------------------------------------------------------------- sidecars


@pytest.mark.parametrize("output", sorted(derivatives_spec()["outputs"]))
def test_check_sidecar_each_required_key(output):
    required = derivatives_spec()["outputs"][output]["sidecar_required"]
    complete = {key: "x" for key in required}
    assert check_sidecar(output, {**complete, "Extra": 1}) is None
    for key in required:
        with pytest.raises(SpecViolation, match=key):
            check_sidecar(output, {k: v for k, v in complete.items() if k != key})


def test_check_sidecar_required_keys_pinned():
    with pytest.raises(SpecViolation) as info:
        check_sidecar("activations", {"Architecture": "digitcnn"})
    for key in ("WeightsSource", "WeightsSHA256", "Seed", "LayerName", "Pooling", "Shape",
                "Stimuli", "SoftwareVersions"):
        assert key in str(info.value)


@pytest.mark.parametrize(("path", "expected"), [
    ("sub-01/func/sub-01_task-digits_desc-rsa_similarity.tsv",
     "sub-01/func/sub-01_task-digits_desc-rsa_similarity.json"),
    ("models/model-a/model-a_weights-b_layer-c_activations.npy",
     "models/model-a/model-a_weights-b_layer-c_activations.json"),
    ("sub-01/anat/sub-01_desc-x_dseg.nii.gz", "sub-01/anat/sub-01_desc-x_dseg.json"),
    ("figures/task-a_desc-rsa_similarity.png", "figures/task-a_desc-rsa_similarity.json"),
    ("a.tsv.d/b_patterns.tsv", "a.tsv.d/b_patterns.json"),
])
def test_sidecar_path(path, expected):
    assert sidecar_path(path) == expected


@pytest.mark.parametrize(("name", "label"), [
    ("features.3", "features3"),
    ("Heschl's gyrus (L)", "HeschlsgyrusL"),
    ("roiA", "roiA"),
    ("layer4_0_conv_2", "layer40conv2"),
    ("V1 left-hemisphere", "V1lefthemisphere"),
])
def test_bids_label(name, label):
    assert bids_label(name) == label


@pytest.mark.parametrize("name", ["", "...", "_-_", "ßü"])
def test_bids_label_without_alphanumeric(name):
    with pytest.raises(DataError):
        bids_label(name)


# ----------------------------------------------------------------------------- pybids


def _pybids_builtin_entities() -> set[str]:
    names = set()
    for config in ("bids.json", "derivatives.json"):
        text = resources.files("bids.layout").joinpath("config", config).read_text()
        names |= {e["name"] for e in json.loads(text)["entities"]}
    return names


def test_spec_builtin_flags_agree_with_pybids():
    builtin = _pybids_builtin_entities()
    assert {"subject", "desc", "model"} <= builtin  # the reference is what we think it is
    for entity in derivatives_spec()["entities"]:
        assert entity["builtin"] == (entity["name"] in builtin), entity["name"]


def test_pybids_config_declares_exactly_custom_entities():
    config = pybids_config()
    names = [e["name"] for e in config["entities"]]
    assert sorted(names) == ["layer", "weights"]
    assert "model" not in names
    assert config["name"] == "nnbrain"
    assert config["default_path_patterns"] == [
        o["pattern"] for o in derivatives_spec()["outputs"].values()]


def _write_output_dataset(root: Path, config: dict) -> list[str]:
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "nnbrain test", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "nnbrain"}]}))
    (root / "code").mkdir()
    (root / "code" / "nnbrain_bids_config.json").write_text(json.dumps(config))
    files = [
        build_path("activations", model="digitcnn", weights="trained", layer="conv1"),
        build_path("activations", model="digitcnn", weights="random", layer="fc1"),
        build_path("model_rdm", model="digitcnn", weights="trained", layer="fc1",
                   desc="correlation"),
        build_path("similarity", subject="01", task="digits", space=SPACE, atlas="nnbrainDemo",
                   desc="rsa"),
        build_path("similarity", subject="01", task="digits", space=SPACE, atlas="nnbrainDemo",
                   desc="cka"),
        build_path("roi_patterns", subject="01", task="digits", space=SPACE, atlas="nnbrainDemo",
                   label="roiA", desc="betas"),
    ]
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x\n")
    return files


def test_output_layout_queries_custom_and_builtin_entities(tmp_path):
    files = _write_output_dataset(tmp_path / "out", pybids_config())
    layout = output_layout(tmp_path / "out")

    def rel(found):
        return sorted(f.relpath.replace("\\", "/") for f in found)

    assert rel(layout.get(layer="conv1")) == [files[0]]
    assert rel(layout.get(weights="trained")) == sorted([files[0], files[2]])
    assert rel(layout.get(desc="rsa", suffix="similarity")) == [files[3]]
    assert rel(layout.get(model="digitcnn")) == sorted(files[:3])
    assert rel(layout.get(layer="fc1", weights="random")) == [files[1]]
    assert rel(layout.get(label="roiA", suffix="patterns")) == [files[5]]
    assert layout.get(layer="conv2") == []
    assert sorted(layout.get_layers()) == ["conv1", "fc1"]
    entry = layout.get(layer="conv1")[0].get_entities()
    assert entry["model"] == "digitcnn" and entry["weights"] == "trained"


@pytest.mark.filterwarnings("ignore:New instance <Entity")
def test_redeclaring_builtin_model_breaks_pybids(tmp_path):
    """Why pybids_config must not declare 'model': pybids refuses a duplicate entity."""
    import sqlite3

    import sqlalchemy.exc

    config = pybids_config()
    config["entities"].append({"name": "model", "pattern": "[_/\\\\]+model-([a-zA-Z0-9]+)"})
    _write_output_dataset(tmp_path / "out", config)
    with pytest.raises(sqlalchemy.exc.IntegrityError) as info:
        output_layout(tmp_path / "out")
    assert isinstance(info.value.orig, sqlite3.IntegrityError)


def test_output_layout_without_config(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(MissingInputError) as info:
        output_layout(tmp_path / "out")
    assert info.value.path == tmp_path / "out" / "code" / "nnbrain_bids_config.json"


# ----------------------------------------------------------------------------- find_atlas


def test_find_atlas_demo_dir():
    atlas = find_atlas(ATLAS_DIR)
    assert atlas.image == ATLAS_DIR / "atlas-nnbrainDemo" / f"{ATLAS_STEM}.nii.gz"
    assert atlas.labels == ATLAS_DIR / "atlas-nnbrainDemo" / f"{ATLAS_STEM}.tsv"
    assert atlas.label == "nnbrainDemo"


def test_find_atlas_image_file():
    image = ATLAS_DIR / "atlas-nnbrainDemo" / f"{ATLAS_STEM}.nii.gz"
    atlas = find_atlas(image)
    assert (atlas.image, atlas.label) == (image, "nnbrainDemo")
    assert atlas.labels == image.with_name(f"{ATLAS_STEM}.tsv")


def test_find_atlas_without_atlas_entity_uses_stem(tmp_path):
    (tmp_path / "my_rois_dseg.nii.gz").write_bytes(b"")
    (tmp_path / "my_rois_dseg.tsv").write_text("index\tname\n1\ta\n")
    atlas = find_atlas(tmp_path)
    assert atlas.label == "myroisdseg"
    assert atlas.labels == tmp_path / "my_rois_dseg.tsv"


def test_find_atlas_two_images(tmp_path):
    for name in ("atlas-a_dseg", "atlas-b_dseg"):
        (tmp_path / f"{name}.nii.gz").write_bytes(b"")
        (tmp_path / f"{name}.tsv").write_text("index\tname\n1\tx\n")
    with pytest.raises(MissingInputError) as info:
        find_atlas(tmp_path)
    assert "found 2" in str(info.value)
    assert "atlas-a_dseg.nii.gz" in str(info.value)
    assert info.value.path == tmp_path


def test_find_atlas_no_image(tmp_path):
    with pytest.raises(MissingInputError, match="found 0"):
        find_atlas(tmp_path)


def test_find_atlas_without_tsv(tmp_path):
    shutil.copy(ATLAS_DIR / "atlas-nnbrainDemo" / f"{ATLAS_STEM}.nii.gz", tmp_path)
    with pytest.raises(MissingInputError) as info:
        find_atlas(tmp_path)
    assert f"{ATLAS_STEM}.tsv" in str(info.value)
    assert info.value.exit_code == 66


def test_find_atlas_nonexistent(tmp_path):
    with pytest.raises(MissingInputError):
        find_atlas(tmp_path / "nope")


# ----------------------------------------------------------------------------- stimuli


def _events_files() -> list[Path]:
    return sorted(DEMO.glob("sub-*/func/*_events.tsv"))


def test_collect_stimuli_demo():
    events = _events_files()
    assert len(events) == 6
    names = collect_stimuli(DEMO, events)
    reference = set()
    for path in events:
        with open(path, newline="") as fh:
            reference |= {row["stim_file"] for row in csv.DictReader(fh, delimiter="\t")}
    assert len(names) == 30
    assert names == sorted(reference)
    assert names == sorted(p.name for p in (DEMO / "stimuli").glob("*.png"))
    assert names == [f"stim{i:02d}.png" for i in range(1, 31)]


def _mini_dataset(root: Path, events_text: str, stimuli: list[str]) -> Path:
    for name in stimuli:
        (root / "stimuli" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "stimuli" / name).write_bytes(b"x")
    events = root / "events.tsv"
    events.write_text(events_text)
    return events


def test_collect_stimuli_dedups_sorts_and_skips_na(tmp_path):
    events = _mini_dataset(tmp_path, "onset\tduration\tstim_file\n0\t1\tb.png\n2\t1\ta.png\n"
                                     "4\t1\tb.png\n6\t1\tn/a\n", ["a.png", "b.png"])
    assert collect_stimuli(tmp_path, [events]) == ["a.png", "b.png"]


def test_collect_stimuli_missing_file(tmp_path):
    events = _mini_dataset(tmp_path, "onset\tduration\tstim_file\n0\t1\ta.png\n2\t1\tgone.png\n",
                           ["a.png"])
    with pytest.raises(MissingInputError) as info:
        collect_stimuli(tmp_path, [events])
    assert info.value.path == tmp_path / "stimuli" / "gone.png"
    assert "gone.png" in str(info.value)


def test_collect_stimuli_refuses_one_file_name_in_two_folders(tmp_path):
    events = _mini_dataset(tmp_path, "onset\tduration\tstim_file\n0\t1\ta/x.wav\n2\t1\tb/x.wav\n",
                           ["a/x.wav", "b/x.wav"])
    with pytest.raises(DataError) as info:
        collect_stimuli(tmp_path, [events])
    assert "stim_file values 'a/x.wav' and 'b/x.wav' share the file name 'x.wav'" in str(
        info.value)
    assert info.value.path == events


def test_collect_stimuli_no_column(tmp_path):
    events = _mini_dataset(tmp_path, "onset\tduration\ttrial_type\n0\t1\tdigit1\n", ["a.png"])
    with pytest.raises(DataError) as info:
        collect_stimuli(tmp_path, [events])
    assert info.value.path == events
    assert "stim_file" in str(info.value)
    assert info.value.exit_code == 65


# ----------------------------------------------------------------------------- subjects


def test_select_subjects_all_and_some():
    assert select_subjects(DEMO, ()) == ["01", "02", "03"]
    assert select_subjects(DEMO, ("03", "01")) == ["03", "01"]


def test_select_subjects_unknown():
    with pytest.raises(NoDataError) as info:
        select_subjects(DEMO, ("01", "07"))
    err = info.value
    assert err.exit_code == 18
    assert "sub-07" in str(err)
    assert "sub-01, sub-02, sub-03" in str(err)
    assert err.path == DEMO


def test_select_subjects_empty_dataset(tmp_path):
    (tmp_path / "sub-01").write_text("a file, not a folder")
    with pytest.raises(NoDataError):
        select_subjects(tmp_path, ())
    with pytest.raises(NoDataError, match="present: none"):
        select_subjects(tmp_path, ("01",))


# ----------------------------------------------------------------------------- bids_uri


def test_bids_uri():
    fmriprep = DEMO / "derivatives" / "fmriprep"
    bold = fmriprep / "sub-01" / "func" / "x_bold.nii.gz"
    assert bids_uri(bold, {"raw": DEMO / "sub-01", "fmriprep": fmriprep}) == \
        "bids:fmriprep:sub-01/func/x_bold.nii.gz"
    events = DEMO / "sub-01" / "func" / "sub-01_task-digits_run-01_events.tsv"
    assert bids_uri(events, {"raw": DEMO, "fmriprep": fmriprep}) == \
        "bids:raw:sub-01/func/sub-01_task-digits_run-01_events.tsv"


@pytest.mark.parametrize("order", ["outer_first", "inner_first"])
def test_bids_uri_nested_roots_innermost_wins(order):
    """fMRIPrep outputs inside the raw dataset belong to the fmriprep root, whatever the order."""
    fmriprep = DEMO / "derivatives" / "fmriprep"
    roots = {"raw": DEMO, "fmriprep": fmriprep}
    if order == "inner_first":
        roots = dict(reversed(list(roots.items())))
    bold = fmriprep / "sub-01" / "func" / "x_bold.nii.gz"
    assert bids_uri(bold, roots) == "bids:fmriprep:sub-01/func/x_bold.nii.gz"


def test_bids_uri_outside_roots_is_file_uri(tmp_path):
    path = tmp_path / "elsewhere.tsv"
    assert bids_uri(path, {"raw": DEMO}) == path.resolve().as_uri()
    assert bids_uri(path, {}).startswith("file:///")


def test_bids_uri_resolves_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "raw" / "sub-01").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert bids_uri(Path("raw/sub-01/../sub-01/a.tsv"), {"raw": Path("raw")}) == \
        "bids:raw:sub-01/a.tsv"


def test_check_sidecar_unknown_output_is_spec_violation():
    with pytest.raises(SpecViolation, match="not described"):
        check_sidecar("nope", {})


@pytest.mark.parametrize("path, expected", [
    ("a/x_bold.nii", "a/x_bold.json"),
    ("x_relmat.dense.tsv", "x_relmat.json"),
    ("figures/x_similarity.svg", "figures/x_similarity.json"),
])
def test_sidecar_path_strips_the_whole_extension(path, expected):
    assert sidecar_path(path) == expected


def test_sidecar_path_without_extension_refused():
    with pytest.raises(SpecViolation, match="no extension"):
        sidecar_path("models/readme")
