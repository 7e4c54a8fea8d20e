"""AdamW as a task optimiser, and the DoG and Mechanic baselines checked against their formulas
written out independently in float64."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import toy_task as _toy_task

from lrgym.bench.baselines import BASELINES
from lrgym.bench.results import read_results
from lrgym.bench.suites import get_suite
from lrgym.cli import main
from lrgym.data.datasets import load_dataset
from lrgym.errors import MissingPackageError
from lrgym.optimizers import (
    ADAMW_WEIGHT_DECAY,
    DOG_AVERAGE_GAMMA,
    OPTIMIZER_BASELINES,
    applied_lr,
    evaluation_mode,
    make_optimizer,
)
from lrgym.tasks.family import OPTIMIZERS, Task
from lrgym.training import TrainingRun
from lrgym_agents.benchmark import run_benchmark

TOY = load_dataset("toy")
NEW = ("dog", "mechanic-sgd", "mechanic-adam")


def toy_task(**changes: object) -> Task:
    return _toy_task(**{"steps": 40, "momentum": 0.9, **changes})


def flat(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.detach().double().reshape(-1) for p in params])


def grads(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.grad.double().reshape(-1) for p in params])  # type: ignore[union-attr]


def step_seeing_gradient(
    run: TrainingRun, params: list[torch.nn.Parameter], rate: float
) -> tuple[float, torch.Tensor]:
    """One step at ``rate``: the step size it recorded and the gradient it took (float64)."""
    seen: list[torch.Tensor] = []

    def choose(_: float) -> float:
        seen.append(grads(params))
        return rate

    return run.step(choose).lr, seen[0]


def test_adamw_is_a_task_optimizer_with_decoupled_weight_decay() -> None:
    """Each step against AdamW written out in float64: ``w <- w (1 - lr wd)``, then Adam's
    bias-corrected step; the rate the controller chose is the one applied."""
    assert OPTIMIZERS == ("sgd", "rmsprop", "adam", "adamw")
    run = TrainingRun(toy_task(optimizer="adamw", eta0=0.01), TOY, eval_size=10)
    params = list(run.model.parameters())
    w = flat(params)
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, 7):
        rate = 0.01 * (1 + 0.5 * t)  # a different rate each step
        lr, g = step_seeing_gradient(run, params, rate)
        assert lr == rate and run.optimizer.param_groups[0]["lr"] == rate
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w = w * (1 - rate * ADAMW_WEIGHT_DECAY)
        w = w - rate * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
        np.testing.assert_allclose(flat(params).numpy(), w.numpy(), rtol=1e-5, atol=1e-7)
    # the decay is decoupled: Adam with the decay added to the gradient (L2) moves elsewhere
    optimizer = make_optimizer(toy_task(optimizer="adamw"), [torch.nn.Parameter(torch.ones(2))])
    assert type(optimizer) is torch.optim.AdamW and applied_lr(optimizer) is None
    group = optimizer.param_groups[0]
    assert group["weight_decay"] == 0.01 and group["betas"] == (0.9, 0.999)
    assert group["eps"] == 1e-8 and not group["amsgrad"]


def test_dog_records_its_step_size_and_evaluates_at_the_polynomial_average() -> None:
    """``eta_t = rbar_t / sqrt(sum ||g_i||^2 + eps)``, ``rbar_t = max(reps_rel (1 + ||x_0||),
    max_i ||x_i - x_0||)``; the averaged point ``xbar_t = (1 - (1 + g) / (t + g)) xbar_{t-1} +
    (1 + g) / (t + g) x_t`` with ``g = 8`` is where the model is evaluated."""
    pytest.importorskip("dog")
    baseline = OPTIMIZER_BASELINES["dog"]
    assert dict(baseline.settings) == {"lr": 1.0, "reps_rel": 1e-6} and DOG_AVERAGE_GAMMA == 8
    run = TrainingRun(toy_task(optimizer="dog", eta0=1.0), TOY, eval_size=20)
    params = list(run.model.parameters())
    x0 = flat(params)
    rbar, total, average = 1e-6 * (1 + float(x0.norm())), 1e-8, x0.clone()
    rates = []
    for t in range(1, 31):
        x = flat(params)
        lr, g = step_seeing_gradient(run, params, 1.0)
        rbar, total = max(rbar, float((x - x0).norm())), total + float(g.square().sum())
        assert lr == pytest.approx(rbar / math.sqrt(total), rel=1e-5)
        eta = float(run.optimizer.param_groups[0]["eta"][0])  # what DoG applied
        assert lr == pytest.approx(eta, rel=1e-5)
        np.testing.assert_allclose(flat(params), x - eta * g, rtol=1e-5, atol=1e-7)
        weight = (1 + DOG_AVERAGE_GAMMA) / (t + DOG_AVERAGE_GAMMA)
        average = (1 - weight) * average + weight * flat(params)
        rates.append(lr)
    assert rates[-1] > 10 * rates[0]  # eta grew
    iterate = flat(params)
    with evaluation_mode(run.optimizer):
        np.testing.assert_allclose(flat(params), average, rtol=1e-5, atol=1e-7)
    assert torch.equal(flat(params), iterate)  # trained on from the iterate
    loss = run.evaluate_train()
    with torch.no_grad():  # the same sample at the iterate differs
        logits = run.model(run.data.normalise(run._x[run._eval]))
        at_iterate = float(torch.nn.functional.cross_entropy(logits, run._y[run._eval]))
    assert loss != at_iterate and torch.equal(flat(params), iterate)


@pytest.mark.parametrize("name", ["mechanic-sgd", "mechanic-adam"])
def test_mechanic_records_the_scale_it_applied(name: str) -> None:
    """With ``store_delta=False`` Mechanic sets ``x_t = x_0 + s_t ((x_{t-1} - x_0) /
    (s_{t-1} + 1e-8) + u_t)``, ``u_t`` the base optimiser's update at lr 1: the recorded step
    sizes are these ``s_t`` (SGD: ``u_t = -b_t``, ``b_t = 0.9 b_{t-1} + g_t``)."""
    pytest.importorskip("mechanic_pytorch")
    baseline = OPTIMIZER_BASELINES[name]
    assert baseline.lr == 1.0 and baseline.settings.get("momentum", 0.9) == 0.9
    run = TrainingRun(toy_task(optimizer=name, eta0=1.0), TOY, eval_size=10)
    params = list(run.model.parameters())
    base = torch.optim.SGD if name == "mechanic-sgd" else torch.optim.Adam
    assert isinstance(run.optimizer, base) and applied_lr(run.optimizer) == 0.0
    x0 = flat(params)
    shadow = torch.nn.Parameter(x0.clone())  # the base optimiser alone, in float64, at lr 1
    reference = (
        torch.optim.SGD([shadow], lr=1.0, momentum=0.9)
        if name == "mechanic-sgd"
        else torch.optim.Adam([shadow], lr=1.0)
    )
    previous, rates = 0.0, []
    for _ in range(25):
        x = flat(params)
        s, g = step_seeing_gradient(run, params, 1.0)
        before = shadow.detach().clone()
        shadow.grad = g
        reference.step()
        u = shadow.detach() - before
        expected = x0 + s * ((x - x0) / (previous + 1e-8) + u)
        np.testing.assert_allclose(flat(params), expected, rtol=1e-4, atol=1e-8)
        assert applied_lr(run.optimizer) == s
        previous = s
        rates.append(s)
    assert rates[-1] > rates[0] > 0


@pytest.mark.parametrize("name", NEW)
def test_a_missing_package_names_the_baselines_extra(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = OPTIMIZER_BASELINES[name]
    monkeypatch.setitem(sys.modules, baseline.module, None)
    with pytest.raises(MissingPackageError, match=r"Fix: pip install 'lrgym\[baselines\]'"):
        make_optimizer(toy_task(optimizer=name, eta0=1.0), [torch.nn.Parameter(torch.ones(2))])


def test_the_new_baselines_run_in_the_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("dog")
    pytest.importorskip("mechanic_pytorch")
    names = (*NEW, "warmup-cosine")
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    listed = "".join(capsys.readouterr().out.split())  # argparse wraps the help, also at "-"
    assert ",".join(BASELINES) in listed and all(n in BASELINES for n in names)
    short = dataclasses.replace(get_suite("toy"), name="toy-short", env_kwargs={"steps": [30, 30]})
    csv_path = run_benchmark(
        short,
        tmp_path,
        baselines=",".join(names),
        tasks=1,
        perturb=0,
        progress=False,
        figures=False,
    )
    rows = read_results(csv_path)
    assert [r["controller"] for r in rows] == list(names)
    for row in rows:
        assert row["steps_completed"] == 30 and not row["diverged"]
        for column in ("final_train_loss", "test_loss", "test_accuracy", "reward"):
            assert math.isfinite(row[column]), (row["controller"], column)
        with np.load(tmp_path / row["curves"], allow_pickle=False) as curves:
            rates = curves["learning_rates"]
        assert rates.shape == (30,) and np.all(np.isfinite(rates)) and np.all(rates > 0)


def test_a_users_own_dog_records_its_step_size() -> None:
    dog = pytest.importorskip("dog")
    parameter = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = dog.DoG([parameter])
    parameter.grad = torch.tensor([1.0, 0.0])
    assert applied_lr(optimizer) == pytest.approx(1e-6 * (1 + 5) / math.sqrt(1 + 1e-8))
