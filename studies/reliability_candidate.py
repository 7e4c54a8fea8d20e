"""Another controller on the reliability group, beside the stored group run's baselines.

The group run (``lrgym benchmark --suite reliability``, stored in ``docs/reliability``) holds
every baseline and the per-task oracle. This script runs one more learned controller on the
group's suites of one optimiser kind, with the group's settings (its tasks, the eta_0 sweep over
the kind's range, theta +-20%), and the constant grid again. It reports the candidate against
the stored run's baselines and oracle (``OUT/reliability.md``), and checks that the rerun grid
matches the stored one (same code and seeds; equal on the CPU that wrote the stored run)::

    python studies/reliability_candidate.py \\
        --controller ablate-all=bench/ablate/all/controller.json --kind sgd \\
        --data-root ../shared/data --workers 2 --out bench/reliability-candidate
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

from lrgym.bench.reliability import reliability_markdown
from lrgym.bench.results import read_results
from lrgym.bench.statistics import with_oracle
from lrgym.bench.suites import ETA0_RANGES, SUITE_GROUPS
from lrgym.jsonfile import write_atomic
from lrgym_agents.benchmark.runner import run_group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controller", required=True, help="NAME=FILE")
    parser.add_argument("--kind", choices=sorted(ETA0_RANGES), default="sgd")
    parser.add_argument("--reference", type=Path, default=Path("docs/reliability"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    name = args.controller.split("=", 1)[0]
    whole = SUITE_GROUPS["reliability"]
    # the group's own runner on its suites of this kind: the group's settings, not restated
    group = replace(whole, members=tuple(m for m in whole.members if m[1] == args.kind))
    run_group(
        group,
        args.out,
        controllers=[args.controller],
        baselines="constant",
        data_root=args.data_root,
        workers=args.workers,
        resume=True,  # suites already started continue; the others start
        progress=False,
        figures=False,
    )
    suites, worst_grid = [], 0.0
    for suite, _ in group.members:
        stored = read_results(args.reference / suite / "results.csv")
        new = read_results(args.out / suite / "results.csv")
        worst_grid = max(worst_grid, _grid_difference(stored, new))
        mine = [r for r in new if r["kind"] != "constant"]  # the candidate and its variants
        rows = [r for r in stored if r["controller"] != "oracle"] + mine
        suites.append((suite, with_oracle(rows)))
    report = reliability_markdown(suites, {suite: name for suite, _ in suites})
    note = (
        "\n\nThe rerun constant grid against the stored one: largest relative difference of "
        f"the final loss {worst_grid:.3g}.\n"
    )
    write_atomic(args.out / "reliability.md", report + note)
    print(report + note)


def _grid_difference(stored: list[dict], new: list[dict]) -> float:
    """The largest relative difference between the stored and the rerun constant grid's final
    losses (0 where every run is bit-identical)."""
    key = lambda r: (r["task_seed"], r["eta0"])  # noqa: E731
    old = {key(r): float(r["final_train_loss"]) for r in stored if r["controller"] == "constant"}
    worst = 0.0
    for r in new:
        if r["controller"] == "constant" and key(r) in old:
            a, b = old[key(r)], float(r["final_train_loss"])
            if math.isfinite(a) and math.isfinite(b):
                worst = max(worst, abs(a - b) / max(abs(a), 1e-12))
            elif math.isfinite(a) != math.isfinite(b):
                worst = math.inf
    return worst


if __name__ == "__main__":
    main()
