"""Audio stimuli: reading (WAV, FLAC, OGG), resampling, and a log-mel filterbank in torch.

The filterbank follows librosa's defaults (Slaney mel scale, Slaney area normalisation, a periodic
Hann window, centred frames with zero padding, power spectrogram), so features match
``librosa.power_to_db(librosa.feature.melspectrogram(...))``; torchaudio cannot be installed beside
torch 2.14.1, so nnbrain computes it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from nnbrain.errors import DataError, MissingInputError


@dataclass(frozen=True)
class LogMelConfig:
    """Parameters of the log-mel transform.

    Attributes
    ----------
    sample_rate : int
        Rate (Hz) audio is resampled to before the transform.
    n_mels : int
        Mel bands (the 7T study: 45).
    hop_ms, win_ms : float
        Frame step and window length in milliseconds (10 ms step: 100 frames/s).
    fmin, fmax : float
        Lowest and highest filter edge (Hz); ``fmax=None`` means Nyquist.
    amin : float
        Floor of the power before the log (as ``librosa.power_to_db``).
    """

    sample_rate: int = 16000
    n_mels: int = 45
    hop_ms: float = 10.0
    win_ms: float = 25.0
    fmin: float = 0.0
    fmax: float | None = None
    amin: float = 1e-10

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()

    @property
    def frame_rate(self) -> float:
        """Frames per second of the output."""
        return self.sample_rate / self.hop_length


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Read an audio file, mix it to mono and resample it (polyphase) to ``sample_rate``.

    Returns
    -------
    array of shape (n_samples,), float64 in [-1, 1]
    """
    import soundfile
    from scipy.signal import resample_poly

    if not path.is_file():
        raise MissingInputError("stimulus file named in events.tsv (stim_file) not found", path)
    try:
        data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise DataError(f"cannot be read as audio ({exc}); use WAV, FLAC or OGG", path) from exc
    mono = data.mean(axis=1)
    if rate != sample_rate:
        factor = gcd(int(rate), int(sample_rate))
        mono = resample_poly(mono, sample_rate // factor, int(rate) // factor)
    return mono


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz)
                    / logstep, hz / f_sp)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                    f_sp * mel)


def mel_filterbank(config: LogMelConfig) -> np.ndarray:
    """Triangular Slaney-normalised mel filters, array of shape (n_mels, n_fft // 2 + 1)."""
    fmax = config.fmax if config.fmax is not None else config.sample_rate / 2
    fft_freqs = np.linspace(0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(fmax), config.n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def log_mel_spectrogram(waveform: np.ndarray, config: LogMelConfig = LogMelConfig(),
                        device: str = "cpu") -> np.ndarray:
    """Log-mel power spectrogram in dB, computed with ``torch.stft``.

    Parameters
    ----------
    waveform : array of shape (n_samples,)
        Mono audio at ``config.sample_rate``.
    config : LogMelConfig
    device : str
        Torch device.

    Returns
    -------
    array of shape (n_mels, n_frames), float64; ``n_frames = 1 + n_samples // hop_length``
    (centred frames), one frame every ``config.hop_ms`` ms.
    """
    import torch

    x = torch.as_tensor(np.asarray(waveform, dtype=np.float64), device=device)
    window = torch.hann_window(config.win_length, periodic=True, dtype=torch.float64,
                               device=device)
    pad = (config.n_fft - config.win_length) // 2
    window = torch.nn.functional.pad(window, (pad, config.n_fft - config.win_length - pad))
    spec = torch.stft(x, n_fft=config.n_fft, hop_length=config.hop_length, window=window,
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.abs() ** 2
    mel = torch.as_tensor(mel_filterbank(config), device=device) @ power
    return (10.0 * torch.log10(torch.clamp(mel, min=config.amin))).cpu().numpy()
