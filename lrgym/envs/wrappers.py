"""Wrappers of the lrgym envs: :class:`ControllerWrapper` runs an lrgym controller as the
policy of a dynamic env."""

from __future__ import annotations

import os
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from lrgym.controllers import Controller
from lrgym.controllers.files import SavedController, load_controller
from lrgym.envs.dynamic import StepSizeControlDynamicEnv
from lrgym.errors import InvalidConfigError


def controller_for(
    given: Controller | SavedController | str | os.PathLike[str], observation: np.ndarray
) -> Controller:
    """The controller that sets the rates of an episode starting at ``observation``
    (``phi_hat``, float32 ``(5,)``): ``given`` itself, or the one a controller file (a path, a
    pretrained name or a :class:`lrgym.SavedController`) builds for that observation.

    Raises:
        InvalidConfigError: ``given`` is no controller; a per-step policy file, which cannot
            set the rate of every optimiser step, says why.
        ControllerFileError: an unknown pretrained name or an unreadable file.
    """
    if isinstance(given, (str, os.PathLike)):
        given = load_controller(given)
    if isinstance(given, SavedController):
        return given.controller_for(observation)
    if isinstance(given, Controller) or callable(getattr(given, "learning_rate", None)):
        return given
    raise InvalidConfigError(
        f"controller must be a lrgym Controller, SavedController, controller file or "
        f"pretrained name, got {type(given).__name__}"
    )


class ControllerWrapper(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """Runs an lrgym controller as the policy of a dynamic env: after every ``reset`` the
    episode's run restarts with the controller in it
    (:meth:`lrgym.envs.StepSizeControlDynamicEnv.drive`), and ``step(action)`` ignores
    ``action`` (``None`` will do) while the controller sets the rate of each of the stretch's
    optimiser steps, exactly as in :func:`lrgym.train`. Rewards, observations and ``info`` are
    the env's, so controllers and per-step policies are scored on the same episodes.

    Args:
        env: a ``StepSizeControl-Dynamic-*`` env (:class:`StepSizeControlDynamicEnv`).
        controller: a :class:`lrgym.Controller` (constant, schedule, log-linear, your own), a
            :class:`lrgym.SavedController`, a controller file's path or a pretrained
            controller's name. A contextual policy file picks ``theta`` from each task's
            starting features (its model is unpickled; load only files you trust).

    Raises:
        InvalidConfigError: ``env`` is not a dynamic env.
        ControllerFileError: an unknown pretrained name or an unreadable file.
    """

    def __init__(
        self,
        env: gym.Env[np.ndarray, np.ndarray],
        controller: Controller | SavedController | str | os.PathLike[str],
    ) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, StepSizeControlDynamicEnv):
            raise InvalidConfigError(
                f"ControllerWrapper needs a StepSizeControl-Dynamic env, got "
                f"{type(env.unwrapped).__name__}"
            )
        self.dynamic_env: StepSizeControlDynamicEnv = env.unwrapped
        if isinstance(controller, (str, os.PathLike)):
            controller = load_controller(controller)
        self.controller = controller

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self.env.reset(seed=seed, options=options)
        env = self.dynamic_env
        return env.drive(controller_for(self.controller, env.starting_features))

    def step(
        self, action: Any = None
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        return self.dynamic_env.advance(None)
