"""The env ids of the new families (ResNet-MNIST, Transformer, MNIST1D, MNIST-AdamW) and their
Dynamic- twins: fuzzed actions never give a non-finite observation or reward, the tasks are
the documented networks, and the transformer's training runs behave like language modelling.
(The checkers and bit-reproducibility run over every registered id in test_envs.py.)"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from helpers import data_kwargs

import lrgym
from lrgym.controllers import ConstantController
from lrgym.data.datasets import load_dataset
from lrgym.tasks.family import TaskFamily
from lrgym.training import train

NEW = ("ResNet-MNIST", "Transformer", "MNIST1D", "MNIST-AdamW")
BANDIT = [f"StepSizeControl-{name}-v0" for name in NEW]
DYNAMIC = [f"StepSizeControl-Dynamic-{name}-v0" for name in NEW]
TINY: dict[str, Any] = {"steps": [6, 9], "eval_points": 3, "eval_size": 32, "test_size": 32}


def make(env_id: str, fake_root: Path, mnist_root: Path) -> gym.Env:
    kwargs = {**TINY, **data_kwargs(env_id, fake_root, mnist_root)}
    if env_id in lrgym.DYNAMIC_ENV_KWARGS:
        kwargs = {k: v for k, v in kwargs.items() if k != "eval_points"} | {"control_interval": 3}
    return gym.make(env_id, **kwargs)


def test_every_new_family_is_registered_with_its_dynamic_twin() -> None:
    """(That each twin samples its bandit id's tasks: test_dynamic.py.)"""
    assert set(BANDIT) <= set(lrgym.ENV_KWARGS) and set(DYNAMIC) <= set(lrgym.DYNAMIC_ENV_KWARGS)
    expected = {
        "StepSizeControl-ResNet-MNIST-v0": ("mnist", "resnet", "sgd"),
        "StepSizeControl-Transformer-v0": ("grammar", "transformer", "adamw"),
        "StepSizeControl-MNIST1D-v0": ("mnist1d", "cnn1d", "sgd"),
        "StepSizeControl-MNIST-AdamW-v0": ("mnist", "cnn", "adamw"),
    }
    for env_id, (dataset, architecture, optimizer) in expected.items():
        kwargs = lrgym.ENV_KWARGS[env_id]
        assert (kwargs["dataset"], kwargs["architecture"], kwargs["optimizer"]) == (
            dataset,
            architecture,
            optimizer,
        )
    assert lrgym.ENV_KWARGS["StepSizeControl-ResNet-MNIST-v0"]["norm"] == "batch"
    assert lrgym.ENV_KWARGS["StepSizeControl-ResNet-MNIST-v0"]["momentum"] == 0.9


@pytest.mark.slow
@pytest.mark.parametrize("env_id", BANDIT)
def test_fuzzed_bandit_actions_give_finite_observations_and_rewards(
    env_id: str, fake_root: Path, mnist_root: Path
) -> None:
    env = make(env_id, fake_root, mnist_root)
    rng = np.random.default_rng(0)
    corners = [np.full(5, v, np.float32) for v in (-1.0, 1.0)]
    actions = [*corners, *rng.uniform(-1, 1, (3, 5)).astype(np.float32)]
    for seed, action in enumerate(actions):
        obs, _ = env.reset(seed=seed)
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
        obs, reward, terminated, _, _ = env.step(action)
        assert np.all(np.isfinite(obs)) and math.isfinite(reward) and terminated


@pytest.mark.slow
@pytest.mark.parametrize("env_id", DYNAMIC)
def test_fuzzed_dynamic_actions_give_finite_observations_and_rewards(
    env_id: str, fake_root: Path, mnist_root: Path
) -> None:
    env = make(env_id, fake_root, mnist_root)
    rng = np.random.default_rng(1)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        terminated = False
        while not terminated:
            action = rng.choice([-1.0, 1.0, rng.uniform(-1, 1)])
            obs, reward, terminated, truncated, _ = env.step(np.array([action], np.float32))
            assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
            assert math.isfinite(reward) and not truncated


@pytest.mark.slow
def test_transformer_runs_behave_like_language_modelling() -> None:
    """Loss near log V before training, falling by a large factor in a few hundred steps."""
    data = load_dataset("grammar")
    settings = lrgym.ENV_KWARGS["StepSizeControl-Transformer-v0"]
    family = TaskFamily(
        dataset="grammar",
        architecture="transformer",
        optimizer="adamw",
        widths=((2, 2), (64, 64), (4, 4)),
        steps=(300, 300),
        batch_size=tuple(settings["batch_size"]),
        subset_fraction=(1.0, 1.0),
        lr=(3e-3, 3e-3),
    )
    task = family.sample(np.random.default_rng(0))
    result = train(task, ConstantController(), data, eval_size=256, test_size=256, eval_points=4)
    losses = result.curves.eval_losses
    assert abs(losses[0] - math.log(data.num_classes)) < 0.5
    assert losses[-1] < losses[0] / 2.5
