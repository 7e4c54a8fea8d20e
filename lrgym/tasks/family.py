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
  architecture transfer (and the only choice for non-image data).

A conv whose kernel covers its whole input (the last two layers of the conv nets) is a
:class:`WholeInputConv2d`: the same function and parameters as ``nn.Conv2d``, computed as a
matrix product, which is several times faster than a convolution routine on the CPU.

Memory format: conv nets train in the layout measured fastest for their architecture on the
device (:func:`choose_memory_format`), read from a fixed table so that the same task always
runs the same arithmetic and results stay bit-reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrgym.data.datasets import DATASETS
from lrgym.errors import InvalidConfigError, choice_error
from lrgym.optimizers import OPTIMIZERS

ARCHITECTURES = ("cnn", "lenet", "cifar-quick", "mlp")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
"""Choices of ``memory_format``: ``"auto"`` takes :data:`FASTEST_MEMORY_FORMAT`."""

FASTEST_MEMORY_FORMAT: dict[tuple[str, str], str] = {
    ("cpu", "cnn"): "channels_last",
    ("cpu", "lenet"): "channels_last",
    ("cpu", "cifar-quick"): "channels_last",
}
"""The memory format ``"auto"`` picks per ``(device type, conv architecture)``, measured with
``perf/memory_format.py`` (a featured training step in each format, side by side, one
torch thread). Pairs not in the table (devices not measured) run contiguous, as MLPs do."""

DEFAULT_WIDTHS: dict[str, tuple[tuple[int, int], ...]] = {
    "cnn": ((2, 9), (5, 24), (50, 249)),
    "mlp": ((16, 128), (16, 128)),
}
FIXED_WIDTHS: dict[str, tuple[int, ...]] = {"lenet": (20, 50, 500), "cifar-quick": (32, 32, 64, 64)}


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description."""
        out = asdict(self)
        out["widths"] = list(self.widths)
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
    _widths: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise choice_error("dataset", self.dataset, DATASETS)
        if self.architecture not in ARCHITECTURES:
            raise choice_error("architecture", self.architecture, ARCHITECTURES)
        if self.optimizer not in OPTIMIZERS:
            raise choice_error("optimizer", self.optimizer, OPTIMIZERS)
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
        if self.architecture == "cnn" and len(ranges) != 3:
            raise InvalidConfigError(f"widths={self.widths!r}: the cnn family needs 3 ranges")
        if self.architecture == "mlp" and not ranges:
            raise InvalidConfigError(f"widths={self.widths!r}: an mlp needs at least one range")
        object.__setattr__(self, "_widths", ranges)

    def sample(self, rng: np.random.Generator) -> Task:
        """Draw one task; every draw comes from ``rng``."""
        if self.architecture in FIXED_WIDTHS:
            widths = FIXED_WIDTHS[self.architecture]
        else:
            widths = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in self._widths)
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
        )


def _int_range(name: str, value: Iterable[int]) -> tuple[int, int]:
    low, high = _pair(name, list(value))
    if low != int(low) or high != int(high) or low < 1:
        raise InvalidConfigError(f"{name}={value!r} must be a [low, high] pair of integers >= 1")
    return int(low), int(high)


class WholeInputConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` whose kernel covers its whole input (no padding), so that its output
    is ``1x1``: computed as ``F.linear`` of the flattened input and weight, the same function
    with the same parameters. Inputs of another size go through the convolution."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not covers_whole_input(self, input):
            return super().forward(input)
        out = F.linear(*flatten_alike(input, self.weight), self.bias)
        return out.view(*out.shape, 1, 1)


def covers_whole_input(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv`` applied to ``x`` ``(B, C, H, W)`` is a matrix product: its kernel is
    the input's ``H x W``, without padding, dilation or groups."""
    return (
        tuple(x.shape[2:]) == tuple(conv.kernel_size)
        and conv.groups == 1
        and tuple(conv.dilation) == (1, 1)
        and conv.padding in ((0, 0), "valid")
    )


def flatten_alike(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(B, C, H, W)`` and ``weight`` ``(O, C, H, W)`` flattened to ``(B, CHW)`` and
    ``(O, CHW)`` with their entries in the same order: views, without a copy, when both are
    channels-last (order ``h, w, c``) or both contiguous (order ``c, h, w``)."""
    channels_last = torch.channels_last
    if (
        x.is_contiguous(memory_format=channels_last)
        and weight.is_contiguous(memory_format=channels_last)
        and not (x.is_contiguous() and weight.is_contiguous())
    ):
        return x.permute(0, 2, 3, 1).flatten(1), weight.permute(0, 2, 3, 1).flatten(1)
    return x.flatten(1), weight.flatten(1)


def _paper_cnn(shape: tuple[int, ...], widths: Sequence[int], classes: int) -> nn.Sequential:
    channels, side = shape[0], shape[1]
    kernel, pad = (5, 0) if side >= 20 else (3, 1)
    after = ((side - kernel + 2 * pad + 1) // 2 - kernel + 2 * pad + 1) // 2
    if after < 1:
        raise InvalidConfigError(f"input side {side} is too small for the cnn family")
    c1, c2, c3 = widths
    return nn.Sequential(
        nn.Conv2d(channels, c1, kernel, padding=pad),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, kernel, padding=pad),
        nn.MaxPool2d(2),
        WholeInputConv2d(c2, c3, after),
        nn.ReLU(),
        WholeInputConv2d(c3, classes, 1),
        nn.Flatten(),
    )


def _cifar_quick(shape: tuple[int, ...], widths: Sequence[int], classes: int) -> nn.Sequential:
    c1, c2, c3, c4 = widths
    side = shape[1] // 8
    if side < 1:
        raise InvalidConfigError(f"input side {shape[1]} is too small for cifar-quick")
    return nn.Sequential(
        nn.Conv2d(shape[0], c1, 5, padding=2),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 5, padding=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(c2, c3, 5, padding=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        WholeInputConv2d(c3, c4, side),
        nn.ReLU(),
        WholeInputConv2d(c4, classes, 1),
        nn.Flatten(),
    )


def _mlp(shape: tuple[int, ...], widths: Sequence[int], classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    previous = int(np.prod(shape))
    for width in widths:
        layers += [nn.Linear(previous, width), nn.ReLU()]
        previous = width
    layers.append(nn.Linear(previous, classes))
    return nn.Sequential(*layers)


def check_architecture(architecture: str, dataset: str, input_shape: tuple[int, ...]) -> None:
    """Raise :class:`InvalidConfigError` if ``architecture`` cannot take ``dataset``'s inputs."""
    if architecture != "mlp" and len(input_shape) != 3:
        raise InvalidConfigError(
            f"architecture={architecture!r} needs image inputs (C, H, W), but dataset "
            f"{dataset!r} has inputs of shape {input_shape}; use architecture='mlp'"
        )


def build_model(
    task: Task,
    input_shape: tuple[int, ...],
    num_classes: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Build the task's network, initialised from ``generator`` alone.

    Weights and biases of every conv and linear layer are drawn uniformly from
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (PyTorch's default scale). The modules are created on
    the meta device first, so the global torch RNG is never advanced.

    Raises:
        InvalidConfigError: the architecture needs image inputs ``(C, H, W)`` and got others.
    """
    builders = {"cnn": _paper_cnn, "lenet": _paper_cnn, "cifar-quick": _cifar_quick, "mlp": _mlp}
    check_architecture(task.architecture, task.dataset, input_shape)
    with torch.device("meta"):
        model = builders[task.architecture](input_shape, task.widths, num_classes)
    model = model.to_empty(device="cpu")  # the generator is a CPU generator
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                if module.bias is not None:
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model.to(device)


def choose_memory_format(
    architecture: str, device: torch.device | str = "cpu", choice: str = "auto"
) -> torch.memory_format:
    """The memory format a network of ``architecture`` trains in on ``device``.

    Args:
        architecture: one of :data:`ARCHITECTURES`.
        device: the torch device.
        choice: ``"auto"`` (the measured :data:`FASTEST_MEMORY_FORMAT`), ``"contiguous"`` or
            ``"channels_last"`` (ignored by the MLP, whose inputs are flattened).
    """
    if choice not in MEMORY_FORMATS:
        raise choice_error("memory_format", choice, MEMORY_FORMATS)
    if architecture == "mlp":
        return torch.contiguous_format
    if choice == "auto":
        choice = FASTEST_MEMORY_FORMAT.get((torch.device(device).type, architecture), "contiguous")
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format
