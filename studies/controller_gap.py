"""Where today's shipped controllers hold and where they fail: one table over the benchmark
results of several suites (``docs/families/``).

For each suite in the given ``results.csv`` files (``lrgym benchmark --eta0-sweep`` runs with
the shipped controllers, the constant grid and the learning-rate-free baselines; a suite's rows
may come from several runs, and only the tasks the controllers ran on count), one line per
learned controller with, side by side (final
training losses, geometric means over the tasks, diverged runs counted with their initial
loss, 95% bootstrap intervals):

* the controller from each task's own eta_0, and its share of runs within 2x of the per-task
  oracle over the whole eta_0 grid (the robustness the paper claims);
* the per-task oracle (the best constant of the grid on each task) and the best single
  constant (the one rate that is best over all the suite's tasks);
* every learning-rate-free optimiser baseline in the file;
* a verdict: the controller *holds* where its loss from the task's eta_0 is within 2x of the
  oracle on at least 80% of tasks and its grid share is at least the best constant's; it
  *fails* otherwise.

    python studies/controller_gap.py docs/families/*/results.csv --out docs/families/gap.md
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lrgym.bench.baselines import LR_GRID
from lrgym.bench.leaderboard import loss_with_ci
from lrgym.bench.results import read_results
from lrgym.bench.statistics import geometric_mean_loss, robustness_score, with_oracle

HOLDS_SHARE = 0.8
"""A controller holds on a suite when at least this share of its runs from the tasks' eta_0 end
within 2x of the oracle (and its grid share is no worse than the best constant's)."""

Row = Mapping[str, Any]


def best_constant(rows: Sequence[Row]) -> tuple[float, list[Row]]:
    """The single grid rate with the lowest geometric-mean loss over the tasks, and its rows."""
    constants = [r for r in rows if r["kind"] == "constant"]
    by_rate = {e: [r for r in constants if r["eta0"] == e] for e in LR_GRID}
    by_rate = {e: rs for e, rs in by_rate.items() if rs}
    rate = min(by_rate, key=lambda e: geometric_mean_loss(by_rate[e]))
    return rate, by_rate[rate]


def same_tasks(rows: Sequence[Row]) -> list[Row]:
    """The rows of the tasks the learned controllers ran on, each run once: a suite's rows may
    come from a default run over all its tasks and a gap run over the first few, and every
    baseline is compared on the controller's tasks only. (A job is deterministic, so a run that
    two files share has the same row in both; the first is kept.)"""
    tasks = {r["task_index"] for r in rows if r["kind"] == "learned"}
    unique: dict[tuple[Any, ...], Row] = {}
    for r in rows:
        if r["task_index"] in tasks:
            key = (r["controller"], r["task_index"], r["eta0"], r["eta0_source"])
            unique.setdefault(key, r)
    return list(unique.values())


def suite_lines(rows: Sequence[Row]) -> list[dict[str, str]]:
    """The table's lines for one suite's rows (one per learned controller), on the tasks the
    controllers ran on (:func:`same_tasks`)."""
    rows = with_oracle(same_tasks(rows))
    oracle = [r for r in rows if r["kind"] == "oracle"]
    rate, constant = best_constant(rows)
    constant_share = robustness_score(
        [r for r in rows if r["kind"] == "constant"], oracle
    )  # a constant over the grid: the share of grid rates within 2x on each task
    optimizers = sorted({r["controller"] for r in rows if r["kind"] == "optimizer"})
    suite = rows[0]["suite"]
    tasks = len({r["task_index"] for r in oracle})
    lines = []
    for name in sorted({r["controller"] for r in rows if r["kind"] == "learned"}):
        mine = [r for r in rows if r["kind"] == "learned" and r["controller"] == name]
        from_task = [r for r in mine if r["eta0_source"] == "task"]
        grid = [r for r in mine if r["eta0_source"] == "grid"]
        share_task = robustness_score(from_task, oracle) or 0.0
        share_grid = robustness_score(grid, oracle) if grid else None
        holds = share_task >= HOLDS_SHARE and (
            share_grid is None or constant_share is None or share_grid >= constant_share
        )
        line = {
            "suite": f"{suite} ({tasks} tasks)",
            "controller": name,
            "controller from eta_0": loss_with_ci(from_task),
            "within 2x of oracle (from eta_0 / over the grid)": (
                f"{share_task:.0%} / " + ("-" if share_grid is None else f"{share_grid:.0%}")
            ),
            "constant over the grid within 2x": (
                "-" if constant_share is None else f"{constant_share:.0%}"
            ),
            "oracle": loss_with_ci(oracle),
            "best single constant": f"{loss_with_ci(constant)} (lr {rate:g})",
        }
        for optimizer in optimizers:
            line[optimizer] = loss_with_ci([r for r in rows if r["controller"] == optimizer])
        line["verdict"] = "holds" if holds else "fails"
        lines.append(line)
    return lines


def markdown(lines: Sequence[Mapping[str, str]]) -> str:
    """A markdown table of ``lines`` (columns in order of first appearance)."""
    columns = list(dict.fromkeys(c for line in lines for c in line))
    text = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    text += ["| " + " | ".join(line.get(c, "-") for c in columns) + " |" for line in lines]
    return "\n".join(text) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", nargs="+", type=Path, help="results.csv files (rows grouped by suite)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the table here too")
    args = parser.parse_args()
    suites: dict[str, list[Row]] = {}  # rows of one suite may come from several runs
    for path in args.results:
        for row in read_results(path):
            suites.setdefault(row["suite"], []).append(row)
    lines = [line for rows in suites.values() for line in suite_lines(rows)]
    table = markdown(lines)
    print(table)
    if args.out is not None:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
