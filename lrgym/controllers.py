"""Learning-rate controllers: what sets eta at every step of a training run.

A controller is any object with the two methods of :class:`Controller`. The training loop calls
:meth:`Controller.reset` once with eta_0, then :meth:`Controller.learning_rate` before every step
with a :class:`ControlState`. A neural-network controller only needs those two methods too::

    class MyController(Controller):
        def __init__(self, net): self.net = net
        def reset(self, eta0): self.eta0 = eta0
        def learning_rate(self, state):
            if state.features is None:
                return self.eta0
            return float(self.net(torch.as_tensor(state.features)).exp())
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lrgym.errors import InvalidConfigError, choice_error

DEFAULT_LR_BOUNDS = (1e-8, 10.0)
"""Default clipping range of the learning rate a log-linear controller sets."""


@dataclass(frozen=True)
class ControlState:
    """What a controller sees before step ``step``.

    Attributes:
        step: the 1-based index of the step about to be taken.
        features: ``phi_hat = [a1, a2, u1, u2, 1]`` after the previous step (float64, ``(5,)``),
            or ``None`` before the first step, when no features exist yet.
        previous_lr: the learning rate of the previous step (eta_0 before the first).
        eta0: the task's initial learning rate.
        total_steps: the run's number of steps.
    """

    step: int
    features: np.ndarray | None
    previous_lr: float
    eta0: float
    total_steps: int


class Controller(ABC):
    """The protocol every controller follows."""

    def reset(self, eta0: float) -> None:  # noqa: B027 - optional hook, stateless by default
        """Called once at the start of a run."""

    @abstractmethod
    def learning_rate(self, state: ControlState) -> float:
        """The learning rate (> 0) for the step described by ``state``."""


def _bounds(lr_bounds: Sequence[float]) -> tuple[float, float]:
    low, high = (float(b) for b in lr_bounds)
    if not 0.0 < low <= high < math.inf:
        raise InvalidConfigError(f"lr_bounds={tuple(lr_bounds)!r} must satisfy 0 < low <= high")
    return low, high


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
        low, high = _bounds(lr_bounds)
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


class ConstantController(Controller):
    """A constant learning rate: ``lr`` if given, else the task's eta_0."""

    def __init__(self, lr: float | None = None) -> None:
        if lr is not None and not (0.0 < lr < math.inf):
            raise InvalidConfigError(f"lr={lr!r} must be a positive finite number")
        self.lr = lr

    def learning_rate(self, state: ControlState) -> float:
        return state.eta0 if self.lr is None else self.lr


SCHEDULES = ("exponential", "step", "cosine")


class ScheduleController(Controller):
    """A fixed schedule, eta_t = eta_0 * m(t), for comparison with learned controllers.

    ``kind``:

    * ``"exponential"``: ``m(t) = decay ** (t - 1)``;
    * ``"step"``: ``m(t) = decay ** floor((t - 1) / every)`` (the "waterfall" scheme);
    * ``"cosine"``: ``m(t) = final + (1 - final) (1 + cos(pi (t - 1) / T)) / 2``, ``T`` the
      run's steps, ``final = decay``.
    """

    def __init__(self, kind: str, *, decay: float = 0.5, every: int = 100) -> None:
        if kind not in SCHEDULES:
            raise choice_error("kind", kind, SCHEDULES)
        if not 0.0 < decay <= 1.0:
            raise InvalidConfigError(f"decay={decay!r} must lie in (0, 1]")
        if every < 1:
            raise InvalidConfigError(f"every={every!r} must be >= 1")
        self.kind, self.decay, self.every = kind, float(decay), int(every)

    def learning_rate(self, state: ControlState) -> float:
        t = state.step - 1
        if self.kind == "exponential":
            factor = self.decay**t
        elif self.kind == "step":
            factor = self.decay ** (t // self.every)
        else:
            cos = (1.0 + math.cos(math.pi * t / max(state.total_steps, 1))) / 2.0
            factor = self.decay + (1.0 - self.decay) * cos
        return state.eta0 * factor
