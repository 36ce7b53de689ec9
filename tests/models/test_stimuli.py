"""nnbrain.models.stimuli: stimulus files -> network inputs as a model spec says.

References: the plain image loader (identical numbers without preprocessing), librosa's log-mel
(1e-4 dB after the float32 cast) and nnbrain's own feature functions for the audio inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pytest
import soundfile

from nnbrain.errors import DataError, MissingInputError
from nnbrain.models.audio import CochleagramConfig, LogMelConfig, cochleagram, load_audio
from nnbrain.models.stimuli import (
    audio_preprocessing,
    check_preprocessing,
    fit_frames,
    frame_inputs,
    load_frame_inputs,
    load_stimuli,
)
from nnbrain.models.transforms import load_images

DEMO = Path(__file__).resolve().parents[2] / "datalad_dataset"
PNGS = sorted((DEMO / "stimuli").glob("*.png"))


def _spec(kind: str, shape: list[int], preprocessing: dict[str, Any] | None = None,
          name: str = "net") -> dict[str, Any]:
    """The parts of ``ModelSpec.to_dict()`` that load_stimuli reads."""
    return {"name": name, "input": {"kind": kind, "shape": shape},
            "preprocessing": preprocessing}


def _write(path: Path, y: np.ndarray, sr: int) -> Path:
    formats = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS")}
    fmt, subtype = formats[path.suffix]
    soundfile.write(path, y, sr, format=fmt, subtype=subtype)
    return path


def _chirp(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sr * seconds))) / sr
    return 0.5 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * rng.normal(size=t.size)


def _librosa_log_mel(y: np.ndarray, config: LogMelConfig) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window="hann", center=True, pad_mode="constant",
        power=2.0, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, htk=False,
        norm="slaney", dtype=np.float64)
    return librosa.power_to_db(mel, ref=1.0, amin=config.amin, top_db=None)


# ----------------------------------------------------------------------------- images


def test_images_without_preprocessing_are_load_images_exactly() -> None:
    got = load_stimuli(PNGS, _spec("image", [1, 8, 8]))
    assert got.dtype == np.float32 and got.shape == (30, 1, 8, 8)
    np.testing.assert_array_equal(got, load_images(PNGS, (1, 8, 8)))


def test_images_with_preprocessing_go_through_the_transform() -> None:
    spec = _spec("image", [3, 6, 6], {"image": {"resize": 7, "crop": 6, "mean": [0.5],
                                                  "std": [0.5]}})
    got = load_stimuli(PNGS[:3], spec)
    assert got.shape == (3, 3, 6, 6) and got.dtype == np.float32
    assert -1.0 <= got.min() and got.max() <= 1.0 and got.min() < -0.5  # normalised to [-1, 1]


def test_preprocessing_of_the_other_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_stimuli(PNGS[:1], _spec("image", [1, 8, 8], {"audio": {"n_mels": 8}}, "digits"))
    assert str(info.value) == ("model 'digits': preprocessing.audio given for an image model "
                               "(input kind 'image'); use preprocessing.image")
    wav = _write(tmp_path / "a.wav", _chirp(16000, 0.2), 16000)
    with pytest.raises(DataError, match="preprocessing.image given for an audio model"):
        load_stimuli([wav], _spec("audio", [45, 11], {"image": {"resize": 8}}))


@pytest.mark.parametrize("spec, message", [
    (_spec("image", [3, 224, 224], {"image": {"resize": 256, "crop": 227}}, "alexnet"),
     "model 'alexnet': preprocessing.image.crop: [227, 227] does not give the input shape "
     "[3, 224, 224] (height x width 224 x 224)"),
    (_spec("audio", [45, 11], {"audio": {"n_mels": 64}}, "speech"),
     "model 'speech': preprocessing.audio.n_mels: 64 bands, the model's input shape [45, 11] "
     "takes 45 (n_freq, n_frames)"),
    (_spec("image", [3, 8, 8], {"audio": {}}, "digits"),
     "model 'digits': preprocessing.audio given for an image model (input kind 'image'); use "
     "preprocessing.image"),
])
def test_check_preprocessing_refuses_before_reading_files(spec: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(DataError) as info:
        check_preprocessing(spec)
    assert str(info.value) == message


def test_check_preprocessing_accepts_consistent_specs() -> None:
    check_preprocessing(_spec("image", [1, 8, 8]))
    check_preprocessing(_spec("image", [3, 224, 224], {"image": {"resize": 256, "crop": 224}}))
    check_preprocessing(_spec("audio", [32, 32], {"audio": {"features": "cochleagram"}}))


# ----------------------------------------------------------------------------- audio, one input


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_audio_clip_becomes_its_centre_log_mel_frames(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"clip{suffix}", _chirp(16000, 1.0), 16000)
    got = load_stimuli([path, path], _spec("audio", [45, 11]))
    assert got.shape == (2, 45, 11) and got.dtype == np.float32
    y = load_audio(path, 16000)
    reference = _librosa_log_mel(y, LogMelConfig())  # (45, 101): keep frames 45..55
    assert reference.shape == (45, 101)
    np.testing.assert_allclose(got[0], reference[:, 45:56], atol=1e-4)
    np.testing.assert_array_equal(got[0], got[1])


def test_audio_is_resampled_and_uses_the_spec_settings(tmp_path: Path) -> None:
    path = _write(tmp_path / "clip.wav", _chirp(44100, 0.5), 44100)
    settings = {"sample_rate": 22050, "n_mels": 64, "hop_ms": 5, "win_ms": 20, "fmin": 50,
                "fmax": 8000}
    got = load_stimuli([path], _spec("audio", [64, 40], {"audio": settings}))
    config = LogMelConfig(sample_rate=22050, n_mels=64, hop_ms=5, win_ms=20, fmin=50, fmax=8000)
    reference = _librosa_log_mel(load_audio(path, 22050), config)
    start = (reference.shape[1] - 40) // 2
    np.testing.assert_allclose(got[0], reference[:, start:start + 40], atol=1e-4)


def test_short_clip_is_centred_and_padded_with_silence(tmp_path: Path) -> None:
    path = _write(tmp_path / "short.wav", _chirp(16000, 0.05), 16000)  # 800 samples: 6 frames
    got = load_stimuli([path], _spec("audio", [45, 11]))[0]
    reference = _librosa_log_mel(load_audio(path, 16000), LogMelConfig())
    assert reference.shape == (45, 6)
    np.testing.assert_array_equal(got[:, :2], -100.0)  # (11 - 6) // 2 = 2 before
    np.testing.assert_array_equal(got[:, 8:], -100.0)  # 3 after
    np.testing.assert_allclose(got[:, 2:8], reference, atol=1e-4)


def test_cochleagram_features_fill_a_word_model_input(tmp_path: Path) -> None:
    path = _write(tmp_path / "word.flac", _chirp(16000, 0.25), 16000)  # 25 frames at 10 ms
    spec = _spec("audio", [32, 32], {"audio": {"features": "cochleagram", "fmin": 50}})
    got = load_stimuli([path], spec)[0]
    reference = cochleagram(load_audio(path, 16000), CochleagramConfig(n_bands=32))
    assert reference.shape == (32, 25)
    np.testing.assert_allclose(got[:, 3:28], reference, atol=1e-6)
    np.testing.assert_array_equal(got[:, :3], 0.0)
    np.testing.assert_array_equal(got[:, 28:], 0.0)
    assert got[:, 3:28].max() > 0.1


@pytest.mark.parametrize("settings, message", [
    ({"n_mels": 40}, "preprocessing.audio.n_mels: 40 bands, the model's input shape [45, 11] "
                     "takes 45 (n_freq, n_frames)"),
    ({"features": "cochleagram", "win_ms": 25},
     "preprocessing.audio.win_ms: the cochleagram filters the whole clip (no window); win_ms "
     "applies to features: logmel only"),
    ({"features": "mfcc"}, "preprocessing.audio.features: 'mfcc' is not one of logmel, "
                           "cochleagram"),
    ({"sample_rate": 8000, "fmax": 6000}, "preprocessing.audio: fmin 0 Hz and fmax 6000 Hz "
                                          "must satisfy fmin < fmax <= sample_rate / 2 = 4000 Hz"),
    ({"fmin": 9000}, "preprocessing.audio: fmin 9000 Hz and fmax 8000 Hz must satisfy fmin < "
                     "fmax <= sample_rate / 2 = 8000 Hz"),
])
def test_bad_audio_settings_name_the_model(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError) as info:
        audio_preprocessing(_spec("audio", [45, 11], {"audio": settings}, "speech"))
    assert str(info.value) == f"model 'speech': {message}"
    assert info.value.exit_code == 65


def test_audio_defaults_are_the_7t_front_end() -> None:
    settings = audio_preprocessing(_spec("audio", [45, 11]))
    assert settings.features == "logmel" and settings.frame_step == 1
    assert settings.config == LogMelConfig(n_mels=45)
    assert (settings.frame_rate, settings.floor) == (100.0, -100.0)


def test_audio_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError) as info:
        load_stimuli([tmp_path / "gone.wav"], _spec("audio", [45, 11]))
    assert info.value.path == tmp_path / "gone.wav" and info.value.exit_code == 66
    with pytest.raises(DataError, match="cannot be read as audio") as info:
        load_stimuli([PNGS[0]], _spec("audio", [45, 11]))
    assert info.value.path == PNGS[0]


def test_unknown_input_kind_or_shape_is_refused() -> None:
    with pytest.raises(DataError, match="nnbrain reads image .* or audio"):
        load_stimuli(PNGS[:1], _spec("video", [3, 8, 8]))
    with pytest.raises(DataError, match=r"an image input has shape \(channels, height, width\)"):
        load_stimuli(PNGS[:1], _spec("image", [8, 8]))


def test_fit_frames_crops_the_centre_and_pads_with_the_floor() -> None:
    features = np.arange(20.0).reshape(2, 10)
    np.testing.assert_array_equal(fit_frames(features, 4, -1), features[:, 3:7])
    np.testing.assert_array_equal(fit_frames(features, 10, -1), features)
    padded = fit_frames(features, 13, -7.0)
    np.testing.assert_array_equal(padded[:, 1:11], features)
    np.testing.assert_array_equal(padded[:, [0, 11, 12]], -7.0)


# ----------------------------------------------------------------------------- frame-level inputs


def test_frame_inputs_centres_a_window_on_every_frame() -> None:
    features = np.arange(3 * 7, dtype=np.float64).reshape(3, 7)
    result = frame_inputs(features, context=5, floor=-100.0)
    assert result.inputs.shape == (7, 3, 5) and result.inputs.dtype == np.float32
    for t in range(7):
        window = result.inputs[t]
        np.testing.assert_array_equal(window[:, 2], features[:, t])  # the centre column
        for j in range(5):
            source = t - 2 + j
            want = features[:, source] if 0 <= source < 7 else -100.0
            np.testing.assert_array_equal(window[:, j], want)
    assert result.frame_rate == 100.0
    np.testing.assert_allclose(result.times, np.arange(7) / 100.0)


def test_even_context_has_one_more_frame_before() -> None:
    features = np.arange(6.0)[None]
    result = frame_inputs(features, context=4, floor=0.5)
    np.testing.assert_array_equal(result.inputs[0, 0], [0.5, 0.5, 0.0, 1.0])
    np.testing.assert_array_equal(result.inputs[3, 0], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(result.inputs[5, 0], [3.0, 4.0, 5.0, 0.5])


@pytest.mark.parametrize("n_frames, step, kept", [(9, 2, [0, 2, 4, 6, 8]), (8, 2, [0, 2, 4, 6]),
                                                   (10, 3, [0, 3, 6, 9]), (1, 2, [0])])
def test_step_keeps_every_step_th_frame(n_frames: int, step: int, kept: list[int]) -> None:
    features = np.tile(np.arange(n_frames, dtype=np.float64), (4, 1))
    result = frame_inputs(features, context=11, step=step, frame_rate=100.0)
    assert result.inputs.shape == (len(kept), 4, 11)
    np.testing.assert_array_equal(result.inputs[:, 0, 5], kept)
    np.testing.assert_allclose(result.times, np.array(kept) / 100.0)
    assert result.frame_rate == pytest.approx(100.0 / step)


def test_frame_inputs_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="context and step must be >= 1"):
        frame_inputs(np.zeros((2, 3)), context=0)


def test_load_frame_inputs_keeps_every_second_frame_at_20_ms(tmp_path: Path) -> None:
    """The 7T study's readout: 45 log-mel bands, 11-frame windows, every 2nd 10 ms frame."""
    path = _write(tmp_path / "quilt.wav", _chirp(16000, 0.6), 16000)
    spec = _spec("audio", [45, 11], {"audio": {"frame_step": 2}})
    result = load_frame_inputs(path, spec)
    features = _librosa_log_mel(load_audio(path, 16000), LogMelConfig())  # (45, 61)
    assert result.inputs.shape == (31, 45, 11)
    assert result.frame_rate == 50.0
    np.testing.assert_allclose(result.times[:3], [0.0, 0.02, 0.04])
    np.testing.assert_allclose(result.inputs[:, :, 5], features[:, ::2].T, atol=1e-4)
    np.testing.assert_array_equal(result.inputs[0, :, :5], -100.0)  # before the start: silence


# ----------------------------------------------------------------------------- collect_stimuli
# (nnbrain.utils.bids.collect_stimuli, here beside the loaders it feeds)


def _dataset(root: Path, rows: list[str], files: list[str]) -> Path:
    (root / "stimuli").mkdir(parents=True)
    for name in files:
        (root / "stimuli" / name).write_bytes(b"x")
    events = root / "sub-01" / "func" / "sub-01_task-listen_events.tsv"
    events.parent.mkdir(parents=True)
    events.write_text("onset\tduration\tstim_file\n" + "".join(
        f"{2 * i}\t1\t{name}\n" for i, name in enumerate(rows)))
    return events


def test_collect_stimuli_accepts_audio_and_images(tmp_path: Path) -> None:
    from nnbrain.utils.bids import collect_stimuli

    names = ["w2.FLAC", "w1.wav", "n/a", "w3.ogg", "pic.png", "w1.wav"]
    events = _dataset(tmp_path, names, ["w1.wav", "w2.FLAC", "w3.ogg", "pic.png"])
    assert collect_stimuli(tmp_path, [events]) == ["pic.png", "w1.wav", "w2.FLAC", "w3.ogg"]


def test_collect_stimuli_missing_audio_names_the_events_file(tmp_path: Path) -> None:
    from nnbrain.utils.bids import collect_stimuli

    events = _dataset(tmp_path, ["w1.wav", "gone.flac"], ["w1.wav"])
    with pytest.raises(MissingInputError) as info:
        collect_stimuli(tmp_path, [events])
    assert info.value.path == tmp_path / "stimuli" / "gone.flac"
    assert info.value.message == (
        "stimulus named in events.tsv (stim_file=gone.flac in "
        "sub-01/func/sub-01_task-listen_events.tsv) is missing; put it under stimuli/ or fix "
        "the events file")
    assert info.value.exit_code == 66


def test_collect_stimuli_refuses_other_file_types(tmp_path: Path) -> None:
    from nnbrain.utils.bids import collect_stimuli

    events = _dataset(tmp_path, ["clip.mp4"], ["clip.mp4"])
    with pytest.raises(DataError) as info:
        collect_stimuli(tmp_path, [events])
    assert info.value.path == tmp_path / "stimuli" / "clip.mp4"
    assert info.value.message.startswith(
        "stim_file=clip.mp4 in sub-01/func/sub-01_task-listen_events.tsv: not a stimulus type "
        "nnbrain reads; use an image (.png, .jpg,")
    assert info.value.message.endswith("or audio (.wav, .flac, .ogg) file")
