"""Stimulus files -> network inputs, as a model spec's ``input`` and ``preprocessing`` say.

:func:`load_stimuli` gives one fixed-size input per stimulus file (event-related designs):

- image models: without ``preprocessing`` the plain :func:`~nnbrain.models.transforms.load_images`
  (convert, bilinear resize to the input, [0, 1]); with ``preprocessing: {image: {...}}``
  :func:`~nnbrain.models.transforms.preprocess_images` (torchvision ``v2`` resize, centre crop,
  normalisation);
- audio models (input ``(n_freq, n_frames)``): the whole clip is read (WAV, FLAC, OGG), mixed to
  mono, resampled, turned into log-mel or cochleagram-like features (``preprocessing: {audio:
  {...}}``, defaults: log-mel at 16 kHz, ``n_freq`` bands, 10 ms hop, 25 ms window), then fitted
  to ``n_frames`` by :func:`fit_frames`: the centre ``n_frames`` of a longer clip, a shorter clip
  centred and padded with silence (the features' floor: -100 dB for log-mel, 0 for the
  cochleagram; not 0 dB, which would be a loud sound).

:func:`frame_inputs` gives frame-level inputs for continuous designs: one context window centred on
every ``step``-th feature frame (the 7T study keeps every 2nd 10 ms frame: 20 ms), with the frame
rate after subsampling; :func:`load_frame_inputs` applies it to a file with a spec's settings
(``preprocessing.audio.frame_step``, default 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnbrain.errors import DataError
from nnbrain.models.audio import (
    CochleagramConfig,
    LogMelConfig,
    cochleagram,
    load_audio,
    log_mel_spectrogram,
)


@dataclass(frozen=True)
class AudioPreprocessing:
    """A spec's ``preprocessing.audio`` resolved against the model's input shape.

    Attributes
    ----------
    features : str
        ``logmel`` or ``cochleagram``.
    config : LogMelConfig or CochleagramConfig
        Parameters of the feature transform (``n_mels`` / ``n_bands`` = the input's ``n_freq``).
    frame_step : int
        Keep every ``frame_step``-th frame in frame-level inputs (:func:`load_frame_inputs`).
    """

    features: str
    config: LogMelConfig | CochleagramConfig
    frame_step: int = 1

    @property
    def floor(self) -> float:
        """Value of silence in the features (padding)."""
        return self.config.floor

    @property
    def frame_rate(self) -> float:
        """Feature frames per second, before ``frame_step``."""
        return self.config.frame_rate

    def transform(self, waveform: np.ndarray) -> np.ndarray:
        """Features of a mono waveform at ``config.sample_rate``, shape (n_freq, n_frames)."""
        return FEATURES[self.features](waveform, self.config)


#: Audio feature transforms by name (``preprocessing.audio.features``).
FEATURES: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "logmel": log_mel_spectrogram,
    "cochleagram": cochleagram,
}


@dataclass(frozen=True)
class FrameInputs:
    """Frame-level network inputs of one continuous stimulus.

    Attributes
    ----------
    inputs : array of shape (n_frames_kept, n_freq, context), float32
        One window per kept frame, centred on it.
    times : array of shape (n_frames_kept,)
        Time (s) of each kept frame from the start of the stimulus.
    frame_rate : float
        Kept frames per second (feature frame rate / step).
    """

    inputs: np.ndarray
    times: np.ndarray
    frame_rate: float


def _declared(model_spec: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    declared = model_spec["input"]
    return declared["kind"], tuple(int(v) for v in declared["shape"])


def _image_shape(model_spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) of an image model's input."""
    _kind, shape = _declared(model_spec)
    if len(shape) != 3:
        raise DataError(f"model {model_spec['name']!r}: an image input has shape "
                        f"(channels, height, width), got {list(shape)}")
    return shape[0], shape[1], shape[2]


def check_preprocessing(model_spec: Mapping[str, Any]) -> None:
    """Refuse, before any file is read, preprocessing that cannot give the model's input.

    Checks the input kind and shape, that the preprocessing is of the input's kind, and its
    settings (:func:`~nnbrain.models.transforms.check_image_preprocessing`,
    :func:`audio_preprocessing`). Cheap: no torch, no file.

    Raises
    ------
    DataError
        Naming the model, the key and what is allowed.
    """
    from nnbrain.models.transforms import ImagePreprocessing, check_image_preprocessing

    kind, shape = _declared(model_spec)
    if kind == "image":
        image = _preprocessing(model_spec, "image")
        image_shape = _image_shape(model_spec)
        if image is not None:
            check_image_preprocessing(ImagePreprocessing.from_dict(image), image_shape,
                                      model_spec["name"])
    else:
        audio_preprocessing(model_spec)


def _preprocessing(model_spec: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The spec's preprocessing for ``kind``; refuses one written for the other kind."""
    preprocessing = model_spec.get("preprocessing") or {}
    other = [key for key in preprocessing if key != kind]
    if other:
        raise DataError(f"model {model_spec['name']!r}: preprocessing.{other[0]} given for an "
                        f"{kind} model (input kind {kind!r}); use preprocessing.{kind}")
    return preprocessing.get(kind)


def audio_preprocessing(model_spec: Mapping[str, Any]) -> AudioPreprocessing:
    """Resolve an audio model's ``preprocessing.audio`` (defaults for missing keys).

    Parameters
    ----------
    model_spec : mapping
        ``ModelSpec.to_dict()`` of a model with ``input.kind == "audio"``.

    Raises
    ------
    DataError
        ``n_mels`` differs from the input's ``n_freq``, ``win_ms`` is given for the
        cochleagram, or ``fmin``/``fmax`` do not fit below Nyquist.
    """
    name = model_spec["name"]
    kind, shape = _declared(model_spec)
    if kind != "audio" or len(shape) != 2:
        raise DataError(f"model {name!r}: input kind {kind!r} with shape {list(shape)}; nnbrain "
                        "reads image (channels, height, width) or audio (n_freq, n_frames) "
                        "stimuli")
    settings = dict(_preprocessing(model_spec, "audio") or {})
    where = f"model {name!r}: preprocessing.audio"
    n_freq = shape[0]
    if settings.get("n_mels", n_freq) != n_freq:
        raise DataError(f"{where}.n_mels: {settings['n_mels']} bands, the model's input shape "
                        f"{list(shape)} takes {n_freq} (n_freq, n_frames)")
    features = settings.get("features", "logmel")
    sample_rate = int(settings.get("sample_rate", 16000))
    common: dict[str, Any] = {"sample_rate": sample_rate,
                              "hop_ms": float(settings.get("hop_ms", 10.0))}
    if "fmax" in settings:
        common["fmax"] = float(settings["fmax"])
    if "fmin" in settings:
        common["fmin"] = float(settings["fmin"])
    if features == "cochleagram":
        if "win_ms" in settings:
            raise DataError(f"{where}.win_ms: the cochleagram filters the whole clip (no "
                            "window); win_ms applies to features: logmel only")
        config: LogMelConfig | CochleagramConfig = CochleagramConfig(n_bands=n_freq, **common)
    elif features == "logmel":
        config = LogMelConfig(n_mels=n_freq, win_ms=float(settings.get("win_ms", 25.0)), **common)
    else:
        raise DataError(f"{where}.features: {features!r} is not one of {', '.join(FEATURES)}")
    fmax = config.fmax if config.fmax is not None else sample_rate / 2
    if fmax > sample_rate / 2 or config.fmin >= fmax:
        raise DataError(f"{where}: fmin {config.fmin:g} Hz and fmax {fmax:g} Hz must satisfy "
                        f"fmin < fmax <= sample_rate / 2 = {sample_rate / 2:g} Hz")
    if config.hop_length < 1:
        raise DataError(f"{where}.hop_ms: {common['hop_ms']:g} ms is less than one sample at "
                        f"{sample_rate} Hz")
    return AudioPreprocessing(features, config, int(settings.get("frame_step", 1)))


def fit_frames(features: np.ndarray, n_frames: int, floor: float) -> np.ndarray:
    """Centre-crop or pad (with ``floor``, i.e. silence) a feature map to ``n_frames`` frames.

    A longer map keeps frames ``(T - n_frames) // 2`` onwards; a shorter one gets
    ``(n_frames - T) // 2`` floor frames before it and the rest after.

    Parameters
    ----------
    features : array of shape (n_freq, T)
    n_frames : int
    floor : float

    Returns
    -------
    array of shape (n_freq, n_frames)

    Examples
    --------
    >>> fit_frames(np.arange(5.0)[None], 3, -1.0)
    array([[1., 2., 3.]])
    >>> fit_frames(np.arange(2.0)[None], 5, -1.0)
    array([[-1.,  0.,  1., -1., -1.]])
    """
    total = features.shape[1]
    if total >= n_frames:
        start = (total - n_frames) // 2
        return features[:, start:start + n_frames]
    before = (n_frames - total) // 2
    return np.pad(features, ((0, 0), (before, n_frames - total - before)), constant_values=floor)


def frame_inputs(waveform_features: np.ndarray, context: int, step: int = 1, *,
                 frame_rate: float = 100.0, floor: float = -100.0) -> FrameInputs:
    """One context window per ``step``-th frame of a continuous stimulus's features.

    The window of frame ``t`` holds frames ``t - context // 2`` .. ``t - context // 2 +
    context - 1``: centred on ``t`` (an even ``context`` has one frame more before ``t``
    than after). Frames outside the stimulus are ``floor`` (silence: -100 dB for nnbrain's
    log-mel, 0 for its cochleagram).

    Parameters
    ----------
    waveform_features : array of shape (n_freq, n_frames)
        Log-mel or cochleagram frames of the whole stimulus.
    context : int
        Frames per window (the model input's ``n_frames``; speech_cnn: 11).
    step : int
        Keep frames 0, step, 2 * step, ... (the 7T study: 2, i.e. 20 ms at a 10 ms hop).
    frame_rate : float
        Frames per second of ``waveform_features``.
    floor : float
        Padding value.

    Returns
    -------
    FrameInputs
        ``inputs`` of shape (ceil(n_frames / step), n_freq, context), float32; ``times`` of
        the kept frames in seconds; ``frame_rate / step``.
    """
    if context < 1 or step < 1:
        raise ValueError(f"context and step must be >= 1, got {context} and {step}")
    n_freq, n_frames = waveform_features.shape
    before = context // 2
    padded = np.pad(np.asarray(waveform_features, dtype=np.float32),
                    ((0, 0), (before, context - 1 - before)), constant_values=floor)
    windows = np.lib.stride_tricks.sliding_window_view(padded, context, axis=1)
    kept = np.arange(0, n_frames, step)
    inputs = np.ascontiguousarray(windows[:, kept].transpose(1, 0, 2))
    return FrameInputs(inputs.reshape(kept.size, n_freq, context), kept / frame_rate,
                       frame_rate / step)


def audio_features(path: Path, settings: AudioPreprocessing) -> np.ndarray:
    """Read one audio file and compute its features, shape (n_freq, n_frames), float64."""
    return settings.transform(load_audio(path, settings.config.sample_rate))


def load_frame_inputs(path: Path, model_spec: Mapping[str, Any]) -> FrameInputs:
    """Frame-level inputs of one continuous audio stimulus, with the spec's settings.

    The context is the input's ``n_frames``, the step ``preprocessing.audio.frame_step``.

    Returns
    -------
    FrameInputs
        ``inputs`` of shape (n_frames_kept, n_freq, n_frames of the input).
    """
    settings = audio_preprocessing(model_spec)
    _kind, shape = _declared(model_spec)
    return frame_inputs(audio_features(path, settings), shape[1], settings.frame_step,
                        frame_rate=settings.frame_rate, floor=settings.floor)


def load_stimuli(paths: list[Path], model_spec: Mapping[str, Any]) -> np.ndarray:
    """One network input per stimulus file, as the model spec's input and preprocessing say.

    Parameters
    ----------
    paths : list of Path
        Stimulus files (images, or WAV/FLAC/OGG audio), in stimulus order.
    model_spec : mapping
        ``ModelSpec.to_dict()``: ``name``, ``input`` ``{kind, shape}``, ``preprocessing``.

    Returns
    -------
    array of shape (n_stimuli, *input_shape), float32
        Images (n, channels, height, width); audio (n, n_freq, n_frames), each clip's
        features centre-cropped or floor-padded to ``n_frames`` (:func:`fit_frames`).

    Raises
    ------
    MissingInputError
        A file does not exist.
    DataError
        A file cannot be read, or the preprocessing does not give the model's input shape.
    """
    from nnbrain.models.transforms import ImagePreprocessing, load_images, preprocess_images

    kind, shape = _declared(model_spec)
    if kind == "image":
        image_shape = _image_shape(model_spec)
        image = _preprocessing(model_spec, "image")
        if image is None:
            return load_images(list(paths), image_shape)
        return preprocess_images(list(paths), ImagePreprocessing.from_dict(image), image_shape,
                                 model_spec["name"])
    settings = audio_preprocessing(model_spec)
    out = np.empty((len(paths), *shape), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = fit_frames(audio_features(path, settings), shape[1], settings.floor)
    return out
