"""Best achievable mean reward of ``StepSizeControl-Toy-v0`` on a fixed set of tasks.

    python studies/toy_optimum.py [--tasks K] [--iterations N] [--seed S]

The objective is the mean reward over the tasks of reset seeds ``0..K-1``; an episode's result
depends only on ``(seed, action)``, so the objective is deterministic and the best value found
is achieved exactly by the printed action. The search has two stages:

1. a grid over the bias component ``action[4]`` with the other four at 0 (constant learning
   rates), coarse over ``[-1, 1]`` then fine around the best point;
2. a REPS refinement over all five components, started at the best constant action, that
   keeps the best action ever evaluated.

Prints the default action's (zeros) mean reward, the optimum estimate and the action reaching
it.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import lrgym  # noqa: F401 - registers the environments
from lrgym_agents.learners.reps import REPS, REPSConfig

ENV_ID = "StepSizeControl-Toy-v0"


class FixedTasks:
    """Mean reward of an action over the tasks of reset seeds ``0..tasks-1``."""

    def __init__(self, tasks: int) -> None:
        self.env = gym.make(ENV_ID)
        self.seeds = list(range(tasks))
        self.evaluations = 0

    def __call__(self, action: np.ndarray) -> float:
        """Mean reward of ``action`` (clipped to the action box) over the fixed tasks."""
        clipped = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        total = 0.0
        for seed in self.seeds:
            self.env.reset(seed=seed)
            _, reward, *_ = self.env.step(clipped)
            total += float(reward)
        self.evaluations += 1
        return total / len(self.seeds)


def constant_rate(bias: float) -> np.ndarray:
    """The action of a constant learning rate: bias component ``bias``, the rest 0."""
    action = np.zeros(5)
    action[4] = bias
    return action


def grid_search(objective: FixedTasks, coarse: float, fine: float) -> tuple[float, np.ndarray]:
    """Best constant-rate action: a ``coarse`` grid over [-1, 1], then a ``fine`` one."""
    best_value, best_bias = -np.inf, 0.0
    for bias in np.arange(-1.0, 1.0 + coarse / 2, coarse):
        value = objective(constant_rate(bias))
        if value > best_value:
            best_value, best_bias = value, float(bias)
    centre = best_bias
    for bias in np.arange(centre - coarse, centre + coarse + fine / 2, fine):
        if -1.0 <= bias <= 1.0:
            value = objective(constant_rate(bias))
            if value > best_value:
                best_value, best_bias = value, float(bias)
    return best_value, constant_rate(best_bias)


def reps_refine(
    objective: FixedTasks, start: np.ndarray, start_value: float, iterations: int, seed: int
) -> tuple[float, np.ndarray]:
    """REPS over all five components from ``start``; the best action ever evaluated."""
    config = REPSConfig(samples=16, reuse=2, covariance_mixing=0.5, min_std=0.005, init_std=0.15)
    agent = REPS(5, config, seed=seed, init_mean=start)
    best_value, best_action = start_value, start.copy()
    for iteration in range(iterations):
        actions = np.clip(agent.ask(), -1.0, 1.0)
        rewards = np.array([objective(a) for a in actions])
        agent.tell(actions, rewards)
        mean_value = objective(agent.mean)
        for value, action in [*zip(rewards, actions, strict=True), (mean_value, agent.mean)]:
            if value > best_value:
                best_value, best_action = float(value), np.clip(action, -1.0, 1.0)
        print(
            f"  iteration {iteration + 1:>3}: batch mean {rewards.mean():.4f}, "
            f"mean action {mean_value:.4f}, best {best_value:.4f}",
            flush=True,
        )
    return best_value, best_action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8, help="reset seeds 0..K-1")
    parser.add_argument("--iterations", type=int, default=30, help="REPS refinement iterations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the REPS refinement")
    parser.add_argument("--coarse", type=float, default=0.02)
    parser.add_argument("--fine", type=float, default=0.0025)
    args = parser.parse_args()

    start = time.perf_counter()
    objective = FixedTasks(args.tasks)
    default_value = objective(np.zeros(5))
    print(f"{ENV_ID}, tasks = reset seeds 0..{args.tasks - 1}")
    print(f"default action (zeros): mean reward {default_value:.4f}")

    grid_value, grid_action = grid_search(objective, args.coarse, args.fine)
    print(f"best constant rate: action[4] = {grid_action[4]:.4f}, mean reward {grid_value:.4f}")

    best_value, best_action = reps_refine(
        objective, grid_action, grid_value, args.iterations, args.seed
    )
    seconds = time.perf_counter() - start
    print(f"optimum estimate: mean reward {best_value:.4f}")
    print(f"action: {np.array2string(best_action, precision=4, separator=', ')}")
    print(f"({objective.evaluations} evaluations of {args.tasks} episodes, {seconds:.0f} s)")


if __name__ == "__main__":
    main()
