"""Evaluating a learned controller on fresh tasks.

:func:`evaluate_controller` runs a controller file's controller on the tasks of
``reset(seed=seed + k)``: a log-linear controller with its learned mean ``theta`` on every task,
a contextual policy (Stable-Baselines3) with the deterministic action it picks from each task's
starting features.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from agents.collect import Episode, make_collector
from lrgym.controller_file import SavedController
from lrgym.errors import InvalidConfigError


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
    ``env_kwargs``).

    Raises:
        InvalidConfigError: the env's action box cannot express the controller's ``theta``.
    """
    if int(episodes) != episodes or episodes < 1:
        raise InvalidConfigError(f"episodes={episodes!r} must be a positive integer")
    target = env_id or saved.env_id
    kwargs = {**(dict(saved.env_kwargs) if target == saved.env_id else {}), **(env_kwargs or {})}
    seeds = [seed + k for k in range(episodes)]
    probe = gym.make(target, **kwargs)
    try:
        base: Any = probe.unwrapped
        if saved.is_policy:  # theta depends on the task: read each task's starting features
            thetas = [saved.theta_for(probe.reset(seed=s)[0]) for s in seeds]
        else:
            thetas = [saved.theta_for(np.zeros(5))] * episodes
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
