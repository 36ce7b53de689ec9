"""Image stimulus files -> network inputs: the plain loader and the spec's preprocessing.

:func:`load_images` is the loader of a model spec without ``preprocessing``: convert, resize
(bilinear, PIL) to the input's height x width, scale to [0, 1]. :func:`preprocess_images` applies a
spec's ``preprocessing: {image: {...}}`` with torchvision's ``transforms.v2`` functional ops on
tensors, in the order of the usual torchvision pipeline
(``Resize -> CenterCrop -> ToTensor -> Normalize``).

Both read files the same way: RGBA, LA and palette images are composited onto mid-grey (128),
then converted to grayscale (``L``, ITU-R 601-2 luma) or RGB by PIL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnbrain.errors import DataError, MissingInputError

#: Interpolation names of the spec (``preprocessing.image.interpolation``).
INTERPOLATION = ("bilinear", "bicubic", "nearest")
#: Interpolation name -> torchvision ``InterpolationMode`` value on tensors; ``nearest-exact``
#: samples pixel centres as PIL's ``NEAREST`` does (tensor ``nearest`` is shifted by half a pixel).
_TENSOR_INTERPOLATION = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}
#: Colour modes of the spec (``preprocessing.image.color``) -> PIL mode.
COLOR_MODES = {"rgb": "RGB", "grayscale": "L"}


def _read_image(path: Path, mode: str) -> Any:
    """Open ``path`` as a PIL image in ``mode`` (``L`` or ``RGB``), transparency on mid-grey.

    Raises
    ------
    MissingInputError
        The file does not exist.
    DataError
        The file cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MissingInputError("stimulus file named in events.tsv (stim_file) not found", path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "P"):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
                img = Image.alpha_composite(background, rgba)
            return img.convert(mode)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot be read as an image ({exc})", path) from exc


def load_images(paths: list[Path], shape: tuple[int, int, int]) -> np.ndarray:
    """Read image files and convert them to one network input batch.

    Grayscale, RGB and RGBA files are accepted: RGBA is composited onto mid-grey, then the
    image is converted to the architecture's channel count, resized (bilinear) to its
    height x width, and scaled to [0, 1].

    Parameters
    ----------
    paths : list of Path
        Image files (PNG, JPEG, ...), in stimulus order.
    shape : tuple of int
        (channels, height, width) the network expects.

    Returns
    -------
    array of shape (n_stimuli, channels, height, width), float32
    """
    from PIL import Image

    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(paths), channels, height, width), dtype=np.float32)
    for i, path in enumerate(paths):
        img = _read_image(path, mode)
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        out[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return out


def _size(value: Any) -> tuple[int, ...]:
    """A spec size (one number or [height, width]) as a tuple."""
    return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)


@dataclass(frozen=True)
class ImagePreprocessing:
    """A spec's ``preprocessing.image`` (``model_spec.schema.json``, ``$defs/preprocessing``).

    Attributes
    ----------
    resize : tuple of int or None
        ``(n,)``: the shorter side becomes ``n`` (aspect kept, as ``transforms.Resize(n)``);
        ``(height, width)``: exactly that size.
    crop : tuple of int or None
        ``(height, width)`` of the centre crop.
    mean, std : tuple of float or None
        Per-channel normalisation ``(x - mean) / std`` of values in [0, 1]; one value applies
        to every channel.
    color : str or None
        ``rgb`` or ``grayscale``; ``None``: grayscale for 1-channel inputs, RGB otherwise.
        Grayscale into a 3-channel input repeats the luma in every channel.
    interpolation : str
        Resampling of ``resize``: ``bilinear`` (default), ``bicubic`` or ``nearest``
        (bilinear and bicubic antialiased, as PIL).
    """

    resize: tuple[int, ...] | None = None
    crop: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color: str | None = None
    interpolation: str = "bilinear"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImagePreprocessing:
        """From the spec mapping (keys as in the schema; absent keys take the defaults)."""
        crop = _size(data["crop"]) if "crop" in data else None
        return cls(resize=_size(data["resize"]) if "resize" in data else None,
                   crop=None if crop is None else (crop[0], crop[-1]),
                   mean=tuple(float(v) for v in data["mean"]) if "mean" in data else None,
                   std=tuple(float(v) for v in data["std"]) if "std" in data else None,
                   color=data.get("color"), interpolation=data.get("interpolation", "bilinear"))


def check_image_preprocessing(config: ImagePreprocessing, shape: tuple[int, int, int],
                              model: str = "") -> None:
    """Refuse a preprocessing that cannot give ``shape`` whatever the image (reads no file).

    Raises
    ------
    DataError
        Naming the model, the key and the mismatch.
    """
    channels, height, width = shape
    where = f"model {model!r}: preprocessing.image"
    if config.interpolation not in INTERPOLATION:
        raise DataError(f"{where}.interpolation: {config.interpolation!r} is not one of "
                        f"{', '.join(INTERPOLATION)}")
    if config.color is not None and config.color not in COLOR_MODES:
        raise DataError(f"{where}.color: {config.color!r} is not one of {', '.join(COLOR_MODES)}")
    if config.color == "rgb" and channels != 3:
        raise DataError(f"{where}.color: rgb gives 3 channels, the input shape "
                        f"{list(shape)} has {channels}; use color: grayscale")
    for key in ("mean", "std"):
        values = getattr(config, key)
        if values is not None and len(values) not in (1, channels):
            raise DataError(f"{where}.{key}: {len(values)} values for {channels} channels "
                            f"(input shape {list(shape)}); give 1 or {channels}")
    if config.crop is not None and config.crop != (height, width):
        raise DataError(f"{where}.crop: {list(config.crop)} does not give the input shape "
                        f"{list(shape)} (height x width {height} x {width})")
    if config.crop is None and config.resize is not None and len(config.resize) == 2 \
            and config.resize != (height, width):
        raise DataError(f"{where}.resize: {list(config.resize)} without crop does not give "
                        f"the input shape {list(shape)}; add crop: [{height}, {width}]")


def preprocess_image(image: Any, config: ImagePreprocessing,
                     shape: tuple[int, int, int]) -> Any:
    """Resize, centre-crop, scale and normalise one image tensor.

    Without ``resize`` and ``crop`` the image is resized to the input's height x width (as
    :func:`load_images`).

    Parameters
    ----------
    image : uint8 tensor of shape (1 or 3, height, width)
        As ``pil_to_tensor`` gives it.
    config : ImagePreprocessing
    shape : tuple of int
        (channels, height, width) of the network input.

    Returns
    -------
    float32 tensor of shape (channels, out_height, out_width)
        ``out_height x out_width`` is the crop, the exact resize, or the shorter-side resize.
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional

    mode = InterpolationMode(_TENSOR_INTERPOLATION[config.interpolation])
    size = config.resize
    if size is None and config.crop is None:
        size = tuple(shape[1:])
    if size is not None:
        image = functional.resize(image, list(size), interpolation=mode, antialias=True)
    if config.crop is not None:
        image = functional.center_crop(image, list(config.crop))
    image = functional.to_dtype(image, torch.float32, scale=True)
    if image.shape[0] != shape[0]:
        image = image.expand(shape[0], -1, -1)
    if config.mean is not None or config.std is not None:
        image = functional.normalize(image, _per_channel(config.mean, 0.0, shape[0]),
                                     _per_channel(config.std, 1.0, shape[0]))
    return image


def _per_channel(values: tuple[float, ...] | None, default: float, channels: int) -> list[float]:
    """``values`` (one per channel, or one for all) as one value per channel."""
    values = values or (default,)
    return list(values) * channels if len(values) == 1 else list(values)


def preprocess_images(paths: list[Path], config: ImagePreprocessing,
                      shape: tuple[int, int, int], model: str = "") -> np.ndarray:
    """Read image files and apply a spec's image preprocessing (torchvision ``v2`` ops).

    Parameters
    ----------
    paths : list of Path
        Image files, in stimulus order.
    config : ImagePreprocessing
    shape : tuple of int
        (channels, height, width) the network expects.
    model : str
        Model name, for messages.

    Returns
    -------
    array of shape (n_stimuli, channels, height, width), float32

    Raises
    ------
    DataError
        The preprocessing cannot give ``shape`` (checked before reading any file), an image
        comes out at another size (a shorter-side ``resize`` without ``crop`` on a
        non-square image), or a file is not an image.
    MissingInputError
        A file does not exist.
    """
    from torchvision.transforms.v2 import functional

    check_image_preprocessing(config, shape, model)
    channels = shape[0]
    mode = COLOR_MODES[config.color] if config.color else ("L" if channels == 1 else "RGB")
    out = np.empty((len(paths), *shape), dtype=np.float32)
    for i, path in enumerate(paths):
        image = preprocess_image(functional.pil_to_tensor(_read_image(path, mode)), config, shape)
        if tuple(image.shape) != tuple(shape):
            raise DataError(f"model {model!r}: preprocessing.image gives shape "
                            f"{list(image.shape)} for this image, the model's input shape is "
                            f"{list(shape)}; add crop: [{shape[1]}, {shape[2]}]", path)
        out[i] = image.numpy()
    return out
