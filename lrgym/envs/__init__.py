"""Gymnasium environments of lrgym."""

from lrgym.envs.bandit import StepSizeControlEnv
from lrgym.envs.dynamic import StepSizeControlDynamicEnv
from lrgym.envs.mixture import StepSizeControlDynamicMixtureEnv, StepSizeControlMixtureEnv
from lrgym.envs.wrappers import ControllerWrapper

__all__ = [
    "ControllerWrapper",
    "StepSizeControlDynamicEnv",
    "StepSizeControlDynamicMixtureEnv",
    "StepSizeControlEnv",
    "StepSizeControlMixtureEnv",
]
