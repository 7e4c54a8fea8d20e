"""Shared fixtures: small fake datasets in torchvision's real on-disk layout; killing a run
mid-way."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The real MNIST files CI provides beside the checkout (read-only)."""


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): magic, dims (big-endian int32), raw bytes."""
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + dims + array.tobytes())


def write_fake_mnist(
    root: Path, folder: str = "MNIST", n_train: int = 600, n_test: int = 200
) -> Path:
    """Random 28x28 images whose label is readable from the image (so nets can learn)."""
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 6, 4:24] = 255
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def write_fake_cifar10(root: Path, per_batch: int = 100) -> Path:
    """Pickled batches in ``cifar-10-batches-py`` with CIFAR-10's keys and shapes."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = rng.integers(0, 10, size=per_batch)
        data = rng.integers(0, 80, size=(per_batch, 3, 32, 32)).astype(np.uint8)
        for i, label in enumerate(labels):
            data[i, label % 3, 3 * label : 3 * label + 4, :] = 255
        entry = {
            "data": data.reshape(per_batch, -1),
            "labels": labels.tolist(),
            "batch_label": name,
        }
        with (folder / name).open("wb") as fh:
            pickle.dump(entry, fh)
    with (folder / "batches.meta").open("wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return root


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


def kill_after_lines(command: list[str], log: Path, lines: int) -> None:
    """Start ``command`` and SIGKILL it once ``log`` has ``lines`` lines (a crash mid-run)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.read_text().count("\n") >= lines:
            break
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
