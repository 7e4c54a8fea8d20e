"""The features of each training step, one method per phase of the step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from lrgym.errors import InvalidConfigError
from lrgym.features.config import EPS, FeatureConfig, log_variance
from lrgym.features.direction import sgd_direction
from lrgym.features.estimate import EveryKEstimate, StepPlan
from lrgym.features.probe import DirectionalProbe
from lrgym.features.smoother import FeatureSmoother


class StepProbe:
    """Computes ``phi1`` and ``phi2`` of every optimiser step and keeps their running statistics.

    It owns everything the features need across steps: the hooks that record the forward and
    backward passes (:class:`DirectionalProbe`), the step plan and every-k estimate
    (:class:`~lrgym.features.estimate.EveryKEstimate`) and the smoother. The caller runs, per
    step: the forward and backward passes (recorded as the probe planned them before the
    forward), :meth:`after_backward`, :meth:`before_update`, the optimiser's step,
    :meth:`after_update`; the probe then plans the next step's recording itself.

    Args:
        model: the model (its forward returns one tensor, batch first).
        optimizer: its optimiser, over (some of) the model's parameters.
        config: the feature settings.
        loss_reduction: ``"mean"`` or ``"sum"``: how the backpropagated loss was formed.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: FeatureConfig,
        loss_reduction: str,
    ) -> None:
        self.config, self.loss_reduction = config, loss_reduction
        self.params = [p for _, p in model.named_parameters()]
        optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self._optimised = [id(p) in optimised for p in self.params]
        self.recorder = DirectionalProbe(
            model, trainable=[p for p in self.params if id(p) in optimised]
        )
        self._all_params = [i for i, opt in enumerate(self._optimised) if opt]
        self.smoother = FeatureSmoother(config.gamma)
        self.estimate = EveryKEstimate(config)
        self._direction = sgd_direction(optimizer, self.params)
        self.steps_done = 0
        # this step's update: which parameters were copied before it, and how dw is read
        self._tracked: list[int] = []
        self._before: list[torch.Tensor] = []
        self._along_direction = False
        self._forward_mode = False
        self._plan = self._before_forward()

    def _before_forward(self) -> StepPlan:
        """Record what the next step's features need during its forward pass."""
        probe, estimate = self.recorder, self.estimate
        plan = estimate.plan(self.steps_done, probe.mixing())
        probe.keep_inputs = plan.forward_only
        if plan.record:
            probe.start(estimate.recorded_layers(plan))
        else:
            probe.stop()
            probe.attach()
        return plan

    def after_backward(self, losses: torch.Tensor) -> None:
        """Check the step's per-example ``losses`` (1-D) against the recorded passes.

        Raises:
            InvalidConfigError: the model's forward returned something other than one tensor,
                no forward or no backward pass was recorded since the last step, or
                ``losses`` is not one loss per recorded example.
        """
        probe = self.recorder
        if probe.non_tensor_output:
            raise InvalidConfigError(
                f"{type(probe.model).__name__}'s forward returned something other than one "
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
        if probe.examples != losses.numel():
            raise InvalidConfigError(
                f"losses has {losses.numel()} entries, but the forward passes that were "
                f"backpropagated since the last step saw {probe.examples} examples: pass one "
                "loss per example (reduction='none'), of every micro-batch"
            )

    def before_update(self, lr: float) -> None:
        """Just before the optimiser's step at learning rate ``lr``: stop recording and copy
        the parameters whose update ``dw`` will be measured."""
        plan, probe = self._plan, self.recorder
        probe.stop()  # the optimiser's step and the features' passes are not to be recorded
        self._along_direction = plan.record and lr > 0 and self._direction is not None
        self._forward_mode = plan.exact and (plan.forward_only or probe.needs_parameters_before())
        if self._forward_mode:
            tracked = self._all_params  # forward-mode AD reruns the passes at w_before
        elif self._along_direction or not plan.record:
            tracked = []  # dw is read from the optimiser, or not needed
        else:
            tracked = self._all_params if plan.exact else self.estimate.parameters
        self._tracked = tracked
        self._before = [self.params[i].detach().clone() for i in tracked]

    def after_update(self, losses: torch.Tensor, step_size: float) -> tuple[float, float]:
        """Just after the optimiser's step, which applied ``dw = -step_size d``: the step's raw
        ``(phi1, phi2)`` (``phi1`` NaN when it could not be computed, both NaN for a non-finite
        loss, which is not folded in), folded into :attr:`smoother`."""
        plan, probe, estimate = self._plan, self.recorder, self.estimate
        self.steps_done += 1
        if not math.isfinite(float(losses.mean())):
            probe.clear()
            self._plan = self._before_forward()
            return math.nan, math.nan
        log_lr2 = 2.0 * math.log(step_size) if step_size > 0 else -math.inf
        if plan.record:
            phi1 = self._phi1_from_records(step_size)
            if self._along_direction:  # measured along d, and dw = -lr d
                phi1 += log_lr2
            if plan.exact:
                estimate.held = phi1 - log_lr2
        else:  # "hold": only the learning-rate term moves
            phi1 = max(estimate.held + log_lr2, math.log(EPS))
        probe.clear()
        self._before = []
        if math.isfinite(phi1):
            self.smoother.update(0, phi1)
        phi2 = log_variance(losses)
        self.smoother.update(1, phi2)
        self._plan = self._before_forward()
        return phi1, phi2

    def shift_first_phi1(self, shift: float) -> None:
        """Move the first step's ``phi1`` (its smoothed average, which it initialised) by
        ``shift``: ``2 ln(eta / r)`` when the step measured at rate ``r`` was taken at ``eta``
        (the probe start of :class:`lrgym.ControlledLR`).

        Raises:
            RuntimeError: called after another step than the first.
        """
        if self.steps_done != 1:
            raise RuntimeError(f"shift_first_phi1 after step {self.steps_done}, not the first")
        self.smoother.average[0] += shift  # NaN (no phi1 yet) stays NaN

    def features(self) -> np.ndarray | None:
        """``phi_hat = [a1, a2, u1, u2, 1]`` after the last step (``None`` before the first)."""
        return self.smoother.vector() if self.steps_done else None

    def remove(self) -> None:
        """Take the hooks off the model and drop what was recorded."""
        self.recorder.detach()
        self.recorder.clear()

    def state_dict(self) -> dict[str, Any]:
        """The step count, the smoother's statistics and the every-k estimate's state."""
        return {
            "steps_done": self.steps_done,
            "average": list(self.smoother.average),
            "uncertainty": list(self.smoother.uncertainty),
            **self.estimate.state_dict(self.recorder.layers),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (extra keys are ignored) and plan the next step."""
        self.steps_done = int(state["steps_done"])
        self.smoother.average = [float(v) for v in state["average"]]
        self.smoother.uncertainty = [float(v) for v in state["uncertainty"]]
        self.estimate.load_state_dict(state, self.recorder)
        self.recorder.clear()
        self._plan = self._before_forward()

    @property
    def _scale(self) -> float:
        """``1 / c`` of the backpropagated loss ``c sum_i f_i``."""
        return float(self.recorder.examples) if self.loss_reduction == "mean" else 1.0

    def _phi1_from_records(self, lr: float) -> float:
        """phi1 from the recorded layers, along ``d`` when the step is read from the optimiser
        else along ``dw`` (forward-mode AD: the parameters before the step are all copied)."""
        tracked, before = self._tracked, self._before
        update: list[torch.Tensor | None] = [None] * len(self.params)
        if self._along_direction:
            assert self._direction is not None
            update = list(self._direction())
        else:
            after = torch._foreach_sub([self.params[i].detach() for i in tracked], before)
            for i, dw in zip(tracked, after, strict=True):
                update[i] = dw
        for i, given in enumerate(update):  # parameters the optimiser does not update
            if given is None and not self._optimised[i]:
                update[i] = torch.zeros_like(self.params[i])
        params_before: list[torch.Tensor] = []  # only forward-mode AD reads them
        if self._forward_mode:
            params_before = [p.detach() for p in self.params]
            for i, w in zip(tracked, before, strict=True):
                params_before[i] = w
        unit = 1.0 if self._along_direction else lr  # the update is unit * d
        return self._contract_phi1(update, params_before, unit)

    def _contract_phi1(
        self, update: list[torch.Tensor | None], params_before: list[torch.Tensor], unit: float
    ) -> float:
        """Exact phi1 of ``update = unit * d``, or on in-between steps the every-k estimate."""
        plan, probe, scale = self._plan, self.recorder, self._scale
        shares = probe.layer_shares(update)
        if not plan.exact:
            return self.estimate.between(shares, unit, scale, probe.examples)
        derivative = probe.directional_derivatives(
            update,  # type: ignore[arg-type]  # complete on exact steps
            scale=scale,
            params_before=params_before,
            shares=shares,
            every_parameter=plan.forward_only,
        )
        if plan.regression and unit > 0.0:
            self.estimate.fit(probe, shares, derivative, unit, scale)
        return log_variance(derivative)
