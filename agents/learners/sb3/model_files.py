"""The model files of a Stable-Baselines3 run: saving the model (and SAC's / TD3's replay buffer)
under ``models/`` with their SHA-256 and writing the controller files that reference it
(:class:`ModelSaver`), loading them back on resume (:func:`load_model`), and ``VecNormalize``'s
observation statistics, which both the checkpoint and the controller file keep as plain numbers.

Model files and replay buffers are **pickles**: resume only runs you trust.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lrgym.controllers.files import save_controller
from lrgym.controllers.sb3_policy import import_policy_library
from lrgym.jsonfile import file_sha256

from ...rundir import CheckpointError, controller_for
from .settings import SB3_LEARNERS

NORMALIZATION_KEYS = ("mean", "var", "epsilon", "clip")
"""The statistics a policy controller file keeps (the checkpoint keeps ``count`` too)."""


@dataclass
class ModelSaver:
    """Saves a run's model after a number of episodes and writes the controller files that
    reference it (a contextual policy on a bandit env, a per-step policy on a dynamic env).

    Attributes:
        root: the run directory.
        model: the SB3 model.
        venv: its vector env (``VecNormalize``'s statistics are saved with the model).
        info_env: an env of the run's id and arguments (the controller file's metadata).
        spec: the run's settings (``algorithm``, ``env_id``, ``env_kwargs``, ``seed``).
    """

    root: Path
    model: Any
    venv: Any
    info_env: gym.Env[Any, Any]
    spec: Mapping[str, Any]

    def __call__(self, episodes_done: int, *names: str) -> dict[str, Any]:
        """Save the model as ``models/model-{episodes_done:06d}.zip`` and write the controller
        files ``names``: the checkpoint's state (model and replay buffer paths, their SHA-256,
        the observation statistics)."""
        state = self._save_files(episodes_done)
        library, class_name, _ = SB3_LEARNERS[self.spec["algorithm"]]
        policy: dict[str, Any] = {"library": library, "algorithm": class_name}
        policy["model"], policy["sha256"] = state["model"], state["sha256"]
        if hasattr(self.venv, "obs_rms"):  # the statistics the policy's inputs were scaled with
            statistics = statistics_of(self.venv)
            state["normalization"] = statistics
            policy["observation_normalization"] = {k: statistics[k] for k in NORMALIZATION_KEYS}
        source = {
            "algorithm": self.spec["algorithm"],
            "episodes": episodes_done,
            "seed": self.spec["seed"],
        }
        env_id, env_kwargs = self.spec["env_id"], self.spec["env_kwargs"]
        saved = controller_for(self.info_env, env_id, env_kwargs, source, policy=policy)
        for name in names:
            save_controller(saved, self.root / name)
        return state

    def _save_files(self, episodes_done: int) -> dict[str, Any]:
        models = self.root / "models"
        models.mkdir(exist_ok=True)
        path = models / f"model-{episodes_done:06d}.zip"
        temporary = models / f".tmp-{os.getpid()}.zip"
        self.model.save(str(temporary))
        fsync(temporary)
        os.replace(temporary, path)
        state: dict[str, Any] = {
            "model": str(path.relative_to(self.root)),
            "sha256": file_sha256(path),
        }
        if getattr(self.model, "replay_buffer", None) is not None:
            buffer = models / f"replay-{episodes_done:06d}.pkl"
            self.model.save_replay_buffer(str(temporary.with_suffix(".pkl")))
            fsync(temporary.with_suffix(".pkl"))
            os.replace(temporary.with_suffix(".pkl"), buffer)
            state["replay_buffer"] = str(buffer.relative_to(self.root))
            state["replay_sha256"] = file_sha256(buffer)
        return state


def load_model(
    algorithm: str, root: Path, state: Mapping[str, Any], venv: Any, tb: str | None
) -> Any:
    """The checkpoint's model (and replay buffer), from the run directory ``root``, on
    ``venv``. Both files are **unpickled**, after their SHA-256 is checked against ``state``.

    Raises:
        CheckpointError: a file is missing or altered.
    """
    library, class_name, _ = SB3_LEARNERS[algorithm]
    module = import_policy_library(library)
    model_path = root / state["model"]
    if not model_path.exists() or file_sha256(model_path) != state["sha256"]:
        raise CheckpointError(
            f"the checkpoint's model {str(model_path)!r} is missing or altered; it was not "
            "loaded. Restore it, or start a new run in another --out directory."
        )
    extra = {} if class_name == "ARS" else {"device": "cpu"}
    model = getattr(module, class_name).load(str(model_path), env=venv, tensorboard_log=tb, **extra)
    if "replay_buffer" in state:
        buffer = root / state["replay_buffer"]
        if not buffer.exists() or file_sha256(buffer) != state["replay_sha256"]:
            raise CheckpointError(
                f"the checkpoint's replay buffer {str(buffer)!r} is missing or altered; it was "
                "not loaded"
            )
        model.load_replay_buffer(str(buffer))
    return model


def normalizing(venv: Any, statistics: Mapping[str, Any] | None) -> Any:
    """``venv`` wrapped in SB3's ``VecNormalize`` (observations only), with the running
    statistics of a checkpoint when resuming."""
    from stable_baselines3.common.vec_env import VecNormalize

    wrapped: Any = VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0)
    if statistics is not None:
        wrapped.obs_rms.mean = np.asarray(statistics["mean"], dtype=np.float64)
        wrapped.obs_rms.var = np.asarray(statistics["var"], dtype=np.float64)
        wrapped.obs_rms.count = float(statistics["count"])
    return wrapped


def statistics_of(venv: Any) -> dict[str, Any]:
    """``VecNormalize``'s running statistics as plain numbers (JSON)."""
    return {
        "mean": [float(v) for v in venv.obs_rms.mean],
        "var": [float(v) for v in venv.obs_rms.var],
        "count": float(venv.obs_rms.count),
        "epsilon": float(venv.epsilon),
        "clip": float(venv.clip_obs),
    }


def fsync(path: Path) -> None:
    """Flush ``path`` to disk (before it is renamed into place)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
