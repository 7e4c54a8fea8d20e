"""Learning-rate controllers: what sets eta at every step of a training run.

* :mod:`~lrgym.controllers.base`: the protocol (:class:`Controller`, :class:`ControlState`);
* :mod:`~lrgym.controllers.loglinear`: the paper's :class:`LogLinearController`;
* :mod:`~lrgym.controllers.schedules`: :class:`ConstantController`, :class:`ScheduleController`;
* :mod:`~lrgym.controllers.plateau` and :mod:`~lrgym.controllers.hypergradient`: the adaptive
  baselines;
* :mod:`~lrgym.controllers.files`: learned controllers as files (:func:`lrgym.load_controller`),
  one type per kind (:mod:`~lrgym.controllers.saved`, :mod:`~lrgym.controllers.policy_files`);
  Stable-Baselines3 policies are read by :mod:`~lrgym.controllers.sb3_policy`, imported only
  when a policy file is loaded.
"""

from __future__ import annotations

from lrgym.controllers.base import DEFAULT_LR_BOUNDS, Controller, ControlState
from lrgym.controllers.hypergradient import HYPERGRADIENT_BETA, HypergradientController
from lrgym.controllers.loglinear import LogLinearController
from lrgym.controllers.plateau import PlateauController
from lrgym.controllers.schedules import SCHEDULES, ConstantController, ScheduleController

__all__ = [
    "DEFAULT_LR_BOUNDS",
    "HYPERGRADIENT_BETA",
    "SCHEDULES",
    "ConstantController",
    "ControlState",
    "Controller",
    "HypergradientController",
    "LogLinearController",
    "PlateauController",
    "ScheduleController",
]
