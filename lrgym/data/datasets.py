"""Datasets: where they live on disk, how they are loaded, and how they are kept in memory.

Image datasets use torchvision's on-disk layout under a *data root*:

========================  ================================================================
dataset                   files under the root
========================  ================================================================
``"mnist"``               ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
``"fashion_mnist"``       ``FashionMNIST/raw/`` (same four file names)
``"cifar10"``             ``cifar-10-batches-py/{data_batch_1..5,test_batch}``
``"digits"``              none: scikit-learn's bundled 8x8 handwritten digits
``"toy"``                 none: a fixed synthetic 16-D, 4-class problem generated in memory
========================  ================================================================

The root is searched in this order: an explicit ``data_root`` argument, the ``LRGYM_DATA_DIR``
environment variable, then the per-user cache ``$XDG_CACHE_HOME/lrgym`` (``~/.cache/lrgym``).
Missing files are downloaded (by torchvision, which verifies checksums) into the first of those
roots only when ``download=True``, on first use, never at import. Without network access the
loader raises :class:`~lrgym.errors.DatasetNotFoundError` naming every path it searched.

Each dataset is loaded once per process and kept compact: images stay ``uint8`` and are
normalised batch by batch (:meth:`ArrayDataset.normalise`).
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lrgym.errors import DatasetCorruptError, DatasetNotFoundError, choice_error

DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits", "toy")
"""Names accepted by :func:`load_dataset`."""

DATA_DIR_ENV = "LRGYM_DATA_DIR"

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A classification dataset held in memory as tensors.

    The tensors are shared by every caller in the process (datasets are loaded once): treat
    them as read-only.

    Attributes:
        name: one of :data:`DATASETS`.
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


def candidate_roots(data_root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The data roots searched, in order: ``data_root``, ``$LRGYM_DATA_DIR``, the user cache."""
    roots: list[Path] = []
    if data_root is not None:
        roots.append(Path(data_root).expanduser().resolve())
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        roots.append(Path(env).expanduser().resolve())
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    roots.append(Path(cache).expanduser().resolve() / "lrgym")
    return list(dict.fromkeys(roots))


def load_dataset(
    name: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ArrayDataset:
    """Load a dataset once per process.

    Args:
        name: one of :data:`DATASETS`.
        data_root: a folder holding the files in torchvision's layout; searched first.
        download: allow downloading missing files into the first candidate root.

    Raises:
        InvalidConfigError: ``name`` is not a known dataset.
        DatasetNotFoundError: the files are in no candidate root and could not be downloaded.
        DatasetCorruptError: the files are there but cannot be read.
    """
    if name not in DATASETS:
        raise choice_error("dataset", name, DATASETS)
    if name == "digits":
        return _load_digits()
    if name == "toy":
        return _load_toy()
    roots = candidate_roots(data_root)
    for root in roots:
        if _has_files(name, root):
            return _load_from_root(name, str(root))
    if not download:
        raise DatasetNotFoundError(name, _searched(name, roots), "Downloading is off.")
    try:
        _download(name, roots[0])
    except Exception as exc:  # torchvision raises URLError, RuntimeError or OSError offline
        raise DatasetNotFoundError(
            name, _searched(name, roots), f"Download into {roots[0]} failed: {exc}"
        ) from exc
    if not _has_files(name, roots[0]):  # pragma: no cover - torchvision verified the files
        raise DatasetNotFoundError(name, _searched(name, roots), "Download left no files.")
    return _load_from_root(name, str(roots[0]))


def _folder(name: str, root: Path) -> Path:
    sub = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": _CIFAR_FOLDER}
    return root / sub[name]


def _searched(name: str, roots: list[Path]) -> list[Path]:
    return [_folder(name, r) for r in roots]


def _has_files(name: str, root: Path) -> bool:
    folder = _folder(name, root)
    files = (*_CIFAR_TRAIN, _CIFAR_TEST) if name == "cifar10" else _MNIST_FILES
    return all((folder / f).is_file() for f in files)


def _download(name: str, root: Path) -> None:
    import torchvision

    root.mkdir(parents=True, exist_ok=True)
    classes: dict[str, Callable[..., object]] = {
        "mnist": torchvision.datasets.MNIST,
        "fashion_mnist": torchvision.datasets.FashionMNIST,
        "cifar10": torchvision.datasets.CIFAR10,
    }
    classes[name](str(root), train=True, download=True)
    classes[name](str(root), train=False, download=True)


@functools.cache
def _load_from_root(name: str, root: str) -> ArrayDataset:
    try:
        if name == "cifar10":
            return _load_cifar10(Path(root))
        return _load_mnist_like(name, root)
    except (ValueError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError) as exc:
        raise DatasetCorruptError(
            f"{name} files under {_folder(name, Path(root))} cannot be read ({exc}). "
            "Fix: delete them and download again, or point data_root at an intact copy."
        ) from exc


_MNIST_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}


def _load_mnist_like(name: str, root: str) -> ArrayDataset:
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    train = cls(root, train=True, download=False)
    test = cls(root, train=False, download=False)
    mean, std = _MNIST_STATS[name]
    return ArrayDataset(
        name=name,
        train_x=train.data.unsqueeze(1).contiguous(),
        train_y=train.targets.to(torch.int64),
        test_x=test.data.unsqueeze(1).contiguous(),
        test_y=test.targets.to(torch.int64),
        offset=torch.tensor([mean * 255.0]),
        scale=torch.tensor([1.0 / (std * 255.0)]),
        num_classes=10,
    )


_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one pickled CIFAR-10 batch: ``uint8`` images ``(n, 3, 32, 32)`` and labels ``(n,)``."""
    with path.open("rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def _load_cifar10(root: Path) -> ArrayDataset:
    folder = root / _CIFAR_FOLDER
    parts = [_read_cifar_batch(folder / f) for f in _CIFAR_TRAIN]
    test_x, test_y = _read_cifar_batch(folder / _CIFAR_TEST)
    return ArrayDataset(
        name="cifar10",
        train_x=torch.cat([p[0] for p in parts]),
        train_y=torch.cat([p[1] for p in parts]),
        test_x=test_x,
        test_y=test_y,
        offset=torch.tensor(_CIFAR_MEAN) * 255.0,
        scale=1.0 / (torch.tensor(_CIFAR_STD) * 255.0),
        num_classes=10,
    )


@functools.cache
def _load_digits() -> ArrayDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(labels))  # fixed split, same everywhere
    n_test = 360
    train, test = order[n_test:], order[:n_test]
    train_images = images[train].astype(np.float64)
    return ArrayDataset(
        name="digits",
        train_x=torch.from_numpy(images[train]),
        train_y=torch.from_numpy(labels[train]),
        test_x=torch.from_numpy(images[test]),
        test_y=torch.from_numpy(labels[test]),
        offset=torch.tensor([train_images.mean()], dtype=torch.float32),
        scale=torch.tensor([1.0 / train_images.std()], dtype=torch.float32),
        num_classes=10,
    )


@functools.cache
def _load_toy() -> ArrayDataset:
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
