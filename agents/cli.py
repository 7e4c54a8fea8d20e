"""``lrgym train ...`` and ``lrgym evaluate ...``: the learners' commands.

:mod:`lrgym.cli` (which never imports :mod:`lrgym_agents`) finds these through the
``lrgym.commands`` entry point of this distribution and calls :func:`register` with its
subcommand parsers.

* ``lrgym train {reps,cmaes,random} --episodes N --samples M --out DIR`` runs an ask/tell
  learner (:mod:`lrgym_agents.loop`);
* ``lrgym train {ppo,a2c,sac,td3,ars} --episodes N --out DIR`` runs a Stable-Baselines3 learner
  (:mod:`lrgym_agents.learners.sb3`);
* ``lrgym evaluate CONTROLLER --episodes K --seed S`` runs a controller file on fresh tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from lrgym.cli import add_env_arguments, env_kwargs_from, save_curves
from lrgym.errors import LrgymError
from lrgym.registration import is_dynamic

from .benchmark import add_arguments as add_benchmark_arguments
from .objective import COMPARABLE, RISKS
from .pools import resolve_backend

ASK_TELL = {
    "reps": "episodic REPS (the paper's learner)",
    "cmaes": "CMA-ES (the cma package)",
    "random": "random search in the action box, best re-evaluated candidate",
}
SB3 = {
    "ppo": "Stable-Baselines3 PPO (contextual policy)",
    "a2c": "Stable-Baselines3 A2C (contextual policy)",
    "sac": "Stable-Baselines3 SAC (contextual policy)",
    "td3": "Stable-Baselines3 TD3 (contextual policy)",
    "ars": "Augmented Random Search from sb3-contrib (linear contextual policy)",
}


def register(commands: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``train``, ``evaluate`` and ``benchmark`` to the ``lrgym`` command's subparsers."""
    train = commands.add_parser("train", help="learn a controller").add_subparsers(
        dest="algorithm", required=True, metavar="ALGORITHM"
    )
    for name, description in {**ASK_TELL, **SB3}.items():
        parser = train.add_parser(name, help=description, description=description)
        _common(parser)
        if name in ASK_TELL:
            parser.add_argument(
                "--samples", type=int, default=16, help="candidates (episodes) per iteration"
            )
            parser.add_argument(
                "--same-task",
                action="store_true",
                help="all samples of an iteration train on one (fresh) task",
            )
            _objective(parser)
        else:
            parser.add_argument(
                "--hyperparameters",
                default="{}",
                help="JSON object replacing lrgym's settings (see the README's table)",
            )
        _specific(name, parser)

    evaluate = commands.add_parser("evaluate", help="run a learned controller on fresh tasks")
    evaluate.add_argument(
        "controller", help="a controller file (lrgym train writes one) or a pretrained name"
    )
    evaluate.add_argument("--env", default=None, help="env id (default: the controller's)")
    evaluate.add_argument("--episodes", type=int, default=10, help="number of tasks")
    evaluate.add_argument("--seed", type=int, default=0, help="tasks are reset(seed=S+k)")
    _backend(evaluate)
    evaluate.add_argument("--curves", default=None, help="save every run's curves to this .npz")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object per episode")
    add_env_arguments(evaluate)

    benchmark = commands.add_parser(
        "benchmark", help="controllers and baselines on a suite of held-out tasks"
    )
    add_benchmark_arguments(benchmark)
    _backend(benchmark)
    return {
        "train": _train,
        "evaluate": _evaluate,
        "benchmark": _benchmark,
    }


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="StepSizeControl-Digits-v0", help="registered env id")
    parser.add_argument("--episodes", type=int, required=True, help="training runs in total")
    parser.add_argument("--out", required=True, help="run directory (log, checkpoint, controller)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the learner and every task")
    _backend(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--tensorboard", action="store_true", help="log to OUT/tensorboard")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_env_arguments(parser)


def _objective(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "objective", "what the learner is told (lrgym_agents.objective; the defaults: each reward)"
    )
    group.add_argument(
        "--tasks", type=int, default=1, help="tasks every candidate runs on per iteration (shared)"
    )
    group.add_argument(
        "--comparable",
        choices=COMPARABLE,
        default="none",
        help="rank: score candidates by their rank on each shared task",
    )
    group.add_argument(
        "--risk", choices=RISKS, default="mean", help="cvar: the mean of the worst tasks only"
    )
    group.add_argument("--alpha", type=float, default=0.25, help="share of worst tasks (cvar)")
    group.add_argument(
        "--perturb", type=float, default=0.0, help="perturb theta by up to this share per episode"
    )


def _backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, help="episodes run at once")
    parser.add_argument(
        "--backend",
        choices=("serial", "process", "ray"),
        default=None,
        help="serial (default for 1 worker), process (worker processes; default for more) or "
        "ray (ask/tell learners, evaluate and benchmark)",
    )
    parser.add_argument("--ray-address", default=None, help="Ray cluster to join (ray backend)")


def _specific(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "reps":
        parser.add_argument("--epsilon", type=float, default=1.0, help="KL bound per iteration")
        parser.add_argument("--reuse", type=int, default=2, help="batches each update fits")
        parser.add_argument(
            "--covariance-mixing", type=float, default=0.5, help="weight of the old covariance"
        )
        parser.add_argument("--min-std", type=float, default=0.01, help="floor on the search std")
        parser.add_argument("--init-std", type=float, default=0.3, help="initial search std")
    elif name == "cmaes":
        parser.add_argument("--sigma0", type=float, default=0.3, help="initial step size")
    elif name == "random":
        parser.add_argument(
            "--reevaluations", type=int, default=3, help="extra episodes per finalist"
        )
        parser.add_argument("--finalists", type=int, default=4, help="candidates re-evaluated")


OBJECTIVE_FLAGS = ("tasks", "comparable", "risk", "alpha", "perturb")

_SETTINGS = {
    "reps": ("epsilon", "reuse", "covariance_mixing", "min_std", "init_std"),
    "cmaes": ("sigma0",),
    "random": ("reevaluations", "finalists"),
}


def _backend_name(args: argparse.Namespace) -> str:
    return resolve_backend(args.backend, args.workers, args.ray_address)


def _train(args: argparse.Namespace) -> int:
    import lrgym  # noqa: F401 - registers the environments

    try:
        if args.algorithm in ASK_TELL:
            from .loop import train

            settings = {"samples": args.samples}
            settings.update({k: getattr(args, k) for k in _SETTINGS[args.algorithm]})
            run = train(
                args.algorithm,
                args.env,
                args.out,
                episodes=args.episodes,
                config=settings,
                seed=args.seed,
                env_kwargs=env_kwargs_from(args),
                same_task=args.same_task,
                objective={k: getattr(args, k) for k in OBJECTIVE_FLAGS},
                backend=_backend_name(args),
                workers=args.workers,
                ray_address=args.ray_address,
                resume=args.resume,
                tensorboard=args.tensorboard,
                progress=not args.no_progress,
            )
            records = run.records
        else:
            from .learners.sb3 import train_sb3

            if _backend_name(args) == "ray":
                raise LrgymError(
                    f"{args.algorithm} runs its episodes in Stable-Baselines3 vector envs: use "
                    "--workers N (processes), not the ray backend"
                )
            hyperparameters = json.loads(args.hyperparameters)
            if not isinstance(hyperparameters, dict):
                raise LrgymError(
                    f"--hyperparameters must be a JSON object, got {args.hyperparameters!r}"
                )
            records = train_sb3(
                args.algorithm,
                args.env,
                args.out,
                episodes=args.episodes,
                seed=args.seed,
                env_kwargs=env_kwargs_from(args),
                hyperparameters=hyperparameters,
                workers=args.workers,
                resume=args.resume,
                tensorboard=args.tensorboard,
                progress=not args.no_progress,
            ).records
    except KeyboardInterrupt:
        print(
            "\nlrgym: interrupted; the last checkpoint is saved. Continue with the same command "
            f"and --resume (out: {args.out})",
            file=sys.stderr,
        )
        return 130
    if records:
        first, last = records[0], records[-1]
        print(
            f"{args.env}: {args.algorithm}, {last['episodes_total']} episodes, "
            f"{last['elapsed']:.0f} s; mean reward {first['mean_reward']:.4f} (first batch) -> "
            f"{last['mean_reward']:.4f} (last)"
        )
    print(f"controller: {args.out}/controller.json   log: {args.out}/log.jsonl")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import command

    return command(args, _backend_name)


def _evaluate(args: argparse.Namespace) -> int:
    import lrgym  # noqa: F401 - registers the environments
    from lrgym.controllers.files import LogLinearFile, load_controller

    from .evaluation import evaluate_controller

    saved = load_controller(args.controller)
    env_id = args.env or saved.env_id
    episodes = evaluate_controller(
        saved,
        env_id,
        episodes=args.episodes,
        seed=args.seed,
        env_kwargs=env_kwargs_from(args),
        backend=_backend_name(args),
        workers=args.workers,
        ray_address=args.ray_address,
        keep_curves=args.curves is not None,
    )
    if args.json:
        for e in episodes:
            row = {k: v for k, v in e.__dict__.items() if k != "curves"}
            print(json.dumps(row))
    else:
        dynamic = is_dynamic(env_id)
        as_policy = dynamic and isinstance(saved, LogLinearFile)
        how = " (as a policy: it sets every step's rate)" if as_policy else ""
        print(f"{env_id}: {saved.describe()}{how}")
        what = "return" if dynamic else "reward"
        header = (("ep", 3), ("seed", 6), (what, 8), ("train loss", 10), ("test acc", 8))
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
            f"mean {what} {rewards.mean():.4f} +- {spread:.4f} (std) | final train loss "
            f"{loss:.4f} | test accuracy {accuracy:.4f} | diverged "
            f"{len(episodes) - len(finished)}/{len(episodes)}"
        )
    if args.curves is not None:
        save_curves(args.curves, episodes)
    return 0
