"""Task families: which network is trained, on which data, for how long, from which eta_0.

A :class:`TaskFamily` holds the documented ranges; :meth:`TaskFamily.sample` draws one
:class:`Task` from a NumPy generator, so a task is fully determined by that generator's seed.
:func:`build_model` turns a task into a freshly initialised network without touching the global
torch random number generator.

Architectures (``architecture=``):

* ``"cnn"``: the paper's family conv-pool-conv-pool-conv-relu-conv-softmax with three sampled
  filter counts (MatConvNet's MNIST LeNet shape). Inputs of side >= 20 use 5x5 kernels, smaller
  ones 3x3 kernels with padding 1; the third conv spans what is left of the image, the last is
  1x1 to the classes. The softmax is folded into the cross-entropy loss.
* ``"lenet"``: the fixed full-size MNIST net, filters ``[20, 50, 500]``.
* ``"cifar-quick"``: the fixed CIFAR-10 "quick" net, filters ``[32, 32, 64, 64]``:
  conv5-maxpool-relu-conv5-relu-avgpool-conv5-relu-avgpool-conv-relu-conv1x1 (2x2 pools).
* ``"mlp"``: fully connected ReLU nets with one sampled width per hidden layer, for
  architecture transfer (and any real-valued input).
* ``"resnet"``: small residual CNNs (sampled stages, blocks per stage and width) with
  ``norm`` ``"batch"``, ``"group"`` or ``"none"`` (:mod:`lrgym.tasks.resnet`).
* ``"transformer"``: small decoder-only transformers for next-token prediction on token
  data (sampled layers, ``d_model`` and heads; :mod:`lrgym.tasks.transformer`).
* ``"cnn1d"``: 1-D convnets for signals ``(C, L)`` with three sampled filter counts
  (:mod:`lrgym.tasks.cnn1d`).

How each architecture is built, and the memory format it trains in:
:mod:`lrgym.tasks.architectures`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lrgym.data.datasets import DATASETS
from lrgym.errors import InvalidConfigError, choice_error
from lrgym.tasks.architectures import (
    ADJUST_WIDTHS,
    ARCHITECTURES,
    DEFAULT_WIDTHS,
    FIXED_WIDTHS,
    WIDTH_COUNTS,
    build_network,
    check_architecture,
)
from lrgym.tasks.resnet import NORMS

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
"""The optimisers a task family samples tasks for; a controller sets their learning rate."""


def _pair(name: str, value: Sequence[float], *, positive: bool = False) -> tuple[float, float]:
    """Validate a ``[low, high]`` range given as a sequence of two numbers."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidConfigError(
            f"{name}={value!r} must be a [low, high] pair of numbers"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise InvalidConfigError(f"{name}={value!r} must be a finite [low, high] with low <= high")
    if positive and low <= 0:
        raise InvalidConfigError(f"{name}={value!r} must be positive")
    return low, high


@dataclass(frozen=True)
class Task:
    """One training task: everything needed to reproduce a training run bit for bit.

    Attributes:
        dataset: dataset name (see :data:`lrgym.data.datasets.DATASETS`).
        architecture: one of :data:`ARCHITECTURES`.
        widths: filter counts (conv nets) or hidden widths (MLPs).
        subset_fraction: fraction of the training set this task trains on, in ``(0, 1]``.
        steps: number of optimiser steps.
        batch_size: examples per mini-batch.
        eta0: the initial learning rate, used until features exist.
        optimizer: one of :data:`lrgym.optimizers.ALL_OPTIMIZERS` (families sample the task
            optimisers :data:`lrgym.optimizers.OPTIMIZERS`; the optimiser baselines replace them).
        momentum: SGD momentum (ignored by the other optimisers).
        seed: seeds the weight init, the data subset and the batch order.
        norm: the ``resnet`` family's normalisation (``None`` for the other architectures).
    """

    dataset: str
    architecture: str
    widths: tuple[int, ...]
    subset_fraction: float
    steps: int
    batch_size: int
    eta0: float
    optimizer: str
    momentum: float
    seed: int
    norm: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (``norm`` only where it is set)."""
        out = asdict(self)
        out["widths"] = list(self.widths)
        if self.norm is None:
            del out["norm"]
        return out


@dataclass(frozen=True)
class TaskFamily:
    """The distribution tasks are drawn from. Every range is inclusive, ``[low, high]``.

    Attributes:
        dataset: dataset name.
        architecture: one of :data:`ARCHITECTURES`.
        widths: one ``[low, high]`` integer range per sampled layer (uniform); ``None`` takes the
            architecture's default (``cnn``: ``[[2, 9], [5, 24], [50, 249]]``; ``mlp``:
            ``[[16, 128], [16, 128]]``). Ignored by the fixed ``lenet`` and ``cifar-quick``.
        subset_fraction: range of the fraction of the training set used (uniform).
        steps: range of the number of optimiser steps (uniform integer).
        batch_size: range of the batch size (uniform integer).
        lr: range of eta_0 (log-uniform).
        optimizer: one of :data:`lrgym.optimizers.OPTIMIZERS`.
        momentum: SGD momentum in ``[0, 1)``.
        norm: the ``resnet`` family's normalisation, one of :data:`lrgym.tasks.resnet.NORMS`
            (ignored by the other architectures).
    """

    dataset: str = "mnist"
    architecture: str = "cnn"
    widths: tuple[tuple[int, int], ...] | None = None
    subset_fraction: tuple[float, float] = (0.1, 0.5)
    steps: tuple[int, int] = (300, 1000)
    batch_size: tuple[int, int] = (64, 64)
    lr: tuple[float, float] = (1e-4, 1e-1)
    optimizer: str = "sgd"
    momentum: float = 0.9
    norm: str = "batch"
    _widths: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise choice_error("dataset", self.dataset, DATASETS)
        if self.architecture not in ARCHITECTURES:
            raise choice_error("architecture", self.architecture, ARCHITECTURES)
        if self.optimizer not in OPTIMIZERS:
            raise choice_error("optimizer", self.optimizer, OPTIMIZERS)
        if self.norm not in NORMS:
            raise choice_error("norm", self.norm, NORMS)
        if not 0.0 <= float(self.momentum) < 1.0:
            raise InvalidConfigError(f"momentum={self.momentum!r} must lie in [0, 1)")
        low, high = _pair("subset_fraction", self.subset_fraction, positive=True)
        if high > 1.0:
            raise InvalidConfigError(f"subset_fraction={self.subset_fraction!r} must lie in (0, 1]")
        object.__setattr__(self, "subset_fraction", (low, high))
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            object.__setattr__(self, name, _int_range(name, value))
        object.__setattr__(self, "lr", _pair("lr", self.lr, positive=True))
        widths = self.widths if self.widths is not None else DEFAULT_WIDTHS.get(self.architecture)
        ranges = tuple(_int_range(f"widths[{i}]", w) for i, w in enumerate(widths or ()))
        count = WIDTH_COUNTS.get(self.architecture)
        if count is not None and len(ranges) != count:
            raise InvalidConfigError(
                f"widths={self.widths!r}: the {self.architecture} family needs {count} ranges"
            )
        if self.architecture == "mlp" and not ranges:
            raise InvalidConfigError(f"widths={self.widths!r}: an mlp needs at least one range")
        object.__setattr__(self, "_widths", ranges)

    def sample(self, rng: np.random.Generator) -> Task:
        """Draw one task; every draw comes from ``rng``."""
        if self.architecture in FIXED_WIDTHS:
            widths = FIXED_WIDTHS[self.architecture]
        else:
            widths = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in self._widths)
            if self.architecture in ADJUST_WIDTHS:
                widths = ADJUST_WIDTHS[self.architecture](widths, self._widths)
        lr_low, lr_high = self.lr
        return Task(
            dataset=self.dataset,
            architecture=self.architecture,
            widths=widths,
            subset_fraction=float(rng.uniform(*self.subset_fraction)),
            steps=int(rng.integers(self.steps[0], self.steps[1] + 1)),
            batch_size=int(rng.integers(self.batch_size[0], self.batch_size[1] + 1)),
            eta0=float(math.exp(rng.uniform(math.log(lr_low), math.log(lr_high)))),
            optimizer=self.optimizer,
            momentum=float(self.momentum),
            seed=int(rng.integers(0, 2**63 - 1)),
            norm=self.norm if self.architecture == "resnet" else None,
        )


def _int_range(name: str, value: Iterable[int]) -> tuple[int, int]:
    low, high = _pair(name, list(value))
    if low != int(low) or high != int(high) or low < 1:
        raise InvalidConfigError(f"{name}={value!r} must be a [low, high] pair of integers >= 1")
    return int(low), int(high)


def build_model(
    task: Task,
    input_shape: tuple[int, ...],
    num_classes: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    *,
    tokens: bool = False,
) -> nn.Module:
    """Build the task's network, initialised from ``generator`` alone (see
    :func:`lrgym.tasks.architectures.build_network`), on ``device``.

    Args:
        tokens: the dataset's inputs are integer token ids.

    Raises:
        InvalidConfigError: the architecture cannot take the dataset's inputs.
    """
    check_architecture(task.architecture, task.dataset, input_shape, tokens=tokens)
    model = build_network(
        task.architecture,
        input_shape,
        task.widths,
        num_classes,
        generator,
        norm=task.norm or "batch",
    )
    return model.to(device)
