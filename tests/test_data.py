"""Tests of lrgym.data.datasets: root resolution, loading, normalisation, errors and caching.

Every test uses its own tmp roots: ``_load_from_root`` is cached by (name, root string), so a
root shared between tests would hide what a test means to check.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import random
import subprocess
import sys
import sysconfig
import textwrap
from collections import Counter
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from helpers import write_fake_cifar10, write_fake_mnist, write_idx

import lrgym
from lrgym.data import datasets as data
from lrgym.data import generated, grammar
from lrgym.data import mnist1d as mnist1d_data
from lrgym.data.datasets import DATASETS, ArrayDataset, candidate_roots, load_dataset
from lrgym.errors import (
    DatasetCorruptError,
    DatasetNotFoundError,
    InvalidConfigError,
    LrgymError,
    MissingPackageError,
)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
IMAGE_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


# --------------------------------------------------------------------------------------------
# helpers


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX (uint8) file independently of torchvision."""
    raw = path.read_bytes()
    assert raw[:3] == bytes([0, 0, 0x08])
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int], **extra: object) -> None:
    """Pickle a batch in CIFAR-10's format: ``data`` is ``(n, 3072)`` uint8, R then G then B."""
    entry = {"data": images.reshape(len(images), -1), "labels": labels, **extra}
    with path.open("wb") as fh:
        pickle.dump(entry, fh)


def write_labelled_cifar(root: Path, per_batch: int = 4) -> Path:
    """Six zero batches; batch k (k = 0..5, test last) has labels all equal to k, and its
    first image has one pixel set: channel k % 3, row k + 1, column 2 * k + 3, value 100 + k."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(CIFAR_FILES):
        images = np.zeros((per_batch, 3, 32, 32), dtype=np.uint8)
        images[0, k % 3, k + 1, 2 * k + 3] = 100 + k
        write_cifar_batch(folder / name, images, [k] * per_batch)
    return root


def files_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


def forbid_download(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """Make any download attempt fail the test (and record it)."""
    calls: list[tuple[str, Path]] = []

    def fail(name: str, root: Path) -> None:
        calls.append((name, root))
        raise AssertionError(f"unexpected download of {name} into {root}")

    monkeypatch.setattr(data, "_download", fail)
    return calls


# --------------------------------------------------------------------------------------------
# 1. root resolution


def test_candidate_roots_order_and_resolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    monkeypatch.setenv("LRGYM_DATA_DIR", str(env))
    cache = Path(os.environ["XDG_CACHE_HOME"])
    assert candidate_roots(explicit) == [
        explicit.resolve(),
        env.resolve(),
        cache.resolve() / "lrgym",
    ]
    # Paths are resolved: a relative spelling of the same folder gives the same absolute path.
    monkeypatch.chdir(tmp_path)
    roots = candidate_roots("explicit/../explicit")
    assert roots[0] == explicit.resolve()
    assert all(r.is_absolute() for r in roots)


def test_candidate_roots_without_explicit_or_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert candidate_roots() == [(tmp_path / "cache").resolve() / "lrgym"]
    assert candidate_roots(None) == candidate_roots()
    monkeypatch.setenv("LRGYM_DATA_DIR", "")  # empty means unset
    assert candidate_roots() == [(tmp_path / "cache").resolve() / "lrgym"]


def test_candidate_roots_defaults_to_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert candidate_roots() == [(tmp_path / "home").resolve() / ".cache" / "lrgym"]
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty means unset, as for LRGYM_DATA_DIR
    assert candidate_roots() == [(tmp_path / "home").resolve() / ".cache" / "lrgym"]


def test_candidate_roots_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LRGYM_DATA_DIR", "~/envdata")
    roots = candidate_roots("~/mine")
    assert roots[:2] == [
        (tmp_path / "home" / "mine").resolve(),
        (tmp_path / "home" / "envdata").resolve(),
    ]


def test_candidate_roots_deduplicated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_root = (tmp_path / "cache" / "lrgym").resolve()
    monkeypatch.setenv("LRGYM_DATA_DIR", str(tmp_path / "cache" / "lrgym"))
    # explicit == env == cache, each spelled differently: one root remains.
    assert candidate_roots(tmp_path / "cache" / "x" / ".." / "lrgym") == [cache_root]
    monkeypatch.setenv("LRGYM_DATA_DIR", str(tmp_path / "env"))
    assert candidate_roots(tmp_path / "env") == [(tmp_path / "env").resolve(), cache_root]


def test_dataset_only_in_env_root_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_download(monkeypatch)
    env_root = write_fake_mnist(tmp_path / "env", n_train=37, n_test=11)
    monkeypatch.setenv("LRGYM_DATA_DIR", str(env_root))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ds = load_dataset("mnist", data_root=elsewhere, download=False)
    assert ds.train_x.shape == (37, 1, 28, 28)
    assert ds.test_x.shape == (11, 1, 28, 28)
    assert not any(elsewhere.iterdir())  # nothing written into the explicit root
    assert not (tmp_path / "cache").exists()  # nor into the cache


def test_dataset_only_in_cache_root_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    write_fake_cifar10(tmp_path / "cache" / "lrgym", per_batch=7)
    monkeypatch.setenv("LRGYM_DATA_DIR", str(tmp_path / "env"))  # set but empty
    ds = load_dataset("cifar10", data_root=tmp_path / "elsewhere", download=False)
    assert ds.train_x.shape == (35, 3, 32, 32)
    assert ds.test_x.shape == (7, 3, 32, 32)
    ds2 = load_dataset("cifar10", download=False)  # no explicit root at all
    assert ds2 is ds


def test_explicit_root_wins_then_env_then_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    explicit = write_fake_mnist(tmp_path / "explicit", n_train=21, n_test=5)
    env = write_fake_mnist(tmp_path / "env", n_train=22, n_test=5)
    write_fake_mnist(tmp_path / "cache" / "lrgym", n_train=23, n_test=5)
    monkeypatch.setenv("LRGYM_DATA_DIR", str(env))
    assert load_dataset("mnist", data_root=explicit, download=False).train_x.shape[0] == 21
    assert load_dataset("mnist", download=False).train_x.shape[0] == 22
    monkeypatch.delenv("LRGYM_DATA_DIR")
    assert load_dataset("mnist", download=False).train_x.shape[0] == 23


def test_incomplete_root_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A root that lacks one of the four files is passed over, not half-loaded."""
    forbid_download(monkeypatch)
    explicit = write_fake_mnist(tmp_path / "explicit", n_train=21, n_test=5)
    (explicit / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    env = write_fake_mnist(tmp_path / "env", n_train=22, n_test=5)
    monkeypatch.setenv("LRGYM_DATA_DIR", str(env))
    assert load_dataset("mnist", data_root=explicit, download=False).train_x.shape[0] == 22


# --------------------------------------------------------------------------------------------
# 2. loading the image datasets


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_load_mnist_like_matches_files(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    root = write_fake_mnist(tmp_path / "root", IMAGE_FOLDERS[name], n_train=50, n_test=20)
    before = files_under(root)
    ds = load_dataset(name, data_root=root, download=False)
    assert isinstance(ds, ArrayDataset)
    assert ds.name == name
    assert ds.num_classes == 10
    assert ds.input_shape == (1, 28, 28)
    raw = root / IMAGE_FOLDERS[name] / "raw"
    for split, x, y in (("train", ds.train_x, ds.train_y), ("t10k", ds.test_x, ds.test_y)):
        images = read_idx(raw / f"{split}-images-idx3-ubyte")
        labels = read_idx(raw / f"{split}-labels-idx1-ubyte")
        assert x.dtype == torch.uint8
        assert y.dtype == torch.int64
        assert tuple(x.shape) == (len(images), 1, 28, 28)
        assert tuple(y.shape) == (len(labels),)
        assert x.is_contiguous()
        np.testing.assert_array_equal(x[:, 0].numpy(), images)
        np.testing.assert_array_equal(y.numpy(), labels.astype(np.int64))
    assert len(set(ds.train_y.tolist())) > 1  # the fake labels are not all the same
    assert files_under(root) == before  # loading wrote nothing (no processed/ folder)


def test_mnist_pixel_orientation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pixel written at (row, col) of image i is read back at [i, 0, row, col]."""
    forbid_download(monkeypatch)
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train = np.zeros((3, 28, 28), dtype=np.uint8)
    train[1, 5, 20] = 200
    test = np.zeros((2, 28, 28), dtype=np.uint8)
    test[0, 27, 0] = 7
    write_idx(raw / "train-images-idx3-ubyte", train)
    write_idx(raw / "train-labels-idx1-ubyte", np.array([9, 0, 4], dtype=np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", test)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([3, 8], dtype=np.uint8))
    ds = load_dataset("mnist", data_root=tmp_path / "root", download=False)
    assert ds.train_y.tolist() == [9, 0, 4]
    assert ds.test_y.tolist() == [3, 8]
    assert ds.train_x[1, 0, 5, 20].item() == 200
    assert ds.train_x.sum().item() == 200
    assert ds.test_x[0, 0, 27, 0].item() == 7
    assert ds.test_x.sum().item() == 7


def test_fashion_mnist_is_separate_from_mnist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    root = write_fake_mnist(tmp_path / "root", "MNIST", n_train=30, n_test=10)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("fashion_mnist", data_root=root, download=False)
    write_fake_mnist(root, "FashionMNIST", n_train=31, n_test=10)
    fashion = load_dataset("fashion_mnist", data_root=root, download=False)
    mnist = load_dataset("mnist", data_root=root, download=False)
    assert fashion.train_x.shape[0] == 31
    assert mnist.train_x.shape[0] == 30
    assert fashion is not mnist


def test_load_cifar10_matches_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_download(monkeypatch)
    root = write_fake_cifar10(tmp_path / "root", per_batch=6)
    ds = load_dataset("cifar10", data_root=root, download=False)
    assert ds.name == "cifar10"
    assert ds.num_classes == 10
    assert ds.input_shape == (3, 32, 32)
    assert ds.train_x.dtype == ds.test_x.dtype == torch.uint8
    assert ds.train_y.dtype == ds.test_y.dtype == torch.int64
    assert tuple(ds.train_x.shape) == (30, 3, 32, 32)
    assert tuple(ds.test_x.shape) == (6, 3, 32, 32)
    folder = root / "cifar-10-batches-py"
    entries = []
    for name in CIFAR_FILES:
        with (folder / name).open("rb") as fh:
            entries.append(pickle.load(fh))
    want_train_x = np.concatenate([e["data"] for e in entries[:5]]).reshape(-1, 3, 32, 32)
    want_train_y = np.concatenate([e["labels"] for e in entries[:5]])
    np.testing.assert_array_equal(ds.train_x.numpy(), want_train_x)
    np.testing.assert_array_equal(ds.train_y.numpy(), want_train_y)
    np.testing.assert_array_equal(ds.test_x.numpy(), entries[5]["data"].reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(ds.test_y.numpy(), entries[5]["labels"])


def test_cifar10_pixel_layout_and_batch_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    root = write_labelled_cifar(tmp_path / "root", per_batch=4)
    ds = load_dataset("cifar10", data_root=root, download=False)
    # Batches are concatenated in order data_batch_1..5; test_batch is separate.
    assert ds.train_y.tolist() == [k for k in range(5) for _ in range(4)]
    assert ds.test_y.tolist() == [5] * 4
    for k in range(5):
        image = ds.train_x[4 * k]
        assert image[k % 3, k + 1, 2 * k + 3].item() == 100 + k
        assert image.sum().item() == 100 + k
    assert ds.test_x[0, 5 % 3, 6, 13].item() == 105
    assert ds.test_x.sum().item() == 105
    # The flat row is R plane, G plane, B plane, each row-major: check the raw index too.
    flat = np.zeros(3072, dtype=np.uint8)
    flat[2 * 1024 + 7 * 32 + 30] = 1  # blue, row 7, column 30
    assert torch.from_numpy(flat).view(3, 32, 32)[2, 7, 30] == 1  # sanity of the formula
    folder = tmp_path / "flat" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR_FILES:
        with (folder / name).open("wb") as fh:
            pickle.dump({"data": flat[None].copy(), "labels": [1]}, fh)
    flat_ds = load_dataset("cifar10", data_root=tmp_path / "flat", download=False)
    assert flat_ds.test_x[0, 2, 7, 30].item() == 1
    assert flat_ds.test_x.sum().item() == 1


def test_cifar10_label_count_mismatch_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    root = write_labelled_cifar(tmp_path / "root", per_batch=4)
    folder = root / "cifar-10-batches-py"
    write_cifar_batch(folder / "data_batch_2", np.zeros((4, 3, 32, 32), np.uint8), [1, 2, 3])
    with pytest.raises(DatasetCorruptError, match="4 images but 3 labels"):
        load_dataset("cifar10", data_root=root, download=False)


# --------------------------------------------------------------------------------------------
# 3. normalisation


@pytest.mark.parametrize(
    ("name", "mean", "std"), [("mnist", 0.1307, 0.3081), ("fashion_mnist", 0.2860, 0.3530)]
)
def test_normalise_mnist_like(
    name: str, mean: float, std: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    root = write_fake_mnist(tmp_path / "root", IMAGE_FOLDERS[name], n_train=10, n_test=4)
    ds = load_dataset(name, data_root=root, download=False)
    assert ds.offset.dtype == ds.scale.dtype == torch.float32
    assert tuple(ds.offset.shape) == tuple(ds.scale.shape) == (1,)
    x = torch.zeros((2, 1, 28, 28), dtype=torch.uint8)
    x[0, 0, 3, 4] = 255
    x[1, 0, 10, 10] = 128
    out = ds.normalise(x)
    assert out.dtype == torch.float32
    assert out.shape == x.shape
    assert out[0, 0, 3, 4].item() == pytest.approx((255 - mean * 255) / (std * 255), rel=1e-5)
    assert out[1, 0, 10, 10].item() == pytest.approx((128 - mean * 255) / (std * 255), rel=1e-5)
    assert out[0, 0, 0, 0].item() == pytest.approx(-mean / std, rel=1e-5)
    # The raw data stays uint8: normalise does not modify its input.
    assert x.dtype == torch.uint8 and x[0, 0, 3, 4].item() == 255
    batch = ds.normalise(ds.train_x[:3])
    expected = (ds.train_x[:3].double() - mean * 255) / (std * 255)
    torch.testing.assert_close(batch.double(), expected, rtol=1e-5, atol=1e-5)


def test_normalise_cifar10_per_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_download(monkeypatch)
    ds = load_dataset("cifar10", data_root=write_labelled_cifar(tmp_path / "root"), download=False)
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    assert tuple(ds.offset.shape) == tuple(ds.scale.shape) == (3,)
    x = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    x[1] = 0
    out = ds.normalise(x)
    assert out.dtype == torch.float32
    for c in range(3):
        hi = (255 - mean[c] * 255) / (std[c] * 255)
        lo = -mean[c] / std[c]
        torch.testing.assert_close(out[0, c], torch.full((32, 32), hi), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[1, c], torch.full((32, 32), lo), rtol=1e-5, atol=1e-5)


def test_normalise_digits_standardises_train_set() -> None:
    ds = load_dataset("digits", download=False)
    out = ds.normalise(ds.train_x)
    assert out.dtype == torch.float32
    assert out.double().mean().item() == pytest.approx(0.0, abs=1e-4)
    assert out.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_normalise_toy_is_identity() -> None:
    ds = load_dataset("toy")
    out = ds.normalise(ds.test_x)
    assert out.dtype == torch.float32
    assert tuple(ds.offset.shape) == tuple(ds.scale.shape) == (16,)
    torch.testing.assert_close(out, ds.test_x)


# --------------------------------------------------------------------------------------------
# 4. missing data


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_offline_raises_with_every_searched_folder(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = forbid_download(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    sub = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw"}.get(
        name, "cifar-10-batches-py"
    )
    cache_root = (tmp_path / "cache").resolve() / "lrgym"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, data_root=empty, download=False)
    err = info.value
    assert isinstance(err, FileNotFoundError)
    assert isinstance(err, LrgymError)
    assert err.dataset == name
    assert err.searched == (empty.resolve() / sub, cache_root / sub)
    message = str(err)
    assert str(empty.resolve() / sub) in message
    assert str(cache_root / sub) in message
    assert name in message
    assert "Fix" in message
    assert "data_root" in message and "LRGYM_DATA_DIR" in message and "download=True" in message
    assert calls == []
    assert not (tmp_path / "cache").exists()  # looking wrote nothing
    assert not any(empty.iterdir())


def test_missing_offline_names_env_root_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    monkeypatch.setenv("LRGYM_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", data_root=tmp_path / "explicit", download=False)
    searched = [str(p) for p in info.value.searched]
    assert searched == [
        str((tmp_path / "explicit").resolve() / "MNIST" / "raw"),
        str((tmp_path / "env").resolve() / "MNIST" / "raw"),
        str((tmp_path / "cache").resolve() / "lrgym" / "MNIST" / "raw"),
    ]
    for path in searched:
        assert path in str(info.value)


@pytest.mark.parametrize("exc", [URLError("no network"), OSError("disk full"), RuntimeError("bad")])
def test_download_failure_raises_dataset_not_found(
    exc: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path]] = []

    def fail(name: str, root: Path) -> None:
        calls.append((name, root))
        raise exc

    monkeypatch.setattr(data, "_download", fail)
    explicit = tmp_path / "explicit"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", data_root=explicit, download=True)
    err = info.value
    assert err.__cause__ is exc
    assert calls == [("mnist", explicit.resolve())]
    assert str(explicit.resolve()) in str(err)
    assert str(exc) in str(err)
    assert err.searched[0] == explicit.resolve() / "MNIST" / "raw"
    assert "Fix" in str(err)


def _site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[k]).resolve() for k in ("purelib", "platlib")]


@pytest.mark.parametrize("env_set", [False, True])
def test_download_goes_to_first_candidate_root_never_the_package(
    env_set: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env_set:
        monkeypatch.setenv("LRGYM_DATA_DIR", str(tmp_path / "env"))
    calls: list[Path] = []

    def fail(name: str, root: Path) -> None:
        calls.append(root)
        raise URLError("offline")

    monkeypatch.setattr(data, "_download", fail)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("cifar10")  # download=True is the default
    assert calls == [candidate_roots()[0]]
    want = (tmp_path / "env") if env_set else (tmp_path / "cache" / "lrgym")
    assert calls[0] == want.resolve()
    package_dir = Path(lrgym.__file__).resolve().parent
    for forbidden in (package_dir, *_site_dirs()):
        assert not calls[0].is_relative_to(forbidden)


def test_real_download_function_uses_root_and_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ``_download`` asks torchvision to fetch into the root; offline that fails with
    DatasetNotFoundError (torchvision is faked so the network is never touched)."""
    import torchvision

    seen: list[tuple[str, bool, bool]] = []

    class OfflineMNIST:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            seen.append((root, train, download))
            raise URLError("offline")

    monkeypatch.setattr(torchvision.datasets, "MNIST", OfflineMNIST)
    explicit = tmp_path / "explicit"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", data_root=explicit, download=True)
    assert isinstance(info.value.__cause__, URLError)
    assert seen == [(str(explicit.resolve()), True, True)]
    assert explicit.is_dir()  # the root was created for the download, nothing else
    assert not any(explicit.iterdir())


def test_successful_download_is_loaded_from_first_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_download(name: str, root: Path) -> None:
        assert name == "fashion_mnist"
        write_fake_mnist(root, "FashionMNIST", n_train=17, n_test=3)

    monkeypatch.setattr(data, "_download", fake_download)
    ds = load_dataset("fashion_mnist", download=True)
    assert ds.train_x.shape[0] == 17
    assert (tmp_path / "cache" / "lrgym" / "FashionMNIST" / "raw").is_dir()
    forbid_download(monkeypatch)
    assert load_dataset("fashion_mnist", download=False) is ds


def test_existing_files_are_not_downloaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = forbid_download(monkeypatch)
    root = write_fake_mnist(tmp_path / "root", n_train=12, n_test=4)
    ds = load_dataset("mnist", data_root=root, download=True)
    assert ds.train_x.shape[0] == 12
    assert calls == []


@pytest.mark.slow
def test_import_reads_and_writes_nothing(tmp_path: Path) -> None:
    """Importing lrgym with no data anywhere succeeds and creates no folder."""
    env = {
        **os.environ,
        "LRGYM_DATA_DIR": str(tmp_path / "env"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HOME": str(tmp_path / "home"),
    }
    code = textwrap.dedent(
        """
        import lrgym, lrgym.data.datasets
        assert lrgym.data.datasets.load_dataset is lrgym.load_dataset
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    for folder in ("env", "cache"):
        assert not (tmp_path / folder).exists()
    home = tmp_path / "home"
    assert not (home / ".cache" / "lrgym").exists()


# --------------------------------------------------------------------------------------------
# 5. unknown names


@pytest.mark.parametrize("name", ["imagenet", "", "MNIST", "cifar100"])
def test_unknown_dataset_name(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = forbid_download(monkeypatch)
    with pytest.raises(InvalidConfigError) as info:
        load_dataset(name, download=True)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LrgymError)
    message = str(info.value)
    assert repr(name) in message
    for allowed in DATASETS:
        assert repr(allowed) in message
    assert calls == []


# --------------------------------------------------------------------------------------------
# 6. caching, digits and toy


def test_loaded_once_per_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_download(monkeypatch)
    root = write_fake_mnist(tmp_path / "root", n_train=14, n_test=4)
    first = load_dataset("mnist", data_root=root, download=False)
    assert load_dataset("mnist", data_root=root, download=False) is first
    assert load_dataset("mnist", data_root=str(root), download=True) is first
    assert load_dataset("mnist", data_root=root / "sub" / "..", download=False) is first
    monkeypatch.setenv("LRGYM_DATA_DIR", str(root))
    assert load_dataset("mnist", download=False) is first
    other = write_fake_mnist(tmp_path / "other", n_train=14, n_test=4)
    second = load_dataset("mnist", data_root=other, download=False)
    assert second is not first
    torch.testing.assert_close(second.train_x, first.train_x)  # same generator, same content


def test_cifar_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_download(monkeypatch)
    root = write_labelled_cifar(tmp_path / "root")
    first = load_dataset("cifar10", data_root=root, download=False)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"garbage")  # not re-read
    assert load_dataset("cifar10", data_root=root, download=False) is first


@pytest.mark.parametrize("name", ["digits", "toy", "mnist1d", "grammar"])
def test_builtin_datasets_need_no_files(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = forbid_download(monkeypatch)
    monkeypatch.setenv("LRGYM_DATA_DIR", str(tmp_path / "env"))
    first = load_dataset(name, data_root=tmp_path / "nothing", download=False)
    assert load_dataset(name, download=True) is first
    assert load_dataset(name, data_root=tmp_path / "else") is first
    assert calls == []
    created = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")]
    # mnist1d imports matplotlib.pyplot, which may build its font cache under XDG_CACHE_HOME
    created = [c for c in created if c != "cache" and not c.startswith("cache/matplotlib")]
    assert created == []  # no folder created anywhere


def test_digits_shapes_values_and_split() -> None:
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    assert ds.name == "digits"
    assert ds.num_classes == 10
    assert ds.input_shape == (1, 8, 8)
    assert tuple(ds.train_x.shape) == (1437, 1, 8, 8)
    assert tuple(ds.test_x.shape) == (360, 1, 8, 8)
    assert tuple(ds.train_y.shape) == (1437,)
    assert tuple(ds.test_y.shape) == (360,)
    assert ds.train_x.dtype == ds.test_x.dtype == torch.uint8
    assert ds.train_y.dtype == ds.test_y.dtype == torch.int64
    both_x = torch.cat([ds.train_x, ds.test_x])
    both_y = torch.cat([ds.train_y, ds.test_y])
    assert both_x.min().item() == 0 and both_x.max().item() == 16
    assert set(both_y.tolist()) == set(range(10))
    assert set(ds.test_y.tolist()) == set(range(10))
    # Train and test together are exactly the 1797 sklearn examples, each used once.
    bunch = load_digits()
    full = Counter(
        (img.astype(np.uint8).tobytes(), int(t))
        for img, t in zip(bunch.images, bunch.target, strict=True)
    )
    ours = Counter((x.numpy().tobytes(), int(y)) for x, y in zip(both_x, both_y, strict=True))
    assert ours == full
    # The split is shuffled, not sklearn's first/last rows.
    first_360 = bunch.target[:360].astype(np.int64)
    assert not np.array_equal(ds.test_y.numpy(), first_360)


def test_digits_deterministic() -> None:
    cached = load_dataset("digits")
    fresh = generated.load_digits.__wrapped__()  # bypass the cache: rebuild from scratch
    assert fresh is not cached
    for field in ("train_x", "train_y", "test_x", "test_y", "offset", "scale"):
        torch.testing.assert_close(getattr(fresh, field), getattr(cached, field), rtol=0, atol=0)
    assert load_dataset("digits") is cached


def test_toy_shapes_and_determinism() -> None:
    ds = load_dataset("toy")
    assert ds.name == "toy"
    assert ds.num_classes == 4
    assert ds.input_shape == (16,)
    assert tuple(ds.train_x.shape) == (512, 16)
    assert tuple(ds.test_x.shape) == (256, 16)
    assert ds.train_x.dtype == ds.test_x.dtype == torch.float32
    assert ds.train_y.dtype == ds.test_y.dtype == torch.int64
    assert set(ds.train_y.tolist()) == set(range(4))
    assert set(ds.test_y.tolist()) == set(range(4))
    assert torch.isfinite(ds.train_x).all()
    assert load_dataset("toy") is ds
    fresh = generated.load_toy.__wrapped__()
    assert fresh is not ds
    for field in ("train_x", "train_y", "test_x", "test_y", "offset", "scale"):
        torch.testing.assert_close(getattr(fresh, field), getattr(ds, field), rtol=0, atol=0)
    # The classes are distinguishable: class means differ clearly.
    means = torch.stack([ds.train_x[ds.train_y == c].mean(0) for c in range(4)])
    assert torch.cdist(means, means)[~torch.eye(4, dtype=torch.bool)].min() > 1.0


# --------------------------------------------------------------------------------------------
# 7. corrupt or incomplete files


@pytest.mark.parametrize("missing", ["data_batch_3", "test_batch"])
def test_cifar_missing_batch_is_not_found(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = forbid_download(monkeypatch)
    root = write_fake_cifar10(tmp_path / "root", per_batch=3)
    (root / "cifar-10-batches-py" / missing).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", data_root=root, download=False)
    assert info.value.searched[0] == root.resolve() / "cifar-10-batches-py"
    assert calls == []


@pytest.mark.parametrize("missing", MNIST_FILES)
def test_mnist_missing_file_is_not_found(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_download(monkeypatch)
    root = write_fake_mnist(tmp_path / "root", n_train=5, n_test=5)
    (root / "MNIST" / "raw" / missing).unlink()
    with pytest.raises(DatasetNotFoundError):
        load_dataset("mnist", data_root=root, download=False)


def test_cifar_missing_batch_with_download_goes_to_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path]] = []

    def fake_download(name: str, root: Path) -> None:
        calls.append((name, root))
        write_labelled_cifar(root)  # restores the missing batch

    monkeypatch.setattr(data, "_download", fake_download)
    root = write_labelled_cifar(tmp_path / "root")
    (root / "cifar-10-batches-py" / "data_batch_5").unlink()
    ds = load_dataset("cifar10", data_root=root, download=True)
    assert calls == [("cifar10", root.resolve())]
    assert tuple(ds.train_x.shape) == (20, 3, 32, 32)


def test_corrupt_cifar_batch_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_download(monkeypatch)
    root = write_labelled_cifar(tmp_path / "root")
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    good = batch.read_bytes()
    batch.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DatasetCorruptError, match="cifar-10-batches-py cannot be read"):
        load_dataset("cifar10", data_root=root, download=False)
    batch.write_bytes(b"")  # empty
    with pytest.raises(DatasetCorruptError, match="delete them and download again"):
        load_dataset("cifar10", data_root=root, download=False)
    # A failure is not cached: once the file is repaired, the same root loads.
    batch.write_bytes(good)
    ds = load_dataset("cifar10", data_root=root, download=False)
    assert tuple(ds.train_x.shape) == (20, 3, 32, 32)


def test_truncated_mnist_images_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_download(monkeypatch)
    root = write_fake_mnist(tmp_path / "root", n_train=8, n_test=4)
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DatasetCorruptError, match=r"MNIST/raw cannot be read"):
        load_dataset("mnist", data_root=root, download=False)


# --------------------------------------------------------------------------------------------
# 8. generated with pinned hashes: mnist1d and grammar


def sha256_of(ds: ArrayDataset) -> str:
    """SHA-256 of train_x, train_y, test_x, test_y bytes, computed independently of lrgym."""
    digest = hashlib.sha256()
    for field in ("train_x", "train_y", "test_x", "test_y"):
        digest.update(getattr(ds, field).contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_mnist1d_shapes_dtypes_and_normalisation() -> None:
    ds = load_dataset("mnist1d", download=False)
    assert ds.name == "mnist1d"
    assert ds.num_classes == 10
    assert not ds.tokens
    assert ds.input_shape == (1, 40)
    assert tuple(ds.train_x.shape) == (4000, 1, 40)
    assert tuple(ds.test_x.shape) == (1000, 1, 40)
    assert tuple(ds.train_y.shape) == (4000,)
    assert tuple(ds.test_y.shape) == (1000,)
    assert ds.train_x.dtype == ds.test_x.dtype == torch.float32
    assert ds.train_y.dtype == ds.test_y.dtype == torch.int64
    assert set(ds.train_y.tolist()) == set(ds.test_y.tolist()) == set(range(10))
    assert torch.isfinite(ds.train_x).all() and torch.isfinite(ds.test_x).all()
    assert ds.train_x.std().item() > 0.5  # signals, not zeros
    assert tuple(ds.offset.shape) == tuple(ds.scale.shape) == (1,)
    out = ds.normalise(ds.train_x)
    assert out.dtype == torch.float32
    assert out.double().mean().item() == pytest.approx(0.0, abs=1e-4)
    assert out.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    assert sha256_of(ds) == mnist1d_data.MNIST1D_SHA256
    assert load_dataset("mnist1d") is ds


def test_mnist1d_leaves_global_rngs_untouched() -> None:
    """make_dataset reseeds NumPy's and Python's global RNGs; loading restores both."""
    np.random.seed(123)
    random.seed(7)
    np.random.random(3)  # a state in mid-stream, not just after seeding
    numpy_state, python_state = np.random.get_state(), random.getstate()
    expected = (np.random.random(4), random.random())
    np.random.set_state(numpy_state)
    random.setstate(python_state)
    fresh = mnist1d_data.load_mnist1d.__wrapped__()  # bypass the cache: generate again
    np.testing.assert_array_equal(np.random.random(4), expected[0])
    assert random.random() == expected[1]
    assert sha256_of(fresh) == mnist1d_data.MNIST1D_SHA256


def test_mnist1d_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mnist1d", None)  # None in sys.modules: import fails
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(MissingPackageError) as info:
        mnist1d_data.load_mnist1d.__wrapped__()
    assert isinstance(info.value, ImportError) and isinstance(info.value, LrgymError)
    assert "pip install 'lrgym[mnist1d]'" in str(info.value)
    assert info.value.extra == "mnist1d"


def tampered_mnist1d(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the generation return one sample changed."""
    raw = mnist1d_data._generate()
    raw["x"] = raw["x"].copy()
    raw["x"][17, 5] += 1e-3

    def tampered() -> dict[str, object]:
        return raw

    monkeypatch.setattr(mnist1d_data, "_generate", tampered)


def test_mnist1d_hash_mismatch_names_the_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    tampered_mnist1d(monkeypatch)
    with pytest.raises(DatasetCorruptError) as info:
        mnist1d_data.load_mnist1d.__wrapped__()
    message = str(info.value)
    assert "mnist1d 0.0.2.post1 is installed, lrgym pins 0.0.2.post1" in message
    assert mnist1d_data.MNIST1D_SHA256 in message
    monkeypatch.setattr(mnist1d_data.importlib.metadata, "version", lambda name: "9.9")
    with pytest.raises(DatasetCorruptError) as info:
        mnist1d_data.load_mnist1d.__wrapped__()
    assert "mnist1d 9.9 is installed, lrgym pins 0.0.2.post1" in str(info.value)
    assert "pip install 'lrgym[mnist1d]'" in str(info.value)


def test_grammar_shapes_dtypes_and_tokens() -> None:
    ds = load_dataset("grammar", download=False)
    v, t = len(grammar.ALPHABET), grammar.SEQUENCE_LENGTH
    assert (ds.name, ds.num_classes, v, t) == ("grammar", 32, 32, 64)
    assert ds.tokens
    assert ds.input_shape == (t,)
    assert tuple(ds.train_x.shape) == tuple(ds.train_y.shape) == (8192, t)
    assert tuple(ds.test_x.shape) == tuple(ds.test_y.shape) == (1024, t)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        tensor = getattr(ds, field)
        assert tensor.dtype == torch.int64
        assert tensor.min().item() >= 0 and tensor.max().item() < v
    assert set(ds.train_x.unique().tolist()) == set(range(v))  # every character occurs
    out = ds.normalise(ds.test_x[:5])
    assert out.dtype == torch.int64
    assert torch.equal(out, ds.test_x[:5])
    assert sha256_of(ds) == grammar.GRAMMAR_SHA256
    assert load_dataset("grammar") is ds


def test_grammar_targets_are_the_next_tokens_of_one_stream() -> None:
    ds = load_dataset("grammar")
    x = torch.cat([ds.train_x, ds.test_x])
    y = torch.cat([ds.train_y, ds.test_y])
    assert torch.equal(x[:, 1:], y[:, :-1])  # shifted by one inside a window
    assert torch.equal(y[:-1, -1], x[1:, 0])  # windows are consecutive in the stream
    stream = torch.cat([x.reshape(-1), y[-1, -1:]]).numpy()
    text = grammar.generate_text(len(stream))
    np.testing.assert_array_equal(stream, grammar.encode(text))
    assert grammar.decode(stream) == text
    assert text[0].isalpha() and text.count("\n") > 1000
    assert {".", "!", "?", ","} <= set(text)


def test_grammar_is_low_entropy() -> None:
    """Next-character uncertainty given one character is far below chance (log V)."""
    stream = load_dataset("grammar").train_x.reshape(-1).numpy()
    v = len(grammar.ALPHABET)
    pairs = np.bincount(stream[:-1] * v + stream[1:], minlength=v * v).reshape(v, v)
    joint = pairs / pairs.sum()
    first = joint.sum(1, keepdims=True)
    nonzero = joint > 0
    conditional = -(joint[nonzero] * np.log((joint / first)[nonzero])).sum()
    unigram = np.bincount(stream, minlength=v) / len(stream)
    marginal = -(unigram * np.log(unigram)).sum()
    assert marginal < math.log(v) - 0.2
    assert conditional < 0.65 * math.log(v)  # about 1.98 nats against 3.47
    assert (pairs == 0).mean() > 0.5  # most character pairs never occur


def test_grammar_is_deterministic_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    cached = load_dataset("grammar")
    fresh = grammar.load_grammar.__wrapped__()
    assert fresh is not cached
    assert sha256_of(fresh) == sha256_of(cached)
    assert grammar.generate_text(500, seed=1) != grammar.generate_text(500)
    real = grammar.generate_text
    monkeypatch.setattr(grammar, "generate_text", lambda n: real(n).replace("cat", "bat"))
    with pytest.raises(DatasetCorruptError, match=r"lrgym\.data\.grammar"):
        grammar.load_grammar.__wrapped__()


def test_grammar_encode_rejects_foreign_characters() -> None:
    assert grammar.decode(grammar.encode("the cat.\n")) == "the cat.\n"
    with pytest.raises(ValueError, match="ALPHABET"):
        grammar.encode("The cat")


def test_token_inputs_are_never_normalised() -> None:
    tokens = torch.tensor([[3, 0, 31]], dtype=torch.int32)
    ds = ArrayDataset(
        name="grammar",
        train_x=tokens,
        train_y=tokens,
        test_x=tokens,
        test_y=tokens,
        offset=torch.tensor([5.0]),
        scale=torch.tensor([2.0]),
        num_classes=32,
        tokens=True,
    )
    out = ds.normalise(tokens)
    assert out.dtype == torch.int64
    assert out.tolist() == [[3, 0, 31]]
    plain = ArrayDataset(**{**ds.__dict__, "tokens": False})
    assert plain.normalise(tokens).tolist() == [[-4.0, -10.0, 52.0]]


@pytest.mark.slow
def test_generated_datasets_same_in_a_fresh_process() -> None:
    code = textwrap.dedent(
        """
        import hashlib, lrgym
        for name in ("mnist1d", "grammar"):
            ds = lrgym.load_dataset(name)
            digest = hashlib.sha256()
            for field in ("train_x", "train_y", "test_x", "test_y"):
                digest.update(getattr(ds, field).contiguous().numpy().tobytes())
            print(name, digest.hexdigest())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    here = {name: sha256_of(load_dataset(name)) for name in ("mnist1d", "grammar")}
    there = dict(line.split() for line in result.stdout.strip().splitlines())
    assert there == here
