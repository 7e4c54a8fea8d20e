"""The training loop: plain PyTorch, no Gymnasium.

:func:`train` runs one task under one controller and returns a :class:`TrainingResult`.
:class:`TrainingRun` is the same loop one step at a time, for callers that drive it themselves
(the environments measure the starting features with it).

Per step ``t = 1..T``: one mini-batch is drawn, forward, backward; the controller picks
``eta_t`` from ``phi_hat_{t-1}`` (``None`` at ``t = 1``, where controllers use eta_0) and the
step's loss (and, for controllers that ask, its hypergradient), every parameter group gets
``lr = eta_t``, the optimiser steps, and the features of that step's update are folded into
``phi_hat_t``. The learning-rate trace records the step size the optimiser applied: ``eta_t``,
or for optimisers that adapt it themselves their own (:func:`lrgym.optimizers.applied_lr`).
The training loss ``E`` is measured on a fixed evaluation sample of the task's training subset
at ``eval_points`` evenly spaced steps, the first before training. A non-finite loss ends the
run with ``diverged=True``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from lrgym.controllers import Controller, ControlState
from lrgym.data import ArrayDataset
from lrgym.errors import InvalidConfigError
from lrgym.features import (
    EPS,
    DirectionalProbe,
    FeatureConfig,
    FeatureSmoother,
    ShareRegression,
    log_variance,
    per_example_losses,
)
from lrgym.optimizers import applied_lr_reader, evaluation_mode, make_optimizer
from lrgym.tasks import Task, build_model, choose_memory_format

_CHUNK = 1000  # examples per forward pass when evaluating


@dataclass(frozen=True)
class StepOutcome:
    """One step's loss, raw features (``phi1`` is NaN on steps that skip it) and the step size
    the optimiser applied (its ``lr``, or what an adaptive optimiser made of it, see
    :func:`lrgym.optimizers.applied_lr`)."""

    loss: float
    phi1: float
    phi2: float
    lr: float


@dataclass(frozen=True, eq=False)
class Curves:
    """A run's curves, one object, so that vector environments can batch ``info`` (runs differ
    in length) and checkers can compare two runs (NaN equals NaN here).

    Attributes:
        losses: mini-batch loss of each completed step, ``(n,)`` float64.
        learning_rates: step size the optimiser applied at each completed step, ``(n,)`` (the
            controller's eta_t, or an adaptive optimiser's own, see :class:`StepOutcome`).
        features: ``phi_hat`` after each completed step, ``(n, 5)``.
        raw_features: ``(phi1, phi2)`` of each completed step, ``(n, 2)``.
        eval_steps: the steps after which ``E`` was measured (0 = before training), ``(S,)``.
        eval_losses: ``E`` at those steps, ``(S,)``; ``inf`` after a divergence.
    """

    losses: np.ndarray
    learning_rates: np.ndarray
    features: np.ndarray
    raw_features: np.ndarray
    eval_steps: np.ndarray
    eval_losses: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Curves):
            return NotImplemented
        pairs = ((getattr(self, f.name), getattr(other, f.name)) for f in fields(self))
        return all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f") for a, b in pairs)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """Everything a training run measured.

    Attributes:
        task: the task that was run.
        curves: the per-step and evaluation curves.
        test_loss: mean test loss at the end (``inf`` if diverged).
        test_accuracy: test accuracy at the end, in ``[0, 1]`` (0 if diverged: a diverged
            network is scored as useless rather than measured).
        diverged: whether a non-finite loss ended the run.
        wall_time: seconds the run took.
    """

    task: Task
    curves: Curves
    test_loss: float
    test_accuracy: float
    diverged: bool
    wall_time: float

    @property
    def steps_completed(self) -> int:
        """Number of optimiser steps taken."""
        return int(self.curves.losses.shape[0])

    @property
    def final_train_loss(self) -> float:
        """``E`` at the last evaluation point."""
        return float(self.curves.eval_losses[-1])


class TrainingRun:
    """A task's model, optimiser, data and feature state, advanced one step at a time.

    Args:
        task: the task.
        data: its dataset (``data.name`` must equal ``task.dataset``).
        features: how features are computed.
        eval_size: examples in the fixed evaluation sample of the training subset.
        device: torch device.
        memory_format: ``"auto"`` (the format measured fastest for the architecture on the
            device, :func:`lrgym.tasks.choose_memory_format`), ``"contiguous"`` or
            ``"channels_last"``. The model, its inputs and the feature contraction run in it.
    """

    def __init__(
        self,
        task: Task,
        data: ArrayDataset,
        *,
        features: FeatureConfig | None = None,
        eval_size: int = 1000,
        device: str | torch.device = "cpu",
        memory_format: str = "auto",
    ) -> None:
        if data.name != task.dataset:
            raise InvalidConfigError(f"task is for {task.dataset!r} but data is {data.name!r}")
        if eval_size < 1:
            raise InvalidConfigError(f"eval_size={eval_size!r} must be >= 1")
        self.task, self.data, self.device = task, data, torch.device(device)
        self.config = features or FeatureConfig()
        self._generator = torch.Generator().manual_seed(task.seed)
        self.memory_format = choose_memory_format(task.architecture, self.device, memory_format)
        self.model = build_model(
            task, data.input_shape, data.num_classes, self._generator, self.device
        ).to(memory_format=self.memory_format)
        n = data.train_x.shape[0]
        size = min(n, max(task.batch_size, 2, round(task.subset_fraction * n)))
        subset = torch.randperm(n, generator=self._generator)[:size]
        self._x, self._y = data.train_x[subset], data.train_y[subset]
        self._eval = torch.arange(min(eval_size, size))
        self._order = torch.empty(0, dtype=torch.int64)
        self._params = [p for _, p in self.model.named_parameters()]
        self.optimizer = make_optimizer(task, self._params)
        self.probe = DirectionalProbe(self.model)
        self.smoother = FeatureSmoother(self.config.gamma)
        self._all_params = list(range(len(self._params)))
        self._estimated_layers: tuple[torch.nn.Module, ...] | None = None
        self._estimated_params: list[int] = []  # parameters of the estimated layers
        self._regression = ShareRegression()  # "dense"/"last": fitted at the exact steps
        self._held = 0.0  # "hold": phi1_s - 2 log eta_s
        direction = _sgd_direction(self.optimizer)
        self._sgd_direction = direction if not self.probe.uncovered else None
        self._applied_lr = applied_lr_reader(self.optimizer)  # None: the group's lr
        # torch SGD with momentum keeps the previous update's direction in its buffers
        self._momentum_buffers = direction is not None and bool(
            self.optimizer.param_groups[0]["momentum"]
        )
        self.track_direction = False
        """Remember each update's direction, for :meth:`hypergradient` (set by the loop for
        controllers that need it; not needed with torch SGD with momentum)."""
        self._direction_before: list[torch.Tensor] = []
        self._previous_direction: list[torch.Tensor] | None = None
        self._lr = task.eta0
        self.steps_done = 0

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.task.batch_size
        if self._order.numel() < b:  # start a new pass over the subset
            fresh = torch.randperm(self._x.shape[0], generator=self._generator)
            self._order = torch.cat([self._order, fresh])
        idx, self._order = self._order[:b], self._order[b:]
        # index_select: ~10x faster than advanced indexing for a few rows of a big tensor
        rows = torch.index_select(self._x, 0, idx)
        return self._inputs(rows), torch.index_select(self._y, 0, idx).to(self.device)

    def _inputs(self, raw: torch.Tensor) -> torch.Tensor:
        inputs = self.data.normalise(raw).to(self.device)
        if inputs.dim() != 4:
            return inputs
        return inputs.contiguous(memory_format=self.memory_format)

    @torch.enable_grad()  # also when the caller (an RL library's rollout) disabled gradients
    def step(self, lr: float | Callable[[float], float]) -> StepOutcome:
        """Take one optimiser step and update the features.

        Args:
            lr: the learning rate, or a function of the step's mini-batch loss that returns
                it, called after the backward pass and before the update (where a controller
                that reads this step's gradient, :meth:`hypergradient`, must decide).
        """
        inputs, targets = self._batch()
        exact = self.steps_done % self.config.every == 0
        record = exact or self.config.estimate != "hold"
        probe = self.probe
        if record:
            probe.start(None if exact else self._estimated_layers)
        logits = self.model(inputs)
        probe.stop()
        loss = F.cross_entropy(logits, targets)  # the mean of the losses, as one fused op
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss_value = float(loss.detach())
        if callable(lr):
            lr = lr(loss_value) if math.isfinite(loss_value) else self._lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._lr = lr
        # dw = -step_size * d
        step_size = lr if self._applied_lr is None else self._applied_lr(self.optimizer)
        direction = record and lr > 0 and self._sgd_direction is not None
        if direction or not record:
            tracked: list[int] = []  # dw is read from the optimiser, or not needed
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
            return StepOutcome(loss_value, math.nan, math.nan, step_size)
        log_lr2 = 2.0 * math.log(step_size) if step_size > 0 else -math.inf
        if record:
            phi1 = self._phi1_from_records(
                inputs, targets, before, tracked, direction, exact, step_size
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
        phi2 = log_variance(per_example_losses(logits.detach(), targets))
        self.smoother.update(1, phi2)
        return StepOutcome(loss_value, phi1, phi2, step_size)

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

    def _phi1_from_records(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        before: list[torch.Tensor],
        tracked: list[int],
        direction: bool,
        exact: bool,
        lr: float,
    ) -> float:
        """phi1 from the recorded layers, along ``d`` when ``direction`` else along ``dw``."""
        update: list[torch.Tensor | None] = [None] * len(self._params)
        if direction:
            assert self._sgd_direction is not None
            update = list(self._sgd_direction())
        else:
            after = torch._foreach_sub([self._params[i].detach() for i in tracked], before)
            for i, dw in zip(tracked, after, strict=True):
                update[i] = dw
        unit = 1.0 if direction else lr  # the update is unit * d
        return self._contract_phi1(update, inputs, targets, before, unit, exact)

    def _contract_phi1(
        self,
        update: list[torch.Tensor | None],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        before: list[torch.Tensor],
        unit: float,
        exact: bool,
    ) -> float:
        """Exact phi1 of ``update``, or on in-between steps the regression estimate.

        ``update = unit * d``; the regression works in units of ``d`` (see
        :class:`~lrgym.features.ShareRegression`)."""
        batch = inputs.shape[0]
        shares = self.probe.layer_shares(update)
        if not exact:
            if unit <= 0.0 or self._estimated_layers is None:
                return math.log(EPS)  # no step was taken: dw = 0
            chosen = self._chosen_shares(shares, batch, inputs.device) / unit
            return math.log(unit * unit * self._regression.variance(chosen) + EPS)
        derivative = self.probe.directional_derivatives(
            update,  # type: ignore[arg-type]  # complete on exact steps
            batch_size=batch,
            inputs=inputs,
            targets=targets,
            params_before=before,
            shares=shares,
        )
        if self.config.every > 1 and self.config.estimate != "hold" and unit > 0.0:
            if self._estimated_layers is None:
                dense = self.probe.dense_layers()
                layers = self.probe.layers
                estimate_dense = self.config.estimate == "dense" and 0 < len(dense) < len(layers)
                chosen_layers = dense if estimate_dense else layers[-1:]
                self._estimated_layers = tuple(chosen_layers)
                self._estimated_params = self.probe.parameter_indices(chosen_layers)
            chosen = self._chosen_shares(shares, batch, inputs.device)
            self._regression.fit(chosen / unit, (derivative - chosen.sum(dim=1)) / unit)
        return log_variance(derivative)

    def _chosen_shares(
        self, shares: Mapping[torch.nn.Module, torch.Tensor], batch: int, device: torch.device
    ) -> torch.Tensor:
        """The estimated layers' shares of ``grad f_i^T dw`` as columns ``(B, p)`` (zeros for
        a layer whose output did not reach the loss)."""
        assert self._estimated_layers is not None
        columns = [
            shares[m] if m in shares else torch.zeros(batch, device=device)
            for m in self._estimated_layers
        ]
        return torch.stack(columns, dim=1).mul_(batch)

    @torch.no_grad()
    def _mean_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        total, correct = 0.0, 0
        with evaluation_mode(self.optimizer):  # schedule-free: at the averaged weights
            for start in range(0, x.shape[0], _CHUNK):
                logits = self.model(self._inputs(x[start : start + _CHUNK]))
                target = y[start : start + _CHUNK].to(self.device)
                total += float(per_example_losses(logits, target).sum())
                correct += int((logits.argmax(1) == target).sum())
        return total / x.shape[0], correct / x.shape[0]

    def evaluate_train(self) -> float:
        """Mean loss on the fixed evaluation sample of the training subset."""
        return self._mean_loss(self._x[self._eval], self._y[self._eval])[0]

    def evaluate_test(self, limit: int | None = None) -> tuple[float, float]:
        """Mean loss and accuracy on the first ``limit`` test examples (all if ``None``)."""
        n = self.data.test_x.shape[0] if limit is None else min(limit, self.data.test_x.shape[0])
        return self._mean_loss(self.data.test_x[:n], self.data.test_y[:n])


def _sgd_direction(
    optimizer: torch.optim.Optimizer,
) -> Callable[[], list[torch.Tensor | None]] | None:
    """For plain torch SGD (no weight decay, dampening, Nesterov or maximize) the step is
    ``dw = -lr d`` with ``d`` the momentum buffer (or the gradient without momentum): a function
    that returns ``d`` per parameter after a step, which spares copying the parameters.
    ``None`` for any other optimiser, whose ``dw`` is measured as ``w_after - w_before``."""
    if not isinstance(optimizer, torch.optim.SGD):
        return None
    (group,) = optimizer.param_groups
    if group["weight_decay"] or group["dampening"] or group["nesterov"] or group["maximize"]:
        return None
    params = list(group["params"])
    if group["momentum"]:
        state = optimizer.state
        return lambda: [state[p]["momentum_buffer"] for p in params]
    return lambda: [p.grad for p in params]


def evaluation_steps(steps: int, points: int) -> np.ndarray:
    """``points`` steps evenly spaced over ``[0, steps]``, rounded: where ``E`` is measured."""
    if points < 2:
        raise InvalidConfigError(f"eval_points={points!r} must be >= 2")
    return np.round(np.linspace(0, steps, points)).astype(np.int64)


def train(
    task: Task,
    controller: Controller,
    data: ArrayDataset,
    *,
    features: FeatureConfig | None = None,
    eval_points: int = 10,
    eval_size: int = 1000,
    test_size: int | None = None,
    device: str | torch.device = "cpu",
    memory_format: str = "auto",
) -> TrainingResult:
    """Run ``task`` to the end (or to divergence) with ``controller`` setting the learning rate.

    Args:
        task: the task.
        controller: sets eta every step.
        data: the task's dataset (:func:`lrgym.data.load_dataset`).
        features: how features are computed.
        eval_points: S, the number of evaluation points of ``E`` (>= 2).
        eval_size: examples in the fixed evaluation sample.
        test_size: test examples used for the final test metrics (all if ``None``).
        device: torch device.
        memory_format: see :class:`TrainingRun`.

    Raises:
        InvalidConfigError: the controller returned a learning rate that is not a positive
            finite number.
    """
    start = time.perf_counter()
    run = TrainingRun(
        task,
        data,
        features=features,
        eval_size=eval_size,
        device=device,
        memory_format=memory_format,
    )
    eval_steps = evaluation_steps(task.steps, eval_points)
    eval_set = set(eval_steps.tolist())
    measured = {0: run.evaluate_train()}
    losses: list[float] = []
    rates: list[float] = []
    phi_hat: list[np.ndarray] = []
    raw: list[tuple[float, float]] = []
    controller.reset(task.eta0)
    hypergradient = bool(getattr(controller, "needs_hypergradient", False))
    run.track_direction = hypergradient
    lr, diverged, t = task.eta0, not math.isfinite(measured[0]), 0

    def choose(loss: float) -> float:
        """The controller's rate for step ``t``, asked between its backward pass and update."""
        nonlocal lr
        h = run.hypergradient() if hypergradient else None
        previous = phi_hat[-1] if phi_hat else None
        state = ControlState(t, previous, lr, task.eta0, task.steps, loss, h)
        lr = float(controller.learning_rate(state))
        if not (0.0 < lr < math.inf):
            raise InvalidConfigError(
                f"{type(controller).__name__} returned lr={lr!r} at step {t}; "
                "a learning rate must be a positive finite number"
            )
        return lr

    for t in range(1, task.steps + 1):  # choose() reads t
        if diverged:
            break
        outcome = run.step(choose)
        losses.append(outcome.loss)
        rates.append(outcome.lr)
        raw.append((outcome.phi1, outcome.phi2))
        phi_hat.append(run.smoother.vector())
        diverged = not math.isfinite(outcome.loss)
        if not diverged and t in eval_set:
            measured[t] = run.evaluate_train()
            diverged = not math.isfinite(measured[t])
    eval_losses = np.array([measured.get(int(s), math.inf) for s in eval_steps])
    eval_losses[~np.isfinite(eval_losses)] = math.inf
    test_loss, test_accuracy = (math.inf, 0.0) if diverged else run.evaluate_test(test_size)
    curves = Curves(
        losses=np.asarray(losses, dtype=np.float64),
        learning_rates=np.asarray(rates, dtype=np.float64),
        features=np.asarray(phi_hat, dtype=np.float64).reshape(-1, 5),
        raw_features=np.asarray(raw, dtype=np.float64).reshape(-1, 2),
        eval_steps=eval_steps,
        eval_losses=eval_losses,
    )
    return TrainingResult(
        task=task,
        curves=curves,
        test_loss=test_loss,
        test_accuracy=test_accuracy,
        diverged=diverged,
        wall_time=time.perf_counter() - start,
    )
