"""Gymnasium environments of lrgym."""

from lrgym.envs.bandit import StepSizeControlEnv
from lrgym.envs.dynamic import ControllerWrapper, StepSizeControlDynamicEnv

__all__ = ["ControllerWrapper", "StepSizeControlDynamicEnv", "StepSizeControlEnv"]
