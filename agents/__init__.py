"""Agents that solve lrgym's environments: learners, and the infrastructure that runs them.

Learners (:mod:`agents.learners`, each a module of its own):

* :mod:`agents.learners.asktell`: the ask/tell protocol the population learners implement, and
  their registry;
* :mod:`agents.learners.reps`, :mod:`agents.learners.cmaes`,
  :mod:`agents.learners.random_search`: REPS, CMA-ES, random search;
* :mod:`agents.learners.sb3`: Stable-Baselines3 learners (contextual and per-step policies).

Infrastructure (what the learners and the benchmark run on):

* :mod:`agents.pools`: worker pools, serial, process and Ray (one hierarchy);
* :mod:`agents.collect`: batches of one-step episodes on a pool (:class:`agents.collect.Collector`);
* :mod:`agents.loop`: the training loop of the ask/tell learners;
* :mod:`agents.rundir`: run directories, checkpoints and logs;
* :mod:`agents.evaluation`: learned controllers on fresh tasks;
* :mod:`agents.benchmark`: ``lrgym benchmark`` (plan and jobs, runner and resume);
* :mod:`agents.cli`: the ``lrgym train``/``evaluate``/``benchmark`` commands.
"""
