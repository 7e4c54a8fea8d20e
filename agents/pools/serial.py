"""The serial pool: the jobs one after another in this process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .base import JobFunction, OnResult, WorkerPool, close_state


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread inside, as in every backend: results do not depend on threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class SerialPool(WorkerPool):
    """Runs the jobs one after another in this process, with one torch thread (this process's
    thread count is restored between calls). A job's error propagates as it is."""

    def __init__(self, initializer: Callable[..., Any], args: Sequence[Any] = ()) -> None:
        self.state = initializer(*args)

    def _run(
        self, function: JobFunction, jobs: Sequence[Any], labels: Sequence[str], finished: OnResult
    ) -> None:
        with _one_thread():
            for k, job in enumerate(jobs):
                finished(k, function(self.state, job))

    def close(self) -> None:
        close_state(self.state)
