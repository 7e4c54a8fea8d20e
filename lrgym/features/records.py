"""What the probe records of a training step: layer calls and forward passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class LayerRecord:
    """One call of a layer: its input, the forward pass it belongs to, and the gradient of its
    output once backward ran (with, for a spatial conv with a bias, that gradient summed over
    positions, ``(B, C)``, taken while it is still in cache)."""

    inputs: torch.Tensor
    pass_index: int
    grad: torch.Tensor | None = None
    grad_sums: torch.Tensor | None = None


@dataclass
class ForwardPass:
    """One forward pass of the whole model whose output required a gradient.

    ``grad`` is the gradient of the output once backward ran. ``args``, ``kwargs`` and ``rng``
    (the random-number state before the pass, so dropout draws the same masks again) are kept
    only when forward-mode AD will need to run the pass again; ``mixing``: some BatchNorm layer
    used batch statistics, so each example's output depends on the whole batch."""

    mixing: bool
    batch: int = 0
    grad: torch.Tensor | None = None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    rng: tuple[torch.Tensor, list[torch.Tensor]] | None = None
