"""Policy controller files: a reference to a saved Stable-Baselines3 model, learned on an lrgym
env.

* :class:`ContextualPolicyFile` (file format version 2): learned on a bandit env, the policy
  maps a task's starting features (the env's reset observation) to the action, so ``theta``
  depends on the task;
* :class:`PerStepPolicyFile` (version 3): learned on a ``StepSizeControl-Dynamic-*`` env, the
  policy maps each observation of the run to the next stretch's learning rate; it has no
  ``theta`` and is played through the env (``lrgym evaluate``).

The model is a Stable-Baselines3 ``.zip``: loading it **unpickles** Python objects, so only load
policy files you trust. What lrgym knows of SB3 lives in :mod:`lrgym.controllers.sb3_policy`,
imported here only when a policy file is built or loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lrgym.controllers.saved import (
    ControllerKindError,
    Observation,
    SavedController,
    StartingFeatures,
    finite_floats,
)
from lrgym.errors import InvalidConfigError

POLICY_KINDS = ("contextual", "per-step")
"""What a policy's action is: a run's ``theta`` (contextual) or a dynamic env's action."""


@dataclass(frozen=True, kw_only=True)
class PolicyFile(SavedController):
    """What both policy files share: the ``policy`` entry and its model.

    Attributes:
        policy: ``library``, ``algorithm``, ``model`` (the saved model's path, relative to the
            controller file), ``sha256`` of the model file, ``kind`` (:data:`POLICY_KINDS`;
            absent: contextual), optionally ``observation_normalization`` (``mean``, ``var``,
            ``epsilon``, ``clip``: the policy sees ``clip((obs - mean) / sqrt(var +
            epsilon))``, see :meth:`act`) and, for a contextual policy, ``theta_center`` /
            ``theta_scale`` (the learning env's action-to-theta map).
    """

    policy: Mapping[str, Any]

    def __post_init__(self) -> None:
        super().__post_init__()
        from lrgym.controllers import sb3_policy

        if not isinstance(self.policy, Mapping):
            raise InvalidConfigError(f"policy must be an object, got {self.policy!r}")
        sb3_policy.check_reference(self.policy)
        kind = self.policy.get("kind", "contextual")
        if kind != self.kind:
            raise InvalidConfigError(
                f"policy kind {kind!r} is not {self.kind!r} (one of {list(POLICY_KINDS)})"
            )

    @cached_property
    def model(self) -> Any:
        """The policy's Stable-Baselines3 model, loaded on first use on the CPU.

        Loading **unpickles** the model file; its SHA-256 is checked against the controller
        file first (:func:`lrgym.controllers.sb3_policy.load_model`).

        Raises:
            ControllerFileError: the model file is missing or altered, or its library is not
                installed (the error names the extra to install).
        """
        from lrgym.controllers import sb3_policy

        model_path = Path(self.policy["model"])
        if not model_path.is_absolute() and self.path is not None:
            model_path = self.path.parent / model_path
        return sb3_policy.load_model(self.policy, model_path)

    def act(self, observation: Observation) -> np.ndarray:
        """The policy's deterministic action (float32, 1-D) for an observation of its env,
        after the observation normalisation it was trained with, if any.

        Raises:
            ControllerFileError: as :attr:`model`.
        """
        from lrgym.controllers import sb3_policy

        return sb3_policy.act(self.model, self.policy, observation)

    def describe(self) -> str:
        return f"{self.policy['algorithm']} {self.kind} policy {self.policy['model']}"

    def _kind_json(self) -> dict[str, Any]:
        return {"policy": dict(self.policy)}

    @classmethod
    def from_json(cls, content: Mapping[str, Any], path: Path | None) -> PolicyFile:
        """The file of ``content`` (read from ``path``).

        Raises:
            KeyError, TypeError, ValueError: a missing or malformed entry.
        """
        return cls(policy=content["policy"], **cls.metadata(content, path))


@dataclass(frozen=True, kw_only=True)
class ContextualPolicyFile(PolicyFile):
    """A policy learned on a bandit env: ``theta`` is the policy's deterministic action for the
    task's starting features, mapped by the env's ``theta = theta_center + theta_scale * a``."""

    kind: ClassVar[str] = "contextual"
    format_version: ClassVar[int] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        finite_floats(self.policy["theta_center"], 5, "theta_center")
        finite_floats(self.policy["theta_scale"], 5, "theta_scale")

    def theta_for(self, observation: StartingFeatures = None) -> np.ndarray:
        """``theta`` for a task whose starting features (its bandit env's reset observation)
        are ``observation``: the action clipped to ``[-1, 1]``, mapped to ``theta``.

        Raises:
            ControllerKindError: ``observation`` is ``None``.
            ControllerFileError: as :attr:`model`.
        """
        if observation is None:
            raise ControllerKindError(
                "this controller file holds a contextual policy: its theta depends on the task. "
                "Use saved.controller_for(observation) (or saved.theta_for) with the task's "
                "starting features, the reset observation of its bandit env"
            )
        if callable(observation):
            observation = observation()
        clipped = np.clip(self.act(observation).astype(np.float64), -1.0, 1.0)
        center = np.asarray(self.policy["theta_center"], dtype=np.float64)
        return center + np.asarray(self.policy["theta_scale"], dtype=np.float64) * clipped


@dataclass(frozen=True, kw_only=True)
class PerStepPolicyFile(PolicyFile):
    """A policy learned on a ``StepSizeControl-Dynamic-*`` env: :meth:`act` maps each
    observation of the run to the env's action (the next stretch's learning rate). It has no
    ``theta`` and is no controller; ``lrgym evaluate`` plays it on its env."""

    kind: ClassVar[str] = "per-step"
    format_version: ClassVar[int] = 3

    def __post_init__(self) -> None:
        if "kind" not in self.policy:
            object.__setattr__(self, "policy", {**self.policy, "kind": self.kind})
        super().__post_init__()

    def theta_for(self, observation: StartingFeatures = None) -> np.ndarray:
        """Raises :class:`ControllerKindError`: a per-step policy has no ``theta``."""
        raise ControllerKindError(
            "this controller file holds a per-step policy of a StepSizeControl-Dynamic env: it "
            "sets the learning rate through the env's step(action); it has no theta and is no "
            "controller. Play it with lrgym evaluate, or saved.act(observation) on that env"
        )
