"""A learned learning-rate controller for any PyTorch training loop.

:class:`ControlledLR` takes a model, its optimiser and a controller (a pretrained one by name,
a controller file, or any :class:`lrgym.Controller`). Once per training step, after the
backward pass, ``control.step(losses)`` takes the optimiser's step, folds the step's features
into ``phi_hat`` and sets the next learning rate on every parameter group::

    control = lrgym.ControlledLR(model, optimizer, "mnist-sgd")
    for x, y in loader:
        optimizer.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")  # one loss per example
        losses.mean().backward()
        lr = control.step(losses)  # calls optimizer.step()

:func:`lrgym.train` runs on the same class, so a learned controller sees exactly the features
it was learned with.

What the features need from the loop:

* **The backpropagated loss** is the mean of the step's per-example losses
  (``loss_reduction="mean"``) or their sum (``"sum"``). With gradient accumulation over several
  forward/backward passes before one step, it is the mean over all the step's examples (with
  ``k`` equal micro-batches, each micro-batch's mean divided by ``k``, as usual), and
  ``control.step`` gets the losses of every micro-batch (a list, or one tensor).
* **The model's forward returns one tensor with the batch first** (logits, say); the per-example
  loss of example ``i`` may depend on nothing else of the output than its row ``i``.
* **The optimiser steps** ``dw = -eta d``: any ``torch.optim`` optimiser (weight decay, momentum
  and per-parameter scaling are part of ``d``); ``dw`` is measured, not assumed. Every
  parameter group gets the same rate.

How ``grad f_i^T dw`` is computed: layers affine in their parameters (conv, linear,
embedding, LayerNorm, GroupNorm, BatchNorm with running statistics) by a contraction of what
the normal forward/backward already holds (about one extra forward of those layers);
parameters of other layers and every parameter of a pass in which BatchNorm used
batch statistics (train mode: example ``i``'s loss then depends on the whole batch, and
``grad f_i^T dw`` is its derivative with the batch held fixed) by forward-mode AD of the
model's output, which runs the forward pass again (dropout draws the same masks again).
``feature_every=k`` computes ``phi1`` exactly every ``k`` steps only (see
:class:`lrgym.FeatureConfig`).

Not seen: submodules called directly instead of the model (call the model itself), and a conv
or linear layer's weight used outside that layer's own forward as well (tied weights): the
contraction then misses that use (:func:`lrgym.features.base_features` detects and handles it,
the loop cannot tell it from a clipped gradient).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from lrgym.controllers import Controller, ControlState, ScheduleController
from lrgym.controllers.files import SavedController, load_controller
from lrgym.errors import InvalidConfigError, LrgymError
from lrgym.features import FeatureConfig, FeatureSmoother
from lrgym.features.direction import DirectionMemory
from lrgym.features.step_probe import StepProbe
from lrgym.optimizers import applied_lr_reader

LOSS_REDUCTIONS = ("mean", "sum")
"""How the backpropagated loss was formed from the per-example losses."""

STATE_VERSION = 1
"""Version of :meth:`ControlledLR.state_dict`'s layout."""
PROBE_LR = 1e-3
"""The rate of the probe step of a controller with the probe start (``probes_first_step``):
the features it measures do not depend on it, up to the rounding of an update measured as a
difference of weights, which this rate keeps small for every optimiser lrgym trains with."""


@dataclass(frozen=True)
class StepOutcome:
    """One step's loss, raw features (``phi1`` is NaN on steps that skip it) and the step size
    the optimiser applied (its ``lr``, or what an adaptive optimiser made of it, see
    :func:`lrgym.optimizers.applied_lr`)."""

    loss: float
    phi1: float
    phi2: float
    lr: float


class ControlledLR:
    """Sets an optimiser's learning rate every step from the paper's features.

    Args:
        model: the model being trained (its forward returns one tensor, batch first).
        optimizer: a ``torch.optim`` optimiser over (some of) the model's parameters.
        controller: the name of a pretrained controller (:func:`lrgym.pretrained_controllers`),
            the path of a controller file, a :class:`lrgym.SavedController` (log-linear), or any
            :class:`lrgym.Controller`.
        eta0: the initial learning rate, used until features exist (default: the optimiser's
            ``lr``; a controller with the probe start, ``start="probe"``, does not use it).
        total_steps: the run's number of steps, for controllers that need it (schedules).
        features: feature settings (default: the controller file's, else
            :class:`lrgym.FeatureConfig`'s defaults).
        feature_every: compute ``phi1`` exactly every this many steps (overrides
            ``features.every``).
        loss_reduction: ``"mean"`` or ``"sum"``: how the backpropagated loss was formed from the
            per-example losses.

    Raises:
        InvalidConfigError: no parameters, parameters the optimiser holds that are not the
            model's, a policy controller file, or a bad setting.
        ControllerFileError: an unknown pretrained name or an unreadable controller file.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        controller: Controller | SavedController | str | os.PathLike[str],
        *,
        eta0: float | None = None,
        total_steps: int | None = None,
        features: FeatureConfig | None = None,
        feature_every: int | None = None,
        loss_reduction: str = "mean",
    ) -> None:
        _check_arguments(model, optimizer, loss_reduction)
        self.model, self.optimizer = model, optimizer
        self.controller, saved_features = _resolve(controller)
        config = features or saved_features or FeatureConfig()
        if feature_every is not None:
            config = replace(config, every=feature_every)
        self.config = config
        self.loss_reduction = loss_reduction
        self.eta0 = float(optimizer.param_groups[0]["lr"] if eta0 is None else eta0)
        if not 0.0 < self.eta0 < math.inf:
            raise InvalidConfigError(f"eta0={self.eta0!r} must be a positive finite number")
        if total_steps is not None and total_steps < 1:
            raise InvalidConfigError(f"total_steps={total_steps!r} must be >= 1")
        if total_steps is None and isinstance(self.controller, ScheduleController):
            raise InvalidConfigError(
                f"a {self.controller.kind!r} schedule needs the run's length: pass total_steps"
            )
        self.total_steps = total_steps

        self.probe = StepProbe(model, optimizer, config, loss_reduction)
        """The features' state: hooks, step plan, every-k estimate, smoother."""
        self._applied_lr = applied_lr_reader(optimizer)  # None: the group's lr
        self._needs_hypergradient = bool(getattr(self.controller, "needs_hypergradient", False))
        self._direction = DirectionMemory(
            optimizer, self.probe.params, track=self._needs_hypergradient
        )
        self._ahead = bool(getattr(self.controller, "chooses_ahead", False))
        self._probes = bool(getattr(self.controller, "probes_first_step", False))
        if self._probes and self._applied_lr is not None:
            raise InvalidConfigError(
                f"the controller's probe start needs an optimiser whose update is its lr times "
                f"a direction, not {type(optimizer).__name__}; use the controller's "
                "start='eta0'"
            )
        self.last_step: StepOutcome | None = None
        """The last step's loss, raw features and applied step size."""
        self.controller.reset(self.eta0)
        self._lr = self.eta0
        if self._ahead:
            self._lr = self._ask(math.nan, None)
        self._set_lr(self._lr)

    # -- the public surface ---------------------------------------------------------------

    @property
    def lr(self) -> float:
        """The learning rate on the optimiser: the next step's for controllers that choose
        ahead (the paper's), else the last step's."""
        return self._lr

    @property
    def features(self) -> np.ndarray | None:
        """``phi_hat = [a1, a2, u1, u2, 1]`` after the last step (``None`` before the first)."""
        return self.probe.features()

    @property
    def smoother(self) -> FeatureSmoother:
        """The running averages and uncertainties of the features."""
        return self.probe.smoother

    @property
    def steps_done(self) -> int:
        """Optimiser steps taken."""
        return self.probe.steps_done

    @property
    def track_direction(self) -> bool:
        """Remember each update's direction, for :meth:`hypergradient` (on for controllers
        that need it; not needed with torch SGD with momentum)."""
        return self._direction.track

    @track_direction.setter
    def track_direction(self, value: bool) -> None:
        self._direction.track = bool(value)

    def step(self, losses: torch.Tensor | Sequence[torch.Tensor]) -> float:
        """Take the optimiser's step for the losses just backpropagated, update the features
        and set the next learning rate on every parameter group.

        Args:
            losses: the step's per-example losses, ``(B,)`` (``reduction="none"``), or a list
                of them, one per micro-batch, with gradient accumulation.

        Returns:
            The learning rate now on the optimiser: the next step's, for controllers that
            choose ahead (the paper's log-linear controller, constants, schedules); for the
            others (which read the step's loss or gradient) the one this step used, as the
            next is chosen after the next backward pass.

        Raises:
            InvalidConfigError: ``losses`` is not one loss per example of the forward passes
                since the last step, no backward pass ran, or the model's forward returned
                something other than one tensor.
        """
        values = self._check(losses)
        probing = self._probes and self.steps_done == 0
        if self._ahead or probing:
            if probing:
                outcome = self._probed_first_step(values)
            else:
                outcome = self._take_step(values, self._lr)
            finished = self.total_steps is not None and self.steps_done >= self.total_steps
            if self._ahead and not finished and math.isfinite(outcome.loss):
                self._lr = self._ask(math.nan, None)
                self._set_lr(self._lr)
        else:
            self._take_step(values, self._choose)
        return self._lr

    def step_with(
        self, losses: torch.Tensor | Sequence[torch.Tensor], lr: float | Callable[[float], float]
    ) -> StepOutcome:
        """Take the step at the learning rate ``lr`` instead of the controller's (the
        controller is not asked): for callers that choose it themselves. ``lr`` may be a
        function of the step's mean loss, called after the backward pass and before the update.
        """
        return self._take_step(self._check(losses), lr)

    def hypergradient(self) -> float:
        """``g_t . u_{t-1}`` between this step's backward pass and its update: the gradient
        dotted with the previous update's direction (``dw_{t-1} = -eta_{t-1} u_{t-1}``; for
        torch SGD with momentum the momentum buffer, otherwise the remembered step, which needs
        :attr:`track_direction`). ``0`` before any update."""
        return self._direction.hypergradient()

    def remove(self) -> None:
        """Take ControlledLR's hooks off the model (it cannot step afterwards)."""
        self.probe.remove()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-training, beside the model's and the optimiser's
        own state dicts (tensors and plain values, for ``torch.save``)."""
        return {
            "version": STATE_VERSION,
            "features": asdict(self.config),
            "lr": self._lr,
            "eta0": self.eta0,
            **self.probe.state_dict(),
            "previous_direction": self._direction.previous,
            "controller": _controller_state(self.controller),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (after loading the model's and the optimiser's).

        Raises:
            InvalidConfigError: the state is of another version or was saved with other
                feature settings.
        """
        if state.get("version") != STATE_VERSION:
            raise InvalidConfigError(
                f"ControlledLR state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        saved = FeatureConfig(**state["features"])
        if saved != self.config:
            raise InvalidConfigError(
                f"the state was saved with features {saved}, this ControlledLR uses "
                f"{self.config}: build it with features={saved}"
            )
        self._lr, self.eta0 = float(state["lr"]), float(state["eta0"])
        self.probe.load_state_dict(state)
        self._direction.previous = state["previous_direction"]
        if hasattr(self.controller, "load_state_dict"):
            self.controller.load_state_dict(state["controller"])
        self._set_lr(self._lr)

    # -- one step ---------------------------------------------------------------------------

    def _ask(self, loss: float, hypergradient: float | None, step: int | None = None) -> float:
        """The controller's rate for step ``steps_done + 1`` (or ``step``)."""
        t = self.steps_done + 1 if step is None else step
        state = ControlState(
            t,
            self.features,
            self._lr,
            self.eta0,
            self.total_steps or 0,
            loss,
            hypergradient,
        )
        lr = float(self.controller.learning_rate(state))
        if not (0.0 < lr < math.inf):
            raise InvalidConfigError(
                f"{type(self.controller).__name__} returned lr={lr!r} at step {t}; "
                "a learning rate must be a positive finite number"
            )
        return lr

    def _choose(self, loss: float) -> float:
        """Asked between the backward pass and the update (controllers that read the step)."""
        h = self.hypergradient() if self._needs_hypergradient else None
        return self._ask(loss, h)

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _check(self, losses: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The step's per-example losses as one detached 1-D tensor, after checking them
        against the recorded forward and backward passes."""
        values = _per_example_losses(losses)
        self.probe.after_backward(values)
        return values

    def _probed_first_step(self, losses: torch.Tensor) -> StepOutcome:
        """The first step of a controller with the probe start: the step at :data:`PROBE_LR`
        measures the first batch's features, the controller picks the rate from them (asked
        for step 1), and the step is taken again at that rate from the same weights and
        optimiser state. ``phi1`` is ``2 ln eta + V`` with ``V`` not depending on the rate, so
        the recorded ``phi1`` moves by ``2 ln(eta / PROBE_LR)``."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        weights = [p.detach().clone() for p in params]
        state = copy.deepcopy(self.optimizer.state_dict())
        probe = self._take_step(losses, PROBE_LR)
        if not math.isfinite(probe.loss):
            return probe  # a non-finite loss ends the run whatever the rate
        lr = self._ask(probe.loss, None, step=1)
        with torch.no_grad():
            for p, w in zip(params, weights, strict=True):
                p.copy_(w)
        self.optimizer.load_state_dict(state)
        self._set_lr(lr)
        self._lr = lr
        self._direction.before_update()
        self.optimizer.step()
        self._direction.after_update(lr)
        shift = 2.0 * (math.log(lr) - math.log(PROBE_LR))
        self.probe.shift_first_phi1(shift)
        self.last_step = replace(probe, phi1=probe.phi1 + shift, lr=lr)
        return self.last_step

    def _take_step(self, losses: torch.Tensor, lr: float | Callable[[float], float]) -> StepOutcome:
        loss_value = float(losses.mean())
        if callable(lr):
            lr = lr(loss_value) if math.isfinite(loss_value) else self._lr
        if not 0.0 <= lr < math.inf:
            raise InvalidConfigError(f"lr={lr!r} must be a finite number >= 0")
        self._set_lr(lr)
        self._lr = lr
        # dw = -step_size * d
        reader = self._applied_lr
        step_size = lr if reader is None or reader.after_step else reader(self.optimizer)
        self.probe.before_update(lr)
        self._direction.before_update()
        self.optimizer.step()
        if reader is not None and reader.after_step:  # Mechanic: its step computes it
            step_size = reader(self.optimizer)
        self._direction.after_update(step_size)
        phi1, phi2 = self.probe.after_update(losses, step_size)
        self.last_step = StepOutcome(loss_value, phi1, phi2, step_size)
        return self.last_step


def _check_arguments(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_reduction: str
) -> None:
    """Raise :class:`InvalidConfigError` for what ControlledLR cannot work with."""
    if not isinstance(model, nn.Module):
        raise InvalidConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InvalidConfigError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if loss_reduction not in LOSS_REDUCTIONS:
        raise InvalidConfigError(
            f"loss_reduction={loss_reduction!r} must be one of {LOSS_REDUCTIONS}"
        )
    named = list(model.named_parameters())
    if not any(p.requires_grad for _, p in named):
        raise InvalidConfigError(
            f"{type(model).__name__} has no parameters that require a gradient: there is "
            "nothing whose learning rate could be controlled"
        )
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    foreign = optimised - {id(p) for _, p in named}
    if foreign:
        raise InvalidConfigError(
            f"the optimizer holds {len(foreign)} parameter tensor(s) that are not "
            f"{type(model).__name__}'s: build the optimizer from model.parameters() (the "
            "features measure the update of the model's parameters)"
        )


def _per_example_losses(losses: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """``losses`` (one tensor, or one per micro-batch) as one detached 1-D tensor of at least
    two per-example losses."""
    if isinstance(losses, (list, tuple)):
        if not losses or not all(isinstance(x, torch.Tensor) for x in losses):
            raise InvalidConfigError(
                "losses must be a tensor of per-example losses or a non-empty list of them "
                "(one per micro-batch)"
            )
        if any(x.dim() != 1 for x in losses):
            shapes = [tuple(x.shape) for x in losses]
            raise InvalidConfigError(
                f"each micro-batch's losses must have shape (B,), got {shapes}: pass "
                "reduction='none' to the loss function"
            )
        values = torch.cat([x.detach().reshape(-1) for x in losses])
    elif isinstance(losses, torch.Tensor):
        if losses.dim() != 1:
            what = "a single number (a reduced loss)" if losses.dim() == 0 else "shape "
            what += "" if losses.dim() == 0 else str(tuple(losses.shape))
            raise InvalidConfigError(
                f"losses is {what}; control.step needs one loss per example, shape (B,): "
                "compute it with reduction='none' (e.g. F.cross_entropy(logits, y, "
                "reduction='none')) and backpropagate its mean"
            )
        values = losses.detach()
    else:
        raise InvalidConfigError(
            f"losses must be a torch.Tensor of per-example losses, got {type(losses).__name__}"
        )
    if values.numel() < 2:
        raise InvalidConfigError(
            f"losses has {values.numel()} entry; the features are variances over the "
            "step's examples and need at least 2"
        )
    return values


def _controller_state(controller: Controller) -> dict[str, Any]:
    state_dict = getattr(controller, "state_dict", None)  # optional for duck-typed controllers
    return dict(state_dict()) if callable(state_dict) else {}


def _resolve(
    controller: Controller | SavedController | str | os.PathLike[str],
) -> tuple[Controller, FeatureConfig | None]:
    """The controller object and, for a controller file, the features it was learned with."""
    if isinstance(controller, (str, os.PathLike)):
        controller = load_controller(controller)
    if isinstance(controller, SavedController):
        # no task at hand: a policy file raises, saying what its kind needs
        built = controller.controller()
        names = ("gamma", "every", "estimate")
        known = {k: v for k, v in controller.features.items() if k in names}
        try:
            config = FeatureConfig(**known)
        except LrgymError as exc:
            raise InvalidConfigError(f"the controller file's feature settings: {exc}") from None
        return built, config
    if isinstance(controller, Controller) or callable(getattr(controller, "learning_rate", None)):
        return controller, None
    raise InvalidConfigError(
        f"controller must be a pretrained controller's name, a controller file's path, a "
        f"SavedController or a Controller, got {type(controller).__name__}"
    )
