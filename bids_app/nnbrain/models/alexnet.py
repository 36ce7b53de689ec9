"""AlexNets of the random-vs-trained study (paper 001): torchvision's and DeepCluster's variant.

Layers the study reads out ("the output of the ReLU of the five convolutional layers and the two
fully connected layers"):

======  ===========================  ================================
layer   torchvision ``alexnet``      ``deepcluster_alexnet``
======  ===========================  ================================
conv1   ``features.1``               ``features.2``
conv2   ``features.4``               ``features.6``
conv3   ``features.7``               ``features.10``
conv4   ``features.9``               ``features.13``
conv5   ``features.11``              ``features.16``
fc6     ``classifier.2``             ``classifier.2``
fc7     ``classifier.5``             ``classifier.5``
======  ===========================  ================================

(the ReLUs are in-place; hooks pool or copy their output before the next module runs).
"""

from __future__ import annotations

import math
from typing import Any

#: DeepCluster's feature configuration: (maps, kernel, stride, padding) or "M" (3x3/2 max pool).
DEEPCLUSTER_CFG = ((96, 11, 4, 2), "M", (256, 5, 1, 2), "M", (384, 3, 1, 1), (384, 3, 1, 1),
                   (256, 3, 1, 1), "M")
#: Clusters of DeepCluster's released ImageNet model (its ``--nmb_cluster`` default, k = 10000).
DEEPCLUSTER_CLUSTERS = 10000

#: The fixed Sobel kernels of the front end (horizontal and vertical gradient).
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def deepcluster_alexnet(num_classes: int = DEEPCLUSTER_CLUSTERS) -> Any:
    """DeepCluster's AlexNet (Caron et al. 2018), as ``facebookresearch/deepcluster``
    ``models/alexnet.py`` builds it with ``sobel=True, bn=True``.

    Differences from torchvision's AlexNet: 96/256/384/384/256 maps, batch norm after every
    convolution instead of local response normalisation, no adaptive pooling (the input must be
    3 x 224 x 224), and a fixed front end ``sobel``: a 1x1 conv averaging RGB to grey
    (weights 1/3, bias 0) and a 3x3 conv with the two Sobel kernels (bias 0), both with
    ``requires_grad=False`` (they are part of the state_dict, as in DeepCluster's checkpoints;
    nnbrain's random initialisation leaves them unchanged). ``top_layer`` maps the 4096 fc7
    units to ``num_classes`` (10000 clusters for the released model, 1000 for the study's
    supervised variant).

    State-dict keys match DeepCluster's checkpoints once the ``features.module.`` prefix of its
    ``DataParallel`` wrapper is replaced by ``features.`` (``torch.save(model.state_dict())``
    after that renaming gives a file nnbrain loads).

    Parameters: 99,242,480 trainable + 24 fixed (Sobel) for 10000 clusters, 62,369,480 + 24 for
    1000 classes; ``tests/models/test_zoo_studies.py`` has the per-layer formula.
    """
    import torch
    from torch import nn

    class DeepClusterAlexNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            channels = 2  # the two Sobel gradients
            for item in DEEPCLUSTER_CFG:
                if item == "M":
                    layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
                else:
                    maps, kernel, stride, pad = item
                    layers += [nn.Conv2d(channels, maps, kernel, stride=stride, padding=pad),
                               nn.BatchNorm2d(maps), nn.ReLU(inplace=True)]
                    channels = maps
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True))
            self.top_layer = nn.Linear(4096, num_classes)
            self.init_weights()
            grayscale = nn.Conv2d(3, 1, kernel_size=1)
            sobel_filter = nn.Conv2d(1, 2, kernel_size=3, padding=1)
            self.sobel = nn.Sequential(grayscale, sobel_filter)
            self.reset_sobel()
            for param in self.sobel.parameters():
                param.requires_grad = False

        def reset_sobel(self) -> None:
            """Set the fixed front end: RGB average, then the two Sobel kernels."""
            grayscale, sobel_filter = self.sobel
            with torch.no_grad():
                grayscale.weight.fill_(1.0 / 3.0)
                grayscale.bias.zero_()
                sobel_filter.weight.copy_(torch.tensor((SOBEL_X, SOBEL_Y)).unsqueeze(1))
                sobel_filter.bias.zero_()

        def init_weights(self) -> None:
            """DeepCluster's initialisation (``_initialize_weights``); the Sobel front end is
            not touched. Used by :func:`nnbrain.models.loading.init_random`."""
            with torch.no_grad():
                for module in (*self.features, *self.classifier, self.top_layer):
                    if isinstance(module, nn.Conv2d):
                        n = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                        module.weight.normal_(0, math.sqrt(2.0 / n))
                        module.bias.zero_()
                    elif isinstance(module, nn.BatchNorm2d):
                        module.reset_running_stats()
                        module.weight.fill_(1)
                        module.bias.zero_()
                    elif isinstance(module, nn.Linear):
                        module.weight.normal_(0, 0.01)
                        module.bias.zero_()

        def forward(self, x: Any) -> Any:
            x = self.features(self.sobel(x))
            return self.top_layer(self.classifier(x.flatten(1)))

    return DeepClusterAlexNet()
