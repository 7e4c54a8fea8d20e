"""Datasets in torchvision's on-disk layout under a data root: MNIST, Fashion-MNIST (IDX
files, read by torchvision) and CIFAR-10 (pickled batches, read here), and their download."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lrgym.data.arrays import ArrayDataset

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"


def data_folder(name: str, root: Path) -> Path:
    """Where ``name``'s files lie under ``root``."""
    sub = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": _CIFAR_FOLDER}
    return root / sub[name]


def searched(name: str, roots: list[Path]) -> list[Path]:
    """The folders searched for ``name`` under ``roots``."""
    return [data_folder(name, r) for r in roots]


def has_files(name: str, root: Path) -> bool:
    """Whether every file of ``name`` is under ``root``."""
    folder = data_folder(name, root)
    files = (*_CIFAR_TRAIN, _CIFAR_TEST) if name == "cifar10" else _MNIST_FILES
    return all((folder / f).is_file() for f in files)


def download(name: str, root: Path) -> None:
    """Download ``name`` into ``root`` with torchvision (which verifies checksums)."""
    import torchvision

    root.mkdir(parents=True, exist_ok=True)
    classes: dict[str, Callable[..., object]] = {
        "mnist": torchvision.datasets.MNIST,
        "fashion_mnist": torchvision.datasets.FashionMNIST,
        "cifar10": torchvision.datasets.CIFAR10,
    }
    classes[name](str(root), train=True, download=True)
    classes[name](str(root), train=False, download=True)


_MNIST_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}


def load_mnist_like(name: str, root: str) -> ArrayDataset:
    """MNIST or Fashion-MNIST from ``root`` (IDX files), images ``(N, 1, 28, 28)`` ``uint8``."""
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


def load_cifar10(root: Path) -> ArrayDataset:
    """CIFAR-10 from ``root``, images ``(N, 3, 32, 32)`` ``uint8``."""
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
