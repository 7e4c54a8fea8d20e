"""Training tasks: the sampled family, its architectures and building a task's model."""

from lrgym.tasks.family import Task, TaskFamily, build_model

__all__ = ["Task", "TaskFamily", "build_model"]
