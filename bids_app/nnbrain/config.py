"""The immutable settings of one nnbrain run.

Built once in :mod:`nnbrain.cli.run` from the command line, passed explicitly to
:func:`nnbrain.workflows.base.init_nnbrain_wf`, and written next to the outputs as TOML
(``code/nnbrain.toml`` and ``logs/<run-uuid>/nnbrain.toml``).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PATH_FIELDS = ("bids_dir", "output_dir", "work_dir", "model_spec", "atlas", "cache_dir")
_PATH_TUPLE_FIELDS = ("derivatives",)


@dataclass(frozen=True)
class Settings:
    """Everything that determines what a run does.

    Attributes
    ----------
    bids_dir : Path
        Root of the input BIDS dataset (absolute).
    output_dir : Path
        Root of the output BIDS-Derivatives / DataLad dataset (absolute).
    analysis_level : str
        ``"participant"`` or ``"group"``.
    work_dir : Path
        Scratch directory for the Nipype graph (absolute, outside the input).
    run_uuid : str
        Identifier of this run: ``<YYYYmmdd-HHMMSS>_<uuid4>``; names ``logs/<run-uuid>/``.
    participant_label : tuple of str
        Selected participants without the ``sub-`` prefix; empty means all.
    model_spec : Path or None
        The model spec (YAML/JSON); required at participant level.
    derivatives : tuple of Path
        Preprocessed-data derivatives (fMRIPrep); default ``BIDS_DIR/derivatives/fmriprep``.
    cache_dir : Path or None
        Root of the activation cache (default ``WORK_DIR/activation_cache``).
    atlas : Path or None
        Atlas derivative (directory holding a ``*_dseg.nii.gz`` and its ``_dseg.tsv``) or a
        dseg NIfTI file; default ``BIDS_DIR/derivatives/atlas``.
    nprocs : int
        Processes for Nipype's MultiProc plugin.
    omp_nthreads : int
        Threads per process (torch, BLAS).
    mem_gb : float
        Memory available to the workflow (GB), passed to MultiProc.
    device : str
        Torch device of the network forward passes (``cpu``, ``cuda``, ``cuda:N``).
    design : str
        ``event`` (one response pattern per stimulus, single-trial GLM) or ``continuous``
        (events are stimulation blocks; scans compared with HRF-convolved frame features).
    discard_seconds : float
        Continuous designs: seconds dropped at the start of every block.
    random_seed : int
        Master seed: permutations and random-init weights derive their seeds from it.
    n_permutations : int
        Permutations of stimulus labels per test.
    skip_bids_validation : bool
        Do not run the official BIDS validator on the input.
    allow_custom_code : bool
        Allow model specs to build architectures from the user's Python files.
    overwrite : bool
        Replace existing outputs of the selected participants.
    stop_on_first_crash : bool
        Abort the workflow at the first crashed node.
    verbosity : int
        Log level offset: ``-v`` counts up, ``-q`` counts down.
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    run_uuid: str
    participant_label: tuple[str, ...] = ()
    model_spec: Path | None = None
    derivatives: tuple[Path, ...] = ()
    atlas: Path | None = None
    cache_dir: Path | None = None
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_gb: float = 4.0
    device: str = "cpu"
    design: str = "event"
    discard_seconds: float = 6.0
    random_seed: int = 0
    n_permutations: int = 1000
    skip_bids_validation: bool = False
    allow_custom_code: bool = False
    overwrite: bool = False
    stop_on_first_crash: bool = False
    verbosity: int = 0
    version: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        """Plain, TOML-serialisable dictionary (paths as strings, ``None`` dropped)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            out[f.name] = value
        return out

    def to_toml(self) -> str:
        """Serialise to TOML text under a ``[nnbrain]`` table."""
        import tomli_w

        return tomli_w.dumps({"nnbrain": self.to_dict()})

    @classmethod
    def from_toml(cls, text: str) -> Settings:
        """Inverse of :meth:`to_toml`."""
        data = dict(tomllib.loads(text)["nnbrain"])
        for name in _PATH_FIELDS:
            if name in data:
                data[name] = Path(data[name])
        for name in _PATH_TUPLE_FIELDS:
            data[name] = tuple(Path(p) for p in data.get(name, ()))
        data["participant_label"] = tuple(data.get("participant_label", ()))
        return cls(**data)
