"""Resident memory of processes that run episode after episode, with and without lrgym's
bounds on the caches of PyTorch's CPU convolutions (``lrgym.native_caches``), side by side.

Starts one worker process per env and setting: the conv env (``--env``, default
StepSizeControl-Digits-v0) and ``--toy-env`` (StepSizeControl-Toy-v0, an MLP: no convolution),
each
  * bounded: as every process that imports lrgym runs (each cache holds
    ``lrgym.native_caches.CACHE_CAPACITY`` entries), and
  * default: with oneDNN's and ideep's default capacities (1024 entries each), as before.
Every worker runs the same episodes (episode k: ``reset(seed=k)``, then a uniformly random
action drawn from seed k), one worker at a time in an order rotated every episode, so that
machine noise hits them alike. One torch thread each.

Output: every ``--every`` episodes one line per env with each worker's resident memory (VmRSS
after the episode, MB). At the end, per worker: the growth of its resident memory from episode
``--since`` to the last and its median seconds per episode; per env, the median over episodes
of the paired ratio bounded / default of the same episode's time (1 within noise: the bounds
cost nothing; above 1: they cost time). The first ``--warmup`` episodes are left out of the
times (process start, first kernels).

    python perf/memory_growth.py --data-root ../shared/data --episodes 2000
    python perf/memory_growth.py --settings default --episodes 600   # the growth alone
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np

import lrgym  # noqa: F401 - registers the environments
from lrgym_agents.pools import ProcessPool

SETTINGS: dict[str, dict[str, str]] = {
    "bounded": {},  # what importing lrgym sets
    "default": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1024"},
}
"""Cache capacities (environment variables) each setting's workers run with."""


def resident_mb() -> float:
    """This process's resident memory (VmRSS), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class EpisodeRunner:
    """A worker's state: one env, built after the setting's capacities are in place (they are
    read at the process's first convolution)."""

    def __init__(self, env_id: str, kwargs: dict[str, Any], capacities: dict[str, str]) -> None:
        os.environ.update(capacities)
        self.env = gym.make(env_id, **kwargs)

    def close(self) -> None:
        self.env.close()


def run_episode(runner: EpisodeRunner, episode: int) -> tuple[float, float]:
    """Episode ``episode``: seconds it took and the worker's resident memory (MB) after it."""
    action = np.random.default_rng(episode).uniform(-1, 1, 5).astype(np.float32)
    start = time.perf_counter()
    runner.env.reset(seed=episode)
    runner.env.step(action)
    return time.perf_counter() - start, resident_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="StepSizeControl-Digits-v0", help="the conv env")
    parser.add_argument("--toy-env", default="StepSizeControl-Toy-v0", help="'' to leave out")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100, help="episodes between RSS lines")
    parser.add_argument("--since", type=int, default=500, help="growth from this episode on")
    parser.add_argument("--warmup", type=int, default=10, help="episodes left out of the times")
    parser.add_argument("--settings", default="bounded,default", help="comma-separated")
    args = parser.parse_args()

    kwargs = {} if args.data_root is None else {"data_root": args.data_root}
    envs = [env for env in (args.env, args.toy_env) if env]
    settings = args.settings.split(",")
    workers = {
        (env, setting): ProcessPool(EpisodeRunner, (env, kwargs, SETTINGS[setting]), workers=1)
        for env in envs
        for setting in settings
    }
    names = list(workers)
    times: dict[tuple[str, str], list[float]] = {name: [] for name in names}
    rss: dict[tuple[str, str], dict[int, float]] = {name: {} for name in names}
    print(f"{args.episodes} episodes, settings {settings}; resident memory (MB):", flush=True)
    try:
        for k in range(1, args.episodes + 1):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                seconds, rss[name][k] = workers[name].map(run_episode, [k])[0]
                times[name].append(seconds)
            if k % args.every == 0 or k == args.episodes:
                for env in envs:
                    line = ", ".join(f"{s} {rss[env, s][k]:.0f}" for s in settings)
                    print(f"  episode {k:>5} {env}: {line}", flush=True)
    finally:
        for pool in workers.values():
            pool.close()

    last, since = args.episodes, min(args.since, args.episodes)
    print(f"\ngrowth from episode {since} to {last}, median seconds per episode:")
    for env, setting in names:
        growth = rss[env, setting][last] - rss[env, setting][since]
        median = statistics.median(times[env, setting][args.warmup :])
        print(f"  {env} {setting}: {growth:+.1f} MB, {median:.3f} s")
    if {"bounded", "default"} <= set(settings):
        for env in envs:
            pairs = zip(times[env, "bounded"], times[env, "default"], strict=True)
            ratios = [b / d for b, d in list(pairs)[args.warmup :]]
            print(
                f"{env}: time bounded / default, median over {len(ratios)} episodes "
                f"x{statistics.median(ratios):.3f} (quartiles "
                f"{np.quantile(ratios, 0.25):.3f}-{np.quantile(ratios, 0.75):.3f})"
            )


if __name__ == "__main__":
    main()
