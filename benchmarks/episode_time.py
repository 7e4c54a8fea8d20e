"""Wall time of whole episodes (reset + step) of a registered env with its default budget.

    python benchmarks/episode_time.py --data-root ../shared/data [--env ID] [--episodes N]

Prints each episode's task size and time, then the median and the spread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

import lrgym  # noqa: F401 - registers the environments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="StepSizeControl-MNIST-v0")
    parser.add_argument("--episodes", type=int, default=7)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--action", type=float, nargs=5, default=[0.0] * 5)
    args = parser.parse_args()

    kwargs = {} if args.data_root is None else {"data_root": args.data_root}
    env = gym.make(args.env, **kwargs)
    action = np.asarray(args.action, dtype=np.float32)
    print(f"{args.env}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    times = []
    for episode in range(args.episodes):
        start = time.perf_counter()
        _, info = env.reset(seed=episode)
        _, reward, *_ = env.step(action)
        seconds = time.perf_counter() - start
        times.append(seconds)
        task = info["task"]
        print(
            f"  seed {episode}: {task['steps']:>4} steps, widths {task['widths']}, "
            f"subset {task['subset_fraction']:.2f}, reward {float(reward):.3f}, {seconds:.2f} s"
        )
    print(
        f"median {statistics.median(times):.2f} s per episode "
        f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} episodes)"
    )


if __name__ == "__main__":
    main()
