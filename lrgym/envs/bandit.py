"""The StepSizeControl environment: one network's training run as a one-step episode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lrgym.controllers import Controller
from lrgym.envs.base import OBS_HIGH, OBS_LOW, TrainingTaskEnv, phi_hat_observation
from lrgym.features import FEATURE_NAMES, FeatureConfig
from lrgym.reward import log_loss_decrease
from lrgym.spec import BanditSettings
from lrgym.tasks.family import Task
from lrgym.training import TrainingResult, train


class StepSizeControlEnv(TrainingTaskEnv):
    """Training a neural network as a contextual bandit: one episode is one training run.

    ## Description

    Learning step-size controllers after Daniel, Taylor & Nowozin, "Learning Step Size
    Controllers for Robust Neural Network Training" (AAAI 2016). ``reset()`` samples a task: a
    network from a family, a subset of the training data, a number of steps, a batch size and an
    initial learning rate ``eta_0``. The agent answers with the parameters ``theta`` of the
    log-linear controller ``eta_t = exp(theta^T phi_hat_{t-1})``, and ``step(theta)`` trains the
    network for the whole run with the controller setting the learning rate of every step.
    :class:`lrgym.envs.StepSizeControlDynamicEnv` runs the same tasks with the agent setting
    the rate during the run (the ``StepSizeControl-Dynamic-*`` ids).

    ## Action Space

    ``Box(-1, 1, (5,), float32)``, a normalised ``theta``. The raw controller parameters are
    ``theta = theta_center + theta_scale * action`` (elementwise; defaults
    ``theta_center = [0, 0, 0, 0, -5]``, ``theta_scale = [1, 1, 1, 1, 10]``), so the zero action
    is the constant learning rate ``exp(-5) ~ 6.7e-3`` after the first step. Entries outside
    ``[-1, 1]`` are clipped to it (``info["action_clipped"]`` says so).
    :meth:`action_to_theta` and :meth:`theta_to_action` convert.

    | Num | theta weights     | raw range (defaults) |
    |-----|-------------------|----------------------|
    | 0   | avg_phi1          | [-1, 1]              |
    | 1   | avg_phi2          | [-1, 1]              |
    | 2   | unc_phi1          | [-1, 1]              |
    | 3   | unc_phi2          | [-1, 1]              |
    | 4   | bias (log eta)    | [-15, 5]             |

    ## Observation Space

    ``Box(low, high, (5,), float32)``: ``phi_hat = [a1, a2, u1, u2, 1]``, the running averages
    (``a``) and uncertainties (``u``) of ``phi1 = log Var_i(grad f_i^T dw)`` and
    ``phi2 = log Var_i(f_i)`` over mini-batches (see :mod:`lrgym.features`). Values are clipped
    to the box.

    | Num | Observation | Min  | Max   |
    |-----|-------------|------|-------|
    | 0   | avg_phi1    | -100 | 100   |
    | 1   | avg_phi2    | -100 | 100   |
    | 2   | unc_phi1    | 0    | 1e4   |
    | 3   | unc_phi2    | 0    | 1e4   |
    | 4   | bias        | 0    | 1     |

    The bias entry is always 1; its box is ``[0, 1]`` because Gymnasium's checker rejects a
    zero-width box.

    ## Rewards

    ``r = -(1/(S-1)) sum_{s=2..S} (log E_s - log E_{s-1}) = (log E_1 - log E_S) / (S-1)``,
    ``E_s`` the mean training loss on a fixed evaluation sample (``eval_size`` examples of the
    task's training subset) at ``S = eval_points`` evenly spaced steps, the first before
    training. A run whose loss becomes non-finite stops early and gets ``divergence_penalty``
    (default -1); every other reward is floored at it.

    ## Starting State

    ``phi_hat`` measured on the freshly initialised network: one step at ``eta_0`` on the
    task's first mini-batch (exactly the first step the training run will take), so
    ``[phi1, phi2, 0, 0, 1]``.

    ## Episode End

    Every ``step`` ends the episode (``terminated=True``, ``truncated=False``); call ``reset``
    for the next task. ``info`` holds the task (``info["task"]``, a dict), ``theta``,
    ``action_clipped``, ``reward``, ``diverged``, ``steps_completed``, ``final_train_loss``,
    ``test_loss`` and ``test_accuracy`` (``inf`` and 0 for a diverged run), and
    ``info["curves"]``, a :class:`lrgym.training.Curves` with the per-step ``losses``,
    ``learning_rates``, ``features``, ``raw_features`` and the evaluation points
    ``eval_steps``, ``eval_losses`` (one object, so vector envs can batch runs of different
    lengths). The wall time, not reproducible, is ``env.unwrapped.last_result.wall_time``.

    ## Arguments

    ```python
    import gymnasium as gym
    import lrgym

    env = gym.make("StepSizeControl-MNIST-v0", data_root="~/data", steps=[100, 200])
    ```

    Every keyword argument but ``render_mode`` is a setting of
    :class:`lrgym.spec.BanditSettings` (its fields document each one and its default; the
    env's settings are ``env.unwrapped.settings``): the task family (``dataset``,
    ``architecture``, ``widths``, ``optimizer``, ``momentum``, the ``[low, high]`` ranges
    ``subset_fraction``, ``steps``, ``batch_size`` and ``lr``), the features (``gamma``,
    ``feature_every``, ``feature_estimate``), the reward (``eval_points``, ``eval_size``,
    ``divergence_penalty``), ``test_size``, the controller (``relative``, ``max_change``,
    ``start``, ``lr_bounds``, ``theta_center``, ``theta_scale``) and where it runs (``data_root``,
    ``download``, ``device``, ``memory_format``). An unknown key raises
    :class:`lrgym.errors.UnknownSettingError` (a ``TypeError``) naming the close matches; a
    bad value :class:`lrgym.errors.InvalidConfigError`.

    * ``render_mode``: ``None`` or ``"rgb_array"`` (the last run's loss and lr curves).

    ## Version History

    * v0: initial release.
    """

    settings: BanditSettings

    def __init__(self, *, render_mode: str | None = None, **settings: Any) -> None:
        self._setup(BanditSettings.from_kwargs(settings), render_mode)
        self.theta_center = np.asarray(self.settings.theta_center, dtype=np.float64)
        self.theta_scale = np.asarray(self.settings.theta_scale, dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32)
        self.observation_space = spaces.Box(OBS_LOW, OBS_HIGH, dtype=np.float32)
        self._task: Task | None = None
        self._start_obs = np.zeros(5, dtype=np.float32)
        self.last_result: TrainingResult | None = None

    def action_to_theta(self, action: np.ndarray) -> np.ndarray:
        """Raw controller parameters (float64, ``(5,)``) of a normalised action."""
        return self.theta_center + self.theta_scale * np.asarray(action, dtype=np.float64)

    def theta_to_action(self, theta: Sequence[float] | np.ndarray) -> np.ndarray:
        """The normalised action (float32, ``(5,)``, not clipped) of raw parameters."""
        raw = np.asarray(theta, dtype=np.float64)
        return ((raw - self.theta_center) / self.theta_scale).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sample a new task from ``np_random`` and return its starting features.

        ``options={"task": Task}`` runs a given task instead of sampling one.
        """
        task = self._reset_task(seed, options)
        self._task = task
        self._start_obs = phi_hat_observation(self._starting_features(task))
        return self._start_obs.copy(), {"task": task.to_dict()}

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Train the current task with the controller ``action`` encodes; ends the episode."""
        if self._task is None:
            raise gym.error.ResetNeeded("call reset() before step(): every step ends the episode")
        normalised = self._validate(action, (5,), f"one entry per feature {FEATURE_NAMES}")
        clipped = np.clip(normalised, -1.0, 1.0)
        theta = self.action_to_theta(clipped)
        result = self.run_controller(self.settings.controller(theta), self._task)
        self._task, self.last_result = None, result
        reward = self.reward_of(result)
        final = result.curves.features[-1] if result.steps_completed else np.full(5, np.nan)
        finite = np.all(np.isfinite(final))
        obs = phi_hat_observation(final) if finite else self._start_obs.copy()
        info = _info(result, theta, bool(np.any(clipped != normalised)), reward)
        return obs, reward, True, False, info

    @property
    def task(self) -> Task | None:
        """The task the last ``reset`` drew (``None`` once ``step`` has run it)."""
        return self._task

    def run_controller(
        self, controller: Controller, task: Task, *, features: FeatureConfig | None = None
    ) -> TrainingResult:
        """Train ``task`` with any lrgym controller under this env's settings (data, features,
        evaluation points and sample, test set, device, memory format): what :meth:`step` does
        with the log-linear controller of its action. It leaves the episode as it is.

        Args:
            controller: sets the learning rate every step.
            task: the task, e.g. :attr:`task` after ``reset(seed=...)`` or a variant of it
                (``dataclasses.replace(task, eta0=...)``).
            features: a feature configuration instead of the env's.
        """
        settings = self.settings
        return train(
            task,
            controller,
            self._data,
            features=features or self.features,
            eval_points=settings.eval_points,
            eval_size=settings.eval_size,
            test_size=settings.test_size,
            device=settings.device,
            memory_format=settings.memory_format,
        )

    def reward_of(self, result: TrainingResult) -> float:
        """The paper's reward of a run: ``(log E_1 - log E_S) / (S - 1)``, the divergence
        penalty for a diverged run, every other reward floored at it."""
        return log_loss_decrease(
            result.curves.eval_losses.tolist(),
            diverged=result.diverged,
            penalty=self.settings.divergence_penalty,
        )


def _info(
    result: TrainingResult, theta: np.ndarray, clipped: bool, reward: float
) -> dict[str, Any]:
    return {
        "task": result.task.to_dict(),
        "theta": theta.tolist(),
        "action_clipped": clipped,
        "reward": reward,
        "diverged": result.diverged,
        "steps_completed": result.steps_completed,
        "final_train_loss": result.final_train_loss,
        "test_loss": result.test_loss,
        "test_accuracy": result.test_accuracy,
        "curves": result.curves,
    }
