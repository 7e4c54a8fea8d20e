"""Every ``gymnasium.register`` call of lrgym, with string entry points.

Each id is registered with only what it changes of the settings' defaults (:mod:`lrgym.spec`),
JSON-serialisable (lists, not tuples), so ``EnvSpec.to_json`` round-trips; every id names its
dataset. :data:`ENV_KWARGS` and :data:`DYNAMIC_ENV_KWARGS` spell out all the settings.
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
_ADAMW = {"optimizer": "adamw", "lr": [1e-5, 1e-2]}

_OVERRIDES: dict[str, dict[str, Any]] = {
    "StepSizeControl-MNIST-v0": dict(_MNIST),
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
    "StepSizeControl-ResNet-MNIST-v0": {
        **_MNIST,
        "architecture": "resnet",
        "steps": [100, 300],
        "batch_size": [32, 32],
        "lr": [1e-4, 1.0],
        "feature_every": 4,
        "feature_estimate": "hold",
    },
    "StepSizeControl-Transformer-v0": {
        "dataset": "grammar",
        "architecture": "transformer",
        **_ADAMW,
        "subset_fraction": [0.5, 1.0],
        "steps": [100, 200],
        "batch_size": [16, 16],
        "eval_size": 128,
        "test_size": 512,
    },
    "StepSizeControl-MNIST1D-v0": {
        "dataset": "mnist1d",
        "architecture": "cnn1d",
        "subset_fraction": [0.5, 1.0],
        "batch_size": [32, 32],
    },
    "StepSizeControl-MNIST-AdamW-v0": {**_MNIST, **_ADAMW},
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
    "ResNet-MNIST": ("StepSizeControl-ResNet-MNIST-v0", 20),
    "Transformer": ("StepSizeControl-Transformer-v0", 25),
    "MNIST1D": ("StepSizeControl-MNIST1D-v0", None),
    "MNIST-AdamW": ("StepSizeControl-MNIST-AdamW-v0", None),
}
"""Each per-step id's bandit id (whose task family it runs) and its ``control_interval``
(``None``: :class:`lrgym.spec.DynamicSettings`'s default)."""

_DYNAMIC_OVERRIDES: dict[str, dict[str, Any]] = {
    f"StepSizeControl-Dynamic-{name}-v0": {
        **{k: v for k, v in _OVERRIDES[source].items() if k in _SHARED},
        **({} if interval is None else {"control_interval": interval}),
    }
    for name, (source, interval) in _DYNAMIC_SOURCES.items()
}

ENV_KWARGS: dict[str, dict[str, Any]] = {
    env_id: BanditSettings.from_kwargs(overrides).to_kwargs()
    for env_id, overrides in _OVERRIDES.items()
}
"""The registered bandit ids and every one of their settings (JSON: lists for tuples):
``gym.make(env_id)`` and ``gym.make(env_id, **ENV_KWARGS[env_id])`` build the same env."""

DYNAMIC_ENV_KWARGS: dict[str, dict[str, Any]] = {
    env_id: DynamicSettings.from_kwargs(overrides).to_kwargs()
    for env_id, overrides in _DYNAMIC_OVERRIDES.items()
}
"""The registered per-step ids (:class:`lrgym.envs.StepSizeControlDynamicEnv`) and every one
of their settings: the task families of the bandit ids, with the optimiser steps per action
(``control_interval``)."""


MIXTURE_ENTRY_POINT = "lrgym.envs.mixture:StepSizeControlMixtureEnv"
DYNAMIC_MIXTURE_ENTRY_POINT = "lrgym.envs.mixture:StepSizeControlDynamicMixtureEnv"
MIXTURE_ID = "StepSizeControl-Mixture-v0"
DYNAMIC_MIXTURE_ID = "StepSizeControl-Dynamic-Mixture-v0"

_MIXTURE_SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "digits-cnn-sgd": ("StepSizeControl-Digits-v0", {}),
    "digits-mlp-sgd": ("StepSizeControl-Digits-v0", {"architecture": "mlp"}),
    "mnist-cnn-sgd": ("StepSizeControl-MNIST-v0", {}),
    "mnist-mlp-sgd": ("StepSizeControl-MNIST-v0", {"architecture": "mlp"}),
    "mnist-resnet-sgd": ("StepSizeControl-ResNet-MNIST-v0", {}),
    "mnist-cnn-adamw": ("StepSizeControl-MNIST-AdamW-v0", {}),
    "mnist-cnn-rmsprop": ("StepSizeControl-MNIST-RMSprop-v0", {}),
    "mnist1d-cnn1d-sgd": ("StepSizeControl-MNIST1D-v0", {}),
    "mnist1d-cnn1d-adamw": ("StepSizeControl-MNIST1D-v0", {"optimizer": "adamw"}),
    "grammar-transformer-adamw": ("StepSizeControl-Transformer-v0", {}),
}
"""Each mixture family (``dataset-architecture-optimizer``): the registered id whose settings
it takes and what it changes of them."""

_INTERVALS = {source: interval for source, interval in _DYNAMIC_SOURCES.values() if interval}

MIXTURE_FAMILIES: dict[str, dict[str, Any]] = {
    name: {
        **{k: v for k, v in _OVERRIDES[source].items() if k != "lr"},
        **changes,
        **({"control_interval": _INTERVALS[source]} if source in _INTERVALS else {}),
    }
    for name, (source, changes) in _MIXTURE_SOURCES.items()
}
"""The families of ``StepSizeControl-Mixture-v0`` and its ``Dynamic-`` twin (their registered
``families``): the offline datasets (digits, MNIST, MNIST-1D, the grammar corpus), the cnn,
mlp, resnet, cnn1d and transformer architectures, SGD, AdamW and RMSprop. Each family runs its
source id's tasks (steps, batch size, data subset, evaluation sample, feature schedule, a
per-step ``control_interval``) but for eta_0, which the mixture draws by optimiser
(:class:`lrgym.envs.mixture.MixtureSettings`)."""


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
    for env_id, kwargs in _OVERRIDES.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs=kwargs)
    for env_id, kwargs in _DYNAMIC_OVERRIDES.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=DYNAMIC_ENTRY_POINT, kwargs=kwargs)
    mixtures = (
        (MIXTURE_ID, MIXTURE_ENTRY_POINT),
        (DYNAMIC_MIXTURE_ID, DYNAMIC_MIXTURE_ENTRY_POINT),
    )
    for env_id, entry_point in mixtures:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs={"families": MIXTURE_FAMILIES})
