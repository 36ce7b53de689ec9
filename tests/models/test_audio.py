"""Audio: the torch log-mel transform against librosa, reading and resampling."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from nnbrain.errors import DataError, MissingInputError
from nnbrain.models.audio import LogMelConfig, load_audio, log_mel_spectrogram, mel_filterbank


def _signal(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    chirp = np.sin(2 * np.pi * (200 + 1500 * t) * t)
    return 0.5 * chirp + 0.05 * rng.normal(size=t.size)


@pytest.mark.parametrize("config", [
    LogMelConfig(),
    LogMelConfig(sample_rate=22050, n_mels=64, hop_ms=5, win_ms=20, fmin=50, fmax=8000),
    LogMelConfig(sample_rate=8000, n_mels=20),
])
def test_filterbank_equals_librosa(config: LogMelConfig) -> None:
    expected = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft,
                                   n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax,
                                   htk=False, norm="slaney", dtype=np.float64)
    np.testing.assert_allclose(mel_filterbank(config), expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("config", [
    LogMelConfig(),
    LogMelConfig(sample_rate=22050, n_mels=64, hop_ms=5, win_ms=20, fmin=50, fmax=8000),
])
def test_log_mel_equals_librosa_within_1e_6_db(config: LogMelConfig) -> None:
    y = _signal(config.sample_rate, 1.3)
    ours = log_mel_spectrogram(y, config)
    mel = librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window="hann", center=True, pad_mode="constant",
        power=2.0, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, htk=False,
        norm="slaney", dtype=np.float64)
    expected = librosa.power_to_db(mel, ref=1.0, amin=config.amin, top_db=None)
    assert ours.shape == expected.shape == (config.n_mels, 1 + y.size // config.hop_length)
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_default_is_the_7t_study_front_end() -> None:
    config = LogMelConfig()
    assert (config.n_mels, config.hop_ms, config.frame_rate) == (45, 10.0, 100.0)
    frames = log_mel_spectrogram(np.zeros(16000), config)
    assert frames.shape == (45, 101)
    assert np.all(frames == -100.0)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_load_audio_reads_mixes_and_resamples(tmp_path: Path, fmt: str, subtype: str) -> None:
    sr = 44100
    mono = _signal(sr, 0.5)
    stereo = np.stack([mono, mono], axis=1)
    path = tmp_path / f"x.{fmt.lower()}"
    soundfile.write(path, stereo, sr, format=fmt, subtype=subtype)
    out = load_audio(path, 16000)
    assert out.ndim == 1 and abs(out.size - 8000) <= 1
    reference = librosa.resample(mono, orig_sr=sr, target_sr=16000, res_type="polyphase")
    n = min(out.size, reference.size)
    tolerance = 0.05 if fmt == "OGG" else 1e-3
    assert np.sqrt(np.mean((out[:n] - reference[:n]) ** 2)) < tolerance


def test_load_audio_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="not found"):
        load_audio(tmp_path / "missing.wav", 16000)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    with pytest.raises(DataError, match="cannot be read as audio"):
        load_audio(junk, 16000)
