"""Episodes per second of the serial and process collectors, measured side by side in one run.

For each env, runs the same batches of episodes (same seeds, same actions; one task per episode,
or with ``--same-task`` one task per batch, as ``lrgym train reps --same-task`` runs them) with
a serial ``Collector`` (one torch thread in this process) and with a process one
(``--workers`` processes of one torch thread each), alternating round by round so that machine
noise hits both alike. It checks that both give identical rewards and prints each backend's
median seconds per batch and the speed-up of the process backend. Collector start-up (process
spawn, imports, data loading) is excluded; it is paid once per run.

    python perf/collector_speed.py --data-root ../shared/data
    python perf/collector_speed.py --env StepSizeControl-Digits-v0 --episodes 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import torch

import lrgym  # noqa: F401 - registers the environments
from lrgym_agents.collect import Collector, episode_seeds


def compare(
    env_id: str,
    kwargs: dict[str, Any],
    episodes: int,
    workers: int,
    rounds: int,
    same_task: bool = False,
) -> float:
    """Print the rounds and the median over rounds of the speed-up of the process backend
    (serial time / process time of the same batch); return it."""
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (episodes, 5)).astype(np.float32)
    tasks = "one task per batch" if same_task else "one task per episode"
    print(f"{env_id}: {episodes} episodes per batch ({tasks}), {rounds} rounds, {workers} workers")
    times: dict[str, list[float]] = {"serial": [], "process": []}
    with (
        Collector(env_id, kwargs, backend="serial") as serial,
        Collector(env_id, kwargs, backend="process", workers=workers) as parallel,
    ):
        for r in range(rounds):
            seeds = (
                episode_seeds(0, r, 1) * episodes if same_task else episode_seeds(0, r, episodes)
            )
            rewards = {}
            for name, collector in (("serial", serial), ("process", parallel)):
                start = time.perf_counter()
                rewards[name] = [e.reward for e in collector.run(actions, seeds)]
                times[name].append(time.perf_counter() - start)
            same = rewards["serial"] == rewards["process"]
            print(
                f"  round {r}: serial {times['serial'][-1]:.1f} s, process "
                f"{times['process'][-1]:.1f} s, identical rewards: {same}"
            )
            if not same:
                raise SystemExit("the backends disagree")
    serial_s, process_s = statistics.median(times["serial"]), statistics.median(times["process"])
    ratios = [s / p for s, p in zip(times["serial"], times["process"], strict=True)]
    print(
        f"  process runs x{statistics.median(ratios):.2f} the episodes per second of serial "
        f"(median over rounds of the same batch; range {min(ratios):.2f}-{max(ratios):.2f}); "
        f"median batch: serial {serial_s:.1f} s, process {process_s:.1f} s"
    )
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--env",
        action="append",
        help="env id (repeatable); default: StepSizeControl-Digits-v0 and StepSizeControl-MNIST-v0",
    )
    parser.add_argument("--episodes", type=int, default=32, help="episodes per batch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of extra env arguments")
    parser.add_argument(
        "--same-task",
        action="store_true",
        help="all episodes of a batch on one task, as `lrgym train reps --same-task` runs them",
    )
    args = parser.parse_args()
    envs = args.env or ["StepSizeControl-Digits-v0", "StepSizeControl-MNIST-v0"]
    kwargs = json.loads(args.env_kwargs)
    if args.data_root is not None:
        kwargs["data_root"] = args.data_root
    print(f"torch {torch.__version__}; every episode runs with one torch thread")
    speedups = {
        env_id: compare(env_id, kwargs, args.episodes, args.workers, args.rounds, args.same_task)
        for env_id in envs
    }
    print("summary: " + ", ".join(f"{e} x{s:.2f}" for e, s in speedups.items()))


if __name__ == "__main__":
    main()
