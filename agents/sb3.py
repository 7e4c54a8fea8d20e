"""Stable-Baselines3 learners (PPO, A2C, SAC, TD3, and ARS from ``sb3-contrib``) under lrgym's
run-directory workflow.

The algorithms run unmodified on the registered env. On a bandit env every episode is one
training run, so the policy is *contextual*: it maps a task's starting features (the reset
observation) to the controller's action. On a per-step env (``StepSizeControl-Dynamic-*``) an
episode is still one training run, of several actions: the policy maps each observation to the
next stretch's learning rate, and its controller file holds a *per-step* policy
(:data:`SB3_DYNAMIC_SETTINGS` are lrgym's settings there). What lrgym adds, all through SB3's
own mechanisms (a callback, ``save``, ``save_replay_buffer``):

* **task seeds**: episode ``n`` of the run (counted over the whole run, resumes included) trains
  the task of ``reset(seed)`` with the seed :func:`agents.collect.episode_seeds` derives from
  ``(seed, n)``, whichever worker runs it, so no task is drawn twice by accident and a resumed run
  continues the sequence;
* **the budget**: training stops after exactly ``episodes`` episodes (the log's rewards are
  episode returns);
* **the run directory** (:mod:`agents.rundir`): ``log.jsonl`` with the columns every learner
  shares (a line per ``log_every`` episodes or more, at the first update boundary after them),
  ``checkpoint.json`` (a model file ``models/model-NNNNNN.zip``, the replay buffer for SAC/TD3,
  their SHA-256), ``controller.json`` / ``controller-initial.json`` referencing the model
  (:class:`lrgym.SavedController` with a ``policy``), SB3's TensorBoard logs;
* ``--resume``: reloads the checkpoint's model (and replay buffer) and trains the remaining
  episodes. It repeats no finished episode and ends with the requested count. It is **not**
  bit-identical to an uninterrupted run: episodes after the checkpoint that were not saved are
  run again on the same tasks but with fresh action noise, and on-policy algorithms start a new
  rollout at the checkpoint.

Model files and replay buffers are **pickles**: resume and evaluate only runs you trust.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.collect import episode_seeds
from agents.rundir import (
    CheckpointError,
    LearnerRun,
    RunDirectory,
    controller_for,
    log_row,
    progress_bar,
)
from lrgym.controllers.files import import_policy_library, save_controller
from lrgym.envs.dynamic import StepSizeControlDynamicEnv
from lrgym.errors import InvalidConfigError
from lrgym.jsonfile import file_sha256
from lrgym.registration import is_dynamic

SB3_LEARNERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ppo": (
        "stable-baselines3",
        "PPO",
        {
            "policy": "MlpPolicy",
            "n_steps": 32,
            "batch_size": 8,
            "n_epochs": 20,
            "learning_rate": 1e-3,
            "policy_kwargs": {"log_std_init": -1.0},
        },
    ),
    "a2c": (
        "stable-baselines3",
        "A2C",
        {
            "policy": "MlpPolicy",
            "n_steps": 8,
            "use_rms_prop": False,
            "policy_kwargs": {"log_std_init": -1.5},
        },
    ),
    "sac": (
        "stable-baselines3",
        "SAC",
        {"policy": "MlpPolicy", "learning_starts": 50, "gradient_steps": 2},
    ),
    "td3": (
        "stable-baselines3",
        "TD3",
        {"policy": "MlpPolicy", "learning_starts": 50, "action_noise_std": 0.2},
    ),
    "ars": ("sb3-contrib", "ARS", {"policy": "LinearPolicy", "n_delta": 8}),
}
"""lrgym's settings for one-step episodes, on top of each algorithm's own defaults:
name -> (library, class, settings). ``action_noise_std`` is TD3's Gaussian action noise
(``NormalActionNoise`` with that standard deviation on every action entry)."""

SB3_DYNAMIC_SETTINGS: dict[str, dict[str, Any]] = {
    "ppo": {
        "policy": "MlpPolicy",
        "n_steps": 64,
        "batch_size": 32,
        "n_epochs": 10,
        "learning_rate": 3e-4,
        "policy_kwargs": {"log_std_init": -1.5},
        "normalize_observations": True,
    },
    "a2c": {
        "policy": "MlpPolicy",
        "n_steps": 8,
        "use_rms_prop": False,
        "normalize_observations": True,
    },
    "sac": {"policy": "MlpPolicy", "learning_starts": 200},
    "td3": {"policy": "MlpPolicy", "learning_starts": 200, "action_noise_std": 0.2},
    "ars": {"policy": "LinearPolicy", "n_delta": 8},
}
"""lrgym's settings on the per-step envs (``StepSizeControl-Dynamic-*``: about 5-20 actions per
episode), on top of each algorithm's own defaults: PPO collects 64 steps per env per update
(SB3's 2048 would be 100-400 training runs) with a narrow initial policy (std 0.22 in the
normalised action, about half a decade of learning rate: with std 0.6 the exploration noise
diverged runs near good rates and the deterministic policy retreated to rates of 6e-4 - 9e-4,
return 0.03 on validation tasks of ``StepSizeControl-Dynamic-Digits-v0`` against 4.3 with
0.22); SAC and TD3 start learning after 200 actions (about 20 runs) instead of 100.
``normalize_observations`` (PPO and A2C, as SB3's guide recommends for them) standardises
observations with running statistics (SB3's ``VecNormalize``, observations only, clipped at
10); the statistics are part of the checkpoint and of the controller file (plain numbers), and
:meth:`lrgym.SavedController.act` applies them."""


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


def _settings(
    algorithm: str, overrides: Mapping[str, Any] | None, *, dynamic: bool = False
) -> dict[str, Any]:
    if algorithm not in SB3_LEARNERS:
        raise InvalidConfigError(
            f"unknown Stable-Baselines3 learner {algorithm!r}; choose one of {list(SB3_LEARNERS)}"
        )
    own = SB3_DYNAMIC_SETTINGS[algorithm] if dynamic else SB3_LEARNERS[algorithm][2]
    return {**copy.deepcopy(own), **dict(overrides or {})}


def _check_budget(
    algorithm: str,
    episodes: int,
    workers: int,
    settings: Mapping[str, Any],
    *,
    dynamic: bool = False,
) -> None:
    if int(episodes) != episodes or episodes < 1:
        raise InvalidConfigError(f"episodes={episodes!r} must be a positive integer")
    if int(workers) != workers or workers < 1:
        raise InvalidConfigError(f"workers={workers!r} must be a positive integer")
    if dynamic:  # episodes of several steps end when they end; the callback counts them
        if algorithm == "ars" and workers != 1:
            raise InvalidConfigError(
                "ars evaluates its candidates one after another: use --workers 1"
            )
        return
    if episodes % workers:
        raise InvalidConfigError(
            f"episodes={episodes} must be a multiple of workers={workers}: every step runs one "
            "episode in each worker"
        )
    if algorithm == "ars":
        if workers != 1:
            raise InvalidConfigError(
                "ars evaluates its candidates one after another: use --workers 1 (run seeds in "
                "parallel instead)"
            )
        batch = 2 * int(settings.get("n_delta", 8)) * int(settings.get("n_eval_episodes", 1))
        if episodes % batch:
            raise InvalidConfigError(
                f"ars runs 2 * n_delta * n_eval_episodes = {batch} episodes per update; "
                f"episodes={episodes} must be a multiple of it"
            )


def _build(
    algorithm: str, settings: Mapping[str, Any], venv: Any, seed: int, tb: str | None
) -> Any:
    library, name, _ = SB3_LEARNERS[algorithm]
    module = import_policy_library(library)
    kwargs = dict(settings)
    policy = kwargs.pop("policy")
    kwargs.pop("normalize_observations", None)  # applied to the vector env
    noise = kwargs.pop("action_noise_std", None)
    if noise is not None:
        from stable_baselines3.common.noise import NormalActionNoise

        dim = venv.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), float(noise) * np.ones(dim))
    extra = {} if algorithm == "ars" else {"device": "cpu"}
    return getattr(module, name)(
        policy, venv, seed=seed, tensorboard_log=tb, verbose=0, **extra, **kwargs
    )


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
    ``episodes`` episodes; see the module docstring for the files and what resuming does.

    Args:
        hyperparameters: settings that replace lrgym's (:data:`SB3_LEARNERS`), e.g.
            ``{"learning_rate": 3e-4}``; JSON values.
        workers: environments stepped at once (SB3 vector env; processes when more than one,
            one torch thread each). Part of the run's settings: it changes the algorithm's
            batches.

    Raises:
        InvalidConfigError: unknown learner, or a budget the algorithm cannot end on exactly.
        agents.rundir.CheckpointError: as for :func:`agents.loop.train`.
        lrgym.LrgymError: the library is not installed (the error names the extra).
    """
    dynamic = is_dynamic(env_id)
    settings = _settings(algorithm, hyperparameters, dynamic=dynamic)
    _check_budget(algorithm, episodes, workers, settings, dynamic=dynamic)
    library, class_name, _ = SB3_LEARNERS[algorithm]
    module = import_policy_library(library)
    spec: dict[str, Any] = {
        "algorithm": algorithm,
        "env_id": env_id,
        "env_kwargs": dict(env_kwargs or {}),
        "episodes": int(episodes),
        "seed": int(seed),
        "hyperparameters": settings,
        "workers": int(workers),
    }
    directory = RunDirectory(out)
    models = directory.path / "models"
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
        venv = _normalizing(venv, None if state is None else state.get("normalization"))
    tb = str(directory.path / "tensorboard") if tensorboard else None
    try:
        if state is None:
            model = _build(algorithm, settings, venv, spec["seed"], tb)
        else:
            model = _load(module, class_name, directory.path, state, venv, tb)
            model.set_random_seed(episode_seeds(spec["seed"], done, 1)[0])

        def save(episodes_done: int, *names: str) -> dict[str, Any]:
            models.mkdir(exist_ok=True)
            path = models / f"model-{episodes_done:06d}.zip"
            temporary = models / f".tmp-{os.getpid()}.zip"
            model.save(str(temporary))
            _fsync(temporary)
            os.replace(temporary, path)
            saved_state: dict[str, Any] = {
                "model": str(path.relative_to(directory.path)),
                "sha256": file_sha256(path),
            }
            if hasattr(model, "replay_buffer") and model.replay_buffer is not None:
                buffer = models / f"replay-{episodes_done:06d}.pkl"
                model.save_replay_buffer(str(temporary.with_suffix(".pkl")))
                _fsync(temporary.with_suffix(".pkl"))
                os.replace(temporary.with_suffix(".pkl"), buffer)
                saved_state["replay_buffer"] = str(buffer.relative_to(directory.path))
                saved_state["replay_sha256"] = file_sha256(buffer)
            source = {"algorithm": algorithm, "episodes": episodes_done, "seed": spec["seed"]}
            policy: dict[str, Any] = {"library": library, "algorithm": class_name}
            policy["model"] = saved_state["model"]
            policy["sha256"] = saved_state["sha256"]
            if hasattr(venv, "obs_rms"):  # the statistics the policy's inputs were scaled with
                statistics = _statistics(venv)
                saved_state["normalization"] = statistics
                policy["observation_normalization"] = {
                    k: statistics[k] for k in ("mean", "var", "epsilon", "clip")
                }
            saved = controller_for(info_env, env_id, spec["env_kwargs"], source, policy=policy)
            for name in names:
                save_controller(saved, directory.path / name)
            return saved_state

        if state is None:
            state = save(0, "controller-initial.json", "controller.json")
            directory.save(spec, state, 0, 0.0)
        bar = progress_bar(f"{algorithm} {env_id}", spec["episodes"], done) if progress else None
        callback = _make_callback(
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


def _normalizing(venv: Any, statistics: Mapping[str, Any] | None) -> Any:
    """``venv`` wrapped in SB3's ``VecNormalize`` (observations only), with the running
    statistics of a checkpoint when resuming."""
    from stable_baselines3.common.vec_env import VecNormalize

    wrapped: Any = VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0)
    if statistics is not None:
        wrapped.obs_rms.mean = np.asarray(statistics["mean"], dtype=np.float64)
        wrapped.obs_rms.var = np.asarray(statistics["var"], dtype=np.float64)
        wrapped.obs_rms.count = float(statistics["count"])
    return wrapped


def _statistics(venv: Any) -> dict[str, Any]:
    """``VecNormalize``'s running statistics as plain numbers (JSON)."""
    return {
        "mean": [float(v) for v in venv.obs_rms.mean],
        "var": [float(v) for v in venv.obs_rms.var],
        "count": float(venv.obs_rms.count),
        "epsilon": float(venv.epsilon),
        "clip": float(venv.clip_obs),
    }


def _most_steps(env: gym.Env[Any, Any]) -> int:
    """The most env steps one episode takes: 1 on a bandit env; on a dynamic env the actions
    of the longest task (the callback ends training at the episode budget)."""
    base = env.unwrapped
    if not isinstance(base, StepSizeControlDynamicEnv):
        return 1
    return -(-base.family.steps[1] // base.control_interval)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _load(
    module: Any, class_name: str, root: Path, state: Mapping[str, Any], venv: Any, tb: str | None
) -> Any:
    model_path = root / state["model"]
    if not model_path.exists() or file_sha256(model_path) != state["sha256"]:
        raise CheckpointError(
            f"the checkpoint's model {str(model_path)!r} is missing or altered; it was not "
            "loaded. Restore it, or start a new run in another --out directory."
        )
    extra = {} if class_name == "ARS" else {"device": "cpu"}
    model = getattr(module, class_name).load(str(model_path), env=venv, tensorboard_log=tb, **extra)
    if "replay_buffer" in state:
        buffer = root / state["replay_buffer"]
        if not buffer.exists() or file_sha256(buffer) != state["replay_sha256"]:
            raise CheckpointError(
                f"the checkpoint's replay buffer {str(buffer)!r} is missing or altered; it was "
                "not loaded"
            )
        model.load_replay_buffer(str(buffer))
    return model


def _make_callback(*args: Any) -> Any:
    """The SB3 callback (its class is built here, so that importing this module needs no SB3):
    counts episodes, stops at the budget, and at update boundaries logs and checkpoints."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Callback(BaseCallback):
        def __init__(
            self,
            directory: RunDirectory,
            spec: Mapping[str, Any],
            save: Callable[..., dict[str, Any]],
            records: list[dict[str, Any]],
            done: int,
            next_index: int,
            elapsed: float,
            log_every: int,
            bar: Any,
        ) -> None:
            super().__init__()
            self.directory, self.spec, self.save_model = directory, spec, save
            self.records, self.done, self.elapsed = records, done, elapsed
            self.next_index = next_index
            self.log_every, self.bar = log_every, bar
            self.pending: list[tuple[int, int, float, bool]] = []
            self.started = time.perf_counter()

        def _collect(self) -> None:
            finished = [e for env in self.training_env.env_method("drain") for e in env]
            # several envs can end episodes in one vector step: keep the budget exact
            room = self.spec["episodes"] - self.done - len(self.pending)
            finished = sorted(finished)[: max(room, 0)]
            if finished and self.bar is not None:
                self.bar.update(len(finished))
            self.pending.extend(finished)

        def _on_step(self) -> bool:
            self._collect()
            return self.done + len(self.pending) < self.spec["episodes"]

        def _on_rollout_start(self) -> None:
            self._collect()
            if len(self.pending) >= self.log_every:
                self._checkpoint()

        def _on_training_end(self) -> None:
            self._collect()
            if self.pending:
                self._checkpoint()

        def _checkpoint(self) -> None:
            batch = sorted(self.pending)
            self.pending = []
            now = time.perf_counter()
            seconds, self.started = now - self.started, now
            self.elapsed += seconds
            self.done += len(batch)
            self.next_index = max(self.next_index, *(b[0] + 1 for b in batch))
            row = log_row(
                iteration=len(self.records),
                episodes_total=self.done,
                rewards=[b[2] for b in batch],
                seeds=[b[1] for b in batch],
                diverged=sum(b[3] for b in batch),
                seconds=seconds,
                elapsed=self.elapsed,
                learner={"num_timesteps": int(self.model.num_timesteps)},
            )
            self.records.append(row)
            self.directory.append(row)
            state = self.save_model(self.done, "controller.json")
            state["next_index"] = self.next_index
            self.directory.save(self.spec, state, self.done, self.elapsed)
            _prune(
                self.directory.path / "models",
                keep={state["model"], state.get("replay_buffer")},
            )
            if self.bar is not None:
                self.bar.set_postfix(mean=f"{row['mean_reward']:.4f}")

    return Callback(*args)


def _prune(models: Path, keep: set[Any]) -> None:
    """Delete model files no checkpoint or controller file references (the initial one stays)."""
    for path in models.glob("*-*"):
        name = f"models/{path.name}"
        if (
            name not in keep
            and not path.name.endswith("-000000.zip")
            and not path.name.startswith(".tmp")
        ):
            path.unlink(missing_ok=True)
