"""Files written by lrgym 0.1.0 (``tests/data/v0.1.0``, made with the commands below on the Toy
env) still load and run: controller files of every kind, run directories with their
checkpoints (``--resume``) and a benchmark's ``results.csv``.

    lrgym train reps --env StepSizeControl-Toy-v0 --episodes 16 --samples 8 --seed 0 --out reps
    lrgym train ppo --env StepSizeControl-Toy-v0 --episodes 16 --seed 0 --out ppo
    lrgym train ppo --env StepSizeControl-Dynamic-Toy-v0 --episodes 8 --seed 0 --out ppo-dyn
    lrgym benchmark --suite toy --tasks 2 --controller reps=reps/controller.json \\
        --baselines constant,adam --perturb 0 --no-figures --no-progress --out bench

``evaluate.json`` holds what ``lrgym evaluate FILE --episodes 2 --seed 7 --json`` printed for
each controller file with 0.1.0 (compared as the golden episodes are: exactly on the recording
CPU, within ``CROSS_CPU_RTOL`` elsewhere).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_golden import CROSS_CPU_RTOL, cpu_signature

from lrgym.cli import main

OLD = Path(__file__).resolve().parent / "data" / "v0.1.0"
RUNS = ("reps", "ppo", "ppo-dyn")


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("run", RUNS)
def test_an_old_controller_file_evaluates_as_it_did(
    run: str, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = json.loads((OLD / "evaluate.json").read_text())
    path = OLD / run / "controller.json"
    assert main(["evaluate", str(path), "--episodes", "2", "--seed", "7", "--json"]) == 0
    now = _json_lines(capsys.readouterr().out)
    assert [e["seed"] for e in now] == [7, 8]
    exact = recorded["cpu"] == cpu_signature()
    for was, episode in zip(recorded[run], now, strict=True):
        for field in ("reward", "final_train_loss"):
            if exact:
                assert episode[field] == was[field], (run, field)
            else:
                assert episode[field] == pytest.approx(was[field], rel=CROSS_CPU_RTOL), (run, field)


@pytest.mark.parametrize(
    ("run", "args"),
    [
        ("reps", ["reps", "--samples", "8", "--env", "StepSizeControl-Toy-v0"]),
        ("ppo", ["ppo", "--env", "StepSizeControl-Toy-v0"]),
        ("ppo-dyn", ["ppo", "--env", "StepSizeControl-Dynamic-Toy-v0"]),
    ],
)
def test_an_old_run_directory_resumes_from_its_checkpoint(
    run: str, args: list[str], tmp_path: Path
) -> None:
    out = tmp_path / run
    shutil.copytree(OLD / run, out)
    done = len((out / "log.jsonl").read_text().splitlines())
    episodes = 24 if run != "ppo-dyn" else 12
    command = ["train", *args, "--resume", "--episodes", str(episodes), "--seed", "0"]
    assert main([*command, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(lines) > done
    assert lines[-1]["episodes_total"] == episodes
    assert json.loads((out / "controller.json").read_text())["source"]["episodes"] == episodes


def test_an_old_results_csv_makes_a_leaderboard(tmp_path: Path) -> None:
    shutil.copytree(OLD / "bench", tmp_path / "bench")
    (tmp_path / "bench" / "leaderboard.md").unlink()
    assert main(["leaderboard", str(tmp_path / "bench" / "results.csv")]) == 0
    board = (tmp_path / "bench" / "leaderboard.md").read_text()
    assert board == (OLD / "bench" / "leaderboard.md").read_text()
