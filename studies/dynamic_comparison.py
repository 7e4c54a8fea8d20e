"""Per-step policies against bandit controllers and constant learning rates, on the same
held-out episodes of a dynamic env.

Contenders, every one played on the episodes of ``reset(seed=S + k)``, ``k < --tasks``:

  * each ``--policy NAME=FILE``: a per-step policy controller file (``lrgym train ppo --env
    StepSizeControl-Dynamic-...``), its deterministic action at every stretch;
  * each ``--controller NAME=FILE``: a log-linear controller file (``lrgym train reps``) or a
    pretrained name, setting every step's rate through ``lrgym.envs.ControllerWrapper``;
  * ``best constant``: the constant learning rate of the grid (``--grid``) with the highest mean
    return on ``--select-tasks`` tasks from ``--select-seed``, chosen before the held-out tasks
    are played (selection and held-out seeds are disjoint);
  * ``oracle``: the best constant of the grid for each held-out task, picked after the fact.

Before playing, the script checks that no selection or held-out seed was a training task of a
run directory given (``log.jsonl`` beside each file). Prints, per contender, the mean return
with a 95% bootstrap interval, the bandit reward (return / 9), the median final training loss,
the mean test accuracy, the diverged count, and the paired difference of returns to the best
constant with its interval; writes every episode to ``--out``/episodes.csv and the summary to
``--out``/summary.json.

    python studies/dynamic_comparison.py --env StepSizeControl-Dynamic-Digits-v0 \\
        --policy ppo=runs/dyn-ppo/controller.json --controller reps=runs/digits/controller.json \\
        --workers 2 --out runs/dynamic-comparison
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import lrgym
from lrgym.bench.statistics import bootstrap_ci
from lrgym.controllers.files import PerStepPolicyFile
from lrgym.jsonfile import write_atomic
from lrgym_agents.collect import Episode
from lrgym_agents.evaluation import DynamicWorker, learned_kwargs, play_episode
from lrgym_agents.pools import make_pool

GRID = [float(f"{10 ** (e / 4):.3g}") for e in range(-16, 1)]
"""Default constant grid: 1e-4 .. 1, four per decade."""


def training_seeds(path: Path) -> set[int] | None:
    """The task seeds of the run directory a controller file lies in (``None`` without a
    log, e.g. a pretrained name)."""
    log = path.parent / "log.jsonl"
    if not log.exists():
        return None
    return {int(s) for line in log.read_text().splitlines() for s in json.loads(line)["seeds"]}


def named(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, _, file = value.partition("=")
        out[name if file else Path(name).stem] = file or name
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="StepSizeControl-Dynamic-Digits-v0")
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of env arguments")
    parser.add_argument("--policy", action="append", default=[], help="NAME=FILE")
    parser.add_argument("--controller", action="append", default=[], help="NAME=FILE or name")
    parser.add_argument("--grid", type=float, nargs="+", default=GRID)
    parser.add_argument("--seed", type=int, default=1000, help="held-out tasks: seed + k")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--select-seed", type=int, default=500)
    parser.add_argument("--select-tasks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    kwargs = json.loads(args.env_kwargs)
    held_out = [args.seed + k for k in range(args.tasks)]
    selection = [args.select_seed + k for k in range(args.select_tasks)]
    if set(held_out) & set(selection):
        raise SystemExit("selection and held-out seeds overlap")
    contenders: dict[str, Any] = {}
    for name, file in {**named(args.policy), **named(args.controller)}.items():
        saved = lrgym.load_controller(file)
        used = training_seeds(Path(file))
        if used is not None and used & (set(held_out) | set(selection)):
            raise SystemExit(f"{name} was trained on a held-out or selection task")
        if used is None:
            checked = "no training log beside it: seeds not checked"
        else:
            checked = f"trained on {len(used)} tasks, none of them held out or for selection"
        per_step = isinstance(saved, PerStepPolicyFile)
        if per_step and learned_kwargs(saved, args.env) != kwargs:
            print(f"note: {name} was learned with env arguments {dict(saved.env_kwargs)}")
        contenders[name] = saved
        kind = "per-step policy" if per_step else "controller"
        print(f"{name}: {file} ({kind}, {checked})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with make_pool(None, DynamicWorker, (args.env, kwargs), workers=args.workers) as pool:

        def play(policy: Any, seeds: list[int]) -> list[Episode]:
            return pool.map(play_episode, [(policy, s, False) for s in seeds])

        constants = {lr: lrgym.ConstantController(lr) for lr in args.grid}
        chosen = {}
        for lr, c in constants.items():
            chosen[lr] = float(np.mean([e.reward for e in play(c, selection)]))
        best = max(chosen, key=lambda lr: chosen[lr])
        print(
            "selection (mean return per constant): "
            + ", ".join(f"{lr:g}: {v:.3f}" for lr, v in chosen.items())
            + f" -> best constant {best:g}"
        )
        results: dict[str, list[Episode]] = {}
        grid_returns = {}
        for lr, c in constants.items():
            episodes = play(c, held_out)
            grid_returns[lr] = episodes
            if lr == best:
                results[f"best constant {best:g}"] = episodes
        for name, saved in contenders.items():
            results[name] = play(saved, held_out)
    table = np.array([[e.reward for e in grid_returns[lr]] for lr in args.grid])
    pick = table.argmax(axis=0)
    results["oracle (per task)"] = [grid_returns[args.grid[i]][k] for k, i in enumerate(pick)]
    for name, episodes in results.items():
        for e in episodes:
            fields = {k: v for k, v in e.__dict__.items() if k != "curves"}
            rows.append({"contender": name, **fields})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "episodes.csv", buffer.getvalue())
    reference = np.array([e.reward for e in results[f"best constant {best:g}"]])
    summary: dict[str, Any] = {
        "env": args.env,
        "held_out_seeds": [held_out[0], held_out[-1]],
        "selection_seeds": [selection[0], selection[-1]],
        "best_constant": best,
        "seconds": time.perf_counter() - started,
        "contenders": {},
    }
    print(f"\n{args.env}: {args.tasks} held-out tasks (reset(seed={held_out[0]}..{held_out[-1]}))")
    header = (
        f"{'contender':<24} {'return':>7} {'95% CI':>16} {'reward':>7} {'loss med':>9} "
        f"{'test acc':>8} {'div':>4} {'vs best constant':>24}"
    )
    print(header)
    for name, episodes in results.items():
        returns = np.array([e.reward for e in episodes])
        low, high = bootstrap_ci(returns)
        diff = returns - reference
        dlow, dhigh = bootstrap_ci(diff)
        loss = float(np.median([e.final_train_loss for e in episodes]))
        accuracy = float(np.mean([e.test_accuracy for e in episodes]))
        diverged = sum(e.diverged for e in episodes)
        summary["contenders"][name] = {
            "mean_return": float(returns.mean()),
            "ci": [low, high],
            "median_final_train_loss": loss,
            "mean_test_accuracy": accuracy,
            "diverged": diverged,
            "difference_to_best_constant": [float(diff.mean()), dlow, dhigh],
        }
        print(
            f"{name:<24} {returns.mean():>7.3f} [{low:>6.3f}, {high:>6.3f}] "
            f"{returns.mean() / 9:>7.4f} {loss:>9.4f} {accuracy:>8.4f} {diverged:>4} "
            f"{diff.mean():>+7.3f} [{dlow:>+6.3f}, {dhigh:>+6.3f}]"
        )
    write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(f"\nepisodes: {out / 'episodes.csv'}   summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
