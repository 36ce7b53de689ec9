"""A crashing node: exit 1, crash files and a summary in logs/<run-uuid>/, no subject outputs."""

from __future__ import annotations

import gzip
from pathlib import Path

from nnbrain.cli.run import main


def test_node_crash_leaves_logs_and_no_half_written_outputs(demo_copy: Path, capsys) -> None:
    bold = (demo_copy / "derivatives" / "fmriprep" / "sub-01" / "func" /
            "sub-01_task-digits_run-02_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz")
    bold.write_bytes(gzip.compress(b"not a nifti file at all"))
    out = demo_copy / "derivatives" / "nnbrain"
    code = main([str(demo_copy), str(out), "participant", "--participant-label", "01",
                 "--model-spec", str(demo_copy / "code" / "model_spec.yaml"),
                 "-w", str(demo_copy.parent / "work"), "--skip-bids-validation",
                 "--n-permutations", "10", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "the workflow failed; crash files: crash-" in err
    (log_dir,) = (out / "logs").iterdir()
    crashes = sorted(log_dir.glob("crash-*.txt"))
    assert crashes and any("betas" in c.name for c in crashes)
    summary = (log_dir / "crash_summary.txt").read_text()
    assert all(str(c) in summary for c in crashes)
    assert (log_dir / "nnbrain.toml").is_file() and (log_dir / "nnbrain.log").is_file()
    assert not (out / "sub-01").exists()
    assert not list(out.glob("models/**/*.npy"))
