"""The ``lrgym`` command line (thin: parse, call, print).

* ``lrgym run --env ID --episodes N`` plays N episodes of an environment with one controller
  (a fixed action, or a constant learning rate) and prints a table of the results;
* ``lrgym leaderboard CSV`` writes the leaderboard (and with ``--figures`` the figures) of a
  benchmark's ``results.csv``;
* ``lrgym train ALGORITHM ...``, ``lrgym evaluate CONTROLLER ...`` and ``lrgym benchmark ...``
  come from the learners (the ``lrgym_agents`` package, the repository's ``agents/`` folder),
  found through the ``lrgym.commands`` entry point group: each entry point is a function that
  adds its subcommands to the parser and returns their handlers. This module never imports
  ``lrgym_agents`` itself.

For example::

    lrgym run --env StepSizeControl-Digits-v0 --episodes 3 --seed 0
    lrgym train reps --env StepSizeControl-Digits-v0 --episodes 160 --samples 16 \\
        --workers 2 --seed 0 --out runs/digits
    lrgym evaluate runs/digits/controller.json --episodes 20 --seed 1000
    lrgym benchmark --suite digits --tasks 5 --controller runs/digits/controller.json \\
        --workers 2 --out bench/digits
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from lrgym.errors import LrgymError


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
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

    board = sub.add_parser(
        "leaderboard", help="write leaderboard.md (and figures) from a benchmark's results.csv"
    )
    board.add_argument("csv", help="the results.csv that `lrgym benchmark` wrote")
    board.add_argument(
        "--out", default=None, help="where to write the leaderboard (default: beside the CSV)"
    )
    board.add_argument(
        "--figures", action="store_true", help="also write the PNG figures beside the CSV"
    )

    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _run,
        "leaderboard": _leaderboard,
    }
    for entry in entry_points(group="lrgym.commands"):
        handlers.update(entry.load()(sub))
    return parser, handlers


def add_env_arguments(parser: argparse.ArgumentParser) -> None:
    """``--env-kwargs`` and ``--data-root`` (read back with :func:`env_kwargs_from`)."""
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of extra env arguments")
    parser.add_argument("--data-root", default=None, help="dataset root (see the README)")


def env_kwargs_from(args: argparse.Namespace) -> dict[str, Any]:
    """The env keyword arguments of ``--env-kwargs`` and ``--data-root``."""
    kwargs = json.loads(args.env_kwargs)
    if not isinstance(kwargs, dict):
        raise LrgymError(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    if args.data_root is not None:
        kwargs["data_root"] = args.data_root
    return kwargs


def save_curves(path: str, episodes: Sequence[Any]) -> None:
    """Save the curves of evaluated episodes to an ``.npz`` file (atomically)."""
    import io
    from pathlib import Path

    from lrgym.jsonfile import write_atomic

    arrays: dict[str, np.ndarray] = {}
    for k, e in enumerate(episodes):
        for name in (
            "losses",
            "learning_rates",
            "features",
            "raw_features",
            "eval_steps",
            "eval_losses",
        ):
            arrays[f"episode{k}_{name}"] = getattr(e.curves, name)
    arrays["seeds"] = np.array([e.seed for e in episodes])
    arrays["rewards"] = np.array([e.reward for e in episodes])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    target = Path(path)
    write_atomic(target, buffer.getvalue())
    print(f"curves: {target}")


def _run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import lrgym  # noqa: F401 - registers the environments
    from lrgym.registration import is_dynamic

    if is_dynamic(args.env):
        raise LrgymError(
            f"lrgym run plays the bandit envs (one action per run); {args.env} takes an action "
            f"per stretch of steps: run a controller on it with lrgym evaluate CONTROLLER --env "
            f"{args.env}, or train a policy with lrgym train ppo --env {args.env}"
        )
    env = gym.make(args.env, **env_kwargs_from(args))
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


def _leaderboard(args: argparse.Namespace) -> int:
    from lrgym.bench.leaderboard import write_leaderboard

    print(f"leaderboard: {write_leaderboard(args.csv, args.out)}")
    if args.figures:
        from lrgym.bench.figures import write_figures

        for path in write_figures(args.csv):
            print(f"figure: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lrgym`` command."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    try:
        return commands[args.command](args)
    except (LrgymError, json.JSONDecodeError) as exc:
        print(f"lrgym: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
