"""What the bandit env and the per-step env share: the task settings, sampling a task, the
starting features, action checks and rendering."""

from __future__ import annotations

import math
import os
from typing import Any

import gymnasium as gym
import numpy as np

from lrgym.data.datasets import ArrayDataset, load_dataset
from lrgym.errors import InvalidActionError, InvalidConfigError, choice_error
from lrgym.features import FeatureConfig
from lrgym.spec import EnvSettings
from lrgym.tasks.architectures import check_architecture
from lrgym.tasks.family import Task, TaskFamily
from lrgym.training import TrainingResult, TrainingRun

OBS_LOW = np.array([-100.0, -100.0, 0.0, 0.0, 0.0], dtype=np.float32)
"""Lower bounds of ``phi_hat = [a1, a2, u1, u2, 1]`` in an observation."""
OBS_HIGH = np.array([100.0, 100.0, 1.0e4, 1.0e4, 1.0], dtype=np.float32)
"""Upper bounds of ``phi_hat`` in an observation."""


def phi_hat_observation(phi_hat: np.ndarray) -> np.ndarray:
    """``phi_hat`` as an observation: float32, clipped to the box; a feature never measured
    (NaN: the very first update was not finite) reads as 0."""
    return np.clip(np.nan_to_num(phi_hat, nan=0.0), OBS_LOW, OBS_HIGH).astype(np.float32)


class TrainingTaskEnv(gym.Env[np.ndarray, np.ndarray]):
    """Base of the lrgym envs: a task family, its data and the run settings
    (:class:`lrgym.spec.EnvSettings`)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1}  # noqa: RUF012 - as in gym.Env

    settings: EnvSettings
    """The env's settings (:mod:`lrgym.spec`); ``env.unwrapped.<setting>`` reads them too."""
    family: TaskFamily
    features: FeatureConfig
    last_result: TrainingResult | None

    def _setup(self, settings: EnvSettings, render_mode: str | None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise choice_error("render_mode", render_mode, [None, *self.metadata["render_modes"]])
        self.settings, self.render_mode = settings, render_mode
        self.family = settings.family()
        self.features = settings.features()
        root = settings.data_root
        self._data: ArrayDataset = load_dataset(
            settings.dataset,
            data_root=None if root is None else os.path.expanduser(root),
            download=settings.download,
        )
        data = self._data
        check_architecture(
            settings.architecture, settings.dataset, data.input_shape, tokens=data.tokens
        )

    def __getattr__(self, name: str) -> Any:
        """A setting read as an attribute of the env (``env.unwrapped.eval_size``)."""
        if name.startswith("_") or name == "settings" or "settings" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        try:
            return getattr(self.settings, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            ) from None

    def _reset_task(self, seed: int | None, options: dict[str, Any] | None) -> Task:
        """Seed ``np_random`` (``gym.Env.reset``), then ``options["task"]`` or a task drawn
        from ``np_random``."""
        gym.Env.reset(self, seed=seed)
        options = dict(options or {})
        self._choose_family(options)
        unknown = sorted(set(options) - {"task"})
        if unknown:
            hint = " (a controller runs through lrgym.envs.ControllerWrapper)"
            raise InvalidConfigError(
                f"reset options {unknown!r} are not taken; the one option is 'task'"
                + (hint if "controller" in unknown else "")
            )
        task = options.get("task")
        if task is None:
            return self.family.sample(self.np_random)
        if not isinstance(task, Task) or task.dataset != self.family.dataset:
            raise InvalidConfigError(
                f"options['task'] must be a lrgym Task for dataset {self.family.dataset!r}, "
                f"got {task!r}"
            )
        return task

    def _choose_family(self, options: dict[str, Any]) -> None:
        """Before a task is drawn: where an env draws from several task families, switch to
        one (and take its reset options). A single-family env has nothing to do."""

    def _starting_features(self, task: Task) -> np.ndarray:
        """``phi_hat`` after one step at eta_0 on the task's freshly initialised network and
        first mini-batch (exactly the first step its run takes at eta_0): ``[phi1, phi2, 0, 0,
        1]``, zeros if that step was not finite. Measured on a copy of the run."""
        probe = TrainingRun(
            task,
            self._data,
            features=self.features,
            eval_size=1,
            device=self.settings.device,
            memory_format=self.settings.memory_format,
        )
        outcome = probe.step(task.eta0)
        start = probe.control.smoother.vector() if math.isfinite(outcome.loss) else np.zeros(5)
        start[4] = 1.0
        return start

    def _validate(self, action: Any, shape: tuple[int, ...], meaning: str) -> np.ndarray:
        """The action as float64, or an :class:`InvalidActionError` naming what is wrong."""
        if action is None:
            raise InvalidActionError(
                f"action is None; expected real numbers (float32), shape {shape}, {meaning}"
            )
        array = np.asarray(action)
        if array.dtype.kind not in "fiu":
            raise InvalidActionError(
                f"action has dtype {array.dtype}; expected real numbers (float32), shape {shape}"
            )
        if array.shape != shape:
            raise InvalidActionError(f"action has shape {array.shape}; expected {shape}, {meaning}")
        if not np.all(np.isfinite(array)):
            raise InvalidActionError(f"action {array.tolist()} has non-finite entries")
        return array.astype(np.float64)

    def _result_to_draw(self) -> TrainingResult | None:
        return self.last_result

    def render(self) -> np.ndarray | None:
        """An RGB image ``(H, W, 3)`` uint8 of the last run's loss and learning-rate curves."""
        if self.render_mode != "rgb_array":
            return None
        from lrgym.rendering import draw_curves

        return draw_curves(self._result_to_draw())
