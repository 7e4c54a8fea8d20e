"""The baselines a learned controller is compared with, by name (``lrgym benchmark --baselines``).

Every baseline runs a task of the suite in lrgym's own training loop. :meth:`Baseline.build`
turns a task into the controller to run and the task to run it on (the same task, except that
an optimiser baseline replaces the task's optimiser and starts from its own ``lr``).

==================== ============ ===============================================================
name                 kind         what runs
==================== ============ ===============================================================
``constant``         constant     the task's optimiser at a constant lr, for every value of
                                  :data:`LR_GRID` (half-decades from 1e-5 to 1); the per-task
                                  best of the grid is the *oracle*, computed from these runs
``step``             schedule     eta_0, cut x0.1 after each third of the run
``exponential``      schedule     eta_0 decayed exponentially to 1% of it at the last step
``cosine``           schedule     cosine annealing from eta_0 towards 0
``warmup-cosine``    schedule     linear warm-up over the first 5% of the steps, then cosine
``plateau``          schedule     ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (its defaults:
                                  x0.1 after 10 intervals without a new best) on the mean
                                  mini-batch loss of each 20 steps
``hypergradient``    schedule     SGD-HD / Adam-HD (Baydin et al. 2018), beta 1e-3 for SGD,
                                  1e-7 for Adam and RMSprop
``adam`` ...         optimizer    the optimiser baselines of :data:`lrgym.optimizers.
                                  OPTIMIZER_BASELINES`, at their authors' settings
==================== ============ ===============================================================

Schedules, plateau and hypergradient start from the task's eta_0 (or from each grid value with
``--eta0-sweep``); the optimiser baselines ignore eta_0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from lrgym.controllers import (
    HYPERGRADIENT_BETA,
    ConstantController,
    Controller,
    HypergradientController,
    PlateauController,
    ScheduleController,
)
from lrgym.errors import choice_error
from lrgym.optimizers import OPTIMIZER_BASELINES
from lrgym.tasks.family import Task

LR_GRID: tuple[float, ...] = tuple(float(f"{10 ** (k / 2):.3g}") for k in range(-10, 1))
"""The constant learning rates: half-decades from 1e-5 to 1 (1e-5, 3.16e-5, ..., 0.316, 1)."""


@dataclass(frozen=True)
class Baseline:
    """A named baseline.

    Attributes:
        name: its name.
        kind: ``"constant"``, ``"schedule"`` or ``"optimizer"``.
        description: one line on what it does.
        uses_eta0: whether it starts from the task's eta_0 (so ``--eta0-sweep`` varies it).
    """

    name: str
    kind: str
    description: str
    uses_eta0: bool
    _make: Callable[[Task], tuple[Controller, Task]] = dataclasses.field(repr=False)

    def build(self, task: Task) -> tuple[Controller, Task]:
        """The controller to run and the task to run it on."""
        return self._make(task)


def _same(make: Callable[[Task], Controller]) -> Callable[[Task], tuple[Controller, Task]]:
    return lambda task: (make(task), task)


def _optimizer(name: str) -> Callable[[Task], tuple[Controller, Task]]:
    lr = OPTIMIZER_BASELINES[name].lr
    return lambda task: (ConstantController(), dataclasses.replace(task, optimizer=name, eta0=lr))


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline(
            "constant",
            "constant",
            "a constant learning rate, every value of the half-decade grid 1e-5 .. 1",
            True,
            _same(lambda task: ConstantController()),
        ),
        Baseline(
            "step",
            "schedule",
            "step decay: x0.1 after each third of the run",
            True,
            _same(lambda t: ScheduleController("step", decay=0.1, every=math.ceil(t.steps / 3))),
        ),
        Baseline(
            "exponential",
            "schedule",
            "exponential decay to 1% of eta_0 at the last step",
            True,
            _same(lambda t: ScheduleController("exponential", decay=0.01 ** (1 / t.steps))),
        ),
        Baseline(
            "cosine",
            "schedule",
            "cosine annealing from eta_0 towards 0",
            True,
            _same(lambda t: ScheduleController("cosine", decay=0.0)),
        ),
        Baseline(
            "warmup-cosine",
            "schedule",
            "linear warm-up over 5% of the steps, then cosine annealing towards 0",
            True,
            _same(lambda t: ScheduleController("warmup-cosine", decay=0.0, warmup=0.05)),
        ),
        Baseline(
            "plateau",
            "schedule",
            "ReduceLROnPlateau (torch defaults) on the mean loss of every 20 steps",
            True,
            _same(lambda t: PlateauController(interval=20)),
        ),
        Baseline(
            "hypergradient",
            "schedule",
            "hypergradient descent (Baydin et al. 2018), the authors' beta per optimiser",
            True,
            _same(lambda t: HypergradientController(HYPERGRADIENT_BETA[t.optimizer])),
        ),
        *(
            Baseline(name, "optimizer", spec.description, False, _optimizer(name))
            for name, spec in OPTIMIZER_BASELINES.items()
        ),
    )
}
"""Every baseline, by name, in the order the benchmark runs them."""


def get_baselines(names: str | None) -> list[Baseline]:
    """The baselines of a comma-separated list of names (all of them for ``None`` or ``""``).

    Raises:
        InvalidConfigError: an unknown name (the message lists the baselines).
    """
    if not names:
        return list(BASELINES.values())
    chosen = []
    for name in (n.strip() for n in names.split(",")):
        if name not in BASELINES:
            raise choice_error("baseline", name, list(BASELINES))
        if BASELINES[name] not in chosen:
            chosen.append(BASELINES[name])
    return chosen
