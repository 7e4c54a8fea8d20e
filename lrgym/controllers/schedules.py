"""Fixed learning rates: a constant, and schedules ``eta_t = eta_0 * m(t)``."""

from __future__ import annotations

import math

from lrgym.controllers.base import Controller, ControlState
from lrgym.errors import InvalidConfigError, choice_error


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
