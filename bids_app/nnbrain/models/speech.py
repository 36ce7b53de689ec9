"""Audio networks of the studies: the 7T study's speech CNN, the metamer study's word classifiers.

Audio inputs follow one convention: one stimulus is a time-frequency image of shape
``(n_freq, n_frames)`` (log-mel or cochleagram bands x frames); a batch is
``(batch, n_freq, n_frames)``. Convolutions and linear layers that the studies read out apply
their ReLU inside the module (:class:`Conv2dReLU`, ...), so hooking ``conv3`` gives the
post-ReLU response and the module names are exactly the layer names of the papers.

torch is imported inside the factories (``nnbrain --help`` stays fast).
"""

from __future__ import annotations

from typing import Any

#: (kernel size, feature maps) of the speech CNN's nine convolutions (paper 000, section 2.7).
SPEECH_CONV = ((7, 1024), (3, 256), (3, 256), (3, 128), (3, 128), (3, 128), (3, 64), (3, 64),
               (3, 64))
#: Units of its three fully connected layers (the last: 9000 triphone classes).
SPEECH_FC = (600, 190, 9000)
#: nnbrain's reconstruction: 45 log-mel bands, a context window of 11 frames (110 ms at 10 ms).
SPEECH_INPUT = (45, 11)

#: Input of the metamer study's word classifiers: a 32 x 32 cochleagram (frequency x time).
WORD_INPUT = (32, 32)
#: The 8 words of mini speech commands.
WORD_CLASSES = 8


def _relu_modules() -> tuple[type, type, type]:
    """Conv2d, Conv1d and Linear subclasses that apply a ReLU to their output."""
    from torch import nn
    from torch.nn import functional

    class Conv2dReLU(nn.Conv2d):
        """``Conv2d`` followed by a ReLU (one module, so one hookable layer)."""

        def forward(self, x: Any) -> Any:
            return functional.relu(super().forward(x))

    class Conv1dReLU(nn.Conv1d):
        """``Conv1d`` followed by a ReLU."""

        def forward(self, x: Any) -> Any:
            return functional.relu(super().forward(x))

    class LinearReLU(nn.Linear):
        """``Linear`` followed by a ReLU."""

        def forward(self, x: Any) -> Any:
            return functional.relu(super().forward(x))

    return Conv2dReLU, Conv1dReLU, LinearReLU


def speech_cnn(n_mels: int = SPEECH_INPUT[0], context: int = SPEECH_INPUT[1],
               n_classes: int = SPEECH_FC[-1]) -> Any:
    """The triphone-classifying speech CNN of the 7T study (paper 000), as nnbrain reconstructs it.

    The paper gives the layers: nine convolutions (7x7x1024, 3x3x256 x2, 3x3x128 x3,
    3x3x64 x3) and three fully connected layers (600, 190, 9000 triphone classes) on
    45-dimensional log-mel filterbank frames at one frame per 10 ms. It gives no strides,
    padding, pooling or context window. nnbrain's documented reconstruction:

    - input: one window of ``context`` = 11 frames (the frame being classified +/- 5 frames,
      the usual splicing of hybrid DNN-HMM acoustic models), shape ``(45, 11)``, seen by the
      convolutions as one channel (``(1, 45, 11)``);
    - every convolution: stride 1, zero "same" padding (``kernel // 2``), bias, ReLU; no pooling,
      so every conv map is 45 x 11;
    - ``fc1`` (600, ReLU) on the flattened last map (64 x 45 x 11 = 31,680 values), ``fc2``
      (190, ReLU), ``fc3`` (9000 logits, no ReLU).

    Layers (name: output shape for one ``(45, 11)`` input): ``conv1`` 1024x45x11,
    ``conv2``/``conv3`` 256x45x11, ``conv4``-``conv6`` 128x45x11, ``conv7``-``conv9`` 64x45x11,
    ``fc1`` 600, ``fc2`` 190, ``fc3`` 9000. Conv and fc1/fc2 outputs are post-ReLU.

    Parameters: 24,580,478 = conv 3,738,688 (51,200 + 2,359,552 + 590,080 + 295,040 +
    2 x 147,584 + 73,792 + 2 x 36,928) + fc 20,841,790 (19,008,600 + 114,190 +
    1,719,000); a conv has ``in*out*k*k + out`` parameters, a linear ``in*out + out``.

    Frame-level activations of a continuous stimulus (one row per frame, as the study reads
    them out) come from one window per frame, centred on it, the signal's feature frames padded
    with 5 frames of silence (the log-mel floor, -100 dB) at both ends
    (:func:`nnbrain.models.stimuli.frame_inputs`). The study's "average activation within each
    feature map" is ``channelmean`` pooling.
    """
    from torch import nn

    conv_relu, _conv1d_relu, linear_relu = _relu_modules()

    class SpeechCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            channels = 1
            for i, (kernel, maps) in enumerate(SPEECH_CONV, start=1):
                self.add_module(f"conv{i}", conv_relu(channels, maps, kernel, padding=kernel // 2))
                channels = maps
            self.fc1 = linear_relu(channels * n_mels * context, SPEECH_FC[0])
            self.fc2 = linear_relu(SPEECH_FC[0], SPEECH_FC[1])
            self.fc3 = nn.Linear(SPEECH_FC[1], n_classes)

        def forward(self, x: Any) -> Any:
            if x.ndim == 3:  # (batch, n_mels, frames) -> one input channel
                x = x.unsqueeze(1)
            for i in range(1, len(SPEECH_CONV) + 1):
                x = getattr(self, f"conv{i}")(x)
            return self.fc3(self.fc2(self.fc1(x.flatten(1))))

    return SpeechCNN()


def word_cnn2d() -> Any:
    """The metamer study's 2D-convolutional word classifier (paper 003, supplement table 2).

    The TensorFlow "simple audio" model on a 32 x 32 cochleagram (frequency x time; the
    study's resizing and normalisation layers are preprocessing here, not modules):
    ``conv1`` 3x3 valid conv, 32 maps + ReLU -> 32x30x30; ``conv2`` 3x3, 64 maps + ReLU ->
    64x28x28; ``pool`` 2x2 max -> 64x14x14; ``dropout1`` (0.25); ``fc1`` 128 + ReLU;
    ``dropout2`` (0.5); ``fc2`` 8 word logits. The metamer layers of the study are ``conv1``,
    ``conv2``, ``fc1`` and ``fc2``.

    Parameters: 1,625,608 = 320 + 18,496 + 1,605,760 + 1,032 (the paper's table also counts
    4 normalisation statistics: 1,625,612; its conv2 row, "18469", is a typo for 18,496).
    """
    from torch import nn

    conv_relu, _conv1d_relu, linear_relu = _relu_modules()

    class WordCNN2d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = conv_relu(1, 32, 3)
            self.conv2 = conv_relu(32, 64, 3)
            self.pool = nn.MaxPool2d(2)
            self.dropout1 = nn.Dropout(0.25)
            self.fc1 = linear_relu(64 * 14 * 14, 128)
            self.dropout2 = nn.Dropout(0.5)
            self.fc2 = nn.Linear(128, WORD_CLASSES)

        def forward(self, x: Any) -> Any:
            if x.ndim == 3:
                x = x.unsqueeze(1)
            x = self.dropout1(self.pool(self.conv2(self.conv1(x))))
            return self.fc2(self.dropout2(self.fc1(x.flatten(1))))

    return WordCNN2d()


def word_cnn1d_grouped() -> Any:
    """The metamer study's 1D (temporal) conv word classifier with grouped frequency channels.

    Paper 003, supplement table 3: the 32 frequency bands are the channels of temporal
    convolutions (kernel 3 frames) split into 8 groups of 4 bands, fully connected within a
    group and convolutional in time. ``conv1`` 128 maps (groups=8) + ReLU -> 128x30;
    ``conv2`` 512 maps (groups=8) + ReLU -> 512x28; ``pool`` 2x2 max over (channel, time),
    as the study's Keras ``MaxPooling2D`` on the (time, channel, 1) tensor -> 256x14;
    ``dropout1`` (0.25); ``fc1`` 512 + ReLU; ``dropout2`` (0.5); ``fc2`` 8 word logits.

    Parameters: 1,866,376 = 1,664 + 25,088 + 1,835,520 + 4,104 (the paper's table: 1,866,379
    with 3 normalisation statistics). The study matched it to the 2D model's 1,625,608 "to
    ensure that the model has a similar number of parameters": 14.8 % more.
    """
    import torch
    from torch import nn

    _conv2d_relu, conv1d_relu, linear_relu = _relu_modules()

    class ChannelTimeMaxPool(nn.Module):
        """2x2 max pooling over (channels, time) of a (batch, channels, time) tensor."""

        def forward(self, x: Any) -> Any:
            return torch.nn.functional.max_pool2d(x.unsqueeze(1), 2).squeeze(1)

    class WordCNN1dGrouped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = conv1d_relu(WORD_INPUT[0], 128, 3, groups=8)
            self.conv2 = conv1d_relu(128, 512, 3, groups=8)
            self.pool = ChannelTimeMaxPool()
            self.dropout1 = nn.Dropout(0.25)
            self.fc1 = linear_relu(256 * 14, 512)
            self.dropout2 = nn.Dropout(0.5)
            self.fc2 = nn.Linear(512, WORD_CLASSES)

        def forward(self, x: Any) -> Any:  # (batch, 32 bands, 32 frames)
            x = self.dropout1(self.pool(self.conv2(self.conv1(x))))
            return self.fc2(self.dropout2(self.fc1(x.flatten(1))))

    return WordCNN1dGrouped()
