"""Whole default episodes of the new families' ids against StepSizeControl-MNIST-v0's, side by
side in one run (one torch thread): episode k of every id runs before episode k + 1 of any, so
machine noise hits them alike. Prints each id's median seconds per episode (reset + step with
the all-zeros action, i.e. the default controller theta_center) and its ratio to MNIST's.

    python perf/family_episodes.py --data-root ../shared/data --episodes 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

import lrgym  # noqa: F401 - registers the environments

IDS = (
    "StepSizeControl-MNIST-v0",
    "StepSizeControl-ResNet-MNIST-v0",
    "StepSizeControl-Transformer-v0",
    "StepSizeControl-MNIST1D-v0",
    "StepSizeControl-MNIST-AdamW-v0",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--episodes", type=int, default=5, help="episodes per id (seeds 0..n-1)")
    parser.add_argument("--ids", nargs="+", default=list(IDS), help="ids; the first is the unit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    envs = {e: gym.make(e, data_root=args.data_root, download=False) for e in args.ids}
    times: dict[str, list[float]] = {e: [] for e in args.ids}
    steps: dict[str, list[int]] = {e: [] for e in args.ids}
    for seed in range(args.episodes):
        for env_id, env in envs.items():
            started = time.perf_counter()
            _, info = env.reset(seed=seed)
            env.step(np.zeros(env.action_space.shape, dtype=np.float32))
            times[env_id].append(time.perf_counter() - started)
            steps[env_id].append(info["task"]["steps"])
            print(f"  {env_id} seed {seed}: {times[env_id][-1]:.1f} s, {steps[env_id][-1]} steps")
    unit = statistics.median(times[args.ids[0]])
    print(
        f"\nmedian seconds per default episode ({args.episodes} episodes each), ratio to the first"
    )
    for env_id in args.ids:
        median = statistics.median(times[env_id])
        per_step = statistics.median(
            t / s for t, s in zip(times[env_id], steps[env_id], strict=True)
        )
        print(
            f"  {env_id:<36} {median:7.1f} s  x{median / unit:.2f}  ({per_step * 1e3:.1f} ms/step)"
        )


if __name__ == "__main__":
    main()
