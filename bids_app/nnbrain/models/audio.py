"""Audio stimuli: reading (WAV, FLAC, OGG), resampling, a log-mel filterbank and a
cochleagram-like filterbank, computed in torch.

The log-mel filterbank follows librosa's defaults (Slaney mel scale, Slaney area normalisation, a
periodic Hann window, centred frames with zero padding, power spectrogram), so features match
``librosa.power_to_db(librosa.feature.melspectrogram(...))``; torchaudio cannot be installed beside
torch 2.14.1, so nnbrain computes it itself.

The cochleagram is "cochleagram-like": it follows McDermott's pycochleagram (the front end of the
metamer study's ``tfcochleagram``) without reproducing it to the sample. See :func:`cochleagram`.
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

    @property
    def floor(self) -> float:
        """Value of silence in the output (dB): ``10 log10(amin)``, -100 dB by default."""
        return float(10.0 * np.log10(self.amin))


@dataclass(frozen=True)
class CochleagramConfig:
    """Parameters of the cochleagram-like transform (:func:`cochleagram`).

    Attributes
    ----------
    sample_rate : int
        Rate (Hz) audio is resampled to before the transform.
    n_bands : int
        Half-cosine bands between ``fmin`` and ``fmax`` (rows of the output).
    hop_ms : float
        Step of the downsampled envelopes in milliseconds.
    fmin, fmax : float
        Lowest and highest filter edge (Hz; pycochleagram's defaults 50 Hz and 20 kHz, here
        capped at Nyquist); ``fmax=None`` means Nyquist.
    power : float
        Compressive nonlinearity applied to the envelopes (pycochleagram: 0.3).
    """

    sample_rate: int = 16000
    n_bands: int = 32
    hop_ms: float = 10.0
    fmin: float = 50.0
    fmax: float | None = None
    power: float = 0.3

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def frame_rate(self) -> float:
        """Frames per second of the output."""
        return self.sample_rate / self.hop_length

    @property
    def floor(self) -> float:
        """Value of silence in the output (a zero envelope)."""
        return 0.0


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


#: Complex values per inverse FFT batch of :func:`cochleagram` (64 MiB at complex128).
_CHUNK_VALUES = 1 << 22


def hz_to_erb(hz: np.ndarray) -> np.ndarray:
    """ERB-number scale of Glasberg & Moore (1990), as pycochleagram's ``freq2erb``.

    >>> round(float(hz_to_erb(1000.0)), 3)
    15.572
    """
    return 9.265 * np.log1p(np.asarray(hz, dtype=np.float64) / (24.7 * 9.265))


def erb_to_hz(erb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_erb`."""
    return 24.7 * 9.265 * np.expm1(np.asarray(erb, dtype=np.float64) / 9.265)


def erb_cosine_filters(n_fft: int, config: CochleagramConfig) -> tuple[np.ndarray, np.ndarray]:
    """Half-cosine filters equally spaced on the ERB scale, plus a lowpass and a highpass edge.

    Band ``i`` (1..n_bands) is ``cos(pi * (e - e_i) / (2 d))`` for ``|e - e_i| < d`` on the
    ERB-number axis ``e``, where ``e_0 .. e_{n_bands+1}`` split [erb(fmin), erb(fmax)] into
    ``n_bands + 1`` steps of ``d``: each band spans two steps and overlaps its neighbours by
    half, so the squared responses of all filters (the edges included) sum to 1 at every
    frequency (McDermott & Simoncelli 2011; pycochleagram's ``make_erb_cos_filters_nx`` with
    ``sample_factor=1``, evaluated at the exact bin frequencies).

    Parameters
    ----------
    n_fft : int
        Length of the signal's FFT; filters are sampled at its ``n_fft // 2 + 1`` bins.
    config : CochleagramConfig

    Returns
    -------
    filters : array of shape (n_bands + 2, n_fft // 2 + 1)
        Row 0 the lowpass edge (1 below ``fmin``), rows 1..n_bands the bands, last row the
        highpass edge (1 above ``fmax``).
    centers : array of shape (n_bands,)
        Centre frequencies (Hz) of the bands.
    """
    fmax = config.fmax if config.fmax is not None else config.sample_rate / 2
    edges = np.linspace(hz_to_erb(config.fmin), hz_to_erb(fmax), config.n_bands + 2)
    step = edges[1] - edges[0]
    erb = hz_to_erb(np.linspace(0, config.sample_rate / 2, n_fft // 2 + 1))
    filters = np.zeros((edges.size, erb.size))
    for row, edge in enumerate(edges):
        inside = np.flatnonzero(np.abs(erb - edge) < step)  # one step either side of its centre
        filters[row, inside] = np.cos(np.pi / 2 * (erb[inside] - edge) / step)
    filters[0, erb < edges[0]] = 1.0
    filters[-1, erb > edges[-1]] = 1.0
    return filters, erb_to_hz(edges[1:-1])


def cochleagram(waveform: np.ndarray, config: CochleagramConfig = CochleagramConfig(),
                device: str = "cpu") -> np.ndarray:
    """Cochleagram-like representation: ERB half-cosine subband envelopes, compressed.

    As pycochleagram computes a cochleagram: the signal's FFT is multiplied by the bands of
    :func:`erb_cosine_filters` (frequency domain, the whole signal at once); each subband's
    envelope is the magnitude of its analytic signal (Hilbert envelope); envelopes are
    downsampled to one value per hop (``scipy.signal.resample_poly``, polyphase anti-aliasing),
    clipped at 0 and raised to ``config.power`` (0.3). The lowpass and highpass edge filters
    are not returned. It is "cochleagram-like": no gammatone filters, no hair-cell model.

    Parameters
    ----------
    waveform : array of shape (n_samples,)
        Mono audio at ``config.sample_rate``.
    config : CochleagramConfig
    device : str
        Torch device of the FFTs.

    Returns
    -------
    array of shape (n_bands, n_frames), float64
        ``n_frames = ceil(n_samples / hop_length)``; frame ``k`` is the envelope at sample
        ``k * hop_length`` (``config.frame_rate`` frames per second); silence is 0.
    """
    import torch
    from scipy.signal import resample_poly

    x = np.asarray(waveform, dtype=np.float64)
    n = x.size
    bands = erb_cosine_filters(n, config)[0][1:-1]
    analytic = np.full(n // 2 + 1, 2.0)  # one-sided spectrum doubled, DC (and Nyquist) once
    analytic[0] = 1.0
    if n % 2 == 0:
        analytic[-1] = 1.0
    spectrum = torch.fft.rfft(torch.as_tensor(x, device=device))
    chunk = max(1, _CHUNK_VALUES // max(n, 1))  # bands per inverse FFT, bounding memory
    out = np.empty((config.n_bands, -(-n // config.hop_length)))
    for start in range(0, config.n_bands, chunk):
        weights = torch.as_tensor(bands[start:start + chunk] * analytic, device=device)
        full = torch.zeros((weights.shape[0], n), dtype=spectrum.dtype, device=device)
        full[:, :n // 2 + 1] = spectrum * weights
        envelopes = torch.fft.ifft(full).abs().cpu().numpy()
        out[start:start + chunk] = resample_poly(envelopes, 1, config.hop_length, axis=1)
    return np.maximum(out, 0.0) ** config.power
