"""Command-line parsers: the BIDS-App form and the reserved subcommands.

``nnbrain BIDS_DIR OUTPUT_DIR {participant,group} [options]`` is the BIDS-App form (as fMRIPrep
has it). A first word listed in :data:`SUBCOMMANDS` dispatches to that subcommand's parser instead;
a dataset directory with such a name is reached as ``./list-layers``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import NoReturn

from nnbrain import __version__
from nnbrain.errors import UsageError

#: Reserved first words; each maps to a one-line description.
SUBCOMMANDS: dict[str, str] = {
    "list-layers": "print each model's layers with output shapes for a model spec",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise :class:`UsageError` (exit 64) instead of exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().strip()}\n(see: {self.prog} --help)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _participant_label(text: str) -> str:
    label = text.removeprefix("sub-")
    if not label or not label.isalnum():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a participant label (alphanumeric, with or without 'sub-')"
        )
    return label


def _add_bids_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("BIDS filtering and inputs")
    g.add_argument("--participant-label", "--participant_label", nargs="+", default=[],
                   type=_participant_label, metavar="LABEL",
                   help="participants to process (with or without 'sub-'); default: all")
    g.add_argument("--model-spec", type=Path, metavar="FILE",
                   help="model spec (YAML or JSON) naming networks, weights and layers")
    g.add_argument("--derivatives", nargs="+", type=Path, default=[], metavar="PATH",
                   help="preprocessed derivatives (default: BIDS_DIR/derivatives/fmriprep)")
    g.add_argument("--atlas", type=Path, metavar="PATH",
                   help="atlas derivative directory or dseg NIfTI (default: BIDS_DIR/derivatives/atlas)")
    g.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                   help="do not run the official BIDS validator on the input dataset")
    g.add_argument("--allow-custom-code", action="store_true",
                   help="allow model specs to build architectures from your own Python files "
                        "(runs that code; off by default)")


def _device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; use cpu, cuda or "
                                         "cuda:N")
    return text


def _add_performance_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("performance")
    g.add_argument("--nprocs", "--n-cpus", type=_positive_int, default=1, metavar="N",
                   help="processes for the workflow (default: 1)")
    g.add_argument("--omp-nthreads", type=_positive_int, default=1, metavar="N",
                   help="threads per process for torch and BLAS (default: 1)")
    g.add_argument("--mem-gb", type=_positive_float, default=4.0, metavar="GB",
                   help="memory available to the workflow in GB (default: 4)")
    g.add_argument("--device", type=_device, default="cpu", metavar="DEVICE",
                   help="torch device of the network forward passes: cpu, cuda or cuda:N "
                        "(default: cpu)")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _add_design_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("design")
    g.add_argument("--design", choices=("event", "continuous"), default="event",
                   help="event: one response pattern per stimulus (single-trial GLM betas); "
                        "continuous: each events.tsv row is a stimulation block whose audio "
                        "plays throughout; scans are compared with HRF-convolved frame "
                        "activations (default: event)")
    g.add_argument("--discard-seconds", type=_non_negative_float, default=6.0, metavar="S",
                   help="continuous designs: seconds dropped at the start of every block "
                        "(default: 6)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run control")
    g.add_argument("-w", "--work-dir", type=Path, metavar="PATH",
                   help="scratch directory (default: ./work); never inside BIDS_DIR")
    g.add_argument("--cache-dir", type=Path, metavar="PATH",
                   help="activation cache shared by runs and participants "
                        "(default: WORK_DIR/activation_cache)")
    g.add_argument("--random-seed", type=int, default=0, metavar="SEED",
                   help="master seed for permutations and random-init weights (default: 0)")
    g.add_argument("--n-permutations", type=_positive_int, default=1000, metavar="N",
                   help="stimulus-label permutations per test (default: 1000)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs of the selected participants")
    g.add_argument("--stop-on-first-crash", action="store_true",
                   help="abort at the first crashed workflow node")
    g.add_argument("-v", "--verbose", action="count", default=0, dest="verbose",
                   help="more log output (repeatable)")
    g.add_argument("-q", "--quiet", action="count", default=0, dest="quiet",
                   help="less log output (repeatable)")


def build_bids_app_parser() -> argparse.ArgumentParser:
    """Parser of the BIDS-App form ``nnbrain BIDS_DIR OUTPUT_DIR {participant,group}``."""
    epilog = "subcommands (first word): " + "; ".join(
        f"nnbrain {name} ...: {desc}" for name, desc in SUBCOMMANDS.items()
    )
    parser = _Parser(
        prog="nnbrain",
        description="nnbrain: layer x ROI similarity between deep networks and brain activity "
        "(a BIDS App).",
        epilog=epilog,
    )
    parser.add_argument("bids_dir", type=Path, help="root of the input BIDS dataset")
    parser.add_argument("output_dir", type=Path,
                        help="output derivatives dataset (e.g. BIDS_DIR/derivatives/nnbrain)")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        help="participant: per-subject outputs; group: aggregate them")
    parser.add_argument("--version", action="version", version=f"nnbrain {__version__}")
    _add_bids_options(parser)
    _add_design_options(parser)
    _add_performance_options(parser)
    _add_run_options(parser)
    return parser


def build_list_layers_parser() -> argparse.ArgumentParser:
    """Parser of ``nnbrain list-layers SPEC``."""
    parser = _Parser(prog="nnbrain list-layers", description=SUBCOMMANDS["list-layers"])
    parser.add_argument("spec", type=Path, help="model spec (YAML or JSON)")
    parser.add_argument("--allow-custom-code", action="store_true",
                        help="allow architectures from your own Python files (runs that code)")
    parser.add_argument("--stimulus", type=Path, metavar="FILE",
                        help="an image or audio (WAV, FLAC, OGG) file to run, preprocessed as "
                        "the spec says, through each model of its kind (default: a blank input "
                        "of the declared shape)")
    return parser
