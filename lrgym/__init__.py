"""lrgym: neural-network training as a Gymnasium episodic bandit.

Importing lrgym registers the ``StepSizeControl-*`` environments with Gymnasium: the bandit
envs (one episode, one training run) and the ``StepSizeControl-Dynamic-*`` envs (one action per
stretch of the run). It also bounds the caches PyTorch's CPU convolutions keep per problem
shape (:mod:`lrgym.native_caches`), so that a process running episode after episode, each with a
new network, keeps a bounded memory.
"""

from lrgym.control import ControlledLR
from lrgym.controllers import (
    ConstantController,
    Controller,
    ControlState,
    LogLinearController,
    ScheduleController,
)
from lrgym.controllers.files import load_controller, pretrained_controllers, save_controller
from lrgym.controllers.policy_files import ContextualPolicyFile, PerStepPolicyFile
from lrgym.controllers.saved import (
    ControllerFileError,
    ControllerKindError,
    LogLinearFile,
    SavedController,
)
from lrgym.data import load_dataset
from lrgym.errors import (
    DatasetCorruptError,
    DatasetNotFoundError,
    InvalidActionError,
    InvalidConfigError,
    LrgymError,
    MissingPackageError,
)
from lrgym.features import FeatureConfig, base_features
from lrgym.native_caches import bound_native_caches
from lrgym.registration import DYNAMIC_ENV_KWARGS, ENV_KWARGS, register_envs
from lrgym.tasks import Task, TaskFamily
from lrgym.training import Curves, TrainingResult, train

__version__ = "0.1.0"

__all__ = [
    "DYNAMIC_ENV_KWARGS",
    "ENV_KWARGS",
    "ConstantController",
    "ContextualPolicyFile",
    "ControlState",
    "ControlledLR",
    "Controller",
    "ControllerFileError",
    "ControllerKindError",
    "Curves",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "FeatureConfig",
    "InvalidActionError",
    "InvalidConfigError",
    "LogLinearController",
    "LogLinearFile",
    "LrgymError",
    "MissingPackageError",
    "PerStepPolicyFile",
    "SavedController",
    "ScheduleController",
    "Task",
    "TaskFamily",
    "TrainingResult",
    "__version__",
    "base_features",
    "load_controller",
    "load_dataset",
    "pretrained_controllers",
    "save_controller",
    "train",
]

bound_native_caches()  # before this process's first convolution: see lrgym.native_caches
register_envs()
