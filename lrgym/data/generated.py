"""Datasets that need no files: scikit-learn's bundled digits and a synthetic toy problem,
built the same way on every machine."""

from __future__ import annotations

import functools

import numpy as np
import torch

from lrgym.data.arrays import ArrayDataset


@functools.cache
def load_digits() -> ArrayDataset:
    """scikit-learn's 8x8 digits, ``(1797, 1, 8, 8)`` ``uint8`` in 0..16, with a fixed shuffled
    split of 360 test examples."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(labels))  # fixed split, same everywhere
    n_test = 360
    train, test = order[n_test:], order[:n_test]
    train_images = images[train].astype(np.float64)
    return ArrayDataset.from_numpy(
        "digits",
        (images[train], labels[train], images[test], labels[test]),
        offset=[train_images.mean()],
        scale=[1.0 / train_images.std()],
        num_classes=10,
    )


@functools.cache
def load_toy() -> ArrayDataset:
    """A fixed 4-class mixture of Gaussians in 16 dimensions (512 train, 256 test examples)."""
    rng = np.random.default_rng(12345)
    dim, classes = 16, 4
    means = rng.normal(0.0, 1.0, size=(classes, dim))

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, classes, size=n)
        x = means[y] + rng.normal(0.0, 1.0, size=(n, dim))
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    train_x, train_y = draw(512)
    test_x, test_y = draw(256)
    return ArrayDataset(
        name="toy",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        offset=torch.zeros(dim),
        scale=torch.ones(dim),
        num_classes=classes,
    )
