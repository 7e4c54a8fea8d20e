"""Worker pools: run module-level job functions on workers that each build a state once.

One hierarchy, one module per backend; every worker runs with one torch thread (the float sums
of a convolution depend on how many threads share them), so a job's result never depends on
the backend:

* :class:`WorkerPool` (:mod:`lrgym_agents.pools.base`): the interface, and :class:`CollectorError`;
* :class:`SerialPool` (:mod:`lrgym_agents.pools.serial`): the jobs one after another in this
  process;
* :class:`ProcessPool` (:mod:`lrgym_agents.pools.process`): spawned worker processes on this
  machine;
* :class:`RayPool` (:mod:`lrgym_agents.pools.ray`): Ray actors on a local or remote cluster;
* :func:`make_pool` (:mod:`lrgym_agents.pools.backends`): the pool of a backend named on the command
  line (:data:`BACKENDS`, :func:`resolve_backend`).

Episodes run on these pools through :class:`lrgym_agents.collect.Collector`; ``lrgym benchmark`` and
:func:`lrgym_agents.evaluation.evaluate_dynamic` map their own jobs over them.
"""

from __future__ import annotations

from .backends import BACKENDS, make_pool, resolve_backend
from .base import CollectorError, WorkerPool
from .process import ProcessPool
from .ray import RayPool
from .serial import SerialPool

__all__ = [
    "BACKENDS",
    "CollectorError",
    "ProcessPool",
    "RayPool",
    "SerialPool",
    "WorkerPool",
    "make_pool",
    "resolve_backend",
]
