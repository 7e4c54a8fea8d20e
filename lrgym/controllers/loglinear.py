"""The paper's log-linear controller, ``eta_t = exp(theta^T phi_hat_{t-1})``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lrgym.controllers.base import DEFAULT_LR_BOUNDS, Controller, ControlState, checked_bounds
from lrgym.errors import InvalidConfigError, choice_error

STARTS = ("eta0", "probe")
"""How a log-linear controller sets the first step's rate: ``"eta0"`` (the paper's) or
``"probe"`` (the rule's fixed point on the first batch)."""


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

    With ``start="probe"`` (an option, not the paper's: the probe start) the first step does not
    run at eta_0. :class:`lrgym.ControlledLR` first measures the first batch's features along
    the optimiser's first update (a probe it undoes), and the controller starts at the rate at
    which its own rule is its fixed point: on the first step ``phi_hat = [2 ln eta + V, phi2,
    0, 0, 1]`` with ``V = ln Var_i(grad f_i^T d)`` independent of the rate, so ``ln eta =
    theta^T phi_hat`` has the one solution ``(theta^T phi_hat_probe - 2 theta1 ln r) /
    (1 - 2 theta1)``, where ``phi_hat_probe`` was measured at the probe's rate ``r``. eta_0 is then
    never used: the run is the same from every eta_0. From the bottom, the middle and the top of
    the eta_0 ranges the paper's start lets one ``theta`` jump to rates that wreck the run
    (``docs/mixture``); the probe start begins where the rule would settle.

    Args:
        theta: 5 controller parameters, one per entry of ``phi_hat``.
        relative: use the relative form.
        lr_bounds: ``(low, high)`` clipping range of eta.
        max_change: the largest factor by which the rate may change per step (finite,
            ``> 1``), or ``None`` for no bound (the paper's controller).
        start: ``"eta0"`` (the paper's) or ``"probe"`` (see above; the absolute form only;
            where ``theta[0] >= 0.5`` the rule has no fixed point and the first step runs at
            eta_0).

    Raises:
        InvalidConfigError: ``theta`` is not 5 finite numbers, ``lr_bounds`` or
            ``max_change`` is out of range, or ``start`` is unknown (or ``"probe"`` with
            ``relative=True``).
    """

    chooses_ahead = True

    def __init__(
        self,
        theta: Sequence[float] | np.ndarray,
        *,
        relative: bool = False,
        lr_bounds: Sequence[float] = DEFAULT_LR_BOUNDS,
        max_change: float | None = None,
        start: str = "eta0",
    ) -> None:
        self.theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        if self.theta.shape != (5,) or not np.all(np.isfinite(self.theta)):
            raise InvalidConfigError(f"theta={theta!r} must be 5 finite numbers")
        self.relative = bool(relative)
        low, high = checked_bounds(lr_bounds)
        self._log_low, self._log_high = math.log(low), math.log(high)
        self.max_change = checked_max_change(max_change)
        self.start = checked_start(start, self.relative)
        self.probes_first_step = self.start == "probe"

    def learning_rate(self, state: ControlState) -> float:
        if state.features is None:
            return min(max(state.eta0, math.exp(self._log_low)), math.exp(self._log_high))
        if self.probes_first_step and state.step == 1:
            return self._fixed_point(state)
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

    def _fixed_point(self, state: ControlState) -> float:
        """The probe start: the rate whose own first-step features the rule maps to itself
        (the probe's features were measured at ``state.previous_lr``); eta_0 where the probe
        gave no finite features or ``theta[0] >= 0.5`` (no fixed point)."""
        assert state.features is not None
        theta1 = float(self.theta[0])
        log_probe = math.log(state.previous_lr)
        slope = 1.0 - 2.0 * theta1
        log_lr = math.nan
        if slope > 0.0:
            log_lr = (float(self.theta @ state.features) - 2.0 * theta1 * log_probe) / slope
        if not math.isfinite(log_lr):
            return min(max(state.eta0, math.exp(self._log_low)), math.exp(self._log_high))
        return math.exp(min(max(log_lr, self._log_low), self._log_high))


def checked_start(start: str, relative: bool) -> str:
    """``start`` after checking that the controller can start that way.

    Raises:
        InvalidConfigError: ``start`` is not one of :data:`STARTS`, or is ``"probe"`` for the
            relative form.
    """
    if start not in STARTS:
        raise choice_error("start", start, STARTS)
    if start == "probe" and relative:
        raise InvalidConfigError(
            "start='probe' needs the absolute form: the relative form's rule has no fixed "
            "rate to start from; use relative=False or start='eta0'"
        )
    return start


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


FORM_FIELDS = ("relative", "lr_bounds", "max_change", "start")
"""The settings that make a log-linear controller's form (beside ``theta``): what env settings
and controller files record, and what :func:`in_form` reads."""


def in_form(theta: Sequence[float] | np.ndarray, form: object) -> LogLinearController:
    """The log-linear controller of ``theta`` in the form of ``form``, any object with the
    attributes :data:`FORM_FIELDS` (env settings, a controller file)."""
    return LogLinearController(theta, **{name: getattr(form, name) for name in FORM_FIELDS})
