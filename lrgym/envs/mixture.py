"""The mixture envs: every episode draws a task family (an architecture, a dataset and an
optimiser) from a declared list, with weights, then a task of that family.

A controller learned here has seen many families; one held out (``exclude=[name]``) measures
how it does on a family it never saw. ``StepSizeControl-Mixture-v0`` is the bandit env (one
action, the controller's ``theta``, per training run) and ``StepSizeControl-Dynamic-Mixture-v0``
its per-step twin; both are the single-family envs with the family switched at every reset, so
each episode is exactly an episode of its family's env (same task, same run) under the
mixture's shared settings.

Settings come in three groups (:class:`MixtureSettings`):

* the mixture's own: ``families`` (name to that family's settings), ``include``, ``exclude``,
  ``weights`` and the eta_0 ranges ``lr_sgd`` and ``lr_adaptive``;
* per family (inside ``families``): what makes the family and its runs (``dataset``,
  ``architecture``, ``optimizer``, ``steps``, ``eval_size``, ``feature_every``, ...);
* shared by every family (passed to ``gym.make`` as for any lrgym env): the action map
  (``theta_center``, ``theta_scale``, ``relative``, ``lr_range``, ...), ``eval_points``,
  ``gamma``, ``lr_bounds``, the divergence penalty, and where the runs happen (``data_root``,
  ``device``, ...). Run settings such as ``steps`` may also be passed here, and then hold for
  every family.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, SupportsFloat, TypeVar

import numpy as np

from lrgym.data.datasets import ArrayDataset, load_dataset
from lrgym.envs.bandit import StepSizeControlEnv
from lrgym.envs.base import TrainingTaskEnv
from lrgym.envs.dynamic import StepSizeControlDynamicEnv
from lrgym.errors import DatasetNotFoundError, InvalidConfigError, UnknownSettingError
from lrgym.spec import BanditSettings, DynamicSettings, EnvSettings
from lrgym.tasks.architectures import check_architecture

_Settings = TypeVar("_Settings", bound=EnvSettings)
_FAMILY_SETTINGS = sorted(
    {f.name for cls in (BanditSettings, DynamicSettings) for f in fields(cls)}
)

FAMILY_KEYS = ("dataset", "architecture", "optimizer", "widths", "norm", "lr")
"""Settings that only a family sets (in ``families``), never every family at once."""
SHARED_KEYS = (
    "gamma",
    "eval_points",
    "relative",
    "max_change",
    "start",
    "theta_center",
    "theta_scale",
    "lr_bounds",
    "divergence_penalty",
    "action_mode",
    "lr_range",
    "max_factor",
    "data_root",
    "download",
    "device",
    "memory_format",
)
"""Settings that every family shares (the action and observation spaces, the reward's scale,
where the runs happen); a family may not set one of its own."""
ADAPTIVE = ("adam", "adamw", "rmsprop")
"""The optimisers whose eta_0 is drawn from ``lr_adaptive`` (the others' from ``lr_sgd``)."""


@dataclass(frozen=True, kw_only=True)
class MixtureSettings:
    """The mixture's own settings, validated on construction.

    Attributes:
        families: each family's name and its settings: what it changes of the env settings'
            defaults (:class:`lrgym.spec.BanditSettings` and
            :class:`lrgym.spec.DynamicSettings`; a setting of one env kind only, such as
            ``control_interval``, is ignored by the other), at least its ``dataset``; no
            setting of :data:`SHARED_KEYS`. The registered ids declare lrgym's families
            (:data:`lrgym.registration.MIXTURE_FAMILIES`).
        include: the names to draw from (``None``: every family); shell patterns such as
            ``"*-sgd"`` match several.
        exclude: names (or patterns) never drawn: a family held out.
        weights: a weight per name (finite, >= 0; a family not named weighs 1); a family is
            drawn with its weight over the sum of the drawn families' weights.
        lr_sgd: ``[low, high]`` log-uniform range of eta_0 of the SGD families.
        lr_adaptive: ``[low, high]`` range of eta_0 of the Adam, AdamW and RMSprop families.
            A family that sets its own ``lr`` keeps it.
    """

    families: Mapping[str, Mapping[str, Any]]
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    weights: Mapping[str, float] | None = None
    lr_sgd: tuple[float, float] = (1e-5, 1.0)
    lr_adaptive: tuple[float, float] = (1e-6, 1e-1)

    def __post_init__(self) -> None:
        if not isinstance(self.families, Mapping) or not self.families:
            raise InvalidConfigError(
                f"families={self.families!r} must map each family's name to its settings"
            )
        for name, overrides in self.families.items():
            if not isinstance(overrides, Mapping) or "dataset" not in overrides:
                raise InvalidConfigError(
                    f"families[{name!r}]={overrides!r} must be the family's settings, at "
                    "least its 'dataset'"
                )
            for key in overrides:
                if key not in _FAMILY_SETTINGS:
                    raise UnknownSettingError.naming(key, _FAMILY_SETTINGS, f"family {name!r}")
            shared = sorted(set(overrides) & set(SHARED_KEYS))
            if shared:
                raise InvalidConfigError(
                    f"families[{name!r}] sets {shared}, which every family shares; pass them "
                    "to gym.make for the whole mixture"
                )
        names = list(self.families)
        for field in ("include", "exclude"):  # one name alone stands for a list of it
            if isinstance(getattr(self, field), str):
                object.__setattr__(self, field, (getattr(self, field),))
        if self.include is not None:
            object.__setattr__(self, "include", tuple(self.include))
            self._known("include", self.include, names, patterns=True)
        object.__setattr__(self, "exclude", tuple(self.exclude))
        self._known("exclude", self.exclude, names, patterns=True)
        weights = dict(self.weights or {})
        self._known("weights", tuple(weights), names, patterns=False)
        for name, weight in weights.items():
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                raise InvalidConfigError(
                    f"weights[{name!r}]={weight!r} must be a finite number >= 0"
                )
        for field in ("lr_sgd", "lr_adaptive"):
            low, high = (float(v) for v in getattr(self, field))
            if not 0.0 < low <= high < math.inf:
                raise InvalidConfigError(
                    f"{field}={list(getattr(self, field))!r} must be [low, high], 0 < low <= high"
                )
            object.__setattr__(self, field, (low, high))
        members = self.members()
        if not members:
            raise InvalidConfigError(
                f"include={self.include!r} and exclude={list(self.exclude)!r} leave no family "
                f"to draw; the families are {names}"
            )
        if sum(self.weight(name) for name in members) <= 0:
            raise InvalidConfigError(f"weights={weights!r} give every drawn family weight 0")

    @staticmethod
    def _known(field: str, given: tuple[str, ...], names: list[str], patterns: bool) -> None:
        for name in given:
            if not isinstance(name, str):
                raise InvalidConfigError(f"{field} holds {name!r}; expected family names")
            if not (fnmatch.filter(names, name) if patterns else name in names):
                close = difflib.get_close_matches(name, names)
                hint = f"did you mean {close[0]!r}?" if close else f"the families are {names}"
                raise InvalidConfigError(f"{field} names {name!r}, which is no family; {hint}")

    def members(self) -> list[str]:
        """The families drawn from, in declaration order."""
        return [
            name
            for name in self.families
            if (self.include is None or _matches(name, self.include))
            and not _matches(name, self.exclude)
        ]

    def weight(self, name: str) -> float:
        """The family's weight (1 unless ``weights`` names it)."""
        return float((self.weights or {}).get(name, 1.0))

    def probabilities(self) -> np.ndarray:
        """Each member's probability of being drawn, in :meth:`members`' order."""
        weights = np.array([self.weight(name) for name in self.members()], dtype=np.float64)
        return weights / weights.sum()

    def member_settings(
        self, settings_cls: type[_Settings], shared: Mapping[str, Any]
    ) -> dict[str, _Settings]:
        """Each member's env settings: the family's, its eta_0 range by optimiser, then the
        ``shared`` settings (``gym.make``'s other keyword arguments).

        Raises:
            UnknownSettingError: a shared key is no setting of ``settings_cls`` nor of the
                mixture; the message names the close matches.
            InvalidConfigError: a shared key only a family may set, or a bad value.
        """
        known = [f.name for f in fields(settings_cls)]
        for key in shared:
            if key not in known:
                raise UnknownSettingError.naming(
                    key, [*known, *MIXTURE_KEYS], f"the mixture of {settings_cls.__name__}"
                )
            if key in FAMILY_KEYS:
                raise InvalidConfigError(
                    f"{key} is set per family; change it in families=, or draw other families "
                    "with include=/exclude="
                    + (" (eta_0's ranges: lr_sgd, lr_adaptive)" if key == "lr" else "")
                )
        members = {}
        for name in self.members():
            overrides = {k: v for k, v in self.families[name].items() if k in known}
            optimizer = overrides.get("optimizer", settings_cls.optimizer)
            overrides.setdefault("lr", self.lr_adaptive if optimizer in ADAPTIVE else self.lr_sgd)
            try:
                members[name] = settings_cls.from_kwargs({**overrides, **shared})
            except InvalidConfigError as error:
                raise InvalidConfigError(f"family {name!r}: {error}") from error
        return members


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


MIXTURE_KEYS = tuple(f.name for f in fields(MixtureSettings))
"""The keyword arguments of a mixture env that are the mixture's own."""


class _Mixture(TrainingTaskEnv):
    """What both mixture envs add to their single-family env: the members, the draw and the
    switch between them."""

    mixture: MixtureSettings
    members: dict[str, Any]
    """Each drawn family's env settings (:class:`lrgym.spec.EnvSettings`)."""
    member: str
    """The family of the episode under way (or of the last one)."""

    def _members(self, settings_cls: type[_Settings], kwargs: dict[str, Any]) -> _Settings:
        """Split ``kwargs``, build every member's settings and load every member's data (so a
        missing dataset is an error now, not at some later reset); returns the first member's
        settings, to build the env with."""
        own = {key: kwargs.pop(key) for key in MIXTURE_KEYS if key in kwargs}
        if "families" not in own:
            raise InvalidConfigError(
                "a mixture env needs families= (make a registered mixture id, e.g. "
                "gym.make('StepSizeControl-Mixture-v0'), to get lrgym's)"
            )
        self.mixture = MixtureSettings(**own)
        self.members = self.mixture.member_settings(settings_cls, kwargs)
        self._datasets: dict[str, ArrayDataset] = {}
        for name, settings in self.members.items():
            root = settings.data_root
            try:
                data = load_dataset(
                    settings.dataset,
                    data_root=None if root is None else os.path.expanduser(root),
                    download=settings.download,
                )
            except DatasetNotFoundError as error:
                hint = (
                    f"The mixture's family {name!r} trains on it; to draw without it, pass "
                    f"exclude=[{name!r}] (every family on {error.dataset}: "
                    f"exclude=['{settings.dataset}-*'])."
                )
                raise DatasetNotFoundError(
                    error.dataset, error.searched, f"{error.reason}\n{hint}"
                ) from error
            check_architecture(
                settings.architecture, settings.dataset, data.input_shape, tokens=data.tokens
            )
            self._datasets[name] = data
        self.member = next(iter(self.members))
        return self.members[self.member]

    _settings_cls: type[EnvSettings]
    """The single-family env's settings class (a member's settings)."""

    def __init__(self, *, render_mode: str | None = None, **kwargs: Any) -> None:
        first = self._members(self._settings_cls, kwargs)
        # the single-family env's __init__, next in the concrete class's MRO
        super().__init__(render_mode=render_mode, **first.to_kwargs())  # type: ignore[call-arg]
        self._switch(self.member)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The single-family env's reset, in a family drawn first; ``info["family"]``."""
        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, "family": self.member}

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """The single-family env's step; ``info["family"]``."""
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "family": self.member}

    def _switch(self, name: str) -> None:
        settings = self.members[name]
        self.member, self.settings = name, settings
        self.family, self.features = settings.family(), settings.features()
        self._data = self._datasets[name]

    def _choose_family(self, options: dict[str, Any]) -> None:
        """Switch to ``options["family"]`` (popped) or to a family drawn from ``np_random``."""
        name = options.pop("family", None)
        if name is None:
            names = self.mixture.members()
            k = int(self.np_random.choice(len(names), p=self.mixture.probabilities()))
            name = names[k]
        elif name not in self.members:
            raise InvalidConfigError(
                f"options['family']={name!r} is not drawn by this env; its families are "
                f"{list(self.members)}"
            )
        self._switch(name)


class StepSizeControlMixtureEnv(_Mixture, StepSizeControlEnv):
    """The bandit env over a mixture of task families (``StepSizeControl-Mixture-v0``).

    Every ``reset`` draws a family from ``np_random`` with the mixture's weights, then a task
    of that family, and returns that task's starting features; ``step(action)`` runs it as the
    family's own env would (:class:`lrgym.envs.StepSizeControlEnv`, whose spaces, action map and
    reward this env has). ``info["family"]`` names the family on reset and step; ``options=
    {"family": name}`` picks one (with ``"task"``, a task of it); ``env.unwrapped.settings`` are
    the current family's. The settings: :class:`MixtureSettings` and this module's doc.

    ## Version History

    * v0: initial release.
    """

    _settings_cls = BanditSettings


class StepSizeControlDynamicMixtureEnv(_Mixture, StepSizeControlDynamicEnv):
    """The per-step env over a mixture of task families (``StepSizeControl-Dynamic-Mixture-v0``):
    what :class:`StepSizeControlMixtureEnv` is to the bandit env, for
    :class:`lrgym.envs.StepSizeControlDynamicEnv` (each family acts every ``control_interval``
    steps of its own id's twin).

    ## Version History

    * v0: initial release.
    """

    _settings_cls = DynamicSettings
