"""nnbrain.models.transforms: image files -> network input batches (plain and preprocessed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T

from nnbrain.errors import DataError, MissingInputError
from nnbrain.models.transforms import ImagePreprocessing, load_images, preprocess_images

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


# ----------------------------------------------------------------------------- preprocess_images
# Reference: torchvision's own pipeline on PIL images (PIL resampling). nnbrain resizes uint8
# tensors (torchvision's antialiased tensor kernels, rounded to uint8 as PIL rounds): values
# before normalisation agree within 2 grey levels, 0.05 levels on average (measured: 0.02
# bilinear, 0.003 bicubic); "nearest" samples the same pixels except at exact half-pixel
# ties (>= 99 % equal).

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_TV_MODE = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
            "nearest": T.InterpolationMode.NEAREST}


def _natural_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """RGB: smooth random structure plus noise, edges and gradients as in photographs."""
    coarse = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, mode="RGB")
    smooth = np.asarray(img.resize((width, height), Image.Resampling.BICUBIC), dtype=float)
    noisy = smooth + rng.normal(0, 20, size=smooth.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """RGB photographs-like PNG/JPEG files of different sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (height, width) in enumerate([(300, 400), (480, 320), (256, 256), (200, 500)]):
        path = tmp_path / f"photo{i}.{'jpg' if i == 1 else 'png'}"
        Image.fromarray(_natural_like(rng, height, width), mode="RGB").save(path)
        paths.append(path)
    return paths


def _reference(paths: list[Path], transform) -> np.ndarray:
    out = []
    for path in paths:
        with Image.open(path) as img:
            out.append(transform(img.convert("RGB")).numpy())
    return np.stack(out)


def _levels(ours: np.ndarray, reference: np.ndarray, std=IMAGENET_STD) -> np.ndarray:
    """Absolute difference in grey levels (0..255) before normalisation."""
    return np.abs(ours - reference) * np.asarray(std)[None, :, None, None] * 255


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_imagenet_pipeline_matches_torchvision(photos, interpolation) -> None:
    config = ImagePreprocessing.from_dict({
        "resize": 256, "crop": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "interpolation": interpolation})
    ours = preprocess_images(photos, config, (3, 224, 224), "alexnet")
    reference = _reference(photos, T.Compose([
        T.Resize(256, interpolation=_TV_MODE[interpolation]), T.CenterCrop(224), T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]))
    assert ours.shape == reference.shape == (4, 3, 224, 224)
    assert ours.dtype == np.float32
    levels = _levels(ours, reference)
    assert levels.max() <= 2 + 1e-4
    assert levels.mean() <= 0.05
    assert ours.std() > 0.5  # normalised real structure, not a constant


def test_nearest_samples_the_pixels_pil_samples(photos) -> None:
    config = ImagePreprocessing.from_dict({"resize": 256, "crop": 224,
                                           "interpolation": "nearest"})
    ours = preprocess_images(photos, config, (3, 224, 224))
    reference = _reference(photos, T.Compose([
        T.Resize(256, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(224),
        T.ToTensor()]))
    assert np.mean(np.isclose(ours, reference, rtol=0, atol=1e-6)) >= 0.99
    # every value is one of the source's grey levels: no blending
    np.testing.assert_allclose(ours * 255, np.round(ours * 255), atol=1e-4)


def test_exact_resize_without_crop(photos) -> None:
    config = ImagePreprocessing.from_dict({"resize": [120, 160]})
    ours = preprocess_images(photos, config, (3, 120, 160))
    reference = _reference(photos, T.Compose([T.Resize((120, 160)), T.ToTensor()]))
    assert _levels(ours, reference, std=(1, 1, 1)).max() <= 2 + 1e-4


def test_no_resize_no_crop_resizes_to_the_input_like_load_images(photos) -> None:
    ours = preprocess_images(photos, ImagePreprocessing(), (3, 64, 64))
    plain = load_images(photos, (3, 64, 64))
    assert _levels(ours, plain, std=(1, 1, 1)).max() <= 2 + 1e-4


@pytest.mark.parametrize("channels", [1, 3])
def test_grayscale_matches_torchvision_grayscale(photos, channels) -> None:
    config = ImagePreprocessing.from_dict({"resize": 80, "crop": [64, 48], "color": "grayscale",
                                           "mean": [0.5], "std": [0.25]})
    ours = preprocess_images(photos, config, (channels, 64, 48))
    reference = _reference(photos, T.Compose([
        T.Grayscale(channels), T.Resize(80), T.CenterCrop((64, 48)), T.ToTensor(),
        T.Normalize([0.5] * channels, [0.25] * channels)]))
    assert ours.shape == (4, channels, 64, 48)
    assert _levels(ours, reference, std=(0.25,) * channels).max() <= 2 + 1e-4
    if channels == 3:  # luma repeated in every channel
        np.testing.assert_array_equal(ours[:, 0], ours[:, 2])


def test_rgba_composited_on_mid_grey_before_the_transform(tmp_path) -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[:, 20:, 3] = 255  # left half transparent white, right half opaque white
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    config = ImagePreprocessing.from_dict({"resize": 20, "mean": [0.5], "std": [0.5]})
    got = preprocess_images([path], config, (3, 20, 20))[0]
    np.testing.assert_allclose(got[:, :, :8], (128 / 255 - 0.5) / 0.5, atol=1e-6)
    np.testing.assert_allclose(got[:, :, 12:], 1.0, atol=1e-6)


def test_one_mean_and_std_apply_to_every_channel(photos) -> None:
    one = ImagePreprocessing.from_dict({"resize": 32, "crop": 32, "mean": [0.5], "std": [0.2]})
    three = ImagePreprocessing.from_dict({"resize": 32, "crop": 32, "mean": [0.5] * 3,
                                          "std": [0.2] * 3})
    np.testing.assert_array_equal(preprocess_images(photos, one, (3, 32, 32)),
                                  preprocess_images(photos, three, (3, 32, 32)))


@pytest.mark.parametrize("settings, shape, message", [
    ({"resize": 256, "crop": 224}, (3, 227, 227),
     "model 'net': preprocessing.image.crop: [224, 224] does not give the input shape "
     "[3, 227, 227] (height x width 227 x 227)"),
    ({"resize": [100, 120]}, (3, 120, 100),
     "model 'net': preprocessing.image.resize: [100, 120] without crop does not give the input "
     "shape [3, 120, 100]; add crop: [120, 100]"),
    ({"color": "rgb"}, (1, 8, 8),
     "model 'net': preprocessing.image.color: rgb gives 3 channels, the input shape [1, 8, 8] "
     "has 1; use color: grayscale"),
    ({"mean": [0.5, 0.5], "std": [0.2]}, (3, 8, 8),
     "model 'net': preprocessing.image.mean: 2 values for 3 channels (input shape [3, 8, 8]); "
     "give 1 or 3"),
])
def test_preprocessing_that_cannot_give_the_input_shape_is_refused(photos, settings, shape,
                                                                   message) -> None:
    with pytest.raises(DataError) as info:
        preprocess_images([photos[0]], ImagePreprocessing.from_dict(settings), shape, "net")
    assert str(info.value) == message
    assert info.value.exit_code == 65


def test_shorter_side_resize_of_a_non_square_image_needs_a_crop(photos) -> None:
    config = ImagePreprocessing.from_dict({"resize": 224})
    preprocess_images([photos[2]], ImagePreprocessing.from_dict({"resize": 64}), (3, 64, 64))
    with pytest.raises(DataError) as info:
        preprocess_images(photos, config, (3, 224, 224), "alexnet")
    assert info.value.path == photos[0]
    assert info.value.message == (
        "model 'alexnet': preprocessing.image gives shape [3, 224, 298] for this image, the "
        "model's input shape is [3, 224, 224]; add crop: [224, 224]")


def test_preprocess_missing_and_broken_files(tmp_path, photos) -> None:
    with pytest.raises(MissingInputError) as info:
        preprocess_images([photos[0], tmp_path / "gone.png"], ImagePreprocessing(), (3, 8, 8))
    assert info.value.path == tmp_path / "gone.png"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot be read as an image"):
        preprocess_images([broken], ImagePreprocessing(), (3, 8, 8))
