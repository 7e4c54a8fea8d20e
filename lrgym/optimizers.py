"""The optimisers a task trains with: the tasks' own and the learning-rate-free baselines.

A task names its optimiser (:attr:`lrgym.tasks.Task.optimizer`); :func:`make_optimizer` builds it.

* **Task optimisers** (:data:`OPTIMIZERS`), from ``torch.optim`` with ``lr=task.eta0``; the
  controller sets their learning rate every step:

  ============ =====================================================================
  ``sgd``      ``torch.optim.SGD`` with the task's momentum, torch's other defaults
  ``rmsprop``  ``torch.optim.RMSprop``, torch's defaults
  ``adam``     ``torch.optim.Adam``, torch's defaults
  ``adamw``    ``torch.optim.AdamW``, decoupled weight decay 0.01 (:data:`ADAMW_WEIGHT_DECAY`,
               torch's default) and torch's other defaults: betas (0.9, 0.999), eps 1e-8
  ============ =====================================================================

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
  ``dog``                      ``dog.DoG`` (Ivgi et al. 2023), its defaults: lr 1 ("changing it
                               is not recommended"), reps_rel 1e-6 (their value without batch
                               norm); evaluated at the authors' polynomial-decay iterate average
                               (``dog.PolynomialDecayAverager``, gamma 8), which they call
                               crucial ("DoG must be combined with iterate averaging")
  ``mechanic-sgd``             ``mechanic_pytorch.mechanize(torch.optim.SGD)`` (Cutkosky et al.
                               2023), lr 1 as in the authors' README, momentum 0.9 (the tasks'
                               SGD momentum), mechanize's defaults (s_decay 0.01, s_init 1e-8)
  ``mechanic-adam``            ``mechanic_pytorch.mechanize(torch.optim.Adam)``, lr 1 as in the
                               README, Adam's and mechanize's defaults
  ============================ ==================================================================

  Schedule-free optimisers keep two sequences and DoG an average of its iterates; the model is
  evaluated at the average, so the training loop switches them to ``eval()`` for every
  evaluation (:func:`evaluation_mode`) and back to ``train()`` after.

:func:`applied_lr` reads the step size an optimiser applies (Prodigy's and D-Adaptation's
``d * lr``, schedule-free's warmed-up lr, DoG's ``lr * rbar / sqrt(G)``, Mechanic's ``lr * s``);
the training loop records it as the run's learning-rate trace.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrgym.errors import InvalidConfigError, MissingPackageError
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
    module: str = ""
    """The module to import (``""``: the package's name)."""

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
        OptimizerBaseline(
            "dog",
            "dog-optimizer",
            {"lr": 1.0, "reps_rel": 1e-6},
            "dog.DoG, lr=1, reps_rel 1e-6 (its defaults), evaluated at its polynomial-decay "
            "iterate average (gamma 8)",
            module="dog",
        ),
        OptimizerBaseline(
            "mechanic-sgd",
            "mechanic-pytorch",
            {"lr": 1.0, "momentum": 0.9},
            "mechanic_pytorch.mechanize(SGD), lr=1, momentum 0.9 as the tasks' SGD",
            module="mechanic_pytorch",
        ),
        OptimizerBaseline(
            "mechanic-adam",
            "mechanic-pytorch",
            {"lr": 1.0},
            "mechanic_pytorch.mechanize(Adam), lr=1, defaults",
            module="mechanic_pytorch",
        ),
    )
}
"""The learning-rate-free and fixed-lr optimiser baselines, by name."""

ADAMW_WEIGHT_DECAY = 0.01
"""AdamW's decoupled weight decay (torch's default): each step multiplies the weights by
``1 - lr * 0.01`` before Adam's update."""

DOG_AVERAGE_GAMMA = 8.0
"""The polynomial-decay averaging's ``gamma`` DoG is evaluated with (the authors' default)."""

ALL_OPTIMIZERS = OPTIMIZERS + tuple(n for n in OPTIMIZER_BASELINES if n not in OPTIMIZERS)
"""Every value a task's ``optimizer`` may take."""


def _import(baseline: OptimizerBaseline) -> Any:
    package = baseline.package
    try:
        module = __import__(baseline.module or package)
    except ImportError:
        raise MissingPackageError(package, "baselines", f"optimizer {baseline.name!r}") from None
    return module


class _IterateAverage:
    """DoG's evaluation point: the authors' polynomial-decay average of the iterates
    (``dog.PolynomialDecayAverager`` over the optimised parameters, updated after every step).
    ``eval()`` copies the average into the parameters, ``train()`` puts the iterate back."""

    def __init__(self, averager_class: Any, params: list[nn.Parameter]) -> None:
        self.params = params
        self.averager = averager_class(nn.ParameterList(params), gamma=DOG_AVERAGE_GAMMA)
        self.iterate: list[torch.Tensor] | None = None  # the training point, while in eval()

    @torch.no_grad()
    def eval(self) -> None:
        if self.iterate is None:
            self.iterate = [p.detach().clone() for p in self.params]
            averaged = self.averager.averaged_model.parameters()
            for p, mean in zip(self.params, averaged, strict=True):
                p.copy_(mean)

    @torch.no_grad()
    def train(self) -> None:
        if self.iterate is not None:
            for p, iterate in zip(self.params, self.iterate, strict=True):
                p.copy_(iterate)
            self.iterate = None


def _averaged_dog(module: Any, params: list[nn.Parameter], settings: dict[str, Any]) -> Any:
    class AveragedDoG(module.DoG):
        """``dog.DoG`` that keeps the average it is evaluated at (:func:`evaluation_mode`)."""

        def __init__(self) -> None:
            super().__init__(params, **settings)
            self.average = _IterateAverage(module.PolynomialDecayAverager, params)

        def step(self, closure: Callable[[], float] | None = None) -> float | None:
            loss = super().step(closure)
            self.average.averager.step()
            return loss

    return AveragedDoG()


def _baseline_optimizer(name: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    baseline = OPTIMIZER_BASELINES[name]
    settings = dict(baseline.settings)
    module = _import(baseline)
    if name == "dog":
        return _averaged_dog(module, params, settings)
    if name.startswith("mechanic-"):
        base = torch.optim.SGD if name == "mechanic-sgd" else torch.optim.Adam
        return module.mechanize(base)(params, **settings)
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
    (SGD: ``momentum=task.momentum``; AdamW: weight decay :data:`ADAMW_WEIGHT_DECAY`); an
    optimiser baseline its recommended settings, with ``lr=task.eta0`` (the benchmark sets a
    baseline task's ``eta0`` to the baseline's ``lr``).

    Raises:
        InvalidConfigError: an unknown optimiser name (the message lists the known ones).
        MissingPackageError: the baseline's package is not installed (names the extra).
    """
    params = list(params)
    if task.optimizer == "sgd":
        return torch.optim.SGD(params, lr=task.eta0, momentum=task.momentum)
    if task.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=task.eta0)
    if task.optimizer == "adam":
        return torch.optim.Adam(params, lr=task.eta0)
    if task.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=task.eta0, weight_decay=ADAMW_WEIGHT_DECAY)
    if task.optimizer not in OPTIMIZER_BASELINES:
        raise InvalidConfigError(
            f"optimizer={task.optimizer!r} is not known; choose one of {list(ALL_OPTIMIZERS)}"
        )
    optimizer = _baseline_optimizer(task.optimizer, params)
    for group in optimizer.param_groups:
        group["lr"] = task.eta0
    return optimizer


def _evaluation_point(optimizer: torch.optim.Optimizer) -> Any:
    """What switches ``optimizer``'s parameters between the point it trains at and the one it
    is evaluated at (``eval()``/``train()``): the schedule-free optimiser itself, DoG's iterate
    average; ``None`` for an optimiser that is evaluated where it trains."""
    if "train_mode" in optimizer.param_groups[0]:  # schedule-free
        return optimizer
    average = getattr(optimizer, "average", None)
    return average if isinstance(average, _IterateAverage) else None


@contextlib.contextmanager
def evaluation_mode(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Evaluate the model at the optimiser's averaged point (schedule-free's ``x``, DoG's
    iterate average): ``eval()`` inside the block, ``train()`` after. Any other optimiser:
    nothing happens."""
    point = _evaluation_point(optimizer)
    if point is None:
        yield
        return
    point.eval()
    try:
        yield
    finally:
        point.train()


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


def _dog_lr(optimizer: torch.optim.Optimizer) -> float:
    """DoG's ``eta = lr * rbar / sqrt(G)`` of the coming step, as its ``step()`` will compute
    it: ``rbar`` the largest distance from ``x_0`` so far (at the first step
    ``reps_rel * (1 + ||x_0||)``), ``G`` the sum of squared gradient norms, this one's included
    (plus ``eps``)."""
    group = optimizer.param_groups[0]
    params = [p.detach() for p in group["params"]]
    squares = sum(float((p.grad * p.grad).sum()) for p in group["params"] if p.grad is not None)
    if "rbar" not in group:  # the first step
        norm = math.sqrt(sum(float((p * p).sum()) for p in params))
        rbar, total = group["reps_rel"] * (1.0 + norm), squares + group["eps"]
    else:
        pairs = zip(params, group["init_buffer"], strict=True)
        moved = math.sqrt(sum(float(((p - p0) ** 2).sum()) for p, p0 in pairs))
        rbar, total = max(float(group["rbar"]), moved), float(group["G"]) + squares
    return float(group["lr"] * rbar / math.sqrt(total))


def _mechanic_lr(optimizer: torch.optim.Optimizer) -> float:
    """``lr * s``: Mechanic's scale ``s`` (the sum over its betas), computed inside ``step()``
    from that step's gradient and applied to the base optimiser's update at ``lr``; read after
    the step (0 before the first)."""
    state = optimizer.state.get("_mechanic")  # type: ignore[call-overload]
    scale = 0.0 if state is None else float(state["s"].sum())
    return float(optimizer.param_groups[0]["lr"] * scale)


@dataclass(frozen=True)
class StepSizeReader:
    """Reads the step size an optimiser applies in a step.

    Attributes:
        read: the function of the optimiser that returns it.
        after_step: ``False``: call it after the backward pass and before ``step()`` (it reads
            the step about to be taken); ``True``: call it right after ``step()`` (the step
            size is only known once the step computed it: Mechanic's).
    """

    read: Callable[[torch.optim.Optimizer], float]
    after_step: bool = False

    def __call__(self, optimizer: torch.optim.Optimizer) -> float:
        return self.read(optimizer)


def _adam_like(o: torch.optim.Optimizer) -> float:
    return float(o.param_groups[0]["d"] * o.param_groups[0]["lr"] * _adam_bias(o.param_groups[0]))


_APPLIED: dict[str, StepSizeReader] = {
    "Prodigy": StepSizeReader(_adam_like),
    "DAdaptAdam": StepSizeReader(_adam_like),
    "DAdaptSGD": StepSizeReader(_dadapt_sgd_lr),
    "SGDScheduleFree": StepSizeReader(_schedule_free_lr),
    "AdamWScheduleFree": StepSizeReader(_schedule_free_lr),
    "DoG": StepSizeReader(_dog_lr),  # a user's own, with ControlledLR
    "AveragedDoG": StepSizeReader(_dog_lr),
    "MechanizedSGD": StepSizeReader(_mechanic_lr, after_step=True),
    "MechanizedAdam": StepSizeReader(_mechanic_lr, after_step=True),
}


def applied_lr_reader(optimizer: torch.optim.Optimizer) -> StepSizeReader | None:
    """What reads the step size ``optimizer`` applies: ``d * lr`` for Prodigy and D-Adaptation
    (times Adam's bias correction where it is on; D-Adapted SGD divides by the first gradient's
    norm, as it does), the warmed-up ``lr`` for the schedule-free optimisers, DoG's
    ``lr * rbar / sqrt(G)``, all read before the step; Mechanic's ``lr * s``, read after it
    (:attr:`StepSizeReader.after_step`). ``None`` for every other optimiser, whose step size is
    its group's ``lr``."""
    return _APPLIED.get(type(optimizer).__name__)


def applied_lr(optimizer: torch.optim.Optimizer) -> float | None:
    """The step size ``optimizer`` applies, see :func:`applied_lr_reader`: in its next step
    (called before ``step()``), or for Mechanic in its latest one (``None``: its group's
    ``lr``)."""
    reader = applied_lr_reader(optimizer)
    return None if reader is None else reader(optimizer)
