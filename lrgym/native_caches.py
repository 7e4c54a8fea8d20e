"""Bounds on the caches that PyTorch's CPU convolutions keep, one entry per problem shape.

On the CPU, PyTorch runs convolutions through oneDNN, and two least-recently-used caches keep
what each new shape needed:

* oneDNN's primitive cache (a compiled kernel per shape and pass), whose capacity is read from
  ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` (or the older ``DNNL_PRIMITIVE_CACHE_CAPACITY``),
  default 1024 entries;
* ideep's primitive-descriptor caches (ideep is PyTorch's oneDNN wrapper), one per kind of
  operation and thread, whose capacity is read from ``LRU_CACHE_CAPACITY``, default 1024.

Training one network meets a few dozen shapes, but lrgym samples a new network every episode,
so a process that runs episode after episode meets new shapes all the time and both caches
fill to their capacity, slowly: on ``StepSizeControl-Digits-v0`` resident memory grew by
about 40 MB in the first 500 episodes and was still growing at 500 (``perf/memory_growth.py``
prints it). One episode of the conv families needs about 20 primitives, so
:data:`CACHE_CAPACITY` entries hold several episodes' worth and no episode recreates a
primitive it has used within itself (``perf/memory_growth.py`` compares episode times).

Both capacities are read from the environment once, at the first convolution of a process.
Importing lrgym sets them (:func:`bound_native_caches`), which takes effect when lrgym is
imported before the process runs its first convolution (as in lrgym's worker processes, which
also inherit the variables). A capacity the user has set is kept. Cache capacities change what
is recomputed, never a result: the same primitive is built again for the same shape.
"""

from __future__ import annotations

import os

CACHE_CAPACITY = 128
"""Entries lrgym lets each of these caches hold (unless the user set a capacity)."""

CAPACITY_VARIABLES: tuple[tuple[str, ...], ...] = (
    ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"),
    ("LRU_CACHE_CAPACITY",),
)
"""Per cache, the environment variables its capacity is read from (the first is set)."""


def bound_native_caches(capacity: int = CACHE_CAPACITY) -> dict[str, str]:
    """Set each cache's capacity variable to ``capacity``, unless one of its variables is
    already set; effective if no convolution has run in this process yet.

    Returns:
        The variables this call set, with their values.
    """
    chosen = {}
    for names in CAPACITY_VARIABLES:
        if not any(name in os.environ for name in names):
            chosen[names[0]] = os.environ[names[0]] = str(int(capacity))
    return chosen
