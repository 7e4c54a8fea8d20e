"""What every learned controller file records, and the one question every consumer asks it.

A controller file (:mod:`lrgym.controllers.files`) is of one of three kinds, each its own type:
:class:`LogLinearFile` (a learned ``theta``), and the policy files of
:mod:`lrgym.controllers.policy_files` (``ContextualPolicyFile``, ``PerStepPolicyFile``). They
share :class:`SavedController`: the env the controller was learned on, its feature settings and
provenance, and :meth:`SavedController.controller_for`, the controller for a task given its
starting features.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import numpy as np

from lrgym.controllers.base import DEFAULT_LR_BOUNDS, checked_bounds
from lrgym.controllers.loglinear import (
    LogLinearController,
    checked_max_change,
    checked_start,
    in_form,
)
from lrgym.errors import InvalidConfigError, LrgymError

FORMAT = "lrgym-controller"
"""The ``format`` entry of every controller file."""
FORM_VERSION = 4
"""The file format version of a file with ``max_change`` or ``start`` (older versions, which
would ignore them, refuse it)."""

Observation: TypeAlias = Sequence[float] | np.ndarray
StartingFeatures: TypeAlias = Observation | Callable[[], Observation] | None
"""A task's starting features (its bandit env's reset observation, 5 numbers), a function that
returns them (called only by a file whose ``theta`` depends on the task, so a caller need not
reset an env for the others), or ``None`` where no task is at hand."""


class ControllerFileError(LrgymError):
    """A controller file is missing, unreadable, of another format or of a newer version."""


class ControllerKindError(ControllerFileError, InvalidConfigError):
    """The controller file's kind cannot do what was asked: a per-step policy has no ``theta``
    and is no controller; a contextual policy's ``theta`` needs the task's starting features."""


@dataclass(frozen=True, kw_only=True)
class SavedController(ABC):
    """A learned controller and where it came from: the base of the controller file types
    (:class:`LogLinearFile`, :class:`~lrgym.controllers.policy_files.ContextualPolicyFile`,
    :class:`~lrgym.controllers.policy_files.PerStepPolicyFile`), which
    :func:`lrgym.load_controller` returns.

    Attributes:
        env_id: the env it was learned on.
        env_kwargs: that env's keyword arguments (beyond the registered ones).
        relative: whether the controller is the relative form.
        lr_bounds: the clipping range of eta, ``(low, high)``.
        max_change: the bound on the rate's change per step (a factor ``> 1``; the bounded
            form, :class:`~lrgym.controllers.loglinear.LogLinearController`), or ``None``.
        start: how the controller sets the first step's rate, ``"eta0"`` or ``"probe"``
            (:class:`~lrgym.controllers.loglinear.LogLinearController`).
        features: the feature settings (``gamma``, ``every``, ``estimate``).
        lrgym_version: the lrgym version that wrote the file.
        source: free-form provenance (algorithm, episodes, seed).
        path: the file this was loaded from (a policy file's model lies relative to it).
    """

    kind: ClassVar[str]
    """``"log-linear"``, ``"contextual"`` or ``"per-step"``."""
    format_version: ClassVar[int]
    """The oldest file format version that holds this kind (1, 2 or 3)."""

    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    relative: bool = False
    lr_bounds: tuple[float, float] = DEFAULT_LR_BOUNDS
    max_change: float | None = None
    start: str = "eta0"
    features: Mapping[str, Any] = field(default_factory=dict)
    lrgym_version: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "lr_bounds", checked_bounds(finite_floats(self.lr_bounds, 2, "lr_bounds"))
        )
        object.__setattr__(self, "max_change", checked_max_change(self.max_change))
        object.__setattr__(self, "start", checked_start(self.start, self.relative))

    @abstractmethod
    def theta_for(self, observation: StartingFeatures = None) -> np.ndarray:
        """``theta`` (float64, ``(5,)``) for the task whose starting features are
        ``observation`` (see :data:`StartingFeatures`).

        Raises:
            ControllerKindError: the file has no ``theta`` (a per-step policy), or needs the
                starting features and got ``None`` (a contextual policy).
        """

    def controller_for(self, observation: StartingFeatures = None) -> LogLinearController:
        """The controller for the task whose starting features are ``observation``: the
        log-linear controller with :meth:`theta_for` and this file's form (:meth:`with_theta`).
        Every consumer of controller files (``ControlledLR``, the dynamic envs, evaluation,
        benchmarks) asks this.

        Raises:
            ControllerKindError: as :meth:`theta_for`.
        """
        return self.with_theta(self.theta_for(observation))

    def with_theta(self, theta: Observation) -> LogLinearController:
        """The log-linear controller of ``theta`` in this file's form: its ``relative``,
        ``lr_bounds``, ``max_change`` and ``start`` (e.g. for a perturbed ``theta``)."""
        return in_form(theta, self)

    def controller(self) -> LogLinearController:
        """The controller where no task is at hand: :meth:`controller_for` with ``None``
        (log-linear files).

        Raises:
            ControllerKindError: the file is a policy, whose controller needs a task.
        """
        return self.controller_for(None)

    @abstractmethod
    def describe(self) -> str:
        """One line for people: ``theta``, or the policy's algorithm, kind and model."""

    def to_json(self) -> dict[str, Any]:
        """The file's content (the entries of the kind follow :meth:`_kind_json`)."""
        content: dict[str, Any] = {
            "format": FORMAT,
            "version": self.format_version if self._paper_form else FORM_VERSION,
            "lrgym_version": self.lrgym_version,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "theta": None,
            "theta_cov": None,
            "relative": self.relative,
            "lr_bounds": list(self.lr_bounds),
            "features": dict(self.features),
            "source": dict(self.source),
        }
        if not self._paper_form:  # files of the paper's form stay as older versions wrote them
            content["max_change"] = self.max_change
            content["start"] = self.start
        return {**content, **self._kind_json()}  # keeps the order above, then new entries

    @property
    def _paper_form(self) -> bool:
        """Whether the controller has neither the bounded form nor the probe start."""
        return self.max_change is None and self.start == "eta0"

    @abstractmethod
    def _kind_json(self) -> dict[str, Any]:
        """The entries this kind writes (``theta``, ``theta_cov``, ``policy``)."""

    @staticmethod
    def metadata(content: Mapping[str, Any], path: Path | None) -> dict[str, Any]:
        """The keyword arguments of the shared fields, read from a file's ``content``."""
        return {
            "env_id": str(content["env_id"]),
            "env_kwargs": dict(content.get("env_kwargs", {})),
            "relative": bool(content.get("relative", False)),
            "lr_bounds": finite_floats(content["lr_bounds"], 2, "lr_bounds"),
            "max_change": content.get("max_change"),
            "start": content.get("start", "eta0"),
            "features": dict(content.get("features", {})),
            "lrgym_version": str(content.get("lrgym_version", "")),
            "source": dict(content.get("source", {})),
            "path": path,
        }


@dataclass(frozen=True, kw_only=True)
class LogLinearFile(SavedController):
    """A log-linear controller file: the learned distribution over ``theta`` (REPS, CMA-ES and
    random search write these; plain JSON).

    Attributes:
        theta: mean of the learned distribution over ``theta`` (5 numbers).
        theta_cov: its covariance (5 x 5), or ``None``.
    """

    kind: ClassVar[str] = "log-linear"
    format_version: ClassVar[int] = 1

    theta: tuple[float, ...]
    theta_cov: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "theta", finite_floats(self.theta, 5, "theta"))
        if self.theta_cov is not None:
            rows = tuple(finite_floats(row, 5, "theta_cov row") for row in self.theta_cov)
            if len(rows) != 5:
                raise InvalidConfigError(f"theta_cov must have 5 rows, got {len(rows)}")
            object.__setattr__(self, "theta_cov", rows)

    def theta_for(self, observation: StartingFeatures = None) -> np.ndarray:
        """The learned mean, whatever the task (``observation`` is not read)."""
        return np.asarray(self.theta, dtype=np.float64)

    def describe(self) -> str:
        return f"theta = {np.round(self.theta_for(), 4).tolist()}"

    def _kind_json(self) -> dict[str, Any]:
        cov = None if self.theta_cov is None else [list(row) for row in self.theta_cov]
        return {"theta": list(self.theta), "theta_cov": cov}

    @classmethod
    def from_json(cls, content: Mapping[str, Any], path: Path | None) -> LogLinearFile:
        """The file of ``content`` (read from ``path``).

        Raises:
            KeyError, TypeError, ValueError: a missing or malformed entry.
        """
        return cls(
            theta=content["theta"], theta_cov=content["theta_cov"], **cls.metadata(content, path)
        )


def finite_floats(values: Sequence[Any], count: int, name: str) -> tuple[float, ...]:
    """``values`` as a tuple of ``count`` finite floats.

    Raises:
        InvalidConfigError: another count, or a value that is not a finite number.
    """
    numbers = tuple(float(v) for v in values)
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise InvalidConfigError(f"{name} must be {count} finite numbers, got {values!r}")
    return numbers


def theta_distribution(
    action_mean: np.ndarray, action_cov: np.ndarray, center: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map a Gaussian over normalised actions to one over ``theta = center + scale * a``."""
    theta = center + scale * np.clip(action_mean, -1.0, 1.0)
    return theta, action_cov * np.outer(scale, scale)
