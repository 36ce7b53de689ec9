"""Built-in architectures (nnbrain's study zoo).

Each entry of :data:`ZOO` builds an untrained ``torch.nn.Module``; weights come from
:mod:`nnbrain.models.loading`. The study architectures of issue 15 join this registry.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable


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


#: name -> (factory, input description). Input: (channels, height, width) of one stimulus.
ZOO: dict[str, tuple[Callable[[], Any], tuple[int, int, int]]] = {
    "digitcnn": (_digit_cnn, (1, 8, 8)),
}


def build_architecture(name: str) -> Any:
    """Build the untrained network registered as ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`ZOO`.
    """
    if name not in ZOO:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ZOO)}")
    return ZOO[name][0]()


def input_shape(name: str) -> tuple[int, int, int]:
    """(channels, height, width) the architecture ``name`` expects for one stimulus."""
    if name not in ZOO:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ZOO)}")
    return ZOO[name][1]
