"""The features of one batch and one update, computed from scratch."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lrgym.errors import InvalidConfigError
from lrgym.features.config import log_variance, per_example_losses
from lrgym.features.probe import DirectionalProbe


def base_features(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    update: Mapping[str, torch.Tensor],
) -> tuple[float, float]:
    """``(phi1, phi2)`` of one batch and one update, computed from scratch.

    Leaves the model's parameters, ``.grad``, buffers (BatchNorm's running statistics) and mode
    untouched. With BatchNorm in train mode, example ``i``'s loss depends on the whole batch;
    ``grad f_i^T dw`` is then its derivative with the batch held fixed.

    Args:
        model: a classifier mapping ``inputs`` to logits ``(B, classes)``, or a sequence
            model mapping them to ``(B, T, V)`` (see :func:`per_example_losses`).
        inputs: a batch, ``(B, ...)`` (token ids ``(B, T)`` int64 for a sequence model).
        targets: class labels ``(B,)``, or token ids ``(B, T)``; int64.
        update: parameter name (as in ``model.named_parameters()``) to ``dw``, shaped like the
            parameter; a parameter left out has ``dw = 0``.

    Raises:
        InvalidConfigError: ``update`` names a parameter the model does not have, or a shape
            differs.
    """
    params = dict(model.named_parameters())
    unknown = sorted(set(update) - set(params))
    if unknown:
        raise InvalidConfigError(
            f"update names unknown parameters {unknown}; the model has {sorted(params)}"
        )
    dws = []
    for name, param in params.items():
        dw = update.get(name)
        if dw is None:
            dw = torch.zeros_like(param)
        elif tuple(dw.shape) != tuple(param.shape):
            raise InvalidConfigError(
                f"update[{name!r}] has shape {tuple(dw.shape)}, the parameter {tuple(param.shape)}"
            )
        dws.append(dw.detach().to(param.dtype))
    probe = DirectionalProbe(model, trainable=params.values(), keep_inputs=True)
    before = [p.detach() for p in params.values()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    probe.start()
    try:
        with torch.enable_grad():
            losses = per_example_losses(model(inputs), targets)
            trainable = [p for p in params.values() if p.requires_grad]
            grads = torch.autograd.grad(losses.mean(), trainable, allow_unused=True)
        probe.stop()
        batch = inputs.shape[0]
        derivative = probe.directional_derivatives(dws, scale=batch, params_before=before)
        if not probe.needs_parameters_before():  # the contraction alone
            # sum_i grad f_i^T dw = B grad L^T dw. A weight also used outside its own layer
            # (tied weights, F.linear(x, layer.weight)) breaks the per-layer contraction and
            # this identity; forward-mode AD over every parameter is exact for any model.
            full = {id(p): g for p, g in zip(trainable, grads, strict=True) if g is not None}
            expected = batch * sum(
                float((full[id(p)].double() * dw.double()).sum())
                for p, dw in zip(params.values(), dws, strict=True)
                if id(p) in full
            )
            scale = float(derivative.abs().double().sum()) + abs(expected) + 1e-30
            if abs(float(derivative.double().sum()) - expected) > 1e-5 * scale:
                derivative = probe.directional_derivatives(
                    dws, scale=batch, params_before=before, every_parameter=True
                )
    finally:
        probe.detach()
        probe.clear()
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
    return log_variance(derivative), log_variance(losses)
