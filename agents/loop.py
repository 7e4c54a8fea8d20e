"""One training loop for every ask/tell learner (REPS, CMA-ES, random search).

:func:`train` asks the learner for a batch, runs the batch's episodes through a collector
(serial, process or Ray; results never depend on which), tells the learner the rewards, and
after every batch appends a line to ``log.jsonl``, writes ``controller.json`` and checkpoints the
learner atomically (:mod:`agents.rundir`). A run killed at any moment resumes from its
checkpoint to exactly the controller an uninterrupted run ends with: the episodes of an
unfinished batch are run again with the same seeds and actions.

Episode ``j`` of iteration ``i`` runs the task of ``reset(seed)`` with the seed
:func:`agents.collect.episode_seeds` derives from ``(seed, i)``; with ``same_task`` every
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

from agents.collect import Collector, Progress, episode_seeds, make_collector
from agents.learners.asktell import (
    AskTellLearner,
    config_dict,
    learner_config,
    learner_from_state,
    make_learner,
)
from agents.rundir import (
    LearnerRun,
    RunDirectory,
    controller_for,
    log_row,
    progress_bar,
    run_settings,
)
from lrgym.controllers.files import save_controller
from lrgym.errors import InvalidConfigError, LrgymError


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
            (:data:`agents.learners.asktell.ASK_TELL_LEARNERS`).
        env_id: a registered env with a Box action and one-step episodes.
        out: the run directory (:mod:`agents.rundir`).
        episodes: training runs in total, a multiple of the learner's ``samples``
            (iterations = episodes / samples); a resumed run continues up to this number.
        config: the learner's settings (its config dataclass, or a dict of them).
        seed: seeds the learner's draws and every episode's task.
        env_kwargs: extra env arguments (e.g. ``data_root``).
        same_task: run every episode of an iteration on the same task (a fresh one each
            iteration), so that their rewards differ only by the action (common random
            numbers); otherwise every episode has its own task, as in the paper.
        backend, workers, ray_address: how episodes run (:func:`agents.collect.make_collector`).
        resume: continue the run in ``out`` from its checkpoint.
        tensorboard: also log scalars for TensorBoard under ``out/tensorboard``.
        progress: show a progress bar on stderr.
        collector: an already open collector to use instead (the caller closes it).

    Raises:
        InvalidConfigError: unknown learner or setting, or ``episodes`` not a positive
            multiple of ``samples``.
        agents.rundir.CheckpointError: ``resume`` and the checkpoint is missing, corrupt or
            from a run with other settings; or not ``resume`` and ``out`` already holds a run.
    """
    settings = config_dict(config) if is_dataclass(config) else dict(config or {})
    learner_settings = learner_config(algorithm, settings)  # validates
    samples = int(learner_settings.samples)
    if int(episodes) != episodes or episodes < samples or episodes % samples:
        raise InvalidConfigError(
            f"episodes={episodes!r} must be a positive multiple of samples={samples} "
            f"(iterations = episodes / samples), e.g. {max(1, round(episodes / samples)) * samples}"
        )
    learner_spec = {"config": config_dict(learner_settings), "same_task": bool(same_task)}
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
        _run_batches(run, samples, tensorboard=tensorboard, progress=progress)
    finally:
        if info_env is not None:
            info_env.close()
        if own:
            collector.close()
    return LearnerRun(learner, run.records, directory.path)


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

    def next_batch(self, progress: Progress | None) -> dict[str, Any]:
        """Ask, run the batch's episodes, tell; log, save and checkpoint. Returns the log row."""
        started = time.perf_counter()
        learner, space = self.learner, self.collector.action_space
        iteration = learner.iteration
        actions = learner.ask()
        if self.spec["same_task"]:
            seeds = episode_seeds(self.spec["seed"], iteration, 1) * len(actions)
        else:
            seeds = episode_seeds(self.spec["seed"], iteration, len(actions))
        batch = self.collector.run(  # the env clips an action outside its box
            actions.reshape(len(actions), *space.shape), seeds, progress=progress
        )
        info = learner.tell(actions, [e.reward for e in batch])
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
            learner=_learner_log(info, learner),
        )
        self.records.append(record)
        self.directory.append(record)
        self.save_controller("controller.json")
        self.checkpoint()
        return record


def _run_batches(run: _Training, samples: int, *, tensorboard: bool, progress: bool) -> None:
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
                    iteration=f"{run.learner.iteration}/{spec['episodes'] // samples}",
                    mean=f"{record['mean_reward']:.4f}",
                    best=f"{max(r['best_reward'] for r in run.records):.4f}",
                )
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()


def _learner_log(info: Any, learner: AskTellLearner) -> dict[str, Any]:
    values = {
        k: (v if np.isfinite(v) else None) if isinstance(v, float) else v
        for k, v in asdict(info).items()
        if k not in ("mean_reward", "best_reward")
    }
    action, cov = learner.recommendation()
    values["action"] = action.tolist()
    if cov is not None:
        values["cov"] = np.asarray(cov).tolist()
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
