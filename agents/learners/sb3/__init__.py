"""Stable-Baselines3 learners (PPO, A2C, SAC, TD3, and ARS from ``sb3-contrib``) under lrgym's
run-directory workflow.

The algorithms run unmodified on the registered env. On a bandit env every episode is one
training run, so the policy is *contextual*: it maps a task's starting features (the reset
observation) to the controller's action. On a per-step env (``StepSizeControl-Dynamic-*``) an
episode is still one training run, of several actions: the policy maps each observation to the
next stretch's learning rate, and its controller file holds a *per-step* policy
(:data:`SB3_DYNAMIC_SETTINGS` are lrgym's settings there). What lrgym adds, all through SB3's
own mechanisms (a callback, ``save``, ``save_replay_buffer``):

* **task seeds**: episode ``n`` of the run (counted over the whole run, resumes included) trains
  the task of ``reset(seed)`` with the seed :func:`lrgym_agents.collect.episode_seeds` derives from
  ``(seed, n)``, whichever worker runs it, so no task is drawn twice by accident and a resumed run
  continues the sequence;
* **the budget**: training stops after exactly ``episodes`` episodes (the log's rewards are
  episode returns);
* **the run directory** (:mod:`lrgym_agents.rundir`): ``log.jsonl`` with the columns every learner
  shares (a line per ``log_every`` episodes or more, at the first update boundary after them),
  ``checkpoint.json`` (a model file ``models/model-NNNNNN.zip``, the replay buffer for SAC/TD3,
  their SHA-256), ``controller.json`` / ``controller-initial.json`` referencing the model
  (a :class:`~lrgym.controllers.policy_files.ContextualPolicyFile` or
  :class:`~lrgym.controllers.policy_files.PerStepPolicyFile`), SB3's TensorBoard logs;
* ``--resume``: reloads the checkpoint's model (and replay buffer) and trains the remaining
  episodes. It repeats no finished episode and ends with the requested count. It is **not**
  bit-identical to an uninterrupted run: episodes after the checkpoint that were not saved are
  run again on the same tasks but with fresh action noise, and on-policy algorithms start a new
  rollout at the checkpoint.

Model files and replay buffers are **pickles**: resume and evaluate only runs you trust.

Modules: :mod:`~lrgym_agents.learners.sb3.settings` (lrgym's settings, budgets, building a model),
:mod:`~lrgym_agents.learners.sb3.training` (:func:`train_sb3`),
:mod:`~lrgym_agents.learners.sb3.model_files` (saving and loading models, writing the policy
controller files), :mod:`~lrgym_agents.learners.sb3.callback`.
"""

from __future__ import annotations

from .settings import SB3_DYNAMIC_SETTINGS, SB3_LEARNERS
from .training import train_sb3

__all__ = ["SB3_DYNAMIC_SETTINGS", "SB3_LEARNERS", "train_sb3"]
