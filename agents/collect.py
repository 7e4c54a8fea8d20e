"""Running batches of one-step episodes: serially, in worker processes, or on Ray.

Every episode is ``env.reset(seed=s)`` then ``env.step(action)``. The seed fixes the task, so an
episode's result depends only on ``(seed, action)``, never on which worker ran it or in which
order: all three backends give identical per-episode results for the same seeds and actions.
Every backend runs each episode with one torch thread (the float sums of a convolution depend
on how many threads share them); use more workers, not more threads, to use more cores.

* :class:`SerialCollector`: one env in this process.
* :class:`ProcessCollector`: worker processes on this machine, each dealt the next episode as
  soon as it is free (episodes differ in length, so no worker waits for another).
* :class:`RayCollector`: one Ray actor per worker, on a local or remote Ray cluster
  (``pip install "lrgym[ray]"``; every node needs lrgym and the env's data).

The process and Ray collectors are built on worker pools (:class:`WorkerPool`,
:func:`make_pool`), which run any module-level job function on workers that each hold a state
built once (an env here; ``lrgym benchmark`` runs its training runs on the same pools).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import signal
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lrgym.errors import InvalidConfigError, LrgymError, choice_error

BACKENDS = ("serial", "process", "ray")

Progress = Callable[[int], None]
"""Called with the number of episodes that just finished."""


@dataclass(frozen=True)
class Episode:
    """The result of one episode."""

    seed: int
    reward: float
    diverged: bool
    final_train_loss: float
    test_loss: float
    test_accuracy: float
    steps_completed: int
    curves: Any = None
    """The run's :class:`lrgym.Curves` when asked for (``keep_curves=True``), else ``None``."""


def episode_seeds(seed: int, iteration: int, count: int) -> list[int]:
    """``count`` reset seeds for the episodes of ``iteration`` of a run seeded ``seed``.

    Derived with :class:`numpy.random.SeedSequence` from ``(seed, iteration)``: independent
    between iterations, and the same wherever and whenever they are computed.
    """
    if seed < 0 or iteration < 0:
        raise InvalidConfigError(f"seed={seed!r} and iteration={iteration!r} must be >= 0")
    state = np.random.SeedSequence([seed, iteration]).generate_state(count, dtype=np.uint32)
    return [int(s) for s in state]


_INFO_KEYS = (
    "reward",
    "diverged",
    "final_train_loss",
    "test_loss",
    "test_accuracy",
    "steps_completed",
    "curves",
)


def episode_from_info(seed: int, info: Mapping[str, Any], keep_curves: bool) -> Episode:
    """The :class:`Episode` of a finished episode's last ``info`` (its ``reward``: the bandit
    reward, or a dynamic episode's return)."""
    return Episode(
        seed=int(seed),
        reward=float(info["reward"]),
        diverged=bool(info["diverged"]),
        final_train_loss=float(info["final_train_loss"]),
        test_loss=float(info["test_loss"]),
        test_accuracy=float(info["test_accuracy"]),
        steps_completed=int(info["steps_completed"]),
        curves=info["curves"] if keep_curves else None,
    )


def _check_batch(actions: np.ndarray, seeds: Sequence[int], space: gym.spaces.Box) -> np.ndarray:
    batch = np.asarray(actions, dtype=np.float32)
    if batch.ndim != 2 or batch.shape[1:] != space.shape or batch.shape[0] != len(seeds):
        raise InvalidConfigError(
            f"got actions of shape {batch.shape} for {len(seeds)} seeds; expected "
            f"({len(seeds)}, *{space.shape})"
        )
    if not np.all(np.isfinite(batch)):
        raise InvalidConfigError("actions must be finite")
    return batch


class Collector(ABC):
    """Runs batches of one-step episodes of one env; use as a context manager or ``close()``."""

    action_space: gym.spaces.Box

    @abstractmethod
    def run(
        self,
        actions: np.ndarray,
        seeds: Sequence[int],
        *,
        keep_curves: bool = False,
        progress: Progress | None = None,
    ) -> list[Episode]:
        """Run episode ``j`` with ``reset(seed=seeds[j])`` and ``step(actions[j])``.

        Returns the episodes in the order of ``seeds``.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the envs and workers."""

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _box(space: gym.Space[Any]) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box):
        raise InvalidConfigError(f"the env's action space is {space}; collectors need a Box")
    return space


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread inside, as in every backend: results do not depend on threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class SerialCollector(Collector):
    """Runs the episodes one after another in one env of this process (one torch thread while
    it runs them)."""

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> None:
        self.env = gym.make(env_id, **dict(env_kwargs or {}))
        self.action_space = _box(self.env.action_space)

    def run(
        self,
        actions: np.ndarray,
        seeds: Sequence[int],
        *,
        keep_curves: bool = False,
        progress: Progress | None = None,
    ) -> list[Episode]:
        batch = _check_batch(actions, seeds, self.action_space)
        episodes = []
        with _one_thread():
            for seed, action in zip(seeds, batch, strict=True):
                self.env.reset(seed=int(seed))
                _, _, terminated, _, info = self.env.step(action)
                if not terminated:
                    raise LrgymError("the env did not end its episode after one step")
                episodes.append(episode_from_info(seed, info, keep_curves))
                if progress is not None:
                    progress(1)
        return episodes

    def close(self) -> None:
        self.env.close()


class WorkerPool(ABC):
    """Runs jobs ``function(state, job)`` on workers that each build their ``state`` once with
    ``initializer(*args)`` (an env, say), one torch thread per worker. ``function`` and
    ``initializer`` must be module-level functions or classes (they are pickled by name).

    Use as a context manager or ``close()``. A job that raises, or a worker that dies, ends
    :meth:`map` with a :class:`CollectorError` naming the job; the pool is then closed.
    """

    @abstractmethod
    def map(
        self,
        function: Callable[[Any, Any], Any],
        jobs: Sequence[Any],
        *,
        labels: Sequence[str] | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """Run every job; results in the order of ``jobs``.

        Args:
            function: called in a worker as ``function(state, job)``.
            jobs: picklable job descriptions.
            labels: what each job is called in error messages (default ``"job k"``).
            on_result: called in this process as ``on_result(k, result)`` as soon as job ``k``
                is done, in the order jobs finish (to save results as they come).
        """

    @abstractmethod
    def close(self) -> None:
        """Stop the workers."""

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _label(labels: Sequence[str] | None, k: int) -> str:
    return f"job {k}" if labels is None else labels[k]


class SerialPool(WorkerPool):
    """Runs the jobs one after another in this process, with one torch thread."""

    def __init__(self, initializer: Callable[..., Any], args: Sequence[Any] = ()) -> None:
        self.state = initializer(*args)

    def map(
        self,
        function: Callable[[Any, Any], Any],
        jobs: Sequence[Any],
        *,
        labels: Sequence[str] | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        results = []
        with _one_thread():
            for k, job in enumerate(jobs):
                results.append(function(self.state, job))
                if on_result is not None:
                    on_result(k, results[-1])
        return results

    def close(self) -> None:
        close = getattr(self.state, "close", None)
        if callable(close):
            close()


class ProcessPool(WorkerPool):
    """Runs the jobs in ``workers`` processes (spawned), each dealt the next job as soon as it
    is free, so jobs of unequal length never leave a worker waiting for another.

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
        if int(workers) != workers or workers < 1:
            raise InvalidConfigError(f"workers={workers!r} must be a positive integer")
        context = multiprocessing.get_context("spawn")  # no fork of a process running torch
        self._workers: list[_Worker] = []
        self._broken = False
        try:
            for index in range(int(workers)):
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

    def map(
        self,
        function: Callable[[Any, Any], Any],
        jobs: Sequence[Any],
        *,
        labels: Sequence[str] | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        if self._broken or not self._workers:
            raise CollectorError("this pool was closed (after an error or by close())")
        results: list[Any] = [None] * len(jobs)
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
                    results[k] = self._receive(worker, _label(labels, k))
                    if on_result is not None:
                        on_result(k, results[k])
        except BaseException:
            self._broken = True  # jobs may still be running: this pool is done
            self._stop(terminate=True)
            raise
        return results

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


class CollectorError(LrgymError):
    """A worker died or a job (an episode) failed in a worker; the message names the job."""


@dataclass(eq=False)
class _Worker:
    index: int
    process: Any  # multiprocessing.process.BaseProcess
    connection: Any  # multiprocessing.connection.Connection


def _serve(connection: Any, initializer: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A worker process: build the state once, then run each job it is sent."""
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
            close = getattr(state, "close", None)
            if callable(close):
                close()
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


class _RayWorker:
    """Holds one worker's state inside a Ray actor."""

    def __init__(self, initializer: Callable[..., Any], args: tuple[Any, ...]) -> None:
        import lrgym  # noqa: F401 - registers the environments in the worker process

        torch.set_num_threads(1)
        self.state = initializer(*args)

    def run(self, function: Callable[[Any, Any], Any], job: Any) -> Any:
        return function(self.state, job)


class RayPool(WorkerPool):
    """Runs the jobs on ``workers`` Ray actors (one CPU each).

    Args:
        initializer, args: build each actor's state.
        workers: number of actors.
        address: the Ray cluster to join (``"auto"``, ``"HOST:PORT"``); ``None`` joins the
            cluster of ``RAY_ADDRESS`` or starts a local one. If Ray is already initialised in
            this process, that connection is used.
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
        if int(workers) != workers or workers < 1:
            raise InvalidConfigError(f"workers={workers!r} must be a positive integer")
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=1)(_RayWorker)
        self.actors: list[Any] = [
            remote.remote(initializer, tuple(args)) for _ in range(int(workers))
        ]

    def map(
        self,
        function: Callable[[Any, Any], Any],
        jobs: Sequence[Any],
        *,
        labels: Sequence[str] | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        ray = self._ray
        pending: dict[Any, int] = {}
        results: list[Any] = [None] * len(jobs)
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
                    results[k] = ray.get(ref)
                except Exception as exc:
                    raise CollectorError(f"{_label(labels, k)} failed on Ray: {exc}") from exc
                free.append(busy.pop(ref))
                if on_result is not None:
                    on_result(k, results[k])
        return results

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            self._ray.shutdown()


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
) -> WorkerPool:
    """The worker pool of ``backend`` (``"serial"``, ``"process"`` or ``"ray"``; ``None``: see
    :func:`resolve_backend`)."""
    backend = resolve_backend(backend, workers, ray_address)
    _check_backend(backend, workers, ray_address)
    if backend == "serial":
        return SerialPool(initializer, args)
    if backend == "process":
        return ProcessPool(initializer, args, workers=workers)
    return RayPool(initializer, args, workers=workers, address=ray_address)


def _run_episode(collector: SerialCollector, job: tuple[int, np.ndarray, bool]) -> Episode:
    seed, action, keep_curves = job
    return collector.run(action[None], [seed], keep_curves=keep_curves)[0]


def _action_space(collector: SerialCollector, _: Any) -> gym.spaces.Box:
    return collector.action_space


class _PoolCollector(Collector):
    """A collector whose workers each hold a :class:`SerialCollector` of the env."""

    _pool: WorkerPool

    def run(
        self,
        actions: np.ndarray,
        seeds: Sequence[int],
        *,
        keep_curves: bool = False,
        progress: Progress | None = None,
    ) -> list[Episode]:
        batch = _check_batch(actions, seeds, self.action_space)
        jobs = [(int(s), a, keep_curves) for s, a in zip(seeds, batch, strict=True)]
        labels = [f"the episode with reset(seed={int(s)})" for s in seeds]
        done = None if progress is None else (lambda k, result: progress(1))
        return self._pool.map(_run_episode, jobs, labels=labels, on_result=done)

    def close(self) -> None:
        self._pool.close()


class ProcessCollector(_PoolCollector):
    """Runs episodes in ``workers`` processes, each dealt the next episode as soon as it is free.

    Every worker builds its env once (one torch thread, Ctrl-C left to this process) and then
    runs ``reset(seed)`` + ``step(action)`` for each episode it is dealt. Episodes of unequal
    length (tasks differ in steps, runs diverge) never leave a worker waiting for another;
    results come back in the order of the seeds.

    A worker that dies (killed, out of memory) or an episode that raises ends :meth:`run` with
    a :class:`CollectorError` naming the episode's seed; the collector is then closed.

    Args:
        env_id, env_kwargs: the env every worker builds.
        workers: number of worker processes.

    Raises:
        CollectorError: a worker could not build the env (the worker's error is its cause).
    """

    def __init__(
        self, env_id: str, env_kwargs: Mapping[str, Any] | None = None, *, workers: int = 2
    ) -> None:
        self._pool = pool = ProcessPool(
            SerialCollector,
            (env_id, dict(env_kwargs or {})),
            workers=workers,
            setup="building the env",
        )
        try:
            self.action_space = _box(pool.map(_action_space, [None])[0])
        except BaseException:
            pool.close()
            raise

    @property
    def pids(self) -> list[int | None]:
        """The worker processes' ids, in worker order."""
        assert isinstance(self._pool, ProcessPool)
        return self._pool.pids


class RayCollector(_PoolCollector):
    """Runs the episodes on ``workers`` Ray actors (one CPU each).

    Args:
        env_id, env_kwargs: the env every actor builds.
        workers: number of actors.
        address: the Ray cluster to join (``"auto"``, ``"HOST:PORT"``); ``None`` joins the
            cluster of ``RAY_ADDRESS`` or starts a local one. If Ray is already initialised in
            this process, that connection is used.
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: Mapping[str, Any] | None = None,
        *,
        workers: int = 2,
        address: str | None = None,
    ) -> None:
        kwargs = dict(env_kwargs or {})
        self._pool = pool = RayPool(
            SerialCollector, (env_id, kwargs), workers=workers, address=address
        )
        self.action_space = _box(pool.map(_action_space, [None])[0])


def make_collector(
    backend: str | None,
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    workers: int = 1,
    ray_address: str | None = None,
) -> Collector:
    """The collector of ``backend`` (``"serial"``, ``"process"`` or ``"ray"``; ``None``: see
    :func:`resolve_backend`)."""
    backend = resolve_backend(backend, workers, ray_address)
    _check_backend(backend, workers, ray_address)
    if backend == "serial":
        return SerialCollector(env_id, env_kwargs)
    if backend == "process":
        return ProcessCollector(env_id, env_kwargs, workers=workers)
    return RayCollector(env_id, env_kwargs, workers=workers, address=ray_address)
