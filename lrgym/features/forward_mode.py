"""``grad f_i^T dw`` by forward-mode AD of the model's output, for the parameters the layer
contraction does not cover."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from lrgym.errors import InvalidConfigError
from lrgym.features.records import ForwardPass


def output_derivatives(
    model: nn.Module,
    parameter_names: Sequence[str],
    recorded: ForwardPass,
    names: Sequence[str],
    update: Sequence[torch.Tensor | None],
    params_before: Sequence[torch.Tensor],
) -> torch.Tensor:
    """``<g_out[i], (J dw)[i]>`` with ``J`` the Jacobian of the pass's output in the
    parameters ``names``, by forward-mode AD, ``(B,)`` float32.

    Runs the recorded pass again (the model's hooks must ignore it) with the random-number
    state it ran with, so dropout draws the same masks; BatchNorm's buffers are left as they
    are. ``parameter_names``: every parameter's name in ``model.named_parameters()`` order, the
    order of ``update`` and ``params_before``.
    """
    if recorded.args is None or recorded.rng is None:
        raise InvalidConfigError(
            "forward-mode AD needs the forward pass's inputs, which were not kept (the pass "
            "ran with gradients disabled)"
        )
    assert recorded.grad is not None
    values = dict(zip(parameter_names, params_before, strict=True))
    index = {n: i for i, n in enumerate(parameter_names)}
    tangents = []
    for n in names:
        dw = update[index[n]]
        tangents.append(torch.zeros_like(values[n]) if dw is None else dw.to(values[n].dtype))
    buffers = dict(model.named_buffers())
    args, kwargs, (cpu_state, cuda_states) = recorded.args, recorded.kwargs or {}, recorded.rng

    def output(*free: torch.Tensor) -> torch.Tensor:
        # copies: BatchNorm's running statistics stay as they are
        copies = {n: b.clone() for n, b in buffers.items()}
        state = {**values, **copies, **dict(zip(names, free, strict=True))}
        torch.set_rng_state(cpu_state)  # dropout draws the pass's masks again
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)
        return torch.func.functional_call(model, state, args, kwargs)

    devices = list(range(len(cuda_states)))
    try:  # fused attention kernels have no forward-mode derivative; the math one has
        with torch.random.fork_rng(devices=devices), sdpa_kernel(SDPBackend.MATH):
            primals = tuple(values[n] for n in names)
            tangent = torch.func.jvp(output, primals, tuple(tangents))[1]
    except RuntimeError as exc:
        raise InvalidConfigError(
            f"forward-mode differentiation of {type(model).__name__} failed ({exc}); "
            "every parameter outside covered layers (conv, linear, embedding, normalisation), "
            "and every parameter of a model with BatchNorm in train mode, is handled by "
            "forward-mode AD"
        ) from exc
    grad = recorded.grad.to(tangent.dtype)
    return torch.linalg.vecdot(tangent.flatten(1), grad.flatten(1)).detach().to(torch.float32)
