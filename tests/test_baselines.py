"""Baseline controllers and optimisers, checked on the learning-rate traces they produce."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import toy_task as _toy_task

from lrgym.bench.baselines import BASELINES, LR_GRID, get_baselines
from lrgym.controllers import (
    ConstantController,
    Controller,
    ControlState,
    HypergradientController,
    PlateauController,
    ScheduleController,
)
from lrgym.data.datasets import load_dataset
from lrgym.errors import InvalidConfigError
from lrgym.optimizers import OPTIMIZER_BASELINES, applied_lr, make_optimizer
from lrgym.tasks.family import Task
from lrgym.training import TrainingRun, train

TOY = load_dataset("toy")


def toy_task(**changes: object) -> Task:
    return _toy_task(**{"steps": 60, "momentum": 0.9, **changes})


class Recorder(Controller):
    """Wraps a controller and keeps every state it saw."""

    def __init__(self, inner: Controller) -> None:
        self.inner, self.states = inner, []  # type: ignore[var-annotated]
        self.needs_hypergradient = inner.needs_hypergradient

    def reset(self, eta0: float) -> None:
        self.inner.reset(eta0)

    def learning_rate(self, state: ControlState) -> float:
        self.states.append(state)
        return self.inner.learning_rate(state)


def test_grid_is_half_decades_from_1e_5_to_1() -> None:
    assert len(LR_GRID) == 11 and LR_GRID[0] == 1e-5 and LR_GRID[-1] == 1.0
    assert np.allclose(np.diff(np.log10(LR_GRID)), 0.5, atol=2e-3)


def test_schedules_follow_their_formulas_on_the_trace() -> None:
    task = toy_task(steps=90)
    for name in ("step", "exponential", "cosine", "warmup-cosine"):
        controller, same = BASELINES[name].build(task)
        assert same == task
        rates = train(task, controller, TOY).curves.learning_rates
        t = np.arange(90)
        if name == "step":  # x0.1 after each third
            expected = 0.05 * 0.1 ** (t // 30)
        elif name == "exponential":  # 1% of eta_0 after T steps
            expected = 0.05 * 0.01 ** (t / 90)
        elif name == "cosine":
            expected = 0.05 * (1 + np.cos(np.pi * t / 90)) / 2
        else:  # 5% warm-up: ceil(4.5) = 5 steps, then cosine over 85
            expected = np.where(
                t < 5, 0.05 * (t + 1) / 5, 0.05 * (1 + np.cos(np.pi * (t - 5) / 85)) / 2
            )
        np.testing.assert_allclose(rates, expected, rtol=1e-12, err_msg=name)


def test_warmup_cosine_may_anneal_to_a_tenth_of_the_peak() -> None:
    controller = ScheduleController("warmup-cosine", decay=0.1, warmup=0.05)
    rates = [controller.learning_rate(ControlState(t, None, 0.1, 0.2, 200)) for t in range(1, 201)]
    t = np.arange(200)  # 10 warm-up steps to 0.2, then 0.02 + 0.18 (1 + cos) / 2 over 190
    expected = np.where(
        t < 10, 0.2 * (t + 1) / 10, 0.02 + 0.18 * (1 + np.cos(np.pi * (t - 10) / 190)) / 2
    )
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert max(rates) == pytest.approx(0.2) and rates[-1] > 0.02


def _plateau_reference(losses: np.ndarray, eta0: float, interval: int, patience: int) -> list:
    """ReduceLROnPlateau's rule written out: mode min, relative threshold 1e-4, factor 0.1."""
    lr, best, bad, rates, window = eta0, math.inf, 0, [], []
    for loss in losses:
        window.append(loss)
        if len(window) == interval:
            mean = sum(window) / interval
            window = []
            if mean < best * (1 - 1e-4):
                best, bad = mean, 0
            else:
                bad += 1
            if bad > patience:
                lr, bad = lr * 0.1, 0
        rates.append(lr)
    return rates


def test_plateau_cuts_after_its_patience() -> None:
    controller = PlateauController(interval=2, patience=1)
    controller.reset(0.1)
    rates = [
        controller.learning_rate(ControlState(t, None, 0.1, 0.1, 20, loss=1.0))
        for t in range(1, 11)
    ]
    # interval means: 1 (best), 1 (bad 1), 1 (bad 2 > patience: cut) at step 6
    assert rates[:5] == [0.1] * 5 and rates[5] == pytest.approx(0.01)
    # on a real run: the trace equals the rule applied to the run's own losses
    task = toy_task(steps=200, eta0=0.5)
    result = train(task, PlateauController(interval=5, patience=2), TOY)
    expected = _plateau_reference(result.curves.losses, 0.5, 5, 2)
    np.testing.assert_allclose(result.curves.learning_rates, expected, rtol=1e-12)
    assert min(expected) < 0.5  # the rule did cut on this run


@pytest.mark.parametrize(("optimizer", "momentum"), [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)])
def test_hypergradient_is_the_gradient_dot_the_previous_direction(
    optimizer: str, momentum: float
) -> None:
    """``run.hypergradient()`` against ``g_t . u_{t-1}`` from parameter snapshots in float64."""
    task = toy_task(optimizer=optimizer, momentum=momentum, eta0=0.01)
    run = TrainingRun(task, TOY, eval_size=10)
    run.control.track_direction = True
    params = [p for p in run.model.parameters()]
    snapshots = [[p.detach().double().clone() for p in params]]
    rates: list[float] = []
    seen: list[tuple[float, float]] = []

    def check(loss: float) -> float:
        grads = torch.cat([p.grad.double().reshape(-1) for p in params])
        if len(snapshots) > 1:
            last, before = snapshots[-1], snapshots[-2]
            dw = torch.cat([(a - b).reshape(-1) for a, b in zip(last, before, strict=True)])
            expected = float(grads @ (-dw / rates[-1]))
        else:
            expected = 0.0
        seen.append((run.hypergradient(), expected))
        rates.append(0.01 * (1 + 0.1 * len(rates)))  # a changing rate: u is the direction
        return rates[-1]

    for _ in range(6):
        run.step(check)
        snapshots.append([p.detach().double().clone() for p in params])
    got, expected = np.array(seen).T
    assert expected[0] == 0.0 and np.all(expected[1:] != 0)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-9)


def test_hypergradient_moves_eta_in_the_sign_of_the_hypergradient() -> None:
    recorder = Recorder(HypergradientController(beta=1e-3))
    result = train(toy_task(steps=80, eta0=0.01), recorder, TOY)
    h = np.array([s.hypergradient for s in recorder.states])
    rates = np.concatenate([[0.01], result.curves.learning_rates])
    np.testing.assert_allclose(np.diff(rates), 1e-3 * h, rtol=1e-9, atol=1e-15)
    assert h[0] == 0.0 and (h > 0).any() and (h < 0).any()  # both directions happen
    assert np.all(np.sign(np.diff(rates))[1:] == np.sign(h[1:]))


def test_hypergradient_is_only_computed_for_controllers_that_ask() -> None:
    recorder = Recorder(ConstantController())
    train(toy_task(steps=5), recorder, TOY)
    assert all(s.hypergradient is None for s in recorder.states)
    assert [s.loss for s in recorder.states] == pytest.approx(
        train(toy_task(steps=5), ConstantController(), TOY).curves.losses.tolist()
    )


def test_hypergradient_clips_to_the_bounds() -> None:
    controller = HypergradientController(beta=1.0, lr_bounds=(1e-6, 0.5))
    state = ControlState(2, None, 0.1, 0.1, 10, loss=1.0, hypergradient=-5.0)
    assert controller.learning_rate(state) == 1e-6
    assert controller.learning_rate(dataclasses.replace(state, hypergradient=5.0)) == 0.5
    with pytest.raises(InvalidConfigError, match="needs_hypergradient"):
        controller.learning_rate(dataclasses.replace(state, hypergradient=None))


def test_schedule_free_evaluates_in_eval_mode_and_trains_in_train_mode() -> None:
    pytest.importorskip("schedulefree")
    for name in ("schedulefree-sgd", "schedulefree-adamw"):
        run = TrainingRun(toy_task(optimizer=name, eta0=OPTIMIZER_BASELINES[name].lr), TOY)
        modes: list[tuple[bool, bool]] = []  # (gradients on: a training pass, train mode)

        def note(*_: object, run: TrainingRun = run, modes: list = modes) -> None:
            modes.append((torch.is_grad_enabled(), run.optimizer.param_groups[0]["train_mode"]))

        run.model.register_forward_pre_hook(note)
        for _ in range(3):
            run.step(OPTIMIZER_BASELINES[name].lr)
            run.evaluate_train()
        run.evaluate_test()
        run.step(OPTIMIZER_BASELINES[name].lr)
        training = [mode for grad, mode in modes if grad]
        evaluating = [mode for grad, mode in modes if not grad]
        assert len(training) == 4 and all(training)
        assert len(evaluating) >= 4 and not any(evaluating)


def test_schedule_free_evaluation_uses_the_averaged_weights() -> None:
    pytest.importorskip("schedulefree")
    task = toy_task(optimizer="schedulefree-sgd", eta0=1.0, steps=30)
    run = TrainingRun(task, TOY)
    for _ in range(30):
        run.step(1.0)
    in_eval_mode = run.evaluate_train()
    with torch.no_grad():  # the same sample at the training sequence's point y
        logits = run.model(run.data.normalise(run._x[run._eval]))
        at_y = float(torch.nn.functional.cross_entropy(logits, run._y[run._eval]))
    assert in_eval_mode != at_y


def test_optimizer_baselines_record_the_step_size_they_apply() -> None:
    for module in {b.module or b.package for b in OPTIMIZER_BASELINES.values()} - {"torch"}:
        pytest.importorskip(module)
    task = toy_task(steps=40)
    for name, baseline in OPTIMIZER_BASELINES.items():
        controller, changed = BASELINES[name].build(task)
        assert changed.optimizer == name and changed.eta0 == baseline.lr
        rates = train(changed, controller, TOY).curves.learning_rates
        if name in ("prodigy", "dadapt-adam"):
            assert rates[0] == pytest.approx(1e-6)  # d0 * lr: d starts at d0 = 1e-6
            assert np.all(np.diff(rates) >= 0) and rates[-1] > 1e-6  # d only grows
        elif name == "schedulefree-adamw" or name == "schedulefree-sgd" or name == "adam":
            np.testing.assert_array_equal(rates, baseline.lr)  # no warm-up by default
    # D-Adapted SGD's first step: d0 * lr / ||g_0||, with g_0 measured independently
    run = TrainingRun(dataclasses.replace(task, optimizer="dadapt-sgd", eta0=1.0), TOY)
    norms: list[float] = []

    def record(loss: float) -> float:
        norms.append(float(torch.cat([p.grad.reshape(-1) for p in run.model.parameters()]).norm()))
        return 1.0

    assert run.step(record).lr == pytest.approx(1e-6 / norms[0], rel=1e-5)


def test_applied_lr_is_none_for_the_task_optimizers() -> None:
    for name in ("sgd", "rmsprop", "adam", "adamw"):
        optimizer = make_optimizer(toy_task(optimizer=name), [torch.nn.Parameter(torch.ones(2))])
        assert applied_lr(optimizer) is None


def test_unknown_optimizer_and_baseline_list_the_known_ones() -> None:
    with pytest.raises(InvalidConfigError, match="prodigy"):
        make_optimizer(toy_task(optimizer="lion"), [torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(InvalidConfigError, match=r"'plateau'.*'hypergradient'"):
        get_baselines("constant,nesterov")
    assert [b.name for b in get_baselines("step, constant,step")] == ["step", "constant"]
    assert len(get_baselines(None)) == len(BASELINES) == 16
