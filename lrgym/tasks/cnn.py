"""The paper's convolutional families: the sampled ``cnn`` (and the fixed ``lenet``) and
``cifar-quick``, built from their filter counts.

A conv whose kernel covers its whole input (the last two layers of these nets) is a
:class:`WholeInputConv2d`: the same function and parameters as ``nn.Conv2d``, computed as a
matrix product, which is several times faster than a convolution routine on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lrgym.errors import InvalidConfigError


class WholeInputConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` whose kernel covers its whole input (no padding), so that its output
    is ``1x1``: computed as ``F.linear`` of the flattened input and weight, the same function
    with the same parameters. Inputs of another size go through the convolution."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not covers_whole_input(self, input):
            return super().forward(input)
        out = F.linear(*flatten_alike(input, self.weight), self.bias)
        return out.view(*out.shape, 1, 1)


def covers_whole_input(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv`` applied to ``x`` ``(B, C, H, W)`` is a matrix product: its kernel is
    the input's ``H x W``, without padding, dilation or groups."""
    return (
        tuple(x.shape[2:]) == tuple(conv.kernel_size)
        and conv.groups == 1
        and tuple(conv.dilation) == (1, 1)
        and conv.padding in ((0, 0), "valid")
    )


def flatten_alike(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(B, C, H, W)`` and ``weight`` ``(O, C, H, W)`` flattened to ``(B, CHW)`` and
    ``(O, CHW)`` with their entries in the same order: views, without a copy, when both are
    channels-last (order ``h, w, c``) or both contiguous (order ``c, h, w``)."""
    channels_last = torch.channels_last
    if (
        x.is_contiguous(memory_format=channels_last)
        and weight.is_contiguous(memory_format=channels_last)
        and not (x.is_contiguous() and weight.is_contiguous())
    ):
        return x.permute(0, 2, 3, 1).flatten(1), weight.permute(0, 2, 3, 1).flatten(1)
    return x.flatten(1), weight.flatten(1)


def paper_cnn(shape: tuple[int, ...], widths: Sequence[int], classes: int) -> nn.Sequential:
    """conv-pool-conv-pool-conv-relu-conv on ``shape`` ``(C, H, W)`` with filters ``widths``
    ``(c1, c2, c3)``: 5x5 kernels for sides >= 20, else 3x3 with padding 1."""
    channels, side = shape[0], shape[1]
    kernel, pad = (5, 0) if side >= 20 else (3, 1)
    after = ((side - kernel + 2 * pad + 1) // 2 - kernel + 2 * pad + 1) // 2
    if after < 1:
        raise InvalidConfigError(f"input side {side} is too small for the cnn family")
    c1, c2, c3 = widths
    return nn.Sequential(
        nn.Conv2d(channels, c1, kernel, padding=pad),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, kernel, padding=pad),
        nn.MaxPool2d(2),
        WholeInputConv2d(c2, c3, after),
        nn.ReLU(),
        WholeInputConv2d(c3, classes, 1),
        nn.Flatten(),
    )


def cifar_quick(shape: tuple[int, ...], widths: Sequence[int], classes: int) -> nn.Sequential:
    """The CIFAR-10 "quick" net on ``shape`` ``(C, H, W)`` with filters ``(c1, c2, c3, c4)``."""
    c1, c2, c3, c4 = widths
    side = shape[1] // 8
    if side < 1:
        raise InvalidConfigError(f"input side {shape[1]} is too small for cifar-quick")
    return nn.Sequential(
        nn.Conv2d(shape[0], c1, 5, padding=2),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 5, padding=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(c2, c3, 5, padding=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        WholeInputConv2d(c3, c4, side),
        nn.ReLU(),
        WholeInputConv2d(c4, classes, 1),
        nn.Flatten(),
    )
