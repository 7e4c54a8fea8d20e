"""Every learner on the same env, budget and seeds: learning curves and held-out evaluation.

For each learner and each training seed, trains with ``--episodes`` training runs (the same
episode budget for all, each learner at its documented default settings, the process backend
with ``--workers`` workers for the ask/tell learners, ``--sb3-workers`` envs for the
Stable-Baselines3 ones), then evaluates the final controller file on held-out tasks
``reset(seed=1000 + k)``, ``k < --eval-episodes`` (training draws its task seeds from
``SeedSequence``, never from this range), together with the initial controller (the zero
action, every ask/tell learner's starting point).

Writes into ``--out``:

* ``runs/LEARNER-seedS/``: each run's directory (an interrupted benchmark continues with
  ``--resume`` semantics: finished runs are kept, unfinished ones resumed);
* ``curves.csv``: ``learner, seed, episodes, block_mean_reward`` (mean training reward per block
  of ``--block`` episodes);
* ``heldout.csv``: ``learner, seed, task_seed, reward, final_train_loss, test_accuracy,
  diverged``;
* ``learners.png``: mean training reward against episodes, mean over seeds with a 95% t-interval;
* a table on stdout: final training reward (last block) and held-out reward per learner, mean
  and 95% interval over seeds, and wall time per run.

    python studies/learners.py --env StepSizeControl-Digits-v0 --episodes 640 --seeds 0 1 2
    python studies/learners.py --learners reps cmaes --episodes 64 --seeds 0 --out /tmp/l
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lrgym
from lrgym.jsonfile import write_atomic
from lrgym_agents.evaluation import evaluate_controller
from lrgym_agents.learners.asktell import ASK_TELL_LEARNERS

ALL = ("reps", "cmaes", "random", "ppo", "a2c", "sac", "td3", "ars")


def train_one(learner: str, seed: int, out: Path, args: argparse.Namespace) -> float:
    """Train (or finish) one run; return its training wall time in seconds."""
    kwargs = json.loads(args.env_kwargs)
    if args.data_root:
        kwargs["data_root"] = args.data_root
    log = out / "log.jsonl"
    resume = (out / "checkpoint.json").exists()
    common = dict(
        episodes=args.episodes,
        seed=seed,
        env_kwargs=kwargs,
        workers=args.workers,
        backend="process" if args.workers > 1 else "serial",
        resume=resume,
        progress=False,
    )
    if learner in ASK_TELL_LEARNERS:
        from lrgym_agents.loop import train

        train(learner, args.env, out, config={"samples": args.samples}, **common)
    else:
        from lrgym_agents.learners.sb3 import train_sb3

        common.pop("backend")
        common["workers"] = args.sb3_workers
        train_sb3(learner, args.env, out, **common)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return float(rows[-1]["elapsed"])


def blocks(out: Path, block: int) -> list[tuple[int, float]]:
    rewards = [
        r
        for line in (out / "log.jsonl").read_text().splitlines()
        for r in json.loads(line)["rewards"]
    ]
    return [
        ((k + 1) * block, float(np.mean(rewards[k * block : (k + 1) * block])))
        for k in range(len(rewards) // block)
    ]


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval."""
    from scipy import stats

    array = np.asarray(values, dtype=np.float64)
    if array.size < 2:
        return float(array.mean()), float("nan")
    half = stats.t.ppf(0.975, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size)
    return float(array.mean()), float(half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="StepSizeControl-Digits-v0")
    parser.add_argument("--env-kwargs", default="{}")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--learners", nargs="+", default=list(ALL), choices=ALL)
    parser.add_argument("--episodes", type=int, default=640, help="training runs per run")
    parser.add_argument("--samples", type=int, default=16, help="ask/tell batch size")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=40)
    parser.add_argument("--eval-seed", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="ask/tell and evaluation workers")
    parser.add_argument(
        "--sb3-workers",
        type=int,
        default=1,
        help="SB3 vector envs (their settings are per env; run seeds as parallel lanes instead)",
    )
    parser.add_argument("--block", type=int, default=32, help="episodes per curve point")
    parser.add_argument("--out", default="runs/learners")
    parser.add_argument("--only-train", action="store_true", help="skip the evaluation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.out)
    walls: dict[tuple[str, int], float] = {}
    for learner in args.learners:
        for seed in args.seeds:
            out = root / "runs" / f"{learner}-seed{seed}"
            started = time.perf_counter()
            walls[learner, seed] = train_one(learner, seed, out, args)
            print(
                f"{learner} seed {seed}: trained in {walls[learner, seed]:.0f} s "
                f"(this call {time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    if args.only_train:
        return
    curve_rows = []
    for learner in args.learners:
        for seed in args.seeds:
            for episodes, value in blocks(root / "runs" / f"{learner}-seed{seed}", args.block):
                curve_rows.append((learner, seed, episodes, value))
    _write_csv(
        root / "curves.csv", ("learner", "seed", "episodes", "block_mean_reward"), curve_rows
    )

    heldout_rows: list[tuple[Any, ...]] = []
    controllers = [
        (
            "initial",
            0,
            root / "runs" / f"{args.learners[0]}-seed{args.seeds[0]}" / "controller-initial.json",
        )
    ]
    controllers += [
        (learner, seed, root / "runs" / f"{learner}-seed{seed}" / "controller.json")
        for learner in args.learners
        for seed in args.seeds
    ]
    for name, seed, path in controllers:
        saved = lrgym.load_controller(path)
        episodes = evaluate_controller(
            saved,
            episodes=args.eval_episodes,
            seed=args.eval_seed,
            workers=args.workers,
            backend="process" if args.workers > 1 else "serial",
        )
        heldout_rows += [
            (name, seed, e.seed, e.reward, e.final_train_loss, e.test_accuracy, e.diverged)
            for e in episodes
        ]
        print(
            f"held-out {name} seed {seed}: {np.mean([e.reward for e in episodes]):.4f}", flush=True
        )
    _write_csv(
        root / "heldout.csv",
        ("learner", "seed", "task_seed", "reward", "final_train_loss", "test_accuracy", "diverged"),
        heldout_rows,
    )
    _table(args, curve_rows, heldout_rows, walls)
    _figure(root / "learners.png", args, curve_rows)


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def _table(args: argparse.Namespace, curves: list, heldout: list, walls: dict) -> None:
    print(
        f"\n{args.env}: {args.episodes} episodes per run, seeds {args.seeds}; held-out tasks "
        f"reset(seed={args.eval_seed}..{args.eval_seed + args.eval_episodes - 1})"
    )
    print(
        f"{'learner':>8} {'final train reward':>22} {'held-out reward':>22} "
        f"{'held-out loss':>14} {'diverged':>9} {'wall s/run':>10}"
    )
    for learner in ["initial", *args.learners]:
        finals = [
            [v for (name, s, _, v) in curves if name == learner and s == seed][-1]
            for seed in args.seeds
            if any(name == learner and s == seed for (name, s, _, _) in curves)
        ]
        per_seed = {}
        for name, seed, _, reward, loss, _, diverged in heldout:
            if name == learner:
                per_seed.setdefault(seed, []).append((reward, loss, diverged))
        held = [float(np.mean([r for r, _, _ in v])) for v in per_seed.values()]
        losses = [loss for v in per_seed.values() for _, loss, d in v if not d]
        diverged = sum(d for v in per_seed.values() for _, _, d in v)
        total = sum(len(v) for v in per_seed.values())
        final = "{:.4f} +- {:.4f}".format(*interval(finals)) if finals else "-"
        held_text = "{:.4f} +- {:.4f}".format(*interval(held)) if held else "-"
        wall = [walls[learner, s] for s in args.seeds if (learner, s) in walls]
        print(
            f"{learner:>8} {final:>22} {held_text:>22} {np.mean(losses):>14.4f} "
            f"{diverged:>4}/{total:<4} {np.median(wall) if wall else float('nan'):>10.0f}"
        )


def _figure(path: Path, args: argparse.Namespace, curves: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for learner in args.learners:
        grid = sorted({e for (name, _, e, _) in curves if name == learner})
        means, halves = [], []
        for episodes in grid:
            values = [v for (name, _, e, v) in curves if name == learner and e == episodes]
            mean, half = interval(values)
            means.append(mean)
            halves.append(0.0 if math.isnan(half) else half)
        m, h = np.array(means), np.array(halves)
        axis.plot(grid, m, label=learner)
        axis.fill_between(grid, m - h, m + h, alpha=0.2)
    axis.set_xlabel("training episodes")
    axis.set_ylabel(f"mean reward per {args.block} episodes")
    axis.set_title(f"{args.env}, {len(args.seeds)} seeds (95% t-interval)")
    axis.legend(ncol=2, fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    write_atomic(path, buffer.getvalue())
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
