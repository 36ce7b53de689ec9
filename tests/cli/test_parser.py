"""The command line: parsing, subcommand dispatch, and refusal of bad arguments (exit 64)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnbrain import __version__
from nnbrain.cli.parser import build_bids_app_parser
from nnbrain.cli.run import main, settings_from_args
from nnbrain.errors import UsageError


def test_bids_app_form_parses_every_option(tmp_path: Path) -> None:
    args = build_bids_app_parser().parse_args([
        "in", "out", "participant", "--participant-label", "sub-01", "02",
        "--model-spec", "spec.yaml", "--derivatives", "a", "b", "--atlas", "atl",
        "-w", "wd", "--nprocs", "3", "--omp-nthreads", "2", "--mem-gb", "8.5",
        "--random-seed", "7", "--n-permutations", "99", "--skip-bids-validation", "--overwrite",
        "--stop-on-first-crash", "-vv", "-q"])
    assert args.participant_label == ["01", "02"]
    assert args.derivatives == [Path("a"), Path("b")]
    assert (args.nprocs, args.omp_nthreads, args.mem_gb) == (3, 2, 8.5)
    assert (args.random_seed, args.n_permutations) == (7, 99)
    assert args.skip_bids_validation and args.overwrite and args.stop_on_first_crash
    assert (args.verbose, args.quiet) == (2, 1)
    assert args.device == "cpu"
    assert (args.design, args.discard_seconds) == ("event", 6.0)
    args = build_bids_app_parser().parse_args(["i", "o", "participant", "--design", "continuous",
                                               "--discard-seconds", "4.5"])
    assert (args.design, args.discard_seconds) == ("continuous", 4.5)
    assert build_bids_app_parser().parse_args(["i", "o", "group", "--device", "cuda:1"]).device \
        == "cuda:1"


@pytest.mark.parametrize("argv, fragment", [
    (["in", "out"], "the following arguments are required: analysis_level"),
    (["in", "out", "session"], "invalid choice: 'session'"),
    (["in", "out", "participant", "--nprocs", "0"], "must be a positive integer"),
    (["in", "out", "participant", "--mem-gb", "-1"], "must be a positive number"),
    (["in", "out", "participant", "--participant-label", "sub-0_1"], "is not a participant label"),
    (["in", "out", "participant", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["in", "out", "participant", "--design", "blocked"], "invalid choice: 'blocked'"),
    (["in", "out", "participant", "--discard-seconds", "-2"], "'-2' must be a finite number >= 0"),
    (["in", "out", "participant", "--discard-seconds", "nan"], "'nan' must be a finite number"),
    (["in", "out", "participant", "--device", "gpu"], "'gpu' is not a torch device; use cpu, "
                                                      "cuda or cuda:N"),
    (["list-layers"], "the following arguments are required: spec"),
])
def test_bad_arguments_exit_64_with_message(argv, fragment, capsys) -> None:
    assert main(argv) == 64
    err = capsys.readouterr().err
    assert fragment in err
    assert "usage: nnbrain" in err


def test_usage_error_is_raised_not_exit_2() -> None:
    with pytest.raises(UsageError):
        build_bids_app_parser().parse_args(["only-one"])


def test_version_and_help(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nnbrain {__version__}"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "{participant,group}" in out and "list-layers" in out


def test_list_layers_subcommand_prints_shapes(capsys) -> None:
    spec = Path(__file__).resolve().parents[2] / "datalad_dataset" / "code" / "model_spec.yaml"
    assert main(["list-layers", str(spec)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "digitcnn (digitcnn), input (1, 8, 8):"
    rows = {line.split()[-2]: line.split()[-1] for line in out[1:-1]}
    assert rows["conv1"] == "8x8x8" and rows["pool"] == "16x4x4" and rows["fc2"] == "10"
    assert "* conv1" in "\n".join(out) and "  flatten" in "\n".join(out)


def test_directory_named_like_a_subcommand_is_the_bids_app_form(demo_copy: Path,
                                                                monkeypatch, capsys) -> None:
    target = demo_copy.parent / "list-layers"
    demo_copy.rename(target)
    monkeypatch.chdir(demo_copy.parent)
    # group level on an empty output: the BIDS-App path answers (66), not the subparser (64)
    assert main(["./list-layers", "out", "group", "-w", "work"]) == 66
    assert "run the participant level first" in capsys.readouterr().err


def test_settings_are_immutable_and_roundtrip_through_toml(demo_copy: Path) -> None:
    args = build_bids_app_parser().parse_args([
        str(demo_copy), str(demo_copy / "derivatives" / "nnbrain"), "participant",
        "--model-spec", str(demo_copy / "code" / "model_spec.yaml"),
        "--participant-label", "01", "-w", str(demo_copy.parent / "work")])
    settings = settings_from_args(args)
    with pytest.raises(AttributeError):
        settings.nprocs = 4  # type: ignore[misc]
    from nnbrain.config import Settings

    assert Settings.from_toml(settings.to_toml()) == settings
    assert settings.derivatives == (demo_copy / "derivatives" / "fmriprep",)
    assert settings.atlas == demo_copy / "derivatives" / "atlas"


_MIXED_SPEC = """
models:
  - name: words
    architecture: word_cnn2d
    weights: [{label: random, seed: 0}]
    layers: [conv1, fc1]
    preprocessing: {audio: {features: cochleagram, hop_ms: 20}}
  - name: digits
    architecture: digitcnn
    weights: [{label: random, seed: 0}]
    layers: [conv1]
"""


def _mixed_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(_MIXED_SPEC)
    return spec


def _rows(lines: list[str]) -> dict[str, str]:
    return {line.split()[-2]: line.split()[-1] for line in lines}


def test_list_layers_runs_a_generated_wav_through_audio_models(tmp_path: Path, capsys) -> None:
    import soundfile

    t = np.arange(8000) / 16000
    wav = tmp_path / "word.wav"
    soundfile.write(wav, 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    assert main(["list-layers", str(_mixed_spec(tmp_path)), "--stimulus", str(wav)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "words (word_cnn2d), audio input (bands, frames) (32, 32):"
    words = _rows(out[1:8])
    assert (words["conv1"], words["conv2"], words["pool"]) == ("32x30x30", "64x28x28", "64x14x14")
    assert (words["fc1"], words["fc2"]) == ("128", "8")
    assert out[8] == "digits (digitcnn), input (1, 8, 8) (declared; word.wav is audio):"
    assert _rows(out[9:-1])["conv1"] == "8x8x8"


def test_list_layers_runs_a_generated_png_through_image_models(tmp_path: Path, capsys) -> None:
    from PIL import Image

    png = tmp_path / "photo.png"
    rgba = np.random.default_rng(0).integers(0, 256, size=(30, 20, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(png)
    assert main(["list-layers", str(_mixed_spec(tmp_path)), "--stimulus", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("words (word_cnn2d), audio input (bands, frames) (32, 32) (declared; "
                      "photo.png is image):")
    assert out[8] == "digits (digitcnn), input (1, 8, 8):"
    digits = _rows(out[9:-1])
    assert (digits["conv1"], digits["pool"], digits["fc2"]) == ("8x8x8", "16x4x4", "10")
    assert "  * conv1                8x8x8" in out


def test_list_layers_stimulus_errors(tmp_path: Path, capsys) -> None:
    spec = _mixed_spec(tmp_path)
    assert main(["list-layers", str(spec), "--stimulus", str(tmp_path / "gone.wav")]) == 66
    assert "stimulus not found" in capsys.readouterr().err
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really")
    assert main(["list-layers", str(spec), "--stimulus", str(broken)]) == 65
    assert f"{broken}: cannot be read as audio" in capsys.readouterr().err
