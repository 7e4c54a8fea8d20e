"""The reliability report of a suite group (:mod:`lrgym.bench.reliability`), against
hand-computed figures, and the group's definition."""

from __future__ import annotations

import math

import pytest

from lrgym.bench.baselines import get_baselines
from lrgym.bench.reliability import perturbation_scores, reliability_markdown, suite_scores
from lrgym.bench.results import read_results
from lrgym.bench.statistics import with_oracle
from lrgym.bench.suites import (
    ETA0_RANGES,
    GROUP_BASELINES,
    GROUP_CONTROLLERS,
    SUITE_GROUPS,
    SUITES,
    SuiteGroup,
    get_suite,
)
from lrgym.errors import InvalidConfigError
from lrgym_agents.benchmark import plan
from lrgym_agents.benchmark.runner import run_group


def _row(controller, kind, task, loss, *, eta0=0.01, source="task", diverged=0, suite="s"):
    return {
        "controller": controller,
        "kind": kind,
        "suite": suite,
        "suite_version": 1,
        "task_index": task,
        "task_seed": 2**32 + task,
        "eta0": eta0,
        "eta0_source": source,
        "final_train_loss": math.inf if diverged else loss,
        "initial_train_loss": 2.0,
        "reward": 0.0,
        "test_loss": 1.0,
        "test_accuracy": 0.5,
        "diverged": diverged,
        "steps": 10,
        "steps_completed": 10,
        "wall_time": 1.0,
        "lrgym_version": "0",
        "curves": "",
    }


def _suite_rows(suite="s"):
    rows = []
    for task, best in ((0, 0.1), (1, 0.4)):  # the oracle: 0.1 on task 0, 0.4 on task 1
        rows += [_row("constant", "constant", task, best, eta0=1e-2, source="grid", suite=suite)]
        rows += [_row("constant", "constant", task, 9.0, eta0=1.0, source="grid", suite=suite)]
    # the learned controller: its task row, and three sweep rows per task
    rows += [
        _row("gen", "learned", 0, 0.1, suite=suite),
        _row("gen", "learned", 1, 0.4, suite=suite),
    ]
    sweep = {0: (0.05, 0.15, 0.3), 1: (0.4, 0.8, 1.0)}  # 0.3 > 2 x 0.1; 1.0 > 2 x 0.4
    for task, losses in sweep.items():
        for eta0, loss in zip((1e-5, 1e-3, 1.0), losses, strict=True):
            rows.append(_row("gen", "learned", task, loss, eta0=eta0, source="grid", suite=suite))
    # Prodigy: one run per task at its own lr, the second diverged
    rows += [_row("prodigy", "optimizer", 0, 0.2, source="fixed", suite=suite)]
    rows += [_row("prodigy", "optimizer", 1, 0.0, source="fixed", diverged=1, suite=suite)]
    rows += [
        _row("schedulefree-sgd", "optimizer", t, 0.01, source="fixed", suite=suite) for t in (0, 1)
    ]
    # theta perturbations of gen: theta0 +20% doubles-and-a-bit on task 1 (not within 2x)
    rows += [_row("gen [theta0 +20%]", "perturbed", 0, 0.15, suite=suite)]
    rows += [_row("gen [theta0 +20%]", "perturbed", 1, 0.81, suite=suite)]
    rows += [_row("gen [theta0 -20%]", "perturbed", t, 0.1, suite=suite) for t in (0, 1)]
    return with_oracle(rows)


def test_suite_scores_count_the_sweep_runs_against_each_tasks_oracle():
    scores = suite_scores(_suite_rows(), "gen")
    assert scores["runs"] == 6  # the sweep rows, not the task rows
    assert scores["within"] == pytest.approx(4 / 6)
    # geometric mean over tasks of the per-task mean log ratio
    task0 = (math.log(0.5) + math.log(1.5) + math.log(3.0)) / 3
    task1 = (math.log(1.0) + math.log(2.0) + math.log(2.5)) / 3
    assert scores["ratio"] == pytest.approx(math.exp((task0 + task1) / 2), rel=1e-12)
    prodigy = suite_scores(_suite_rows(), "prodigy")
    assert prodigy["runs"] == 2 and prodigy["within"] == 0.5 and prodigy["diverged"] == 1
    # a diverged run counts with its initial loss: 2.0 / 0.4
    assert prodigy["ratio"] == pytest.approx(math.sqrt(2.0 * 5.0))


def test_perturbation_scores_compare_with_the_unperturbed_run_on_the_same_task():
    scores = perturbation_scores(_suite_rows(), "gen")
    assert scores["share"] == pytest.approx(3 / 4)
    assert scores["worst"] == 0.5 and scores["worst_variant"] == "[theta0 +20%]"


def test_the_report_counts_suites_at_the_oracle_and_wins_per_baseline():
    suites = [("a", _suite_rows("a")), ("b", _suite_rows("b"))]
    text = reliability_markdown(suites, {"a": "gen", "b": "gen"})
    ratio = suite_scores(_suite_rows(), "gen")["ratio"]  # 1.38: above the oracle
    assert ratio > 1
    # the group's leaderboard: the learned controller, then the baselines that ran
    assert f"| `gen` | 67% of 12 | {ratio:.3g} | 0/2 |  |" in text
    assert f"| Prodigy | 50% of 4 | {math.sqrt(10):.3g} | 0/2 | 2/2 |" in text  # gen wins
    assert "| schedule-free | 100% of 4 | 0.05 | 2/2 | 0/2 |" in text
    assert "below both Prodigy and schedule-free: 0 of 2" in text
    assert "at least 90% of the tasks of every suite: no" in text
    assert f"| a | `gen` | 6 | 67% | {ratio:.3g} | 75% (50%) | 3.16 (50%) * | 0.05 (100%) |" in text


def test_the_reliability_group_covers_six_suites_or_more_with_their_kinds_settings():
    group = SUITE_GROUPS["reliability"]
    assert len(group.members) >= 6
    assert {kind for _, kind in group.members} == set(ETA0_RANGES) == set(GROUP_CONTROLLERS)
    for suite, _ in group.members:
        assert suite in SUITES and len(get_suite(suite).task_seeds) >= group.tasks
    assert min(ETA0_RANGES["sgd"]) == 1e-5 and max(ETA0_RANGES["sgd"]) == 1.0
    assert min(ETA0_RANGES["adam"]) == 1e-6 and max(ETA0_RANGES["adam"]) == 1e-1
    for kind, names in GROUP_BASELINES.items():
        chosen = {b.name for b in get_baselines(names)}
        assert {"constant", "prodigy", "dog", "hypergradient", "warmup-cosine"} <= chosen, kind


def test_a_group_plan_sweeps_its_kinds_range_and_skips_the_feature_cost_rows():
    jobs = plan(
        get_suite("digits"),
        controllers=[("gen", "x.json")],
        baselines="constant,hypergradient,prodigy",
        tasks=1,
        eta0_sweep=True,
        perturb=0.2,
        eta0_grid=ETA0_RANGES["adam"],
        feature_cost=False,
    )
    swept = sorted(j.eta0 for j in jobs if j.controller == "gen" and j.eta0_source == "grid")
    assert swept == sorted(ETA0_RANGES["adam"])
    hyper = sorted(j.eta0 for j in jobs if j.controller == "hypergradient" and j.eta0 is not None)
    assert hyper == sorted(ETA0_RANGES["adam"])
    assert sum(j.kind == "constant" for j in jobs) == 11  # the oracle's whole grid
    assert not any(j.kind == "feature-cost" for j in jobs)
    assert sum(j.kind == "perturbed" for j in jobs) == 10


def test_a_group_runs_each_suite_into_its_folder_and_writes_its_report(tmp_path):
    group = SuiteGroup("toy-group", 1, (("toy", "sgd"),), 1, "one cheap suite")
    report = run_group(
        group,
        tmp_path / "group",
        controllers=["mnist-sgd"],
        baselines="constant,prodigy",
        progress=False,
        figures=False,
    )
    rows = read_results(tmp_path / "group" / "toy" / "results.csv")
    swept = sorted(
        r["eta0"] for r in rows if r["controller"] == "mnist-sgd" and r["eta0_source"] == "grid"
    )
    assert swept == sorted(ETA0_RANGES["sgd"])
    text = report.read_text()
    assert "| toy | `mnist-sgd` | 3 |" in text and "| Prodigy | " in text
    with pytest.raises(InvalidConfigError, match="--resume"):
        run_group(group, tmp_path / "group", controllers=["mnist-sgd"], baselines="constant")
