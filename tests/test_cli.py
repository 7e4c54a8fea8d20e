"""The lrgym command line."""

from __future__ import annotations

import json
import math

import pytest

from lrgym.cli import main


def test_run_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--env", "StepSizeControl-Toy-v0", "--episodes", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "reward" in out and "mean reward" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("0 ", "1 "))]) == 2


def test_run_json_rows_reproduce_with_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "run",
        "--env",
        "StepSizeControl-Toy-v0",
        "--episodes",
        "2",
        "--seed",
        "3",
        "--json",
        "--theta",
        "0",
        "0",
        "0",
        "0",
        "-3",
    ]
    runs = []
    for _ in range(2):
        assert main(args) == 0
        runs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    first, second = runs
    assert [row["episode"] for row in first] == [0, 1]  # one JSON object per episode
    for row in first:
        assert row["task"]["dataset"] == "toy" and row["task"]["steps"] > 0
        assert math.isfinite(row["reward"]) and not row["diverged"]
    assert first[0]["task"] != first[1]["task"]  # each episode is a fresh task
    keys = ("reward", "task", "diverged", "final_train_loss", "test_accuracy")
    assert [[row[k] for k in keys] for row in first] == [[row[k] for k in keys] for row in second]


def test_bad_arguments_give_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--env", "StepSizeControl-Toy-v0", "--env-kwargs", '{"optimizer": "x"}'])
    assert code == 2
    assert "optimizer='x'" in capsys.readouterr().err
