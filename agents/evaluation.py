"""Evaluating a learned controller on fresh tasks.

:func:`evaluate_controller` runs a controller file's controller on the tasks of
``reset(seed=seed + k)``: a log-linear controller with its learned mean ``theta`` on every task,
a contextual policy (Stable-Baselines3) with the deterministic action it picks from each task's
starting features. On a per-step env (``StepSizeControl-Dynamic-*``) a per-step policy sets
each stretch's rate with its deterministic action, and any other controller runs through
:class:`lrgym.envs.ControllerWrapper`, so both kinds are scored on the same episodes
(:func:`evaluate_dynamic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from lrgym.controllers import Controller
from lrgym.controllers.files import PerStepPolicyFile, SavedController
from lrgym.controllers.loglinear import FORM_FIELDS
from lrgym.envs import ControllerWrapper
from lrgym.errors import InvalidConfigError
from lrgym.registration import bandit_id_of, is_dynamic

from .collect import Episode, episode_from_info, make_collector
from .pools import make_pool

BANDIT_ONLY_KWARGS = (
    "theta_center",
    "theta_scale",
    "relative",
    "max_change",
    "start",
    "eval_points",
)
"""Bandit env arguments a per-step env does not take (dropped when a controller learned on a
bandit id runs on its dynamic twin)."""


def evaluate_controller(
    saved: SavedController,
    env_id: str | None = None,
    *,
    episodes: int,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    backend: str | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    keep_curves: bool = False,
) -> list[Episode]:
    """Run ``saved``'s controller on ``episodes`` fresh tasks.

    The tasks are those of ``reset(seed=seed + k)``, ``k = 0 .. episodes - 1``; the env is
    ``env_id`` (default: the one the controller was learned on, with its arguments, updated by
    ``env_kwargs``; a bandit controller on the dynamic twin of its env keeps its arguments
    too). On a dynamic env each :class:`Episode`'s ``reward`` is the episode's return.

    Raises:
        InvalidConfigError: the env's action box cannot express the controller's ``theta``, or
            a per-step policy on a bandit env.
    """
    if int(episodes) != episodes or episodes < 1:
        raise InvalidConfigError(f"episodes={episodes!r} must be a positive integer")
    target = env_id or saved.env_id
    seeds = [seed + k for k in range(episodes)]
    if is_dynamic(target):
        kwargs = {**learned_kwargs(saved, target), **(env_kwargs or {})}
        return evaluate_dynamic(
            saved,
            target,
            kwargs,
            seeds,
            backend=backend,
            workers=workers,
            ray_address=ray_address,
            keep_curves=keep_curves,
        )
    if isinstance(saved, PerStepPolicyFile):
        raise InvalidConfigError(
            f"{target} is a bandit env; this controller file holds a per-step policy of "
            f"{saved.env_id}: evaluate it on a StepSizeControl-Dynamic env"
        )
    kwargs = {**learned_kwargs(saved, target), **controller_form(saved, env_kwargs)}
    kwargs.update(env_kwargs or {})
    probe = gym.make(target, **kwargs)
    try:
        base: Any = probe.unwrapped
        # a contextual policy reads each task's starting features (the probe's reset)
        thetas = [saved.theta_for(partial(_starting_features, probe, s)) for s in seeds]
        batch = np.array([base.theta_to_action(theta) for theta in thetas])
    finally:
        probe.close()
    outside = np.abs(batch) > 1.0 + 1e-6
    if np.any(outside):
        k = int(np.flatnonzero(outside.any(axis=1))[0])
        raise InvalidConfigError(
            f"{target} cannot express theta={np.round(thetas[k], 6).tolist()}: its action "
            f"would be {np.round(batch[k], 4).tolist()}, outside [-1, 1]; pass env kwargs "
            "theta_center/theta_scale that cover it"
        )
    with make_collector(
        backend, target, kwargs, workers=workers, ray_address=ray_address
    ) as collector:
        return collector.run(np.clip(batch, -1, 1), seeds, keep_curves=keep_curves)


def _starting_features(env: gym.Env[Any, Any], seed: int) -> np.ndarray:
    observation, _ = env.reset(seed=seed)
    return np.asarray(observation)


def controller_form(
    saved: SavedController, env_kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The env settings that run ``saved``'s controller in the form it was learned in
    (:data:`lrgym.controllers.loglinear.FORM_FIELDS`), on its own env or any other bandit env.

    Raises:
        InvalidConfigError: ``env_kwargs`` sets one of them otherwise than the file (the
            controller would silently run in another form than it was learned in).
    """
    form = {name: _json(getattr(saved, name)) for name in FORM_FIELDS}
    for key, value in (env_kwargs or {}).items():
        if key in form and _json(value) != _json(form[key]):
            raise InvalidConfigError(
                f"env argument {key}={value!r} contradicts the controller file, learned with "
                f"{key}={form[key]!r}; drop it (the file's form applies on every env)"
            )
    return form


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def learned_kwargs(saved: SavedController, env_id: str) -> dict[str, Any]:
    """The env arguments ``saved`` was learned with that apply on ``env_id``: all of them on
    its own env, those a per-step env takes on its env's dynamic twin, else none."""
    if env_id == saved.env_id:
        return dict(saved.env_kwargs)
    if bandit_id_of(env_id) == saved.env_id:
        return {k: v for k, v in saved.env_kwargs.items() if k not in BANDIT_ONLY_KWARGS}
    return {}


def evaluate_dynamic(
    policy: SavedController | Controller,
    env_id: str,
    env_kwargs: Mapping[str, Any],
    seeds: list[int],
    *,
    backend: str | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    keep_curves: bool = False,
) -> list[Episode]:
    """Play one episode of the per-step env ``env_id`` per seed: a per-step policy file with
    its deterministic actions, any other controller (a :class:`lrgym.Controller`, a log-linear
    or contextual controller file) through :class:`lrgym.envs.ControllerWrapper`.

    Episodes run on the workers of ``backend`` (see :func:`lrgym_agents.pools.make_pool`); their
    results depend only on the seed. ``reward`` is the episode's return. To score several
    policies on one pool, map :func:`play_episode` over a pool of :class:`DynamicWorker`.
    """
    jobs = [(policy, int(s), keep_curves) for s in seeds]
    labels = [f"the episode with reset(seed={int(s)})" for s in seeds]
    with make_pool(
        backend,
        DynamicWorker,
        (env_id, dict(env_kwargs)),
        workers=workers,
        ray_address=ray_address,
    ) as pool:
        return pool.map(play_episode, jobs, labels=labels)


class DynamicWorker:
    """A worker's per-step env (built once), and the policy models it has loaded."""

    def __init__(self, env_id: str, kwargs: Mapping[str, Any]) -> None:
        import lrgym  # noqa: F401 - registers the environments (in a worker process too)

        self.env = gym.make(env_id, **dict(kwargs))
        self.models: dict[Any, Any] = {}

    def close(self) -> None:
        self.env.close()


def play_episode(
    worker: DynamicWorker, job: tuple[SavedController | Controller, int, bool]
) -> Episode:
    """One episode of ``worker``'s env: ``job = (policy, seed, keep_curves)``."""
    policy, seed, keep_curves = job
    acting, env = None, worker.env
    if isinstance(policy, PerStepPolicyFile):
        key = (str(policy.path), policy.policy["sha256"])
        # keep the first copy of each file: its model is loaded (unpickled) once per worker
        acting = worker.models.setdefault(key, policy)
    else:
        env = ControllerWrapper(env, policy)
    obs, _ = env.reset(seed=seed)
    total = 0.0
    while True:
        action = None if acting is None else acting.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        if terminated or truncated:
            break
    return episode_from_info(seed, {**info, "reward": total}, keep_curves)
