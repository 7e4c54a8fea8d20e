"""MNIST-1D (Greydanus, 2020): ten 1-D digit templates turned into noisy 40-sample signals,
generated offline from the ``mnist1d`` package's templates (never downloaded).

``mnist1d.data.make_dataset(get_dataset_args())`` with the package's default arguments (seed
42) gives 4000 training and 1000 test signals of 40 samples in 10 classes. They are stored as
``float32`` ``(N, 1, 40)`` (one channel, so a 1-D convnet takes ``(C, L)``) with ``int64``
labels. The generation uses floating-point maths (interpolation, Gaussian filtering), so its
result is checked against :data:`MNIST1D_SHA256` with the version pinned by the ``mnist1d``
extra (:data:`MNIST1D_VERSION`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import random
from typing import Any

import numpy as np

from lrgym.data.arrays import ArrayDataset, arrays_sha256
from lrgym.errors import DatasetCorruptError, MissingPackageError

MNIST1D_VERSION = "0.0.2.post1"
"""The ``mnist1d`` release the ``mnist1d`` extra pins and :data:`MNIST1D_SHA256` was made with."""

MNIST1D_SHA256 = "b09ad3e22c854bc5a1948b85c373aab653ceb38c9170f5ed05b7d054e4160db9"
"""SHA-256 of the generated arrays' bytes: train_x, train_y, test_x, test_y in that order,
``train_x``/``test_x`` little-endian ``float32`` ``(N, 1, 40)``, labels little-endian ``int64``."""


def _generate() -> dict[str, Any]:
    """``make_dataset`` with the default arguments; the global NumPy and ``random`` states it
    reseeds are restored afterwards, so the caller's random streams are left untouched."""
    try:
        data = importlib.import_module("mnist1d.data")
    except ImportError:
        raise MissingPackageError("mnist1d", "mnist1d", "the mnist1d dataset") from None
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        return dict(data.make_dataset(data.get_dataset_args()))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


@functools.cache
def load_mnist1d() -> ArrayDataset:
    """MNIST-1D: ``(4000, 1, 40)`` training and ``(1000, 1, 40)`` test signals, ``float32``,
    10 classes; offset and scale standardise the training set.

    Raises:
        MissingPackageError: ``mnist1d`` is not installed (``pip install 'lrgym[mnist1d]'``).
        DatasetCorruptError: the generated arrays differ from the pinned ones (another
            ``mnist1d`` version, or NumPy/SciPy computing differently).
    """
    raw = _generate()
    train_x = np.asarray(raw["x"], dtype=np.float32)[:, None]
    test_x = np.asarray(raw["x_test"], dtype=np.float32)[:, None]
    train_y = np.asarray(raw["y"], dtype=np.int64)
    test_y = np.asarray(raw["y_test"], dtype=np.int64)
    found = arrays_sha256((train_x, train_y, test_x, test_y), ("<f4", "<i8", "<f4", "<i8"))
    if found != MNIST1D_SHA256:
        try:
            installed = importlib.metadata.version("mnist1d")
        except importlib.metadata.PackageNotFoundError:
            installed = "unknown"
        if installed == MNIST1D_VERSION:
            fix = "NumPy or SciPy computes differently here; please report it with their versions"
        else:
            fix = f"pip install 'lrgym[mnist1d]' (mnist1d=={MNIST1D_VERSION})"
        raise DatasetCorruptError(
            f"the generated mnist1d arrays have SHA-256 {found}, not the pinned {MNIST1D_SHA256}: "
            f"mnist1d {installed} is installed, lrgym pins {MNIST1D_VERSION} (NumPy "
            f"{np.__version__}). Fix: {fix}."
        )
    pixels = train_x.astype(np.float64)
    return ArrayDataset.from_numpy(
        "mnist1d",
        (train_x, train_y, test_x, test_y),
        offset=[pixels.mean()],
        scale=[1.0 / pixels.std()],
        num_classes=10,
    )
