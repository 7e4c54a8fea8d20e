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

How ``grad f_i^T dw`` is computed: conv and linear layers by a contraction of what the normal
forward/backward already holds (about one extra forward of those layers); parameters of other
layers (normalisation layers, embeddings) and every parameter of a pass in which BatchNorm used
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
from lrgym.features import (
    EPS,
    DirectionalProbe,
    FeatureConfig,
    FeatureSmoother,
    ShareRegression,
    log_variance,
)
from lrgym.optimizers import applied_lr_reader

LOSS_REDUCTIONS = ("mean", "sum")
"""How the backpropagated loss was formed from the per-example losses."""

STATE_VERSION = 1
"""Version of :meth:`ControlledLR.state_dict`'s layout."""


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
            ``lr``).
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

        self._params = [p for _, p in named]
        self._optimised = [id(p) in optimised for p in self._params]
        self.probe = DirectionalProbe(
            model, trainable=[p for p in self._params if id(p) in optimised]
        )
        self._all_params = [i for i, opt in enumerate(self._optimised) if opt]
        self.smoother = FeatureSmoother(self.config.gamma)
        self._estimated_layers: tuple[nn.Module, ...] | None = None
        self._estimated_params: list[int] = []  # parameters of the estimated layers
        self._regression = ShareRegression()  # "dense"/"last": fitted at the exact steps
        self._held = 0.0  # "hold": phi1_s - 2 log eta_s
        self._direction = _sgd_direction(optimizer, self._params)
        self._applied_lr = applied_lr_reader(optimizer)  # None: the group's lr
        # torch SGD with momentum keeps the previous update's direction in its buffers
        self._momentum_buffers = self._direction is not None and all(
            g["momentum"] for g in optimizer.param_groups
        )
        self._needs_hypergradient = bool(getattr(self.controller, "needs_hypergradient", False))
        self.track_direction = self._needs_hypergradient
        """Remember each update's direction, for :meth:`hypergradient` (on for controllers
        that need it; not needed with torch SGD with momentum)."""
        self._direction_before: list[torch.Tensor] = []
        self._previous_direction: list[torch.Tensor] | None = None
        self._ahead = bool(getattr(self.controller, "chooses_ahead", False))
        self._forward_only = False  # this step's phi1 by forward-mode AD alone (see _arm)
        self.steps_done = 0
        self.last_step: StepOutcome | None = None
        """The last step's loss, raw features and applied step size."""
        self.controller.reset(self.eta0)
        self._lr = self.eta0
        if self._ahead:
            self._lr = self._ask(math.nan, None)
        self._set_lr(self._lr)
        self._arm()

    # -- the public surface ---------------------------------------------------------------

    @property
    def lr(self) -> float:
        """The learning rate on the optimiser: the next step's for controllers that choose
        ahead (the paper's), else the last step's."""
        return self._lr

    @property
    def features(self) -> np.ndarray | None:
        """``phi_hat = [a1, a2, u1, u2, 1]`` after the last step (``None`` before the first)."""
        return self.smoother.vector() if self.steps_done else None

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
        if self._ahead:
            self._take_step(values, self._lr)
            finished = self.total_steps is not None and self.steps_done >= self.total_steps
            if not finished and self.last_step is not None and math.isfinite(self.last_step.loss):
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
        params = self._params
        if self._momentum_buffers:
            state = self.optimizer.state
            pairs = [(p.grad, state[p].get("momentum_buffer")) for p in params if p in state]
        else:
            if not self.track_direction:
                raise InvalidConfigError(
                    "hypergradient() needs track_direction=True for this optimiser"
                )
            previous: list[torch.Tensor | None] = [None] * len(params)
            if self._previous_direction is not None:
                previous = list(self._previous_direction)
            pairs = list(zip((p.grad for p in params), previous, strict=True))
        total = 0.0
        for grad, direction in pairs:
            if grad is not None and direction is not None:
                total += float(torch.dot(grad.reshape(-1), direction.reshape(-1)))
        return total

    def remove(self) -> None:
        """Take ControlledLR's hooks off the model (it cannot step afterwards)."""
        self.probe.detach()
        self.probe.clear()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-training, beside the model's and the optimiser's
        own state dicts (tensors and plain values, for ``torch.save``)."""
        regression = self._regression
        estimated = None
        if self._estimated_layers is not None:
            layers = self.probe.layers
            estimated = [layers.index(m) for m in self._estimated_layers]
        return {
            "version": STATE_VERSION,
            "features": asdict(self.config),
            "steps_done": self.steps_done,
            "lr": self._lr,
            "eta0": self.eta0,
            "average": list(self.smoother.average),
            "uncertainty": list(self.smoother.uncertainty),
            "held": self._held,
            "estimated_layers": estimated,
            "regression": {
                "moments": regression.moments,
                "slope": regression._slope,
                "residual": regression._residual,
            },
            "previous_direction": self._previous_direction,
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
        self.steps_done = int(state["steps_done"])
        self._lr, self.eta0 = float(state["lr"]), float(state["eta0"])
        self.smoother.average = [float(v) for v in state["average"]]
        self.smoother.uncertainty = [float(v) for v in state["uncertainty"]]
        self._held = float(state["held"])
        estimated = state["estimated_layers"]
        if estimated is None:
            self._estimated_layers, self._estimated_params = None, []
        else:
            self._estimated_layers = tuple(self.probe.layers[i] for i in estimated)
            self._estimated_params = self.probe.parameter_indices(self._estimated_layers)
        regression = state["regression"]
        self._regression.moments = regression["moments"]
        self._regression._slope = regression["slope"]
        self._regression._residual = float(regression["residual"])
        self._previous_direction = state["previous_direction"]
        if hasattr(self.controller, "load_state_dict"):
            self.controller.load_state_dict(state["controller"])
        self._set_lr(self._lr)
        self.probe.clear()
        self._arm()

    # -- one step ---------------------------------------------------------------------------

    def _ask(self, loss: float, hypergradient: float | None) -> float:
        """The controller's rate for step ``steps_done + 1``."""
        t = self.steps_done + 1
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

    def _arm(self) -> None:
        """Record what the next step's features need during its forward pass.

        With BatchNorm using batch statistics, exact steps take ``grad f_i^T dw`` from
        forward-mode AD over every parameter; the layers are then recorded only where the
        regression of the every-k estimate needs their shares."""
        probe, config = self.probe, self.config
        exact = self.steps_done % config.every == 0
        regression = config.every > 1 and config.estimate != "hold"
        self._forward_only = exact and probe.mixing()
        probe.keep_inputs = self._forward_only
        if self._forward_only:
            if regression and self._estimated_layers is None:
                probe.start(None)  # every layer, once, to find the dense ones
            elif regression:
                probe.start(self._estimated_layers)
            else:
                probe.start(())
        elif exact:
            probe.start(None)
        elif regression:
            probe.start(self._estimated_layers)
        else:
            probe.stop()
            probe.attach()

    def _check(self, losses: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The step's per-example losses as one detached 1-D tensor, after checking them
        against the recorded forward and backward passes."""
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
        probe = self.probe
        if probe.non_tensor_output:
            raise InvalidConfigError(
                f"{type(self.model).__name__}'s forward returned something other than one "
                "tensor; ControlledLR needs the output (e.g. the logits) as one tensor with the "
                "batch first: wrap the model so that it returns it"
            )
        if probe.forward_passes == 0:
            raise InvalidConfigError(
                "no forward pass of the model with gradients was recorded since the last step: "
                "run the model's forward and backward pass before each control.step(losses) "
                "(and create ControlledLR before the first forward pass)"
            )
        if not probe.passes:
            raise InvalidConfigError(
                "control.step(losses) was called without a backward pass: call "
                "losses.mean().backward() before it"
            )
        if probe.examples != values.numel():
            raise InvalidConfigError(
                f"losses has {values.numel()} entries, but the forward passes that were "
                f"backpropagated since the last step saw {probe.examples} examples: pass one "
                "loss per example (reduction='none'), of every micro-batch"
            )
        return values

    def _take_step(self, losses: torch.Tensor, lr: float | Callable[[float], float]) -> StepOutcome:
        loss_value = float(losses.mean())
        if callable(lr):
            lr = lr(loss_value) if math.isfinite(loss_value) else self._lr
        if not 0.0 <= lr < math.inf:
            raise InvalidConfigError(f"lr={lr!r} must be a finite number >= 0")
        exact = self.steps_done % self.config.every == 0
        record = exact or self.config.estimate != "hold"
        probe = self.probe
        probe.stop()  # the optimiser's step and the features' passes are not to be recorded
        self._set_lr(lr)
        self._lr = lr
        # dw = -step_size * d
        step_size = lr if self._applied_lr is None else self._applied_lr(self.optimizer)
        direction = record and lr > 0 and self._direction is not None
        forward_mode = exact and (self._forward_only or probe.needs_parameters_before())
        if forward_mode:
            tracked = self._all_params  # forward-mode AD reruns the passes at w_before
        elif direction or not record:
            tracked = []  # dw is read from the optimiser, or not needed
        else:
            tracked = self._all_params if exact else self._estimated_params
        before = [self._params[i].detach().clone() for i in tracked]
        if self.track_direction:
            self._remember_direction_before()
        self.optimizer.step()
        self.steps_done += 1
        if self.track_direction:
            self._remember_direction_after(step_size)
        if not math.isfinite(loss_value):
            probe.clear()
            self._arm()
            self.last_step = StepOutcome(loss_value, math.nan, math.nan, step_size)
            return self.last_step
        log_lr2 = 2.0 * math.log(step_size) if step_size > 0 else -math.inf
        if record:
            phi1 = self._phi1_from_records(
                before, tracked, direction, exact, step_size, forward_mode
            )
            if direction:  # measured along d, and dw = -lr d
                phi1 += log_lr2
            if exact:
                self._held = phi1 - log_lr2
        else:  # "hold": only the learning-rate term moves
            phi1 = max(self._held + log_lr2, math.log(EPS))
        probe.clear()
        if math.isfinite(phi1):
            self.smoother.update(0, phi1)
        phi2 = log_variance(losses)
        self.smoother.update(1, phi2)
        self._arm()
        self.last_step = StepOutcome(loss_value, phi1, phi2, step_size)
        return self.last_step

    def _remember_direction_before(self) -> None:
        if self._momentum_buffers:
            return
        self._direction_before = [p.detach().clone() for p in self._params]

    def _remember_direction_after(self, step_size: float) -> None:
        if self._momentum_buffers or step_size <= 0:
            return
        after = [p.detach() for p in self._params]
        dw = torch._foreach_sub(after, self._direction_before)
        self._previous_direction = list(torch._foreach_div(dw, -step_size))

    @property
    def _scale(self) -> float:
        """``1 / c`` of the backpropagated loss ``c sum_i f_i``."""
        return float(self.probe.examples) if self.loss_reduction == "mean" else 1.0

    def _phi1_from_records(
        self,
        before: list[torch.Tensor],
        tracked: list[int],
        direction: bool,
        exact: bool,
        lr: float,
        forward_mode: bool,
    ) -> float:
        """phi1 from the recorded layers, along ``d`` when ``direction`` else along ``dw``
        (``forward_mode``: ``before`` holds every updated parameter, for forward-mode AD)."""
        update: list[torch.Tensor | None] = [None] * len(self._params)
        if direction:
            assert self._direction is not None
            update = list(self._direction())
        else:
            after = torch._foreach_sub([self._params[i].detach() for i in tracked], before)
            for i, dw in zip(tracked, after, strict=True):
                update[i] = dw
        for i, given in enumerate(update):  # parameters the optimiser does not update
            if given is None and not self._optimised[i]:
                update[i] = torch.zeros_like(self._params[i])
        params_before: list[torch.Tensor] = []  # only forward-mode AD reads them
        if forward_mode:
            params_before = [p.detach() for p in self._params]
            for i, w in zip(tracked, before, strict=True):
                params_before[i] = w
        unit = 1.0 if direction else lr  # the update is unit * d
        return self._contract_phi1(update, params_before, unit, exact)

    def _contract_phi1(
        self,
        update: list[torch.Tensor | None],
        params_before: list[torch.Tensor],
        unit: float,
        exact: bool,
    ) -> float:
        """Exact phi1 of ``update``, or on in-between steps the regression estimate.

        ``update = unit * d``; the regression works in units of ``d`` (see
        :class:`~lrgym.features.ShareRegression`)."""
        probe, scale = self.probe, self._scale
        shares = probe.layer_shares(update)
        if not exact:
            if unit <= 0.0 or self._estimated_layers is None:
                return math.log(EPS)  # no step was taken: dw = 0
            chosen = self._chosen_shares(shares, scale) / unit
            return math.log(unit * unit * self._regression.variance(chosen) + EPS)
        derivative = probe.directional_derivatives(
            update,  # type: ignore[arg-type]  # complete on exact steps
            scale=scale,
            params_before=params_before,
            shares=shares,
            every_parameter=self._forward_only,
        )
        if self.config.every > 1 and self.config.estimate != "hold" and unit > 0.0:
            if self._estimated_layers is None:
                dense = probe.dense_layers()
                layers = probe.layers
                estimate_dense = self.config.estimate == "dense" and 0 < len(dense) < len(layers)
                chosen_layers = dense if estimate_dense else layers[-1:]
                self._estimated_layers = tuple(chosen_layers)
                self._estimated_params = probe.parameter_indices(chosen_layers)
            chosen = self._chosen_shares(shares, scale)
            self._regression.fit(chosen / unit, (derivative - chosen.sum(dim=1)) / unit)
        return log_variance(derivative)

    def _chosen_shares(
        self, shares: Mapping[torch.nn.Module, torch.Tensor], scale: float
    ) -> torch.Tensor:
        """The estimated layers' shares of ``grad f_i^T dw`` as columns ``(N, p)`` (zeros for
        a layer whose output did not reach the loss)."""
        assert self._estimated_layers is not None
        n = self.probe.examples
        device = next(iter(shares.values())).device if shares else None
        columns = [
            shares[m] if m in shares else torch.zeros(n, device=device)
            for m in self._estimated_layers
        ]
        return torch.stack(columns, dim=1).mul_(scale)


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


def _sgd_direction(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]
) -> Callable[[], list[torch.Tensor | None]] | None:
    """For plain torch SGD (no weight decay, dampening, Nesterov or maximize) the step is
    ``dw = -lr d`` with ``d`` the momentum buffer (or the gradient without momentum): a function
    that returns ``d`` per parameter (``params`` order; zeros for a parameter without a
    gradient, ``None`` for one the optimiser does not hold) after a step, which spares copying
    the parameters. ``None`` for any other optimiser, whose ``dw`` is measured as
    ``w_after - w_before``."""
    if not isinstance(optimizer, torch.optim.SGD):
        return None
    momentum: dict[int, float] = {}
    for group in optimizer.param_groups:
        if group["weight_decay"] or group["dampening"] or group["nesterov"] or group["maximize"]:
            return None
        for p in group["params"]:
            momentum[id(p)] = group["momentum"]

    def direction() -> list[torch.Tensor | None]:
        state = optimizer.state  # read now: load_state_dict replaces it
        out: list[torch.Tensor | None] = []
        for p in params:
            if id(p) not in momentum:
                out.append(None)
            elif p.grad is None:  # not stepped: dw = 0
                out.append(torch.zeros_like(p))
            else:
                out.append(state[p]["momentum_buffer"] if momentum[id(p)] else p.grad)
        return out

    return direction
