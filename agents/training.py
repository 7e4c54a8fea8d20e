"""The REPS workflow: train with checkpoints, resume, save and evaluate controllers.

:func:`train_reps` runs REPS on an env through a collector (serial, process or Ray) and writes
into an output directory:

* ``run.json``: the run's settings (what ``--resume`` checks against);
* ``log.jsonl``: one JSON line per iteration (search distribution, rewards, KL, wall time);
* ``checkpoint.json``: the agent's full state after the last complete iteration, written
  atomically with a checksum; a run killed at any moment resumes from it and ends with exactly
  the policy an uninterrupted run ends with (the episodes of an unfinished iteration are run
  again with the same seeds and actions);
* ``controller.json`` (the current mean) and ``controller-initial.json`` (the initial mean):
  controller files for :func:`lrgym.load_controller` and ``lrgym evaluate``;
* ``tensorboard/`` with ``tensorboard=True``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import lrgym
from agents.collect import Collector, Episode, episode_seeds, make_collector
from agents.reps import REPS, REPSConfig, UpdateInfo
from lrgym.controller_file import SavedController, save_controller, theta_distribution, write_atomic
from lrgym.errors import InvalidConfigError, LrgymError

CHECKPOINT_FORMAT = "lrgym-reps-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(LrgymError):
    """A run directory's checkpoint is missing, partial, corrupt or from another run."""


@dataclass(frozen=True)
class RunSpec:
    """What determines a REPS run's results (``--resume`` must match it)."""

    env_id: str
    env_kwargs: Mapping[str, Any]
    iterations: int
    seed: int
    reps: REPSConfig
    same_task: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "iterations": self.iterations,
            "seed": self.seed,
            "reps": asdict(self.reps),
            "same_task": self.same_task,
        }


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """Write a checkpoint atomically, with a SHA-256 of its payload."""
    content = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "sha256": _digest(payload),
        "payload": payload,
    }
    write_atomic(path, json.dumps(content) + "\n")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint.

    Raises:
        CheckpointError: missing, not JSON, another format, or the checksum does not match.
    """
    fix = "Restore the file, or start a new run in another --out directory."
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {str(path)!r}: nothing to resume") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is partial or corrupt ({exc}); it was not used. {fix}"
        ) from None
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an lrgym REPS checkpoint. {fix}")
    if content.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has version {content.get('version')!r}; this lrgym "
            f"reads version {CHECKPOINT_VERSION}"
        )
    payload = content.get("payload")
    if content.get("sha256") != _digest(payload):
        raise CheckpointError(
            f"checkpoint {str(path)!r} fails its checksum (it was altered or damaged); it was "
            f"not used. {fix}"
        )
    assert isinstance(payload, dict)
    return payload


@dataclass
class IterationRecord:
    """One line of ``log.jsonl``."""

    iteration: int
    episodes: int
    rewards: list[float]
    seeds: list[int]
    mean_reward: float
    best_reward: float
    diverged: int
    eta: float
    kl: float
    mean: list[float]
    cov: list[list[float]]
    seconds: float
    elapsed: float


@dataclass
class REPSRun:
    """What :func:`train_reps` returns."""

    agent: REPS
    records: list[IterationRecord]
    out: Path


def _controller(
    env: gym.Env[Any, Any], spec: RunSpec, mean: np.ndarray, cov: np.ndarray, iteration: int
) -> SavedController:
    base = env.unwrapped
    theta, theta_cov = theta_distribution(mean, cov, base.theta_center, base.theta_scale)  # type: ignore[attr-defined]
    return SavedController(
        theta=tuple(float(v) for v in theta),
        theta_cov=tuple(tuple(float(v) for v in row) for row in theta_cov),
        env_id=spec.env_id,
        env_kwargs=dict(spec.env_kwargs),
        relative=bool(base.relative),  # type: ignore[attr-defined]
        lr_bounds=tuple(base.lr_bounds),  # type: ignore[attr-defined]
        features=asdict(base.features),  # type: ignore[attr-defined]
        lrgym_version=lrgym.__version__,
        source={"algorithm": "REPS", "iteration": iteration, "seed": spec.seed},
    )


def train_reps(
    env_id: str,
    out: str | os.PathLike[str],
    *,
    iterations: int,
    config: REPSConfig | None = None,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    same_task: bool = False,
    backend: str = "serial",
    workers: int = 1,
    ray_address: str | None = None,
    resume: bool = False,
    tensorboard: bool = False,
    progress: bool = True,
    collector: Collector | None = None,
) -> REPSRun:
    """Learn a controller with REPS on ``env_id``; see the module docstring for the files.

    Args:
        env_id: a registered env with a Box action and one-step episodes.
        out: the run directory.
        iterations: REPS iterations in total (a resumed run continues up to this number).
        config: REPS settings (samples per iteration etc.).
        seed: seeds the search distribution's draws and every episode's task.
        env_kwargs: extra env arguments (e.g. ``data_root``).
        same_task: run every sample of an iteration on the same task (a fresh one each
            iteration), so that their rewards differ only by the action (common random
            numbers); otherwise every episode has its own task, as in the paper.
        backend, workers, ray_address: how episodes run (:func:`agents.collect.make_collector`);
            the results do not depend on them.
        resume: continue the run in ``out`` from its checkpoint.
        tensorboard: also log scalars for TensorBoard under ``out/tensorboard``.
        progress: show a progress bar on stderr.
        collector: an already open collector to use instead (the caller closes it).

    Raises:
        CheckpointError: ``resume`` and the checkpoint is missing, corrupt or from a run with
            other settings; or not ``resume`` and ``out`` already holds a run.
    """
    if int(iterations) != iterations or iterations < 1:
        raise InvalidConfigError(f"iterations={iterations!r} must be a positive integer")
    spec = RunSpec(
        env_id,
        dict(env_kwargs or {}),
        int(iterations),
        int(seed),
        config or REPSConfig(),
        bool(same_task),
    )
    directory = Path(out)
    paths = {name: directory / name for name in ("run.json", "log.jsonl", "checkpoint.json")}
    if resume:
        agent, records, elapsed = _resume(spec, directory)
    else:
        if paths["checkpoint.json"].exists() or paths["log.jsonl"].exists():
            raise CheckpointError(
                f"{str(directory)!r} already holds a run; pass resume=True (--resume) to "
                "continue it, or choose another directory"
            )
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(paths["run.json"], json.dumps(spec.to_json(), indent=1) + "\n")
        agent, records, elapsed = None, [], 0.0
    own = collector is None
    if collector is None:
        collector = make_collector(
            backend, env_id, spec.env_kwargs, workers=workers, ray_address=ray_address
        )
    try:
        space = collector.action_space
        info_env = gym.make(env_id, **dict(spec.env_kwargs))
        if agent is None:
            dim = int(np.prod(space.shape))
            agent = REPS(dim, spec.reps, seed=spec.seed)
            initial = _controller(info_env, spec, agent.mean, agent.cov, 0)
            save_controller(initial, directory / "controller-initial.json")
            paths["log.jsonl"].touch()
            _save_state(paths, spec, agent, elapsed)  # a run killed from now on can resume
        writer = _tensorboard(directory) if tensorboard else None
        bar = _progress_bar(spec, agent.iteration) if progress else None
        try:
            while agent.iteration < spec.iterations:
                started = time.perf_counter()
                iteration = agent.iteration
                actions = agent.ask()
                if spec.same_task:
                    seeds = episode_seeds(spec.seed, iteration, 1) * len(actions)
                else:
                    seeds = episode_seeds(spec.seed, iteration, len(actions))
                episodes = collector.run(
                    actions.reshape(len(actions), *space.shape),
                    seeds,
                    progress=bar.update if bar is not None else None,
                )
                rewards = [e.reward for e in episodes]
                update = agent.tell(actions, rewards)
                seconds = time.perf_counter() - started
                elapsed += seconds
                record = _record(iteration, seeds, episodes, update, agent, seconds, elapsed)
                records.append(record)
                _append_line(paths["log.jsonl"], asdict(record))
                save_controller(
                    _controller(info_env, spec, agent.mean, agent.cov, agent.iteration),
                    directory / "controller.json",
                )
                _save_state(paths, spec, agent, elapsed)
                if writer is not None:
                    _log_scalars(writer, record)
                if bar is not None:
                    bar.set_postfix(
                        iteration=f"{agent.iteration}/{spec.iterations}",
                        mean=f"{record.mean_reward:.4f}",
                        best=f"{max(r.best_reward for r in records):.4f}",
                    )
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            info_env.close()
    finally:
        if own:
            collector.close()
    return REPSRun(agent, records, directory)


def _record(
    iteration: int,
    seeds: Sequence[int],
    episodes: Sequence[Episode],
    update: UpdateInfo,
    agent: REPS,
    seconds: float,
    elapsed: float,
) -> IterationRecord:
    return IterationRecord(
        iteration=iteration,
        episodes=len(episodes),
        rewards=[e.reward for e in episodes],
        seeds=list(seeds),
        mean_reward=update.mean_reward,
        best_reward=update.best_reward,
        diverged=sum(e.diverged for e in episodes),
        eta=update.eta if math.isfinite(update.eta) else -1.0,
        kl=update.kl,
        mean=agent.mean.tolist(),
        cov=agent.cov.tolist(),
        seconds=seconds,
        elapsed=elapsed,
    )


def _save_state(paths: Mapping[str, Path], spec: RunSpec, agent: REPS, elapsed: float) -> None:
    write_checkpoint(
        paths["checkpoint.json"],
        {
            "spec": spec.to_json(),
            "agent": agent.state_dict(),
            "log_bytes": paths["log.jsonl"].stat().st_size,
            "elapsed": elapsed,
        },
    )


def _append_line(path: Path, row: Mapping[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _resume(spec: RunSpec, directory: Path) -> tuple[REPS, list[IterationRecord], float]:
    payload = read_checkpoint(directory / "checkpoint.json")
    try:
        saved = payload["spec"]
        state = payload["agent"]
        log_bytes = int(payload["log_bytes"])
        elapsed = float(payload["elapsed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint in {str(directory)!r} lacks {exc}") from None
    current = spec.to_json()
    for key in ("env_id", "env_kwargs", "seed", "reps", "same_task"):
        if saved.get(key) != current[key]:
            raise CheckpointError(
                f"--resume: the run in {str(directory)!r} has {key}={saved.get(key)!r}, this "
                f"call {key}={current[key]!r}; resume with the run's settings (see run.json)"
            )
    agent = REPS.from_state_dict(state)
    if agent.iteration > spec.iterations:
        raise CheckpointError(
            f"--resume: the run already did {agent.iteration} iterations, more than "
            f"iterations={spec.iterations}"
        )
    log = directory / "log.jsonl"
    try:
        with open(log, "r+b") as handle:  # drop lines written after the checkpoint
            handle.truncate(log_bytes)
        lines = log.read_text().splitlines()
        records = [IterationRecord(**json.loads(line)) for line in lines]
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"log {str(log)!r} does not match the checkpoint ({exc})") from None
    if len(records) != agent.iteration:
        raise CheckpointError(
            f"log {str(log)!r} has {len(records)} iterations, the checkpoint {agent.iteration}"
        )
    if spec.iterations != saved.get("iterations"):
        write_atomic(directory / "run.json", json.dumps(spec.to_json(), indent=1) + "\n")
    return agent, records, elapsed


def _progress_bar(spec: RunSpec, done_iterations: int) -> Any:
    from tqdm import tqdm

    samples = spec.reps.samples
    return tqdm(
        total=spec.iterations * samples,
        initial=done_iterations * samples,
        unit="episode",
        desc=f"REPS {spec.env_id}",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,  # a log file gets a line per 30 s
    )


def _tensorboard(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise LrgymError(
            "TensorBoard logging needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter(str(directory / "tensorboard"))


def _log_scalars(writer: Any, record: IterationRecord) -> None:
    step = record.iteration + 1
    writer.add_scalar("reward/mean", record.mean_reward, step)
    writer.add_scalar("reward/best", record.best_reward, step)
    writer.add_scalar("episodes/diverged", record.diverged, step)
    writer.add_scalar("reps/kl", record.kl, step)
    writer.add_scalar("reps/mean_std", float(np.sqrt(np.diag(record.cov)).mean()), step)
    writer.add_scalar("time/iteration_seconds", record.seconds, step)
    writer.flush()


def evaluate_controller(
    saved: SavedController,
    env_id: str | None = None,
    *,
    episodes: int,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    backend: str = "serial",
    workers: int = 1,
    ray_address: str | None = None,
    keep_curves: bool = False,
) -> list[Episode]:
    """Run ``saved``'s controller (its mean ``theta``) on ``episodes`` fresh tasks.

    The tasks are those of ``reset(seed=seed + k)``, ``k = 0 .. episodes - 1``; the env is
    ``env_id`` (default: the one the controller was learned on, with its arguments, updated by
    ``env_kwargs``).

    Raises:
        InvalidConfigError: the env's action box cannot express the controller's ``theta``.
    """
    if int(episodes) != episodes or episodes < 1:
        raise InvalidConfigError(f"episodes={episodes!r} must be a positive integer")
    target = env_id or saved.env_id
    kwargs = {**(dict(saved.env_kwargs) if target == saved.env_id else {}), **(env_kwargs or {})}
    probe = gym.make(target, **kwargs)
    try:
        action = probe.unwrapped.theta_to_action(saved.theta)  # type: ignore[attr-defined]
    finally:
        probe.close()
    if np.any(np.abs(action) > 1.0 + 1e-6):
        raise InvalidConfigError(
            f"{target} cannot express theta={list(saved.theta)}: its action would be "
            f"{np.round(action, 4).tolist()}, outside [-1, 1]; pass env kwargs theta_center/"
            "theta_scale that cover it"
        )
    seeds = [seed + k for k in range(episodes)]
    batch = np.repeat(np.clip(action, -1, 1)[None], episodes, axis=0)
    with make_collector(
        backend, target, kwargs, workers=workers, ray_address=ray_address
    ) as collector:
        return collector.run(batch, seeds, keep_curves=keep_curves)
