"""The learners' objective options (:mod:`lrgym_agents.objective`): the scores against brute force,
and each option changing what a learner learns on a toy problem whose answer is known."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest

from lrgym.errors import InvalidConfigError
from lrgym_agents.collect import Episode
from lrgym_agents.learners.asktell import make_learner
from lrgym_agents.loop import train
from lrgym_agents.objective import (
    Objective,
    candidate_scores,
    centred_ranks,
    objective_from,
    perturbation_factors,
)
from lrgym_agents.rundir import CheckpointError


def test_centred_ranks_match_a_brute_force_count_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 4, size=7).astype(float)  # many ties
        # brute force: rank = number below + half the others equal
        ranks = np.array([(x < v).sum() + ((x == v).sum() - 1) / 2 for v in x])
        np.testing.assert_allclose(centred_ranks(x), ranks / (x.size - 1) - 0.5, atol=1e-15)
    np.testing.assert_array_equal(centred_ranks(np.array([3.0])), [0.0])


def test_cvar_score_is_the_mean_of_the_worst_share_of_tasks():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(6, 8))
    for alpha in (0.1, 0.25, 0.5, 1.0):
        got = candidate_scores(rewards, Objective(tasks=8, risk="cvar", alpha=alpha))
        k = math.ceil(alpha * 8)
        for i in range(6):  # brute force: every subset of k tasks, the lowest mean
            lowest = min(np.mean(rewards[i, list(c)]) for c in itertools.combinations(range(8), k))
            assert got[i] == pytest.approx(lowest, abs=1e-12)


def test_rank_scores_ignore_each_tasks_reward_scale():
    rng = np.random.default_rng(2)
    rewards = rng.normal(size=(5, 3))
    scaled = rewards * np.array([1.0, 1e3, 1e-3]) + np.array([0.0, 50.0, -7.0])
    goal = Objective(tasks=3, comparable="rank")
    np.testing.assert_array_equal(candidate_scores(rewards, goal), candidate_scores(scaled, goal))
    # ...while the plain mean follows the large-scale task
    plain = candidate_scores(scaled, Objective(tasks=3))
    assert np.argmax(plain) == np.argmax(scaled[:, 1])


def test_perturbation_factors_are_reproducible_and_within_their_bounds():
    a = perturbation_factors(3, 7, 40, 5, 0.2)
    np.testing.assert_array_equal(a, perturbation_factors(3, 7, 40, 5, 0.2))
    assert a.min() >= 0.8 and a.max() <= 1.2 and a.std() > 0.05
    assert not np.array_equal(a, perturbation_factors(3, 8, 40, 5, 0.2))


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"tasks": 0}, "tasks=0"),
        ({"comparable": "zscore"}, "comparable='zscore'"),
        ({"risk": "cvar"}, "tasks=1"),
        ({"tasks": 4, "risk": "cvar", "alpha": 0.0}, "alpha=0.0"),
        ({"perturb": 1.5}, "perturb=1.5"),
        ({"risk_level": 0.1}, "risk_level"),
    ],
)
def test_bad_objective_settings_are_refused_by_name(settings, names):
    with pytest.raises(InvalidConfigError, match=names):
        objective_from(settings)


class _KnownRewards:
    """A collector whose episode reward is a known function of ``(action, seed)``: stands in
    for training runs so that a learner's answer can be checked exactly."""

    def __init__(self, reward):
        self.reward = reward
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32)
        self.actions: list[np.ndarray] = []
        self.seeds: list[int] = []

    def run(self, actions, seeds, progress=None):
        self.actions.extend(np.asarray(actions, dtype=np.float64))
        self.seeds.extend(seeds)
        return [
            Episode(int(s), float(self.reward(np.clip(a, -1, 1), int(s))), False, 1.0, 1.0, 0.0, 1)
            for a, s in zip(actions, seeds, strict=True)
        ]

    def close(self):
        pass


def _train(out, episodes, objective, reward=None, algorithm="cmaes", config=None, **options):
    """``train`` on the Toy env's action box with rewards from ``_KnownRewards(reward)``."""
    collector = _KnownRewards(reward)
    run = train(
        algorithm,
        "StepSizeControl-Toy-v0",
        out,
        episodes=episodes,
        config=config or {"samples": 8},
        seed=0,
        objective=objective,
        collector=collector,
        progress=False,
        **options,
    )
    return run, collector


def _learn(tmp_path, name, reward, algorithm="cmaes", episodes=1280, config=None, objective=None):
    run, collector = _train(tmp_path / name, episodes, objective, reward, algorithm, config)
    return run.learner.recommendation()[0], collector


def _far_from_zero(a):
    return float(np.sum(np.asarray(a[1:4]) ** 2))


def test_rank_rewards_stop_a_large_scale_family_from_dominating(tmp_path):
    # even seeds: a family with rewards 100x larger, best at x0 = 0.5; odd: best at x0 = -0.5.
    # The mean over tasks is best at x0 = (100 * 0.5 - 0.5) / 101 = 0.49; with ranks every task
    # weighs the same, and by symmetry the answer is x0 = 0.
    def reward(a, seed):
        scale, centre = (100.0, 0.5) if seed % 2 == 0 else (1.0, -0.5)
        return -scale * ((a[0] - centre) ** 2 + _far_from_zero(a))

    plain, _ = _learn(tmp_path, "plain", reward, objective={"tasks": 4})
    ranked, _ = _learn(tmp_path, "ranked", reward, objective={"tasks": 4, "comparable": "rank"})
    assert plain[0] == pytest.approx(0.49, abs=0.05)
    assert abs(ranked[0]) < 0.15


def test_cvar_learns_for_the_worst_tasks_not_the_average(tmp_path):
    # three tasks in four are best at x0 = 0.6, one in four at -0.6: the mean over tasks is best
    # at 0.75 * 0.6 - 0.25 * 0.6 = 0.3 (each iteration's 32 tasks draw the share anew, so the
    # learned mean scatters by about 0.05 around it); the worst quarter of the tasks is best
    # at 0, where the two kinds of task are equally far.
    def reward(a, seed):
        centre = -0.6 if seed % 4 == 0 else 0.6
        return -((a[0] - centre) ** 2) - _far_from_zero(a)

    episodes = 8 * 32 * 30
    mean, _ = _learn(tmp_path, "mean", reward, episodes=episodes, objective={"tasks": 32})
    cvar, _ = _learn(
        tmp_path, "cvar", reward, episodes=episodes, objective={"tasks": 32, "risk": "cvar"}
    )
    assert mean[0] == pytest.approx(0.3, abs=0.1)
    assert abs(cvar[0]) < 0.05


def test_theta_perturbations_move_the_learner_from_a_sharp_to_a_broad_optimum(tmp_path):
    # a sharp peak (height 1, width 0.03) at theta0 = 0.6 and a broad one (height 0.6) at -0.5.
    # Unperturbed the sharp peak wins; with theta x [0.8, 1.2] the sharp peak's expected reward
    # is about 0.22 and the broad one's about 0.59. Random search re-evaluates its finalists 15
    # times, so that a lucky perturbation cannot make a finalist of the sharp peak win.
    def reward(a, seed):
        x = a[0]  # the Toy env's theta0 is the action's first entry (centre 0, scale 1)
        return math.exp(-(((x - 0.6) / 0.03) ** 2)) + 0.6 * math.exp(-(((x + 0.5) / 0.4) ** 2))

    config = {"samples": 32, "reevaluations": 15, "finalists": 4}
    sharp, _ = _learn(tmp_path, "sharp", reward, "random", 1280, config)
    broad, collector = _learn(
        tmp_path, "broad", reward, "random", 1280, config, objective={"perturb": 0.2}
    )
    assert sharp[0] == pytest.approx(0.6, abs=0.01)
    assert broad[0] == pytest.approx(-0.5, abs=0.1)
    # the episodes ran perturbed raw parameters: each within x[0.8, 1.2] of its candidate's
    env = gym.make("StepSizeControl-Toy-v0").unwrapped
    asked = make_learner("random", 5, config, seed=0).ask()  # the first batch, all new
    theta = np.array([env.action_to_theta(a) for a in asked])
    ran = np.array([env.action_to_theta(a) for a in collector.actions[:32]])
    low, high = np.minimum(0.8 * theta, 1.2 * theta), np.maximum(0.8 * theta, 1.2 * theta)
    assert ((ran >= low - 1e-5) & (ran <= high + 1e-5)).all()
    assert np.abs(ran - theta).max() > 0.1


def test_shared_tasks_run_every_candidate_on_the_same_tasks(tmp_path):
    _, collector = _learn(
        tmp_path, "shared", lambda a, s: -float(a @ a), episodes=96, objective={"tasks": 4}
    )
    seeds = np.array(collector.seeds).reshape(3, 8, 4)  # iterations x candidates x tasks
    assert (seeds == seeds[:, :1, :]).all()  # every candidate the same 4 tasks
    assert len(set(seeds[:, 0, :].ravel())) == 12  # fresh tasks every iteration
    actions = np.array(collector.actions).reshape(3, 8, 4, 5)
    assert (actions == actions[:, :, :1, :]).all()  # unperturbed: one action per candidate


def test_episodes_must_fill_whole_iterations_of_candidates_times_tasks(tmp_path):
    with pytest.raises(InvalidConfigError, match=r"samples=8 x tasks=4"):
        _train(tmp_path / "x", 40, {"tasks": 4})
    with pytest.raises(InvalidConfigError, match="same_task"):
        _train(tmp_path / "y", 16, {"comparable": "rank"})


def test_a_resumed_run_keeps_its_objective_and_ends_where_a_whole_run_ends(tmp_path):
    goal = {"tasks": 2, "comparable": "rank", "risk": "cvar", "alpha": 0.5, "perturb": 0.1}

    def reward(a, seed):
        return -float((a[0] - (seed % 3) / 3) ** 2 + a[1:] @ a[1:])

    whole, _ = _learn(tmp_path, "whole", reward, episodes=160, objective=goal)
    _learn(tmp_path, "part", reward, episodes=80, objective=goal)
    resumed, _ = _train(tmp_path / "part", 160, goal, reward, resume=True)
    np.testing.assert_array_equal(resumed.learner.recommendation()[0], whole)
    with pytest.raises(CheckpointError, match=r"objective=.*perturb.: 0.2"):
        _train(tmp_path / "part", 160, {**goal, "perturb": 0.2}, reward, resume=True)
