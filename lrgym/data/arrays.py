"""How a dataset is held in memory: tensors, images kept ``uint8`` and normalised batch by
batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A classification dataset held in memory as tensors.

    The tensors are shared by every caller in the process (datasets are loaded once): treat
    them as read-only.

    Attributes:
        name: one of :data:`lrgym.data.DATASETS`.
        train_x: training inputs, shape ``(N, *input_shape)``, ``uint8`` for images (raw pixel
            values) or ``float32``.
        train_y: training labels, shape ``(N,)``, ``int64`` in ``[0, num_classes)``.
        test_x: test inputs, like ``train_x``.
        test_y: test labels, like ``train_y``.
        offset: per-channel offset, shape ``(C,)`` (``C = input_shape[0]``), ``float32``.
        scale: per-channel scale, shape ``(C,)``, ``float32``. A normalised input is
            ``(x - offset) * scale`` channel by channel.
        num_classes: number of classes.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    offset: torch.Tensor
    scale: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train_x.shape[1:])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Turn raw inputs ``(B, *input_shape)`` into normalised ``float32`` inputs."""
        view = (1, -1) + (1,) * (x.dim() - 2)
        return (x.to(torch.float32) - self.offset.view(view)) * self.scale.view(view)
