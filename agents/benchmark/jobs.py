"""The runs of a benchmark: its plan (:class:`Job`, :func:`plan`) and how a worker runs one job
(:class:`BenchmarkWorker`, :func:`run_job`: one training run, its results row and curves)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

import lrgym
from lrgym.bench.baselines import BASELINES, LR_GRID, get_baselines
from lrgym.bench.suites import Suite
from lrgym.controllers.files import SavedController, load_controller
from lrgym.errors import InvalidConfigError
from lrgym.features import FeatureConfig

FEATURE_COST = (("dense", 10), ("hold", 10))
"""The learned controllers' cheap-feature variants: (estimate, every)."""

Outcome = tuple[dict[str, Any], dict[str, np.ndarray]]
"""What a job returns: its results row (without the suite and ``curves``) and its curves."""


@dataclass(frozen=True)
class Job:
    """One run of the plan: a controller on a task from an eta_0."""

    controller: str
    kind: str
    task_index: int
    task_seed: int
    eta0: float | None  # None: the task's own (or the optimiser baseline's)
    eta0_source: str
    spec: dict[str, Any]  # how to build the controller, see _controller

    @property
    def key(self) -> tuple[str, int, str, str]:
        """What identifies the run in results.csv."""
        return (self.controller, self.task_index, self.eta0_source, _eta0_text(self.eta0))

    @property
    def slug(self) -> str:
        """A file name for the run's curves: its key in safe characters and a short hash."""
        text = f"{self.controller}-t{self.task_index}-{self.eta0_source}{_eta0_text(self.eta0)}"
        safe = "".join(c if c.isalnum() or c in "-." else "_" for c in text)
        return safe + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _eta0_text(eta0: float | None) -> str:
    return "" if eta0 is None else repr(float(eta0))


def row_key(row: dict[str, Any]) -> tuple[str, int, str, str]:
    """The :attr:`Job.key` of the job that wrote a results row."""
    eta0 = None if row["eta0_source"] in ("task", "fixed") else row["eta0"]
    return (row["controller"], int(row["task_index"]), row["eta0_source"], _eta0_text(eta0))


def plan(
    suite: Suite,
    *,
    controllers: Sequence[tuple[str, str]] = (),
    baselines: str | None = None,
    tasks: int | None = None,
    eta0_sweep: bool = False,
    perturb: float = 0.2,
    eta0_grid: Sequence[float] | None = None,
    feature_cost: bool = True,
) -> list[Job]:
    """The runs of a benchmark, in the order they are run and written.

    Args:
        suite: the suite.
        controllers: ``(name, path)`` of each learned controller file.
        baselines: comma-separated baseline names (``None``: all of them).
        tasks: the first ``tasks`` tasks of the suite (``None``: all).
        eta0_sweep: also run every eta_0-dependent controller from every grid value.
        perturb: relative perturbation of each ``theta`` entry (0: none).
        eta0_grid: the eta_0 values of the sweep (``None``: :data:`LR_GRID`); the constant
            baseline always runs the whole :data:`LR_GRID` (the oracle).
        feature_cost: run each learned controller with cheap features too
            (:data:`FEATURE_COST`).
    """
    chosen = get_baselines(baselines)
    sweep = LR_GRID if eta0_grid is None else tuple(float(v) for v in eta0_grid)
    if not sweep or not all(math.isfinite(v) and v > 0 for v in sweep):
        raise InvalidConfigError(f"eta0_grid={eta0_grid!r} must be positive learning rates")
    count = len(suite.task_seeds) if tasks is None else int(tasks)
    if not 1 <= count <= len(suite.task_seeds):
        raise InvalidConfigError(
            f"tasks={tasks!r}: suite {suite.name!r} has {len(suite.task_seeds)} tasks; "
            f"choose 1 .. {len(suite.task_seeds)}"
        )
    if not 0.0 <= perturb < 1.0:
        raise InvalidConfigError(f"perturb={perturb!r} must lie in [0, 1)")
    jobs: list[Job] = []
    for index, seed in enumerate(suite.task_seeds[:count]):

        def add(name: str, kind: str, eta0: float | None, source: str, spec: dict[str, Any]):
            jobs.append(Job(name, kind, index, int(seed), eta0, source, spec))  # noqa: B023

        for baseline in chosen:
            spec = {"baseline": baseline.name}
            if baseline.kind == "constant":
                for lr in LR_GRID:
                    add("constant", "constant", lr, "grid", spec)
            else:
                add(
                    baseline.name,
                    baseline.kind,
                    None,
                    "task" if baseline.uses_eta0 else "fixed",
                    spec,
                )
        for name, path in controllers:
            learned = {"file": path}
            add(name, "learned", None, "task", learned)
            for estimate, every in FEATURE_COST if feature_cost else ():
                features = {"every": every, "estimate": estimate}
                add(
                    f"{name} [every {every}, {estimate}]",
                    "feature-cost",
                    None,
                    "task",
                    {**learned, "features": features},
                )
            if perturb > 0:
                for i in range(5):
                    for sign in (+1, -1):
                        label = f"{name} [theta{i} {'+' if sign > 0 else '-'}{perturb:.0%}]"
                        add(
                            label,
                            "perturbed",
                            None,
                            "task",
                            {**learned, "perturb": [i, 1.0 + sign * perturb]},
                        )
        if eta0_sweep:
            for baseline in chosen:
                if baseline.uses_eta0 and baseline.kind != "constant":
                    for lr in sweep:
                        add(baseline.name, baseline.kind, lr, "grid", {"baseline": baseline.name})
            for name, path in controllers:
                for lr in sweep:
                    add(name, "learned", lr, "grid", {"file": path})
    return jobs


class BenchmarkWorker:
    """A worker's state: the suite's env and the controller files it has read."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]) -> None:
        self.env = gym.make(env_id, **env_kwargs)
        self.saved: dict[str, SavedController] = {}

    def close(self) -> None:
        """Close the env."""
        self.env.close()


def _controller(worker: BenchmarkWorker, job: Job, task: lrgym.Task) -> tuple[Any, lrgym.Task]:
    spec = job.spec
    if "baseline" in spec:
        return BASELINES[spec["baseline"]].build(task)
    path = spec["file"]
    if path not in worker.saved:
        worker.saved[path] = load_controller(path)
    saved = worker.saved[path]
    # a contextual policy reads the task's starting features, from this eta_0
    theta = np.array(
        saved.theta_for(lambda: worker.env.reset(options={"task": task})[0]), dtype=np.float64
    )
    if "perturb" in spec:
        entry, factor = spec["perturb"]
        theta[int(entry)] *= float(factor)
    return saved.with_theta(theta), task


def run_job(worker: BenchmarkWorker, job: Job) -> Outcome:
    """Run one job in a worker: its CSV row (without the suite and ``curves``) and its curves."""
    env: Any = worker.env.unwrapped
    worker.env.reset(seed=job.task_seed)
    task = env.task
    if job.eta0 is not None:
        task = dataclasses.replace(task, eta0=float(job.eta0))
    controller, task = _controller(worker, job, task)
    features = None
    if "features" in job.spec:
        f = job.spec["features"]
        features = FeatureConfig(gamma=env.features.gamma, every=f["every"], estimate=f["estimate"])
    result = env.run_controller(controller, task, features=features)
    curves = result.curves
    row = {
        "controller": job.controller,
        "kind": job.kind,
        "task_index": job.task_index,
        "task_seed": job.task_seed,
        "eta0": float(task.eta0),
        "eta0_source": job.eta0_source,
        "final_train_loss": float(result.final_train_loss),
        "initial_train_loss": float(curves.eval_losses[0]),
        "reward": float(env.reward_of(result)),
        "test_loss": float(result.test_loss),
        "test_accuracy": float(result.test_accuracy),
        "diverged": int(result.diverged),
        "steps": int(task.steps),
        "steps_completed": int(result.steps_completed),
        "wall_time": float(result.wall_time),
        "lrgym_version": lrgym.__version__,
    }
    arrays = {
        "losses": curves.losses,
        "learning_rates": curves.learning_rates,
        "eval_steps": curves.eval_steps,
        "eval_losses": curves.eval_losses,
    }
    return row, arrays
