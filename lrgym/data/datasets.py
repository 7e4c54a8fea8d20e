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
``"mnist1d"``             none: MNIST-1D generated from the ``mnist1d`` package's templates
                          (``pip install 'lrgym[mnist1d]'``), ``float32`` ``(N, 1, 40)``
``"grammar"``             none: next-character sequences from a fixed grammar, ``int64``
                          token ids ``(N, 64)``, ``V = 32`` (``tokens=True``)
========================  ================================================================

The root is searched in this order: an explicit ``data_root`` argument, the ``LRGYM_DATA_DIR``
environment variable, then the per-user cache ``$XDG_CACHE_HOME/lrgym`` (``~/.cache/lrgym``).
Missing files are downloaded (by torchvision, which verifies checksums) into the first of those
roots only when ``download=True``, on first use, never at import. Without network access the
loader raises :class:`~lrgym.errors.DatasetNotFoundError` naming every path it searched.

Each dataset is loaded once per process and kept compact: images stay ``uint8`` and are
normalised batch by batch (:meth:`ArrayDataset.normalise`). Token datasets
(``ArrayDataset.tokens``) keep ``int64`` ids, which ``normalise`` returns unchanged.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from pathlib import Path

from lrgym.data.arrays import ArrayDataset
from lrgym.data.generated import load_digits, load_toy
from lrgym.data.grammar import load_grammar
from lrgym.data.mnist1d import load_mnist1d
from lrgym.data.torchvision_files import (
    data_folder,
    has_files,
    load_cifar10,
    load_mnist_like,
    searched,
)
from lrgym.data.torchvision_files import download as _download
from lrgym.errors import DatasetCorruptError, DatasetNotFoundError, choice_error

DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits", "toy", "mnist1d", "grammar")
"""Names accepted by :func:`load_dataset`."""

DATA_DIR_ENV = "LRGYM_DATA_DIR"

_GENERATED: dict[str, Callable[[], ArrayDataset]] = {
    "digits": load_digits,
    "toy": load_toy,
    "mnist1d": load_mnist1d,
    "grammar": load_grammar,
}
"""The datasets that need no files, and their (cached) loaders."""


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
        DatasetCorruptError: the files are there but cannot be read, or a generated dataset
            differs from its pinned SHA-256.
        MissingPackageError: ``"mnist1d"`` without the ``mnist1d`` package.
    """
    if name not in DATASETS:
        raise choice_error("dataset", name, DATASETS)
    if name in _GENERATED:
        return _GENERATED[name]()
    roots = candidate_roots(data_root)
    for root in roots:
        if has_files(name, root):
            return _load_from_root(name, str(root))
    if not download:
        raise DatasetNotFoundError(name, searched(name, roots), "Downloading is off.")
    try:
        _download(name, roots[0])
    except Exception as exc:  # torchvision raises URLError, RuntimeError or OSError offline
        raise DatasetNotFoundError(
            name, searched(name, roots), f"Download into {roots[0]} failed: {exc}"
        ) from exc
    if not has_files(name, roots[0]):  # pragma: no cover - torchvision verified the files
        raise DatasetNotFoundError(name, searched(name, roots), "Download left no files.")
    return _load_from_root(name, str(roots[0]))


@functools.cache
def _load_from_root(name: str, root: str) -> ArrayDataset:
    try:
        if name == "cifar10":
            return load_cifar10(Path(root))
        return load_mnist_like(name, root)
    except (ValueError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError) as exc:
        raise DatasetCorruptError(
            f"{name} files under {data_folder(name, Path(root))} cannot be read ({exc}). "
            "Fix: delete them and download again, or point data_root at an intact copy."
        ) from exc
