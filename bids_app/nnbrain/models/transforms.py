"""Stimulus files -> network inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnbrain.errors import DataError, MissingInputError


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
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(paths), channels, height, width), dtype=np.float32)
    for i, path in enumerate(paths):
        if not path.is_file():
            raise MissingInputError("stimulus file named in events.tsv (stim_file) not found", path)
        try:
            with Image.open(path) as img:
                img.load()
                if img.mode in ("RGBA", "LA", "P"):
                    rgba = img.convert("RGBA")
                    background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
                    img = Image.alpha_composite(background, rgba)
                img = img.convert(mode)
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot be read as an image ({exc})", path) from exc
        out[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return out
