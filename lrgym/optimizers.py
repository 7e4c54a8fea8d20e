"""The optimisers a task trains with: the tasks' own and the learning-rate-free baselines.

A task names its optimiser (:attr:`lrgym.tasks.Task.optimizer`); :func:`make_optimizer` builds it.

* **Task optimisers** (:data:`OPTIMIZERS`): ``"sgd"`` (with the task's momentum), ``"rmsprop"``
  and ``"adam"`` from ``torch.optim``, with torch's other defaults. The controller sets their
  learning rate every step.
* **Optimiser baselines** (:data:`OPTIMIZER_BASELINES`), which replace the task's optimiser and
  choose their step size themselves. Each runs with the settings its authors recommend
  (:attr:`OptimizerBaseline.settings`); the task's ``eta0`` is replaced by the baseline's ``lr``:

  ============================ ==================================================================
  ``adam``                     ``torch.optim.Adam``, lr 1e-3 (its default)
  ``prodigy``                  ``prodigyopt.Prodigy``, lr 1 and its defaults (no warm-up, no bias
                               correction); the authors: "use lr=1", no schedule or cosine
  ``dadapt-sgd``               ``dadaptation.DAdaptSGD``, lr 1 ("set the LR parameter to 1.0"),
                               momentum 0.9 (the tasks' SGD momentum; the package default is 0)
  ``dadapt-adam``              ``dadaptation.DAdaptAdam``, lr 1 and its defaults (bias correction
                               off, as shipped)
  ``schedulefree-sgd``         ``schedulefree.SGDScheduleFree``, its defaults: lr 1, momentum 0.9
  ``schedulefree-adamw``       ``schedulefree.AdamWScheduleFree``, its defaults: lr 0.0025
  ============================ ==================================================================

  Schedule-free optimisers keep two sequences; the model is evaluated at their average, so the
  training loop switches them to ``eval()`` for every evaluation (:func:`evaluation_mode`) and
  back to ``train()`` after.

:func:`applied_lr` reads the step size an optimiser applies in the step it is about to take
(Prodigy's and D-Adaptation's ``d * lr``, schedule-free's warmed-up lr); the training loop
records it as the run's learning-rate trace.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrgym.errors import InvalidConfigError, LrgymError
from lrgym.tasks.family import OPTIMIZERS, Task

__all__ = ["OPTIMIZERS", "make_optimizer"]


@dataclass(frozen=True)
class OptimizerBaseline:
    """An optimiser that sets its own step size, run at its authors' recommended settings.

    Attributes:
        name: the name a task's ``optimizer`` field and ``lrgym benchmark --baselines`` use.
        package: the pip package it comes from (``"torch"`` for torch's own).
        settings: the keyword arguments it is built with (``lr`` included).
        description: where the settings come from.
    """

    name: str
    package: str
    settings: Mapping[str, Any]
    description: str

    @property
    def lr(self) -> float:
        """The ``lr`` argument (a multiplier of the estimated step for the adaptive ones)."""
        return float(self.settings["lr"])


OPTIMIZER_BASELINES: dict[str, OptimizerBaseline] = {
    b.name: b
    for b in (
        OptimizerBaseline("adam", "torch", {"lr": 1e-3}, "torch.optim.Adam at its default lr"),
        OptimizerBaseline(
            "prodigy", "prodigyopt", {"lr": 1.0}, "prodigyopt.Prodigy, lr=1 and its defaults"
        ),
        OptimizerBaseline(
            "dadapt-sgd",
            "dadaptation",
            {"lr": 1.0, "momentum": 0.9},
            "dadaptation.DAdaptSGD, lr=1, momentum 0.9 as the tasks' SGD",
        ),
        OptimizerBaseline(
            "dadapt-adam", "dadaptation", {"lr": 1.0}, "dadaptation.DAdaptAdam, lr=1, defaults"
        ),
        OptimizerBaseline(
            "schedulefree-sgd",
            "schedulefree",
            {"lr": 1.0, "momentum": 0.9},
            "schedulefree.SGDScheduleFree at its defaults",
        ),
        OptimizerBaseline(
            "schedulefree-adamw",
            "schedulefree",
            {"lr": 0.0025},
            "schedulefree.AdamWScheduleFree at its defaults",
        ),
    )
}
"""The learning-rate-free and fixed-lr optimiser baselines, by name."""

ALL_OPTIMIZERS = OPTIMIZERS + tuple(n for n in OPTIMIZER_BASELINES if n not in OPTIMIZERS)
"""Every value a task's ``optimizer`` may take."""


def _import(package: str, name: str) -> Any:
    try:
        module = __import__(package)
    except ImportError:
        raise LrgymError(
            f"optimizer {name!r} needs the {package!r} package: pip install {package} "
            '(or pip install -e ".[baselines]")'
        ) from None
    return module


def _baseline_optimizer(name: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    baseline = OPTIMIZER_BASELINES[name]
    settings = dict(baseline.settings)
    module = _import(baseline.package, name)
    if name == "prodigy":
        return module.Prodigy(params, **settings)
    if name == "dadapt-sgd":
        return module.DAdaptSGD(params, **settings)
    if name == "dadapt-adam":
        return module.DAdaptAdam(params, **settings)
    cls = module.SGDScheduleFree if name == "schedulefree-sgd" else module.AdamWScheduleFree
    optimizer = cls(params, **settings)
    optimizer.train()  # schedule-free optimisers start in eval mode and refuse to step there
    return optimizer


def make_optimizer(task: Task, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The task's optimiser over ``params``, in one parameter group.

    A task optimiser (:data:`OPTIMIZERS`) gets ``lr=task.eta0`` and torch's other defaults
    (SGD: ``momentum=task.momentum``); an optimiser baseline its recommended settings, with
    ``lr=task.eta0`` (the benchmark sets a baseline task's ``eta0`` to the baseline's ``lr``).

    Raises:
        InvalidConfigError: an unknown optimiser name (the message lists the known ones).
        LrgymError: the baseline's package is not installed.
    """
    params = list(params)
    if task.optimizer == "sgd":
        return torch.optim.SGD(params, lr=task.eta0, momentum=task.momentum)
    if task.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=task.eta0)
    if task.optimizer == "adam":
        return torch.optim.Adam(params, lr=task.eta0)
    if task.optimizer not in OPTIMIZER_BASELINES:
        raise InvalidConfigError(
            f"optimizer={task.optimizer!r} is not known; choose one of {list(ALL_OPTIMIZERS)}"
        )
    optimizer = _baseline_optimizer(task.optimizer, params)
    for group in optimizer.param_groups:
        group["lr"] = task.eta0
    return optimizer


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps separate train and eval points (``train()``/``eval()``)."""
    return "train_mode" in optimizer.param_groups[0]


@contextlib.contextmanager
def evaluation_mode(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Evaluate a schedule-free optimiser's model at its averaged point: ``eval()`` inside the
    block, ``train()`` after. Any other optimiser: nothing happens."""
    if not is_schedule_free(optimizer):
        yield
        return
    optimizer.eval()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        optimizer.train()  # type: ignore[attr-defined]


def _adam_bias(group: Mapping[str, Any]) -> float:
    if not group.get("use_bias_correction"):
        return 1.0
    beta1, beta2 = group["betas"]
    k = group["k"]
    return float(math.sqrt(1.0 - beta2 ** (k + 1)) / (1.0 - beta1 ** (k + 1)))


def _dadapt_sgd_lr(optimizer: torch.optim.Optimizer) -> float:
    group = optimizer.param_groups[0]
    if group["k"] == 0 or "g0_norm" not in group:  # the first step measures ||g_0|| itself
        squares = [float((p.grad * p.grad).sum()) for p in group["params"] if p.grad is not None]
        g0 = math.sqrt(sum(squares))
    else:
        g0 = group["g0_norm"]
    return float(group["d"] * group["lr"] / g0) if g0 > 0 else 0.0


def _schedule_free_lr(optimizer: torch.optim.Optimizer) -> float:
    group = optimizer.param_groups[0]
    k, warmup = group["k"], group["warmup_steps"]
    return float(group["lr"] * ((k + 1) / warmup if k < warmup else 1.0))


_APPLIED: dict[str, Callable[[torch.optim.Optimizer], float]] = {
    "Prodigy": lambda o: float(
        o.param_groups[0]["d"] * o.param_groups[0]["lr"] * _adam_bias(o.param_groups[0])
    ),
    "DAdaptAdam": lambda o: float(
        o.param_groups[0]["d"] * o.param_groups[0]["lr"] * _adam_bias(o.param_groups[0])
    ),
    "DAdaptSGD": _dadapt_sgd_lr,
    "SGDScheduleFree": _schedule_free_lr,
    "AdamWScheduleFree": _schedule_free_lr,
}


def applied_lr_reader(
    optimizer: torch.optim.Optimizer,
) -> Callable[[torch.optim.Optimizer], float] | None:
    """The function that reads the step size ``optimizer`` will apply in its next step (call it
    after the backward, before ``step()``): ``d * lr`` for Prodigy and D-Adaptation (times
    Adam's bias correction where it is on; D-Adapted SGD divides by the first gradient's norm,
    as it does), the warmed-up ``lr`` for the schedule-free optimisers. ``None`` for every
    other optimiser, whose step size is its group's ``lr``."""
    return _APPLIED.get(type(optimizer).__name__)


def applied_lr(optimizer: torch.optim.Optimizer) -> float | None:
    """The step size ``optimizer`` will apply in its next step, see :func:`applied_lr_reader`
    (``None``: its group's ``lr``)."""
    reader = applied_lr_reader(optimizer)
    return None if reader is None else reader(optimizer)
