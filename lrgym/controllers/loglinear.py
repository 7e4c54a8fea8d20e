"""The paper's log-linear controller, ``eta_t = exp(theta^T phi_hat_{t-1})``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lrgym.controllers.base import DEFAULT_LR_BOUNDS, Controller, ControlState, checked_bounds
from lrgym.errors import InvalidConfigError


class LogLinearController(Controller):
    """The paper's controller ``eta_t = exp(theta^T phi_hat_{t-1})``, clipped to ``lr_bounds``.

    Before features exist (the first step) eta_0 is used. With ``relative=True`` the controller
    multiplies instead: ``eta_t = eta_{t-1} exp(theta^T phi_hat_{t-1})`` (an option; the paper
    and its reconstructions use the absolute form). Clipping happens in log space, so no
    ``theta`` overflows.

    Args:
        theta: 5 controller parameters, one per entry of ``phi_hat``.
        relative: use the relative form.
        lr_bounds: ``(low, high)`` clipping range of eta.
    """

    chooses_ahead = True

    def __init__(
        self,
        theta: Sequence[float] | np.ndarray,
        *,
        relative: bool = False,
        lr_bounds: Sequence[float] = DEFAULT_LR_BOUNDS,
    ) -> None:
        self.theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        if self.theta.shape != (5,) or not np.all(np.isfinite(self.theta)):
            raise InvalidConfigError(f"theta={theta!r} must be 5 finite numbers")
        self.relative = bool(relative)
        low, high = checked_bounds(lr_bounds)
        self._log_low, self._log_high = math.log(low), math.log(high)

    def learning_rate(self, state: ControlState) -> float:
        if state.features is None:
            return min(max(state.eta0, math.exp(self._log_low)), math.exp(self._log_high))
        log_lr = float(self.theta @ state.features)
        if self.relative:
            log_lr += math.log(state.previous_lr)
        if math.isnan(log_lr):
            log_lr = self._log_low
        return math.exp(min(max(log_lr, self._log_low), self._log_high))
