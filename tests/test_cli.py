"""The lrgym command line."""

from __future__ import annotations

import json

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
        "--json",
        "--theta",
        "0",
        "0",
        "0",
        "0",
        "-3",
    ]
    main(args)
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    main(args)
    second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for a, b in zip(first, second, strict=True):
        assert a["reward"] == b["reward"] and a["task"] == b["task"]


def test_bad_arguments_give_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--env", "StepSizeControl-Toy-v0", "--env-kwargs", '{"optimizer": "x"}'])
    assert code == 2
    assert "optimizer='x'" in capsys.readouterr().err
