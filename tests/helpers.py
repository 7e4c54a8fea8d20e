"""Plain helpers and constants the test modules share (fixtures live in tests/conftest.py).

Import them as ``from helpers import ...`` (pytest puts tests/ on ``sys.path``).
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import lrgym
from lrgym.tasks.family import Task
from lrgym_agents.rundir import read_checkpoint

TOY = "StepSizeControl-Toy-v0"
"""The cheapest bandit env: an MLP on generated data."""
TOY_SHORT = {"steps": [20, 30]}
"""Toy episodes of a few hundredths of a second."""
DYNAMIC_TOY = "StepSizeControl-Dynamic-Toy-v0"
"""The per-step twin of :data:`TOY`."""
DYNAMIC_SHORT = {"steps": [20, 30], "control_interval": 5}
"""Short per-step Toy episodes of a few actions."""


CHEAP_ENVS = ("Toy", "Digits")
"""Env ids with these names train in a fraction of a second (no image data to read)."""


def slow_unless_cheap(env_ids: list[str]) -> list[Any]:
    """``env_ids`` as parameters, those of the image datasets marked ``slow`` (the fast tier
    runs a parametrised test on the cheap envs only)."""
    return [
        pytest.param(e, marks=() if any(c in e for c in CHEAP_ENVS) else pytest.mark.slow)
        for e in env_ids
    ]


def data_kwargs(env_id: str, fake_root: Path, mnist_root: Path) -> dict[str, Any]:
    """Where a registered id finds its data in the tests, and a data subset that fits the small
    fake files: MNIST from ``mnist_root``, Fashion-MNIST and CIFAR-10 from the fake files,
    half or more of the small embedded datasets, 5-10% of the others."""
    dataset = {**lrgym.ENV_KWARGS, **lrgym.DYNAMIC_ENV_KWARGS}[env_id]["dataset"]
    kwargs: dict[str, Any] = {"subset_fraction": [0.05, 0.1]}
    if dataset == "mnist":
        kwargs["data_root"] = str(mnist_root)
    elif dataset in ("fashion_mnist", "cifar10"):
        kwargs["data_root"] = str(fake_root)
    else:
        kwargs["subset_fraction"] = [0.5, 1.0]
    return kwargs


def toy_task(**changes: object) -> Task:
    """A small Toy MLP task of 30 plain SGD steps, with ``changes``."""
    base: dict[str, Any] = dict(
        dataset="toy",
        architecture="mlp",
        widths=(16,),
        subset_fraction=1.0,
        steps=30,
        batch_size=32,
        eta0=0.05,
        optimizer="sgd",
        momentum=0.0,
        seed=3,
    )
    base.update(changes)
    return Task(**base)


def log_of(out: Path) -> list[dict[str, Any]]:
    """The rows of a training run directory's ``log.jsonl``."""
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): magic, dims (big-endian int32), raw uint8 bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
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
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
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


def kill_after_lines(command: list[str], log: Path, lines: int) -> None:
    """Start ``command`` and SIGKILL it once ``log`` has ``lines`` lines (a crash mid-run)."""
    kill_when(command, lambda: log.exists() and log.read_text().count("\n") >= lines)


def kill_after_checkpoint(command: list[str], checkpoint: Path) -> None:
    """Start ``command`` and SIGKILL it once ``checkpoint`` holds finished episodes. A log line
    comes before its checkpoint, so waiting for the run's last line races the run's end; the
    first saved episodes leave the rest of the run to be killed in."""
    # checkpoints are written atomically: whole or absent
    kill_when(command, lambda: checkpoint.exists() and read_checkpoint(checkpoint)["episodes"] > 0)


def kill_when(command: list[str], ready: Callable[[], bool]) -> None:
    """Start ``command`` and SIGKILL it as soon as ``ready()`` (a crash mid-run)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            break
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def load_study(name: str) -> ModuleType:
    """The script ``studies/<name>.py`` as a module (the studies are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "studies" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
