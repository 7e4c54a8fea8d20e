"""One training loop for every ask/tell learner (REPS, CMA-ES, random search).

:func:`train` asks the learner for a batch, runs the batch's episodes through a collector
(serial, process or Ray; results never depend on which), tells the learner the rewards, and
after every batch appends a line to ``log.jsonl``, writes ``controller.json`` and checkpoints the
learner atomically (:mod:`lrgym_agents.rundir`). A run killed at any moment resumes from its
checkpoint to exactly the controller an uninterrupted run ends with: the episodes of an
unfinished batch are run again with the same seeds and actions.

Episode ``j`` of iteration ``i`` runs the task of ``reset(seed)`` with the seed
:func:`lrgym_agents.collect.episode_seeds` derives from ``(seed, i)``; with ``same_task`` every
episode of an iteration shares one task.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lrgym.controllers.files import save_controller
from lrgym.errors import InvalidConfigError, LrgymError

from .collect import Collector, Progress, episode_seeds, make_collector
from .learners.asktell import (
    AskTellLearner,
    config_dict,
    learner_config,
    learner_from_state,
    make_learner,
)
from .objective import (
    Objective,
    candidate_scores,
    objective_from,
    perturbation_factors,
    perturbed_actions,
)
from .rundir import (
    LearnerRun,
    RunDirectory,
    controller_for,
    log_row,
    progress_bar,
    run_settings,
)


def train(
    algorithm: str,
    env_id: str,
    out: str | os.PathLike[str],
    *,
    episodes: int,
    config: Any | Mapping[str, Any] | None = None,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    same_task: bool = False,
    objective: Objective | Mapping[str, Any] | None = None,
    backend: str | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    resume: bool = False,
    tensorboard: bool = False,
    progress: bool = True,
    collector: Collector | None = None,
) -> LearnerRun:
    """Learn a controller with the ask/tell learner ``algorithm`` on ``env_id``.

    Args:
        algorithm: ``"reps"``, ``"cmaes"`` or ``"random"``
            (:data:`lrgym_agents.learners.asktell.ASK_TELL_LEARNERS`).
        env_id: a registered env with a Box action and one-step episodes.
        out: the run directory (:mod:`lrgym_agents.rundir`).
        episodes: training runs in total, a multiple of the learner's ``samples``
            (iterations = episodes / samples); a resumed run continues up to this number.
        config: the learner's settings (its config dataclass, or a dict of them).
        seed: seeds the learner's draws and every episode's task.
        env_kwargs: extra env arguments (e.g. ``data_root``).
        same_task: run every episode of an iteration on the same task (a fresh one each
            iteration), so that their rewards differ only by the action (common random
            numbers); otherwise every episode has its own task, as in the paper.
        objective: what the learner is told (:class:`lrgym_agents.objective.Objective`: tasks per
            candidate, comparable rewards, CVaR, theta perturbations); the default tells it
            each episode's reward.
        backend, workers, ray_address: how episodes run
            (:func:`lrgym_agents.collect.make_collector`).
        resume: continue the run in ``out`` from its checkpoint.
        tensorboard: also log scalars for TensorBoard under ``out/tensorboard``.
        progress: show a progress bar on stderr.
        collector: an already open collector to use instead (the caller closes it).

    Raises:
        InvalidConfigError: unknown learner or setting, ``episodes`` not a positive multiple
            of ``samples`` times the objective's ``tasks``, or ranks without shared tasks.
        lrgym_agents.rundir.CheckpointError: ``resume`` and the checkpoint is missing, corrupt or
            from a run with other settings; or not ``resume`` and ``out`` already holds a run.
    """
    settings = config_dict(config) if is_dataclass(config) else dict(config or {})
    learner_settings = learner_config(algorithm, settings)  # validates
    goal = checked_objective(objective, int(learner_settings.samples), episodes, same_task)
    batch = int(learner_settings.samples) * goal.tasks
    learner_spec: dict[str, Any] = {
        "config": config_dict(learner_settings),
        "same_task": bool(same_task),
    }
    if not goal.is_default:  # runs with the default objective keep their run.json as before
        learner_spec["objective"] = goal.to_dict()
    spec = run_settings(algorithm, env_id, env_kwargs, episodes, seed, learner_spec)
    directory = RunDirectory(out)
    if resume:
        state, done, elapsed, records = directory.resume(spec)
        learner = learner_from_state(algorithm, state)
    else:
        directory.create(spec)
        learner, done, elapsed, records = None, 0, 0.0, []
    own = collector is None
    if collector is None:
        collector = make_collector(
            backend, env_id, spec["env_kwargs"], workers=workers, ray_address=ray_address
        )
    info_env = None
    try:
        info_env = gym.make(env_id, **spec["env_kwargs"])
        if learner is None:
            dim = int(np.prod(collector.action_space.shape))
            learner = make_learner(algorithm, dim, learner_settings, seed=spec["seed"])
            run = _Training(spec, directory, collector, info_env, learner)
            run.save_controller("controller-initial.json")
            run.checkpoint()  # a run killed now can resume
        else:
            run = _Training(spec, directory, collector, info_env, learner, done, elapsed, records)
        _run_batches(run, batch, tensorboard=tensorboard, progress=progress)
    finally:
        if info_env is not None:
            info_env.close()
        if own:
            collector.close()
    return LearnerRun(learner, run.records, directory.path)


def checked_objective(
    objective: Objective | Mapping[str, Any] | None, samples: int, episodes: int, same_task: bool
) -> Objective:
    """The run's :class:`~lrgym_agents.objective.Objective`, checked against its budget.

    Raises:
        InvalidConfigError: ``episodes`` not a positive multiple of ``samples`` times the
            objective's ``tasks``, or ranks without shared tasks.
    """
    goal = objective_from(objective)
    batch = samples * goal.tasks
    if int(episodes) != episodes or episodes < batch or episodes % batch:
        per = f"samples={samples}" if goal.tasks == 1 else f"samples={samples} x tasks={goal.tasks}"
        raise InvalidConfigError(
            f"episodes={episodes!r} must be a positive multiple of {per} "
            f"(iterations = episodes / {batch}), e.g. {max(1, round(episodes / batch)) * batch}"
        )
    if goal.comparable == "rank" and goal.tasks == 1 and not same_task:
        raise InvalidConfigError(
            "comparable='rank' ranks the candidates on each task they share, but every episode "
            "has its own task: pass same_task=True (--same-task) or tasks >= 2"
        )
    return goal


@dataclass
class _Training:
    """A training run between batches: what it runs on and how far it has come."""

    spec: dict[str, Any]
    directory: RunDirectory
    collector: Collector
    info_env: gym.Env[Any, Any]
    learner: AskTellLearner
    done: int = 0
    elapsed: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)

    def save_controller(self, name: str) -> None:
        """Write the learner's recommendation as the controller file ``name``."""
        action, cov = self.learner.recommendation()
        source = {
            "algorithm": self.spec["algorithm"],
            "iteration": self.learner.iteration,
            "episodes": self.done,
            "seed": self.spec["seed"],
        }
        saved = controller_for(
            self.info_env,
            self.spec["env_id"],
            self.spec["env_kwargs"],
            source,
            action=action,
            cov=cov,
        )
        save_controller(saved, self.directory.path / name)

    def checkpoint(self) -> None:
        """Checkpoint the learner atomically."""
        self.directory.save(self.spec, self.learner.state_dict(), self.done, self.elapsed)

    @property
    def objective(self) -> Objective:
        """What the learner is told (the default when the run's settings name none)."""
        return objective_from(self.spec.get("objective"))

    def next_batch(self, progress: Progress | None) -> dict[str, Any]:
        """Ask, run the batch's episodes, tell; log, save and checkpoint. Returns the log row.

        Episode ``i * tasks + k`` runs candidate ``i`` on task ``k``.
        """
        started = time.perf_counter()
        learner, space, goal = self.learner, self.collector.action_space, self.objective
        iteration = learner.iteration
        actions = learner.ask()
        if goal.tasks > 1:
            seeds = episode_seeds(self.spec["seed"], iteration, goal.tasks) * len(actions)
        elif self.spec["same_task"]:
            seeds = episode_seeds(self.spec["seed"], iteration, 1) * len(actions)
        else:
            seeds = episode_seeds(self.spec["seed"], iteration, len(actions))
        run_actions = np.repeat(actions, goal.tasks, axis=0)
        if goal.perturb:
            env = self.info_env.unwrapped
            factors = perturbation_factors(
                self.spec["seed"], iteration, len(run_actions), actions.shape[1], goal.perturb
            )
            run_actions = perturbed_actions(
                run_actions,
                factors,
                env.action_to_theta,  # type: ignore[attr-defined]
                env.theta_to_action,  # type: ignore[attr-defined]
            )
        batch = self.collector.run(  # the env clips an action outside its box
            run_actions.reshape(len(run_actions), *space.shape), seeds, progress=progress
        )
        rewards = np.array([e.reward for e in batch]).reshape(len(actions), goal.tasks)
        scores = candidate_scores(rewards, goal)  # the rewards themselves by default
        info = learner.tell(actions, scores)
        seconds = time.perf_counter() - started
        self.elapsed += seconds
        self.done += len(batch)
        record = log_row(
            iteration=iteration,
            episodes_total=self.done,
            rewards=[e.reward for e in batch],
            seeds=seeds,
            diverged=sum(e.diverged for e in batch),
            seconds=seconds,
            elapsed=self.elapsed,
            learner=_learner_log(info, learner, None if goal.is_default else scores),
        )
        self.records.append(record)
        self.directory.append(record)
        self.save_controller("controller.json")
        self.checkpoint()
        return record


def _run_batches(run: _Training, batch: int, *, tensorboard: bool, progress: bool) -> None:
    """Run batches until the run has its episodes, with the progress bar and TensorBoard log."""
    spec = run.spec
    writer = _tensorboard(run.directory.path) if tensorboard else None
    bar = None
    if progress:
        bar = progress_bar(f"{spec['algorithm']} {spec['env_id']}", spec["episodes"], run.done)
    try:
        while run.done < spec["episodes"]:
            record = run.next_batch(bar.update if bar is not None else None)
            if writer is not None:
                _log_scalars(writer, record, run.done)
            if bar is not None:
                bar.set_postfix(
                    iteration=f"{run.learner.iteration}/{spec['episodes'] // batch}",
                    mean=f"{record['mean_reward']:.4f}",
                    best=f"{max(r['best_reward'] for r in run.records):.4f}",
                )
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()


def _learner_log(
    info: Any, learner: AskTellLearner, scores: np.ndarray | None = None
) -> dict[str, Any]:
    values = {
        k: (v if np.isfinite(v) else None) if isinstance(v, float) else v
        for k, v in asdict(info).items()
        if k not in ("mean_reward", "best_reward")
    }
    action, cov = learner.recommendation()
    values["action"] = action.tolist()
    if cov is not None:
        values["cov"] = np.asarray(cov).tolist()
    if scores is not None:
        values["scores"] = np.asarray(scores).tolist()
    return values


def _tensorboard(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise LrgymError(
            'TensorBoard logging needs the tensorboard package: pip install "lrgym[tensorboard]"'
        ) from None
    return SummaryWriter(str(directory / "tensorboard"))


def _log_scalars(writer: Any, record: Mapping[str, Any], episodes: int) -> None:
    writer.add_scalar("reward/mean", record["mean_reward"], episodes)
    writer.add_scalar("reward/best", record["best_reward"], episodes)
    writer.add_scalar("episodes/diverged", record["diverged"], episodes)
    for key, value in record["learner"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f"learner/{key}", value, episodes)
    writer.add_scalar("time/batch_seconds", record["seconds"], episodes)
    writer.flush()
