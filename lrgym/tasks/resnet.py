"""The ``resnet`` family: small residual CNNs with a choice of normalisation.

A net has ``stages`` stages of ``blocks`` basic blocks each (two 3x3 convs, each followed by
the normalisation, a ReLU after the first and after the sum with the shortcut). Stage ``s``
has ``width * 2**s`` channels; every stage after the first starts with a stride-2 block whose
shortcut is a 1x1 stride-2 conv with its normalisation (the identity elsewhere). A 3x3 stem
conv with its normalisation and ReLU comes first; global average pooling and a
linear layer to the classes come last. The stem has stride 2 on inputs of side >= 24 (MNIST,
CIFAR-10: the blocks then run at half resolution, a quarter of the cost) and stride 1 on
smaller ones.

Normalisation (``norm``):

* ``"batch"``: ``nn.BatchNorm2d`` (train mode while training: batch statistics, so each
  example's output depends on the whole batch; running statistics at evaluation);
* ``"group"``: ``nn.GroupNorm`` with ``gcd(channels, 8)`` groups (no dependence between
  examples);
* ``"none"``: no normalisation; the convs then carry a bias.

Convs followed by a normalisation have no bias (the normalisation's shift takes its place).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lrgym.errors import InvalidConfigError, choice_error

NORMS = ("batch", "group", "none")
"""Choices of the ``resnet`` family's ``norm``."""
STRIDED_STEM_SIDE = 24
"""Inputs whose sides are at least this start with a stride-2 stem."""


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalisation ``norm`` over ``channels`` channels (``nn.Identity`` for ``"none"``)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    if norm == "none":
        return nn.Identity()
    raise choice_error("norm", norm, NORMS)


def _conv(inputs: int, outputs: int, kernel: int, stride: int, norm: str) -> nn.Conv2d:
    return nn.Conv2d(
        inputs, outputs, kernel, stride=stride, padding=kernel // 2, bias=norm == "none"
    )


class BasicBlock(nn.Module):
    """conv3x3-norm-ReLU-conv3x3-norm, plus the shortcut, then ReLU."""

    def __init__(self, inputs: int, outputs: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = _conv(inputs, outputs, 3, stride, norm)
        self.norm1 = norm_layer(norm, outputs)
        self.conv2 = _conv(outputs, outputs, 3, 1, norm)
        self.norm2 = norm_layer(norm, outputs)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                _conv(inputs, outputs, 1, stride, norm), norm_layer(norm, outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet(
    shape: tuple[int, ...], widths: Sequence[int], classes: int, norm: str = "batch"
) -> nn.Sequential:
    """A residual CNN on ``shape`` ``(C, H, W)``; ``widths`` is ``(stages, blocks, width)``."""
    stages, blocks, width = (int(w) for w in widths)
    if min(stages, blocks, width) < 1:
        raise InvalidConfigError(f"resnet widths={list(widths)!r} must be positive integers")
    side = min(shape[1], shape[2])
    stem = 2 if side >= STRIDED_STEM_SIDE else 1
    if -(-side // stem) < 2 ** (stages - 1):
        raise InvalidConfigError(f"input {shape} is too small for {stages} resnet stages")
    layers: list[nn.Module] = [_conv(shape[0], width, 3, stem, norm), norm_layer(norm, width)]
    layers.append(nn.ReLU())
    channels = width
    for stage in range(stages):
        outputs = width * 2**stage
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(channels, outputs, stride, norm))
            channels = outputs
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)
