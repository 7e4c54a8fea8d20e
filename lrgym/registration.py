"""Every ``gymnasium.register`` call of lrgym, with string entry points (cheap to import).

Keyword arguments are JSON-serialisable (lists, not tuples), so ``EnvSpec.to_json`` round-trips.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

ENTRY_POINT = "lrgym.envs.bandit:StepSizeControlEnv"
DYNAMIC_ENTRY_POINT = "lrgym.envs.dynamic:StepSizeControlDynamicEnv"

_MNIST: dict[str, Any] = {
    "dataset": "mnist",
    "architecture": "cnn",
    "optimizer": "sgd",
    "momentum": 0.9,
    "subset_fraction": [0.1, 0.5],
    "steps": [300, 1000],
    "batch_size": [64, 64],
    "lr": [1e-4, 1e-1],
}
_RMSPROP_LR = [1e-5, 1e-2]

ENV_KWARGS: dict[str, dict[str, Any]] = {
    "StepSizeControl-MNIST-v0": dict(_MNIST),
    "StepSizeControl-MNIST-RMSprop-v0": {**_MNIST, "optimizer": "rmsprop", "lr": _RMSPROP_LR},
    "StepSizeControl-FashionMNIST-v0": {**_MNIST, "dataset": "fashion_mnist"},
    "StepSizeControl-CIFAR10-v0": {**_MNIST, "dataset": "cifar10"},
    "StepSizeControl-CIFAR10-RMSprop-v0": {
        **_MNIST,
        "dataset": "cifar10",
        "optimizer": "rmsprop",
        "lr": _RMSPROP_LR,
    },
    "StepSizeControl-Digits-v0": {
        **_MNIST,
        "dataset": "digits",
        "subset_fraction": [0.5, 1.0],
        "steps": [100, 300],
        "batch_size": [32, 32],
        "eval_size": 500,
    },
    "StepSizeControl-Toy-v0": {
        **_MNIST,
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
"""The registered bandit ids and their keyword arguments (the env's defaults fill the rest)."""

_DYNAMIC_SOURCES = {
    "MNIST": ("StepSizeControl-MNIST-v0", 50),
    "MNIST-RMSprop": ("StepSizeControl-MNIST-RMSprop-v0", 50),
    "FashionMNIST": ("StepSizeControl-FashionMNIST-v0", 50),
    "CIFAR10": ("StepSizeControl-CIFAR10-v0", 50),
    "Digits": ("StepSizeControl-Digits-v0", 20),
    "Toy": ("StepSizeControl-Toy-v0", 10),
}

DYNAMIC_ENV_KWARGS: dict[str, dict[str, Any]] = {
    f"StepSizeControl-Dynamic-{name}-v0": {**ENV_KWARGS[source], "control_interval": interval}
    for name, (source, interval) in _DYNAMIC_SOURCES.items()
}
"""The registered per-step ids (:class:`lrgym.envs.StepSizeControlDynamicEnv`): the task
families of the bandit ids, with the optimiser steps per action (``control_interval``)."""


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
