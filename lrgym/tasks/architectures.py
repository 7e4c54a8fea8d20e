"""The architectures a task can train: their names, filter counts, how each is built and
initialised, and the memory format it trains in.

A new architecture family is a module of its own (``cnn.py``, ``mlp.py``) with a builder
``(input_shape, widths, classes) -> nn.Module``, registered in :data:`BUILDERS`.

Memory format: conv nets train in the layout measured fastest for their architecture on the
device (:func:`choose_memory_format`), read from a fixed table so that the same task always
runs the same arithmetic and results stay bit-reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from lrgym.errors import InvalidConfigError, choice_error
from lrgym.tasks.cnn import cifar_quick, paper_cnn
from lrgym.tasks.mlp import mlp

ARCHITECTURES = ("cnn", "lenet", "cifar-quick", "mlp")
"""The architectures a task family can sample (see :data:`BUILDERS`)."""
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


Builder = Callable[[tuple[int, ...], Sequence[int], int], nn.Module]
BUILDERS: dict[str, Builder] = {
    "cnn": paper_cnn,
    "lenet": paper_cnn,
    "cifar-quick": cifar_quick,
    "mlp": mlp,
}
"""How each architecture is built from ``(input_shape, widths, classes)``."""


def check_architecture(architecture: str, dataset: str, input_shape: tuple[int, ...]) -> None:
    """Raise :class:`InvalidConfigError` if ``architecture`` cannot take ``dataset``'s inputs."""
    if architecture != "mlp" and len(input_shape) != 3:
        raise InvalidConfigError(
            f"architecture={architecture!r} needs image inputs (C, H, W), but dataset "
            f"{dataset!r} has inputs of shape {input_shape}; use architecture='mlp'"
        )


def build_network(
    architecture: str,
    input_shape: tuple[int, ...],
    widths: Sequence[int],
    num_classes: int,
    generator: torch.Generator,
) -> nn.Module:
    """Build ``architecture`` on the CPU, initialised from ``generator`` alone.

    Weights and biases of every conv and linear layer are drawn uniformly from
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (PyTorch's default scale). The modules are created on
    the meta device first, so the global torch RNG is never advanced.
    """
    with torch.device("meta"):
        model = BUILDERS[architecture](input_shape, widths, num_classes)
    model = model.to_empty(device="cpu")  # the generator is a CPU generator
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                if module.bias is not None:
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model


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
