"""The environment contract, over every registered id, with small budgets."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env as gym_check_env
from helpers import data_kwargs, slow_unless_cheap

import lrgym
from lrgym.errors import InvalidActionError, InvalidConfigError
from lrgym.registration import DYNAMIC_ENV_KWARGS, ENV_KWARGS

ENV_IDS = sorted(ENV_KWARGS)
DYNAMIC_IDS = sorted(DYNAMIC_ENV_KWARGS)
SMALL = {"steps": [8, 12], "eval_points": 4, "eval_size": 64, "test_size": 64}
DYNAMIC_SMALL = {"steps": [20, 30], "eval_size": 64, "test_size": 64, "control_interval": 7}


def make(env_id: str, fake_root: Path, mnist_root: Path, **extra: Any) -> gym.Env:
    return gym.make(env_id, **{**SMALL, **data_kwargs(env_id, fake_root, mnist_root), **extra})


@pytest.mark.parametrize("env_id", slow_unless_cheap([*ENV_IDS, *DYNAMIC_IDS]))
def test_gymnasium_and_sb3_checkers_pass(env_id: str, fake_root: Path, mnist_root: Path) -> None:
    """The contract test over every registered id, bandit and dynamic."""
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    small = SMALL if env_id in ENV_KWARGS else DYNAMIC_SMALL
    kwargs = {**small, **data_kwargs(env_id, fake_root, mnist_root)}
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure here
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_action_is_bit_identical(
    env_id: str, fake_root: Path, mnist_root: Path
) -> None:
    action = np.array([0.1, -0.2, 0.05, 0.0, 0.3], dtype=np.float32)
    outcomes = []
    for _ in range(2):
        env = make(env_id, fake_root, mnist_root)
        obs0, _ = env.reset(seed=123)
        obs, reward, terminated, truncated, info = env.step(action)
        outcomes.append((obs0, obs, reward, info))
        assert terminated and not truncated
    (a0, a, ra, ia), (b0, b, rb, ib) = outcomes
    assert np.array_equal(a0, b0) and np.array_equal(a, b) and ra == rb
    for key in ("losses", "learning_rates", "features", "raw_features", "eval_losses"):
        assert np.array_equal(
            getattr(ia["curves"], key), getattr(ib["curves"], key), equal_nan=True
        )
    assert ia["curves"] == ib["curves"] and ia["task"] == ib["task"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spec_round_trips_through_json(env_id: str) -> None:
    spec = gym.spec(env_id)
    again = EnvSpec.from_json(spec.to_json())
    assert again == spec
    json.dumps(spec.kwargs)  # primitives only


def test_observations_lie_in_the_space_and_reset_matches_the_first_step(
    fake_root: Path, mnist_root: Path
) -> None:
    env = make("StepSizeControl-Digits-v0", fake_root, mnist_root)
    obs0, info0 = env.reset(seed=5)
    assert obs0.dtype == np.float32 and env.observation_space.contains(obs0)
    obs, reward, *_, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert np.isfinite(reward)
    # the starting observation is phi_hat after the first step, which eta_0 drives (exact:
    # the probe takes the very step the run takes)
    np.testing.assert_array_equal(obs0, info["curves"].features[0].astype(np.float32))
    assert info["curves"].learning_rates[0] == info0["task"]["eta0"]


def test_reward_is_the_papers_formula(fake_root: Path, mnist_root: Path) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root, eval_points=6)
    env.reset(seed=3)
    _, reward, *_, info = env.step(np.zeros(5, dtype=np.float32))
    losses = info["curves"].eval_losses
    assert len(losses) == 6 and not info["diverged"]
    expected = -np.mean(np.diff(np.log(losses)))
    assert reward == pytest.approx(expected, rel=1e-12)
    steps = info["curves"].eval_steps
    assert steps[0] == 0 and steps[-1] == info["task"]["steps"]


def test_seeds_sample_different_tasks_and_unseeded_resets_continue(
    fake_root: Path, mnist_root: Path
) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root)
    _, first = env.reset(seed=0)
    _, second = env.reset()
    _, other = env.reset(seed=1)
    _, again = env.reset(seed=0)
    assert first["task"] != second["task"] and first["task"] != other["task"]
    assert again["task"] == first["task"]


@pytest.mark.parametrize("env_id", ["StepSizeControl-MNIST-v0", "StepSizeControl-CIFAR10-v0"])
def test_memory_formats_train_the_same_run_up_to_rounding(
    env_id: str, fake_root: Path, mnist_root: Path
) -> None:
    action = np.array([0.1, -0.2, 0.05, 0.0, 0.3], dtype=np.float32)
    curves = {}
    for layout in ("contiguous", "channels_last"):
        env = make(env_id, fake_root, mnist_root, memory_format=layout, steps=[25, 25])
        env.reset(seed=5)
        *_, info = env.step(action)
        curves[layout] = info["curves"]
    a, b = curves.values()
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4)
    np.testing.assert_allclose(a.learning_rates, b.learning_rates, rtol=1e-3)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-3, atol=1e-3)
    assert not np.array_equal(a.losses, b.losses)  # two layouts really ran


def test_global_random_state_is_never_touched(fake_root: Path, mnist_root: Path) -> None:
    env = make("StepSizeControl-Digits-v0", fake_root, mnist_root)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert torch.equal(torch_state, torch.random.get_rng_state())
    after = np.random.get_state()
    assert numpy_state[0] == after[0] and np.array_equal(numpy_state[1], after[1])


@pytest.mark.parametrize(
    ("action", "words"),
    [
        (np.zeros(4, dtype=np.float32), "shape (4,)"),
        (np.zeros((1, 5), dtype=np.float32), "shape (1, 5)"),
        (np.array(["a"] * 5), "dtype"),
        (np.zeros(5, dtype=np.complex64), "dtype"),
        (np.zeros(5, dtype=bool), "dtype"),
        (np.array([0, 0, np.nan, 0, 0], dtype=np.float32), "non-finite"),
        (np.array([0, 0, 0, np.inf, 0], dtype=np.float32), "non-finite"),
    ],
)
def test_bad_actions_raise_value_errors_naming_the_problem(
    action: np.ndarray, words: str, fake_root: Path, mnist_root: Path
) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root).unwrapped
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=words.replace("(", r"\(").replace(")", r"\)")):
        env.step(action)
    assert issubclass(InvalidActionError, ValueError)


def test_out_of_bounds_actions_are_clipped(fake_root: Path, mnist_root: Path) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root).unwrapped
    results = []
    for action in ([0.0, 0.0, 0.0, 0.0, -7.0], [0.0, 0.0, 0.0, 0.0, -1.0]):
        env.reset(seed=0)
        _, reward, *_, info = env.step(np.array(action, dtype=np.float32))
        results.append((reward, info))
    assert results[0][1]["action_clipped"] and not results[1][1]["action_clipped"]
    assert results[0][0] == results[1][0]
    assert results[0][1]["theta"] == results[1][1]["theta"] == [0.0, 0.0, 0.0, 0.0, -15.0]


def test_action_theta_map_round_trips(fake_root: Path, mnist_root: Path) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root, theta_scale=[2, 2, 2, 2, 4])
    base = env.unwrapped
    theta = np.array([0.5, -1.0, 0.25, 0.0, -3.0])
    action = base.theta_to_action(theta)
    np.testing.assert_allclose(base.action_to_theta(action), theta, rtol=1e-6)
    np.testing.assert_allclose(action, [0.25, -0.5, 0.125, 0.0, 0.5], rtol=1e-6)


def test_divergence_gives_the_finite_penalty(fake_root: Path, mnist_root: Path) -> None:
    env = make(
        "StepSizeControl-Toy-v0",
        fake_root,
        mnist_root,
        lr_bounds=[1e-8, 1e6],
        divergence_penalty=-2.5,
        steps=[30, 30],
    )
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.array([0, 0, 0, 0, 1.0], dtype=np.float32))
    assert info["diverged"] and terminated
    assert reward == -2.5
    assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
    assert info["steps_completed"] < 30
    assert np.isinf(info["curves"].eval_losses[-1]) and np.isinf(info["final_train_loss"])
    assert info["test_loss"] == np.inf and info["test_accuracy"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"architecture": "vit"}, "'cnn', 'lenet', 'cifar-quick', 'mlp', 'resnet', 'transformer'"),
        ({"optimizer": "lbfgs"}, "'sgd', 'rmsprop', 'adam'"),
        ({"dataset": "imagenet"}, "'mnist'"),
        ({"render_mode": "ansi"}, "'rgb_array'"),
        ({"gamma": 1.0}, "gamma=1.0"),
        ({"feature_every": 0}, "feature_every=0"),
        ({"steps": [10, 5]}, "steps="),
        ({"lr": [0.0, 1.0]}, "lr="),
        ({"theta_scale": [1, 1, 1, 1, 0]}, "theta_scale="),
        ({"lr_bounds": [1.0, 0.1]}, "lr_bounds="),
        ({"eval_points": 1}, "eval_points=1"),
        ({"lr": [1e-3, 100.0]}, "must lie inside lr_bounds"),
        ({"architecture": "cnn", "widths": None}, "use architecture='mlp'"),
        ({"memory_format": "nhwc"}, "'auto', 'contiguous', 'channels_last'"),
    ],
)
def test_bad_arguments_raise_errors_listing_what_is_allowed(
    kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidConfigError, match=words.replace("(", r"\(").replace("[", r"\[")):
        gym.make("StepSizeControl-Toy-v0", **kwargs)


def test_step_before_reset_is_refused(fake_root: Path, mnist_root: Path) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root).unwrapped
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(5, dtype=np.float32))
    env.reset(seed=0)
    env.step(np.zeros(5, dtype=np.float32))
    with pytest.raises(gym.error.ResetNeeded):  # every step ends the episode
        env.step(np.zeros(5, dtype=np.float32))


def test_render_draws_the_last_run(fake_root: Path, mnist_root: Path) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root, render_mode="rgb_array")
    env.reset(seed=0)
    empty = env.render()
    env.step(np.zeros(5, dtype=np.float32))
    frame = env.render()
    assert frame.shape == empty.shape and frame.dtype == np.uint8 and frame.shape[2] == 3
    assert not np.array_equal(frame, empty)
    plain = make("StepSizeControl-Toy-v0", fake_root, mnist_root)
    plain.reset(seed=0)
    assert plain.render() is None


@pytest.mark.slow
def test_render_and_figures_leave_the_plotting_backend_alone() -> None:
    # a notebook's inline backend must survive env.render() and the benchmark's figures
    code = (
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "import gymnasium as gym, lrgym\n"
        "from lrgym.bench.figures import _new_figure\n"
        "env = gym.make('StepSizeControl-Toy-v0', render_mode='rgb_array')\n"
        "env.reset(seed=0)\n"
        "env.render()\n"
        "_new_figure(4, 3)\n"
        "print(matplotlib.get_backend())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"


def test_a_given_task_can_be_replayed(fake_root: Path, mnist_root: Path) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root)
    _, info = env.reset(seed=9)
    task = lrgym.Task(**{**info["task"], "widths": tuple(info["task"]["widths"])})
    _, again = env.reset(options={"task": task})
    assert again["task"] == info["task"]
    with pytest.raises(InvalidConfigError, match="options"):
        env.reset(options={"task": "not a task"})


@pytest.mark.slow
def test_make_with_module_prefix_needs_no_import() -> None:
    code = (
        "import gymnasium as gym, numpy as np\n"
        "env = gym.make('lrgym:StepSizeControl-Toy-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        "print(env.step(np.zeros(5, dtype=np.float32))[2])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_toy_episode_trains_the_sampled_task_to_its_last_step() -> None:
    """The registered Toy defaults: the zero action trains every step of the sampled task."""
    env = gym.make("StepSizeControl-Toy-v0")
    _, reset_info = env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(5, dtype=np.float32))
    result = env.unwrapped.last_result
    steps = reset_info["task"]["steps"]
    assert 40 <= steps <= 80  # the registered range
    assert not result.diverged and result.steps_completed == info["steps_completed"] == steps
    assert result.curves.learning_rates.shape == (steps,) and result.curves.eval_steps[-1] == steps
    assert np.isfinite(reward) and reward > 0  # the loss went down


@pytest.mark.slow
@pytest.mark.parametrize("real", [True, False])
def test_default_mnist_episode_runs_on_the_mnist_files(
    real: bool, mnist_root: Path, fake_root: Path
) -> None:
    """The registered defaults, unchanged but for the data root (real MNIST in CI)."""
    env = gym.make("StepSizeControl-MNIST-v0", data_root=str(mnist_root if real else fake_root))
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.zeros(5, dtype=np.float32))
    result = env.unwrapped.last_result
    assert terminated and not truncated and env.observation_space.contains(obs)
    assert result.steps_completed == info["task"]["steps"] >= 300
    assert len(result.curves.eval_losses) == 10 and np.isfinite(reward)
    assert reward > 0 and info["test_accuracy"] > 0.5  # the net learns


def test_vector_env_with_same_step_autoreset_batches_runs_of_different_lengths() -> None:
    from gymnasium.vector import AutoresetMode

    envs = gym.make_vec(
        "StepSizeControl-Toy-v0",
        num_envs=2,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )
    obs, _ = envs.reset(seed=0)
    for _ in range(2):  # every step is a whole episode, and the next task starts at once
        obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 5), dtype=np.float32))
        assert obs.shape == (2, 5) and np.all(np.isfinite(reward)) and terminated.all()
        assert not truncated.any()
        final = info["final_info"]  # same-step autoreset: info is the next reset's
        lengths = [len(c.losses) for c in final["curves"]]
        assert lengths == list(final["steps_completed"]) and "task" in info
    envs.close()


def test_diverged_runs_still_pass_the_determinism_check(fake_root: Path, mnist_root: Path) -> None:
    env = make("StepSizeControl-Toy-v0", fake_root, mnist_root, lr_bounds=[1e-8, 1e6]).unwrapped
    bias = np.array([0, 0, 0, 0, 1], dtype=np.float32)  # eta = e^5: diverges
    env.action_space = gym.spaces.Box(bias, bias, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env, skip_render_check=True)
    env.reset(seed=0)
    assert env.step(bias)[4]["diverged"]


def test_a_search_over_the_action_raises_the_reward_on_fixed_tasks() -> None:
    """A few iterations of hill climbing on the bias (log learning rate) entry of the action,
    scored on the same two tasks, raise the reward well above that of the tiny starting rate:
    the reward is a learning signal an agent can follow."""
    env = gym.make("StepSizeControl-Toy-v0")

    def score(bias: float) -> float:
        action = np.array([0, 0, 0, 0, bias], dtype=np.float32)
        rewards = []
        for seed in (0, 1):  # the same tasks for every candidate
            env.reset(seed=seed)
            rewards.append(float(env.step(action)[1]))
        return float(np.mean(rewards))

    bias = -0.6  # theta bias -11: eta ~ 1.7e-5, the loss barely moves
    history = [score(bias)]
    for _ in range(4):
        candidates = {b: score(b) for b in (bias - 0.25, bias + 0.25)}
        best = max(candidates, key=lambda b: candidates[b])
        if candidates[best] > history[-1]:
            bias = best
            history.append(candidates[best])
    assert history[0] < 0.01
    assert len(history) >= 3 and history[-1] > history[0] + 0.2


@pytest.mark.slow
def test_results_reproduce_in_a_fresh_process() -> None:
    code = (
        "import json, gymnasium as gym, numpy as np, lrgym\n"
        "env = gym.make('StepSizeControl-Digits-v0', steps=[20, 30])\n"
        "env.reset(seed=4)\n"
        "_, r, *_, info = env.step(np.full(5, 0.1, dtype=np.float32))\n"
        "print(json.dumps([r, info['curves'].losses.tolist()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reward, losses = json.loads(out.stdout)
    env = gym.make("StepSizeControl-Digits-v0", steps=[20, 30])
    env.reset(seed=4)
    _, here, *_, info = env.step(np.full(5, 0.1, dtype=np.float32))
    assert reward == here and losses == info["curves"].losses.tolist()


def test_observation_stays_finite_when_the_first_update_blows_up() -> None:
    env = gym.make("StepSizeControl-Toy-v0", lr=[1e5, 1e5], lr_bounds=[1e-8, 1e6])
    obs, _ = env.reset(seed=0)
    assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
    obs, reward, *_ = env.step(np.zeros(5, dtype=np.float32))
    assert np.all(np.isfinite(obs)) and np.isfinite(reward)
