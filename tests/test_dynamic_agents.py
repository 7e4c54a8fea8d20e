"""Learners and evaluation on the per-step envs: ``lrgym train`` writes a per-step policy file,
``lrgym evaluate`` plays it, and scores bandit controllers on the same episodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import DYNAMIC_SHORT as SHORT
from helpers import DYNAMIC_TOY as TOY
from helpers import log_of

import lrgym
from lrgym.cli import main
from lrgym.controllers.files import (
    ContextualPolicyFile,
    ControllerFileError,
    LogLinearFile,
    PerStepPolicyFile,
)
from lrgym.envs import ControllerWrapper
from lrgym.errors import InvalidConfigError
from lrgym.registration import is_dynamic
from lrgym_agents.collect import episode_seeds
from lrgym_agents.evaluation import evaluate_controller, evaluate_dynamic
from lrgym_agents.learners.sb3 import train_sb3
from lrgym_agents.rundir import LOG_COLUMNS, read_checkpoint, write_checkpoint


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dynamic") / "ppo"
    command = ["train", "ppo", "--env", TOY, "--env-kwargs", json.dumps(SHORT)]
    assert main([*command, "--episodes", "30", "--out", str(out), "--no-progress"]) == 0
    return out


def test_is_dynamic_tells_the_two_kinds_of_id_apart() -> None:
    assert is_dynamic(TOY) and is_dynamic("StepSizeControl-Dynamic-MNIST-v0")
    assert not is_dynamic("StepSizeControl-Toy-v0")
    with pytest.raises(gym.error.Error):
        is_dynamic("StepSizeControl-Nothing-v0")


@pytest.mark.slow
def test_ppo_trains_on_a_dynamic_id_to_the_exact_episode_budget(ppo_run: Path) -> None:
    log = log_of(ppo_run)
    assert all(list(row) == list(LOG_COLUMNS) for row in log)
    seeds = [s for row in log for s in row["seeds"]]
    assert log[-1]["episodes_total"] == 30 == len(seeds) == len(set(seeds))
    # an episode's logged reward is its return: several per-step rewards, one per action
    assert max(abs(r) for row in log for r in row["rewards"]) > 0.2
    saved = lrgym.load_controller(ppo_run / "controller.json")
    assert isinstance(saved, PerStepPolicyFile) and saved.env_id == TOY
    assert json.loads((ppo_run / "controller.json").read_text())["version"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["a2c", "sac", "td3", "ars"])
def test_every_sb3_learner_trains_and_evaluates_on_a_dynamic_id(
    algorithm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / algorithm
    command = ["train", algorithm, "--env", TOY, "--env-kwargs", json.dumps(SHORT)]
    settings = {"learning_starts": 10} if algorithm in ("sac", "td3") else {}
    command += ["--hyperparameters", json.dumps(settings), "--seed", "2"]
    assert main([*command, "--episodes", "16", "--out", str(out), "--no-progress"]) == 0
    log = log_of(out)
    assert log[-1]["episodes_total"] == 16 == len({s for row in log for s in row["seeds"]})
    saved = lrgym.load_controller(out / "controller.json")
    assert isinstance(saved, PerStepPolicyFile) and saved.source["algorithm"] == algorithm
    capsys.readouterr()
    code = main(["evaluate", str(out / "controller.json"), "--episodes", "2", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and [row["seed"] for row in rows] == [0, 1]
    assert all(np.isfinite(row["reward"]) for row in rows)


@pytest.mark.slow
def test_a_per_step_policy_file_is_played_with_its_deterministic_actions(ppo_run: Path) -> None:
    saved = lrgym.load_controller(ppo_run / "controller.json")
    assert isinstance(saved, PerStepPolicyFile)
    episodes = evaluate_controller(saved, episodes=2, seed=50, keep_curves=True)
    env = gym.make(TOY, **SHORT)
    # PPO on a dynamic env standardises its observations; the file keeps the statistics
    scaling = saved.policy["observation_normalization"]
    mean, std = np.array(scaling["mean"]), np.sqrt(np.array(scaling["var"]) + 1e-8)
    assert mean.shape == (8,) and np.all(std > 0) and scaling["clip"] == 10.0
    for episode in episodes:  # an independent replay of the same policy on the same task
        obs, _ = env.reset(seed=episode.seed)
        total, rates = 0.0, []
        while True:
            scaled = np.clip((obs - mean) / std, -10, 10).astype(np.float32)
            action, _ = saved.model.predict(scaled, deterministic=True)
            obs, reward, terminated, _, info = env.step(action)
            total += reward
            rates.append(info["lr"])
            if terminated:
                break
        # exact: the pool runs the same ops as this loop, on one torch thread as here
        assert episode.reward == total and episode.curves == info["curves"]
        assert np.array_equal(np.unique(episode.curves.learning_rates), np.unique(rates))


@pytest.mark.slow
def test_the_cli_evaluates_a_per_step_policy_and_prints_returns(
    ppo_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(ppo_run / "controller.json"), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "PPO per-step policy" in out and "mean return" in out


@pytest.mark.slow
def test_a_per_step_policy_file_is_not_a_controller(ppo_run: Path) -> None:
    saved = lrgym.load_controller(ppo_run / "controller.json")
    for use in (saved.controller, lambda: saved.theta_for(np.zeros(5))):
        with pytest.raises(ControllerFileError, match="per-step policy"):
            use()
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ControllerFileError, match="per-step policy"):
        lrgym.ControlledLR(model, torch.optim.SGD(model.parameters(), lr=0.1), saved)
    with pytest.raises(InvalidConfigError, match="bandit env"):
        evaluate_controller(saved, "StepSizeControl-Toy-v0", episodes=1)
    with pytest.raises(InvalidConfigError, match="per-step policy"):
        ControllerWrapper(gym.make(TOY), saved).reset(seed=0)


def log_linear_file(tmp_path: Path, env_id: str, **env_kwargs: Any) -> Path:
    theta = (-0.1, 0.05, -0.05, -0.2, -2.0)
    saved = LogLinearFile(
        theta=theta, theta_cov=((0.0,) * 5,) * 5, env_id=env_id, env_kwargs=env_kwargs
    )
    return lrgym.save_controller(saved, tmp_path / "controller.json")


def test_a_bandit_controller_on_the_dynamic_twin_is_scored_as_the_wrapper_scores_it(
    tmp_path: Path,
) -> None:
    path = log_linear_file(tmp_path, "StepSizeControl-Toy-v0", steps=[20, 30], eval_points=5)
    saved = lrgym.load_controller(path)
    episodes = evaluate_controller(saved, TOY, episodes=3, seed=7, keep_curves=True)
    # the bandit env's own arguments (steps) carry over, its bandit-only ones (eval_points) not
    env = ControllerWrapper(gym.make(TOY, steps=[20, 30]), saved.controller())
    for episode in episodes:
        env.reset(seed=episode.seed)
        total = 0.0
        while True:
            _, reward, terminated, _, info = env.step(None)
            total += reward
            if terminated:
                break
        # exact: the pool runs the same wrapper, on one torch thread as here
        assert episode.reward == total and episode.curves == info["curves"]
        assert episode.steps_completed == info["steps_completed"] <= 30


@pytest.mark.slow
def test_dynamic_evaluation_gives_the_same_episodes_in_worker_processes() -> None:
    controller = lrgym.ConstantController(0.05)
    seeds = [3, 4, 5]
    serial = evaluate_dynamic(controller, TOY, SHORT, seeds, backend="serial")
    process = evaluate_dynamic(controller, TOY, SHORT, seeds, backend="process", workers=2)
    assert [e.seed for e in process] == seeds
    assert serial == process


@pytest.mark.slow
def test_a_resumed_dynamic_run_continues_after_the_last_task_any_worker_finished(
    tmp_path: Path,
) -> None:
    """Episodes of a dynamic env end out of step across workers, so the finished tasks need
    not be the first ``done`` indices: the checkpoint keeps the next unused index, and a
    resumed run starts there (a killed run resumes the same way)."""
    out = tmp_path / "ppo"
    settings = {"n_steps": 16}
    common = {"env_kwargs": SHORT, "hyperparameters": settings, "workers": 2, "progress": False}
    train_sb3("ppo", TOY, out, episodes=40, log_every=8, **common)
    indices = {s: n for n in range(400) for s in episode_seeds(0, n, 1)}
    first = [indices[s] for row in log_of(out) for s in row["seeds"]]
    checkpoint = read_checkpoint(out / "checkpoint.json")
    assert checkpoint["state"]["next_index"] == max(first) + 1
    count = checkpoint["state"]["normalization"]["count"]  # observations seen so far
    # as if worker 0 had run ahead: tasks up to index 49 are taken
    checkpoint["state"]["next_index"] = 50
    write_checkpoint(out / "checkpoint.json", checkpoint)
    train_sb3("ppo", TOY, out, episodes=60, log_every=8, resume=True, **common)
    log = log_of(out)
    later = [indices[s] for row in log for s in row["seeds"]][len(first) :]
    assert log[-1]["episodes_total"] == 60 and len(later) == 20
    assert min(later) >= 50 and len(set(first + later)) == 60
    # the observation statistics went on from the checkpoint's (20 more episodes, not 20 alone)
    after = read_checkpoint(out / "checkpoint.json")["state"]["normalization"]["count"]
    assert after > count


@pytest.mark.slow
def test_a_contextual_policy_file_picks_theta_from_the_starting_features_in_the_wrapper(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bandit-ppo"
    train_sb3(
        "ppo",
        "StepSizeControl-Toy-v0",
        out,
        episodes=16,
        env_kwargs={"steps": [20, 30]},
        progress=False,
    )
    saved = lrgym.load_controller(out / "controller.json")
    assert isinstance(saved, ContextualPolicyFile)
    bandit = gym.make("StepSizeControl-Toy-v0", steps=[20, 30])
    episodes = evaluate_controller(saved, TOY, episodes=2, seed=30, keep_curves=True)
    for episode in episodes:
        start, _ = bandit.reset(seed=episode.seed)  # the same starting features
        controller = lrgym.LogLinearController(saved.theta_for(start))
        env = ControllerWrapper(gym.make(TOY, steps=[20, 30]), controller)
        env.reset(seed=episode.seed)
        while True:
            _, _, terminated, _, info = env.step(None)
            if terminated:
                break
        # exact: the same computation on the same kernels. evaluate_controller's pool runs it
        # with one torch thread, as this process does (tests/conftest.py); with more threads
        # here the features' float sums split differently (about 1e-8 apart)
        assert episode.curves == info["curves"]
