"""The ask/tell protocol every population learner implements, and their registry.

A learner proposes a batch of actions, is told their rewards, and updates itself::

    learner = make_learner("cmaes", dim=5, config={"samples": 16}, seed=0)
    for _ in range(iterations):
        actions = learner.ask()                    # (samples, dim), in the env's action units
        rewards = [run_episode(a) for a in actions]
        info = learner.tell(actions, rewards)      # info.mean_reward, info.best_reward
    action, cov = learner.recommendation()         # the controller it reports

:func:`lrgym_agents.loop.train` drives any of them with the collectors, checkpoints and logs; REPS
(:mod:`lrgym_agents.learners.reps`), CMA-ES (:mod:`lrgym_agents.learners.cmaes`) and random search
(:mod:`lrgym_agents.learners.random_search`) implement it. ``state_dict()`` is JSON-serialisable and
``from_state_dict`` continues bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any, Protocol

import numpy as np

from lrgym.errors import InvalidConfigError


class TellInfo(Protocol):
    """What a :meth:`AskTellLearner.tell` returns: at least the batch's mean and best reward
    (learners add their own diagnostics as dataclass fields)."""

    mean_reward: float
    best_reward: float


class AskTellLearner(Protocol):
    """A learner of a fixed action by batches of episodes."""

    iteration: int
    """Completed :meth:`tell` calls."""

    def ask(self) -> np.ndarray:
        """The next batch of actions, ``(samples, dim)``."""
        ...

    def tell(self, actions: np.ndarray, rewards: Sequence[float] | np.ndarray) -> Any:
        """Update with the rewards of the batch :meth:`ask` returned (a :class:`TellInfo`)."""
        ...

    def recommendation(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The action the learner reports now, and the covariance of its search around it
        (``None`` when it has none)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (JSON-serialisable)."""
        ...


def _registry() -> dict[str, tuple[type, Callable[..., Any], Callable[[dict[str, Any]], Any]]]:
    # name -> (config class, constructor, from_state_dict); imported lazily so that a missing
    # optional package (cma) only matters to the learner that needs it
    from .cmaes import CMAES, CMAESConfig
    from .random_search import RandomSearch, RandomSearchConfig
    from .reps import REPS, REPSConfig

    return {
        "reps": (REPSConfig, REPS, REPS.from_state_dict),
        "cmaes": (CMAESConfig, CMAES, CMAES.from_state_dict),
        "random": (RandomSearchConfig, RandomSearch, RandomSearch.from_state_dict),
    }


ASK_TELL_LEARNERS = ("reps", "cmaes", "random")
"""Names of the ask/tell learners (``lrgym train NAME``)."""


def _entry(name: str) -> tuple[type, Callable[..., Any], Callable[[dict[str, Any]], Any]]:
    if name not in ASK_TELL_LEARNERS:
        raise InvalidConfigError(
            f"unknown ask/tell learner {name!r}; choose one of {list(ASK_TELL_LEARNERS)}"
        )
    return _registry()[name]


def learner_config(name: str, settings: Mapping[str, Any] | None = None) -> Any:
    """The config dataclass of learner ``name`` with ``settings`` (validated).

    Raises:
        InvalidConfigError: unknown learner or setting, or a value out of range.
    """
    config_class = _entry(name)[0]
    allowed = {f.name for f in fields(config_class)}
    unknown = set(settings or {}) - allowed
    if unknown:
        raise InvalidConfigError(
            f"{name} has no setting(s) {sorted(unknown)}; its settings are {sorted(allowed)}"
        )
    return config_class(**dict(settings or {}))


def make_learner(
    name: str, dim: int, config: Any | Mapping[str, Any] | None = None, *, seed: int
) -> AskTellLearner:
    """A fresh learner ``name`` over a ``dim``-dimensional action in ``[-1, 1]^dim``."""
    if config is None or isinstance(config, Mapping):
        config = learner_config(name, config)
    return _entry(name)[1](dim, config, seed=seed)


def learner_from_state(name: str, state: dict[str, Any]) -> AskTellLearner:
    """Rebuild learner ``name`` from its :meth:`~AskTellLearner.state_dict`."""
    return _entry(name)[2](state)


def config_dict(config: Any) -> dict[str, Any]:
    """A learner config as a JSON-ready dict."""
    return asdict(config)
