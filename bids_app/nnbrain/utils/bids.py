"""BIDS side of nnbrain: the derivatives spec (output names), pybids queries, the validator."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from nnbrain.errors import (
    BIDSValidationError,
    DataError,
    MissingInputError,
    NoDataError,
    SpecViolation,
)

_FIELD = re.compile(r"\{(\w+)\}")
SPACE = "MNI152NLin2009cAsym"


@lru_cache(maxsize=1)
def derivatives_spec() -> dict[str, Any]:
    """The parsed ``derivatives_spec/nnbrain.json`` shipped with the package."""
    text = resources.files("nnbrain").joinpath("data/derivatives_spec/nnbrain.json").read_text()
    return json.loads(text)


def bids_label(name: str) -> str:
    """A BIDS-safe (alphanumeric) label for a layer, model or ROI name.

    >>> bids_label("features.3")
    'features3'
    >>> bids_label("Heschl's gyrus (L)")
    'HeschlsgyrusL'
    """
    label = re.sub(r"[^A-Za-z0-9]", "", name)
    if not label:
        raise DataError(f"name {name!r} has no alphanumeric character to form a BIDS label")
    return label


def build_path(output: str, **entities: str) -> str:
    """Relative path of an output, from its pattern in the derivatives spec.

    Raises
    ------
    SpecViolation
        If ``output`` is not in the spec, an entity is missing or unused, or a value is not
        a BIDS label.

    Examples
    --------
    >>> build_path("similarity", subject="01", task="digits", space="MNI152NLin2009cAsym",
    ...            atlas="demo", desc="rsa")
    'sub-01/func/sub-01_task-digits_space-MNI152NLin2009cAsym_atlas-demo_desc-rsa_similarity.tsv'
    """
    outputs = derivatives_spec()["outputs"]
    if output not in outputs:
        raise SpecViolation(f"output {output!r} is not described by derivatives_spec; "
                            f"described: {sorted(outputs)}")
    pattern = outputs[output]["pattern"]
    fields = set(_FIELD.findall(pattern))
    if set(entities) != fields:
        raise SpecViolation(f"output {output!r} needs entities {sorted(fields)}, "
                            f"got {sorted(entities)}")
    for name, value in entities.items():
        if not re.fullmatch(r"[A-Za-z0-9]+", str(value)):
            raise SpecViolation(f"entity {name}={value!r} is not a BIDS label (alphanumeric)")
    return pattern.format(**entities)


def sidecar_path(path: str) -> str:
    """The JSON sidecar that goes with a data file path (BIDS: the extension starts at the
    first dot of the file name).

    >>> sidecar_path("sub-01/func/sub-01_bold.nii.gz")
    'sub-01/func/sub-01_bold.json'
    """
    head, _, name = path.rpartition("/")
    if "." not in name:
        raise SpecViolation(f"{path!r} has no extension; cannot name its sidecar")
    sidecar = name.split(".", 1)[0] + derivatives_spec()["sidecar_extension"]
    return f"{head}/{sidecar}" if head else sidecar


def check_sidecar(output: str, metadata: dict[str, Any]) -> None:
    """Refuse sidecar metadata that lacks a key the spec requires for ``output``."""
    outputs = derivatives_spec()["outputs"]
    if output not in outputs:
        raise SpecViolation(f"output {output!r} is not described by derivatives_spec")
    required = outputs[output]["sidecar_required"]
    missing = [key for key in required if key not in metadata]
    if missing:
        raise SpecViolation(f"sidecar of {output!r} lacks required keys {missing}")


def pybids_config() -> dict[str, Any]:
    """pybids config (XCP-D style) for the entities pybids does not know, from the spec."""
    custom = [e for e in derivatives_spec()["entities"] if not e["builtin"]]
    return {
        "name": derivatives_spec()["name"],
        "entities": [{"name": e["name"], "pattern": f"[_/\\\\]+{e['key']}-([a-zA-Z0-9]+)"}
                     for e in custom],
        "default_path_patterns": [o["pattern"] for o in derivatives_spec()["outputs"].values()],
    }


def output_layout(output_dir: Path) -> Any:
    """A pybids ``BIDSLayout`` over an nnbrain output dataset (``models/`` included)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    config_file = output_dir / "code" / "nnbrain_bids_config.json"
    if not config_file.is_file():
        raise MissingInputError("pybids config missing; was this written by nnbrain?", config_file)
    indexer = BIDSLayoutIndexer(validate=False, ignore=[re.compile(r"/(\.|logs|figures|code)")])
    return BIDSLayout(output_dir, validate=False, is_derivative=True, indexer=indexer,
                      config=["bids", "derivatives", str(config_file)])


def run_validator(bids_dir: Path) -> None:
    """Run the official BIDS validator (``bids-validator-deno``); raise on errors (exit 16)."""
    exe = shutil.which("bids-validator-deno")
    if exe is None:
        raise MissingInputError("bids-validator-deno is not installed; install nnbrain's "
                                "dependencies or pass --skip-bids-validation")
    proc = subprocess.run([exe, "--format", "json", "--ignoreWarnings", str(bids_dir)],
                          capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return
    try:
        issues = json.loads(proc.stdout)["issues"]["issues"]
        errors = [i for i in issues if i.get("severity") == "error"]
        lines = sorted({f"{i.get('code')}: {i.get('location', '')}" for i in errors})
        summary = "; ".join(lines[:5]) + (f" (+{len(lines) - 5} more)" if len(lines) > 5 else "")
    except (json.JSONDecodeError, KeyError, TypeError):
        summary = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        summary = summary[0]
    raise BIDSValidationError(
        f"the BIDS validator found errors: {summary}. Fix them, or pass --skip-bids-validation "
        "if you know the dataset is usable", bids_dir)


@dataclass(frozen=True)
class RunData:
    """The files of one BOLD run that the participant workflow needs."""

    bold: Path
    mask: Path
    confounds: Path
    events: Path
    task: str
    run: str
    tr: float


def _one(layout: Any, bold: str, what: str, **query: Any) -> Path:
    """The single file matching ``query``; MissingInputError naming ``bold`` otherwise."""
    found = layout.get(**query)
    if len(found) != 1:
        raise MissingInputError(f"expected one {what} for this run, found {len(found)}", bold)
    return Path(found[0].path)


def collect_runs(bids_dir: Path, derivatives: tuple[Path, ...], subject: str) -> list[RunData]:
    """Query raw events and fMRIPrep outputs (preprocessed BOLD, mask, confounds) for a subject.

    Raises
    ------
    MissingInputError
        A BOLD run lacks its mask, confounds or events, or nothing preprocessed exists.
    """
    from bids import BIDSLayout

    layout = BIDSLayout(bids_dir, validate=False, derivatives=[str(d) for d in derivatives])
    bolds = layout.get(subject=subject, suffix="bold", desc="preproc", space=SPACE,
                       extension=".nii.gz", scope="derivatives")
    if not bolds:
        raise MissingInputError(
            f"no preprocessed BOLD (space-{SPACE}, desc-preproc) for sub-{subject}; "
            "run fMRIPrep with --output-spaces MNI152NLin2009cAsym or point --derivatives at "
            "its outputs", derivatives[0] if derivatives else bids_dir)
    runs = []
    for bold in bolds:
        ents = {k: v for k, v in bold.get_entities().items()
                if k in ("subject", "session", "task", "run", "acquisition")}
        mask = _one(layout, bold.path, "brain mask", **ents, suffix="mask", desc="brain",
                    space=SPACE, extension=".nii.gz", scope="derivatives")
        confounds = _one(layout, bold.path, "confounds file", **ents, suffix="timeseries",
                         desc="confounds", extension=".tsv", scope="derivatives")
        events = _one(layout, bold.path, "events.tsv", **ents, suffix="events",
                      extension=".tsv", scope="raw")
        tr = bold.get_metadata().get("RepetitionTime")
        if tr is None:
            raise DataError("RepetitionTime missing from the BOLD sidecar", bold.path)
        runs.append(RunData(Path(bold.path), mask, confounds, events, ents["task"],
                            str(ents.get("run", "")), float(tr)))
    return runs


def list_subjects(bids_dir: Path) -> list[str]:
    """Participant labels present in the raw dataset (``sub-*`` folders), sorted."""
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())


def select_subjects(bids_dir: Path, requested: tuple[str, ...]) -> list[str]:
    """Requested participants (all when empty), checked against the dataset (exit 18 if unknown)."""
    present = list_subjects(bids_dir)
    if not requested:
        if not present:
            raise NoDataError("no sub-* folders: the dataset has no participants", bids_dir)
        return present
    unknown = [s for s in requested if s not in present]
    if unknown:
        raise NoDataError(f"participant(s) {', '.join('sub-' + s for s in unknown)} not found; "
                          f"present: {', '.join('sub-' + s for s in present) or 'none'}", bids_dir)
    return list(requested)


@dataclass(frozen=True)
class AtlasFiles:
    """A dseg atlas: image, label table, and its BIDS label."""

    image: Path
    labels: Path
    label: str


def find_atlas(path: Path) -> AtlasFiles:
    """Locate the dseg image and label TSV of an atlas derivative directory or NIfTI file.

    Raises
    ------
    MissingInputError
        No (or no unique) ``*_dseg.nii[.gz]``, or its ``.tsv`` is missing.
    """
    if path.is_dir():
        found = sorted(path.rglob("*_dseg.nii*"))
        if len(found) != 1:
            raise MissingInputError(
                f"expected exactly one *_dseg.nii.gz atlas image, found {len(found)}"
                + (f" ({', '.join(p.name for p in found[:4])})" if found else "")
                + "; pass the image itself with --atlas", path)
        image = found[0]
    elif path.is_file():
        image = path
    else:
        raise MissingInputError("atlas not found; pass an atlas derivative directory or a "
                                "dseg NIfTI with --atlas", path)
    stem = image.name.split(".nii")[0]
    labels = image.with_name(stem + ".tsv")
    if not labels.is_file():
        raise MissingInputError(f"atlas label table {labels.name} (columns index, name) is "
                                "missing next to the atlas image", image)
    match = re.search(r"atlas-([A-Za-z0-9]+)", stem)
    return AtlasFiles(image, labels, match.group(1) if match else bids_label(stem))


#: Stimulus file extensions nnbrain reads (lower case): images (PIL) and audio (soundfile).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def collect_stimuli(bids_dir: Path, events_files: list[Path]) -> list[str]:
    """Sorted unique ``stim_file`` values of the events files, checked to exist under stimuli/.

    Images (:data:`IMAGE_SUFFIXES`) and audio files (:data:`AUDIO_SUFFIXES`: WAV, FLAC, OGG)
    are accepted; ``n/a`` entries (no stimulus) are skipped.

    Raises
    ------
    DataError
        An events file has no ``stim_file`` column, names a file of another type, or two
        stimuli in different folders share a file name.
    MissingInputError
        A named stimulus file does not exist (the message names the events file).
    """
    import pandas as pd

    named_in: dict[str, Path] = {}
    for events in events_files:
        table = pd.read_csv(events, sep="\t", dtype={"stim_file": str})
        if "stim_file" not in table.columns:
            raise DataError("events file has no 'stim_file' column naming the stimulus shown "
                            "(path relative to stimuli/)", events)
        for name in table["stim_file"].dropna():
            named_in.setdefault(name, events)
    by_file_name: dict[str, str] = {}
    for name in sorted(named_in):
        _check_stimulus(bids_dir, name, named_in[name])
        other = by_file_name.setdefault(Path(name).name, name)
        if other != name:
            raise DataError(f"stim_file values {other!r} and {name!r} share the file name "
                            f"{Path(name).name!r}; stimuli are identified by file name in the "
                            "outputs, so rename one", named_in[name])
    return sorted(named_in)


def _check_stimulus(bids_dir: Path, name: str, events: Path) -> None:
    """Refuse a ``stim_file`` of an unsupported type or one missing under ``stimuli/``."""
    path = bids_dir / "stimuli" / name
    where = f"stim_file={name} in {_relative(events, bids_dir)}"
    if path.suffix.lower() not in IMAGE_SUFFIXES + AUDIO_SUFFIXES:
        raise DataError(f"{where}: not a stimulus type nnbrain reads; use an image "
                        f"({', '.join(IMAGE_SUFFIXES)}) or audio ({', '.join(AUDIO_SUFFIXES)}) "
                        "file", path)
    if not path.is_file():
        raise MissingInputError(f"stimulus named in events.tsv ({where}) is missing; put it "
                                "under stimuli/ or fix the events file", path)


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def bids_uri(path: Path, roots: dict[str, Path]) -> str:
    """BIDS URI (``bids:<name>:<relpath>``) of ``path`` under its innermost matching root.

    >>> bids_uri(Path("/d/derivatives/fmriprep/sub-01/x.nii.gz"),
    ...          {"raw": Path("/d"), "fmriprep": Path("/d/derivatives/fmriprep")})
    'bids:fmriprep:sub-01/x.nii.gz'
    """
    for name, root in sorted(roots.items(), key=lambda item: -len(Path(item[1]).resolve().parts)):
        try:
            return f"bids:{name}:{Path(path).resolve().relative_to(Path(root).resolve())}"
        except ValueError:
            continue
    return Path(path).resolve().as_uri()
