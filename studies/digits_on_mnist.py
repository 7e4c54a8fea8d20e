"""The README's transfer figure: the quickstart's controller, learned on digits, on held-out
tasks of the paper's MNIST family, against the per-task best constant of the grid.

Run the README's first command first (it writes ``runs/quickstart/reps/controller.json``), then

    python studies/digits_on_mnist.py --data-root ../shared/data

The tasks are 4 of the mnist-family suite's env, with task seeds ``2**32 + 1000 .. 1003``
(held out: training draws 32-bit seeds, and no other result of lrgym uses these).
"""

from __future__ import annotations

import argparse
import dataclasses

from lrgym.bench.results import read_results
from lrgym.bench.statistics import geometric_mean_loss, with_oracle
from lrgym.bench.suites import SUITE_SEED_BASE, get_suite
from lrgym_agents.benchmark.runner import run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--controller", default="runs/quickstart/reps/controller.json")
    parser.add_argument("--out", default="runs/digits-on-mnist")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    suite = dataclasses.replace(
        get_suite("mnist-family"),
        name="mnist-family-seeds-1000",
        task_seeds=tuple(SUITE_SEED_BASE + 1000 + k for k in range(4)),
        description="4 mnist-family tasks of seeds 2**32 + 1000 .. 1003",
    )
    csv = run_benchmark(
        suite,
        args.out,
        controllers=[f"digits={args.controller}"],
        baselines="constant",
        perturb=0,
        feature_cost=False,
        data_root=args.data_root,
        workers=args.workers,
        progress=False,
        figures=False,
    )
    rows = with_oracle(read_results(csv))
    for name in ("digits", "oracle"):
        mine = [r for r in rows if r["controller"] == name]
        losses = ", ".join(f"{r['final_train_loss']:.4g}" for r in mine)
        print(f"{name}: geometric mean {geometric_mean_loss(mine):.4g} (tasks: {losses})")


if __name__ == "__main__":
    main()
