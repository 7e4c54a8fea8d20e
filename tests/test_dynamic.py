"""The per-step environments (``StepSizeControl-Dynamic-*``) and the controller wrapper."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from helpers import data_kwargs

import lrgym
from lrgym.controllers import ScheduleController
from lrgym.controllers.files import ControllerFileError, LogLinearFile
from lrgym.envs import ControllerWrapper, StepSizeControlDynamicEnv
from lrgym.errors import InvalidActionError, InvalidConfigError
from lrgym.registration import DYNAMIC_ENV_KWARGS, ENV_KWARGS, bandit_id_of
from lrgym.reward import log_loss_decrease
from lrgym.spec import BanditSettings, DynamicSettings

DYNAMIC_IDS = sorted(DYNAMIC_ENV_KWARGS)
SMALL = {"steps": [20, 30], "eval_size": 64, "test_size": 64, "control_interval": 7}


def small_kwargs(env_id: str, fake_root: Path, mnist_root: Path, **extra: Any) -> dict[str, Any]:
    return {**SMALL, **data_kwargs(env_id, fake_root, mnist_root), **extra}


def make(env_id: str, fake_root: Path, mnist_root: Path, **extra: Any) -> gym.Env:
    return gym.make(env_id, **small_kwargs(env_id, fake_root, mnist_root, **extra))


def play(env: gym.Env, seed: int, actions: list[float] | None) -> list[tuple[Any, ...]]:
    """Every (obs, reward, terminated, truncated, info) of one episode; ``actions`` cycled,
    ``None``: a controller-driven episode."""
    record: list[tuple[Any, ...]] = [env.reset(seed=seed)]
    k = 0
    while True:
        action = None if actions is None else np.array([actions[k % len(actions)]], np.float32)
        outcome = env.step(action)
        record.append(outcome)
        k += 1
        if outcome[2] or outcome[3]:
            return record


def test_every_issue_id_is_registered_and_runs_its_bandit_twins_tasks() -> None:
    names = ["MNIST", "MNIST-RMSprop", "FashionMNIST", "CIFAR10", "Digits", "Toy"]
    names += ["ResNet-MNIST", "Transformer", "MNIST1D", "MNIST-AdamW"]
    assert sorted(f"StepSizeControl-Dynamic-{n}-v0" for n in names) == DYNAMIC_IDS
    for env_id in DYNAMIC_IDS:
        spec = gym.spec(env_id)
        assert spec.entry_point == "lrgym.envs.dynamic:StepSizeControlDynamicEnv"
        assert spec.max_episode_steps is None  # the env never truncates, no TimeLimit
        bandit = bandit_id_of(env_id)
        assert bandit is not None
        same = {k: v for k, v in spec.kwargs.items() if k != "control_interval"}
        assert same.items() <= gym.spec(bandit).kwargs.items()
        dynamic = DynamicSettings.from_kwargs(DYNAMIC_ENV_KWARGS[env_id])
        twin = BanditSettings.from_kwargs(ENV_KWARGS[bandit])
        assert dynamic.family() == twin.family() and dynamic.eval_size == twin.eval_size


@pytest.mark.parametrize("env_id", DYNAMIC_IDS)
def test_same_seed_same_actions_give_bit_identical_episodes(
    env_id: str, fake_root: Path, mnist_root: Path
) -> None:
    actions = [0.3, -0.2, 0.6]
    first = play(make(env_id, fake_root, mnist_root), 11, actions)
    second = play(make(env_id, fake_root, mnist_root), 11, actions)
    assert len(first) == len(second) > 2
    (obs_a, info_a), (obs_b, info_b) = first[0], second[0]
    assert np.array_equal(obs_a, obs_b) and info_a == info_b
    for a, b in zip(first[1:], second[1:], strict=True):
        assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
        curves_a, curves_b = a[4].pop("curves", None), b[4].pop("curves", None)
        assert a[4] == b[4] and curves_a == curves_b
    assert first[-1][2] and not first[-1][3]


@pytest.mark.parametrize("env_id", ["StepSizeControl-Dynamic-Digits-v0"])
def test_reset_draws_the_task_the_bandit_env_draws(
    env_id: str, fake_root: Path, mnist_root: Path
) -> None:
    kwargs = small_kwargs(env_id, fake_root, mnist_root)
    dynamic = gym.make(env_id, **kwargs)
    bandit_kwargs = {k: v for k, v in kwargs.items() if k != "control_interval"}
    bandit = gym.make(bandit_id_of(env_id), **bandit_kwargs)
    for seed in (0, 5, 99):
        obs, info = dynamic.reset(seed=seed)
        bandit_obs, bandit_info = bandit.reset(seed=seed)
        assert info["task"] == bandit_info["task"]
        assert np.array_equal(obs[:5], bandit_obs)  # the same starting features, one function
        assert obs[5] == np.float32(math.log(info["task"]["eta0"]))
        assert obs[6] == 0.0
        assert obs[7] == np.float32(math.log(info["eval_loss"]))


def test_observations_lie_in_the_box_and_an_action_runs_one_interval() -> None:
    env = gym.make("StepSizeControl-Dynamic-Toy-v0", steps=[23, 23], control_interval=5)
    obs, _ = env.reset(seed=3)
    space = env.observation_space
    assert space.shape == (8,) and space.dtype == np.float32 and space.contains(obs)
    done = [0]
    while True:
        obs, _, terminated, truncated, info = env.step(np.array([0.2], np.float32))
        assert space.contains(obs) and np.all(np.isfinite(obs)) and not truncated
        done.append(info["steps_done"])
        assert obs[6] == np.float32(info["steps_done"] / 23)
        assert obs[7] == np.float32(math.log(info["eval_loss"]))
        if terminated:
            break
    assert done == [0, 5, 10, 15, 20, 23]  # the last stretch is shorter
    assert list(info["curves"].eval_steps) == done
    lr = env.unwrapped.action_to_lr(np.array([0.2], np.float32))
    assert np.all(info["curves"].learning_rates == lr)
    assert math.isclose(math.log10(lr), -5 + (1 + float(np.float32(0.2))) / 2 * 5, rel_tol=1e-12)


def test_rewards_sum_to_the_log_decrease_of_the_evaluation_loss() -> None:
    env = gym.make("StepSizeControl-Dynamic-Digits-v0", steps=[60, 60], control_interval=9)
    record = play(env, 4, [0.4, 0.7, 0.2, 0.5])
    rewards = [step[1] for step in record[1:]]
    curves = record[-1][4]["curves"]
    e = curves.eval_losses
    assert len(rewards) == 7 and np.all(np.isfinite(e))
    # float64 reference: the telescoped sum, and each step's own difference
    assert math.isclose(math.fsum(rewards), math.log(e[0]) - math.log(e[-1]), rel_tol=1e-12)
    assert rewards == pytest.approx(list(np.log(e[:-1]) - np.log(e[1:])), rel=1e-12)
    # ... the bandit reward of the same run times S - 1
    bandit = log_loss_decrease([e[0], e[-1]], diverged=False)
    assert math.isclose(math.fsum(rewards), bandit, rel_tol=1e-12)
    assert record[-1][4]["final_train_loss"] == e[-1]


def test_a_divergence_ends_the_episode_with_the_documented_return() -> None:
    env = gym.make(
        "StepSizeControl-Dynamic-Toy-v0", steps=[60, 60], control_interval=5, lr_range=[1e-3, 10]
    )
    env.reset(seed=0)
    rewards, info = [], {}
    for action in (-0.5, -0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0):
        obs, reward, terminated, truncated, info = env.step(np.array([action], np.float32))
        rewards.append(reward)
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
        if terminated:
            break
    assert terminated and not truncated and info["diverged"]
    assert info["steps_completed"] < 60 and info["test_accuracy"] == 0.0
    assert math.isclose(sum(rewards), -9.0, abs_tol=1e-12)  # the episode's return
    assert rewards[0] > 0  # the stretches before it kept their own rewards


def test_the_multiplicative_action_scales_the_current_rate() -> None:
    env = gym.make(
        "StepSizeControl-Dynamic-Toy-v0",
        steps=[30, 30],
        control_interval=10,
        action_mode="multiplicative",
        max_factor=4.0,
    )
    _, info = env.reset(seed=1)
    eta0 = info["task"]["eta0"]
    rates = []
    for action in (0.5, -1.0, 1.5):
        _, _, _, _, info = env.step(np.array([action], np.float32))
        rates.append(info["lr"])
    assert rates[0] == pytest.approx(eta0 * 2.0, rel=1e-12)
    assert rates[1] == pytest.approx(eta0 * 2.0 / 4.0, rel=1e-12)
    assert rates[2] == pytest.approx(eta0 * 2.0, rel=1e-12) and info["action_clipped"]
    curves = info["curves"]
    assert np.array_equal(curves.learning_rates, np.repeat(rates, 10))


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (np.zeros(2, np.float32), "shape (2,)"),
        (np.zeros((1, 1), np.float32), "shape (1, 1)"),
        (np.array(["a"]), "dtype <U1"),
        (np.array([np.nan], np.float32), "non-finite"),
        (np.array([np.inf], np.float32), "non-finite"),
        (None, "action is None"),
    ],
)
def test_bad_actions_raise_a_value_error_naming_the_problem(action: Any, message: str) -> None:
    env = gym.make("StepSizeControl-Dynamic-Toy-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        env.step(action)
    assert isinstance(InvalidActionError("x"), ValueError)
    env.step(np.zeros(1, np.float32))  # the episode is unharmed


def test_step_before_reset_and_after_the_end_needs_a_reset() -> None:
    env = gym.make("StepSizeControl-Dynamic-Toy-v0", steps=[10, 10], control_interval=10)
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step(np.zeros(1, np.float32))
    env.reset(seed=0)
    assert env.step(np.zeros(1, np.float32))[2]
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step(np.zeros(1, np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"control_interval": 0}, "control_interval=0"),
        ({"action_mode": "relative"}, "action_mode='relative'"),
        ({"lr_range": [1e-9, 1.0]}, "lr_range"),
        ({"lr_range": [1.0, 1e-2]}, "lr_range"),
        ({"max_factor": 1.0}, "max_factor=1.0"),
        ({"divergence_penalty": math.nan}, "divergence_penalty"),
    ],
)
def test_bad_settings_name_the_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message.replace("[", r"\[")):
        gym.make("StepSizeControl-Dynamic-Toy-v0", **kwargs)


def digits_env(**extra: Any) -> gym.Env:
    return gym.make(
        "StepSizeControl-Dynamic-Digits-v0", steps=[45, 45], eval_size=100, test_size=100, **extra
    )


@pytest.mark.parametrize(
    "controller",
    [
        lrgym.ConstantController(0.05),
        lrgym.LogLinearController([-0.15, 0.03, -0.03, -0.34, -2.45]),
        lrgym.LogLinearController([0.05, 0.0, -0.1, 0.0, -1.0], relative=True),
        ScheduleController("cosine", decay=0.0),
    ],
    ids=["constant", "log-linear", "relative", "cosine"],
)
def test_the_wrapper_runs_a_controller_exactly_as_lrgym_train(
    controller: lrgym.Controller,
) -> None:
    env = ControllerWrapper(digits_env(control_interval=8), controller)
    record = play(env, 21, None)
    info = record[-1][4]
    base = env.unwrapped
    task = task_of(record[0][1]["task"])
    reference = lrgym.train(task, controller, base._data, eval_size=100, test_size=100)
    got, want = info["curves"], reference.curves
    # exact on any CPU: one TrainingRun's ops either way (evaluations do not touch training)
    for name in ("losses", "learning_rates", "features", "raw_features"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert got.eval_losses[0] == want.eval_losses[0]
    assert got.eval_losses[-1] == want.eval_losses[-1] == info["final_train_loss"]
    assert info["test_loss"] == reference.test_loss
    assert info["test_accuracy"] == reference.test_accuracy
    rewards = math.fsum(step[1] for step in record[1:])
    assert math.isclose(rewards, 9 * base_reward(reference), rel_tol=1e-12)
    assert all(step[4]["steps_done"] for step in record[1:])


def task_of(described: dict[str, Any]) -> lrgym.Task:
    return lrgym.Task(**{**described, "widths": tuple(described["widths"])})


def base_reward(result: lrgym.TrainingResult) -> float:
    """The bandit env's reward of ``result`` (its default S = 10)."""
    return log_loss_decrease(list(result.curves.eval_losses), diverged=False)


def test_the_wrapper_takes_controller_files_and_pretrained_names(tmp_path: Path) -> None:
    theta = (-0.15, 0.03, -0.03, -0.34, -2.45)
    saved = LogLinearFile(theta=theta, theta_cov=None, env_id="StepSizeControl-Digits-v0")
    path = lrgym.save_controller(
        dataclasses.replace(saved, theta_cov=((0.0,) * 5,) * 5), tmp_path / "c.json"
    )
    by_file = play(ControllerWrapper(digits_env(), str(path)), 2, None)
    by_object = play(ControllerWrapper(digits_env(), lrgym.LogLinearController(theta)), 2, None)
    assert by_file[-1][4]["curves"] == by_object[-1][4]["curves"]
    by_name = play(ControllerWrapper(digits_env(), "mnist-sgd"), 2, None)
    assert (
        by_name[-1][4]["curves"]
        == play(
            ControllerWrapper(digits_env(), lrgym.load_controller("mnist-sgd").controller()),
            2,
            None,
        )[-1][4]["curves"]
    )
    with pytest.raises(ControllerFileError, match="neither a controller file"):
        ControllerWrapper(digits_env(), "no-such-controller")
    with pytest.raises(InvalidConfigError, match="needs a StepSizeControl-Dynamic env"):
        ControllerWrapper(gym.make("StepSizeControl-Toy-v0"), saved)


def test_the_env_has_no_controller_mode() -> None:
    """A controller runs only through the wrapper: ``reset`` takes no controller, ``step``
    takes no ``None``, and an action episode after a wrapped one is an action episode."""
    env = digits_env().unwrapped
    assert isinstance(env, StepSizeControlDynamicEnv)
    with pytest.raises(InvalidConfigError, match="ControllerWrapper"):
        env.reset(seed=0, options={"controller": lrgym.ConstantController(0.01)})
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="action is None"):
        env.step(None)  # type: ignore[arg-type]
    wrapped = ControllerWrapper(env, lrgym.ConstantController(0.01))
    wrapped.reset(seed=0)
    assert wrapped.step(None)[4]["lr"] == 0.01
    env.reset(seed=0)
    assert env.step(env.lr_to_action(0.02))[4]["lr"] == pytest.approx(0.02)


def test_drive_restarts_the_episode_with_a_controller() -> None:
    """``drive`` starts the episode under way over: the reset's observation and ``E``, then
    the controller's rates; ``advance(None)`` without it trains at eta_0."""
    env = digits_env(control_interval=10).unwrapped
    assert isinstance(env, StepSizeControlDynamicEnv)
    obs, info = env.reset(seed=3)
    eta0 = info["task"]["eta0"]
    assert env.advance(None)[4]["lr"] == eta0
    again, again_info = env.drive(lrgym.ConstantController(0.03))
    assert again_info["eval_loss"] == info["eval_loss"]
    np.testing.assert_array_equal(again[:5], obs[:5])
    assert again[5] == np.float32(math.log(0.03))  # the controller's rate is on the optimiser
    assert env.advance(None)[4]["steps_done"] == 10
    play(env, 3, [0.0])  # to the episode's end
    with pytest.raises(gym.error.ResetNeeded):
        env.drive(lrgym.ConstantController(0.03))


def test_a_constant_action_is_the_constant_controller() -> None:
    """The rate an absolute action sets is a constant learning rate for the run: the same
    curves as ConstantController at that rate under lrgym.train."""
    env = digits_env(control_interval=10)
    action = 0.55
    lr = env.unwrapped.action_to_lr(np.array([action], np.float32))
    record = play(env, 8, [action])
    task = task_of(record[0][1]["task"])
    reference = lrgym.train(
        task, lrgym.ConstantController(lr), env.unwrapped._data, eval_size=100, test_size=100
    )
    got = record[-1][4]["curves"]
    # exact on any CPU: one TrainingRun's ops either way, at the same rate
    for name in ("losses", "learning_rates", "features", "raw_features"):
        assert np.array_equal(getattr(got, name), getattr(reference.curves, name)), name
    assert env.unwrapped.lr_to_action(lr)[0] == pytest.approx(action, abs=1e-6)
