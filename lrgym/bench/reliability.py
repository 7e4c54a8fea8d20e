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


def reliability_markdown(
    suites: Sequence[tuple[str, Sequence[Row]]], learned: Mapping[str, str]
) -> str:
    """The report of a suite group.

    Args:
        suites: ``(suite name, rows with oracle rows)`` of every member, in order.
        learned: the learned controller's name on each suite (the headline row).
    """
    lines = [
        "# Reliability",
        "",
        "Per suite: the learned controller's share of (task, eta_0) runs within 2x of the "
        "per-task oracle (the best constant of the grid), its geometric-mean final loss over "
        "the oracle's, the same for each baseline, and theta +-p (the share of perturbed runs "
        "within 2x of the unperturbed run; the worst single variant in brackets).",
        "",
    ]
    labels = list(dict.fromkeys(BASELINE_LABELS.values()))
    header = ["suite", "controller", "runs", "within 2x", "ratio to oracle", "theta +-p"]
    header += [f"{label} (ratio)" for label in labels]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    totals: dict[str, list[float]] = {"within": [], "logs": []}
    at_oracle = beats_both = suites_count = 0
    wins = dict.fromkeys(labels, 0)
    perturbed: list[float] = []
    every_suite_perturbed = True
    for suite, rows in suites:
        name = learned[suite]
        mine = suite_scores(rows, name)
        pert = perturbation_scores(rows, name)
        cells = [
            suite,
            f"`{name}`",
            str(mine["runs"]),
            _pct(mine["within"]),
            _num(mine["ratio"]),
            f"{_pct(pert['share'])} ({_pct(pert['worst'])})",
        ]
        ratios: dict[str, float] = {}
        for baseline, label in BASELINE_LABELS.items():
            if any(r["controller"] == baseline for r in rows):
                ratios[label] = suite_scores(rows, baseline)["ratio"]
        for label in labels:
            value = ratios.get(label, math.nan)
            mark = " *" if not math.isnan(value) and mine["ratio"] < value else ""
            cells.append(_num(value) + mark)
            if mark:
                wins[label] += 1
        lines.append("| " + " | ".join(cells) + " |")
        suites_count += 1
        at_oracle += mine["ratio"] <= 1.0
        both = [ratios.get("Prodigy", math.nan), ratios.get("schedule-free", math.nan)]
        beats_both += all(not math.isnan(v) and mine["ratio"] < v for v in both)
        oracle = _oracle_losses(rows)
        for r in _counted_runs(rows, name):
            if task_key(r) in oracle:
                totals["within"].append(
                    float(
                        not is_diverged(r) and r["final_train_loss"] <= FACTOR * oracle[task_key(r)]
                    )
                )
        totals["logs"].append(math.log(mine["ratio"]))
        perturbed.append(pert["share"])
        every_suite_perturbed &= not math.isnan(pert["worst"]) and pert["worst"] >= 0.9
    lines += [
        "",
        "`*`: the learned controller's ratio is lower than the baseline's on that suite.",
        "",
        "## Over the group",
        "",
        f"- within 2x of the oracle: {_pct(float(np.mean(totals['within'])))} of "
        f"{len(totals['within'])} (task, eta_0) runs",
        f"- ratio to the oracle, geometric mean over suites: "
        f"{_num(float(np.exp(np.mean(totals['logs']))))}",
        f"- suites at or below the oracle: {at_oracle} of {suites_count}",
        f"- suites below both Prodigy and schedule-free: {beats_both} of {suites_count}",
        "- suites won against each baseline: "
        + ", ".join(f"{label} {wins[label]}/{suites_count}" for label in labels),
        f"- theta +-p: every variant within 2x on at least 90% of tasks of every suite: "
        f"{'yes' if every_suite_perturbed else 'no'}",
        "",
    ]
    return "\n".join(lines)
