"""The update's direction ``d`` (``dw = -eta d``): read from torch SGD, or remembered for the
hypergradient ``g_t . u_{t-1}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lrgym.errors import InvalidConfigError


class DirectionMemory:
    """Remembers the previous update's direction ``u_{t-1}`` (``dw_{t-1} = -eta_{t-1} u_{t-1}``)
    for :meth:`hypergradient`.

    Torch SGD with momentum keeps it in its momentum buffers; for any other optimiser the
    update is measured around the step (:meth:`before_update`, :meth:`after_update`) while
    :attr:`track` is on.

    Args:
        optimizer: the optimiser.
        params: the model's parameters, in ``model.named_parameters()`` order.
        track: remember each update's direction from the start.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], *, track: bool
    ) -> None:
        self.optimizer = optimizer
        self.params = list(params)
        # torch SGD with momentum keeps the previous update's direction in its buffers
        self.momentum_buffers = sgd_direction(optimizer, self.params) is not None and all(
            g["momentum"] for g in optimizer.param_groups
        )
        self.track = track
        """Remember each update's direction (not needed with torch SGD with momentum)."""
        self.previous: list[torch.Tensor] | None = None
        """``u_{t-1}`` per parameter, once an update was remembered."""
        self._before: list[torch.Tensor] = []

    def before_update(self) -> None:
        """Call just before the optimiser's step."""
        if self.track and not self.momentum_buffers:
            self._before = [p.detach().clone() for p in self.params]

    def after_update(self, step_size: float) -> None:
        """Call just after the optimiser's step, with the step size ``eta`` it applied."""
        if not self.track or self.momentum_buffers or step_size <= 0:
            return
        after = [p.detach() for p in self.params]
        dw = torch._foreach_sub(after, self._before)
        self.previous = list(torch._foreach_div(dw, -step_size))

    def hypergradient(self) -> float:
        """``g_t . u_{t-1}``: the gradient now dotted with the previous update's direction
        (``0`` before any update).

        Raises:
            InvalidConfigError: the direction is not tracked and the optimiser keeps no
                momentum buffers.
        """
        params = self.params
        if self.momentum_buffers:
            state = self.optimizer.state
            pairs = [(p.grad, state[p].get("momentum_buffer")) for p in params if p in state]
        else:
            if not self.track:
                raise InvalidConfigError(
                    "hypergradient() needs track_direction=True for this optimiser"
                )
            previous: list[torch.Tensor | None] = [None] * len(params)
            if self.previous is not None:
                previous = list(self.previous)
            pairs = list(zip((p.grad for p in params), previous, strict=True))
        total = 0.0
        for grad, direction in pairs:
            if grad is not None and direction is not None:
                total += float(torch.dot(grad.reshape(-1), direction.reshape(-1)))
        return total


def sgd_direction(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]
) -> Callable[[], list[torch.Tensor | None]] | None:
    """For plain torch SGD (no weight decay, dampening, Nesterov or maximize) the step is
    ``dw = -lr d`` with ``d`` the momentum buffer (or the gradient without momentum): a function
    that returns ``d`` per parameter (``params`` order; zeros for a parameter without a
    gradient, ``None`` for one the optimiser does not hold) after a step, which spares copying
    the parameters. ``None`` for any other optimiser, whose ``dw`` is measured as
    ``w_after - w_before``."""
    if not isinstance(optimizer, torch.optim.SGD):
        return None
    momentum: dict[int, float] = {}
    for group in optimizer.param_groups:
        if group["weight_decay"] or group["dampening"] or group["nesterov"] or group["maximize"]:
            return None
        for p in group["params"]:
            momentum[id(p)] = group["momentum"]

    def direction() -> list[torch.Tensor | None]:
        state = optimizer.state  # read now: load_state_dict replaces it
        out: list[torch.Tensor | None] = []
        for p in params:
            if id(p) not in momentum:
                out.append(None)
            elif p.grad is None:  # not stepped: dw = 0
                out.append(torch.zeros_like(p))
            else:
                out.append(state[p]["momentum_buffer"] if momentum[id(p)] else p.grad)
        return out

    return direction
