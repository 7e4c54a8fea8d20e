"""Running batches of one-step episodes: serially, in Gymnasium vector envs, or on Ray.

Every episode is ``env.reset(seed=s)`` then ``env.step(action)``. The seed fixes the task, so an
episode's result depends only on ``(seed, action)``, never on which worker ran it or in which
order: all three backends give identical per-episode results for the same seeds and actions.
Every backend runs each episode with one torch thread (the float sums of a convolution depend
on how many threads share them); use more workers, not more threads, to use more cores.

* :class:`SerialCollector`: one env in this process.
* :class:`VectorCollector`: a Gymnasium ``AsyncVectorEnv`` (one process per worker) in the
  same-step autoreset mode, so that no ``step`` call is spent on a reset.
* :class:`RayCollector`: one Ray actor per worker, on a local or remote Ray cluster
  (``pip install "lrgym[ray]"``; every node needs lrgym and the env's data).
"""

from __future__ import annotations

import multiprocessing
import signal
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lrgym.errors import InvalidConfigError, LrgymError, choice_error

BACKENDS = ("serial", "vector", "ray")

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


def _episode(seed: int, info: Mapping[str, Any], keep_curves: bool) -> Episode:
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
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in every backend: results do not depend on threads
        try:
            for seed, action in zip(seeds, batch, strict=True):
                self.env.reset(seed=int(seed))
                _, _, terminated, _, info = self.env.step(action)
                if not terminated:
                    raise LrgymError("the env did not end its episode after one step")
                episodes.append(_episode(seed, info, keep_curves))
                if progress is not None:
                    progress(1)
        finally:
            torch.set_num_threads(threads)
        return episodes

    def close(self) -> None:
        self.env.close()


class VectorCollector(Collector):
    """Runs ``workers`` episodes at a time in a Gymnasium ``AsyncVectorEnv``.

    Each round resets the sub-envs with the round's seeds and steps them once. The same-step
    autoreset mode returns the finished episode's info in ``info["final_info"]``; a batch
    whose size is not a multiple of ``workers`` pads its last round with repeats of its last
    episode, whose results are dropped.
    """

    def __init__(
        self, env_id: str, env_kwargs: Mapping[str, Any] | None = None, *, workers: int = 2
    ) -> None:
        if int(workers) != workers or workers < 1:
            raise InvalidConfigError(f"workers={workers!r} must be a positive integer")
        self.workers = int(workers)
        factory = partial(_single_threaded_env, env_id, dict(env_kwargs or {}))
        self.envs = gym.vector.AsyncVectorEnv(
            [factory] * self.workers, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        self.action_space = _box(self.envs.single_action_space)
        self._pending = False  # a step was interrupted (Ctrl-C): close must not wait for it

    def run(
        self,
        actions: np.ndarray,
        seeds: Sequence[int],
        *,
        keep_curves: bool = False,
        progress: Progress | None = None,
    ) -> list[Episode]:
        batch = _check_batch(actions, seeds, self.action_space)
        episodes: list[Episode] = []
        w = self.workers
        for start in range(0, len(seeds), w):
            round_seeds = [int(s) for s in seeds[start : start + w]]
            round_actions = batch[start : start + w]
            real = len(round_seeds)
            if real < w:  # pad the last round
                round_seeds += [round_seeds[-1]] * (w - real)
                round_actions = np.concatenate(
                    [round_actions, round_actions[-1:].repeat(w - real, 0)]
                )
            self._pending = True
            self.envs.reset(seed=round_seeds)  # type: ignore[arg-type]  # one seed per env
            _, _, terminated, _, info = self.envs.step(round_actions)
            self._pending = False
            if not np.all(terminated):
                raise LrgymError("the env did not end its episode after one step")
            final = info["final_info"]
            for j in range(real):
                row = {key: final[key][j] for key in _INFO_KEYS}
                episodes.append(_episode(round_seeds[j], row, keep_curves))
            if progress is not None:
                progress(real)
        return episodes

    def close(self) -> None:
        if self._pending:  # stop the workers now instead of waiting for their episodes
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.envs.close(terminate=True)
        else:
            self.envs.close()


def _single_threaded_env(env_id: str, env_kwargs: Mapping[str, Any]) -> gym.Env[Any, Any]:
    """Make the env in a worker process whose torch uses one thread (as in every backend) and
    which leaves Ctrl-C to the main process (that stops the workers)."""
    import lrgym  # noqa: F401 - registers the environments in the worker process

    if multiprocessing.parent_process() is not None:  # not the main process's probe env
        torch.set_num_threads(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    return gym.make(env_id, **env_kwargs)


class _RayWorker:
    """Holds one env inside a Ray actor."""

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any]) -> None:
        import lrgym  # noqa: F401 - registers the environments in the worker process

        torch.set_num_threads(1)
        self.collector = SerialCollector(env_id, env_kwargs)

    def run(self, seed: int, action: np.ndarray, keep_curves: bool) -> Episode:
        return self.collector.run(action[None], [seed], keep_curves=keep_curves)[0]


class RayCollector(Collector):
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
        try:
            import ray
        except ImportError:
            raise LrgymError(
                'the ray backend needs Ray: pip install "lrgym[ray]" (or pick --backend vector)'
            ) from None
        if int(workers) != workers or workers < 1:
            raise InvalidConfigError(f"workers={workers!r} must be a positive integer")
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        kwargs = dict(env_kwargs or {})
        remote = ray.remote(num_cpus=1)(_RayWorker)
        self.actors: list[Any] = [remote.remote(env_id, kwargs) for _ in range(int(workers))]
        probe = gym.make(env_id, **kwargs)
        self.action_space = _box(probe.action_space)
        probe.close()

    def run(
        self,
        actions: np.ndarray,
        seeds: Sequence[int],
        *,
        keep_curves: bool = False,
        progress: Progress | None = None,
    ) -> list[Episode]:
        batch = _check_batch(actions, seeds, self.action_space)
        ray = self._ray
        pending: dict[Any, int] = {}
        results: list[Episode | None] = [None] * len(seeds)
        free = list(self.actors)
        busy: dict[Any, Any] = {}
        queue = list(range(len(seeds)))
        while queue or pending:
            while queue and free:
                j = queue.pop(0)
                actor = free.pop(0)
                ref = actor.run.remote(int(seeds[j]), batch[j], keep_curves)
                pending[ref] = j
                busy[ref] = actor
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                results[pending.pop(ref)] = ray.get(ref)
                free.append(busy.pop(ref))
                if progress is not None:
                    progress(1)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            self._ray.shutdown()


def make_collector(
    backend: str,
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    workers: int = 1,
    ray_address: str | None = None,
) -> Collector:
    """The collector of ``backend`` (``"serial"``, ``"vector"`` or ``"ray"``)."""
    if backend not in BACKENDS:
        raise choice_error("backend", backend, BACKENDS)
    if ray_address is not None and backend != "ray":
        raise InvalidConfigError(f"ray_address={ray_address!r} needs backend='ray'")
    if backend == "serial":
        if workers != 1:
            raise InvalidConfigError(
                f"workers={workers!r}: the serial backend runs one episode at a time; use "
                "backend='vector' or 'ray' for more workers"
            )
        return SerialCollector(env_id, env_kwargs)
    if backend == "vector":
        return VectorCollector(env_id, env_kwargs, workers=workers)
    return RayCollector(env_id, env_kwargs, workers=workers, address=ray_address)
