"""Every learner through the same workflow: CLI training and evaluation, bit-identical resume
of the ask/tell learners (serial and process backends), SB3 resume without repeated episodes,
the learners' own rules, and the layering (lrgym does not import lrgym_agents)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import TOY, kill_after_checkpoint, kill_after_lines, log_of

import lrgym
from lrgym.cli import main
from lrgym.controllers.files import ContextualPolicyFile, ControllerFileError
from lrgym.errors import InvalidConfigError, LrgymError
from lrgym_agents.learners.cmaes import CMAES, CMAESConfig
from lrgym_agents.learners.random_search import RandomSearch, RandomSearchConfig
from lrgym_agents.loop import train
from lrgym_agents.rundir import LOG_COLUMNS, read_checkpoint

SHORT = {"steps": [20, 30]}
ASK_TELL = ("reps", "cmaes", "random")
SB3 = ("ppo", "a2c", "sac", "td3", "ars")


# --------------------------------------------------------------------------------------------
# every learner through the command line


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ASK_TELL + SB3)
def test_each_learner_trains_through_the_cli_and_its_controller_evaluates(
    algorithm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / algorithm
    budget = ["--episodes", "32"] + (["--samples", "8"] if algorithm in ASK_TELL else [])
    command = ["train", algorithm, "--env", TOY, "--env-kwargs", json.dumps(SHORT), *budget]
    assert main([*command, "--out", str(out), "--no-progress", "--seed", "3"]) == 0
    assert f"{algorithm}, 32 episodes" in capsys.readouterr().out
    log = log_of(out)
    assert all(list(row) == list(LOG_COLUMNS) for row in log)  # the same columns for all
    assert log[-1]["episodes_total"] == 32 == sum(row["episodes"] for row in log)
    seeds = [s for row in log for s in row["seeds"]]
    assert len(set(seeds)) == 32  # every episode its own task
    saved = lrgym.load_controller(out / "controller.json")
    kind = "contextual" if algorithm in SB3 else "log-linear"
    assert saved.kind == kind and saved.source["algorithm"] == algorithm
    code = main(["evaluate", str(out / "controller.json"), "--episodes", "2", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and [row["seed"] for row in rows] == [0, 1]
    assert all(np.isfinite(row["reward"]) for row in rows)


def test_an_unknown_algorithm_lists_the_allowed_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "sgd", "--episodes", "4", "--out", "x"])
    err = capsys.readouterr().err
    assert all(name in err for name in ASK_TELL + SB3)


def test_a_budget_the_learner_cannot_end_on_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="multiple of samples=8"):
        train("cmaes", TOY, tmp_path, episodes=20, config={"samples": 8}, progress=False)
    from lrgym_agents.learners.sb3 import train_sb3

    with pytest.raises(InvalidConfigError, match="16 episodes per update"):
        train_sb3("ars", TOY, tmp_path, episodes=20, progress=False)
    assert not (tmp_path / "log.jsonl").exists()


# --------------------------------------------------------------------------------------------
# resume


def train_command(algorithm: str, out: Path, *extra: str) -> list[str]:
    cli = [sys.executable, "-m", "lrgym.cli", "train", algorithm, "--env", TOY, "--no-progress"]
    return [*cli, "--env-kwargs", json.dumps(SHORT), "--seed", "5", "--out", str(out), *extra]


def outcome(out: Path) -> tuple[Any, ...]:
    payload = read_checkpoint(out / "checkpoint.json")
    controller = lrgym.load_controller(out / "controller.json")
    return payload["state"], [row["rewards"] for row in log_of(out)], controller.theta


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ASK_TELL)
def test_killed_ask_tell_runs_resume_to_the_bit_identical_controller(
    algorithm: str, tmp_path: Path
) -> None:
    budget = ("--episodes", "24", "--samples", "8")
    whole = tmp_path / "whole"  # in this process: one torch thread, as the command's
    train(
        algorithm,
        TOY,
        whole,
        episodes=24,
        config={"samples": 8},
        seed=5,
        env_kwargs=SHORT,
        progress=False,
    )
    # the process backend once (REPS): it collects episodes the same way for every learner
    workers = "2" if algorithm == "reps" else "1"
    out = tmp_path / "killed"
    command = train_command(algorithm, out, *budget, "--workers", workers)
    kill_after_lines(command, out / "log.jsonl", 1)
    assert read_checkpoint(out / "checkpoint.json")["episodes"] < 24
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(out) == outcome(whole)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_a_killed_sb3_run_resumes_to_the_requested_episodes_without_repeating_one(
    algorithm: str, tmp_path: Path
) -> None:
    out = tmp_path / algorithm
    command = train_command(algorithm, out, "--episodes", "64")
    kill_after_checkpoint(command, out / "checkpoint.json")
    done = read_checkpoint(out / "checkpoint.json")["episodes"]
    assert 0 < done < 64
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    log = log_of(out)
    seeds = [s for row in log for s in row["seeds"]]
    assert log[-1]["episodes_total"] == 64 == len(seeds) == len(set(seeds))
    assert read_checkpoint(out / "checkpoint.json")["episodes"] == 64
    models = sorted(p.name for p in (out / "models").glob("model-*.zip"))
    assert models == ["model-000000.zip", "model-000064.zip"]  # older checkpoints pruned


# --------------------------------------------------------------------------------------------
# the learners' own rules


def test_cmaes_climbs_a_quadratic_inside_the_box_and_replays_exactly() -> None:
    target = np.array([0.5, -0.3, 0.2, 0.0, 0.7])
    learner = CMAES(5, CMAESConfig(samples=10, sigma0=0.3), seed=1)
    for _ in range(40):
        actions = learner.ask()
        assert np.all(np.abs(actions) <= 1.0)  # the action box is cma's bounds
        learner.tell(actions, -np.sum((actions - target) ** 2, axis=1))
    mean, cov = learner.recommendation()
    assert np.linalg.norm(mean - target) < 0.05 and cov is not None
    state = json.loads(json.dumps(learner.state_dict()))
    copy = CMAES.from_state_dict(state)
    np.testing.assert_array_equal(copy.ask(), learner.ask())
    state["history"][3][0][0][0] += 1e-9  # a population the replay does not draw
    with pytest.raises(LrgymError, match="replaying iteration 3"):
        CMAES.from_state_dict(state)
    with pytest.raises(InvalidConfigError, match="not the 10 candidates"):
        learner.tell(learner.ask()[::-1], np.zeros(10))


def test_random_search_does_not_report_a_candidate_one_lucky_task_favoured() -> None:
    """Rewards: -|a|^2 plus noise, except that the first candidate with |a|^2 > 2 gets a +3
    spike on its first task (a lucky task): the best single reward of the run. Re-evaluated on
    three more tasks it falls behind, and must not be reported."""
    learner = RandomSearch(5, RandomSearchConfig(samples=8, reevaluations=3, finalists=2), seed=0)
    rng = np.random.default_rng(1)
    lucky: bytes | None = None
    for _ in range(12):
        actions = learner.ask()
        rewards = -np.sum(actions**2, axis=1) + rng.normal(0, 0.01, len(actions))
        for k, action in enumerate(actions):
            if lucky is None and np.sum(action**2) > 2.0:
                lucky = action.tobytes()
                rewards[k] += 3.0
        info = learner.tell(actions, rewards)
    spiked = [i for i, a in enumerate(learner.actions) if a.tobytes() == lucky]
    assert len(spiked) == 1
    singles = [r[0] for r in learner.rewards]
    assert int(np.argmax(singles)) == spiked[0] and len(learner.rewards[spiked[0]]) == 4
    best, _ = learner.recommendation()
    assert best.tobytes() != lucky and info.best_evaluations == 4
    state = json.loads(json.dumps(learner.state_dict()))
    np.testing.assert_array_equal(RandomSearch.from_state_dict(state).ask(), learner.ask())


# --------------------------------------------------------------------------------------------
# layering, optional extras, policy files


@pytest.mark.slow
def test_importing_the_lrgym_command_line_does_not_import_the_learners() -> None:
    code = "import sys, lrgym.cli; print(sorted(m for m in sys.modules if 'agents' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "algorithm", "extra"),
    [("cma", "cmaes", "lrgym[cma]"), ("stable_baselines3", "ppo", "lrgym[sb3]"),
     ("sb3_contrib", "ars", "lrgym[sb3-contrib]")],
)  # fmt: skip
def test_a_missing_optional_package_names_the_extra_to_install(
    module: str, algorithm: str, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(LrgymError, match=rf'pip install "{extra}"'.replace("[", r"\[")):
        if algorithm == "cmaes":
            train("cmaes", TOY, tmp_path, episodes=16, progress=False)
        else:
            from lrgym_agents.learners.sb3 import train_sb3

            train_sb3(algorithm, TOY, tmp_path, episodes=16, progress=False)


@pytest.mark.slow
def test_a_policy_controller_file_checks_its_model(tmp_path: Path) -> None:
    from lrgym_agents.learners.sb3 import train_sb3

    out = tmp_path / "ppo"
    train_sb3("ppo", TOY, out, episodes=32, env_kwargs=SHORT, progress=False)
    saved = lrgym.load_controller(out / "controller.json")
    assert isinstance(saved, ContextualPolicyFile)
    with pytest.raises(ControllerFileError, match="contextual policy"):
        saved.controller()
    observation = np.array([-5.0, -3.0, 0.0, 0.0, 1.0], dtype=np.float32)
    theta = saved.theta_for(observation)
    action, _ = saved.model.predict(observation, deterministic=True)
    np.testing.assert_allclose(theta, [0, 0, 0, 0, -5] + np.array([1, 1, 1, 1, 10]) * action)
    model = out / saved.policy["model"]
    model.write_bytes(model.read_bytes() + b"x")
    with pytest.raises(ControllerFileError, match="does not match"):
        lrgym.load_controller(out / "controller.json").model  # noqa: B018
    model.unlink()
    with pytest.raises(ControllerFileError, match="missing"):
        lrgym.load_controller(out / "controller.json").model  # noqa: B018
