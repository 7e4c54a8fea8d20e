"""The controller protocol: what sets eta at every step of a training run.

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

from lrgym.errors import InvalidConfigError

DEFAULT_LR_BOUNDS = (1e-8, 10.0)
"""Default clipping range of the learning rate a log-linear controller sets."""


@dataclass(frozen=True)
class ControlState:
    """What a controller sees at step ``step``, after its backward pass, before the update.

    Attributes:
        step: the 1-based index of the step being taken.
        features: ``phi_hat = [a1, a2, u1, u2, 1]`` after the previous step (float64, ``(5,)``),
            or ``None`` before the first step, when no features exist yet. For a controller
            that sets :attr:`Controller.probes_first_step`, step 1's rate is asked with the
            features of the probe of the first batch.
        previous_lr: the learning rate of the previous step (eta_0 before the first; the
            probe's rate when step 1 is asked with the probe's features).
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

    probes_first_step: bool = False
    """Set to ``True`` to be asked for step 1's rate with the features of a probe of the
    first batch (:class:`lrgym.ControlledLR` takes the first step at the probe's rate, asks,
    undoes the step and takes it again at the rate returned), as the log-linear controller's
    probe start does."""

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


def checked_bounds(lr_bounds: Sequence[float]) -> tuple[float, float]:
    """``lr_bounds`` as ``(low, high)`` floats.

    Raises:
        InvalidConfigError: unless ``0 < low <= high < inf``.
    """
    low, high = (float(b) for b in lr_bounds)
    if not 0.0 < low <= high < math.inf:
        raise InvalidConfigError(f"lr_bounds={tuple(lr_bounds)!r} must satisfy 0 < low <= high")
    return low, high
