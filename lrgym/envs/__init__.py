"""Gymnasium environments of lrgym."""

from lrgym.envs.step_size_control import StepSizeControlEnv

__all__ = ["StepSizeControlEnv"]
