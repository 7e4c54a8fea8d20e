"""Every ``gymnasium.register`` call of lrgym, with string entry points.

Each id states only what it changes of the settings' defaults (:mod:`lrgym.spec`); it is
registered with all its settings, JSON-serialisable (lists, not tuples), so
``EnvSpec.to_json`` round-trips.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import gymnasium as gym

from lrgym.spec import BanditSettings, DynamicSettings, EnvSettings

ENTRY_POINT = "lrgym.envs.bandit:StepSizeControlEnv"
DYNAMIC_ENTRY_POINT = "lrgym.envs.dynamic:StepSizeControlDynamicEnv"
_SHARED = frozenset(f.name for f in fields(EnvSettings))

_MNIST: dict[str, Any] = {"dataset": "mnist"}
_RMSPROP = {"optimizer": "rmsprop", "lr": [1e-5, 1e-2]}

_OVERRIDES: dict[str, dict[str, Any]] = {
    "StepSizeControl-MNIST-v0": _MNIST,
    "StepSizeControl-MNIST-RMSprop-v0": {**_MNIST, **_RMSPROP},
    "StepSizeControl-FashionMNIST-v0": {"dataset": "fashion_mnist"},
    "StepSizeControl-CIFAR10-v0": {"dataset": "cifar10"},
    "StepSizeControl-CIFAR10-RMSprop-v0": {"dataset": "cifar10", **_RMSPROP},
    "StepSizeControl-Digits-v0": {
        "dataset": "digits",
        "subset_fraction": [0.5, 1.0],
        "steps": [100, 300],
        "batch_size": [32, 32],
        "eval_size": 500,
    },
    "StepSizeControl-Toy-v0": {
        "dataset": "toy",
        "architecture": "mlp",
        "widths": [[8, 32]],
        "subset_fraction": [0.5, 1.0],
        "steps": [40, 80],
        "batch_size": [32, 32],
        "lr": [1e-3, 1.0],
        "eval_size": 256,
    },
}
"""What each bandit id changes of :class:`lrgym.spec.BanditSettings`'s defaults (every id
names its dataset)."""

_DYNAMIC_SOURCES = {
    "MNIST": ("StepSizeControl-MNIST-v0", None),
    "MNIST-RMSprop": ("StepSizeControl-MNIST-RMSprop-v0", None),
    "FashionMNIST": ("StepSizeControl-FashionMNIST-v0", None),
    "CIFAR10": ("StepSizeControl-CIFAR10-v0", None),
    "Digits": ("StepSizeControl-Digits-v0", 20),
    "Toy": ("StepSizeControl-Toy-v0", 10),
}
"""Each per-step id's bandit id (whose task family it runs) and its ``control_interval``
(``None``: :class:`lrgym.spec.DynamicSettings`'s default)."""

ENV_KWARGS: dict[str, dict[str, Any]] = {
    env_id: BanditSettings.from_kwargs(overrides).to_kwargs()
    for env_id, overrides in _OVERRIDES.items()
}
"""The registered bandit ids and their settings, every one (JSON: lists for tuples), as
``gym.spec(env_id).kwargs`` holds them."""

DYNAMIC_ENV_KWARGS: dict[str, dict[str, Any]] = {
    f"StepSizeControl-Dynamic-{name}-v0": DynamicSettings.from_kwargs(
        {
            **{k: v for k, v in _OVERRIDES[source].items() if k in _SHARED},
            **({} if interval is None else {"control_interval": interval}),
        }
    ).to_kwargs()
    for name, (source, interval) in _DYNAMIC_SOURCES.items()
}
"""The registered per-step ids (:class:`lrgym.envs.StepSizeControlDynamicEnv`) and their
settings: the task families of the bandit ids, with the optimiser steps per action
(``control_interval``)."""


def bandit_id_of(env_id: str) -> str | None:
    """The bandit id whose tasks a registered dynamic id runs (``None`` for other ids)."""
    for name, (source, _) in _DYNAMIC_SOURCES.items():
        if env_id == f"StepSizeControl-Dynamic-{name}-v0":
            return source
    return None


def is_dynamic(env_id: str) -> bool:
    """Whether the registered ``env_id`` is a per-step env (its entry point is
    :class:`lrgym.envs.StepSizeControlDynamicEnv` or a subclass).

    Raises:
        gymnasium.error.Error: ``env_id`` is not registered.
    """
    entry = gym.spec(env_id).entry_point
    if isinstance(entry, str):
        if entry == DYNAMIC_ENTRY_POINT:
            return True
        module, _, name = entry.partition(":")
        import importlib

        entry = getattr(importlib.import_module(module), name)
    from lrgym.envs.dynamic import StepSizeControlDynamicEnv

    return isinstance(entry, type) and issubclass(entry, StepSizeControlDynamicEnv)


def register_envs() -> None:
    """Register every lrgym env id (idempotent)."""
    for env_id, kwargs in ENV_KWARGS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs=kwargs)
    for env_id, kwargs in DYNAMIC_ENV_KWARGS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=DYNAMIC_ENTRY_POINT, kwargs=kwargs)
