"""The mixture envs (StepSizeControl-Mixture-v0 and its Dynamic- twin): a family drawn per
episode from ``np_random`` with the declared weights, exclusions honoured, every episode the
family's own env's episode, the checkers, the registered families and the errors."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

from lrgym.envs import StepSizeControlEnv
from lrgym.envs.dynamic import StepSizeControlDynamicEnv
from lrgym.envs.mixture import MixtureSettings
from lrgym.errors import DatasetNotFoundError, InvalidConfigError, UnknownSettingError
from lrgym.registration import (
    DYNAMIC_MIXTURE_ID,
    MIXTURE_FAMILIES,
    MIXTURE_ID,
    is_dynamic,
)
from lrgym.spec import BanditSettings, DynamicSettings

DIGITS = {"include": ["digits-*"], "steps": [10, 15], "eval_size": 64, "test_size": 64}
"""The two digits families (an 8x8 cnn and an mlp), a few steps each: no files to read."""


def test_the_registered_families_cover_the_offline_data_architectures_and_optimisers() -> None:
    settings = MixtureSettings(families=MIXTURE_FAMILIES)
    members = settings.member_settings(BanditSettings, {})
    assert {s.dataset for s in members.values()} == {"digits", "mnist", "mnist1d", "grammar"}
    assert {s.architecture for s in members.values()} == {
        "cnn",
        "mlp",
        "resnet",
        "cnn1d",
        "transformer",
    }
    assert {s.optimizer for s in members.values()} == {"sgd", "adamw", "rmsprop"}
    for name, member in members.items():
        expected = (1e-5, 1.0) if member.optimizer == "sgd" else (1e-6, 1e-1)
        assert member.lr == expected, name
        assert name == f"{member.dataset}-{member.architecture}-{member.optimizer}"
    # a family runs its source id's tasks: the resnet family keeps its feature schedule
    assert members["mnist-resnet-sgd"].feature_every == 4
    dynamic = settings.member_settings(DynamicSettings, {})
    assert dynamic["grammar-transformer-adamw"].control_interval == 25
    assert dynamic["mnist-cnn-sgd"].control_interval == 50


def test_a_seed_draws_the_same_family_task_and_observation() -> None:
    first, second = gym.make(MIXTURE_ID, **DIGITS), gym.make(MIXTURE_ID, **DIGITS)
    for seed in (0, 5):
        obs_a, info_a = first.reset(seed=seed)
        obs_b, info_b = second.reset(seed=seed)
        assert info_a["family"] == info_b["family"] and info_a["task"] == info_b["task"]
        np.testing.assert_array_equal(obs_a, obs_b)


def test_draws_follow_the_weights_and_never_an_excluded_family() -> None:
    env = gym.make(MIXTURE_ID, **DIGITS, weights={"digits-mlp-sgd": 3})
    env.unwrapped._starting_features = lambda task: np.zeros(5)  # the draw alone, no training
    counts = Counter(env.reset(seed=seed)[1]["family"] for seed in range(400))
    assert set(counts) == {"digits-cnn-sgd", "digits-mlp-sgd"}
    share = counts["digits-mlp-sgd"] / 400  # 3/4, binomial sd 0.022
    assert abs(share - 0.75) < 0.07

    held_out = gym.make(MIXTURE_ID, **DIGITS, exclude="digits-cnn-sgd")  # a name alone
    held_out.unwrapped._starting_features = lambda task: np.zeros(5)
    assert {held_out.reset(seed=s)[1]["family"] for s in range(30)} == {"digits-mlp-sgd"}
    zero = gym.make(MIXTURE_ID, **DIGITS, weights={"digits-cnn-sgd": 0})
    zero.unwrapped._starting_features = lambda task: np.zeros(5)
    assert {zero.reset(seed=s)[1]["family"] for s in range(30)} == {"digits-mlp-sgd"}


def test_an_episode_is_its_familys_own_episode() -> None:
    """The mixture's episode and the single-family env's, on the same task and action."""
    env = gym.make(MIXTURE_ID, **DIGITS)
    action = np.array([0.1, -0.1, 0.0, 0.0, 0.2], dtype=np.float32)
    for seed in (1, 2, 3):
        obs, info = env.reset(seed=seed)
        _, reward, _, _, step_info = env.step(action)
        member = env.unwrapped.members[info["family"]]
        own = StepSizeControlEnv(**member.to_kwargs())
        own_obs, _ = own.reset(options={"task": env.unwrapped.last_result.task})
        _, own_reward, _, _, own_info = own.step(action)
        np.testing.assert_array_equal(obs, own_obs)
        assert reward == own_reward and step_info["family"] == info["family"]
        assert step_info["final_train_loss"] == own_info["final_train_loss"]


def test_a_family_can_be_asked_for_by_name() -> None:
    env = gym.make(MIXTURE_ID, **DIGITS)
    for seed in range(6):
        _, info = env.reset(seed=seed, options={"family": "digits-mlp-sgd"})
        assert info["family"] == "digits-mlp-sgd" and env.unwrapped.architecture == "mlp"
    with pytest.raises(InvalidConfigError, match=r"mnist-cnn-sgd.*digits-cnn-sgd"):
        env.reset(options={"family": "mnist-cnn-sgd"})


@pytest.mark.parametrize("env_id", [MIXTURE_ID, DYNAMIC_MIXTURE_ID])
def test_gymnasium_and_sb3_checkers_pass_on_the_mixtures(env_id: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    extra = {"control_interval": 4} if env_id == DYNAMIC_MIXTURE_ID else {}
    env = gym.make(env_id, render_mode="rgb_array", **DIGITS, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)


def test_the_dynamic_mixture_is_a_per_step_env_naming_its_family() -> None:
    assert is_dynamic(DYNAMIC_MIXTURE_ID) and not is_dynamic(MIXTURE_ID)
    env = gym.make(DYNAMIC_MIXTURE_ID, **DIGITS, control_interval=5)
    assert isinstance(env.unwrapped, StepSizeControlDynamicEnv)
    _, info = env.reset(seed=4)
    done, total = False, 0.0
    while not done:
        _, reward, done, _, step_info = env.step(np.array([0.0], dtype=np.float32))
        total += float(reward)
        assert step_info["family"] == info["family"]
    assert math.isfinite(total)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"exclude": ["digits-cnn-sdg"]}, InvalidConfigError, "did you mean 'digits-cnn-sgd'"),
        ({"include": ["cifar-*"]}, InvalidConfigError, "'cifar-\\*', which is no family"),
        ({"weights": {"digits": 2}}, InvalidConfigError, "weights names 'digits'"),
        ({"weights": {"digits-cnn-sgd": -1}}, InvalidConfigError, "finite number >= 0"),
        ({"include": ["digits-*"], "exclude": ["digits-*"]}, InvalidConfigError, "no family"),
        ({"stpes": [5, 6]}, UnknownSettingError, "did you mean 'steps'"),
        ({"lr": [1e-3, 1e-2]}, InvalidConfigError, "lr_sgd, lr_adaptive"),
        ({"architecture": "mlp"}, InvalidConfigError, "set per family"),
        ({"lr_sgd": [1.0, 1e-3]}, InvalidConfigError, "lr_sgd="),
        (
            {"families": {"mine": {"dataset": "digits", "theta_scale": [1] * 5}}},
            InvalidConfigError,
            "every family shares",
        ),
        (
            {"families": {"mine": {"dataset": "digits", "step": [5, 6]}}},
            UnknownSettingError,
            "did you mean 'steps'",
        ),
        ({"families": {"mine": {"steps": [5, 6]}}}, InvalidConfigError, "at least its 'dataset'"),
    ],
)
def test_bad_mixture_settings_name_the_value_and_the_fix(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    base: dict[str, Any] = {} if "include" in kwargs or "families" in kwargs else DIGITS
    with pytest.raises(error, match=match):
        gym.make(MIXTURE_ID, **{**base, **kwargs})


def test_missing_data_names_the_family_to_exclude(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"exclude=\['mnist-cnn-sgd'\]"):
        gym.make(MIXTURE_ID, include=["mnist-cnn-*"], data_root=str(tmp_path), download=False)


@pytest.mark.slow
def test_every_registered_family_runs_an_episode(mnist_root: Path) -> None:
    """The default mixture, every family once (a few steps each): finite rewards, the task of
    the family asked for."""
    env = gym.make(MIXTURE_ID, data_root=str(mnist_root), steps=[6, 9], eval_size=32, test_size=32)
    for seed, name in enumerate(MIXTURE_FAMILIES):
        obs, info = env.reset(seed=seed, options={"family": name})
        _, reward, _, _, step_info = env.step(np.zeros(5, dtype=np.float32))
        member = env.unwrapped.members[name]
        assert info["task"]["dataset"] == member.dataset
        assert info["task"]["optimizer"] == member.optimizer
        assert np.all(np.isfinite(obs)) and math.isfinite(float(reward)), name
        assert step_info["family"] == name
