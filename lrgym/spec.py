"""The settings of the lrgym envs: every setting, its default and its checks, once.

:class:`EnvSettings` holds what both envs share (the task family, features, evaluation sample,
data and device); :class:`BanditSettings` adds what only :class:`lrgym.envs.StepSizeControlEnv`
reads (the action map, ``relative``, ``eval_points``), :class:`DynamicSettings` what only
:class:`lrgym.envs.StepSizeControlDynamicEnv` reads (``control_interval`` and the action map).
The two envs differ in one shared default, ``divergence_penalty`` (a bandit reward of -1, a
dynamic return of -9).

Values are stored as tuples; the envs and ``gym.make`` also take lists (JSON).
:meth:`EnvSettings.from_kwargs` names a close match for an unknown key and
:meth:`EnvSettings.to_kwargs` gives the JSON form back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np

from lrgym.controllers import DEFAULT_LR_BOUNDS
from lrgym.controllers.loglinear import (
    LogLinearController,
    checked_max_change,
    checked_start,
    in_form,
)
from lrgym.errors import InvalidConfigError, UnknownSettingError, choice_error
from lrgym.features import FeatureConfig
from lrgym.reward import DEFAULT_DIVERGENCE_PENALTY
from lrgym.tasks.architectures import choose_memory_format
from lrgym.tasks.family import TaskFamily

ACTION_MODES = ("absolute", "multiplicative")
"""What the dynamic action sets: ``log10(eta)`` in ``lr_range``, or a factor on the current
rate."""

_Settings = TypeVar("_Settings", bound="EnvSettings")


@dataclass(frozen=True, kw_only=True)
class EnvSettings:
    """The settings both lrgym envs share, validated on construction.

    Attributes:
        dataset: one of :data:`lrgym.data.datasets.DATASETS`.
        architecture: ``"cnn"`` (the paper's sampled family), ``"lenet"`` (fixed
            [20, 50, 500]), ``"cifar-quick"`` (fixed [32, 32, 64, 64]), ``"mlp"``,
            ``"resnet"``, ``"transformer"`` or ``"cnn1d"`` (see :mod:`lrgym.tasks.family`).
        widths: ``[low, high]`` per sampled number, or ``None`` for the architecture default
            (:data:`lrgym.tasks.architectures.DEFAULT_WIDTHS`).
        norm: the ``resnet`` family's normalisation: ``"batch"``, ``"group"`` or ``"none"``
            (ignored by the other architectures).
        optimizer: one of :data:`lrgym.tasks.family.OPTIMIZERS`.
        momentum: SGD momentum in ``[0, 1)``.
        subset_fraction: ``[low, high]`` range of the fraction of the training set (uniform).
        steps: ``[low, high]`` range of the optimiser steps of a run (uniform integer).
        batch_size: ``[low, high]`` range of the batch size (uniform integer).
        lr: ``[low, high]`` range of eta_0 (log-uniform), inside ``lr_bounds``.
        gamma: feature smoothing, in ``[0, 1)``.
        feature_every: compute ``phi1`` exactly every k steps, estimated in between as
            ``feature_estimate`` says (``"dense"``, ``"last"`` or ``"hold"``, see
            :class:`lrgym.features.FeatureConfig`).
        feature_estimate: see ``feature_every``.
        eval_size: examples (>= 1) of the fixed evaluation sample of the training subset on
            which ``E`` is measured.
        test_size: test examples of the final test metrics (``None``: the whole test set).
        lr_bounds: ``[low, high]`` clipping range of eta, ``0 < low <= high < inf``.
        divergence_penalty: reward of a diverged run (finite).
        data_root: where the data lives (see :mod:`lrgym.data.datasets`; ``~`` expands).
        download: whether missing data may be downloaded.
        device: torch device (results are bit-reproducible on the CPU).
        memory_format: ``"auto"`` (the layout measured fastest for the architecture on the
            device, channels-last for the conv nets on the CPU), ``"contiguous"`` or
            ``"channels_last"``. Formats differ in rounding only; the same format and seed
            give bit-identical results.
    """

    dataset: str = "mnist"
    architecture: str = "cnn"
    widths: tuple[tuple[int, int], ...] | None = None
    norm: str = "batch"
    optimizer: str = "sgd"
    momentum: float = 0.9
    subset_fraction: tuple[float, float] = (0.1, 0.5)
    steps: tuple[int, int] = (300, 1000)
    batch_size: tuple[int, int] = (64, 64)
    lr: tuple[float, float] = (1e-4, 1e-1)
    gamma: float = 0.9
    feature_every: int = 1
    feature_estimate: str = "dense"
    eval_size: int = 1000
    test_size: int | None = None
    lr_bounds: tuple[float, float] = DEFAULT_LR_BOUNDS
    divergence_penalty: float = DEFAULT_DIVERGENCE_PENALTY
    data_root: str | None = None
    download: bool = True
    device: str = "cpu"
    memory_format: str = "auto"

    def __post_init__(self) -> None:
        family = self.family()  # checks dataset, architecture, optimizer and the ranges
        for name in ("subset_fraction", "steps", "batch_size", "lr"):
            self._set(name, getattr(family, name))
        if self.widths is not None:
            self._set("widths", tuple(tuple(w) for w in self.widths))
        self.features()  # checks gamma, feature_every, feature_estimate
        if _bad_int(self.eval_size) or self.eval_size < 1:
            raise InvalidConfigError(f"eval_size={self.eval_size!r} must be an integer >= 1")
        self._set("eval_size", int(self.eval_size))
        if self.test_size is not None and (_bad_int(self.test_size) or self.test_size < 1):
            raise InvalidConfigError(
                f"test_size={self.test_size!r} must be None or an integer >= 1"
            )
        if not math.isfinite(self.divergence_penalty):
            raise InvalidConfigError(
                f"divergence_penalty={self.divergence_penalty!r} must be finite"
            )
        self._set("divergence_penalty", float(self.divergence_penalty))
        bounds = tuple(float(b) for b in self.lr_bounds)
        if len(bounds) != 2 or not 0.0 < bounds[0] <= bounds[1] < math.inf:
            raise InvalidConfigError(
                f"lr_bounds={list(self.lr_bounds)!r} must be [low, high] with 0 < low <= high"
            )
        self._set("lr_bounds", bounds)
        if not bounds[0] <= family.lr[0] <= family.lr[1] <= bounds[1]:
            raise InvalidConfigError(
                f"lr={list(self.lr)!r} (the range of eta_0) must lie inside lr_bounds="
                f"{list(bounds)!r}; widen lr_bounds or narrow lr"
            )
        choose_memory_format(self.architecture, self.device, self.memory_format)  # validates

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen field in __post_init__

    def family(self) -> TaskFamily:
        """The task family these settings sample from."""
        return TaskFamily(
            dataset=self.dataset,
            architecture=self.architecture,
            widths=None if self.widths is None else tuple(tuple(w) for w in self.widths),  # type: ignore[misc]
            subset_fraction=tuple(self.subset_fraction),  # type: ignore[arg-type]
            steps=tuple(self.steps),  # type: ignore[arg-type]
            batch_size=tuple(self.batch_size),  # type: ignore[arg-type]
            lr=tuple(self.lr),  # type: ignore[arg-type]
            optimizer=self.optimizer,
            momentum=self.momentum,
            norm=self.norm,
        )

    def features(self) -> FeatureConfig:
        """How the features are computed."""
        return FeatureConfig(
            gamma=self.gamma, every=self.feature_every, estimate=self.feature_estimate
        )

    @classmethod
    def from_kwargs(cls: type[_Settings], kwargs: Mapping[str, Any]) -> _Settings:
        """The settings of keyword arguments (``gym.make``'s), lists taken for tuples.

        Raises:
            UnknownSettingError: a key is no setting of ``cls``; the message names the close
                matches.
            InvalidConfigError: a value is invalid; the message names the field and the value.
        """
        names = [f.name for f in fields(cls)]
        for key in kwargs:
            if key not in names:
                raise UnknownSettingError.naming(key, names, cls.__name__)
        return cls(**kwargs)

    def to_kwargs(self) -> dict[str, Any]:
        """Every setting as JSON-serialisable keyword arguments (lists for tuples)."""
        return {name: _jsonable(value) for name, value in asdict(self).items()}


@dataclass(frozen=True, kw_only=True)
class BanditSettings(EnvSettings):
    """The settings of :class:`lrgym.envs.StepSizeControlEnv`: those of :class:`EnvSettings`
    plus:

    Attributes:
        eval_points: S (>= 2), the evaluation points of ``E`` evenly spaced over the run.
        relative: the relative controller ``eta_t = eta_{t-1} exp(theta^T phi_hat)``.
        max_change: the bounded form: the controller's rate changes by at most this factor
            per step (finite, ``> 1``), or ``None`` (the paper's controller, the default).
        start: how the controller sets the first step's rate: ``"eta0"`` (the paper's, the
            default) or ``"probe"`` (the rule's fixed point on the first batch, whatever
            eta_0; :class:`lrgym.controllers.LogLinearController`).
        theta_center: 5 finite numbers; the raw controller parameters of an action are
            ``theta_center + theta_scale * action``.
        theta_scale: 5 positive finite numbers, see ``theta_center``.
    """

    eval_points: int = 10
    relative: bool = False
    max_change: float | None = None
    start: str = "eta0"
    theta_center: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, -5.0)
    theta_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 10.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if _bad_int(self.eval_points) or self.eval_points < 2:
            raise InvalidConfigError(f"eval_points={self.eval_points!r} must be an integer >= 2")
        self._set("eval_points", int(self.eval_points))
        for name in ("theta_center", "theta_scale"):
            value = getattr(self, name)
            vector = tuple(float(v) for v in value) if _is_sequence(value) else ()
            if len(vector) != 5 or not all(math.isfinite(v) for v in vector):
                raise InvalidConfigError(f"{name}={value!r} must be 5 finite numbers")
            self._set(name, vector)
        if any(v <= 0 for v in self.theta_scale):
            raise InvalidConfigError(f"theta_scale={list(self.theta_scale)!r} must be positive")
        self._set("relative", bool(self.relative))
        self._set("max_change", checked_max_change(self.max_change))
        self._set("start", checked_start(self.start, self.relative))

    def controller(self, theta: Sequence[float] | np.ndarray) -> LogLinearController:
        """The log-linear controller of ``theta`` in these settings' form (``relative``,
        ``lr_bounds``, ``max_change``, ``start``)."""
        return in_form(theta, self)


@dataclass(frozen=True, kw_only=True)
class DynamicSettings(EnvSettings):
    """The settings of :class:`lrgym.envs.StepSizeControlDynamicEnv`: those of
    :class:`EnvSettings` (``divergence_penalty`` here the return of a diverged episode,
    default -9: the bandit's -1 times ``S - 1 = 9``) plus:

    Attributes:
        control_interval: optimiser steps per action (a positive integer).
        action_mode: ``"absolute"`` (the action sets ``log10(eta)`` in ``lr_range``) or
            ``"multiplicative"`` (it multiplies the current rate by ``max_factor ** a``).
        lr_range: ``[low, high]`` learning rates of the absolute action, inside
            ``lr_bounds``, ``low < high``; default ``log10(eta)`` in ``[-5, 0]``.
        max_factor: the multiplicative action's largest change of the rate (finite, > 1).
    """

    divergence_penalty: float = -9.0
    control_interval: int = 50
    action_mode: str = "absolute"
    lr_range: tuple[float, float] = (1e-5, 1.0)
    max_factor: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if _bad_int(self.control_interval) or self.control_interval < 1:
            raise InvalidConfigError(
                f"control_interval={self.control_interval!r} must be a positive integer "
                "(optimiser steps per action)"
            )
        self._set("control_interval", int(self.control_interval))
        if self.action_mode not in ACTION_MODES:
            raise choice_error("action_mode", self.action_mode, ACTION_MODES)
        low, high = (float(v) for v in self.lr_range)
        if not self.lr_bounds[0] <= low < high <= self.lr_bounds[1]:
            raise InvalidConfigError(
                f"lr_range={list(self.lr_range)!r} must satisfy lr_bounds[0] <= low < high <= "
                f"lr_bounds[1] (lr_bounds={list(self.lr_bounds)!r})"
            )
        self._set("lr_range", (low, high))
        if not 1.0 < self.max_factor < math.inf:
            raise InvalidConfigError(f"max_factor={self.max_factor!r} must be a finite number > 1")
        self._set("max_factor", float(self.max_factor))


def _bad_int(value: Any) -> bool:
    """Whether ``value`` is not a whole number (``True`` for a bool or a non-number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return int(value) != value


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or hasattr(value, "tolist")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
