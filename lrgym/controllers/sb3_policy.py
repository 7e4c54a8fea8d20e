"""Stable-Baselines3 policies in controller files: which saved models a policy file may
reference, loading one (checked against its SHA-256, then unpickled) and acting with it.

lrgym imports this module only when a policy controller file is loaded or built
(:mod:`lrgym.controllers.policy_files`), and ``stable_baselines3`` / ``sb3_contrib`` only when a
policy's model is first used; without them, that use raises an error naming the extra to install
(``pip install "lrgym[sb3]"``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lrgym.controllers.saved import ControllerFileError, Observation, finite_floats
from lrgym.errors import InvalidConfigError
from lrgym.jsonfile import file_sha256

POLICY_LIBRARIES = {
    "stable-baselines3": ("stable_baselines3", ("PPO", "A2C", "SAC", "TD3")),
    "sb3-contrib": ("sb3_contrib", ("ARS",)),
}
"""Which saved models a policy controller file may reference: library -> (module, classes)."""

EXTRAS = {"stable-baselines3": "sb3", "sb3-contrib": "sb3-contrib"}
"""The lrgym extra that installs each library."""


def check_reference(policy: Mapping[str, Any]) -> None:
    """Check a policy file's ``policy`` entry: a known ``library`` and ``algorithm``
    (:data:`POLICY_LIBRARIES`), the ``model``'s path and ``sha256`` as strings, and, if present,
    ``observation_normalization`` (``mean``, ``var`` of one length, ``epsilon``, ``clip``).

    Raises:
        InvalidConfigError: any of these is missing or malformed.
    """
    library, algorithm = policy.get("library"), policy.get("algorithm")
    if library not in POLICY_LIBRARIES or algorithm not in POLICY_LIBRARIES[library][1]:
        known = {name: list(classes) for name, (_, classes) in POLICY_LIBRARIES.items()}
        raise InvalidConfigError(f"policy {library!r}/{algorithm!r} is not one of {known}")
    if not isinstance(policy.get("model"), str) or not isinstance(policy.get("sha256"), str):
        raise InvalidConfigError("policy needs the model's path and sha256")
    scaling = policy.get("observation_normalization")
    if scaling is not None:
        mean = finite_floats(
            scaling["mean"], len(scaling["mean"]), "observation_normalization mean"
        )
        finite_floats(scaling["var"], len(mean), "observation_normalization var")
        pair = [scaling["epsilon"], scaling["clip"]]
        finite_floats(pair, 2, "observation_normalization epsilon/clip")


def import_policy_library(library: str) -> Any:
    """Import a policy library of :data:`POLICY_LIBRARIES`.

    Raises:
        ControllerFileError: it is not installed (the message names the extra to install).
    """
    try:
        return importlib.import_module(POLICY_LIBRARIES[library][0])
    except ImportError:
        raise ControllerFileError(
            f"this controller file's policy needs the {library} package: "
            f'pip install "lrgym[{EXTRAS[library]}]"'
        ) from None


def load_model(policy: Mapping[str, Any], model_path: Path) -> Any:
    """The Stable-Baselines3 model of a checked ``policy`` entry, from ``model_path``, on the
    CPU.

    Loading **unpickles** the model file (it can run arbitrary code): its SHA-256 is checked
    against ``policy["sha256"]`` first, so only the model the controller file was written with
    is loaded; load only controller files you trust.

    Raises:
        ControllerFileError: the model file is missing or altered, or its library is not
            installed (the error names the extra to install).
    """
    try:
        digest = file_sha256(model_path)
    except FileNotFoundError:
        raise ControllerFileError(
            f"the policy model {str(model_path)!r} this controller file references is "
            "missing; keep the model beside the controller file"
        ) from None
    if digest != policy.get("sha256"):
        raise ControllerFileError(
            f"the policy model {str(model_path)!r} does not match the controller file's "
            "sha256 (it was replaced or damaged); it was not loaded"
        )
    module = import_policy_library(policy["library"])
    return getattr(module, policy["algorithm"]).load(str(model_path), device="cpu")


def act(model: Any, policy: Mapping[str, Any], observation: Observation) -> np.ndarray:
    """``model``'s deterministic action (float32, 1-D) for ``observation``, after the
    observation normalisation of ``policy`` if it has one: SB3's ``VecNormalize`` statistics,
    ``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)``."""
    obs = np.asarray(observation, dtype=np.float32).reshape(-1)
    scaling = policy.get("observation_normalization")
    if scaling is not None:
        mean = np.asarray(scaling["mean"], dtype=np.float64)
        var = np.asarray(scaling["var"], dtype=np.float64)
        scaled = (obs - mean) / np.sqrt(var + float(scaling["epsilon"]))
        limit = float(scaling["clip"])
        obs = np.clip(scaled, -limit, limit).astype(np.float32)
    action, _ = model.predict(obs, deterministic=True)
    return np.asarray(action, dtype=np.float32).reshape(-1)
