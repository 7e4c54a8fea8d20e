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

    With ``max_change`` (an option, not the paper's: the bounded form) the rate changes by at
    most that factor per step either way, ``eta_{t-1} / max_change <= eta_t <= eta_{t-1} *
    max_change``, applied after the log-linear rule and its clipping to ``lr_bounds``. Across
    families one ``theta`` overshoots the rate it settles to when the first features are far
    from that rate's (``docs/mixture``); the bound turns the jump into a ramp the features can
    follow.

    Args:
        theta: 5 controller parameters, one per entry of ``phi_hat``.
        relative: use the relative form.
        lr_bounds: ``(low, high)`` clipping range of eta.
        max_change: the largest factor by which the rate may change per step (finite,
            ``> 1``), or ``None`` for no bound (the paper's controller).

    Raises:
        InvalidConfigError: ``theta`` is not 5 finite numbers, or ``lr_bounds`` or
            ``max_change`` is out of range.
    """

    chooses_ahead = True

    def __init__(
        self,
        theta: Sequence[float] | np.ndarray,
        *,
        relative: bool = False,
        lr_bounds: Sequence[float] = DEFAULT_LR_BOUNDS,
        max_change: float | None = None,
    ) -> None:
        self.theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        if self.theta.shape != (5,) or not np.all(np.isfinite(self.theta)):
            raise InvalidConfigError(f"theta={theta!r} must be 5 finite numbers")
        self.relative = bool(relative)
        low, high = checked_bounds(lr_bounds)
        self._log_low, self._log_high = math.log(low), math.log(high)
        self.max_change = checked_max_change(max_change)

    def learning_rate(self, state: ControlState) -> float:
        if state.features is None:
            return min(max(state.eta0, math.exp(self._log_low)), math.exp(self._log_high))
        log_lr = float(self.theta @ state.features)
        if self.relative:
            log_lr += math.log(state.previous_lr)
        if math.isnan(log_lr):
            log_lr = self._log_low
        eta = math.exp(min(max(log_lr, self._log_low), self._log_high))
        if self.max_change is None:
            return eta
        previous = state.previous_lr  # inside lr_bounds: every rate before was clipped to them
        return min(max(eta, previous / self.max_change), previous * self.max_change)


def checked_max_change(max_change: float | None) -> float | None:
    """``max_change`` as a float, or ``None``.

    Raises:
        InvalidConfigError: unless ``None`` or a finite number ``> 1``.
    """
    if max_change is None:
        return None
    if isinstance(max_change, bool) or not isinstance(max_change, (int, float)):
        raise InvalidConfigError(f"max_change={max_change!r} must be a number > 1 or None")
    if not 1.0 < float(max_change) < math.inf:
        raise InvalidConfigError(
            f"max_change={max_change!r} must be a finite number > 1 (the largest factor by "
            "which the rate may change per step), or None for no bound"
        )
    return float(max_change)
