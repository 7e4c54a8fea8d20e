"""The worker pool interface every backend implements, and the error a failed job raises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from lrgym.errors import InvalidConfigError, LrgymError

JobFunction = Callable[[Any, Any], Any]
"""A job function, called in a worker as ``function(state, job)``; module-level (pickled by
name)."""

OnResult = Callable[[int, Any], None]
"""Called in the main process as ``on_result(k, result)`` as soon as job ``k`` is done."""


class CollectorError(LrgymError):
    """A worker died or a job (an episode) failed in a worker; the message names the job."""


class WorkerPool(ABC):
    """Runs jobs ``function(state, job)`` on workers that each build their ``state`` once with
    ``initializer(*args)`` (an env, say), one torch thread per worker. ``function`` and
    ``initializer`` must be module-level functions or classes (they are pickled by name).

    Use as a context manager or ``close()``. A job that raises in a worker process or actor, or
    a worker that dies, ends :meth:`map` with a :class:`CollectorError` naming the job; the pool
    is then closed. (In the serial pool the job's own error propagates.)

    A backend implements :meth:`_run` (deal the jobs out, report each as it finishes) and
    :meth:`close`.
    """

    def map(
        self,
        function: JobFunction,
        jobs: Sequence[Any],
        *,
        labels: Sequence[str] | None = None,
        on_result: OnResult | None = None,
    ) -> list[Any]:
        """Run every job; results in the order of ``jobs``.

        Args:
            function: called in a worker as ``function(state, job)``.
            jobs: picklable job descriptions.
            labels: what each job is called in error messages (default ``"job k"``).
            on_result: called in this process as ``on_result(k, result)`` as soon as job ``k``
                is done, in the order jobs finish (to save results as they come).
        """
        results: list[Any] = [None] * len(jobs)
        names = [f"job {k}" for k in range(len(jobs))] if labels is None else list(labels)

        def finished(k: int, result: Any) -> None:
            results[k] = result
            if on_result is not None:
                on_result(k, result)

        self._run(function, jobs, names, finished)
        return results

    @abstractmethod
    def _run(
        self, function: JobFunction, jobs: Sequence[Any], labels: Sequence[str], finished: OnResult
    ) -> None:
        """Run every job, calling ``finished(k, result)`` in this process as job ``k`` ends."""

    @abstractmethod
    def close(self) -> None:
        """Stop the workers."""

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def worker_count(workers: int) -> int:
    """``workers`` as an int, checked to be positive."""
    if int(workers) != workers or workers < 1:
        raise InvalidConfigError(f"workers={workers!r} must be a positive integer")
    return int(workers)


def close_state(state: Any) -> None:
    """Call the worker state's ``close()``, if it has one (an env's, say)."""
    close = getattr(state, "close", None)
    if callable(close):
        close()
