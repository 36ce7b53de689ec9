"""Architectures: nnbrain's study zoo, torchvision by name, and (opt-in) a user's Python class.

Each entry of :data:`ZOO` builds an untrained ``torch.nn.Module`` and declares the input of one
stimulus: ``image`` (channels, height, width) or ``audio`` (n_freq, n_frames). Weights come from
:mod:`nnbrain.models.loading`; nothing here downloads anything (torchvision models are always
built with ``weights=None``).

==========================  =====  ==============  ===========================================
name                        kind   input           what
==========================  =====  ==============  ===========================================
digitcnn                    image  (1, 8, 8)       the demo dataset's small CNN
speech_cnn                  audio  (45, 11)        7T study's triphone CNN (reconstruction)
word_cnn2d                  audio  (32, 32)        metamer study, 2D conv word classifier
word_cnn1d_grouped          audio  (32, 32)        metamer study, 1D grouped conv classifier
alexnet                     image  (3, 224, 224)   torchvision AlexNet
deepcluster_alexnet         image  (3, 224, 224)   DeepCluster AlexNet (BN, Sobel), k=10000
deepcluster_alexnet_in1k    image  (3, 224, 224)   same, 1000 classes (the supervised variant)
resnet50                    image  (3, 224, 224)   torchvision ResNet-50 (blocks: layer1..4.N)
==========================  =====  ==============  ===========================================

``torchvision:<name>`` selects any torchvision classification model (``alexnet``,
``resnet50``, ``vgg16``, ...; input (3, 224, 224), ``inception_v3`` (3, 299, 299)).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from nnbrain.errors import DataError, MissingInputError

TORCHVISION_PREFIX = "torchvision:"
IMAGE = "image"
AUDIO = "audio"
INPUT_KINDS = (IMAGE, AUDIO)


class ZooEntry(NamedTuple):
    """One built-in architecture."""

    factory: Callable[[], Any]
    """Builds the untrained network."""
    input_shape: tuple[int, ...]
    """One stimulus: (channels, height, width) for images, (n_freq, n_frames) for audio."""
    input_kind: str
    """``image`` or ``audio``."""
    description: str
    """One line for listings."""


def _digit_cnn() -> Any:
    """A small CNN for 8x8 grayscale digit images (the demo dataset's network).

    Layers (name: output shape for a 1x8x8 input): ``conv1`` 8x8x8, ``conv2`` 16x8x8,
    ``pool`` 16x4x4, ``conv3`` 32x4x4, ``fc1`` 64, ``fc2`` 10 (class logits). ReLUs are
    applied inside the named layers' successors via ``nn.Sequential`` blocks, so each named
    layer's output is the post-ReLU response (the fc2 logits have no ReLU).
    """
    from torch import nn

    class DigitCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
            self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
            self.pool = nn.MaxPool2d(2)
            self.conv3 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
            self.flatten = nn.Flatten()
            self.fc1 = nn.Sequential(nn.Linear(32 * 4 * 4, 64), nn.ReLU())
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x: Any) -> Any:
            x = self.pool(self.conv2(self.conv1(x)))
            return self.fc2(self.fc1(self.flatten(self.conv3(x))))

    return DigitCNN()


def _torchvision(name: str) -> Callable[[], Any]:
    def factory() -> Any:
        import torchvision

        return torchvision.models.get_model(name, weights=None)

    factory.__doc__ = f"torchvision's ``{name}``, built with ``weights=None`` (nothing downloads)."
    return factory


def _speech_cnn() -> Any:
    from nnbrain.models.speech import speech_cnn

    return speech_cnn()


def _word_cnn2d() -> Any:
    from nnbrain.models.speech import word_cnn2d

    return word_cnn2d()


def _word_cnn1d_grouped() -> Any:
    from nnbrain.models.speech import word_cnn1d_grouped

    return word_cnn1d_grouped()


def _deepcluster_alexnet() -> Any:
    from nnbrain.models.alexnet import deepcluster_alexnet

    return deepcluster_alexnet()


def _deepcluster_alexnet_in1k() -> Any:
    from nnbrain.models.alexnet import deepcluster_alexnet

    return deepcluster_alexnet(num_classes=1000)


_IMAGENET = (3, 224, 224)

#: name -> :class:`ZooEntry`. ``ZOO[name][0]`` is the factory, ``ZOO[name][1]`` the input shape.
ZOO: dict[str, ZooEntry] = {
    "digitcnn": ZooEntry(_digit_cnn, (1, 8, 8), IMAGE, "demo dataset's digit CNN"),
    "speech_cnn": ZooEntry(_speech_cnn, (45, 11), AUDIO,
                           "7T study's triphone CNN: 9 conv + 3 fc on 45 log-mel x 11 frames"),
    "word_cnn2d": ZooEntry(_word_cnn2d, (32, 32), AUDIO,
                           "metamer study's 2D conv word classifier (32x32 cochleagram)"),
    "word_cnn1d_grouped": ZooEntry(_word_cnn1d_grouped, (32, 32), AUDIO,
                                   "metamer study's 1D temporal conv, 8 frequency groups"),
    "alexnet": ZooEntry(_torchvision("alexnet"), _IMAGENET, IMAGE, "torchvision AlexNet"),
    "deepcluster_alexnet": ZooEntry(_deepcluster_alexnet, _IMAGENET, IMAGE,
                                    "DeepCluster AlexNet: batch norm, fixed Sobel, 10000 clusters"),
    "deepcluster_alexnet_in1k": ZooEntry(_deepcluster_alexnet_in1k, _IMAGENET, IMAGE,
                                         "DeepCluster AlexNet with 1000 classes (supervised)"),
    "resnet50": ZooEntry(_torchvision("resnet50"), _IMAGENET, IMAGE, "torchvision ResNet-50"),
}

#: torchvision models whose default input is not 3 x 224 x 224.
_TORCHVISION_INPUT = {"inception_v3": (3, 299, 299)}


def torchvision_models() -> list[str]:
    """Names of torchvision's classification models (``torchvision:<name>`` in a spec)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown architecture {name!r}; choose from {sorted(ZOO)} or "
                      f"'{TORCHVISION_PREFIX}<name>' (a torchvision classification model)")


def _factory(name: str) -> Callable[[], Any]:
    if name in ZOO:
        return ZOO[name].factory
    if name.startswith(TORCHVISION_PREFIX):
        tv_name = name[len(TORCHVISION_PREFIX):]
        if tv_name in torchvision_models():
            return _torchvision(tv_name)
    raise _unknown(name)


def architecture_input(name: str) -> tuple[str, tuple[int, ...]]:
    """(kind, shape) of one stimulus for the built-in or torchvision architecture ``name``.

    >>> architecture_input("speech_cnn")
    ('audio', (45, 11))
    """
    if name in ZOO:
        return ZOO[name].input_kind, ZOO[name].input_shape
    if name.startswith(TORCHVISION_PREFIX):
        tv_name = name[len(TORCHVISION_PREFIX):]
        if tv_name in torchvision_models():
            return IMAGE, _TORCHVISION_INPUT.get(tv_name, _IMAGENET)
    raise _unknown(name)


def input_shape(name: str) -> tuple[int, ...]:
    """Shape of one stimulus for the architecture ``name`` (see :func:`architecture_input`)."""
    return architecture_input(name)[1]


@contextmanager
def _construction(seed: int | None, device: str | None) -> Iterator[None]:
    """Build under ``torch.manual_seed(seed)`` (global RNG restored after) and on ``device``."""
    from contextlib import ExitStack

    import torch

    with ExitStack() as stack:
        if seed is not None:
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(seed)
        if device is not None:
            stack.enter_context(torch.device(device))
        yield


def build_architecture(name: str, *, seed: int | None = None, device: str | None = None) -> Any:
    """Build the untrained network registered as ``name`` (or ``torchvision:<name>``).

    Parameters
    ----------
    name : str
        A key of :data:`ZOO` or ``torchvision:<name>``.
    seed : int, optional
        Construct under ``torch.manual_seed(seed)``: the architecture's own initialisation,
        reproducible per seed (the global RNG state is restored afterwards). Without a seed the
        weights come from the global RNG.
    device : str, optional
        Construct on this device; ``"meta"`` gives the structure (module names, shapes) without
        allocating or initialising weights.

    Raises
    ------
    ValueError
        If ``name`` is not a known architecture.
    """
    factory = _factory(name)
    with _construction(seed, device):
        return factory()


def load_custom_class(file: Path, class_name: str, *, allow_custom_code: bool = False,
                      expected_sha256: str | None = None) -> type:
    """Import ``class_name`` from the user's Python ``file`` (this runs the file's code).

    Raises
    ------
    DataError
        Custom code not allowed, hash mismatch, import failure or no such class.
    MissingInputError
        The file does not exist.
    """
    from nnbrain.models.loading import sha256_file

    if not allow_custom_code:
        raise DataError("a custom architecture runs this Python file; pass --allow-custom-code "
                        "to allow it (only for code you trust)", file)
    if not file.is_file():
        raise MissingInputError("custom architecture file not found; check 'architecture.file' "
                                "in the model spec", file)
    digest = sha256_file(file)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise DataError(f"SHA-256 is {digest}, the model spec expects {expected_sha256}; the "
                        "file changed or the spec names the wrong file", file)
    module_name = f"nnbrain_custom_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise DataError("cannot be imported as a Python module", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code may raise anything
        raise DataError(f"importing the custom architecture failed: {type(exc).__name__}: "
                        f"{exc}", file) from exc
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        defined = sorted(n for n, v in vars(module).items()
                         if inspect.isclass(v) and v.__module__ == module_name)
        raise DataError(f"defines no class {class_name!r}; classes defined: "
                        f"{', '.join(defined) or 'none'}", file)
    return cls


def build_custom(file: Path, class_name: str, *, kwargs: Mapping[str, Any] | None = None,
                 sha256: str | None = None, allow_custom_code: bool = False,
                 seed: int | None = None, device: str | None = None) -> Any:
    """Instantiate the user's class ``class_name(**kwargs)`` from ``file``.

    Same ``seed`` and ``device`` semantics as :func:`build_architecture`; refused unless
    ``allow_custom_code`` (see :func:`load_custom_class`).
    """
    import torch

    cls = load_custom_class(file, class_name, allow_custom_code=allow_custom_code,
                            expected_sha256=sha256)
    try:
        with _construction(seed, device):
            model = cls(**dict(kwargs or {}))
    except Exception as exc:  # the user's code may raise anything
        raise DataError(f"{class_name}(**{dict(kwargs or {})}) failed: {type(exc).__name__}: "
                        f"{exc}", file) from exc
    if not isinstance(model, torch.nn.Module):
        raise DataError(f"{class_name} is not a torch.nn.Module subclass", file)
    return model


def build_from_dict(model: Mapping[str, Any], *, seed: int | None = None,
                    allow_custom_code: bool = False, device: str | None = None) -> Any:
    """Build the network of ``ModelSpec.to_dict()`` (built-in, torchvision or custom).

    Custom architectures (``model["custom"]`` set) are refused unless ``allow_custom_code``.
    """
    custom = model.get("custom")
    if custom:
        return build_custom(Path(custom["file"]), custom["class"], kwargs=custom.get("kwargs"),
                            sha256=custom.get("sha256"), allow_custom_code=allow_custom_code,
                            seed=seed, device=device)
    return build_architecture(model["architecture"], seed=seed, device=device)
