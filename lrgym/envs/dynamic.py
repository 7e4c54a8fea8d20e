"""The StepSizeControl-Dynamic environments: the agent sets the learning rate during the run."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lrgym.controllers import (
    DEFAULT_LR_BOUNDS,
    ConstantController,
    Controller,
)
from lrgym.controllers.files import SavedController, load_controller
from lrgym.envs.base import OBS_HIGH, OBS_LOW, TrainingTaskEnv, phi_hat_observation
from lrgym.errors import InvalidActionError, InvalidConfigError, choice_error
from lrgym.tasks.family import Task
from lrgym.training import TrainingResult, TrainingRun

DEFAULT_CONTROL_INTERVAL = 50
"""Optimiser steps per action unless an id or ``control_interval`` says otherwise."""
DEFAULT_LR_RANGE = (1e-5, 1.0)
"""The learning rates the absolute action spans: ``log10(eta)`` in ``[-5, 0]``."""
DEFAULT_MAX_FACTOR = 10.0
"""The largest change of the rate one multiplicative action makes (``x10`` or ``/10``)."""
DEFAULT_DYNAMIC_DIVERGENCE_PENALTY = -9.0
"""Return of a diverged episode: the bandit env's penalty (-1) times ``S - 1`` (9)."""
LOSS_FLOOR = 1e-30
"""``E`` is floored at this value inside the logs of the reward and the observation."""
ACTION_MODES = ("absolute", "multiplicative")
"""What the action sets: ``log10(eta)`` in ``lr_range``, or a factor on the current rate."""
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

    ``reset(options={"controller": c})`` runs an lrgym controller (any
    :class:`lrgym.Controller` or a :class:`lrgym.SavedController`) instead: each
    ``step(None)`` trains the next stretch with the controller setting every step's rate,
    exactly as :func:`lrgym.train` does. :class:`ControllerWrapper` does this for you.

    ## Arguments

    Those of :class:`lrgym.envs.StepSizeControlEnv` except the action map, ``relative`` and
    ``eval_points``, plus:

    * ``control_interval``: optimiser steps per action (default 50; the Digits id 20, Toy 10).
    * ``action_mode``: ``"absolute"`` or ``"multiplicative"``.
    * ``lr_range``: ``[low, high]`` learning rates of the absolute action (inside
      ``lr_bounds``).
    * ``max_factor``: the multiplicative action's largest factor (> 1).
    * ``divergence_penalty``: return of a diverged episode (default -9).

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        *,
        dataset: str = "mnist",
        architecture: str = "cnn",
        widths: Sequence[Sequence[int]] | None = None,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        subset_fraction: Sequence[float] = (0.1, 0.5),
        steps: Sequence[int] = (300, 1000),
        batch_size: Sequence[int] = (64, 64),
        lr: Sequence[float] = (1e-4, 1e-1),
        gamma: float = 0.9,
        feature_every: int = 1,
        feature_estimate: str = "dense",
        eval_size: int = 1000,
        test_size: int | None = None,
        control_interval: int = DEFAULT_CONTROL_INTERVAL,
        action_mode: str = "absolute",
        lr_range: Sequence[float] = DEFAULT_LR_RANGE,
        max_factor: float = DEFAULT_MAX_FACTOR,
        lr_bounds: Sequence[float] = DEFAULT_LR_BOUNDS,
        divergence_penalty: float = DEFAULT_DYNAMIC_DIVERGENCE_PENALTY,
        data_root: str | None = None,
        download: bool = True,
        device: str = "cpu",
        memory_format: str = "auto",
        render_mode: str | None = None,
    ) -> None:
        self._setup(
            dataset=dataset,
            architecture=architecture,
            widths=widths,
            optimizer=optimizer,
            momentum=momentum,
            subset_fraction=subset_fraction,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            gamma=gamma,
            feature_every=feature_every,
            feature_estimate=feature_estimate,
            eval_size=eval_size,
            test_size=test_size,
            lr_bounds=lr_bounds,
            divergence_penalty=divergence_penalty,
            data_root=data_root,
            download=download,
            device=device,
            memory_format=memory_format,
            render_mode=render_mode,
        )
        if int(control_interval) != control_interval or control_interval < 1:
            raise InvalidConfigError(
                f"control_interval={control_interval!r} must be a positive integer (optimiser "
                "steps per action)"
            )
        if action_mode not in ACTION_MODES:
            raise choice_error("action_mode", action_mode, ACTION_MODES)
        low, high = (float(v) for v in lr_range)
        if not self.lr_bounds[0] <= low < high <= self.lr_bounds[1]:
            raise InvalidConfigError(
                f"lr_range={list(lr_range)!r} must satisfy lr_bounds[0] <= low < high <= "
                f"lr_bounds[1] (lr_bounds={list(self.lr_bounds)!r})"
            )
        if not 1.0 < max_factor < math.inf:
            raise InvalidConfigError(f"max_factor={max_factor!r} must be a finite number > 1")
        self.control_interval, self.action_mode = int(control_interval), action_mode
        self.lr_range = (low, high)
        self.max_factor = float(max_factor)
        self._log10_range = (math.log10(low), math.log10(high))
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        log_low, log_high = (math.log(b) for b in self.lr_bounds)
        self.observation_space = spaces.Box(
            np.concatenate([OBS_LOW, [log_low, 0.0, LOG_LOSS_BOUNDS[0]]]).astype(np.float32),
            np.concatenate([OBS_HIGH, [log_high, 1.0, LOG_LOSS_BOUNDS[1]]]).astype(np.float32),
            dtype=np.float32,
        )
        self._run: TrainingRun | None = None
        self._driven = False  # the episode's rates come from a controller
        self._phi_hat = np.zeros(5)
        self._return = 0.0
        self.last_result: TrainingResult | None = None

    # -- the action map -------------------------------------------------------------------

    def action_to_lr(self, action: np.ndarray | float, current_lr: float | None = None) -> float:
        """The learning rate an action (in ``[-1, 1]``) sets; the multiplicative mode needs
        the current rate."""
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        if self.action_mode == "absolute":
            low, high = self._log10_range
            return float(10.0 ** (low + (a + 1.0) / 2.0 * (high - low)))
        if current_lr is None:
            raise InvalidConfigError("the multiplicative action needs current_lr")
        eta = current_lr * self.max_factor**a
        return min(max(eta, self.lr_bounds[0]), self.lr_bounds[1])

    def lr_to_action(self, lr: float, current_lr: float | None = None) -> np.ndarray:
        """The action (float32, ``(1,)``, not clipped) that sets the learning rate ``lr``."""
        if not 0.0 < lr < math.inf:
            raise InvalidConfigError(f"lr={lr!r} must be a positive finite number")
        if self.action_mode == "absolute":
            low, high = self._log10_range
            a = 2.0 * (math.log10(lr) - low) / (high - low) - 1.0
        else:
            if current_lr is None:
                raise InvalidConfigError("the multiplicative action needs current_lr")
            a = math.log(lr / current_lr) / math.log(self.max_factor)
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

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a task (as the bandit env does for the same seed) and start its run.

        ``options``: ``{"task": Task}`` runs a given task; ``{"controller": c}`` lets an lrgym
        controller (a :class:`lrgym.Controller` or a :class:`lrgym.SavedController`) set every
        step's rate, and ``step(None)`` advances it.
        """
        super().reset(seed=seed)
        options = options or {}
        task = self._sample_task(options)
        self._phi_hat = self._starting_features(task)
        controller, self._driven = self._controller(options.get("controller"), self._phi_hat)
        self._run = run = TrainingRun(
            task,
            self._data,
            controller=controller,
            features=self.features,
            eval_size=self.eval_size,
            eval_steps=self._boundaries(task.steps),
            device=self.device,
            memory_format=self.memory_format,
        )
        run.advance(0)  # E before training
        self._return = 0.0
        return self._observation(), {"task": task.to_dict(), "eval_loss": run.eval_loss(0)}

    def step(
        self, action: np.ndarray | None
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Train the next ``control_interval`` steps at the rate ``action`` sets (``None`` in
        an episode a controller drives)."""
        run = self._run
        if run is None:
            raise gym.error.ResetNeeded("call reset() before step() (the episode has ended)")
        clipped = False
        if action is None:
            if not self._driven:
                raise InvalidActionError(
                    "action is None; it sets the learning rate, a float32 array of shape (1,) "
                    "in [-1, 1] (None steps only episodes reset with options={'controller': "
                    "...})"
                )
            lr = None
        else:
            if self._driven:
                raise InvalidActionError(
                    "this episode is driven by the controller given to reset(); step it with "
                    "step(None), or reset without options['controller'] to set the rate"
                )
            value = self._validate(action, (1,), "the learning rate's action in [-1, 1]")
            clipped = bool(abs(value[0]) > 1.0)
            lr = self.action_to_lr(value, run.control.lr)
        before = run.steps_done
        start_loss = run.eval_loss(before)
        run.advance(self.control_interval, lr)
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
            reward = self.divergence_penalty - self._return
            info["eval_loss"] = math.inf
        else:
            end_loss = run.eval_loss(run.steps_done)
            reward = _log(start_loss) - _log(end_loss)
            if run.finished:
                reward = max(reward, self.divergence_penalty - self._return)
            info["eval_loss"] = end_loss
        self._return += reward
        self._phi_hat = run.smoother.vector() if run.steps_done else self._phi_hat
        obs = self._observation()
        terminated = run.finished
        if terminated:
            result = run.result(self.test_size)
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

    def _boundaries(self, steps: int) -> np.ndarray:
        """The steps after which ``E`` is measured: 0, every stretch's end, the last step."""
        ends = [*range(0, steps, self.control_interval), steps]
        return np.asarray(ends, dtype=np.int64)

    def _controller(self, given: Any, start: np.ndarray) -> tuple[Controller, bool]:
        if given is None:
            return ConstantController(), False
        if isinstance(given, SavedController):  # a per-step policy file raises, saying why
            return given.controller_for(phi_hat_observation(start)), True
        if isinstance(given, Controller) or callable(getattr(given, "learning_rate", None)):
            return given, True
        raise InvalidConfigError(
            f"options['controller'] must be a lrgym Controller or SavedController, got "
            f"{type(given).__name__}"
        )

    def _observation(self) -> np.ndarray:
        run = self._run
        assert run is not None
        lr = run.control.lr
        log_lr = math.log(min(max(lr, self.lr_bounds[0]), self.lr_bounds[1])) if lr > 0 else -1e9
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


class ControllerWrapper(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """Runs an lrgym controller as the policy of a dynamic env: every episode is reset with
    ``options={"controller": controller}``, and ``step(action)`` ignores ``action`` (``None``
    will do) while the controller sets the rate of each of the stretch's optimiser steps,
    exactly as in :func:`lrgym.train`. Rewards, observations and ``info`` are the env's, so
    controllers and per-step policies are scored on the same episodes.

    Args:
        env: a ``StepSizeControl-Dynamic-*`` env (:class:`StepSizeControlDynamicEnv`).
        controller: a :class:`lrgym.Controller` (constant, schedule, log-linear, your own), a
            :class:`lrgym.SavedController`, a controller file's path or a pretrained
            controller's name. A contextual policy file picks ``theta`` from each task's
            starting features (its model is unpickled; load only files you trust).
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
        if isinstance(controller, (str, os.PathLike)):
            controller = load_controller(controller)
        self.controller = controller

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        return self.env.reset(seed=seed, options={**(options or {}), "controller": self.controller})

    def step(
        self, action: Any = None
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        return self.env.step(None)  # type: ignore[arg-type]
