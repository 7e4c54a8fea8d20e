"""lrgym's settings for the Stable-Baselines3 learners, the budgets they can end on exactly, and
the model they build."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from lrgym.controllers.sb3_policy import import_policy_library
from lrgym.errors import InvalidConfigError

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
:meth:`lrgym.controllers.policy_files.PolicyFile.act` applies them."""


def settings_for(
    algorithm: str, overrides: Mapping[str, Any] | None, *, dynamic: bool = False
) -> dict[str, Any]:
    """lrgym's settings of ``algorithm`` (on a bandit env, or a per-step env if ``dynamic``)
    updated by ``overrides``.

    Raises:
        InvalidConfigError: an unknown learner.
    """
    if algorithm not in SB3_LEARNERS:
        raise InvalidConfigError(
            f"unknown Stable-Baselines3 learner {algorithm!r}; choose one of {list(SB3_LEARNERS)}"
        )
    own = SB3_DYNAMIC_SETTINGS[algorithm] if dynamic else SB3_LEARNERS[algorithm][2]
    return {**copy.deepcopy(own), **dict(overrides or {})}


def check_budget(
    algorithm: str,
    episodes: int,
    workers: int,
    settings: Mapping[str, Any],
    *,
    dynamic: bool = False,
) -> None:
    """Check that ``algorithm`` can end on exactly ``episodes`` episodes with ``workers``.

    Raises:
        InvalidConfigError: it cannot (the message says which multiple it needs).
    """
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


def build_model(
    algorithm: str, settings: Mapping[str, Any], venv: Any, seed: int, tb: str | None
) -> Any:
    """A new model of ``algorithm`` with ``settings`` on ``venv`` (CPU; TensorBoard logs in
    ``tb`` if given).

    Raises:
        lrgym.controllers.files.ControllerFileError: its library is not installed (the error
            names the extra).
    """
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
