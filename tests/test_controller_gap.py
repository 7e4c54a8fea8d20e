"""studies/controller_gap.py's table: the best single constant, the oracle and the verdict on
hand-made rows whose answers are known."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from helpers import load_study
from test_leaderboard import make_row

from lrgym.bench.baselines import LR_GRID


def gap_module() -> ModuleType:
    return load_study("controller_gap")


def suite_rows(controller_loss: float) -> list[dict[str, Any]]:
    """Two tasks; constants best at 1e-2 on task 0 (loss 0.1) and 1e-1 on task 1 (loss 0.2),
    every other grid rate 1.0; the controller ends at ``controller_loss`` from every eta_0."""
    rows = []
    for task, best in ((0, 1e-2), (1, 0.1)):
        for rate in LR_GRID:
            loss = (0.1 if task == 0 else 0.2) if rate == best else 1.0
            rows.append(make_row(task_index=task, eta0=rate, final_train_loss=loss))
        for rate, source in [(0.05, "task"), *((r, "grid") for r in LR_GRID)]:
            rows.append(
                make_row(
                    controller="mnist-sgd",
                    kind="learned",
                    task_index=task,
                    eta0=rate,
                    eta0_source=source,
                    final_train_loss=controller_loss,
                )
            )
        rows.append(
            make_row(
                controller="dog", kind="optimizer", task_index=task, eta0=1.0, eta0_source="fixed"
            )
        )
    return rows


def test_a_controller_within_2x_of_the_oracle_everywhere_holds() -> None:
    (line,) = gap_module().suite_lines(suite_rows(controller_loss=0.15))
    assert line["verdict"] == "holds"
    assert line["within 2x of oracle (from eta_0 / over the grid)"] == "100% / 100%"
    assert line["oracle"].startswith("0.141")  # geometric mean of 0.1 and 0.2
    # 1e-2: geometric mean of 0.1 and 1.0 (0.316); 1e-1: of 1.0 and 0.2 (0.447)
    assert line["best single constant"].endswith("(lr 0.01)")
    assert line["constant over the grid within 2x"] == f"{1 / len(LR_GRID):.0%}"
    assert "dog" in line


def test_a_controller_within_2x_on_half_the_tasks_fails() -> None:
    (line,) = gap_module().suite_lines(suite_rows(controller_loss=0.3))  # > 2 x 0.1, < 2 x 0.2
    assert line["verdict"] == "fails"
    assert line["within 2x of oracle (from eta_0 / over the grid)"] == "50% / 50%"


def test_baselines_count_on_the_controllers_tasks_only_and_a_shared_run_once() -> None:
    """A default run over more tasks (here a task 2 where every constant is 10x worse) and the
    gap run's rows repeated, as when both runs' files are read: the line is the gap run's."""
    rows = suite_rows(controller_loss=0.15)
    (alone,) = gap_module().suite_lines(rows)
    extra = [make_row(task_index=2, eta0=rate, final_train_loss=10.0) for rate in LR_GRID]
    extra += [make_row(controller="dog", kind="optimizer", task_index=2, eta0=1.0)]
    repeated = [r for r in rows if r["kind"] != "learned"]
    (merged,) = gap_module().suite_lines([*rows, *extra, *repeated])
    assert merged == alone and merged["suite"].endswith("(2 tasks)")
