"""The training workflow with REPS: collectors (serial, process, Ray), train/checkpoint/resume,
controller files, and the ``lrgym train reps`` / ``lrgym evaluate`` commands (the other
learners: tests/test_learners.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import lrgym
from lrgym.cli import main
from lrgym.controllers.files import ControllerFileError, LogLinearFile
from lrgym.errors import InvalidConfigError
from lrgym_agents.collect import Collector, Episode, episode_seeds, make_collector
from lrgym_agents.evaluation import evaluate_controller
from lrgym_agents.learners.reps import REPSConfig
from lrgym_agents.loop import train
from lrgym_agents.pools import CollectorError, ProcessPool, SerialPool, resolve_backend
from lrgym_agents.rundir import CheckpointError, read_checkpoint

TOY = "StepSizeControl-Toy-v0"
SHORT = {"steps": [20, 30]}  # Toy episodes of a few hundredths of a second
DIGITS = "StepSizeControl-Digits-v0"  # a CNN: its float sums depend on torch's thread count
DIGITS_SHORT = {"steps": [60, 100]}
CONFIG = REPSConfig(samples=5)


def batch(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.6, 0.6, (count, 5)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# collectors


def test_episode_seeds_are_fixed_and_differ_between_iterations() -> None:
    first = episode_seeds(3, 0, 6)
    assert first == episode_seeds(3, 0, 6) and len(set(first)) == 6
    assert first[:4] == episode_seeds(3, 0, 4)  # a prefix does not depend on the count
    assert set(first).isdisjoint(episode_seeds(3, 1, 6))
    assert first != episode_seeds(4, 0, 6)


@pytest.fixture(scope="module")
def serial_results() -> list[Episode]:
    with Collector(DIGITS, DIGITS_SHORT, backend="serial") as collector:
        assert isinstance(collector.pool, SerialPool)
        return collector.run(batch(5), episode_seeds(0, 0, 5), keep_curves=True)


@pytest.mark.slow
def test_process_backend_matches_serial_bit_for_bit_on_cnn_episodes(
    serial_results: list[Episode],
) -> None:
    done: list[int] = []
    with Collector(DIGITS, DIGITS_SHORT, backend="process", workers=2) as collector:
        seeds = episode_seeds(0, 0, 5)
        results = collector.run(batch(5), seeds, keep_curves=True, progress=done.append)
        again = collector.run(batch(2, seed=1), seeds[:2])  # the workers serve many batches
    assert [e.seed for e in results] == seeds  # in submission order
    assert [e.reward for e in results] == [e.reward for e in serial_results]
    # curves too, bit for bit: the same ops in each process, each with one torch thread
    assert results == serial_results and sum(done) == 5
    assert len(again) == 2 and again[0].reward != results[0].reward


@pytest.mark.slow
def test_a_worker_that_dies_ends_the_run_with_an_error_naming_its_seed() -> None:
    seeds = [11, 12]
    with Collector(DIGITS, {"steps": [20000, 20000]}, backend="process", workers=2) as collector:
        assert isinstance(collector.pool, ProcessPool)
        pids = collector.pool.pids
        victim = pids[0]  # gets the first episode
        assert victim is not None
        killer = threading.Timer(1.0, os.kill, (victim, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        with pytest.raises(CollectorError, match=r"worker 0 .* died during the episode with "
                           r"reset\(seed=11\) \(exit code -9\)"):  # fmt: skip
            collector.run(batch(2), seeds)
        assert time.monotonic() - started < 30  # no wait for the other worker's long episode
        with pytest.raises(CollectorError, match="closed"):
            collector.run(batch(1), [1])
    for pid in pids:  # both workers are gone (the survivor was stopped, not left running)
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_an_episode_that_raises_in_a_worker_is_reported_with_its_seed() -> None:
    with make_collector("process", "failing_env:Failing-v0", workers=2) as collector:
        assert len(collector.run(batch(3), [2, 4, 6])) == 3
        with pytest.raises(CollectorError, match=r"reset\(seed=7\).*odd seed 7") as error:
            collector.run(batch(3), [2, 7, 4])
    assert isinstance(error.value.__cause__, ValueError)
    assert "Traceback" in str(error.value)  # the worker's traceback


@pytest.mark.slow
def test_a_worker_that_cannot_build_the_env_is_an_error_not_a_hang() -> None:
    with pytest.raises(CollectorError, match=r"building the env.*widths"):
        make_collector("process", TOY, {"architecture": "mlp", "widths": []}, workers=2)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray head started on loopback for the test, stopped afterwards.

    Token authentication is turned off for this throwaway local cluster (head and driver).
    """
    pytest.importorskip("ray")  # the ray extra; CI installs it (.ci/run)
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the Ray head did not come up within 60 s")
        yield address
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        patch.undo()


@pytest.mark.slow
def test_ray_backend_matches_serial(serial_results: list[Episode], ray_head: str) -> None:
    with make_collector("ray", DIGITS, DIGITS_SHORT, workers=2, ray_address=ray_head) as collector:
        results = collector.run(batch(5), episode_seeds(0, 0, 5), keep_curves=True)
    assert results == serial_results


def test_collectors_reject_bad_batches_and_settings() -> None:
    with Collector(TOY, SHORT) as collector:
        with pytest.raises(InvalidConfigError, match=r"shape \(2, 5\) for 3 seeds"):
            collector.run(batch(2), [1, 2, 3])
        bad = batch(1)
        bad[0, 0] = np.nan
        with pytest.raises(InvalidConfigError, match="finite"):
            collector.run(bad, [1])
    with pytest.raises(InvalidConfigError, match="'serial', 'process', 'ray'"):
        make_collector("threads", TOY)
    with pytest.raises(InvalidConfigError, match="serial backend runs one at a time"):
        make_collector("serial", TOY, workers=2)
    with pytest.raises(InvalidConfigError, match="needs backend='ray'"):
        make_collector("process", TOY, workers=2, ray_address="127.0.0.1:1")


@pytest.mark.slow
def test_without_a_backend_more_workers_mean_processes_as_on_the_command_line() -> None:
    assert resolve_backend(None, 1) == "serial" and resolve_backend(None, 2) == "process"
    assert resolve_backend(None, 2, "127.0.0.1:1") == "ray"
    assert resolve_backend("serial", 2) == "serial"  # a named backend is kept (and checked)
    with make_collector(None, TOY, workers=2) as collector:
        assert isinstance(collector.pool, ProcessPool)
    with make_collector(None, TOY) as collector:
        assert isinstance(collector.pool, SerialPool)


# --------------------------------------------------------------------------------------------
# train, checkpoint, resume


class Interrupting(Collector):
    """Raises KeyboardInterrupt (a Ctrl-C) after ``limit`` episodes in all."""

    def __init__(self, limit: int) -> None:
        super().__init__(TOY, SHORT)
        self.left = limit

    def run(self, actions: np.ndarray, seeds: Sequence[int], **kwargs: Any) -> list[Episode]:
        episodes = []
        for action, seed in zip(actions, seeds, strict=True):
            if self.left == 0:
                raise KeyboardInterrupt
            self.left -= 1
            episodes += super().run(action[None], [seed], **kwargs)
        return episodes


def final_state(out: Path) -> tuple[Any, ...]:
    payload = read_checkpoint(out / "checkpoint.json")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    controller = lrgym.load_controller(out / "controller.json")
    return payload["state"], [row["rewards"] for row in log], controller.theta


def train_reps(out: Path, **extra: Any) -> Any:
    """The REPS run on short Toy episodes every test here resumes, interrupts or refuses."""
    return train(
        "reps",
        TOY,
        out,
        episodes=4 * CONFIG.samples,
        config=CONFIG,
        seed=7,
        env_kwargs=SHORT,
        **extra,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    train_reps(out, progress=False)
    return out


def test_train_writes_log_checkpoint_and_controllers(uninterrupted: Path) -> None:
    log = [json.loads(line) for line in (uninterrupted / "log.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in log] == [0, 1, 2, 3]
    assert all(len(row["rewards"]) == CONFIG.samples for row in log)
    assert log[1]["seeds"] == episode_seeds(7, 1, CONFIG.samples)
    assert all(0 <= row["learner"]["kl"] <= CONFIG.epsilon + 1e-3 for row in log)
    assert all(row["seconds"] > 0 for row in log)
    assert [row["episodes_total"] for row in log] == [5, 10, 15, 20]
    payload = read_checkpoint(uninterrupted / "checkpoint.json")
    assert payload["state"]["iteration"] == 4 and payload["episodes"] == 20
    assert payload["state"]["mean"] == log[-1]["learner"]["action"]
    spec = json.loads((uninterrupted / "run.json").read_text())
    assert spec["seed"] == 7 and spec["env_id"] == TOY
    initial = lrgym.load_controller(uninterrupted / "controller-initial.json")
    learned = lrgym.load_controller(uninterrupted / "controller.json")
    assert initial.theta == (0.0, 0.0, 0.0, 0.0, -5.0)  # the env's theta_center
    expected = np.array([0, 0, 0, 0, -5]) + np.array([1, 1, 1, 1, 10]) * np.clip(
        log[-1]["learner"]["action"], -1, 1
    )
    np.testing.assert_allclose(learned.theta, expected, rtol=1e-12)
    assert learned.env_id == TOY and learned.source["iteration"] == 4
    assert learned.lrgym_version == lrgym.__version__ and learned.features["gamma"] == 0.9


@pytest.mark.parametrize("limit", [7, 10])  # mid-iteration (2nd of 5 samples), and at its end
def test_interrupted_and_resumed_run_ends_with_the_same_policy(
    tmp_path: Path, uninterrupted: Path, limit: int
) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_reps(tmp_path, progress=False, collector=Interrupting(limit))
    done = read_checkpoint(tmp_path / "checkpoint.json")["state"]["iteration"]
    assert done == limit // CONFIG.samples  # only complete iterations are saved
    train(
        "reps", TOY, tmp_path, episodes=20, config=CONFIG, seed=7, env_kwargs=SHORT,
        resume=True, progress=False,
    )  # fmt: skip
    assert final_state(tmp_path) == final_state(uninterrupted)


def train_command(out: Path, *args: str) -> list[str]:
    """``lrgym train reps`` on Toy into ``out``, as a subprocess command line."""
    cli = [sys.executable, "-m", "lrgym.cli", "train", "reps", "--env", TOY, "--no-progress"]
    return [*cli, "--out", str(out), *args]


def test_resume_refuses_bad_checkpoints_and_other_settings(
    tmp_path: Path, uninterrupted: Path
) -> None:
    def resume(out: Path, **changes: Any) -> None:
        settings: dict[str, Any] = {"episodes": 20, "config": CONFIG, "seed": 7}
        settings.update(changes)
        train("reps", TOY, out, env_kwargs=SHORT, resume=True, progress=False, **settings)

    with pytest.raises(CheckpointError, match="nothing to resume"):
        resume(tmp_path / "empty")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("run.json", "log.jsonl", "checkpoint.json"):
        (copy / name).write_bytes((uninterrupted / name).read_bytes())
    with pytest.raises(CheckpointError, match="seed=8"):
        resume(copy, seed=8)
    with pytest.raises(CheckpointError, match="already holds a run"):
        train_reps(copy)
    checkpoint = copy / "checkpoint.json"
    text = checkpoint.read_text()
    checkpoint.write_text(text[: len(text) // 2])  # a partial write
    with pytest.raises(CheckpointError, match="is partial or not readable JSON"):
        resume(copy)
    content = json.loads(text)
    content["payload"]["state"]["mean"][0] += 1.0  # altered
    checkpoint.write_text(json.dumps(content))
    with pytest.raises(CheckpointError, match="checksum"):
        resume(copy)
    assert (copy / "log.jsonl").read_bytes() == (uninterrupted / "log.jsonl").read_bytes()


# --------------------------------------------------------------------------------------------
# controller files and evaluation


def test_controller_file_round_trip_and_errors(tmp_path: Path) -> None:
    saved = LogLinearFile(
        theta=(0.1, -0.2, 0.0, 0.3, -4.0),
        theta_cov=tuple(tuple(float(i == j) for j in range(5)) for i in range(5)),
        env_id=TOY,
        env_kwargs=SHORT,
        lr_bounds=(1e-6, 1.0),
        features={"gamma": 0.9, "every": 1, "estimate": "dense"},
        lrgym_version=lrgym.__version__,
    )
    path = lrgym.save_controller(saved, tmp_path / "c.json")
    loaded = lrgym.load_controller(path)
    assert loaded == saved
    controller = loaded.controller()
    assert controller.theta.tolist() == list(saved.theta)
    content = json.loads(path.read_text())
    for change, message in (
        ({"version": 99}, "upgrade lrgym"),
        ({"format": "other"}, "not an lrgym controller file"),
        ({"theta": [1, 2]}, "malformed"),
    ):
        path.write_text(json.dumps({**content, **change}))
        with pytest.raises(ControllerFileError, match=message):
            lrgym.load_controller(path)
    path.write_text("{")
    with pytest.raises(ControllerFileError, match="not readable JSON"):
        lrgym.load_controller(path)
    with pytest.raises(ControllerFileError, match="does not exist"):
        lrgym.load_controller(tmp_path / "missing.json")


def learned_in_form(out: Path, **form: Any) -> lrgym.SavedController:
    """The controller file of one random-search iteration on Toy with the controller ``form``
    (``max_change``, ``start``)."""
    env_kwargs = {**SHORT, **form}
    train(
        "random", TOY, out, episodes=8, config={"samples": 8}, env_kwargs=env_kwargs, progress=False
    )
    return lrgym.load_controller(out / "controller.json")


def test_a_controller_learned_in_the_bounded_form_keeps_its_bound_in_file_and_evaluation(
    tmp_path: Path,
) -> None:
    saved = learned_in_form(tmp_path, max_change=1.2)
    assert saved.max_change == 1.2
    for episode in evaluate_controller(saved, episodes=3, seed=50, keep_curves=True):
        rates = episode.curves.learning_rates
        assert np.max(np.abs(np.diff(np.log(rates)))) <= np.log(1.2) + 1e-12
    # the env applies it too: the largest bias asks for lr_bounds' top from eta_0
    for max_change, within in ((1.2, True), (None, False)):
        env = gym.make(TOY, **SHORT, max_change=max_change)
        env.reset(seed=0)
        env.step(np.array([0, 0, 0, 0, 1], dtype=np.float32))
        steps = np.abs(np.diff(np.log(env.unwrapped.last_result.curves.learning_rates)))
        assert bool(np.max(steps) <= np.log(1.2) + 1e-12) is within


def test_a_controller_learned_with_the_probe_start_runs_the_same_from_every_eta0(
    tmp_path: Path,
) -> None:
    saved = learned_in_form(tmp_path, start="probe")
    assert saved.start == "probe" and saved.controller().probes_first_step
    content = json.loads((tmp_path / "controller.json").read_text())
    assert content["version"] == 4 and content["start"] == "probe"
    # the env, and ControlledLR through the file: eta_0 changes nothing
    env = gym.make(TOY, **SHORT, start="probe")
    theta = np.array([-0.9164, 0.976, 0.0, 0.0, -5.6143])
    curves = []
    for eta0 in (1e-5, 1.0):
        env.reset(seed=4)
        task = dataclasses.replace(env.unwrapped.task, eta0=eta0)
        env.reset(seed=4, options={"task": task})
        env.step(env.unwrapped.theta_to_action(theta))
        curves.append(env.unwrapped.last_result.curves)
    assert curves[0] == curves[1]
    # evaluation applies the file's start: the first step is already at the rule's fixed point
    fixed = dataclasses.replace(saved, theta=tuple(theta))
    for episode in evaluate_controller(fixed, episodes=2, seed=9, keep_curves=True):
        rates = episode.curves.learning_rates
        assert rates[1] == pytest.approx(rates[0], rel=1e-3)
        assert rates[1] != pytest.approx(rates[2], rel=1e-3)  # the rate moves from then on
    # ...and so it does on an env other than the one the file was learned on
    elsewhere = dataclasses.replace(fixed, env_id="StepSizeControl-Digits-v0", env_kwargs={})
    (episode,) = evaluate_controller(elsewhere, TOY, episodes=1, seed=9, env_kwargs=SHORT)
    (same,) = evaluate_controller(fixed, episodes=1, seed=9)
    assert episode.final_train_loss == same.final_train_loss
    with pytest.raises(InvalidConfigError, match="start='eta0' contradicts"):
        evaluate_controller(elsewhere, TOY, episodes=1, env_kwargs={**SHORT, "start": "eta0"})


def test_evaluate_controller_runs_theta_on_seeded_tasks(uninterrupted: Path) -> None:
    saved = lrgym.load_controller(uninterrupted / "controller.json")
    episodes = evaluate_controller(saved, episodes=3, seed=50, keep_curves=True)
    assert [e.seed for e in episodes] == [50, 51, 52]
    env = gym.make(TOY, **SHORT)
    env.reset(seed=51)
    _, reward, *_ = env.step(env.unwrapped.theta_to_action(saved.theta))
    assert episodes[1].reward == reward and len(episodes[1].curves.losses) > 0
    far = dataclasses.replace(saved, theta=(5.0, 0.0, 0.0, 0.0, -5.0))
    with pytest.raises(InvalidConfigError, match="cannot express theta"):
        evaluate_controller(far, episodes=1)


# --------------------------------------------------------------------------------------------
# command line


def test_cli_train_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["--env", TOY, "--env-kwargs", json.dumps(SHORT)]
    command = ["train", "reps", *args, "--episodes", "8", "--samples", "4", "--seed", "1"]
    code = main([*command, "--out", str(out), "--tensorboard"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "reps, 8 episodes" in captured.out
    assert "episode" in captured.err  # the progress bar
    assert any((out / "tensorboard").iterdir())
    curves = tmp_path / "curves.npz"
    evaluate = ["evaluate", str(out / "controller.json"), "--episodes", "2", "--seed", "3"]
    code = main([*evaluate, "--curves", str(curves)])
    printed = capsys.readouterr().out
    assert code == 0 and "mean reward" in printed and "diverged" in printed
    with np.load(curves) as saved:
        assert saved["seeds"].tolist() == [3, 4] and saved["episode1_losses"].size > 0
    again = main(["train", "reps", *args, "--episodes", "8", "--samples", "4", "--out", str(out)])
    assert again == 2 and "--resume" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_same_task_runs_every_sample_of_an_iteration_on_one_task(tmp_path: Path) -> None:
    run = train(
        "reps", TOY, tmp_path, episodes=10, config=CONFIG, env_kwargs=SHORT, same_task=True,
        progress=False,
    )  # fmt: skip
    first, second = (record["seeds"] for record in run.records)
    assert first == [episode_seeds(0, 0, 1)[0]] * CONFIG.samples
    assert len(set(second)) == 1 and second[0] != first[0]
    assert len(set(run.records[0]["rewards"])) == CONFIG.samples  # the actions differ
    with pytest.raises(CheckpointError, match="same_task=True"):
        train(
            "reps",
            TOY,
            tmp_path,
            episodes=3 * CONFIG.samples,
            config=CONFIG,
            env_kwargs=SHORT,
            resume=True,
        )


def test_cli_resume_continues_to_more_iterations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "reps", "--env", TOY, "--env-kwargs", json.dumps(SHORT), "--samples", "4"]
    base += ["--out", str(tmp_path), "--no-progress"]
    assert main([*base, "--episodes", "4"]) == 0
    assert main([*base, "--episodes", "12", "--resume"]) == 0
    capsys.readouterr()
    log = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in log] == [0, 1, 2]
    assert os.path.exists(tmp_path / "controller.json")


@pytest.mark.slow
def test_ctrl_c_stops_a_process_run_at_once_and_it_resumes(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group) ends a run with 2 worker processes quickly, with a
    message and no worker tracebacks; the same command with --resume finishes it."""
    command = train_command(tmp_path, "--episodes", "800", "--samples", "4", "--workers", "2")
    process = subprocess.Popen(
        command,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    done = read_checkpoint(tmp_path / "checkpoint.json")["state"]["iteration"]
    assert 1 <= done < 200  # the log line of iteration 2 may precede its checkpoint
    command[command.index("800")] = str(4 * (done + 1))
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint(tmp_path / "checkpoint.json")["state"]["iteration"] == done + 1
