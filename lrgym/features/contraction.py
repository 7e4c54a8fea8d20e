"""``grad f_i^T dw``'s share of a layer whose output is affine in its parameters given its
input (conv, linear, embedding, normalisation), by contracting what the normal
forward/backward pass holds with the layer applied to its own input, the update in place of
its parameters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lrgym.errors import InvalidConfigError
from lrgym.features.records import LayerRecord
from lrgym.tasks.cnn import covers_whole_input, flatten_alike

COVERED = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.Embedding, nn.LayerNorm, nn.GroupNorm)
"""The layer kinds whose share is contracted (other parameters go by forward-mode AD)."""

COVERED_IN_EVAL = (nn.modules.batchnorm._BatchNorm,)
"""Covered too when they keep running statistics: a pass in which they use them (eval mode) is
contracted; a pass in which some BatchNorm uses batch statistics goes by forward-mode AD as a
whole (each example's output then depends on the whole batch)."""


@dataclass(frozen=True)
class CoveredLayer:
    """A covered layer and the positions of its weight and bias in
    ``model.named_parameters()`` order (``None``: the layer has no such parameter)."""

    module: nn.Module
    weight: int | None
    bias: int | None

    @property
    def indices(self) -> list[int]:
        """The positions of its parameters, weight first."""
        return [i for i in (self.weight, self.bias) if i is not None]


def covered_layers(
    model: nn.Module, updated: set[int]
) -> tuple[list[CoveredLayer], list[CoveredLayer], set[int]]:
    """The model's covered layers with an updated parameter (``updated``: their ids), in
    module order: those always contracted (:data:`COVERED`), those contracted in eval mode only
    (:data:`COVERED_IN_EVAL` keeping running statistics), and the ids of both kinds'
    parameters. Everything else goes by forward-mode AD, e.g. a
    :class:`~torch.nn.MultiheadAttention`'s output projection, whose forward never runs (its
    weight is used functionally)."""
    position = {id(p): i for i, (_, p) in enumerate(model.named_parameters())}
    bypassed = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    always: list[CoveredLayer] = []
    in_eval: list[CoveredLayer] = []
    covered: set[int] = set()
    for module in model.modules():
        if isinstance(module, COVERED_IN_EVAL) and module.track_running_stats:
            kind = in_eval
        elif isinstance(module, COVERED) and id(module) not in bypassed:
            kind = always
        else:
            continue
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        own = [p for p in (weight, bias) if isinstance(p, nn.Parameter)]
        covered.update(id(p) for p in own)
        if any(id(p) in updated for p in own):
            at = [position[id(p)] if isinstance(p, nn.Parameter) else None for p in (weight, bias)]
            kind.append(CoveredLayer(module, at[0], at[1]))
    return always, in_eval, covered


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
        weight, bias: the layer's ``dw`` (``None`` for a parameter the layer has: not given,
            an error if some call's output reached the loss).
        active: ``(pass index, examples)`` of each pass that got a gradient, in order; the
            share covers their examples (zeros for a pass the layer was not part of).

    Returns:
        The share, or ``None`` when no call's output reached the loss.

    Raises:
        InvalidConfigError: a call's output does not have the pass's examples first.
    """
    batches = dict(active)
    per_pass: dict[int, torch.Tensor] = {}
    for record in records:
        if record.grad is None:  # the layer's output did not reach the loss
            continue
        if _missing(module, "weight", weight) or _missing(module, "bias", bias):
            raise ValueError(f"no update given for recorded layer {module}")
        share = contract(module, record, weight, bias)
        k = record.pass_index
        if k in batches and share.shape[0] != batches[k]:
            raise InvalidConfigError(
                f"{module}'s output {tuple(record.grad.shape)} does not have the forward "
                f"pass's {batches[k]} examples first: apply covered layers to batch-first "
                "inputs (e.g. position embeddings to positions expanded to (B, T))"
            )
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


def _missing(module: nn.Module, name: str, update: torch.Tensor | None) -> bool:
    return update is None and isinstance(getattr(module, name, None), nn.Parameter)


def is_dense(grad: torch.Tensor) -> bool:
    return grad.dim() <= 2 or grad.shape[2:].numel() == 1


def position_sums(grad: torch.Tensor) -> torch.Tensor:
    """A conv's output gradient ``(B, C, *positions)`` summed over positions, ``(B, C)``."""
    return grad.sum(dim=tuple(range(2, grad.dim())))


def contract(
    module: nn.Module,
    record: LayerRecord,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """``<grad[i], layer(x[i]; weight, bias)>`` for each example ``i`` of the recorded input
    ``x`` and output gradient ``grad``, shape ``(B,)``: ``layer`` is the layer's functional
    form, affine in its parameters, with ``weight`` and ``bias`` in their place (``None``
    where the layer has no such parameter). Entries past the batch dimension (positions,
    sequence tokens) are summed over.

    Works in the memory format the layer ran in (no copy of the activations); a spatial conv's
    bias share is ``sum_hw grad[i]`` dotted with the bias, which spares adding it everywhere."""
    x, grad = record.inputs, record.grad
    assert grad is not None
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        assert weight is not None
        if isinstance(module, nn.Conv2d) and is_dense(grad) and covers_whole_input(module, x):
            # a conv whose kernel covers its whole input is a matrix product (much faster on CPU)
            z = F.linear(*flatten_alike(x, weight), bias)
            return torch.linalg.vecdot(z, grad.flatten(1)).to(torch.float32)
        z = module._conv_forward(x, weight, None)
        share = torch.linalg.vecdot(*_rows_in_memory_order(z, grad))
        if bias is not None:
            sums = record.grad_sums if record.grad_sums is not None else position_sums(grad)
            share = share + sums @ bias
        return share.to(torch.float32)
    if isinstance(module, nn.Linear):
        assert weight is not None
        z = F.linear(x, weight, bias)
    else:
        z = _affine_with(module, x, weight, bias)
    return torch.linalg.vecdot(z.flatten(1), grad.flatten(1)).to(torch.float32)


def _affine_with(
    module: nn.Module, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """An embedding's or normalisation layer's output at ``x`` with ``weight`` and ``bias`` in
    place of its parameters (the derivative along them, the layer being affine in them)."""
    if isinstance(module, nn.Embedding):
        assert weight is not None
        # max_norm renormalises rows in place before the lookup, outside autograd: the
        # gradient, and so the contraction, is the plain lookup's
        z = F.embedding(x, weight)
        if module.padding_idx is not None:  # that row gets no gradient
            z = z.masked_fill((x == module.padding_idx).unsqueeze(-1), 0.0)
        return z
    if weight is None:  # x_hat + b: along db alone, x_hat * 0 + db
        assert bias is not None
        weight = torch.zeros_like(bias)
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(x, module.normalized_shape, weight, bias, module.eps)
    if isinstance(module, nn.GroupNorm):
        return F.group_norm(x, module.num_groups, weight, bias, module.eps)
    assert isinstance(module, COVERED_IN_EVAL)  # running statistics: affine in x as well
    return F.batch_norm(
        x, module.running_mean, module.running_var, weight, bias, False, 0.0, module.eps
    )


def _rows_in_memory_order(z: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``z`` and ``grad`` ``(B, C, H, W)`` (or ``(B, C, L)``) as ``(B, C*H*W)`` rows whose
    entries are in the same order, views where ``z``'s layout (contiguous or channels-last)
    allows."""
    if z.is_contiguous():
        return z.flatten(1), grad.contiguous().flatten(1)
    if z.dim() == 4 and z.is_contiguous(memory_format=torch.channels_last):
        grad = grad.contiguous(memory_format=torch.channels_last)
        return z.permute(0, 2, 3, 1).flatten(1), grad.permute(0, 2, 3, 1).flatten(1)
    return z.flatten(1), grad.flatten(1)
