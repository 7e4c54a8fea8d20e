"""Gymnasium environments of lrgym."""

from lrgym.envs.dynamic import ControllerWrapper, StepSizeControlDynamicEnv
from lrgym.envs.step_size_control import StepSizeControlEnv

__all__ = ["ControllerWrapper", "StepSizeControlDynamicEnv", "StepSizeControlEnv"]
