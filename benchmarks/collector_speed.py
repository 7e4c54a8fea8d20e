"""Episodes per second of the serial and vector collectors, measured side by side in one run.

Runs the same batch of episodes (same seeds, same actions) with ``SerialCollector`` and with
``VectorCollector`` (``--workers`` processes), alternating round by round so that machine noise
hits both alike, checks that both give identical rewards, and prints each backend's median
seconds per batch and the speed-up of the vector backend. Collector start-up (process spawn,
imports, data loading) is excluded; it is paid once per run.

    python benchmarks/collector_speed.py --env StepSizeControl-Digits-v0 --episodes 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

import lrgym  # noqa: F401 - registers the environments
from agents.collect import SerialCollector, VectorCollector, episode_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="StepSizeControl-Digits-v0")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per batch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of extra env arguments")
    args = parser.parse_args()
    kwargs = json.loads(args.env_kwargs)
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (args.episodes, 5)).astype(np.float32)
    print(
        f"{args.env}: {args.episodes} episodes per batch, {args.rounds} rounds, vector with "
        f"{args.workers} workers; torch {torch.__version__}, {torch.get_num_threads()} threads "
        "in this process (1 per vector worker)"
    )
    times: dict[str, list[float]] = {"serial": [], "vector": []}
    with (
        SerialCollector(args.env, kwargs) as serial,
        VectorCollector(args.env, kwargs, workers=args.workers) as vector,
    ):
        for r in range(args.rounds):
            seeds = episode_seeds(0, r, args.episodes)
            rewards = {}
            for name, collector in (("serial", serial), ("vector", vector)):
                start = time.perf_counter()
                rewards[name] = [e.reward for e in collector.run(actions, seeds)]
                times[name].append(time.perf_counter() - start)
            same = rewards["serial"] == rewards["vector"]
            print(
                f"round {r}: serial {times['serial'][-1]:.1f} s, vector "
                f"{times['vector'][-1]:.1f} s, identical rewards: {same}"
            )
            if not same:
                raise SystemExit("the backends disagree")
    serial_s, vector_s = statistics.median(times["serial"]), statistics.median(times["vector"])
    print(
        f"median per batch: serial {serial_s:.1f} s, vector {vector_s:.1f} s; vector is "
        f"x{serial_s / vector_s:.2f} faster ({args.episodes / vector_s:.2f} vs "
        f"{args.episodes / serial_s:.2f} episodes/s)"
    )


if __name__ == "__main__":
    main()
