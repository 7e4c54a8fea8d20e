"""Shared fixtures: small fake datasets in torchvision's real on-disk layout, no user data
directories. Plain helpers and constants are in tests/helpers.py.

Every test process (and every pytest-xdist worker) runs with ONE torch thread, as lrgym's
worker pools do, and the subprocesses tests start inherit ``OMP_NUM_THREADS=1``: float sums
(matrix products, the features' reductions) split differently across threads, so a test that
compares this process's results with a pool's (``evaluate_controller``, ``lrgym.train`` in a
worker) holds only if both use the same number of threads.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported; subprocesses inherit it

from pathlib import Path

import pytest
import torch
from helpers import write_fake_cifar10, write_fake_mnist

torch.set_num_threads(1)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The real MNIST files CI provides beside the checkout (read-only)."""


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with fake MNIST, Fashion-MNIST and CIFAR-10 files."""
    root = tmp_path_factory.mktemp("data")
    write_fake_mnist(root, "MNIST")
    write_fake_mnist(root, "FashionMNIST")
    write_fake_cifar10(root)
    return root


@pytest.fixture(scope="session")
def mnist_root(fake_root: Path) -> Path:
    """The real MNIST files when they are beside the checkout (CI), else the fake ones."""
    if (REAL_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return REAL_DATA
    return fake_root


@pytest.fixture(autouse=True)
def _no_user_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read or write the user's real data directories."""
    monkeypatch.delenv("LRGYM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    os.environ.pop("LRGYM_DATA_DIR", None)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """A test that changed the torch thread count does not leak it into the next test."""
    torch.set_num_threads(1)
