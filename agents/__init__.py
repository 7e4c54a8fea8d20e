"""Agents that solve lrgym's environments: learners, and the infrastructure that runs them.

Learners (:mod:`lrgym_agents.learners`, each a module of its own):

* :mod:`lrgym_agents.learners.asktell`: the ask/tell protocol the population learners implement, and
  their registry;
* :mod:`lrgym_agents.learners.reps`, :mod:`lrgym_agents.learners.cmaes`,
  :mod:`lrgym_agents.learners.random_search`: REPS, CMA-ES, random search;
* :mod:`lrgym_agents.learners.sb3`: Stable-Baselines3 learners (contextual and per-step policies).

Infrastructure (what the learners and the benchmark run on):

* :mod:`lrgym_agents.pools`: worker pools, serial, process and Ray (one hierarchy);
* :mod:`lrgym_agents.collect`: batches of one-step episodes on a pool
  (:class:`lrgym_agents.collect.Collector`);
* :mod:`lrgym_agents.loop`: the training loop of the ask/tell learners;
* :mod:`lrgym_agents.rundir`: run directories, checkpoints and logs;
* :mod:`lrgym_agents.evaluation`: learned controllers on fresh tasks;
* :mod:`lrgym_agents.benchmark`: ``lrgym benchmark`` (plan and jobs, runner and resume);
* :mod:`lrgym_agents.cli`: the ``lrgym train``/``evaluate``/``benchmark`` commands.
"""
