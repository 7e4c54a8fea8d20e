"""Hypergradient descent on the learning rate (Baydin et al. 2018)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lrgym.controllers.base import DEFAULT_LR_BOUNDS, Controller, ControlState, checked_bounds
from lrgym.errors import InvalidConfigError


class HypergradientController(Controller):
    """Hypergradient descent on the learning rate (Baydin et al. 2018, "Online Learning Rate
    Adaptation with Hypergradient Descent"): before each update,
    ``eta_t = eta_{t-1} + beta * g_t . u_{t-1}``, ``u_{t-1}`` the previous update's direction
    (the previous gradient for plain SGD, the momentum buffer with momentum, the optimiser's
    step divided by its learning rate otherwise; see :attr:`ControlState.hypergradient`).

    The authors recommend ``beta = 1e-3`` for SGD and SGD with Nesterov momentum (at
    ``eta_0 = 1e-3``) and ``beta = 1e-7`` for Adam (:data:`HYPERGRADIENT_BETA`). The additive
    rule can cross zero; eta is clipped to ``lr_bounds``.
    """

    needs_hypergradient = True

    def __init__(self, beta: float = 1e-3, *, lr_bounds: Sequence[float] = DEFAULT_LR_BOUNDS):
        if not 0.0 < beta < math.inf:
            raise InvalidConfigError(f"beta={beta!r} must be a positive finite number")
        self.beta = float(beta)
        self.low, self.high = checked_bounds(lr_bounds)

    def learning_rate(self, state: ControlState) -> float:
        if state.hypergradient is None:
            raise InvalidConfigError(
                "HypergradientController needs ControlState.hypergradient; the loop computes "
                "it for controllers with needs_hypergradient = True"
            )
        eta = state.previous_lr + self.beta * state.hypergradient
        if math.isnan(eta):
            eta = state.previous_lr
        return min(max(eta, self.low), self.high)


HYPERGRADIENT_BETA = {"sgd": 1e-3, "adam": 1e-7, "rmsprop": 1e-7, "adamw": 1e-7}
"""``beta`` per task optimiser: the authors' values for SGD (1e-3) and Adam (1e-7); RMSprop
and AdamW, which they did not run, take Adam's (RMSprop shares Adam's normalisation, AdamW is
Adam with decoupled weight decay)."""
