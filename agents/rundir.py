"""A training run's directory: settings, log, checkpoint and controller files, in one place.

Every learner (:mod:`lrgym_agents.loop` for the ask/tell learners,
:mod:`lrgym_agents.learners.sb3` for Stable-Baselines3) writes the same files into its ``--out``
directory:

* ``run.json``: the run's settings (what ``--resume`` checks against);
* ``log.jsonl``: one JSON line per batch of episodes, fsynced, with the columns every learner
  shares (``iteration``, ``episodes``, ``episodes_total``, ``rewards``, ``seeds``,
  ``mean_reward``, ``best_reward``, ``diverged``, ``seconds``, ``elapsed``) and a ``learner``
  object of the learner's own diagnostics;
* ``checkpoint.json``: the learner's state after the last complete batch, written atomically
  with a SHA-256 of its payload and the log's length at that moment (a resumed run drops log
  lines written after it);
* ``controller.json`` and ``controller-initial.json``: controller files for
  :func:`lrgym.load_controller` and ``lrgym evaluate``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import lrgym
from lrgym.controllers.files import (
    ContextualPolicyFile,
    LogLinearFile,
    PerStepPolicyFile,
    SavedController,
    theta_distribution,
)
from lrgym.envs.dynamic import StepSizeControlDynamicEnv
from lrgym.errors import InvalidConfigError, LrgymError
from lrgym.jsonfile import read_document, write_atomic

CHECKPOINT_FORMAT = "lrgym-checkpoint"
CHECKPOINT_VERSION = 2
"""Version 1 was REPS-only (``lrgym-reps-checkpoint``); this lrgym reads version 2."""

LOG_COLUMNS = (
    "iteration",
    "episodes",
    "episodes_total",
    "rewards",
    "seeds",
    "mean_reward",
    "best_reward",
    "diverged",
    "seconds",
    "elapsed",
    "learner",
)
"""The columns of every ``log.jsonl`` line."""


@dataclass
class LearnerRun:
    """What :func:`lrgym_agents.loop.train` and :func:`lrgym_agents.learners.sb3.train_sb3`
    return."""

    learner: Any
    """The trained learner: an ask/tell learner, or the Stable-Baselines3 model."""
    records: list[dict[str, Any]]
    """The ``log.jsonl`` lines of the whole run."""
    out: Path


class CheckpointError(LrgymError):
    """A run directory's checkpoint is missing, partial, corrupt or from another run."""


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
        CheckpointError: missing, not JSON, another format or version, or the checksum does
            not match.
    """
    fix = "Restore the file, or start a new run in another --out directory."
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {str(path)!r}: nothing to resume")
    content = read_document(
        path,
        format=CHECKPOINT_FORMAT,
        versions=range(CHECKPOINT_VERSION, CHECKPOINT_VERSION + 1),
        what="checkpoint",
        error=CheckpointError,
        hint=f"It was not used. {fix}",
    )
    payload = content.get("payload")
    if content.get("sha256") != _digest(payload) or not isinstance(payload, dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r} fails its checksum (it was altered or damaged); it was "
            f"not used. {fix}"
        )
    return payload


class RunDirectory:
    """The files of one run (see the module docstring).

    Args:
        path: the ``--out`` directory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.run_json = self.path / "run.json"
        self.log = self.path / "log.jsonl"
        self.checkpoint = self.path / "checkpoint.json"

    def create(self, spec: Mapping[str, Any]) -> None:
        """Start a new run with settings ``spec``.

        Raises:
            CheckpointError: the directory already holds a run.
        """
        if self.checkpoint.exists() or self.log.exists():
            raise CheckpointError(
                f"{str(self.path)!r} already holds a run; pass resume=True (--resume) to "
                "continue it, or choose another directory"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_json, json.dumps(dict(spec), indent=1) + "\n")
        self.log.touch()

    def save(self, spec: Mapping[str, Any], state: Any, episodes: int, elapsed: float) -> None:
        """Checkpoint the learner ``state`` after ``episodes`` episodes (atomic)."""
        write_checkpoint(
            self.checkpoint,
            {
                "spec": dict(spec),
                "state": state,
                "episodes": int(episodes),
                "log_bytes": self.log.stat().st_size,
                "elapsed": float(elapsed),
            },
        )

    def resume(
        self, spec: Mapping[str, Any], budget: str = "episodes"
    ) -> tuple[Any, int, float, list[dict[str, Any]]]:
        """Read the checkpoint of a run with settings ``spec`` (all but ``budget`` must match)
        and truncate the log to it.

        Returns:
            the learner state, the episodes done, the elapsed seconds and the log's records.

        Raises:
            CheckpointError: missing, corrupt, or from a run with other settings; or the run
                already did more than ``spec[budget]`` episodes.
        """
        payload = read_checkpoint(self.checkpoint)
        try:
            saved = payload["spec"]
            state = payload["state"]
            done = int(payload["episodes"])
            log_bytes = int(payload["log_bytes"])
            elapsed = float(payload["elapsed"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint in {str(self.path)!r} lacks {exc}") from None
        for key in sorted(set(saved) | set(spec)):
            if key != budget and saved.get(key) != spec.get(key):
                raise CheckpointError(
                    f"--resume: the run in {str(self.path)!r} has {key}={saved.get(key)!r}, "
                    f"this call {key}={spec.get(key)!r}; resume with the run's settings (see "
                    "run.json)"
                )
        if done > int(spec[budget]):
            raise CheckpointError(
                f"--resume: the run already did {done} episodes, more than {budget}={spec[budget]}"
            )
        try:
            with open(self.log, "r+b") as handle:  # drop lines written after the checkpoint
                handle.truncate(log_bytes)
            records = [json.loads(line) for line in self.log.read_text().splitlines()]
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"log {str(self.log)!r} does not match the checkpoint ({exc})"
            ) from None
        if sum(int(r["episodes"]) for r in records) != done:
            raise CheckpointError(
                f"log {str(self.log)!r} holds {sum(int(r['episodes']) for r in records)} "
                f"episodes, the checkpoint {done}"
            )
        if saved.get(budget) != spec.get(budget):
            write_atomic(self.run_json, json.dumps(dict(spec), indent=1) + "\n")
        return state, done, elapsed, records

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one line to ``log.jsonl`` and flush it to disk."""
        with open(self.log, "a") as handle:
            handle.write(json.dumps(dict(row)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def run_settings(
    algorithm: str,
    env_id: str,
    env_kwargs: Mapping[str, Any] | None,
    episodes: int,
    seed: int,
    learner: Mapping[str, Any],
) -> dict[str, Any]:
    """A run's settings as ``run.json`` holds them (what ``--resume`` checks against): the
    algorithm, env, budget and seed every learner has, then the learner's own (``learner``)."""
    return {
        "algorithm": algorithm,
        "env_id": env_id,
        "env_kwargs": dict(env_kwargs or {}),
        "episodes": int(episodes),
        "seed": int(seed),
        **learner,
    }


def log_row(
    *,
    iteration: int,
    episodes_total: int,
    rewards: Sequence[float],
    seeds: Sequence[int],
    diverged: int,
    seconds: float,
    elapsed: float,
    learner: Mapping[str, Any],
) -> dict[str, Any]:
    """One ``log.jsonl`` line (:data:`LOG_COLUMNS`)."""
    values = np.asarray(rewards, dtype=np.float64)
    return {
        "iteration": int(iteration),
        "episodes": len(values),
        "episodes_total": int(episodes_total),
        "rewards": values.tolist(),
        "seeds": [int(s) for s in seeds],
        "mean_reward": float(values.mean()),
        "best_reward": float(values.max()),
        "diverged": int(diverged),
        "seconds": float(seconds),
        "elapsed": float(elapsed),
        "learner": dict(learner),
    }


def controller_for(
    env: gym.Env[Any, Any],
    env_id: str,
    env_kwargs: Mapping[str, Any],
    source: Mapping[str, Any],
    *,
    action: np.ndarray | None = None,
    cov: np.ndarray | None = None,
    policy: Mapping[str, Any] | None = None,
) -> SavedController:
    """The controller file of a learned ``action`` (with its search covariance, zeros if
    ``None``; a :class:`~lrgym.controllers.saved.LogLinearFile`) or of a ``policy`` (its
    ``library``, ``algorithm``, ``model``, ``sha256`` and optional
    ``observation_normalization``), learned on ``env``: a contextual policy on a bandit env, a
    per-step policy on a dynamic env."""
    base: Any = env.unwrapped
    metadata: dict[str, Any] = {
        "env_id": env_id,
        "env_kwargs": dict(env_kwargs),
        "lr_bounds": tuple(base.lr_bounds),
        "features": asdict(base.features),
        "lrgym_version": lrgym.__version__,
        "source": dict(source),
    }
    if isinstance(base, StepSizeControlDynamicEnv):  # sets each stretch's rate; no theta
        if policy is None:
            raise InvalidConfigError("a dynamic env's controller file holds a per-step policy")
        return PerStepPolicyFile(policy=policy, **metadata)
    metadata["relative"] = bool(base.relative)
    metadata["max_change"] = base.max_change
    metadata["start"] = base.start
    if policy is not None:
        center, scale = base.theta_center.tolist(), base.theta_scale.tolist()
        contextual = {**policy, "theta_center": center, "theta_scale": scale}
        return ContextualPolicyFile(policy=contextual, **metadata)
    if action is None:
        raise InvalidConfigError("a bandit env's controller file needs an action or a policy")
    spread = np.zeros((action.size, action.size)) if cov is None else np.asarray(cov)
    mean, theta_cov = theta_distribution(
        np.asarray(action, dtype=np.float64), spread, base.theta_center, base.theta_scale
    )
    return LogLinearFile(theta=tuple(mean), theta_cov=tuple(map(tuple, theta_cov)), **metadata)


def progress_bar(description: str, total: int, done: int, unit: str = "episode") -> Any:
    """A tqdm bar of episodes (or other ``unit``) on stderr: redrawn twice a second on a
    terminal or in a Jupyter notebook, a line per 30 s when stderr is a log file."""
    from tqdm import tqdm

    live = sys.stderr.isatty() or type(sys.stderr).__module__.startswith("ipykernel")
    return tqdm(
        total=total,
        initial=done,
        unit=unit,
        desc=description,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5 if live else 30.0,
    )
