"""An env for collector tests whose episodes fail on purpose (imported by worker processes as
``gym.make("failing_env:Failing-v0")``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class FailingEnv(gym.Env[np.ndarray, np.ndarray]):
    """One-step episodes; ``step`` raises when the reset seed is odd."""

    def __init__(self) -> None:
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32)
        self._seed = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._seed = int(seed or 0)
        return np.zeros(5, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._seed % 2:
            raise ValueError(f"odd seed {self._seed}")
        info = {
            "reward": 0.0,
            "diverged": False,
            "final_train_loss": 1.0,
            "test_loss": 1.0,
            "test_accuracy": 0.0,
            "steps_completed": 1,
            "curves": None,
        }
        return np.zeros(5, dtype=np.float32), 0.0, True, False, info


gym.register("Failing-v0", entry_point=FailingEnv)
