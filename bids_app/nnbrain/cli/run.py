"""``nnbrain`` entry point: ``main(argv) -> int``; only :func:`entry_point` calls ``sys.exit``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import uuid
from argparse import Namespace
from datetime import datetime, timezone, UTC
from pathlib import Path
from typing import Any

from nnbrain import __version__
from nnbrain.cli.parser import SUBCOMMANDS, build_bids_app_parser, build_list_layers_parser
from nnbrain.config import Settings
from nnbrain.errors import (
    EXIT_SUCCESS,
    BIDSValidationError,
    CantCreateError,
    DataError,
    MissingInputError,
    NnbrainError,
    NoDataError,
    UsageError,
)

LOGGER = logging.getLogger("nnbrain")


def entry_point() -> None:
    """Console script ``nnbrain``."""
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    """Run nnbrain with command-line arguments ``argv`` and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _run_subcommand(argv[0], argv[1:])
        args = build_bids_app_parser().parse_args(argv)
        settings = settings_from_args(args)
        _setup_console_logging(settings.verbosity)
        if settings.analysis_level == "participant":
            return run_participant(settings)
        return run_group(settings)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except NnbrainError as exc:
        print(f"nnbrain: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run_subcommand(name: str, argv: list[str]) -> int:
    if name == "list-layers":
        args = build_list_layers_parser().parse_args(argv)
        print(list_layers(args.spec.resolve(), args.stimulus,
                          allow_custom_code=args.allow_custom_code))
        return EXIT_SUCCESS
    raise UsageError(f"unknown subcommand {name!r}")


def list_layers(spec_path: Path, stimulus: Path | None, *,
                allow_custom_code: bool = False) -> str:
    """Text listing every module of each spec model with its output shape for one stimulus.

    With ``stimulus`` (an image, or a WAV/FLAC/OGG file), each model of that kind runs it,
    read and preprocessed by :func:`nnbrain.models.stimuli.load_stimuli` as the spec says, through
    the network (CPU, untrained weights: shapes do not depend on them). Without it, and for
    models of the other kind, a zero input of the declared shape runs on torch's meta device
    (no weights are allocated). Layers selected by the spec are marked ``*``.

    Raises
    ------
    MissingInputError
        The spec or the stimulus does not exist.
    DataError
        The spec is invalid, or the stimulus cannot be read or preprocessed for a model.
    """
    from nnbrain.spec import load_model_spec
    from nnbrain.utils.bids import AUDIO_SUFFIXES

    if stimulus is not None and not stimulus.is_file():
        raise MissingInputError("stimulus not found; pass an existing image or audio file to "
                                "--stimulus", stimulus)
    stimulus_kind = None
    if stimulus is not None:
        stimulus_kind = "audio" if stimulus.suffix.lower() in AUDIO_SUFFIXES else "image"
    lines = []
    for model in load_model_spec(spec_path, allow_custom_code=allow_custom_code):
        kind, shape = model.declared_input()
        run_stimulus = stimulus if kind == stimulus_kind else None
        shapes, names = _layer_shapes(model.to_dict(), run_stimulus, allow_custom_code)
        what = "input" if kind == "image" else "audio input (bands, frames)"
        note = ""
        if stimulus is not None and run_stimulus is None:
            note = f" (declared; {stimulus.name} is {stimulus_kind})"
        lines.append(f"{model.name} ({model.architecture}), {what} {tuple(shape)}{note}:")
        for name in names:
            mark = "*" if name in model.layers else " "
            lines.append(f"  {mark} {name:<20} {shapes.get(name, '(not run)')}")
    lines.append("(* = listed in the spec)")
    return "\n".join(lines)


def _layer_shapes(spec: dict[str, Any], stimulus: Path | None,
                  allow_custom_code: bool) -> tuple[dict[str, str], list[str]]:
    """Output shape (without the batch axis, ``AxBxC``) of every named module, and the names.

    Runs ``stimulus`` through the untrained network on CPU, or a zero input of the declared
    shape on the meta device when ``stimulus`` is ``None``.
    """
    import torch

    from nnbrain.models.stimuli import load_stimuli
    from nnbrain.models.zoo import build_from_dict

    if stimulus is not None:
        net = build_from_dict(spec, allow_custom_code=allow_custom_code).eval()
        x = torch.as_tensor(load_stimuli([stimulus], spec))
    else:
        net = build_from_dict(spec, allow_custom_code=allow_custom_code, device="meta").eval()
        x = torch.zeros((1, *spec["input"]["shape"]), device="meta")
    shapes: dict[str, str] = {}
    handles = [module.register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, _describe_output(out)))
        for name, module in net.named_modules() if name]
    try:
        with torch.inference_mode():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    return shapes, [name for name, _module in net.named_modules() if name]


def _describe_output(out: Any) -> str:
    """``AxBxC`` shape of a module output without its batch axis (first tensor of a tuple)."""
    if isinstance(out, (tuple, list)) and out and hasattr(out[0], "shape"):
        out = out[0]
    shape = getattr(out, "shape", None)
    return "x".join(map(str, tuple(shape)[1:])) if shape is not None else type(out).__name__


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or path.is_relative_to(parent)


def settings_from_args(args: Namespace) -> Settings:
    """Check paths and build the immutable settings; writes nothing.

    Raises
    ------
    MissingInputError, BIDSValidationError, CantCreateError, UsageError
    """
    bids_dir = args.bids_dir.resolve()
    if not bids_dir.is_dir():
        raise MissingInputError("input BIDS directory does not exist; check the first argument",
                                bids_dir)
    if not (bids_dir / "dataset_description.json").is_file():
        raise BIDSValidationError("is not a BIDS dataset (no dataset_description.json); point "
                                  "the first argument at the dataset root", bids_dir)
    output_dir = args.output_dir.resolve()
    if output_dir == bids_dir:
        raise CantCreateError("the output directory is the input dataset; use e.g. "
                              f"{bids_dir / 'derivatives' / 'nnbrain'}", output_dir)
    if _is_within(output_dir, bids_dir) and not output_dir.is_relative_to(bids_dir / "derivatives"):
        raise CantCreateError("the output directory is inside the input dataset; put it under "
                              f"{bids_dir / 'derivatives'}/ or outside the dataset", output_dir)
    if _is_within(bids_dir, output_dir):
        raise CantCreateError("the output directory contains the input dataset; choose a "
                              "separate directory", output_dir)
    work_dir = (args.work_dir or Path.cwd() / "work").resolve()
    if _is_within(work_dir, bids_dir):
        raise CantCreateError("the work directory is inside the input dataset; pass "
                              "--work-dir somewhere else (e.g. /tmp/nnbrain-work)", work_dir)
    if args.cache_dir is not None and _is_within(args.cache_dir.resolve(), bids_dir):
        raise CantCreateError("the activation cache is inside the input dataset; pass "
                              "--cache-dir somewhere else", args.cache_dir.resolve())
    derivatives = tuple(p.resolve() for p in args.derivatives) or (
        bids_dir / "derivatives" / "fmriprep",)
    model_spec = args.model_spec.resolve() if args.model_spec else None
    if args.analysis_level == "participant":
        if model_spec is None:
            raise UsageError("participant level needs --model-spec FILE (the networks to compare)")
        if not model_spec.is_file():
            raise MissingInputError("model spec not found; pass an existing YAML/JSON file to "
                                    "--model-spec", model_spec)
        for path in derivatives:
            if not path.is_dir():
                raise MissingInputError("derivatives directory not found; pass fMRIPrep's "
                                        "output with --derivatives", path)
    atlas = (args.atlas or bids_dir / "derivatives" / "atlas").resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Settings(
        bids_dir=bids_dir, output_dir=output_dir, analysis_level=args.analysis_level,
        work_dir=work_dir, run_uuid=f"{stamp}_{uuid.uuid4()}",
        participant_label=tuple(dict.fromkeys(args.participant_label)), model_spec=model_spec,
        derivatives=derivatives, atlas=atlas,
        cache_dir=(args.cache_dir or work_dir / "activation_cache").resolve(), nprocs=args.nprocs,
        omp_nthreads=args.omp_nthreads, mem_gb=args.mem_gb,
        device=_check_device(args.device) if args.analysis_level == "participant" else "cpu",
        design=args.design, discard_seconds=args.discard_seconds,
        random_seed=args.random_seed,
        n_permutations=args.n_permutations, skip_bids_validation=args.skip_bids_validation,
        allow_custom_code=args.allow_custom_code,
        overwrite=args.overwrite, stop_on_first_crash=args.stop_on_first_crash,
        verbosity=args.verbose - args.quiet, version=__version__,
    )


def _check_device(device: str) -> str:
    """Refuse a CUDA device this machine does not have (exit 64)."""
    if device == "cpu":
        return device
    import torch

    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: no such CUDA device here "
                         f"({torch.cuda.device_count()} visible); use --device cpu")
    return device


def _setup_console_logging(verbosity: int) -> None:
    level = max(logging.DEBUG, logging.INFO - 10 * verbosity)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s: %(message)s",
                                           "%H:%M:%S"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level)
    LOGGER.propagate = False


def _check_output_writable(output_dir: Path) -> None:
    existing = output_dir if output_dir.exists() else next(
        p for p in output_dir.parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CantCreateError("cannot write here (read-only or not a directory); choose another "
                              "output directory", existing)


def _plan_participant(settings: Settings):
    """Resolve everything the participant level needs, before anything is written."""
    from nnbrain.measures import resolve_measures
    from nnbrain.spec import check_layers, check_weights, load_measures, load_model_spec
    from nnbrain.utils.bids import collect_runs, collect_stimuli, find_atlas, select_subjects
    from nnbrain.workflows.base import Plan

    subjects = select_subjects(settings.bids_dir, settings.participant_label)
    assert settings.model_spec is not None
    allow = settings.allow_custom_code
    models = load_model_spec(settings.model_spec, allow_custom_code=allow)
    models = check_layers(models, settings.model_spec, allow_custom_code=allow)
    measures = resolve_measures(load_measures(settings.model_spec, models, settings.design),
                                settings.n_permutations)
    models = check_weights(models, allow_custom_code=allow)
    runs = {s: collect_runs(settings.bids_dir, settings.derivatives, s) for s in subjects}
    tasks = sorted({r.task for rs in runs.values() for r in rs})
    if len(tasks) != 1:
        raise NoDataError(f"the selected data hold {len(tasks)} tasks ({', '.join(tasks)}); "
                          "this version processes one task per output dataset",
                          settings.bids_dir)
    stimuli = collect_stimuli(settings.bids_dir, [r.events for rs in runs.values() for r in rs])
    atlas = find_atlas(settings.atlas)
    links = {"raw": settings.bids_dir, "atlas": settings.atlas if settings.atlas.is_dir()
             else settings.atlas.parent}
    links.update({p.name: p for p in settings.derivatives})
    return Plan(subjects=runs, task=tasks[0], stimuli=stimuli, atlas=atlas, models=models,
                measures=measures, dataset_links=links)


def _refuse_existing(settings: Settings, rel_paths: list[str]) -> None:
    existing = [p for p in rel_paths if (settings.output_dir / p).exists()]
    if existing and not settings.overwrite:
        raise CantCreateError(f"outputs exist ({', '.join(existing[:3])}"
                              f"{', ...' if len(existing) > 3 else ''}); pass --overwrite to "
                              "replace them or choose another output directory",
                              settings.output_dir)


def _start_run_logs(settings: Settings, links: dict[str, Path] | None,
                    measure_descriptions: dict[str, str] | None = None) -> Path:
    """Create the output dataset if needed (with its top-level files when ``links`` are given)
    and the run's log directory with its settings and log file."""
    from nnbrain.utils.datalad import dataset_lock, ensure_dataset
    from nnbrain.utils.provenance import top_level_files, write_if_changed

    settings.output_dir.mkdir(parents=True, exist_ok=True)
    with dataset_lock(settings.output_dir):
        ensure_dataset(settings.output_dir)
        for rel, text in top_level_files(settings.output_dir, links or {},
                                         measure_descriptions).items():
            if links is not None:
                write_if_changed(settings.output_dir / rel, text)
    log_dir = settings.output_dir / "logs" / settings.run_uuid
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "nnbrain.toml").write_text(settings.to_toml())
    handler = logging.FileHandler(log_dir / "nnbrain.log")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s: %(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.info("nnbrain %s, run %s: %s", __version__, settings.run_uuid, " ".join(sys.argv))
    return log_dir


def _configure_nipype(settings: Settings, log_dir: Path) -> None:
    """Set Nipype's execution options; must precede building workflows (they copy the config)."""
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    nipype_config.update_config({
        "execution": {"crashfile_format": "txt", "check_version": False,
                      "stop_on_first_crash": settings.stop_on_first_crash,
                      "hash_method": "content", "crashdump_dir": str(log_dir),
                      "remove_unnecessary_outputs": False},
        "monitoring": {"enabled": False},
    })
    nipype_logging.update_logging(nipype_config)
    nipype_logging.getLogger("nipype.workflow").setLevel(
        logging.WARNING if settings.verbosity <= 0 else logging.INFO)


def _run_workflow(workflow, settings: Settings, log_dir: Path) -> None:
    """Run a Nipype workflow with MultiProc; on crashes, write a summary and raise (exit 1)."""
    try:
        workflow.run(plugin="MultiProc", plugin_args={
            "n_procs": settings.nprocs, "memory_gb": settings.mem_gb,
            "raise_insufficient": False})
    except (RuntimeError, NnbrainError) as exc:
        crashes = sorted(log_dir.glob("crash-*.txt"))
        summary = log_dir / "crash_summary.txt"
        summary.write_text(f"{exc}\n\ncrash files:\n" + "".join(f"{c}\n" for c in crashes))
        raise NnbrainError(f"the workflow failed; crash files: "
                           f"{', '.join(c.name for c in crashes) or 'none'} "
                           f"(summary in {summary})", log_dir) from exc


def _commit(settings: Settings, staging: Path, written: list[str], message: str,
            extra: list[str], replace: list[str] = ()) -> None:
    """Under the dataset lock: remove ``replace`` (with --overwrite), move the staged outputs
    into the dataset and save them."""
    from nnbrain.utils.datalad import dataset_lock, save

    with dataset_lock(settings.output_dir):
        for rel in replace:
            shutil.rmtree(settings.output_dir / rel, ignore_errors=True)
        for rel in written:
            target = settings.output_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, target)
        save(settings.output_dir, message, written + extra)


def _copy_spec(settings: Settings) -> str:
    assert settings.model_spec is not None
    rel = f"code/{settings.model_spec.name}"
    target = settings.output_dir / rel
    if not target.exists() or target.read_bytes() != settings.model_spec.read_bytes():
        shutil.copyfile(settings.model_spec, target)
    (settings.output_dir / "code" / "nnbrain.toml").write_text(settings.to_toml())
    return rel


def run_participant(settings: Settings) -> int:
    """Participant level: validate, plan, run the workflow, move outputs in, save."""
    from nnbrain.measures import descriptions
    from nnbrain.utils.bids import run_validator
    from nnbrain.workflows.base import init_nnbrain_wf

    start = time.monotonic()
    if not settings.skip_bids_validation:
        run_validator(settings.bids_dir)
    plan = _plan_participant(settings)
    _refuse_existing(settings, [f"sub-{s}" for s in plan.subjects])
    _check_output_writable(settings.output_dir)
    log_dir = _start_run_logs(settings, plan.dataset_links, descriptions(plan.measures, settings.design))
    spec_rel = _copy_spec(settings)
    staging = settings.work_dir / settings.run_uuid / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    _configure_nipype(settings, log_dir)
    workflow = init_nnbrain_wf(settings, plan, staging)
    _run_workflow(workflow, settings, log_dir)
    written = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    subjects = ", ".join(f"sub-{s}" for s in plan.subjects)
    _commit(settings, staging, written,
            f"nnbrain participant level: {subjects}\n\nrun {settings.run_uuid}, nnbrain "
            f"{__version__}", [spec_rel, "code", f"logs/{settings.run_uuid}",
                               "dataset_description.json", ".bidsignore", "README.md",
                               "descriptions.tsv", "descriptions.json"],
            replace=[f"sub-{s}" for s in plan.subjects] if settings.overwrite else [])
    LOGGER.info("participant level done in %.1f s: %d files for %s in %s",
                time.monotonic() - start, len(written), subjects, settings.output_dir)
    return EXIT_SUCCESS


def _same_measure(label: str, tables: list) -> dict:
    """The sidecar of a measure's participant tables; refuses tables made with different
    measure parameters (exit 65), which the group level must not average together."""
    sidecars = [json.loads(Path(f.path).with_suffix(".json").read_text()) for f in tables]
    first = sidecars[0]
    for f, sidecar in zip(tables[1:], sidecars[1:]):
        for key in ("Measure", "Parameters", "PermutationTest", "Design"):
            if sidecar.get(key) != first.get(key):
                raise DataError(f"desc-{label}: {key} differs from that of {tables[0].path} "
                                "(participants run with different measure settings); rerun them "
                                "with one model spec and settings, or aggregate them separately "
                                "with --participant-label", f.path)
    return first


def _group_inputs(layout, files: list, query: dict[str, Any], output_dir: Path) -> list:
    """Participant tables per measure label (desc), with the ROI RDMs of RSA measures.

    Parameters
    ----------
    layout : bids.BIDSLayout
        Of the output dataset.
    files : list of BIDSFile
        Participant similarity tables.
    query : dict
        ``task``, ``space``, ``atlas`` and ``subject`` (a list or ``Query.ANY``) of the tables.
    output_dir : Path
    """
    from nnbrain.utils.bids import bids_uri
    from nnbrain.workflows.group import GroupInputs

    by_desc: dict[str, list] = {}
    for f in files:
        by_desc.setdefault(f.entities["desc"], []).append(f)
    measures = []
    for label, group in by_desc.items():
        sidecar = _same_measure(label, group)
        roi_rdms: dict[str, list[str]] = {}
        if sidecar["Measure"] == "rsa":
            for rdm in sorted(layout.get(suffix="relmat", desc=sidecar["Parameters"]["RDM"],
                                         extension=".tsv", datatype="func", **query),
                              key=lambda f: f.path):
                roi_rdms.setdefault(rdm.entities["label"], []).append(rdm.path)
        measures.append(GroupInputs(
            label=label, measure=sidecar, roi_rdms=roi_rdms,
            tables=[(f.entities["subject"], f.path, bids_uri(Path(f.path), {"": output_dir}))
                    for f in group]))
    return measures


def run_group(settings: Settings) -> int:
    """Group level: read participant tables through pybids, write group tables and figures."""
    from bids.layout import Query

    from nnbrain.utils.bids import build_path, output_layout
    from nnbrain.workflows.group import init_group_wf

    start = time.monotonic()
    if not (settings.output_dir / "dataset_description.json").is_file():
        raise MissingInputError("no participant outputs here; run the participant level first",
                                settings.output_dir)
    layout = output_layout(settings.output_dir)
    subject = list(settings.participant_label) or Query.ANY
    files = sorted(layout.get(suffix="similarity", extension=".tsv", subject=subject),
                   key=lambda f: f.path)
    if not files:
        raise NoDataError("no participant similarity tables found (sub-*/func/*_similarity.tsv)"
                          + (f" for {', '.join(settings.participant_label)}"
                             if settings.participant_label else "")
                          + "; run the participant level first", settings.output_dir)
    entities = {(f.entities["task"], f.entities["space"], f.entities["atlas"]) for f in files}
    if len(entities) != 1:
        raise NoDataError(f"participant tables mix {len(entities)} task/space/atlas "
                          "combinations; this version aggregates one", settings.output_dir)
    task, space, atlas = entities.pop()
    ents = {"task": task, "space": space, "atlas": atlas}
    measures = _group_inputs(layout, files, {**ents, "subject": subject}, settings.output_dir)
    targets = [build_path("group_similarity", **ents, desc=d)
               for m in measures for d in (m.label, f"{m.label}Mean")]
    _refuse_existing(settings, targets)
    _check_output_writable(settings.output_dir)
    log_dir = _start_run_logs(settings, None)
    staging = settings.work_dir / settings.run_uuid / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    _configure_nipype(settings, log_dir)
    workflow = init_group_wf(measures=measures, entities=ents, seed=settings.random_seed,
                             staging_dir=staging, work_dir=settings.work_dir)
    _run_workflow(workflow, settings, log_dir)
    written = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    participants = sorted({row[0] for m in measures for row in m.tables})
    _commit(settings, staging, written,
            f"nnbrain group level: {len(participants)} participants "
            f"({', '.join('sub-' + p for p in participants)})\n\nrun {settings.run_uuid}, "
            f"nnbrain {__version__}", [f"logs/{settings.run_uuid}"])
    LOGGER.info("group level done in %.1f s: %d files in %s", time.monotonic() - start,
                len(written), settings.output_dir)
    return EXIT_SUCCESS

