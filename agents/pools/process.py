"""The process pool: spawned worker processes on this machine, each dealt the next job as soon
as it is free.

A worker (:func:`_serve`) builds its state once, then runs one job per message until it is
told to stop; its job loop is the one place to add per-job work in a worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import signal
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import torch

from lrgym.errors import LrgymError

from .base import (
    CollectorError,
    JobFunction,
    OnResult,
    WorkerPool,
    close_state,
    worker_count,
)


@dataclass(eq=False)
class _Worker:
    index: int
    process: Any  # multiprocessing.process.BaseProcess
    connection: Any  # multiprocessing.connection.Connection


class ProcessPool(WorkerPool):
    """Runs the jobs in ``workers`` processes (spawned), each dealt the next job as soon as it
    is free, so jobs of unequal length never leave a worker waiting for another.

    Every worker builds its state once (one torch thread, Ctrl-C left to this process). A
    worker that dies (killed, out of memory) or a job that raises ends :meth:`map` with a
    :class:`CollectorError` naming the job (the job's error is its cause, with the worker's
    traceback in the message); the pool is then closed.

    Args:
        initializer, args: build each worker's state.
        workers: number of worker processes.
        setup: what building the state is called in error messages.

    Raises:
        CollectorError: a worker could not build its state (the worker's error is its cause).
    """

    def __init__(
        self,
        initializer: Callable[..., Any],
        args: Sequence[Any] = (),
        *,
        workers: int = 2,
        setup: str = "building its state",
    ) -> None:
        self._setup = setup
        count = worker_count(workers)
        context = multiprocessing.get_context("spawn")  # no fork of a process running torch
        self._workers: list[_Worker] = []
        self._broken = False
        try:
            for index in range(count):
                parent, child = context.Pipe()
                process = context.Process(
                    target=_serve,
                    args=(child, initializer, tuple(args)),
                    name=f"lrgym-worker-{index}",
                    daemon=True,
                )
                process.start()
                child.close()
                self._workers.append(_Worker(index, process, parent))
            for worker in self._workers:
                self._receive(worker, None)
        except BaseException:
            self._stop(terminate=True)
            raise

    @property
    def pids(self) -> list[int | None]:
        """The worker processes' ids, in worker order."""
        return [worker.process.pid for worker in self._workers]

    def _run(
        self, function: JobFunction, jobs: Sequence[Any], labels: Sequence[str], finished: OnResult
    ) -> None:
        if self._broken or not self._workers:
            raise CollectorError("this pool was closed (after an error or by close())")
        waiting = deque(range(len(jobs)))
        busy: dict[_Worker, int] = {}
        try:
            while waiting or busy:
                for worker in self._workers:
                    if waiting and worker not in busy:
                        k = waiting.popleft()
                        worker.connection.send((function, jobs[k]))
                        busy[worker] = k
                ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
                done = [w for w in busy if w.connection in ready or w.process.sentinel in ready]
                for worker in done:
                    k = busy.pop(worker)
                    finished(k, self._receive(worker, labels[k]))
        except BaseException:
            self._broken = True  # jobs may still be running: this pool is done
            self._stop(terminate=True)
            raise

    def _receive(self, worker: _Worker, label: str | None) -> Any:
        """The worker's next result; a dead worker or a failure becomes a CollectorError."""
        what = self._setup if label is None else label
        try:
            kind, payload = worker.connection.recv()
        except (EOFError, ConnectionError):
            worker.process.join(timeout=5)
            code = worker.process.exitcode
            hint = "" if label is None else "; run it with backend 'serial' to see it here"
            raise CollectorError(
                f"worker {worker.index} (pid {worker.process.pid}) died during {what}"
                + (f" (exit code {code})" if code is not None else "")
                + hint
            ) from None
        if kind == "error":
            error, trace = payload
            raise CollectorError(
                f"worker {worker.index} failed during {what}: {error!r}\n"
                f"--- the worker's traceback ---\n{trace}"
            ) from error
        return payload

    def _stop(self, *, terminate: bool) -> None:
        for worker in self._workers:
            if not terminate:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
        for worker in self._workers:
            if terminate:
                worker.process.terminate()
            worker.process.join(timeout=5 if not terminate else None)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self._workers = []

    def close(self) -> None:
        self._stop(terminate=self._broken)


def _serve(connection: Any, initializer: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A worker process: build the state once, then run each job it is sent.

    Messages: ``(function, job)`` runs a job and replies ``("done", result)`` or ``("error",
    (exception, traceback))``; ``None`` closes the state and ends the worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(1)
    try:
        import lrgym  # noqa: F401 - registers the environments

        state = initializer(*args)
    except Exception as exc:
        connection.send(("error", (_portable(exc), traceback.format_exc())))
        return
    connection.send(("ready", None))
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the main process has gone
            return
        if message is None:
            close_state(state)
            return
        function, job = message
        try:
            reply: tuple[str, Any] = ("done", function(state, job))
        except Exception as exc:
            reply = ("error", (_portable(exc), traceback.format_exc()))
        try:
            connection.send(reply)
        except OSError:  # the main process has gone (killed): nobody to report to
            return


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to be sent to the main process), else a stand-in."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:
        return LrgymError(f"{type(exc).__name__}: {exc}")
