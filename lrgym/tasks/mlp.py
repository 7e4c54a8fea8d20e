"""Fully connected ReLU networks: the ``mlp`` family, for architecture transfer and the only
choice for non-image data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn


def mlp(shape: tuple[int, ...], widths: Sequence[int], classes: int) -> nn.Sequential:
    """Flatten, then one ReLU layer per entry of ``widths``, then a linear layer to the classes."""
    layers: list[nn.Module] = [nn.Flatten()]
    previous = int(np.prod(shape))
    for width in widths:
        layers += [nn.Linear(previous, width), nn.ReLU()]
        previous = width
    layers.append(nn.Linear(previous, classes))
    return nn.Sequential(*layers)
