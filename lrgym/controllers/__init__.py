"""Learning-rate controllers: what sets eta at every step of a training run.

A controller is any object with the two methods of :class:`Controller`. The training loop
(:class:`lrgym.ControlledLR`, which :func:`lrgym.train` is built on) calls
:meth:`Controller.reset` once with eta_0, then :meth:`Controller.learning_rate` once per step
with a :class:`ControlState`: after the step's forward and backward pass and before the
optimiser's update, or, for controllers that set :attr:`Controller.chooses_ahead` (their choice
for step ``t`` needs nothing of step ``t`` itself), as soon as step ``t - 1`` is done. A
neural-network controller only needs those two methods too::

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrgym.errors import InvalidConfigError, choice_error

DEFAULT_LR_BOUNDS = (1e-8, 10.0)
"""Default clipping range of the learning rate a log-linear controller sets."""


@dataclass(frozen=True)
class ControlState:
    """What a controller sees at step ``step``, after its backward pass, before the update.

    Attributes:
        step: the 1-based index of the step being taken.
        features: ``phi_hat = [a1, a2, u1, u2, 1]`` after the previous step (float64, ``(5,)``),
            or ``None`` before the first step, when no features exist yet.
        previous_lr: the learning rate of the previous step (eta_0 before the first).
        eta0: the task's initial learning rate.
        total_steps: the run's number of steps.
        loss: this step's mini-batch loss (at the weights before the update); NaN for
            controllers asked ahead (:attr:`Controller.chooses_ahead`).
        hypergradient: ``g_t . u_{t-1}``, this step's gradient dotted with the previous
            update's direction (the update was ``-previous_lr * u_{t-1}``; for SGD with
            momentum ``u`` is the momentum buffer), ``0`` at the first step. Computed only for
            controllers whose :attr:`Controller.needs_hypergradient` is true (it costs a pass
            over the parameters), else ``None``.
    """

    step: int
    features: np.ndarray | None
    previous_lr: float
    eta0: float
    total_steps: int
    loss: float = math.nan
    hypergradient: float | None = None


class Controller(ABC):
    """The protocol every controller follows."""

    needs_hypergradient: bool = False
    """Set to ``True`` to receive :attr:`ControlState.hypergradient` (the default path skips
    it)."""

    chooses_ahead: bool = False
    """Set to ``True`` when the rate for step ``t`` depends only on ``features`` (phi_hat after
    step ``t - 1``), ``step``, ``previous_lr``, ``eta0`` and ``total_steps``, not on step
    ``t``'s loss or gradient. Such a controller is asked as soon as step ``t - 1`` is done, so
    the next rate is known, and set on the optimiser, between steps (the values are the same
    either way). The default asks after the step's backward pass, with everything."""

    def reset(self, eta0: float) -> None:  # noqa: B027 - optional hook, stateless by default
        """Called once at the start of a run."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to resume this controller mid-run (nothing for a
        stateless controller)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - stateless
        """Restore what :meth:`state_dict` returned."""

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

    chooses_ahead = True

    def __init__(self, lr: float | None = None) -> None:
        if lr is not None and not (0.0 < lr < math.inf):
            raise InvalidConfigError(f"lr={lr!r} must be a positive finite number")
        self.lr = lr

    def learning_rate(self, state: ControlState) -> float:
        return state.eta0 if self.lr is None else self.lr


SCHEDULES = ("exponential", "step", "cosine", "warmup-cosine")


class ScheduleController(Controller):
    """A fixed schedule, eta_t = eta_0 * m(t), for comparison with learned controllers.

    ``kind``:

    * ``"exponential"``: ``m(t) = decay ** (t - 1)``;
    * ``"step"``: ``m(t) = decay ** floor((t - 1) / every)`` (the "waterfall" scheme);
    * ``"cosine"``: ``m(t) = final + (1 - final) (1 + cos(pi (t - 1) / T)) / 2``, ``T`` the
      run's steps, ``final = decay`` (``decay=0`` anneals towards 0);
    * ``"warmup-cosine"``: linear warm-up ``m(t) = t / W`` over the first
      ``W = ceil(warmup * T)`` steps, then the cosine from 1 to ``final = decay`` over the rest.

    ``decay`` lies in ``(0, 1]`` (``[0, 1]`` for the cosine kinds).
    """

    chooses_ahead = True

    def __init__(
        self, kind: str, *, decay: float = 0.5, every: int = 100, warmup: float = 0.05
    ) -> None:
        if kind not in SCHEDULES:
            raise choice_error("kind", kind, SCHEDULES)
        cosine = kind in ("cosine", "warmup-cosine")  # these may anneal to 0
        if not (0.0 <= decay <= 1.0 and (decay > 0.0 or cosine)):
            raise InvalidConfigError(
                f"decay={decay!r} must lie in {'[0' if cosine else '(0'}, 1] for {kind!r}"
            )
        if every < 1:
            raise InvalidConfigError(f"every={every!r} must be >= 1")
        if not 0.0 < warmup < 1.0:
            raise InvalidConfigError(f"warmup={warmup!r} must lie in (0, 1)")
        self.kind, self.decay, self.every = kind, float(decay), int(every)
        self.warmup = float(warmup)

    def learning_rate(self, state: ControlState) -> float:
        t, total = state.step - 1, max(state.total_steps, 1)
        if self.kind == "exponential":
            factor = self.decay**t
        elif self.kind == "step":
            factor = self.decay ** (t // self.every)
        else:
            start = math.ceil(self.warmup * total) if self.kind == "warmup-cosine" else 0
            if t < start:
                return state.eta0 * (t + 1) / start
            cos = (1.0 + math.cos(math.pi * (t - start) / max(total - start, 1))) / 2.0
            factor = self.decay + (1.0 - self.decay) * cos
        return state.eta0 * factor


class PlateauController(Controller):
    """Cut the learning rate when the training loss stops falling:
    ``torch.optim.lr_scheduler.ReduceLROnPlateau`` fed the mean mini-batch loss of every
    ``interval`` steps (one "epoch" of the scheduler), starting from eta_0.

    The scheduler's own defaults are kept (``factor=0.1``, ``patience=10``,
    ``threshold=1e-4`` relative, ``cooldown=0``, ``min_lr=0``): after ``patience`` intervals
    without a new best mean loss, the rate is multiplied by ``factor``. A rate that reaches 0
    is held at ``min_positive``.
    """

    def __init__(
        self,
        *,
        interval: int = 20,
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        min_positive: float = 1e-12,
    ) -> None:
        if interval < 1 or patience < 0 or not 0.0 < factor < 1.0:
            raise InvalidConfigError(
                f"interval={interval!r} must be >= 1, patience={patience!r} >= 0 and "
                f"factor={factor!r} in (0, 1)"
            )
        self.interval, self.factor, self.patience = int(interval), float(factor), int(patience)
        self.threshold, self.min_positive = float(threshold), float(min_positive)
        self.reset(1.0)

    def reset(self, eta0: float) -> None:
        import torch

        holder = torch.nn.Parameter(torch.zeros(1))  # the scheduler drives an optimiser's lr
        self._optimizer = torch.optim.SGD([holder], lr=eta0)
        self._scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self._optimizer, factor=self.factor, patience=self.patience, threshold=self.threshold
        )
        self._sum, self._count = 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "scheduler": self._scheduler.state_dict(),
            "lr": float(self._optimizer.param_groups[0]["lr"]),
            "sum": self._sum,
            "count": self._count,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._scheduler.load_state_dict(dict(state["scheduler"]))
        self._optimizer.param_groups[0]["lr"] = float(state["lr"])
        self._sum, self._count = float(state["sum"]), int(state["count"])

    def learning_rate(self, state: ControlState) -> float:
        if math.isfinite(state.loss):
            self._sum += state.loss
            self._count += 1
        if self._count == self.interval:
            self._scheduler.step(self._sum / self._count)
            self._sum, self._count = 0.0, 0
        return max(float(self._optimizer.param_groups[0]["lr"]), self.min_positive)


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
        self.low, self.high = _bounds(lr_bounds)

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


HYPERGRADIENT_BETA = {"sgd": 1e-3, "adam": 1e-7, "rmsprop": 1e-7}
"""``beta`` per task optimiser: the authors' values for SGD (1e-3) and Adam (1e-7); RMSprop,
which they did not run, takes Adam's, whose update it shares the normalisation with."""
