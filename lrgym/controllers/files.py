"""Learned controllers as small, versioned JSON files.

A controller file holds either

* a **log-linear controller**: the learned distribution over ``theta`` (mean and covariance;
  REPS, CMA-ES, random search write these), or
* a **contextual policy** (Stable-Baselines3 learners): a reference to the saved model, which
  maps a task's starting features (the env's reset observation) to the action, so ``theta``
  depends on the task, or
* a **per-step policy** (Stable-Baselines3 learners on a ``StepSizeControl-Dynamic-*`` env): a
  reference to the saved model, which maps each observation of the run to the next stretch's
  learning rate,

plus the env it was learned on (id and keyword arguments), the feature settings and the lrgym
version. :func:`load_controller` reads one back::

    saved = lrgym.load_controller("runs/digits/controller.json")
    result = lrgym.train(task, saved.controller(), data)          # log-linear files
    theta = saved.theta_for(observation)                          # either kind

A policy file's model is a Stable-Baselines3 ``.zip``: loading it **unpickles** Python objects,
so only load policy controller files you trust (log-linear files are plain JSON).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lrgym.controllers import DEFAULT_LR_BOUNDS, LogLinearController
from lrgym.errors import LrgymError
from lrgym.jsonfile import file_sha256, read_document, write_atomic

FORMAT = "lrgym-controller"
VERSION = 3
"""The newest file format version :func:`load_controller` reads (1: log-linear controllers
only; 2 adds contextual policies; 3 per-step policies). Each file is written with the oldest
version that holds it."""

POLICY_KINDS = ("contextual", "per-step")
"""What a policy's action is: a run's ``theta`` (contextual) or a dynamic env's action."""

POLICY_LIBRARIES = {
    "stable-baselines3": ("stable_baselines3", ("PPO", "A2C", "SAC", "TD3")),
    "sb3-contrib": ("sb3_contrib", ("ARS",)),
}
"""Which saved models a policy controller file may reference: library -> (module, classes)."""


class ControllerFileError(LrgymError):
    """A controller file is missing, unreadable, of another format or of a newer version."""


@dataclass(frozen=True)
class SavedController:
    """A learned controller and where it came from.

    Attributes:
        theta: mean of the learned distribution over ``theta`` (5 numbers); ``None`` for a
            contextual policy.
        theta_cov: its covariance (5 x 5); ``None`` for a contextual policy.
        env_id: the env it was learned on.
        env_kwargs: that env's keyword arguments (beyond the registered ones).
        relative: whether the controller is the relative form.
        lr_bounds: the clipping range of eta.
        features: the feature settings (``gamma``, ``every``, ``estimate``).
        lrgym_version: the lrgym version that wrote the file.
        source: free-form provenance (algorithm, episodes, seed).
        policy: for a policy: ``library``, ``algorithm``, ``model`` (the saved model's path,
            relative to the controller file), ``sha256`` of the model file, ``kind``
            (:data:`POLICY_KINDS`; absent: contextual), optionally
            ``observation_normalization`` (``mean``, ``var``, ``epsilon``, ``clip``: the policy
            sees ``clip((obs - mean) / sqrt(var + epsilon))``, see :meth:`act`) and, for a
            contextual policy, ``theta_center`` / ``theta_scale`` (the learning env's
            action-to-theta map).
        path: the file this was loaded from (resolves ``policy["model"]``).
    """

    theta: tuple[float, ...] | None
    theta_cov: tuple[tuple[float, ...], ...] | None
    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    relative: bool = False
    lr_bounds: tuple[float, float] = DEFAULT_LR_BOUNDS
    features: Mapping[str, Any] = field(default_factory=dict)
    lrgym_version: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    policy: Mapping[str, Any] | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def is_policy(self) -> bool:
        """Whether the file holds a policy model (contextual or per-step), not one ``theta``."""
        return self.policy is not None

    @property
    def is_dynamic(self) -> bool:
        """Whether the file holds a per-step policy of a ``StepSizeControl-Dynamic-*`` env."""
        return self.policy is not None and self.policy.get("kind") == "per-step"

    def controller(self) -> LogLinearController:
        """The controller with ``theta`` = the learned mean (log-linear files only).

        Raises:
            ControllerFileError: the file holds a contextual policy; use :meth:`theta_for`.
        """
        if self.is_dynamic:
            raise ControllerFileError(_PER_STEP)
        if self.theta is None:
            raise ControllerFileError(
                "this controller file holds a contextual policy: its theta depends on the task. "
                "Use saved.theta_for(observation) with the env's reset observation, then "
                "LogLinearController(theta, ...)"
            )
        return LogLinearController(self.theta, relative=self.relative, lr_bounds=self.lr_bounds)

    def theta_for(self, observation: Sequence[float] | np.ndarray) -> np.ndarray:
        """``theta`` for a task whose starting features (reset observation) are
        ``observation``: the learned mean, or the policy's deterministic action mapped to
        ``theta``."""
        if self.policy is None:
            assert self.theta is not None
            return np.asarray(self.theta, dtype=np.float64)
        if self.is_dynamic:
            raise ControllerFileError(_PER_STEP)
        clipped = np.clip(self.act(observation).astype(np.float64), -1.0, 1.0)
        center = np.asarray(self.policy["theta_center"], dtype=np.float64)
        return center + np.asarray(self.policy["theta_scale"], dtype=np.float64) * clipped

    def act(self, observation: Sequence[float] | np.ndarray) -> np.ndarray:
        """The policy's deterministic action (float32, 1-D) for an observation of its env,
        after the observation normalisation it was trained with, if any (policy files only).

        Raises:
            ControllerFileError: not a policy file, or as :attr:`model`.
        """
        if self.policy is None:
            raise ControllerFileError("this controller file holds no policy model")
        obs = np.asarray(observation, dtype=np.float32).reshape(-1)
        scaling = self.policy.get("observation_normalization")
        if scaling is not None:
            mean = np.asarray(scaling["mean"], dtype=np.float64)
            var = np.asarray(scaling["var"], dtype=np.float64)
            scaled = (obs - mean) / np.sqrt(var + float(scaling["epsilon"]))
            limit = float(scaling["clip"])
            obs = np.clip(scaled, -limit, limit).astype(np.float32)
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, dtype=np.float32).reshape(-1)

    @cached_property
    def model(self) -> Any:
        """The policy's Stable-Baselines3 model, loaded on first use on the CPU.

        Loading **unpickles** the model file; its SHA-256 is checked against the controller
        file first.

        Raises:
            ControllerFileError: not a policy file, the model file is missing or altered, or
                its library is not installed (the error names the extra to install).
        """
        if self.policy is None:
            raise ControllerFileError("this controller file holds no policy model")
        library, algorithm = self.policy["library"], self.policy["algorithm"]
        model_path = Path(self.policy["model"])
        if not model_path.is_absolute() and self.path is not None:
            model_path = self.path.parent / model_path
        try:
            digest = file_sha256(model_path)
        except FileNotFoundError:
            raise ControllerFileError(
                f"the policy model {str(model_path)!r} this controller file references is "
                "missing; keep the model beside the controller file"
            ) from None
        if digest != self.policy.get("sha256"):
            raise ControllerFileError(
                f"the policy model {str(model_path)!r} does not match the controller file's "
                "sha256 (it was replaced or damaged); it was not loaded"
            )
        module = import_policy_library(library)
        return getattr(module, algorithm).load(str(model_path), device="cpu")

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        content = {
            "format": FORMAT,
            "version": 1 if self.policy is None else (3 if self.is_dynamic else 2),
            "lrgym_version": self.lrgym_version,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "theta": None if self.theta is None else list(self.theta),
            "theta_cov": None if self.theta_cov is None else [list(r) for r in self.theta_cov],
            "relative": self.relative,
            "lr_bounds": list(self.lr_bounds),
            "features": dict(self.features),
            "source": dict(self.source),
        }
        if self.policy is not None:
            content["policy"] = dict(self.policy)
        return content


_PER_STEP = (
    "this controller file holds a per-step policy of a StepSizeControl-Dynamic env: it sets "
    "the learning rate through the env's actions, it has no theta. Run it with lrgym evaluate, "
    "or saved.model.predict(observation) on that env"
)


def import_policy_library(library: str) -> Any:
    """Import a policy library of :data:`POLICY_LIBRARIES`.

    Raises:
        ControllerFileError: it is not installed (the message names the extra to install).
    """
    import importlib

    module_name = POLICY_LIBRARIES[library][0]
    extra = "sb3" if library == "stable-baselines3" else "sb3-contrib"
    try:
        return importlib.import_module(module_name)
    except ImportError:
        raise ControllerFileError(
            f"this controller file's policy needs the {library} package: "
            f'pip install "lrgym[{extra}]"'
        ) from None


def save_controller(saved: SavedController, path: str | os.PathLike[str]) -> Path:
    """Write ``saved`` to ``path`` atomically (a crash leaves the old file or the new one)."""
    target = Path(path)
    write_atomic(target, json.dumps(saved.to_json(), indent=1) + "\n")
    return target


PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
"""Where the pretrained controller files lrgym ships lie (``<name>.json``)."""


def pretrained_controllers() -> list[str]:
    """The names of the pretrained controllers lrgym ships, for :func:`load_controller` and
    :class:`lrgym.ControlledLR`. Each file's ``source`` records how it was learned (command,
    algorithm, env, episodes, seed) and its held-out evaluation."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.json"))


def load_controller(path: str | os.PathLike[str]) -> SavedController:
    """Read a controller file written by :func:`save_controller` (``lrgym train ...``), or a
    pretrained controller by name (:func:`pretrained_controllers`, e.g. ``"mnist-sgd"``).

    A policy file's model is only loaded (unpickled) when first used, see
    :attr:`SavedController.model`.

    Raises:
        ControllerFileError: the file is missing (and no pretrained controller has that name),
            not JSON, not a controller file, of a newer format version, or its values are
            malformed.
    """
    source = Path(path)
    if not source.exists() and isinstance(path, str) and source.name == path:
        if path in pretrained_controllers():
            source = PRETRAINED_DIR / f"{path}.json"
        elif not source.suffix:
            raise ControllerFileError(
                f"{path!r} is neither a controller file nor a pretrained controller; the "
                f"pretrained ones are {pretrained_controllers()}"
            )
    content = read_document(
        source,
        format=FORMAT,
        versions=range(1, VERSION + 1),
        what="controller file",
        error=ControllerFileError,
    )
    try:
        policy = content.get("policy")
        if policy is None:
            theta: tuple[float, ...] | None = _floats(content["theta"], 5, "theta")
            cov: tuple[tuple[float, ...], ...] | None = tuple(
                _floats(row, 5, "theta_cov row") for row in content["theta_cov"]
            )
            if cov is None or len(cov) != 5:
                raise ValueError("theta_cov must have 5 rows")
        else:
            theta, cov, policy = None, None, _policy(policy)
        low, high = _floats(content["lr_bounds"], 2, "lr_bounds")
        saved = SavedController(
            theta=theta,
            theta_cov=cov,
            env_id=str(content["env_id"]),
            env_kwargs=dict(content.get("env_kwargs", {})),
            relative=bool(content.get("relative", False)),
            lr_bounds=(low, high),
            features=dict(content.get("features", {})),
            lrgym_version=str(content.get("lrgym_version", "")),
            source=dict(content.get("source", {})),
            policy=policy,
            path=source,
        )
        LogLinearController(theta or (0.0,) * 5, lr_bounds=saved.lr_bounds)  # validates
    except (KeyError, TypeError, ValueError, LrgymError) as exc:
        raise ControllerFileError(f"controller file {str(source)!r} is malformed: {exc}") from None
    return saved


def _policy(policy: Any) -> dict[str, Any]:
    if not isinstance(policy, dict):
        raise ValueError(f"policy must be an object, got {policy!r}")
    library, algorithm = policy.get("library"), policy.get("algorithm")
    if library not in POLICY_LIBRARIES or algorithm not in POLICY_LIBRARIES[library][1]:
        known = {name: list(classes) for name, (_, classes) in POLICY_LIBRARIES.items()}
        raise ValueError(f"policy {library!r}/{algorithm!r} is not one of {known}")
    if not isinstance(policy.get("model"), str) or not isinstance(policy.get("sha256"), str):
        raise ValueError("policy needs the model's path and sha256")
    kind = policy.get("kind", "contextual")
    if kind not in POLICY_KINDS:
        raise ValueError(f"policy kind {kind!r} is not one of {list(POLICY_KINDS)}")
    scaling = policy.get("observation_normalization")
    if scaling is not None:
        mean = _floats(scaling["mean"], len(scaling["mean"]), "observation_normalization mean")
        _floats(scaling["var"], len(mean), "observation_normalization var")
        _floats([scaling["epsilon"], scaling["clip"]], 2, "observation_normalization epsilon/clip")
    if kind == "per-step":
        return dict(policy)
    _floats(policy["theta_center"], 5, "theta_center")
    _floats(policy["theta_scale"], 5, "theta_scale")
    return dict(policy)


def _floats(values: Sequence[Any], count: int, name: str) -> tuple[float, ...]:
    numbers = tuple(float(v) for v in values)
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name} must be {count} finite numbers, got {values!r}")
    return numbers


def theta_distribution(
    action_mean: np.ndarray, action_cov: np.ndarray, center: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map a Gaussian over normalised actions to one over ``theta = center + scale * a``."""
    theta = center + scale * np.clip(action_mean, -1.0, 1.0)
    return theta, action_cov * np.outer(scale, scale)
