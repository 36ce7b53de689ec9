"""Bad input: one clear message naming the path, the exit code from the table, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nnbrain.cli.run import main


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _participant(ds: Path, out: Path, *extra: str) -> list[str]:
    return [str(ds), str(out), "participant", "--model-spec",
            str(ds / "code" / "model_spec.yaml"), "-w", str(ds.parent / "work"), *extra]


def _nothing_written(out: Path, ds: Path) -> None:
    assert not out.exists(), f"{out} was created"
    assert not (ds.parent / "work").exists()


def test_missing_input_directory(tmp_path: Path, capsys) -> None:
    code, err = _run([str(tmp_path / "nope"), str(tmp_path / "out"), "group"], capsys)
    assert code == 66
    assert f"{tmp_path / 'nope'}: input BIDS directory does not exist" in err
    assert not (tmp_path / "out").exists()


def test_not_a_bids_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "plain").mkdir()
    code, err = _run([str(tmp_path / "plain"), str(tmp_path / "out"), "group"], capsys)
    assert code == 16
    assert "is not a BIDS dataset (no dataset_description.json)" in err


def test_validator_errors_exit_16(demo_copy: Path, capsys) -> None:
    bad = demo_copy / "sub-01" / "func" / "sub-01_task-digits_run-01_desc-bad_bold.nii.gz"
    shutil.copyfile(demo_copy / "sub-01" / "func" / "sub-01_task-digits_run-01_bold.nii.gz", bad)
    out = demo_copy / "derivatives" / "nnbrain"
    code, err = _run(_participant(demo_copy, out), capsys)
    assert code == 16
    assert "the BIDS validator found errors" in err and "--skip-bids-validation" in err
    assert str(demo_copy) in err
    _nothing_written(out, demo_copy)


def test_unknown_participant_exit_18(demo_copy: Path, capsys) -> None:
    out = demo_copy / "derivatives" / "nnbrain"
    code, err = _run(_participant(demo_copy, out, "--participant-label", "07",
                                  "--skip-bids-validation"), capsys)
    assert code == 18
    assert "participant(s) sub-07 not found; present: sub-01, sub-02, sub-03" in err
    _nothing_written(out, demo_copy)


def test_model_spec_missing_exit_66_and_absent_exit_64(demo_copy: Path, capsys) -> None:
    out = demo_copy / "derivatives" / "nnbrain"
    argv = [str(demo_copy), str(out), "participant", "-w", str(demo_copy.parent / "work")]
    code, err = _run(argv + ["--model-spec", str(demo_copy / "missing.yaml")], capsys)
    assert code == 66 and f"{demo_copy / 'missing.yaml'}: model spec not found" in err
    code, err = _run(argv, capsys)
    assert code == 64 and "participant level needs --model-spec FILE" in err
    _nothing_written(out, demo_copy)


def test_invalid_model_spec_exit_65(demo_copy: Path, capsys) -> None:
    spec = demo_copy / "code" / "model_spec.yaml"
    spec.write_text(spec.read_text().replace("conv3", "conv10"))
    out = demo_copy / "derivatives" / "nnbrain"
    code, err = _run(_participant(demo_copy, out, "--skip-bids-validation"), capsys)
    assert code == 65
    assert "models[0].layers[2]: 'conv10' is not a layer of digitcnn; available: conv1" in err
    assert f"(run: nnbrain list-layers {spec})" in err
    _nothing_written(out, demo_copy)


def test_weights_hash_mismatch_exit_65(demo_copy: Path, capsys) -> None:
    spec = demo_copy / "code" / "model_spec.yaml"
    truth = json.loads((demo_copy / "code" / "ground_truth.json").read_text())
    spec.write_text(spec.read_text().replace(truth["weights_sha256"], "ab" * 32))
    out = demo_copy / "derivatives" / "nnbrain"
    code, err = _run(_participant(demo_copy, out, "--skip-bids-validation"), capsys)
    assert code == 65
    assert f"digitcnn_trained.pt: SHA-256 is {truth['weights_sha256']}, the model spec " \
           f"expects {'ab' * 32}" in err
    _nothing_written(out, demo_copy)
    spec.write_text(spec.read_text().replace(f'"{"ab" * 32}"', "0" * 64))
    code, err = _run(_participant(demo_copy, out, "--skip-bids-validation"), capsys)
    assert code == 65
    assert "models[0].weights[0].sha256:" in err and "quote" in err, err
    _nothing_written(out, demo_copy)


@pytest.mark.parametrize("where, fragment", [
    ("same", "the output directory is the input dataset"),
    ("inside", "the output directory is inside the input dataset"),
])
def test_output_inside_input_exit_73(demo_copy: Path, capsys, where: str, fragment: str) -> None:
    out = demo_copy if where == "same" else demo_copy / "sub-01" / "nnbrain"
    code, err = _run(_participant(demo_copy, out), capsys)
    assert code == 73
    assert fragment in err and str(out) in err
    assert not (demo_copy / "sub-01" / "nnbrain").exists()


def test_work_dir_inside_input_exit_73(demo_copy: Path, capsys) -> None:
    out = demo_copy / "derivatives" / "nnbrain"
    argv = _participant(demo_copy, out)
    argv[argv.index("-w") + 1] = str(demo_copy / "work")
    code, err = _run(argv, capsys)
    assert code == 73
    assert f"{demo_copy / 'work'}: the work directory is inside the input dataset" in err
    assert not out.exists() and not (demo_copy / "work").exists()


def test_missing_fmriprep_derivatives_exit_66(demo_copy: Path, capsys) -> None:
    shutil.rmtree(demo_copy / "derivatives" / "fmriprep" / "sub-02")
    out = demo_copy / "derivatives" / "nnbrain"
    code, err = _run(_participant(demo_copy, out, "--skip-bids-validation"), capsys)
    assert code == 66
    assert "no preprocessed BOLD (space-MNI152NLin2009cAsym, desc-preproc) for sub-02" in err
    _nothing_written(out, demo_copy)


def test_missing_cuda_device_exit_64(demo_copy: Path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = demo_copy.parent / "out"
    code, err = _run(_participant(demo_copy, out, "--device", "cuda:0"), capsys)
    assert code == 64
    assert "--device cuda:0: no such CUDA device here (0 visible); use --device cpu" in err
    _nothing_written(out, demo_copy)
