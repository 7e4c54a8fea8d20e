"""``lrgym benchmark``: controllers and baselines on a suite of held-out tasks.

:func:`run_benchmark` (:mod:`lrgym_agents.benchmark.runner`) runs every chosen controller on the
first ``tasks`` tasks of a suite (:mod:`lrgym.bench.suites`) and writes, in ``out``:

* ``results.csv``: one row per controller x task x eta_0 (:data:`lrgym.bench.results.
  RESULT_COLUMNS`), rewritten atomically after every finished run, in the plan's order, so a
  crash never loses a finished row; at the end the oracle's rows (the best constant of the grid
  per task) are derived from the constant rows and added;
* ``curves/*.npz``: each run's per-step ``losses`` and ``learning_rates`` and its evaluation
  points ``eval_steps``/``eval_losses`` (plain arrays, loaded with ``allow_pickle=False``);
* ``benchmark.json``: the settings (suite definition, controller files with their SHA-256,
  baselines, options), checked on ``--resume``;
* ``leaderboard.md`` (:func:`lrgym.bench.leaderboard.write_leaderboard`, from the CSV alone)
  and the figures (:func:`lrgym.bench.figures.write_figures`).

What runs, per task (``eta0_source`` in brackets; :func:`plan` in
:mod:`lrgym_agents.benchmark.jobs`):

* ``constant`` at every value of :data:`lrgym.bench.baselines.LR_GRID` (grid);
* every other baseline from the task's eta_0 (task), or at its own lr for the optimiser
  baselines (fixed);
* every learned controller (``--controller FILE``) from the task's eta_0 (task); with its
  features computed every 10 steps, ``dense`` and ``hold`` (the feature-cost rows); and with
  each entry of ``theta`` scaled by ``1 +- perturb`` (the perturbation rows);
* with ``eta0_sweep``, every learned controller and every baseline that starts from eta_0 again
  from each value of the grid (grid).

Runs are deterministic, so a benchmark killed at any point and continued with ``resume=True``
repeats no finished row and ends with the CSV an uninterrupted benchmark writes (up to the
``wall_time`` column).
"""

from __future__ import annotations

from .jobs import Job, plan
from .runner import add_arguments, command, run_benchmark

__all__ = ["Job", "add_arguments", "command", "plan", "run_benchmark"]
