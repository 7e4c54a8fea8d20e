"""``grad f_i^T dw``'s share of a conv or linear layer, by contracting what the normal
forward/backward pass holds with the layer applied to its own input."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lrgym.features.records import LayerRecord
from lrgym.tasks.cnn import covers_whole_input, flatten_alike

COVERED = (nn.Conv2d, nn.Linear)
"""The layer kinds whose share is contracted (the others go by forward-mode AD)."""


def sum_shares(
    shares: Iterable[torch.Tensor],
    examples: int,
    *,
    scale: float,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``scale`` times the sum of layer shares (see :meth:`DirectionalProbe.layer_shares`): the
    layers' part of ``grad f_i^T dw``, shape ``(N,)`` float32 (zeros for no shares)."""
    total = torch.zeros(examples, dtype=torch.float32, device=device)
    for share in shares:
        total += share
    return total.mul_(scale)


def layer_share(
    module: nn.Module,
    records: Iterable[LayerRecord],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    active: Sequence[tuple[int, int]],
) -> torch.Tensor | None:
    """A layer's share of ``c grad f_i^T dw`` from its recorded calls, shape ``(N,)`` float32.

    Args:
        module: the layer.
        records: its recorded calls.
        weight, bias: the layer's ``dw`` (``weight`` ``None``: not given, an error if some call's
            output reached the loss).
        active: ``(pass index, examples)`` of each pass that got a gradient, in order; the
            share covers their examples (zeros for a pass the layer was not part of).

    Returns:
        The share, or ``None`` when no call's output reached the loss.
    """
    per_pass: dict[int, torch.Tensor] = {}
    for record in records:
        if record.grad is None:  # the layer's output did not reach the loss
            continue
        if weight is None:
            raise ValueError(f"no update given for recorded layer {module}")
        share = contract(module, record, weight, bias)
        k = record.pass_index
        per_pass[k] = per_pass[k] + share if k in per_pass else share
    if not per_pass:
        return None
    if len(active) == 1 and active[0][0] in per_pass:
        return per_pass[active[0][0]]
    device = next(iter(per_pass.values())).device
    pieces = [
        per_pass[k] if k in per_pass else torch.zeros(batch, device=device) for k, batch in active
    ]
    return torch.cat(pieces)


def is_dense(grad: torch.Tensor) -> bool:
    return grad.dim() <= 2 or grad.shape[2:].numel() == 1


def contract(
    module: nn.Module, record: LayerRecord, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``<grad[i], layer(x[i]; weight, bias)>`` for each example ``i`` of the recorded input
    ``x`` and output gradient ``grad``, shape ``(B,)``.

    Works in the memory format the layer ran in (no copy of the activations); a spatial conv's
    bias share is ``sum_hw grad[i]`` dotted with the bias, which spares adding it everywhere."""
    x, grad = record.inputs, record.grad
    assert grad is not None
    if isinstance(module, nn.Conv2d) and is_dense(grad) and covers_whole_input(module, x):
        # a conv whose kernel covers its whole input is a matrix product (much faster on CPU)
        z = F.linear(*flatten_alike(x, weight), bias)
        return torch.linalg.vecdot(z, grad.flatten(1)).to(torch.float32)
    if isinstance(module, nn.Conv2d):
        z = module._conv_forward(x, weight, None)
        share = torch.linalg.vecdot(*_rows_in_memory_order(z, grad))
        if bias is not None:
            sums = record.grad_sums if record.grad_sums is not None else grad.sum(dim=(2, 3))
            share = share + sums @ bias
        return share.to(torch.float32)
    z = F.linear(x, weight, bias)
    return torch.linalg.vecdot(z.flatten(1), grad.flatten(1)).to(torch.float32)


def _rows_in_memory_order(z: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``z`` and ``grad`` ``(B, C, H, W)`` as ``(B, C*H*W)`` rows whose entries are in the same
    order, views where ``z``'s layout (contiguous or channels-last) allows."""
    if z.is_contiguous():
        return z.flatten(1), grad.contiguous().flatten(1)
    if z.is_contiguous(memory_format=torch.channels_last):
        grad = grad.contiguous(memory_format=torch.channels_last)
        return z.permute(0, 2, 3, 1).flatten(1), grad.permute(0, 2, 3, 1).flatten(1)
    return z.flatten(1), grad.flatten(1)
