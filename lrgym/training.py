"""The training loop: plain PyTorch, no Gymnasium.

:func:`train` runs one task under one controller and returns a :class:`TrainingResult`.
:class:`TrainingRun` is the same loop for callers that drive it themselves:
:meth:`TrainingRun.advance` takes a given number of steps (at the controller's rate or one the
caller sets) and records the run's curves, which :meth:`TrainingRun.result` returns with the
test metrics. :func:`train` is ``advance(task.steps)`` then ``result()``; the bandit env runs
:func:`train`, the per-step env advances a stretch of steps per action.

Per step ``t = 1..T``: one mini-batch is drawn, forward, backward of the mean of the
per-example losses; then :class:`lrgym.ControlledLR` (the drop-in controller any PyTorch loop can
use) takes the step: the controller's ``eta_t`` (from ``phi_hat_{t-1}``, ``None`` at ``t = 1``,
where controllers use eta_0, and for controllers that ask, the step's loss and hypergradient) on
every parameter group, the optimiser's update, and the features of that update folded into
``phi_hat_t``. The learning-rate trace records the step size the optimiser applied: ``eta_t``,
or for optimisers that adapt it themselves their own (:func:`lrgym.optimizers.applied_lr`).
The training loss ``E`` is measured on a fixed evaluation sample of the task's training subset
at ``eval_points`` evenly spaced steps, the first before training. A non-finite loss ends the
run with ``diverged=True``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from lrgym.control import ControlledLR, StepOutcome
from lrgym.controllers import ConstantController, Controller
from lrgym.data.datasets import ArrayDataset
from lrgym.errors import InvalidConfigError
from lrgym.features import FeatureConfig, per_example_losses
from lrgym.optimizers import evaluation_mode, make_optimizer
from lrgym.tasks.architectures import choose_memory_format
from lrgym.tasks.family import Task, build_model

_CHUNK = 1000  # examples per forward pass when evaluating


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
            network is scored as useless rather than measured); for sequences, the mean over
            examples of the share of tokens predicted right.
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
    """A task's model, optimiser, data and controller, advanced step by step.

    The features and the learning rate are :class:`lrgym.ControlledLR`'s (:attr:`control`):
    each step draws a mini-batch, runs the forward and backward pass of the mean of the
    per-example losses, and hands those losses to it.

    :meth:`advance` takes steps and records them (mini-batch loss, applied step size,
    ``phi_hat``, raw features, and ``E`` at the evaluation steps); :meth:`curves` and
    :meth:`result` read the record. :meth:`step` takes one step without recording it.

    Args:
        task: the task.
        data: its dataset (``data.name`` must equal ``task.dataset``).
        controller: sets the learning rate in :meth:`step` without an ``lr`` (default: the
            task's eta_0, constant).
        features: how features are computed.
        eval_size: examples in the fixed evaluation sample of the training subset.
        eval_steps: the steps after which :meth:`advance` measures ``E`` on that sample
            (0: before the first step), non-decreasing, within ``[0, task.steps]``; default
            ``evaluation_steps(task.steps, 10)``.
        device: torch device.
        memory_format: ``"auto"`` (the format measured fastest for the architecture on the
            device, :func:`lrgym.tasks.architectures.choose_memory_format`), ``"contiguous"`` or
            ``"channels_last"``. The model, its inputs and the feature contraction run in it.
    """

    def __init__(
        self,
        task: Task,
        data: ArrayDataset,
        *,
        controller: Controller | None = None,
        features: FeatureConfig | None = None,
        eval_size: int = 1000,
        eval_steps: Sequence[int] | np.ndarray | None = None,
        device: str | torch.device = "cpu",
        memory_format: str = "auto",
    ) -> None:
        self._started = time.perf_counter()
        if data.name != task.dataset:
            raise InvalidConfigError(f"task is for {task.dataset!r} but data is {data.name!r}")
        if eval_size < 1:
            raise InvalidConfigError(f"eval_size={eval_size!r} must be >= 1")
        if eval_steps is None:
            eval_steps = evaluation_steps(task.steps, 10)
        points = np.asarray(eval_steps, dtype=np.int64).reshape(-1)
        if (
            points.size == 0
            or np.any(np.diff(points) < 0)
            or points[0] < 0
            or points[-1] > task.steps
        ):
            raise InvalidConfigError(
                f"eval_steps={np.asarray(eval_steps).tolist()!r} must be non-decreasing steps in "
                f"[0, {task.steps}] (the task's steps)"
            )
        self.eval_steps = points
        self._eval_set = frozenset(points.tolist())
        self.task, self.data, self.device = task, data, torch.device(device)
        self._generator = torch.Generator().manual_seed(task.seed)
        self.memory_format = choose_memory_format(task.architecture, self.device, memory_format)
        self.model = build_model(
            task, data.input_shape, data.num_classes, self._generator, self.device,
            tokens=data.tokens,
        ).to(memory_format=self.memory_format)  # fmt: skip
        n = data.train_x.shape[0]
        size = min(n, max(task.batch_size, 2, round(task.subset_fraction * n)))
        subset = torch.randperm(n, generator=self._generator)[:size]
        self._x, self._y = data.train_x[subset], data.train_y[subset]
        self._eval = torch.arange(min(eval_size, size))
        self._order = torch.empty(0, dtype=torch.int64)
        self.optimizer = make_optimizer(task, list(self.model.parameters()))
        self.control = ControlledLR(
            self.model,
            self.optimizer,
            controller or ConstantController(),
            eta0=task.eta0,
            total_steps=task.steps,
            features=features or FeatureConfig(),
        )
        self._losses: list[float] = []
        self._rates: list[float] = []
        self._phi_hat: list[np.ndarray] = []
        self._raw: list[tuple[float, float]] = []
        self._measured: dict[int, float] = {}
        self._diverged = False

    @property
    def steps_done(self) -> int:
        """Optimiser steps taken."""
        return self.control.steps_done

    def hypergradient(self) -> float:
        """See :meth:`lrgym.ControlledLR.hypergradient`."""
        return self.control.hypergradient()

    @property
    def diverged(self) -> bool:
        """Whether a non-finite loss (mini-batch or ``E``) ended the run in :meth:`advance`."""
        return self._diverged

    @property
    def finished(self) -> bool:
        """Whether :meth:`advance` has nothing left to do: the task's steps are done or the
        run diverged."""
        return self._diverged or self.steps_done >= self.task.steps

    def advance(self, steps: int, lr: float | None = None) -> int:
        """Take up to ``steps`` steps and record them; stops early at the task's last step or
        at a divergence (a non-finite mini-batch loss or ``E``).

        ``E`` is measured at every step of :attr:`eval_steps` reached (step 0 on the first
        call, before any step).

        Args:
            steps: the most steps to take (>= 0).
            lr: ``None``: the controller's rate; else this learning rate for every step.

        Returns:
            The number of steps taken.
        """
        if steps < 0:
            raise InvalidConfigError(f"steps={steps!r} must be >= 0")
        if not self._measured and 0 in self._eval_set and not self._diverged:
            self._measure(0)
        taken = 0
        while taken < steps and not self.finished:
            outcome = self.step(lr)
            taken += 1
            self._losses.append(outcome.loss)
            self._rates.append(outcome.lr)
            self._raw.append((outcome.phi1, outcome.phi2))
            self._phi_hat.append(self.control.smoother.vector())
            if not math.isfinite(outcome.loss):
                self._diverged = True
            elif self.steps_done in self._eval_set:
                self._measure(self.steps_done)
        return taken

    def _measure(self, step: int) -> None:
        value = self.evaluate_train()
        self._measured[step] = value
        self._diverged = not math.isfinite(value)

    def eval_loss(self, step: int) -> float:
        """``E`` measured after ``step`` (``inf`` if the run diverged before it).

        Raises:
            KeyError: ``step`` is not an evaluation step :meth:`advance` has reached.
        """
        value = self._measured.get(int(step))
        if value is None:
            if self._diverged and int(step) in self._eval_set:
                return math.inf
            raise KeyError(f"E was not measured after step {step}")
        return value if math.isfinite(value) else math.inf

    def curves(self) -> Curves:
        """The record so far (the evaluation points not reached hold ``inf``)."""
        eval_losses = np.array([self._measured.get(int(s), math.inf) for s in self.eval_steps])
        eval_losses[~np.isfinite(eval_losses)] = math.inf
        return Curves(
            losses=np.asarray(self._losses, dtype=np.float64),
            learning_rates=np.asarray(self._rates, dtype=np.float64),
            features=np.asarray(self._phi_hat, dtype=np.float64).reshape(-1, 5),
            raw_features=np.asarray(self._raw, dtype=np.float64).reshape(-1, 2),
            eval_steps=self.eval_steps.copy(),
            eval_losses=eval_losses,
        )

    def result(self, test_size: int | None = None) -> TrainingResult:
        """The run's :class:`TrainingResult`: its curves and the test metrics of the model now
        (``inf`` and 0 if it diverged); ``wall_time`` counts from the run's creation."""
        diverged = self._diverged
        test_loss, test_accuracy = (math.inf, 0.0) if diverged else self.evaluate_test(test_size)
        return TrainingResult(
            task=self.task,
            curves=self.curves(),
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            diverged=diverged,
            wall_time=time.perf_counter() - self._started,
        )

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next mini-batch of the task's subset, as the model takes it (a fresh shuffle
        of the subset every pass)."""
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
    def step(self, lr: float | Callable[[float], float] | None = None) -> StepOutcome:
        """Take one optimiser step and update the features.

        Args:
            lr: ``None``: the controller's rate; else the learning rate, or a function of the
                step's mini-batch loss that returns it, called after the backward pass and
                before the update.
        """
        inputs, targets = self.next_batch()
        losses = per_example_losses(self.model(inputs), targets)
        self.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        if lr is None:
            self.control.step(losses)
            assert self.control.last_step is not None
            return self.control.last_step
        return self.control.step_with(losses, lr)

    @torch.no_grad()
    def _mean_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        total, correct = 0.0, 0.0
        with evaluation_mode(self.optimizer):  # schedule-free: at the averaged weights
            for start in range(0, x.shape[0], _CHUNK):
                logits = self.model(self._inputs(x[start : start + _CHUNK]))
                target = y[start : start + _CHUNK].to(self.device)
                total += float(per_example_losses(logits, target).sum())
                hits = (logits.argmax(-1) == target).reshape(target.shape[0], -1)
                correct += float(hits.double().mean(1).sum())  # sequences: tokens' share
        return total / x.shape[0], correct / x.shape[0]

    def evaluate_train(self) -> float:
        """Mean loss on the fixed evaluation sample of the training subset."""
        return self._mean_loss(self._x[self._eval], self._y[self._eval])[0]

    def evaluate_test(self, limit: int | None = None) -> tuple[float, float]:
        """Mean loss and accuracy on the first ``limit`` test examples (all if ``None``)."""
        n = self.data.test_x.shape[0] if limit is None else min(limit, self.data.test_x.shape[0])
        return self._mean_loss(self.data.test_x[:n], self.data.test_y[:n])


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
        data: the task's dataset (:func:`lrgym.data.datasets.load_dataset`).
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
    run = TrainingRun(
        task,
        data,
        controller=controller,
        features=features,
        eval_size=eval_size,
        eval_steps=evaluation_steps(task.steps, eval_points),
        device=device,
        memory_format=memory_format,
    )
    run.advance(task.steps)
    return run.result(test_size)
