"""The reliability report of a suite group (``lrgym benchmark --suite reliability``).

It reads the results rows of every suite of the group (each with its oracle rows,
:func:`lrgym.bench.statistics.with_oracle`) and reports, per suite and over the group:

* **within 2x**: the share of a controller's ``(task, eta_0)`` runs whose final training loss
  is at most twice the per-task oracle's (the best constant of the grid on the same task; a
  diverged run never counts). An eta_0-dependent controller counts its sweep runs (one per
  swept eta_0); an optimiser that sets its own step size counts its one run per task.
* **ratio to the oracle**: the geometric mean over those runs of final loss / oracle loss
  (a diverged run counts with its initial loss, :func:`~lrgym.bench.statistics.counted_loss`;
  tasks weigh equally).
* **theta +-p**: for a learned controller, the share of (task, perturbed entry) runs within 2x of
  the unperturbed controller's run on the same task, and the worst single variant's share.
* **wins**: a learned controller wins a suite against a baseline when its ratio to the oracle
  is lower than the baseline's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lrgym.bench.statistics import counted_loss, is_diverged, task_key

Row = Mapping[str, Any]

BASELINE_LABELS: dict[str, str] = {
    "prodigy": "Prodigy",
    "schedulefree-sgd": "schedule-free",
    "schedulefree-adamw": "schedule-free",
    "dadapt-sgd": "D-Adaptation",
    "dadapt-adam": "D-Adaptation",
    "dog": "DoG",
    "mechanic-sgd": "Mechanic",
    "mechanic-adam": "Mechanic",
    "hypergradient": "hypergradient",
    "warmup-cosine": "warm-up + cosine",
}
"""The name a baseline goes by in the report (the optimiser kind's variant of one method
shares one name)."""

FACTOR = 2.0
"""Within how many times the oracle's final training loss a run counts as reliable."""


def _oracle_losses(rows: Iterable[Row]) -> dict[Any, float]:
    return {
        task_key(r): (math.inf if is_diverged(r) else float(r["final_train_loss"]))
        for r in rows
        if r["kind"] == "oracle"
    }


def _counted_runs(rows: Sequence[Row], name: str) -> list[Row]:
    """A controller's runs that the report counts: its sweep rows when it has any, else its
    rows from the task's eta_0 or at its own lr."""
    own = [r for r in rows if r["controller"] == name]
    swept = [r for r in own if r["eta0_source"] == "grid"]
    return swept or own


def _ratio(run: Row, oracle: float) -> float:
    return counted_loss(run) / oracle if oracle > 0 and math.isfinite(oracle) else math.nan


def suite_scores(rows: Sequence[Row], name: str) -> dict[str, Any]:
    """``name``'s scores on one suite's rows: runs, within 2x, ratio to the oracle."""
    oracle = _oracle_losses(rows)
    runs = [r for r in _counted_runs(rows, name) if task_key(r) in oracle]
    within = [
        not is_diverged(r) and r["final_train_loss"] <= FACTOR * oracle[task_key(r)] for r in runs
    ]
    by_task: dict[Any, list[float]] = {}
    for r in runs:
        by_task.setdefault(task_key(r), []).append(math.log(_ratio(r, oracle[task_key(r)])))
    logs = [float(np.mean(v)) for v in by_task.values()]
    return {
        "runs": len(runs),
        "within": float(np.mean(within)) if runs else math.nan,
        "ratio": float(np.exp(np.mean(logs))) if logs else math.nan,
        "diverged": sum(is_diverged(r) for r in runs),
    }


def perturbation_scores(rows: Sequence[Row], name: str) -> dict[str, Any]:
    """The share of ``name``'s perturbed runs within 2x of its unperturbed run on the same task
    (over every variant, and for the worst variant)."""
    base = {
        task_key(r): r
        for r in rows
        if r["controller"] == name and r["kind"] == "learned" and r["eta0_source"] == "task"
    }
    variants: dict[str, list[bool]] = {}
    prefix = f"{name} [theta"
    for r in rows:
        if r["kind"] == "perturbed" and r["controller"].startswith(prefix) and task_key(r) in base:
            ref = base[task_key(r)]
            ok = not is_diverged(r) and (
                is_diverged(ref) or r["final_train_loss"] <= FACTOR * ref["final_train_loss"]
            )
            variants.setdefault(r["controller"][len(name) + 1 :], []).append(ok)
    if not variants:
        return {"share": math.nan, "worst": math.nan, "worst_variant": ""}
    shares = {v: float(np.mean(oks)) for v, oks in variants.items()}
    worst = min(shares, key=shares.__getitem__)
    return {
        "share": float(np.mean([ok for oks in variants.values() for ok in oks])),
        "worst": shares[worst],
        "worst_variant": worst,
    }


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


LABELS = list(dict.fromkeys(BASELINE_LABELS.values()))
"""The baselines' names in the report, in order."""


def reliability_markdown(
    suites: Sequence[tuple[str, Sequence[Row]]], learned: Mapping[str, str]
) -> str:
    """The report of a suite group: a table per suite, and the group's leaderboard.

    Args:
        suites: ``(suite name, rows with oracle rows)`` of every member, in order.
        learned: the learned controller's name on each suite (the headline row).
    """
    header = ["suite", "controller", "runs", "within 2x", "ratio to oracle", "theta +-p"]
    header += [f"{label}: ratio (within 2x)" for label in LABELS]
    lines = [
        "# Reliability",
        "",
        "Per suite: the learned controller's share of (task, eta_0) runs within 2x of the "
        "per-task oracle (the best constant of the grid), the geometric mean of its final loss "
        "over the oracle's, theta +-p (the share of perturbed runs within 2x of the "
        "unperturbed run; the worst single variant in brackets), and each baseline's ratio and "
        "share. `*`: the learned controller's ratio is lower than the baseline's.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    # per entity (the learned controller, each baseline label): within flags, per-suite ratios
    within: dict[str, list[bool]] = {}
    ratios: dict[str, dict[str, float]] = {}
    perturbed_ok = True
    for suite, rows in suites:
        oracle = _oracle_losses(rows)
        names = {"learned": learned[suite]}
        names.update({label: b for b, label in BASELINE_LABELS.items() if _ran(rows, b)})
        for entity, name in names.items():
            runs = [r for r in _counted_runs(rows, name) if task_key(r) in oracle]
            within.setdefault(entity, []).extend(
                not is_diverged(r) and r["final_train_loss"] <= FACTOR * oracle[task_key(r)]
                for r in runs
            )
            ratios.setdefault(entity, {})[suite] = suite_scores(rows, name)["ratio"]
        pert = perturbation_scores(rows, learned[suite])
        perturbed_ok &= not math.isnan(pert["worst"]) and pert["worst"] >= 0.9
        lines.append(_suite_line(suite, rows, names, pert))
    headline = " / ".join(f"`{n}`" for n in dict.fromkeys(learned.values()))
    return "\n".join([*lines, *_group_lines(headline, within, ratios, perturbed_ok)])


def _suite_line(
    suite: str, rows: Sequence[Row], names: Mapping[str, str], pert: Mapping[str, Any]
) -> str:
    """One suite's row: the learned controller (``names["learned"]``), then each baseline."""
    mine = suite_scores(rows, names["learned"])
    cells = [
        suite,
        f"`{names['learned']}`",
        str(mine["runs"]),
        _pct(mine["within"]),
        _num(mine["ratio"]),
        f"{_pct(pert['share'])} ({_pct(pert['worst'])})",
    ]
    for label in LABELS:
        if label not in names:
            cells.append("-")
            continue
        theirs = suite_scores(rows, names[label])
        mark = " *" if mine["ratio"] < theirs["ratio"] else ""
        cells.append(f"{_num(theirs['ratio'])} ({_pct(theirs['within'])}){mark}")
    return "| " + " | ".join(cells) + " |"


def _group_lines(
    learned_names: str,
    within: Mapping[str, list[bool]],
    ratios: Mapping[str, Mapping[str, float]],
    perturbed_ok: bool,
) -> list[str]:
    """The group's leaderboard: each entity's share within 2x over all runs, its ratio over the
    suites, the suites at or below the oracle and those the learned controller wins."""
    mine_by_suite = ratios["learned"]
    lines = [
        "",
        "## Over the group",
        "",
        "Within 2x: the share of all (task, eta_0) runs over every suite. Ratio: the geometric "
        "mean over the suites of each suite's ratio to the oracle. Suites won: where the "
        "learned controller's ratio is lower.",
        "",
        "| controller | within 2x of the oracle | ratio to the oracle | suites at or below "
        "the oracle | suites the learned controller wins |",
        "|---|---|---|---|---|",
    ]
    for entity in ["learned", *LABELS]:
        if entity not in ratios:
            continue
        theirs = ratios[entity]
        overall = float(np.exp(np.mean(np.log(list(theirs.values())))))
        wins = sum(mine_by_suite[s] < theirs[s] for s in theirs)
        cells = [
            learned_names if entity == "learned" else entity,
            f"{_pct(float(np.mean(within[entity])))} of {len(within[entity])}",
            _num(overall),
            f"{sum(v <= 1.0 for v in theirs.values())}/{len(theirs)}",
            "" if entity == "learned" else f"{wins}/{len(theirs)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    both = sum(
        all(
            mine_by_suite[s] < ratios.get(b, {}).get(s, -math.inf)
            for b in ("Prodigy", "schedule-free")
        )
        for s in mine_by_suite
    )
    return [
        *lines,
        "",
        f"- suites where the learned controller is below both Prodigy and schedule-free: "
        f"{both} of {len(mine_by_suite)}",
        f"- theta +-p: every variant within 2x of the unperturbed controller on at least 90% of "
        f"the tasks of every suite: {'yes' if perturbed_ok else 'no'}",
        "",
    ]


def _ran(rows: Sequence[Row], name: str) -> bool:
    return any(r["controller"] == name for r in rows)
