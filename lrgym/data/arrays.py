"""How a dataset is held in memory: tensors, images kept ``uint8`` and normalised batch by
batch, token sequences kept as ``int64`` ids."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A classification or next-token dataset held in memory as tensors.

    The tensors are shared by every caller in the process (datasets are loaded once): treat
    them as read-only.

    Attributes:
        name: one of :data:`lrgym.data.DATASETS`.
        train_x: training inputs, shape ``(N, *input_shape)``: ``uint8`` for images (raw pixel
            values), ``float32``, or ``int64`` token ids in ``[0, num_classes)`` when
            ``tokens`` is true (shape ``(N, T)``).
        train_y: training labels, shape ``(N,)``, ``int64`` in ``[0, num_classes)``; for token
            data the next token at every position, shape ``(N, T)``.
        test_x: test inputs, like ``train_x``.
        test_y: test labels, like ``train_y``.
        offset: per-channel offset, shape ``(C,)`` (``C = input_shape[0]``), ``float32``.
        scale: per-channel scale, shape ``(C,)``, ``float32``. A normalised input is
            ``(x - offset) * scale`` channel by channel. Unused for token data (offset 0 and
            scale 1, shape ``(1,)``).
        num_classes: number of classes; for token data the vocabulary size ``V``.
        tokens: the inputs are token ids (for an embedding), never normalised.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    offset: torch.Tensor
    scale: torch.Tensor
    num_classes: int
    tokens: bool = False

    @classmethod
    def from_numpy(
        cls,
        name: str,
        arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        *,
        offset: Sequence[float],
        scale: Sequence[float],
        num_classes: int,
        tokens: bool = False,
    ) -> ArrayDataset:
        """The dataset of NumPy ``arrays`` (train_x, train_y, test_x, test_y; shared, not
        copied) with per-channel ``offset`` and ``scale`` (stored as ``float32``)."""
        train_x, train_y, test_x, test_y = (torch.from_numpy(a) for a in arrays)
        return cls(
            name=name,
            train_x=train_x,
            train_y=train_y,
            test_x=test_x,
            test_y=test_y,
            offset=torch.tensor(offset, dtype=torch.float32),
            scale=torch.tensor(scale, dtype=torch.float32),
            num_classes=num_classes,
            tokens=tokens,
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train_x.shape[1:])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Turn raw inputs ``(B, *input_shape)`` into normalised ``float32`` inputs; token
        inputs come back unchanged as ``int64`` ids."""
        if self.tokens:
            return x.to(torch.int64)
        view = (1, -1) + (1,) * (x.dim() - 2)
        return (x.to(torch.float32) - self.offset.view(view)) * self.scale.view(view)


def arrays_sha256(arrays: tuple[np.ndarray, ...], dtypes: tuple[str, ...]) -> str:
    """SHA-256 of ``arrays``' C-order bytes, each cast to its entry of ``dtypes`` (e.g. ``"<f4"``,
    little-endian, so the digest is the same on every machine), concatenated in order."""
    digest = hashlib.sha256()
    for array, dtype in zip(arrays, dtypes, strict=True):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()
