"""Cutting the learning rate when the training loss stops falling (``ReduceLROnPlateau``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lrgym.controllers.base import Controller, ControlState
from lrgym.errors import InvalidConfigError


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
