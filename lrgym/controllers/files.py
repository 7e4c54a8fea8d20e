"""Learned controllers as small, versioned JSON files.

A controller file holds one of three kinds of controller, each read into its own type:

* a **log-linear controller** (:class:`~lrgym.controllers.saved.LogLinearFile`): the learned
  distribution over ``theta`` (mean and covariance; REPS, CMA-ES, random search write these);
* a **contextual policy** (:class:`~lrgym.controllers.policy_files.ContextualPolicyFile`,
  Stable-Baselines3 learners on a bandit env): a reference to the saved model, which maps a
  task's starting features (the env's reset observation) to the action, so ``theta`` depends on
  the task;
* a **per-step policy** (:class:`~lrgym.controllers.policy_files.PerStepPolicyFile`,
  Stable-Baselines3 learners on a ``StepSizeControl-Dynamic-*`` env): a reference to the saved
  model, which maps each observation of the run to the next stretch's learning rate,

plus the env it was learned on (id and keyword arguments), the feature settings and the lrgym
version. :func:`load_controller` reads one back::

    saved = lrgym.load_controller("runs/digits/controller.json")
    result = lrgym.train(task, saved.controller(), data)          # log-linear files
    controller = saved.controller_for(observation)                # either kind of theta

A policy file's model is a Stable-Baselines3 ``.zip``: loading it **unpickles** Python objects,
so only load policy controller files you trust (log-linear files are plain JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lrgym.controllers.policy_files import (
    POLICY_KINDS,
    ContextualPolicyFile,
    PerStepPolicyFile,
    PolicyFile,
)
from lrgym.controllers.saved import (
    FORMAT,
    ControllerFileError,
    ControllerKindError,
    LogLinearFile,
    SavedController,
    theta_distribution,
)
from lrgym.errors import LrgymError
from lrgym.jsonfile import read_document, write_atomic

__all__ = [
    "FORMAT",
    "POLICY_KINDS",
    "PRETRAINED_DIR",
    "VERSION",
    "ContextualPolicyFile",
    "ControllerFileError",
    "ControllerKindError",
    "LogLinearFile",
    "PerStepPolicyFile",
    "SavedController",
    "load_controller",
    "pretrained_controllers",
    "save_controller",
    "theta_distribution",
]

VERSION = 4
"""The newest file format version :func:`load_controller` reads (1: log-linear controllers
only; 2 adds contextual policies; 3 per-step policies; 4 the controller's form,
``max_change`` and ``start``). Each file is written with the oldest version that holds it
(:attr:`SavedController.format_version`, or 4 with ``max_change`` or ``start``)."""

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
"""Where the pretrained controller files lrgym ships lie (``<name>.json``)."""


def save_controller(saved: SavedController, path: str | os.PathLike[str]) -> Path:
    """Write ``saved`` to ``path`` atomically (a crash leaves the old file or the new one)."""
    target = Path(path)
    write_atomic(target, json.dumps(saved.to_json(), indent=1) + "\n")
    return target


def pretrained_controllers() -> list[str]:
    """The names of the pretrained controllers lrgym ships, for :func:`load_controller` and
    :class:`lrgym.ControlledLR`. Each file's ``source`` records how it was learned (command,
    algorithm, env, episodes, seed) and its held-out evaluation."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.json"))


def load_controller(path: str | os.PathLike[str]) -> SavedController:
    """Read a controller file written by :func:`save_controller` (``lrgym train ...``), or a
    pretrained controller by name (:func:`pretrained_controllers`, e.g. ``"mnist-sgd"``).

    Returns:
        a :class:`~lrgym.controllers.saved.LogLinearFile`,
        :class:`~lrgym.controllers.policy_files.ContextualPolicyFile` or
        :class:`~lrgym.controllers.policy_files.PerStepPolicyFile`. A policy file's model is
        only loaded (unpickled) when first used, see
        :attr:`~lrgym.controllers.policy_files.PolicyFile.model`.

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
        return _file_type(content).from_json(content, source)
    except (KeyError, TypeError, ValueError, LrgymError) as exc:
        raise ControllerFileError(f"controller file {str(source)!r} is malformed: {exc}") from None


def _file_type(content: Mapping[str, Any]) -> type[LogLinearFile] | type[PolicyFile]:
    """The type of a file's kind: log-linear without a ``policy``, else the policy's ``kind``."""
    policy = content.get("policy")
    if policy is None:
        return LogLinearFile
    if not isinstance(policy, Mapping):
        raise ValueError(f"policy must be an object, got {policy!r}")
    kind = policy.get("kind", "contextual")
    if kind not in POLICY_KINDS:
        raise ValueError(f"policy kind {kind!r} is not one of {list(POLICY_KINDS)}")
    return ContextualPolicyFile if kind == "contextual" else PerStepPolicyFile
