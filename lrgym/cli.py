"""The ``lrgym`` command line (thin: parse, call, print).

``lrgym run --env ID --episodes N`` plays N episodes of an environment with one controller
(a fixed action, or a constant learning rate) and prints a table of the results, e.g.::

    lrgym run --env StepSizeControl-Digits-v0 --episodes 3 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from lrgym.errors import LrgymError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrgym", description="Learning step-size controllers.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="play episodes of a StepSizeControl env and print a table")
    run.add_argument("--env", default="StepSizeControl-Digits-v0", help="registered env id")
    run.add_argument("--episodes", type=int, default=3, help="number of episodes (tasks)")
    run.add_argument("--seed", type=int, default=0, help="seed of the first reset")
    run.add_argument(
        "--action",
        type=float,
        nargs=5,
        default=None,
        metavar="A",
        help="normalised action in [-1, 1]^5 (default: all zeros)",
    )
    run.add_argument(
        "--theta",
        type=float,
        nargs=5,
        default=None,
        metavar="T",
        help="raw controller parameters instead of --action",
    )
    run.add_argument("--env-kwargs", default="{}", help="JSON object of extra env arguments")
    run.add_argument("--data-root", default=None, help="dataset root (see the README)")
    run.add_argument("--json", action="store_true", help="print one JSON object per episode")
    return parser


def _run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import lrgym  # noqa: F401 - registers the environments

    kwargs: dict[str, Any] = json.loads(args.env_kwargs)
    if args.data_root is not None:
        kwargs["data_root"] = args.data_root
    env = gym.make(args.env, **kwargs)
    base = env.unwrapped
    if args.theta is not None:
        action = base.theta_to_action(args.theta)  # type: ignore[attr-defined]
    else:
        action = np.asarray(args.action or [0.0] * 5, dtype=np.float32)
    header = (
        f"{'ep':>3} {'eta0':>9} {'steps':>5} {'reward':>8} {'train loss':>10} "
        f"{'test acc':>8} {'diverged':>8} {'seconds':>7}"
    )
    if not args.json:
        print(f"{args.env}: theta = {np.round(base.action_to_theta(action), 4).tolist()}")  # type: ignore[attr-defined]
        print(header)
    rewards = []
    for episode in range(args.episodes):
        _, reset_info = env.reset(seed=args.seed if episode == 0 else None)
        _, reward, _, _, info = env.step(action)
        rewards.append(float(reward))
        task = reset_info["task"]
        seconds = base.last_result.wall_time  # type: ignore[attr-defined]
        if args.json:
            row = {k: info[k] for k in ("reward", "diverged", "final_train_loss", "test_accuracy")}
            print(json.dumps({"episode": episode, "task": task, "seconds": seconds, **row}))
            continue
        print(
            f"{episode:>3} {task['eta0']:>9.2e} {task['steps']:>5} {float(reward):>8.4f} "
            f"{info['final_train_loss']:>10.4f} {info['test_accuracy']:>8.4f} "
            f"{info['diverged']!s:>8} {seconds:>7.2f}"
        )
    if not args.json:
        print(f"mean reward {np.mean(rewards):.4f} over {args.episodes} episodes")
    env.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lrgym`` command."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (LrgymError, json.JSONDecodeError) as exc:
        print(f"lrgym: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
