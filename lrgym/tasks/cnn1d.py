"""The ``cnn1d`` family: 1-D convnets for signals ``(C, L)``.

Three ``Conv1d`` layers (kernel 5, stride 2, padding 2, filters ``widths``), each followed by
a ReLU, halve the length three times; a linear layer maps the flattened result to the classes
(the shape of Greydanus's MNIST-1D convnet baseline, with sampled filter counts).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lrgym.errors import InvalidConfigError


def cnn1d(shape: tuple[int, ...], widths: Sequence[int], classes: int) -> nn.Sequential:
    """The 1-D convnet on ``shape`` ``(C, L)`` with filters ``widths`` ``(c1, c2, c3)``."""
    channels, length = shape
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv1d(channels, int(width), 5, stride=2, padding=2), nn.ReLU()]
        channels, length = int(width), (length - 1) // 2 + 1
    if length < 1:
        raise InvalidConfigError(f"signal length {shape[1]} is too short for cnn1d")
    layers += [nn.Flatten(), nn.Linear(channels * length, classes)]
    return nn.Sequential(*layers)
