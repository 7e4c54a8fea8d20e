"""The ``lrgym`` command line (thin: parse, call, print).

* ``lrgym run --env ID --episodes N`` plays N episodes of an environment with one controller
  (a fixed action, or a constant learning rate) and prints a table of the results;
* ``lrgym train reps --env ID --iterations N --samples M --out DIR`` learns a controller with
  REPS (progress bar, per-iteration log, checkpoints, ``--resume``);
* ``lrgym evaluate CONTROLLER --env ID --episodes K`` runs a learned controller on fresh tasks.

For example::

    lrgym run --env StepSizeControl-Digits-v0 --episodes 3 --seed 0
    lrgym train reps --env StepSizeControl-Digits-v0 --iterations 10 --samples 16 \\
        --workers 2 --seed 0 --out runs/digits
    lrgym evaluate runs/digits/controller.json --episodes 20 --seed 1000
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

    train = sub.add_parser("train", help="learn a controller").add_subparsers(
        dest="algorithm", required=True
    )
    reps = train.add_parser("reps", help="episodic REPS (the paper's learner)")
    reps.add_argument("--env", default="StepSizeControl-Digits-v0", help="registered env id")
    reps.add_argument("--iterations", type=int, required=True, help="REPS iterations in total")
    reps.add_argument("--samples", type=int, default=16, help="episodes per iteration")
    reps.add_argument("--out", required=True, help="run directory (log, checkpoint, controller)")
    reps.add_argument("--seed", type=int, default=0, help="seeds the search and every task")
    reps.add_argument(
        "--same-task",
        action="store_true",
        help="all samples of an iteration train on one (fresh) task: rewards differ only by theta",
    )
    _add_backend(reps)
    reps.add_argument("--resume", action="store_true", help="continue the run in --out")
    reps.add_argument("--tensorboard", action="store_true", help="log to OUT/tensorboard")
    reps.add_argument("--no-progress", action="store_true", help="no progress bar")
    reps.add_argument("--epsilon", type=float, default=1.0, help="KL bound per iteration")
    reps.add_argument("--reuse", type=int, default=2, help="batches each update is fitted to")
    reps.add_argument(
        "--covariance-mixing", type=float, default=0.5, help="weight of the old covariance"
    )
    reps.add_argument("--min-std", type=float, default=0.01, help="floor on the search std")
    reps.add_argument("--init-std", type=float, default=0.3, help="initial search std")
    _add_env_kwargs(reps)

    evaluate = sub.add_parser("evaluate", help="run a learned controller on fresh tasks")
    evaluate.add_argument("controller", help="a controller file (lrgym train reps writes one)")
    evaluate.add_argument("--env", default=None, help="env id (default: the controller's)")
    evaluate.add_argument("--episodes", type=int, default=10, help="number of tasks")
    evaluate.add_argument("--seed", type=int, default=0, help="tasks are reset(seed=S+k)")
    _add_backend(evaluate)
    evaluate.add_argument("--curves", default=None, help="save every run's curves to this .npz")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object per episode")
    _add_env_kwargs(evaluate)
    return parser


def _add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, help="episodes run at once")
    parser.add_argument(
        "--backend",
        choices=("serial", "process", "ray"),
        default=None,
        help="serial (default for 1 worker), process (worker processes; default for more) or ray",
    )
    parser.add_argument("--ray-address", default=None, help="Ray cluster to join (ray backend)")


def _add_env_kwargs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of extra env arguments")
    parser.add_argument("--data-root", default=None, help="dataset root (see the README)")


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = json.loads(args.env_kwargs)
    if not isinstance(kwargs, dict):
        raise LrgymError(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    if args.data_root is not None:
        kwargs["data_root"] = args.data_root
    return kwargs


def _backend(args: argparse.Namespace) -> str:
    if args.backend is not None:
        return str(args.backend)
    return "ray" if args.ray_address else ("serial" if args.workers == 1 else "process")


def _train_reps(args: argparse.Namespace) -> int:
    import lrgym  # noqa: F401 - registers the environments
    from agents.reps import REPSConfig
    from agents.training import train_reps

    config = REPSConfig(
        epsilon=args.epsilon,
        samples=args.samples,
        reuse=args.reuse,
        covariance_mixing=args.covariance_mixing,
        min_std=args.min_std,
        init_std=args.init_std,
    )
    try:
        run = train_reps(
            args.env,
            args.out,
            iterations=args.iterations,
            config=config,
            seed=args.seed,
            env_kwargs=_env_kwargs(args),
            same_task=args.same_task,
            backend=_backend(args),
            workers=args.workers,
            ray_address=args.ray_address,
            resume=args.resume,
            tensorboard=args.tensorboard,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(
            f"\nlrgym: interrupted; the last complete iteration is saved. Continue with the same "
            f"command and --resume (out: {args.out})",
            file=sys.stderr,
        )
        return 130
    first, last = run.records[0], run.records[-1]
    print(
        f"{args.env}: {last.iteration + 1} iterations, {sum(r.episodes for r in run.records)} "
        f"episodes, {last.elapsed:.0f} s; mean reward {first.mean_reward:.4f} (first "
        f"iteration) -> {last.mean_reward:.4f} (last)"
    )
    print(f"controller: {run.out / 'controller.json'}   log: {run.out / 'log.jsonl'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import lrgym  # noqa: F401 - registers the environments
    from agents.training import evaluate_controller
    from lrgym.controller_file import load_controller

    saved = load_controller(args.controller)
    env_id = args.env or saved.env_id
    episodes = evaluate_controller(
        saved,
        env_id,
        episodes=args.episodes,
        seed=args.seed,
        env_kwargs=_env_kwargs(args),
        backend=_backend(args),
        workers=args.workers,
        ray_address=args.ray_address,
        keep_curves=args.curves is not None,
    )
    if args.json:
        for e in episodes:
            row = {k: v for k, v in e.__dict__.items() if k != "curves"}
            print(json.dumps(row))
    else:
        print(f"{env_id}: theta = {np.round(saved.theta, 4).tolist()}")
        header = (("ep", 3), ("seed", 6), ("reward", 8), ("train loss", 10), ("test acc", 8))
        print(" ".join(f"{name:>{width}}" for name, width in header), f"{'diverged':>8}")
        for k, e in enumerate(episodes):
            print(
                f"{k:>3} {e.seed:>6} {e.reward:>8.4f} {e.final_train_loss:>10.4f} "
                f"{e.test_accuracy:>8.4f} {e.diverged!s:>8}"
            )
        rewards = np.array([e.reward for e in episodes])
        finished = [e for e in episodes if not e.diverged]
        loss = np.mean([e.final_train_loss for e in finished]) if finished else float("nan")
        accuracy = np.mean([e.test_accuracy for e in finished]) if finished else float("nan")
        spread = rewards.std(ddof=1) if len(rewards) > 1 else 0.0
        print(
            f"mean reward {rewards.mean():.4f} +- {spread:.4f} (std) | final train loss "
            f"{loss:.4f} | test accuracy {accuracy:.4f} | diverged "
            f"{len(episodes) - len(finished)}/{len(episodes)}"
        )
    if args.curves is not None:
        _save_curves(args.curves, episodes)
    return 0


def _save_curves(path: str, episodes: Sequence[Any]) -> None:
    import io
    from pathlib import Path

    from lrgym.controller_file import write_atomic

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

    env = gym.make(args.env, **_env_kwargs(args))
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
    commands = {"run": _run, "train": _train_reps, "evaluate": _evaluate}
    try:
        return commands[args.command](args)
    except (LrgymError, json.JSONDecodeError) as exc:
        print(f"lrgym: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
