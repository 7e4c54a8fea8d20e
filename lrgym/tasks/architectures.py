"""The architectures a task can train: their names, filter counts, how each is built and
initialised, and the memory format it trains in.

A new architecture family is a module of its own (``cnn.py``, ``mlp.py``, ``resnet.py``,
``transformer.py``, ``cnn1d.py``) with a builder ``(input_shape, widths, classes) -> nn.Module``,
registered in :data:`BUILDERS`, and the kind of input it takes in :data:`INPUTS`.

Memory format: conv nets train in the layout measured fastest for their architecture on the
device (:func:`choose_memory_format`), read from a fixed table so that the same task always
runs the same arithmetic and results stay bit-reproducible.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from lrgym.errors import InvalidConfigError, choice_error
from lrgym.tasks.cnn import cifar_quick, paper_cnn
from lrgym.tasks.cnn1d import cnn1d
from lrgym.tasks.mlp import mlp
from lrgym.tasks.resnet import NORMS, resnet
from lrgym.tasks.transformer import round_widths, transformer

ARCHITECTURES = ("cnn", "lenet", "cifar-quick", "mlp", "resnet", "transformer", "cnn1d")
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
    "resnet": ((2, 3), (1, 2), (8, 16)),
    "transformer": ((1, 3), (32, 128), (2, 4)),
    "cnn1d": ((8, 32), (8, 32), (8, 32)),
}
"""The sampled families' default ``[low, high]`` ranges, one per sampled number: ``cnn`` and
``cnn1d`` filter counts; ``mlp`` hidden widths; ``resnet`` ``(stages, blocks per stage, width
of the first stage)``; ``transformer`` ``(layers, d_model, heads)``."""
WIDTH_COUNTS: dict[str, int] = {"cnn": 3, "resnet": 3, "transformer": 3, "cnn1d": 3}
"""How many ranges a family's ``widths`` takes (``mlp``: any number >= 1)."""
ADJUST_WIDTHS: dict[str, Callable[[Sequence[int], Sequence[tuple[int, int]]], tuple[int, ...]]] = {
    "transformer": round_widths
}
"""What a family does to its sampled numbers, given their ranges (``transformer``: ``d_model``
rounded to a multiple of ``heads`` inside its range)."""
FIXED_WIDTHS: dict[str, tuple[int, ...]] = {"lenet": (20, 50, 500), "cifar-quick": (32, 32, 64, 64)}


Builder = Callable[[tuple[int, ...], Sequence[int], int], nn.Module]
BUILDERS: dict[str, Builder] = {
    "cnn": paper_cnn,
    "lenet": paper_cnn,
    "cifar-quick": cifar_quick,
    "mlp": mlp,
    "resnet": resnet,
    "transformer": transformer,
    "cnn1d": cnn1d,
}
"""How each architecture is built from ``(input_shape, widths, classes)`` (``resnet`` also
takes ``norm``)."""

INPUTS: dict[str, str] = {
    "cnn": "images",
    "lenet": "images",
    "cifar-quick": "images",
    "resnet": "images",
    "cnn1d": "signals",
    "transformer": "tokens",
    "mlp": "vectors",
}
"""The inputs each architecture takes: ``images`` ``(C, H, W)``, ``signals`` ``(C, L)``,
``tokens`` (integer ids ``(T,)``), ``vectors`` (any real-valued input, flattened)."""
_SUITABLE = {"images": "'cnn' or 'resnet'", "signals": "'cnn1d'", "tokens": "'transformer'"}


def input_kind(input_shape: tuple[int, ...], tokens: bool) -> str:
    """What kind of input a dataset has (see :data:`INPUTS`)."""
    if tokens:
        return "tokens"
    return {3: "images", 2: "signals"}.get(len(input_shape), "vectors")


def check_architecture(
    architecture: str, dataset: str, input_shape: tuple[int, ...], *, tokens: bool = False
) -> None:
    """Raise :class:`InvalidConfigError` if ``architecture`` cannot take ``dataset``'s inputs
    (``tokens``: the inputs are integer token ids)."""
    kind, needs = input_kind(input_shape, tokens), INPUTS[architecture]
    if needs == kind or (needs == "vectors" and kind != "tokens"):
        return
    choices = _SUITABLE.get(kind, "'mlp'")
    if kind in ("images", "signals"):
        choices += " (or 'mlp')"
    raise InvalidConfigError(
        f"architecture={architecture!r} needs {needs}, but dataset {dataset!r} has {kind} of "
        f"shape {input_shape}; use architecture={choices}"
    )


def build_network(
    architecture: str,
    input_shape: tuple[int, ...],
    widths: Sequence[int],
    num_classes: int,
    generator: torch.Generator,
    *,
    norm: str = "batch",
) -> nn.Module:
    """Build ``architecture`` on the CPU, initialised from ``generator`` alone.

    PyTorch's default scales, drawn from ``generator`` in module order: weights and biases of
    every conv and linear layer uniformly from ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``,
    embeddings from ``N(0, 1)``; normalisation layers start as the identity (scale 1, shift
    0, running mean 0 and variance 1). The modules are created on the meta device first, so
    the global torch RNG is never advanced.

    Args:
        norm: the ``resnet`` family's normalisation, one of
            :data:`lrgym.tasks.resnet.NORMS` (ignored by the other architectures).
    """
    if norm not in NORMS:
        raise choice_error("norm", norm, NORMS)
    builder = BUILDERS[architecture]
    if architecture == "resnet":
        builder = functools.partial(resnet, norm=norm)
    with torch.device("meta"):
        model = builder(input_shape, widths, num_classes)
    model = model.to_empty(device="cpu")  # the generator is a CPU generator
    with torch.no_grad():
        for module in model.modules():
            _initialise(module, generator)
    return model


def _initialise(module: nn.Module, generator: torch.Generator) -> None:
    """Initialise ``module``'s own parameters and buffers (see :func:`build_network`)."""
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
        bound = 1.0 / math.sqrt(module.weight[0].numel())
        nn.init.uniform_(module.weight, -bound, bound, generator=generator)
        if module.bias is not None:
            nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, generator=generator)
    elif isinstance(module, nn.LayerNorm | nn.GroupNorm | nn.BatchNorm2d):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
    elif (
        next(module.parameters(recurse=False), None) is not None
        or next(module.buffers(recurse=False), None) is not None
    ):
        raise InvalidConfigError(f"no initialisation is defined for {type(module).__name__}")


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
    if INPUTS[architecture] != "images":
        return torch.contiguous_format
    if choice == "auto":
        choice = FASTEST_MEMORY_FORMAT.get((torch.device(device).type, architecture), "contiguous")
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format
