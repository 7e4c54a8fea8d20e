"""Models outside lrgym's task family, as a user would write them (for the scripts here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    """conv(16)-[BN]-ReLU-pool, a residual block conv(16)-[BN]-ReLU, pool, conv(32)-[BN]-ReLU,
    global pool, linear: for 28x28 inputs."""

    def __init__(self, batchnorm: bool) -> None:
        super().__init__()

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batchnorm else nn.Identity()

        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), norm(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), norm(16), nn.ReLU())
        self.up = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), norm(32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(self.stem(x), 2)
        h = F.max_pool2d(h + self.block(h), 2)
        return self.head(self.up(h).mean(dim=(2, 3)))
