"""``lrgym benchmark``: suites, the plan, results.csv, resume and the leaderboard."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import lrgym
from lrgym.bench.baselines import BASELINES, LR_GRID
from lrgym.bench.leaderboard import summary_text
from lrgym.bench.results import RESULT_COLUMNS, read_results
from lrgym.bench.suites import SUITE_SEED_BASE, SUITES, get_suite
from lrgym.cli import main
from lrgym.controllers.files import LogLinearFile, save_controller
from lrgym.errors import DatasetNotFoundError, InvalidConfigError
from lrgym_agents.benchmark import plan, run_benchmark
from lrgym_agents.collect import episode_seeds

ISSUE_COLUMNS = [
    "controller",
    "suite",
    "suite_version",
    "task_seed",
    "eta0",
    "final_train_loss",
    "reward",
    "test_loss",
    "test_accuracy",
    "diverged",
    "steps",
    "wall_time",
    "lrgym_version",
]
THETA = [0.05, -0.05, 0.0, 0.0, -4.0]


def controller_file(folder: Path, name: str = "learned") -> Path:
    saved = LogLinearFile(
        theta=tuple(THETA),
        theta_cov=tuple(tuple(0.01 * (i == j) for j in range(5)) for i in range(5)),
        env_id="StepSizeControl-Toy-v0",
        env_kwargs={},
    )
    return save_controller(saved, folder / f"{name}.json")


def without_wall_time(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in read_results(path)]


def test_suites_are_json_and_their_seeds_are_never_drawn_in_training() -> None:
    for name, suite in SUITES.items():
        assert get_suite(name) is suite
        assert json.loads(json.dumps(suite.to_dict())) == suite.to_dict()
        assert len(set(suite.task_seeds)) == len(suite.task_seeds) > 0
        assert min(suite.task_seeds) >= SUITE_SEED_BASE
        gym.spec(suite.env_id)  # registered
    # training seeds are 32-bit by construction (many runs, iterations, batches)
    drawn = [s for seed in range(20) for it in range(50) for s in episode_seeds(seed, it, 64)]
    assert max(drawn) < SUITE_SEED_BASE <= min(min(s.task_seeds) for s in SUITES.values())
    assert {"digits", "mnist-family", "mnist-full", "mnist-mlp", "mnist-rmsprop"} <= set(SUITES)
    assert {"fashion-mnist", "cifar10-quick"} <= set(SUITES)
    full = SUITES["mnist-full"].env_kwargs
    assert full["architecture"] == "lenet" and full["steps"] == [2000, 2000]


def test_unknown_suite_or_baseline_lists_the_allowed_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidConfigError, match=r"'digits'.*'mnist-family'"):
        get_suite("imagenet")
    assert main(["benchmark", "--suite", "imagenet", "--out", str(tmp_path / "a")]) == 2
    assert "'mnist-full'" in capsys.readouterr().err
    code = main(["benchmark", "--suite", "toy", "--baselines", "adam,lion", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'lion'" in err and "'prodigy'" in err and "'plateau'" in err


def test_plan_runs_the_grid_the_baselines_the_variants_and_the_sweep() -> None:
    suite = get_suite("toy")
    jobs = plan(suite, controllers=[("mine", "x.json")], tasks=2, perturb=0.2)
    per_task = len(LR_GRID) + (len(BASELINES) - 1) + 1 + 2 + 10
    assert len(jobs) == 2 * per_task
    assert len({j.key for j in jobs}) == len(jobs)
    names = {j.controller for j in jobs}
    assert {"mine [every 10, dense]", "mine [every 10, hold]", "mine [theta4 -20%]"} <= names
    optimizers = [j for j in jobs if j.kind == "optimizer"]
    assert optimizers and all(j.eta0_source == "fixed" for j in optimizers)
    swept = plan(suite, controllers=[("mine", "x.json")], tasks=2, eta0_sweep=True, perturb=0)
    grid = [j for j in swept if j.eta0_source == "grid" and j.kind != "constant"]
    assert len(grid) == 2 * len(LR_GRID) * (1 + 6)  # the controller + 6 eta0 baselines
    with pytest.raises(InvalidConfigError, match=r"1 \.\. 20"):
        plan(suite, tasks=21)


@pytest.mark.slow
def test_a_benchmark_writes_the_documented_csv_leaderboard_and_figures(tmp_path: Path) -> None:
    learned = controller_file(tmp_path)
    out = tmp_path / "out"
    csv_path = run_benchmark(
        "toy",
        out,
        controllers=[f"mine={learned}"],
        baselines="constant,cosine,hypergradient,adam",
        tasks=2,
        eta0_sweep=True,
        progress=False,
    )
    with csv_path.open() as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == RESULT_COLUMNS and set(ISSUE_COLUMNS) <= set(header)
    rows = read_results(csv_path)
    suite = get_suite("toy")
    for index in range(2):
        constants = [r for r in rows if r["kind"] == "constant" and r["task_index"] == index]
        assert sorted(r["eta0"] for r in constants) == list(LR_GRID)
        (oracle,) = [r for r in rows if r["kind"] == "oracle" and r["task_index"] == index]
        assert oracle["final_train_loss"] == min(r["final_train_loss"] for r in constants)
        assert {r["task_seed"] for r in rows if r["task_index"] == index} == {
            suite.task_seeds[index]
        }
    for row in rows:
        if row["curves"]:
            with np.load(out / row["curves"], allow_pickle=False) as curves:
                assert curves["losses"].shape == (row["steps_completed"],)
    # the learned row is exactly the env's episode of the same theta on the same task (the
    # same run on one torch thread, here as in the benchmark's workers)
    env = gym.make("StepSizeControl-Toy-v0")
    env.reset(seed=suite.task_seeds[1])
    _, reward, *_, info = env.step(env.unwrapped.theta_to_action(THETA))
    (mine,) = [
        r
        for r in rows
        if r["controller"] == "mine" and r["task_index"] == 1 and r["eta0_source"] == "task"
    ]
    assert mine["reward"] == reward and mine["final_train_loss"] == info["final_train_loss"]
    assert mine["eta0"] == info["task"]["eta0"] and mine["lrgym_version"] == lrgym.__version__
    # the leaderboard comes from the CSV alone, byte for byte
    written = (out / "leaderboard.md").read_bytes()
    assert main(["leaderboard", str(csv_path), "--out", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_bytes() == written
    assert b"| mine |" in written and b"Sensitivity to eta0" in written
    summary = summary_text(rows).splitlines()  # what the command prints
    names = [line.split("  ")[0] for line in summary[2:]]
    logs: dict[float, list[float]] = {}  # the best constant: lowest geometric-mean loss
    for r in rows:
        if r["kind"] == "constant":
            loss = r["initial_train_loss"] if r["diverged"] else r["final_train_loss"]
            logs.setdefault(r["eta0"], []).append(np.log(loss))
    best = {"eta0": min(logs, key=lambda eta0: np.mean(logs[eta0]))}
    assert "from every eta0 of the grid" in summary[1] and "mine" in names and "oracle" in names
    assert [n for n in names if n.startswith("constant")] == [f"constant {best['eta0']:.0e}"]
    assert not any("%]" in n for n in names)  # no perturbed variant
    for figure in ("sensitivity", "loss_curves", "lr_trajectories", "perturbation"):
        assert (out / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_existing_benchmark_needs_resume_and_the_same_settings(tmp_path: Path) -> None:
    run_benchmark("toy", tmp_path, baselines="step", tasks=1, progress=False, figures=False)
    with pytest.raises(InvalidConfigError, match="--resume"):
        run_benchmark("toy", tmp_path, baselines="step", tasks=1, progress=False)
    with pytest.raises(InvalidConfigError, match="tasks"):
        run_benchmark("toy", tmp_path, baselines="step", tasks=2, resume=True, progress=False)
    before = (tmp_path / "results.csv").read_bytes()
    run_benchmark("toy", tmp_path, baselines="step", tasks=1, resume=True, progress=False)
    assert (tmp_path / "results.csv").read_bytes() == before  # nothing ran again


def quiet_benchmark(suite: Any, out: Path, **options: Any) -> Path:
    """``run_benchmark`` without progress bar, figures or perturbed controllers."""
    return run_benchmark(suite, out, perturb=0, progress=False, figures=False, **options)


def test_a_suite_of_your_own_runs_its_env_kwargs_under_its_own_name(tmp_path: Path) -> None:
    learned = controller_file(tmp_path)
    short = dataclasses.replace(get_suite("toy"), name="toy-short", env_kwargs={"steps": [7, 7]})
    out = tmp_path / "out"
    csv_path = quiet_benchmark(
        short, out, controllers=[f"mine={learned}"], baselines="constant", tasks=1
    )
    rows = read_results(csv_path)
    assert {r["suite"] for r in rows} == {"toy-short"} and {r["steps"] for r in rows} == {7}
    settings = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert settings["suite"] == short.to_dict()
    env = gym.make("StepSizeControl-Toy-v0", steps=[7, 7])  # the same run, by hand
    env.reset(seed=short.task_seeds[0])
    _, reward, *_ = env.step(env.unwrapped.theta_to_action(THETA))
    (mine,) = [r for r in rows if r["controller"] == "mine"]
    assert mine["reward"] == reward
    impostor = dataclasses.replace(short, name="toy")  # another definition under a suite's name
    with pytest.raises(InvalidConfigError, match="name of its own"):
        run_benchmark(impostor, tmp_path / "other", baselines="constant", progress=False)


def test_a_benchmark_resumes_with_a_moved_controller_file_but_not_a_changed_one(
    tmp_path: Path,
) -> None:
    first = controller_file(tmp_path)
    out = tmp_path / "out"

    def run(path: Path, resume: bool) -> None:
        controllers = [f"mine={path}"]
        quiet_benchmark(
            "toy", out, controllers=controllers, baselines="step", tasks=1, resume=resume
        )

    run(first, resume=False)
    before = without_wall_time(out / "results.csv")
    moved = tmp_path / "elsewhere" / "learned.json"  # e.g. a pretrained file, lrgym reinstalled
    moved.parent.mkdir()
    first.rename(moved)
    run(moved, resume=True)
    assert without_wall_time(out / "results.csv") == before
    changed = json.loads(moved.read_text())
    changed["theta"][4] -= 1.0
    moved.write_text(json.dumps(changed))
    with pytest.raises(InvalidConfigError, match="controllers differ"):
        run(moved, resume=True)


def test_a_suite_without_its_data_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        run_benchmark("cifar10-quick", tmp_path / "out", data_root=str(tmp_path), progress=False)
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "cifar10-quick" in message
    assert "Fix:" in message and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_killed_benchmark_resumes_without_repeating_a_row(tmp_path: Path) -> None:
    args = ["--suite", "digits", "--tasks", "1", "--baselines", "constant,step", "--no-figures"]
    command = [sys.executable, "-m", "lrgym.cli", "benchmark", *args, "--no-progress"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed)], env=environment)
    csv_path = killed / "results.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if csv_path.exists() and len(csv_path.read_text().splitlines()) >= 4:  # 3 rows
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = read_results(csv_path)
    assert 3 <= len(finished) < 12
    subprocess.run([*command, "--out", str(killed), "--resume"], env=environment, check=True)
    resumed = read_results(csv_path)
    assert len(resumed) == 12 + 1  # the 11 constants, step and the oracle: no row twice
    for row in finished:  # rows finished before the kill were not run again
        assert row in resumed
    options = {"baselines": "constant,step", "tasks": 1, "progress": False}
    whole = run_benchmark("digits", tmp_path / "whole", figures=False, **options)  # type: ignore[arg-type]
    assert without_wall_time(csv_path) == without_wall_time(whole)


@pytest.mark.slow
def test_process_workers_give_the_serial_results(tmp_path: Path) -> None:
    options = {"baselines": "constant,plateau,prodigy", "tasks": 2, "progress": False}
    serial = run_benchmark("toy", tmp_path / "serial", figures=False, **options)  # type: ignore[arg-type]
    process = run_benchmark(
        "toy",
        tmp_path / "process",
        backend="process",
        workers=2,
        figures=False,
        **options,  # type: ignore[arg-type]
    )
    assert without_wall_time(serial) == without_wall_time(process)


@pytest.mark.slow
def test_a_policy_controller_acts_on_each_tasks_starting_features(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3")
    from lrgym_agents.learners.sb3 import train_sb3

    train_sb3("ppo", "StepSizeControl-Toy-v0", tmp_path / "ppo", episodes=32, progress=False)
    policy = tmp_path / "ppo" / "controller.json"
    csv_path = run_benchmark(
        "toy",
        tmp_path / "out",
        controllers=[f"ppo={policy}"],
        baselines="step",
        tasks=2,
        perturb=0,
        progress=False,
        figures=False,
    )
    saved = lrgym.load_controller(policy)
    env = gym.make("StepSizeControl-Toy-v0")
    rows = [r for r in read_results(csv_path) if r["controller"] == "ppo"]
    assert len(rows) == 2
    for row in rows:  # the env's episode with the policy's theta for this task
        observation, _ = env.reset(seed=row["task_seed"])
        action = env.unwrapped.theta_to_action(saved.theta_for(observation))
        _, reward, *_ = env.step(action)
        assert row["reward"] == reward


@pytest.mark.slow
def test_suites_on_downloaded_data_run_where_the_files_are(fake_root: Path, tmp_path: Path) -> None:
    csv_path = run_benchmark(
        "fashion-mnist",
        tmp_path,
        baselines="adam",
        tasks=1,
        data_root=str(fake_root),
        progress=False,
    )
    (row,) = read_results(csv_path)
    assert row["suite"] == "fashion-mnist" and row["steps_completed"] == row["steps"] > 0
    assert row["final_train_loss"] < row["initial_train_loss"]
    # a CIFAR-10 quick run takes a minute on a CPU: here only its suite's tasks are built
    suite = get_suite("cifar10-quick")
    env = gym.make(suite.env_id, **suite.env_kwargs, data_root=str(fake_root))
    env.reset(seed=suite.task_seeds[0])
    assert env.unwrapped.task.architecture == "cifar-quick"
