"""The Ray pool: one Ray actor per worker, on a local or remote Ray cluster
(``pip install "lrgym[ray]"``; every node needs lrgym and the env's data)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lrgym.errors import LrgymError

from .base import (
    CollectorError,
    JobFunction,
    OnResult,
    WorkerPool,
    worker_count,
)


class _RayWorker:
    """Holds one worker's state inside a Ray actor."""

    def __init__(self, initializer: Callable[..., Any], args: tuple[Any, ...]) -> None:
        import lrgym  # noqa: F401 - registers the environments in the worker process

        torch.set_num_threads(1)
        self.state = initializer(*args)

    def run(self, function: JobFunction, job: Any) -> Any:
        return function(self.state, job)


class RayPool(WorkerPool):
    """Runs the jobs on ``workers`` Ray actors (one CPU each), each dealt the next job as soon
    as it is free.

    Args:
        initializer, args: build each actor's state.
        workers: number of actors.
        address: the Ray cluster to join (``"auto"``, ``"HOST:PORT"``); ``None`` joins the
            cluster of ``RAY_ADDRESS`` or starts a local one. If Ray is already initialised in
            this process, that connection is used.

    Raises:
        LrgymError: Ray is not installed.
    """

    def __init__(
        self,
        initializer: Callable[..., Any],
        args: Sequence[Any] = (),
        *,
        workers: int = 2,
        address: str | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise LrgymError(
                'the ray backend needs Ray: pip install "lrgym[ray]" (or pick --backend process)'
            ) from None
        count = worker_count(workers)
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=1)(_RayWorker)
        self.actors: list[Any] = [remote.remote(initializer, tuple(args)) for _ in range(count)]

    def _run(
        self, function: JobFunction, jobs: Sequence[Any], labels: Sequence[str], finished: OnResult
    ) -> None:
        ray = self._ray
        pending: dict[Any, int] = {}
        free = list(self.actors)
        busy: dict[Any, Any] = {}
        queue = deque(range(len(jobs)))
        while queue or pending:
            while queue and free:
                k = queue.popleft()
                actor = free.pop(0)
                ref = actor.run.remote(function, jobs[k])
                pending[ref] = k
                busy[ref] = actor
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                k = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:
                    raise CollectorError(f"{labels[k]} failed on Ray: {exc}") from exc
                free.append(busy.pop(ref))
                finished(k, result)

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            self._ray.shutdown()
