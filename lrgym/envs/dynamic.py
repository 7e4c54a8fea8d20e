"""The StepSizeControl-Dynamic environments: the agent sets the learning rate during the run."""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lrgym.controllers import Controller
from lrgym.envs.base import OBS_HIGH, OBS_LOW, TrainingTaskEnv, phi_hat_observation
from lrgym.errors import InvalidConfigError
from lrgym.spec import DynamicSettings
from lrgym.tasks.family import Task
from lrgym.training import TrainingResult, TrainingRun

LOSS_FLOOR = 1e-30
"""``E`` is floored at this value inside the logs of the reward and the observation."""
LOG_LOSS_BOUNDS = (-100.0, 100.0)
"""The box of ``log E`` in the observation."""


class StepSizeControlDynamicEnv(TrainingTaskEnv):
    """Training a neural network as a sequential decision problem: the agent sets the learning
    rate for each stretch of ``control_interval`` optimiser steps.

    ## Description

    The tasks, data, optimisers, features and evaluation sample of
    :class:`lrgym.envs.StepSizeControlEnv` (``reset(seed)`` draws exactly the task the bandit
    env draws for the same seed and arguments), controlled during the run instead of once per
    run: the setting of dynamic algorithm configuration. Each ``step(action)`` trains
    ``control_interval`` steps at the learning rate the action sets (the last stretch may be
    shorter), then measures the training loss ``E`` on the task's fixed evaluation sample.

    ## Action Space

    ``Box(-1, 1, (1,), float32)``. With ``action_mode="absolute"`` (default) the action sets
    ``log10(eta)`` linearly inside ``[log10 lr_range[0], log10 lr_range[1]]`` (default
    ``[-5, 0]``: -1 is 1e-5, 0 is 10^-2.5 ~ 3.2e-3, 1 is 1.0); with
    ``action_mode="multiplicative"`` it multiplies the current rate by ``max_factor ** a``
    (default ``max_factor=10``), clipped to ``lr_bounds``. Entries outside ``[-1, 1]`` are
    clipped (``info["action_clipped"]``). :meth:`action_to_lr` and :meth:`lr_to_action`
    convert.

    ## Observation Space

    ``Box(low, high, (8,), float32)``, always finite:

    | Num | Observation                                   | Min       | Max      |
    |-----|-----------------------------------------------|-----------|----------|
    | 0-4 | ``phi_hat = [a1, a2, u1, u2, 1]``, as the bandit env | as there | as there |
    | 5   | ``log(eta)``, the rate on the optimiser now    | log low   | log high |
    | 6   | fraction of the run's steps done               | 0         | 1        |
    | 7   | ``log(E)``, the last evaluation loss           | -100      | 100      |

    ``low``/``high`` of entry 5 are ``lr_bounds``. At ``reset``, ``phi_hat`` is the bandit env's
    starting observation (one step at eta_0 on a copy of the run), the rate is eta_0 and ``E``
    that of the untrained network.

    ## Rewards

    ``log E_before - log E_after`` of the step's stretch, so the rewards of an episode add up to
    ``log E_1 - log E_S``: the bandit reward of the run times ``S - 1``. A divergence (a
    non-finite mini-batch loss or ``E``) ends the episode; that step's reward brings the
    episode's return to ``divergence_penalty`` (default -9, the bandit's -1 times 9). The last
    step's reward is floored the same way, so no finished episode returns less than a diverged
    one (the bandit's floor).

    ## Starting State

    A task drawn as by the bandit env, nothing trained yet.

    ## Episode End

    ``terminated=True`` after the task's last step or at a divergence; the env never sets
    ``truncated``. ``info`` at every step: ``lr`` (the rate of the stretch), ``steps_done``,
    ``eval_loss``, ``diverged``, ``action_clipped``; at the end also ``task``,
    ``final_train_loss``, ``test_loss``, ``test_accuracy``, ``steps_completed`` and ``curves``
    (:class:`lrgym.Curves`, ``E`` at every stretch's end). ``last_result`` holds the finished
    run's :class:`lrgym.TrainingResult`.

    ## Controllers as policies

    :class:`lrgym.envs.ControllerWrapper` runs an lrgym controller as the policy: it restarts
    each episode's run with the controller in it (:meth:`drive`) and trains every stretch at
    the controller's rates (:meth:`advance` with ``None``), exactly as :func:`lrgym.train`
    does.

    ## Arguments

    Every keyword argument but ``render_mode`` is a setting of
    :class:`lrgym.spec.DynamicSettings` (its fields document each one and its default; the
    env's settings are ``env.unwrapped.settings``): the task family, features, evaluation
    sample, data and device settings of :class:`lrgym.envs.StepSizeControlEnv` (not its action
    map, ``relative`` or ``eval_points``), plus

    * ``control_interval``: optimiser steps per action (default 50; the Digits id 20, Toy 10).
    * ``action_mode``: ``"absolute"`` or ``"multiplicative"``.
    * ``lr_range``: ``[low, high]`` learning rates of the absolute action (inside
      ``lr_bounds``).
    * ``max_factor``: the multiplicative action's largest factor (> 1).
    * ``divergence_penalty``: return of a diverged episode (default -9).

    ``render_mode``: ``None`` or ``"rgb_array"`` (the run's loss and lr curves). An unknown key
    raises :class:`lrgym.errors.UnknownSettingError` (a ``TypeError``) naming the close
    matches; a bad value :class:`lrgym.errors.InvalidConfigError`.

    ## Version History

    * v0: initial release.
    """

    settings: DynamicSettings

    def __init__(self, *, render_mode: str | None = None, **settings: Any) -> None:
        self._setup(DynamicSettings.from_kwargs(settings), render_mode)
        low, high = self.settings.lr_range
        self._log10_range = (math.log10(low), math.log10(high))
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        log_low, log_high = (math.log(b) for b in self.settings.lr_bounds)
        self.observation_space = spaces.Box(
            np.concatenate([OBS_LOW, [log_low, 0.0, LOG_LOSS_BOUNDS[0]]]).astype(np.float32),
            np.concatenate([OBS_HIGH, [log_high, 1.0, LOG_LOSS_BOUNDS[1]]]).astype(np.float32),
            dtype=np.float32,
        )
        self._run: TrainingRun | None = None
        self._start = np.zeros(5)  # phi_hat at the episode's start
        self._phi_hat = np.zeros(5)
        self._return = 0.0
        self.last_result: TrainingResult | None = None

    # -- the action map -------------------------------------------------------------------

    def action_to_lr(self, action: np.ndarray | float, current_lr: float | None = None) -> float:
        """The learning rate an action (in ``[-1, 1]``) sets; the multiplicative mode needs
        the current rate."""
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        settings = self.settings
        if settings.action_mode == "absolute":
            low, high = self._log10_range
            return float(10.0 ** (low + (a + 1.0) / 2.0 * (high - low)))
        if current_lr is None:
            raise InvalidConfigError("the multiplicative action needs current_lr")
        eta = current_lr * settings.max_factor**a
        return min(max(eta, settings.lr_bounds[0]), settings.lr_bounds[1])

    def lr_to_action(self, lr: float, current_lr: float | None = None) -> np.ndarray:
        """The action (float32, ``(1,)``, not clipped) that sets the learning rate ``lr``."""
        if not 0.0 < lr < math.inf:
            raise InvalidConfigError(f"lr={lr!r} must be a positive finite number")
        if self.settings.action_mode == "absolute":
            low, high = self._log10_range
            a = 2.0 * (math.log10(lr) - low) / (high - low) - 1.0
        else:
            if current_lr is None:
                raise InvalidConfigError("the multiplicative action needs current_lr")
            a = math.log(lr / current_lr) / math.log(self.settings.max_factor)
        return np.array([a], dtype=np.float32)

    # -- the episode ----------------------------------------------------------------------

    @property
    def task(self) -> Task | None:
        """The task of the episode under way (``None`` when none is)."""
        return None if self._run is None else self._run.task

    @property
    def run(self) -> TrainingRun | None:
        """The training run of the episode under way (its model, optimiser and record)."""
        return self._run

    @property
    def starting_features(self) -> np.ndarray:
        """``phi_hat`` at the start of the episode under way, as an observation (float32,
        ``(5,)``): what a contextual controller picks its parameters from."""
        return phi_hat_observation(self._start)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a task (as the bandit env does for the same seed) and start its run.

        ``options={"task": Task}`` runs a given task instead of sampling one.
        """
        task = self._reset_task(seed, options)
        self._start = self._starting_features(task)
        return self._begin(task, None)

    def drive(self, controller: Controller) -> tuple[np.ndarray, dict[str, Any]]:
        """Start the episode under way over (its task, nothing trained) with ``controller`` in
        its run, for :meth:`advance` with ``None``; returns what ``reset`` returns.
        :class:`lrgym.envs.ControllerWrapper` calls it after every ``reset``.
        """
        run = self._current()
        return self._begin(run.task, controller)

    def _begin(
        self, task: Task, controller: Controller | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        settings = self.settings
        self._phi_hat = self._start
        self._run = run = TrainingRun(
            task,
            self._data,
            controller=controller,
            features=self.features,
            eval_size=settings.eval_size,
            eval_steps=self._boundaries(task.steps),
            device=settings.device,
            memory_format=settings.memory_format,
        )
        run.advance(0)  # E before training
        self._return = 0.0
        return self._observation(), {"task": task.to_dict(), "eval_loss": run.eval_loss(0)}

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Train the next ``control_interval`` steps at the rate ``action`` sets."""
        run = self._current()
        value = self._validate(action, (1,), "the learning rate's action in [-1, 1]")
        lr = self.action_to_lr(value, run.control.lr)
        return self.advance(lr, clipped=bool(abs(value[0]) > 1.0))

    def advance(
        self, lr: float | None, *, clipped: bool = False
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """What :meth:`step` does after reading its action: train the next
        ``control_interval`` steps at the learning rate ``lr``, or with ``None`` at the rates
        of the run's controller (the one :meth:`drive` put in; eta_0, constant, otherwise),
        chosen at every optimiser step exactly as :func:`lrgym.train` does.

        Args:
            lr: the stretch's learning rate, or ``None``.
            clipped: what ``info["action_clipped"]`` reports.
        """
        run = self._current()
        settings = self.settings
        before = run.steps_done
        start_loss = run.eval_loss(before)
        run.advance(settings.control_interval, lr)
        last = run.control.last_step
        info: dict[str, Any] = {
            "lr": float(
                last.lr if last is not None and run.steps_done > before else run.control.lr
            ),
            "steps_done": run.steps_done,
            "diverged": run.diverged,
            "action_clipped": clipped,
        }
        if run.diverged:
            reward = settings.divergence_penalty - self._return
            info["eval_loss"] = math.inf
        else:
            end_loss = run.eval_loss(run.steps_done)
            reward = _log(start_loss) - _log(end_loss)
            if run.finished:
                reward = max(reward, settings.divergence_penalty - self._return)
            info["eval_loss"] = end_loss
        self._return += reward
        self._phi_hat = run.control.smoother.vector() if run.steps_done else self._phi_hat
        obs = self._observation()
        terminated = run.finished
        if terminated:
            result = run.result(settings.test_size)
            self.last_result = result
            info.update(
                task=result.task.to_dict(),
                final_train_loss=result.final_train_loss,
                test_loss=result.test_loss,
                test_accuracy=result.test_accuracy,
                steps_completed=result.steps_completed,
                curves=result.curves,
            )
            self._run = None
        return obs, float(reward), terminated, False, info

    def _current(self) -> TrainingRun:
        if self._run is None:
            raise gym.error.ResetNeeded("call reset() before step() (the episode has ended)")
        return self._run

    def _boundaries(self, steps: int) -> np.ndarray:
        """The steps after which ``E`` is measured: 0, every stretch's end, the last step."""
        ends = [*range(0, steps, self.settings.control_interval), steps]
        return np.asarray(ends, dtype=np.int64)

    def _observation(self) -> np.ndarray:
        run = self._run
        assert run is not None
        lr = run.control.lr
        low, high = self.settings.lr_bounds
        log_lr = math.log(min(max(lr, low), high)) if lr > 0 else -1e9
        fraction = run.steps_done / run.task.steps
        loss = run.eval_loss(run.steps_done) if run.steps_done in run.eval_steps else math.inf
        extra = np.array([log_lr, fraction, _log(loss)], dtype=np.float64)
        obs = np.concatenate([phi_hat_observation(self._phi_hat), extra])
        space = self.observation_space
        assert isinstance(space, spaces.Box)
        return np.clip(np.nan_to_num(obs, nan=0.0), space.low, space.high).astype(np.float32)

    def _result_to_draw(self) -> TrainingResult | None:
        if self._run is None:
            return self.last_result
        run = self._run
        return TrainingResult(run.task, run.curves(), math.nan, math.nan, run.diverged, 0.0)


def _log(loss: float) -> float:
    """``log E``, ``E`` floored at :data:`LOSS_FLOOR` (``inf`` stays ``inf``)."""
    return math.log(max(loss, LOSS_FLOOR))
