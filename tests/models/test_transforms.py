"""nnbrain.models.transforms.load_images: stimulus files -> network input batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnbrain.errors import DataError, MissingInputError
from nnbrain.models.transforms import load_images

DEMO = Path(__file__).resolve().parents[2] / "datalad_dataset"
PNGS = sorted((DEMO / "stimuli").glob("*.png"))

#: PIL rounds to uint8 after compositing / colour conversion: half a grey level, plus slack.
HALF_LEVEL = 0.51 / 255


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, the documented formula of PIL's RGB -> L conversion."""
    rgb = rgb.astype(np.float64)
    return rgb[..., 0] * 299 / 1000 + rgb[..., 1] * 587 / 1000 + rgb[..., 2] * 114 / 1000


def test_demo_pngs_equal_pil_values_over_255():
    assert len(PNGS) == 30
    got = load_images(PNGS, (1, 8, 8))
    assert got.shape == (30, 1, 8, 8)
    assert got.dtype == np.float32
    for i, path in enumerate(PNGS):
        with Image.open(path) as img:
            assert img.mode == "L" and img.size == (8, 8)
            want = np.asarray(img, dtype=np.float64) / 255.0
        np.testing.assert_allclose(got[i, 0], want, rtol=0, atol=1e-7)
    assert 0.0 <= got.min() and got.max() <= 1.0
    assert got.std() > 0.05  # real images, not a constant


def test_order_follows_paths():
    order = [PNGS[5], PNGS[0], PNGS[5]]
    got = load_images(order, (1, 8, 8))
    ref = load_images(PNGS, (1, 8, 8))
    np.testing.assert_array_equal(got, ref[[5, 0, 5]])


def test_empty_list_gives_empty_batch():
    assert load_images([], (1, 8, 8)).shape == (0, 1, 8, 8)


def test_rgba_composited_on_mid_grey(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:2] = (255, 0, 0, 0)        # fully transparent red -> background grey 128
    rgba[2:4] = (255, 255, 255, 255)  # opaque white -> 255
    rgba[4:6] = (0, 0, 0, 255)       # opaque black -> 0
    rgba[6:] = (255, 255, 255, 128)  # half-transparent white over 128
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    got = load_images([path], (1, 8, 8))[0, 0]
    a = 128 / 255
    want = np.empty((8, 8))
    want[:2] = 128
    want[2:4] = 255
    want[4:6] = 0
    want[6:] = a * 255 + (1 - a) * 128
    np.testing.assert_allclose(got, want / 255, rtol=0, atol=HALF_LEVEL)


def test_la_composited(tmp_path):
    la = np.zeros((8, 8, 2), dtype=np.uint8)
    la[..., 0] = 200
    la[:, :4, 1] = 0    # transparent -> 128
    la[:, 4:, 1] = 255  # opaque -> 200
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    got = load_images([path], (1, 8, 8))[0, 0]
    want = np.where(np.arange(8)[None, :] < 4, 128, 200) * np.ones((8, 1))
    np.testing.assert_allclose(got, want / 255, rtol=0, atol=HALF_LEVEL)


def test_palette_with_transparent_index_composited(tmp_path):
    indices = np.zeros((8, 8), dtype=np.uint8)
    indices[4:] = 1
    img = Image.fromarray(indices, mode="P")
    img.putpalette([10, 20, 30, 0, 0, 255] + [0] * (3 * 254))
    path = tmp_path / "palette.png"
    img.save(path, transparency=0)  # index 0 transparent
    got = load_images([path], (1, 8, 8))[0, 0]
    want = np.empty((8, 8))
    want[:4] = 128                         # transparent -> grey background
    want[4:] = _luma(np.array([0, 0, 255]))  # opaque blue -> its luma
    np.testing.assert_allclose(got, want / 255, rtol=0, atol=HALF_LEVEL)


def test_rgb_converted_to_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    got = load_images([path], (1, 8, 8))
    assert got.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(got[0, 0], _luma(rgb) / 255, rtol=0, atol=HALF_LEVEL)
    np.testing.assert_allclose(got[0, 0, 0, :3], np.array([76, 150, 29]) / 255, atol=1e-7)


def test_gray_to_three_channels_replicates(tmp_path):
    path = tmp_path / "gray.png"
    gray = np.random.default_rng(1).integers(0, 256, size=(8, 8), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(path)
    got = load_images([path], (3, 8, 8))
    assert got.shape == (1, 3, 8, 8)
    for c in range(3):
        np.testing.assert_allclose(got[0, c], gray / 255, atol=1e-7)


def test_rgb_kept_channel_first_for_three_channel_networks(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    got = load_images([path], (3, 8, 8))
    np.testing.assert_allclose(got[0], rgb.transpose(2, 0, 1) / 255, atol=1e-7)


def test_resize_to_network_shape(tmp_path):
    # 16x16: left half black, right half white -> 8x8 (bilinear, width and height)
    img = np.zeros((16, 16), dtype=np.uint8)
    img[:, 8:] = 255
    path = tmp_path / "big.png"
    Image.fromarray(img, mode="L").save(path)
    got = load_images([path], (1, 8, 8))[0, 0]
    assert got.shape == (8, 8)
    # rows identical (the image does not vary along y)
    np.testing.assert_allclose(got, np.broadcast_to(got[0], (8, 8)), atol=1e-7)
    # far from the edge: untouched; at the edge: blended, symmetric about 0.5
    np.testing.assert_array_equal(got[:, :3], 0)
    np.testing.assert_array_equal(got[:, 5:], 1)
    assert 0 < got[0, 3] < 0.5 < got[0, 4] < 1
    np.testing.assert_allclose(got[0, 3] + got[0, 4], 1, atol=2 / 255)


@pytest.mark.parametrize("size", [(4, 4), (8, 5), (30, 12)])
def test_resize_constant_image_stays_constant(tmp_path, size):
    path = tmp_path / "const.png"
    Image.fromarray(np.full(size[::-1], 77, dtype=np.uint8), mode="L").save(path)
    got = load_images([path], (1, 8, 8))
    assert got.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(got, 77 / 255, atol=1e-7)


def test_resize_non_square_target(tmp_path):
    """Height and width are not swapped: PIL sizes are (width, height)."""
    ramp = np.tile(np.linspace(0, 255, 20).astype(np.uint8), (10, 1))  # 10 high, 20 wide
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp, mode="L").save(path)
    got = load_images([path], (1, 6, 12))[0, 0]
    assert got.shape == (6, 12)
    assert np.all(np.diff(got[0]) > 0)  # increases along width
    np.testing.assert_allclose(got, np.broadcast_to(got[0], got.shape), atol=1e-7)


def test_missing_file_is_missing_input_error(tmp_path):
    with pytest.raises(MissingInputError) as info:
        load_images([PNGS[0], tmp_path / "stim99.png"], (1, 8, 8))
    assert info.value.path == tmp_path / "stim99.png"
    assert info.value.exit_code == 66


@pytest.mark.parametrize("content", [b"this is not an image\n", b"", b"\x89PNG\r\n\x1a\ntruncated"])
def test_non_image_is_data_error(tmp_path, content):
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_images([path], (1, 8, 8))
    assert info.value.path == path
    assert info.value.exit_code == 65
