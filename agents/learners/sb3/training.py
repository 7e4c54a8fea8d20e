"""Training a Stable-Baselines3 learner on an lrgym env: the task seeds of the run's episodes,
the vector env and :func:`train_sb3` (see :mod:`lrgym_agents.learners.sb3`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import torch

from lrgym.controllers.sb3_policy import import_policy_library
from lrgym.envs.dynamic import StepSizeControlDynamicEnv
from lrgym.registration import is_dynamic

from ...collect import episode_seeds
from ...rundir import LearnerRun, RunDirectory, progress_bar, run_settings
from .callback import make_callback
from .model_files import ModelSaver, load_model, normalizing
from .settings import SB3_LEARNERS, build_model, check_budget, settings_for


class TaskSeeds(gym.Wrapper[Any, Any, Any, Any]):
    """Resets its env with the run's episode seeds ``first, first + stride, ...`` (any seed SB3
    passes is ignored) and keeps a record of each finished episode (its return) for the log."""

    def __init__(self, env: gym.Env[Any, Any], seed: int, first: int, stride: int) -> None:
        super().__init__(env)
        self.run_seed, self.next_index, self.stride = int(seed), int(first), int(stride)
        self.task_seed: int | None = None
        self.episode_return = 0.0
        self.finished: list[tuple[int, int, float, bool]] = []

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.task_seed = episode_seeds(self.run_seed, self.next_index, 1)[0]
        self.index = self.next_index
        self.next_index += self.stride
        self.episode_return = 0.0
        return self.env.reset(seed=self.task_seed, options=options)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_return += float(reward)
        if terminated or truncated:
            assert self.task_seed is not None
            record = (self.index, self.task_seed, self.episode_return, info["diverged"])
            self.finished.append(record)
        return obs, reward, terminated, truncated, info

    def drain(self) -> list[tuple[int, int, float, bool]]:
        """The episodes finished since the last call: ``(index, seed, reward, diverged)``."""
        done, self.finished = self.finished, []
        return done


def _env_factory(
    env_id: str, kwargs: Mapping[str, Any], seed: int, first: int, stride: int
) -> Callable[[], gym.Env[Any, Any]]:
    def make() -> gym.Env[Any, Any]:
        from stable_baselines3.common.monitor import Monitor

        import lrgym  # noqa: F401 - registers the environments (in a worker process too)

        torch.set_num_threads(1)
        return Monitor(TaskSeeds(gym.make(env_id, **dict(kwargs)), seed, first, stride))

    return make


def _vec_env(env_id: str, kwargs: Mapping[str, Any], seed: int, start: int, workers: int) -> Any:
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    makers = [_env_factory(env_id, kwargs, seed, start + w, workers) for w in range(workers)]
    if workers == 1:
        return DummyVecEnv(makers)
    return SubprocVecEnv(makers, start_method="spawn")


def train_sb3(
    algorithm: str,
    env_id: str,
    out: str | os.PathLike[str],
    *,
    episodes: int,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    workers: int = 1,
    resume: bool = False,
    tensorboard: bool = False,
    progress: bool = True,
    log_every: int = 32,
) -> LearnerRun:
    """Train the Stable-Baselines3 learner ``algorithm`` (:data:`SB3_LEARNERS`) for exactly
    ``episodes`` episodes; see :mod:`lrgym_agents.learners.sb3` for the files and what resuming
    does.

    Args:
        hyperparameters: settings that replace lrgym's (:data:`SB3_LEARNERS`), e.g.
            ``{"learning_rate": 3e-4}``; JSON values.
        workers: environments stepped at once (SB3 vector env; processes when more than one,
            one torch thread each). Part of the run's settings: it changes the algorithm's
            batches.

    Raises:
        InvalidConfigError: unknown learner, or a budget the algorithm cannot end on exactly.
        lrgym_agents.rundir.CheckpointError: as for :func:`lrgym_agents.loop.train`.
        lrgym.LrgymError: the library is not installed (the error names the extra).
    """
    dynamic = is_dynamic(env_id)
    settings = settings_for(algorithm, hyperparameters, dynamic=dynamic)
    check_budget(algorithm, episodes, workers, settings, dynamic=dynamic)
    import_policy_library(SB3_LEARNERS[algorithm][0])  # fails now, naming the extra
    learner_spec = {"hyperparameters": settings, "workers": int(workers)}
    spec = run_settings(algorithm, env_id, env_kwargs, episodes, seed, learner_spec)
    directory = RunDirectory(out)
    if resume:
        state, done, elapsed, records = directory.resume(spec)
    else:
        directory.create(spec)
        state, done, elapsed, records = None, 0, 0.0, []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    info_env = gym.make(env_id, **spec["env_kwargs"])
    # episodes of a dynamic env end out of step across workers: continue after the last index
    # any worker finished (older checkpoints: the count, which the bandit's lockstep equals)
    start = done if state is None else int(state.get("next_index", done))
    venv = _vec_env(env_id, spec["env_kwargs"], spec["seed"], start, spec["workers"])
    if settings.get("normalize_observations"):
        venv = normalizing(venv, None if state is None else state.get("normalization"))
    tb = str(directory.path / "tensorboard") if tensorboard else None
    try:
        if state is None:
            model = build_model(algorithm, settings, venv, spec["seed"], tb)
        else:
            model = load_model(algorithm, directory.path, state, venv, tb)
            model.set_random_seed(episode_seeds(spec["seed"], done, 1)[0])
        save = ModelSaver(directory.path, model, venv, info_env, spec)
        if state is None:
            state = save(0, "controller-initial.json", "controller.json")
            directory.save(spec, state, 0, 0.0)
        bar = progress_bar(f"{algorithm} {env_id}", spec["episodes"], done) if progress else None
        callback = make_callback(
            directory, spec, save, records, done, start, elapsed, log_every, bar
        )
        try:
            if done < spec["episodes"]:
                model.learn(
                    total_timesteps=(spec["episodes"] - done) * _most_steps(info_env),
                    callback=callback,
                    reset_num_timesteps=False,
                    tb_log_name=algorithm,
                )
        finally:
            if bar is not None:
                bar.close()
        return LearnerRun(model, records, directory.path)
    finally:
        venv.close()
        info_env.close()
        torch.set_num_threads(threads)


def _most_steps(env: gym.Env[Any, Any]) -> int:
    """The most env steps one episode takes: 1 on a bandit env; on a dynamic env the actions
    of the longest task (the callback ends training at the episode budget)."""
    base = env.unwrapped
    if not isinstance(base, StepSizeControlDynamicEnv):
        return 1
    return -(-base.family.steps[1] // base.control_interval)
