"""The backends by name, the default one, and the pool of each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lrgym.errors import InvalidConfigError, choice_error

from .base import WorkerPool
from .process import ProcessPool
from .ray import RayPool
from .serial import SerialPool

BACKENDS = ("serial", "process", "ray")
"""Where jobs run: in this process, in worker processes, on Ray actors."""


def resolve_backend(backend: str | None, workers: int, ray_address: str | None = None) -> str:
    """``backend``, or for ``None`` the default: ``"ray"`` with a ``ray_address``, else
    ``"serial"`` for one worker and ``"process"`` for more (as ``lrgym train`` picks)."""
    if backend is not None:
        return backend
    return "ray" if ray_address else ("serial" if workers == 1 else "process")


def _check_backend(backend: str, workers: int, ray_address: str | None) -> None:
    if backend not in BACKENDS:
        raise choice_error("backend", backend, BACKENDS)
    if ray_address is not None and backend != "ray":
        raise InvalidConfigError(f"ray_address={ray_address!r} needs backend='ray'")
    if backend == "serial" and workers != 1:
        raise InvalidConfigError(
            f"workers={workers!r}: the serial backend runs one at a time; use "
            "backend='process' or 'ray' for more workers"
        )


def make_pool(
    backend: str | None,
    initializer: Callable[..., Any],
    args: Sequence[Any] = (),
    *,
    workers: int = 1,
    ray_address: str | None = None,
    setup: str = "building its state",
) -> WorkerPool:
    """The worker pool of ``backend`` (``"serial"``, ``"process"`` or ``"ray"``; ``None``: see
    :func:`resolve_backend`), its workers' states built with ``initializer(*args)``.

    Args:
        backend: where the jobs run.
        initializer, args: build each worker's state (a module-level function or class).
        workers: number of workers (1 for ``"serial"``).
        ray_address: the Ray cluster to join (``"ray"`` only; see :class:`RayPool`).
        setup: what building the state is called in a worker process's error messages.

    Raises:
        InvalidConfigError: unknown backend, or settings the backend does not take.
    """
    backend = resolve_backend(backend, workers, ray_address)
    _check_backend(backend, workers, ray_address)
    if backend == "serial":
        return SerialPool(initializer, args)
    if backend == "process":
        return ProcessPool(initializer, args, workers=workers, setup=setup)
    return RayPool(initializer, args, workers=workers, address=ray_address)
