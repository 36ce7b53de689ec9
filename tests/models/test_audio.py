"""Audio: the torch log-mel transform against librosa, the cochleagram-like filterbank, reading
and resampling."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from nnbrain.errors import DataError, MissingInputError
from nnbrain.models.audio import (
    CochleagramConfig,
    LogMelConfig,
    cochleagram,
    erb_cosine_filters,
    erb_to_hz,
    hz_to_erb,
    load_audio,
    log_mel_spectrogram,
    mel_filterbank,
)


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


def test_log_mel_floor_is_silence() -> None:
    assert LogMelConfig().floor == -100.0
    assert LogMelConfig(amin=1e-5).floor == pytest.approx(-50.0)


# ----------------------------------------------------------------------------- cochleagram


def test_erb_scale_is_glasberg_and_moore() -> None:
    hz = np.array([0.0, 50.0, 500.0, 1000.0, 4000.0, 8000.0])
    # 21.4 log10(1 + 0.00437 f) with pycochleagram's constants (9.265, 24.7): within 0.4 %
    np.testing.assert_allclose(hz_to_erb(hz), 21.4 * np.log10(1 + 0.00437 * hz), rtol=4e-3)
    assert hz_to_erb(1000.0) == pytest.approx(9.265 * np.log(1 + 1000 / (24.7 * 9.265)))
    np.testing.assert_allclose(erb_to_hz(hz_to_erb(hz)), hz, atol=1e-9)


@pytest.mark.parametrize("config, n_fft", [
    (CochleagramConfig(), 16000),
    (CochleagramConfig(sample_rate=20000, n_bands=45, fmin=100, fmax=8000), 4001),
])
def test_filters_are_erb_spaced_half_cosines_tiling_flat(config: CochleagramConfig,
                                                         n_fft: int) -> None:
    filters, centers = erb_cosine_filters(n_fft, config)
    freqs = np.linspace(0, config.sample_rate / 2, n_fft // 2 + 1)
    assert filters.shape == (config.n_bands + 2, freqs.size)
    assert centers.shape == (config.n_bands,)
    fmax = config.fmax or config.sample_rate / 2
    # centres equally spaced in ERB number, one step in from fmin and fmax
    steps = np.diff(hz_to_erb(np.concatenate([[config.fmin], centers, [fmax]])))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-10)
    # the squared responses of all filters sum to 1 at every frequency (flat, perfect tiling)
    np.testing.assert_allclose((filters ** 2).sum(axis=0), 1.0, atol=1e-12)
    bands = filters[1:-1]
    for band, center in zip(bands, centers):
        support = freqs[band > 0]
        width = hz_to_erb(support.max()) - hz_to_erb(support.min())
        assert width == pytest.approx(2 * steps[0], abs=2 * (hz_to_erb(freqs[1]) + 0.05))
        assert abs(hz_to_erb(freqs[np.argmax(band)]) - hz_to_erb(center)) < 0.1
        assert band.max() == pytest.approx(1.0, abs=1e-2)
    # each band is a half cosine in ERB: cos(pi/2 * offset in steps)
    offset = (hz_to_erb(freqs) - hz_to_erb(centers[3])) / steps[0]
    inside = np.abs(offset) < 1
    np.testing.assert_allclose(bands[3, inside], np.cos(np.pi / 2 * offset[inside]), atol=1e-12)
    assert np.all(bands[3, ~inside] == 0)
    # edge filters: 1 below fmin and above fmax
    assert np.all(filters[0, freqs < config.fmin] == 1)
    assert np.all(filters[-1, freqs > fmax] == 1)


def _reference_cochleagram(y: np.ndarray, config: CochleagramConfig) -> np.ndarray:
    """Subbands by the filters (numpy FFT), Hilbert envelopes (scipy), resample_poly, power."""
    from scipy.signal import hilbert, resample_poly

    bands = erb_cosine_filters(y.size, config)[0][1:-1]
    subbands = np.fft.irfft(np.fft.rfft(y)[None] * bands, n=y.size)
    envelopes = np.abs(hilbert(subbands, axis=1))
    return np.maximum(resample_poly(envelopes, 1, config.hop_length, axis=1), 0) ** config.power


@pytest.mark.parametrize("n_samples", [16000, 12345])
def test_cochleagram_equals_hilbert_envelope_reference(n_samples: int) -> None:
    config = CochleagramConfig()
    y = _signal(config.sample_rate, n_samples / config.sample_rate)[:n_samples]
    ours = cochleagram(y, config)
    assert ours.shape == (32, -(-n_samples // config.hop_length))
    np.testing.assert_allclose(ours, _reference_cochleagram(y, config), atol=1e-9)


def test_cochleagram_tone_lands_in_its_band_with_the_filter_gain() -> None:
    config = CochleagramConfig(n_bands=40)
    sr = config.sample_rate
    t = np.arange(sr) / sr
    filters, centers = erb_cosine_filters(sr, config)
    for tone in (300.0, 1000.0, 3000.0):
        frames = cochleagram(np.sin(2 * np.pi * tone * t), config)
        middle = frames[:, 20:80]
        gains = filters[1:-1, int(tone)]  # bins are 1 Hz apart (n_fft = sample_rate)
        assert np.argmax(middle.mean(axis=1)) == np.argmax(gains)
        # a unit sine's envelope in a band is the band's gain at the tone, then ** 0.3
        np.testing.assert_allclose(middle, np.broadcast_to(gains[:, None] ** 0.3, middle.shape),
                                   atol=1e-3)


def test_cochleagram_frame_rate_follows_the_hop() -> None:
    """A 1 kHz tone modulated at 5 Hz: the envelope peaks every frame_rate / 5 frames."""
    config = CochleagramConfig(hop_ms=5.0)
    sr = config.sample_rate
    t = np.arange(2 * sr) / sr
    y = (1 + np.cos(2 * np.pi * 5 * t)) * np.sin(2 * np.pi * 1000 * t)
    frames = cochleagram(y, config)
    assert config.frame_rate == 200.0 and frames.shape == (32, 400)
    envelope = frames[np.argmax(frames.mean(axis=1))]
    peaks = [k for k in range(20, 380) if envelope[k] >= envelope[k - 1]
             and envelope[k] > envelope[k + 1] and envelope[k] > 0.8 * envelope.max()]
    assert np.diff(peaks).tolist() == [40] * (len(peaks) - 1) and len(peaks) == 9
    assert peaks[0] == 40  # frame k is time k * hop: maxima at t = 0.2 s, 0.4 s, ...


def test_cochleagram_of_silence_is_its_floor() -> None:
    config = CochleagramConfig()
    frames = cochleagram(np.zeros(8000), config)
    assert frames.shape == (32, 50)
    assert config.floor == 0.0 and np.all(frames == 0.0)
