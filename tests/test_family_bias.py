"""studies/family_bias.py's report on hand-made runs whose answers are known: a best rate that
one linear rule of phi1 predicts exactly, across families whose best constants differ by
decades."""

from __future__ import annotations

import math
import re
from types import ModuleType
from typing import Any

from helpers import load_study

GRID = [10.0 ** (-6 + k / 2) for k in range(13)]


def bias_module() -> ModuleType:
    return load_study("family_bias")


def rows_where_best_is(best_log10: dict[tuple[str, int], float], phi: Any) -> list[dict]:
    """Every grid rate of every (family, seed): loss 0.1 at the best rate, 1.0 elsewhere (a
    diverged run, loss inf, two decades above it)."""
    rows = []
    for (family, seed), best in best_log10.items():
        phi1, phi2 = phi(family, seed)
        for eta in GRID:
            distance = math.log10(eta) - best
            loss = 0.1 if abs(distance) < 0.01 else (math.inf if distance > 1.9 else 1.0)
            rows.append(
                {
                    "family": family,
                    "seed": str(seed),
                    "phi1": str(phi1),
                    "phi2": str(phi2),
                    "eta": str(eta),
                    "final_train_loss": str(loss),
                }
            )
    return rows


def test_a_rule_of_phi1_that_predicts_the_best_rate_is_found_and_scores_every_task() -> None:
    """best log10 eta = -0.1 phi1 - 4 exactly; each family's phi1 sits decades apart, so the
    other families' best single constant misses the held-out family."""
    module = bias_module()
    centers = {"a": -10.0, "b": -20.0, "c": -30.0}

    def phi(family: str, seed: int) -> tuple[float, float]:
        return centers[family] + 5.0 * seed, -4.0 + 0.1 * seed

    best = {(f, s): -0.1 * phi(f, s)[0] - 4.0 for f in centers for s in range(3)}
    text = module.report(rows_where_best_is(best, phi))
    assert re.search(r"log10 eta\* = -0\.100 phi1 \+ -?0\.000 phi2 \+ -4\.00;", text)
    for family in centers:
        line = next(r for r in text.splitlines() if r.startswith(f"| {family} | 0.00 |"))
        rule_within, const_error, const_within = line.split("|")[3:6]
        assert rule_within.strip() == "3/3"
        assert float(const_error) >= 0.5 and const_within.strip() != "3/3"
    # the per-family table: family b's seeds are best at 1e-2, 1e-2.5 and 1e-3, each rate
    # scores one task of three, and the tie goes to the smallest rate
    row_b = next(r for r in text.splitlines() if r.startswith("| b | 3 |"))
    assert "| 1e-3.0 | 1e-2.5 (1e-3.0 .. 1e-2.0) |" in row_b


def test_a_diverged_run_is_never_a_tasks_best() -> None:
    module = bias_module()
    rows = rows_where_best_is({("a", 0): -3.0}, lambda f, s: (-10.0, -4.0))
    for row in rows:
        if float(row["eta"]) > 0.5:
            row["final_train_loss"] = "nan"
    tasks = module.best_per_task(rows)
    assert tasks[("a", 0)]["best"] == 1e-3
    assert tasks[("a", 0)]["losses"][1.0] == math.inf


def test_the_fixed_point_fit_finds_a_rate_that_is_linear_in_phi1_per_unit_step() -> None:
    """log10 eta* = -0.25 c - 5 exactly, c = phi1 - 2 ln eta* read at the best rate; the
    starting features say nothing (the same for every task)."""
    module = bias_module()
    best = {(f, s): -1.0 - 0.5 * s - (1.0 if f == "b" else 0.0) for f in "abc" for s in range(3)}
    best.update({("c", s): -2.5 - 0.5 * s for s in range(3)})
    rows = rows_where_best_is(best, lambda f, s: (-10.0, -4.0))
    at_best = []
    for (family, seed), log10_best in best.items():
        c = -4.0 * (log10_best + 5.0)
        phi1 = c + 2 * math.log(10.0**log10_best)
        at_best.append(
            {"family": family, "seed": str(seed), "phi1_run": str(phi1), "phi2_run": "-4"}
        )
    text = module.fixed_point_report(rows, at_best)
    assert re.search(r"log10 eta\* = -0\.250 c \+ .*; median \|error\| 0\.00 decades", text)
    assert "| a | -14.0 (-16.0 .. -12.0) | -4.00 |" in text
    for family in "abc":
        assert re.search(rf"\| {family} \| 0\.00 \| 3/3 \|", text), text


def test_the_controller_is_scored_against_the_oracle_of_its_own_tasks() -> None:
    module = bias_module()
    grid = rows_where_best_is({("a", 0): -2.0, ("a", 1): -2.0}, lambda f, s: (-10.0, -4.0))
    ends = {0: "0.15", 1: "0.5"}  # 1.5x and 5x the oracle's 0.1
    theta_rows = [
        {"family": "a", "seed": str(s), "controller": "theta", "final_train_loss": loss}
        for s, loss in ends.items()
    ]
    text = module.theta_report([*grid, *theta_rows], grid)
    assert "| a | 2 | 2.74 | 1/2 | 2/2 | 2/2 |" in text  # sqrt(1.5 * 5) = 2.74
    assert "| all | 2 | 2.74 | 1/2 | 2/2 | 2/2 |" in text


def test_each_nonzero_entry_is_perturbed_both_ways_and_scored_against_the_unperturbed() -> None:
    module = bias_module()
    variants = module.perturbed([-1.0, 0.5, 0.0, 0.0, -5.0], 0.2)
    assert [label for label, _ in variants] == [
        "theta[0] x1.2", "theta[0] x0.8", "theta[1] x1.2", "theta[1] x0.8",
        "theta[4] x1.2", "theta[4] x0.8",
    ]  # fmt: skip
    assert variants[5][1] == [-1.0, 0.5, 0.0, 0.0, -4.0]
    reference = [{"family": "a", "seed": str(s), "final_train_loss": "0.1"} for s in (0, 1)]
    rows = [
        {"family": "a", "seed": "0", "controller": "theta[4] x1.2", "final_train_loss": "0.19"},
        {"family": "a", "seed": "1", "controller": "theta[4] x1.2", "final_train_loss": "inf"},
    ]
    text = module.perturbation_report(rows, reference)
    assert "| theta[4] x1.2 | 1/2 | inf (a, 1) |" in text


def test_the_fitted_rules_controller_settles_at_the_rules_rate() -> None:
    # points on the rule log10 eta* = -0.14 c + 0.15 phi2 - 0.86 (the study's fit); the
    # controller rule_theta derives must settle where the rule says, found by bisection of its
    # fixed-point equation ln eta = theta1 (2 ln eta + c) + theta2 phi2 + theta5
    module = bias_module()
    w = (-0.14, 0.15, -0.86)
    points = [(c, p, w[0] * c + w[1] * p + w[2]) for c in (1.0, 4.0, 9.0) for p in (-4.0, -1.0)]
    theta = module.rule_theta(points)
    assert theta[2] == theta[3] == 0.0
    for c, phi2 in ((2.5, -2.0), (12.0, -4.4), (0.0, 0.0)):
        low, high = -40.0, 10.0  # f(ln eta) = theta-rule minus ln eta decreases in ln eta
        for _ in range(200):
            mid = (low + high) / 2
            gap = theta[0] * (2 * mid + c) + theta[1] * phi2 + theta[4] - mid
            low, high = (mid, high) if gap > 0 else (low, mid)
        expected = math.log(10) * (w[0] * c + w[1] * phi2 + w[2])
        assert abs(low - expected) < 1e-3  # theta is rounded to 4 decimals
