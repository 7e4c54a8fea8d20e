"""What a per-step env adds to the training it runs, measured side by side in one run.

For each task (``reset(seed=s)`` of the dynamic id), two runs of the same optimiser steps:

  * ``train``: :func:`lrgym.train` at a constant learning rate, as the bandit env runs a task
    (``E`` at its 10 evaluation points, the test metrics at the end);
  * ``dynamic``: one episode of the dynamic env, ``reset(seed=s)`` then ``step(action)`` until
    it ends, the action setting that same rate: what the env adds is the starting features
    (one step on a copy of the run at reset), ``E`` at every stretch's end, the observations,
    ``info`` and Python around each action.

The two run bit-identical steps (a constant action is a constant learning rate; the test
checks it). Rounds alternate which runs first. Prints, per ``control_interval``, the median
time of each and the median of the per-task ratios ``dynamic / train``; the target is at most
1.10 at the id's default interval.

    python perf/dynamic_overhead.py --env StepSizeControl-Dynamic-Digits-v0
    python perf/dynamic_overhead.py --env StepSizeControl-Dynamic-MNIST-v0 \\
        --data-root ../shared/data --tasks 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import lrgym
from lrgym.registration import DYNAMIC_ENV_KWARGS


def time_train(env: Any, seed: int, lr: float) -> float:
    base = env.unwrapped
    base.reset(seed=seed)
    task = base.task
    start = time.perf_counter()
    lrgym.train(
        task,
        lrgym.ConstantController(lr),
        base._data,
        features=base.features,
        eval_points=10,
        eval_size=base.eval_size,
        test_size=base.test_size,
        device=base.device,
        memory_format=base.memory_format,
    )
    return time.perf_counter() - start


def time_episode(env: Any, seed: int, action: np.ndarray) -> float:
    start = time.perf_counter()
    env.reset(seed=seed)
    while not env.step(action)[2]:
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="StepSizeControl-Dynamic-Digits-v0")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--tasks", type=int, default=8, help="tasks (seeds 0..tasks-1)")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of each pair")
    parser.add_argument(
        "--intervals", type=int, nargs="+", default=None, help="default: 5, 10, 20, the id's"
    )
    parser.add_argument("--lr", type=float, default=0.03, help="the constant learning rate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    default = DYNAMIC_ENV_KWARGS[args.env]["control_interval"]
    intervals = args.intervals or sorted({5, 10, 20, default})
    extra = {} if args.data_root is None else {"data_root": args.data_root}
    print(f"{args.env}: {args.tasks} tasks x {args.rounds} rounds, lr {args.lr}, 1 thread")
    print(f"{'interval':>8} {'train s':>8} {'dynamic s':>9} {'ratio':>6}  per-task ratios")
    for interval in intervals:
        env = gym.make(args.env, control_interval=interval, **extra)
        action = env.unwrapped.lr_to_action(args.lr)
        env.reset(seed=0)  # warm-up: data, first model build
        time_train(env, 0, args.lr)
        train_times: list[float] = []
        episode_times: list[float] = []
        ratios: list[float] = []
        for seed in range(args.tasks):
            pair: dict[str, list[float]] = {"train": [], "dynamic": []}
            for r in range(args.rounds):
                order = ("train", "dynamic") if (seed + r) % 2 == 0 else ("dynamic", "train")
                for name in order:
                    if name == "train":
                        pair[name].append(time_train(env, seed, args.lr))
                    else:
                        pair[name].append(time_episode(env, seed, action))
            t, d = statistics.median(pair["train"]), statistics.median(pair["dynamic"])
            train_times.append(t)
            episode_times.append(d)
            ratios.append(d / t)
        mark = " (default)" if interval == default else ""
        print(
            f"{interval:>8} {statistics.median(train_times):>8.3f} "
            f"{statistics.median(episode_times):>9.3f} {statistics.median(ratios):>6.3f}  "
            f"{' '.join(f'{q:.3f}' for q in ratios)}{mark}"
        )
        env.close()


if __name__ == "__main__":
    main()
