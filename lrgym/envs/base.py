"""What the bandit env and the per-step env share: the task settings, sampling a task, the
starting features, action checks and rendering."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from lrgym.data.datasets import ArrayDataset, load_dataset
from lrgym.errors import InvalidActionError, InvalidConfigError, choice_error
from lrgym.features import FeatureConfig
from lrgym.tasks.architectures import check_architecture, choose_memory_format
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
    """Base of the lrgym envs: a task family, its data and the run settings (see
    :class:`lrgym.envs.StepSizeControlEnv` for the arguments)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1}  # noqa: RUF012 - as in gym.Env

    family: TaskFamily
    features: FeatureConfig
    last_result: TrainingResult | None

    def _setup(
        self,
        *,
        dataset: str,
        architecture: str,
        widths: Sequence[Sequence[int]] | None,
        optimizer: str,
        momentum: float,
        subset_fraction: Sequence[float],
        steps: Sequence[int],
        batch_size: Sequence[int],
        lr: Sequence[float],
        gamma: float,
        feature_every: int,
        feature_estimate: str,
        eval_size: int,
        test_size: int | None,
        lr_bounds: Sequence[float],
        divergence_penalty: float,
        data_root: str | None,
        download: bool,
        device: str,
        memory_format: str,
        render_mode: str | None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise choice_error("render_mode", render_mode, [None, *self.metadata["render_modes"]])
        self.family = TaskFamily(
            dataset=dataset,
            architecture=architecture,
            widths=None if widths is None else tuple(tuple(w) for w in widths),  # type: ignore[misc]
            subset_fraction=tuple(subset_fraction),  # type: ignore[arg-type]
            steps=tuple(steps),  # type: ignore[arg-type]
            batch_size=tuple(batch_size),  # type: ignore[arg-type]
            lr=tuple(lr),  # type: ignore[arg-type]
            optimizer=optimizer,
            momentum=momentum,
        )
        self.features = FeatureConfig(gamma=gamma, every=feature_every, estimate=feature_estimate)
        if eval_size < 1 or (test_size is not None and test_size < 1):
            raise InvalidConfigError(
                f"eval_size={eval_size!r} must be >= 1 and test_size={test_size!r} None or >= 1"
            )
        if not math.isfinite(divergence_penalty):
            raise InvalidConfigError(f"divergence_penalty={divergence_penalty!r} must be finite")
        bounds = tuple(float(b) for b in lr_bounds)
        if len(bounds) != 2 or not 0.0 < bounds[0] <= bounds[1] < math.inf:
            raise InvalidConfigError(
                f"lr_bounds={list(lr_bounds)!r} must be [low, high] with 0 < low <= high"
            )
        if not bounds[0] <= self.family.lr[0] <= self.family.lr[1] <= bounds[1]:
            raise InvalidConfigError(
                f"lr={list(lr)!r} (the range of eta_0) must lie inside lr_bounds="
                f"{list(lr_bounds)!r}; widen lr_bounds or narrow lr"
            )
        self.lr_bounds: tuple[float, float] = (bounds[0], bounds[1])
        self.eval_size, self.test_size = eval_size, test_size
        self.divergence_penalty = float(divergence_penalty)
        self.data_root = None if data_root is None else os.path.expanduser(data_root)
        self.download, self.device, self.render_mode = download, device, render_mode
        choose_memory_format(architecture, device, memory_format)  # validates the choice
        self.memory_format = memory_format
        self._data: ArrayDataset = load_dataset(
            dataset, data_root=self.data_root, download=download
        )
        check_architecture(architecture, dataset, self._data.input_shape)

    def _sample_task(self, options: dict[str, Any] | None) -> Task:
        """``options["task"]``, or a task drawn from ``np_random`` (after ``super().reset``)."""
        task = (options or {}).get("task")
        if task is None:
            return self.family.sample(self.np_random)
        if not isinstance(task, Task) or task.dataset != self.family.dataset:
            raise InvalidConfigError(
                f"options['task'] must be a lrgym Task for dataset {self.family.dataset!r}, "
                f"got {task!r}"
            )
        return task

    def _starting_features(self, task: Task) -> np.ndarray:
        """``phi_hat`` after one step at eta_0 on the task's freshly initialised network and
        first mini-batch (exactly the first step its run takes at eta_0): ``[phi1, phi2, 0, 0,
        1]``, zeros if that step was not finite. Measured on a copy of the run."""
        probe = TrainingRun(
            task,
            self._data,
            features=self.features,
            eval_size=1,
            device=self.device,
            memory_format=self.memory_format,
        )
        outcome = probe.step(task.eta0)
        start = probe.smoother.vector() if math.isfinite(outcome.loss) else np.zeros(5)
        start[4] = 1.0
        return start

    def _validate(self, action: Any, shape: tuple[int, ...], meaning: str) -> np.ndarray:
        """The action as float64, or an :class:`InvalidActionError` naming what is wrong."""
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
