"""Running batches of one-step episodes on a worker pool: serially, in worker processes, or on
Ray.

Every episode is ``env.reset(seed=s)`` then ``env.step(action)``. The seed fixes the task, so an
episode's result depends only on ``(seed, action)``, never on which worker ran it or in which
order: every backend gives identical per-episode results for the same seeds and actions. Every
worker runs its episodes with one torch thread (the float sums of a convolution depend on how
many threads share them); use more workers, not more threads, to use more cores.

:class:`Collector` runs the episodes on a pool of :mod:`lrgym_agents.pools` (``backend``:
``"serial"``, one env in this process; ``"process"``, worker processes on this machine, each
dealt the next episode as soon as it is free; ``"ray"``, Ray actors on a local or remote
cluster), every worker holding one env (:class:`EpisodeWorker`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from lrgym.errors import InvalidConfigError, LrgymError

from .pools import WorkerPool, make_pool

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


class EpisodeWorker:
    """A worker's state: the env (built once) it plays its one-step episodes in."""

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any]) -> None:
        self.env = gym.make(env_id, **dict(env_kwargs))

    def close(self) -> None:
        """Close the env."""
        self.env.close()


def play_one_step(worker: EpisodeWorker, job: tuple[int, np.ndarray, bool]) -> Episode:
    """One episode in ``worker``'s env: ``job = (seed, action, keep_curves)``.

    Raises:
        LrgymError: the env did not end its episode after one step.
    """
    seed, action, keep_curves = job
    worker.env.reset(seed=seed)
    _, _, terminated, _, info = worker.env.step(action)
    if not terminated:
        raise LrgymError("the env did not end its episode after one step")
    return episode_from_info(seed, info, keep_curves)


def _action_space(worker: EpisodeWorker, _: Any) -> gym.Space[Any]:
    return worker.env.action_space


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


class Collector:
    """Runs batches of one-step episodes of one env on the workers of ``backend``; use as a
    context manager or ``close()``.

    Every worker builds the env once and runs ``reset(seed)`` + ``step(action)`` for each
    episode it is dealt; results come back in the order of the seeds, identical whatever the
    backend. In the serial backend an episode's error propagates as it is; in the others a
    worker that dies (killed, out of memory) or an episode that raises ends :meth:`run` with a
    :class:`lrgym_agents.pools.CollectorError` naming the episode's seed, and the collector is
    closed.

    Args:
        env_id, env_kwargs: the env every worker builds.
        backend, workers, ray_address: where the episodes run (:func:`lrgym_agents.pools.make_pool`;
            ``backend=None``: serial for one worker, worker processes for more).

    Raises:
        InvalidConfigError: bad backend settings, or the env's action space is not a Box.
        CollectorError: a worker process could not build the env (the worker's error is its
            cause).
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: Mapping[str, Any] | None = None,
        *,
        backend: str | None = None,
        workers: int = 1,
        ray_address: str | None = None,
    ) -> None:
        self.pool: WorkerPool = make_pool(
            backend,
            EpisodeWorker,
            (env_id, dict(env_kwargs or {})),
            workers=workers,
            ray_address=ray_address,
            setup="building the env",
        )
        try:
            space = self.pool.map(_action_space, [None])[0]
            if not isinstance(space, gym.spaces.Box):
                raise InvalidConfigError(
                    f"the env's action space is {space}; collectors need a Box"
                )
        except BaseException:
            self.pool.close()
            raise
        self.action_space: gym.spaces.Box = space

    def run(
        self,
        actions: np.ndarray,
        seeds: Sequence[int],
        *,
        keep_curves: bool = False,
        progress: Progress | None = None,
    ) -> list[Episode]:
        """Run episode ``j`` with ``reset(seed=seeds[j])`` and ``step(actions[j])``.

        Args:
            actions: shape ``(len(seeds), *action_space.shape)``, finite.
            seeds: one reset seed per episode.
            keep_curves: keep each run's curves in its :class:`Episode`.
            progress: called with 1 as each episode finishes.

        Returns:
            the episodes in the order of ``seeds``.
        """
        batch = _check_batch(actions, seeds, self.action_space)
        jobs = [(int(s), a, keep_curves) for s, a in zip(seeds, batch, strict=True)]
        labels = [f"the episode with reset(seed={int(s)})" for s in seeds]
        done = None if progress is None else (lambda k, result: progress(1))
        return self.pool.map(play_one_step, jobs, labels=labels, on_result=done)

    def close(self) -> None:
        """Stop the workers and close their envs."""
        self.pool.close()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_collector(
    backend: str | None,
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    workers: int = 1,
    ray_address: str | None = None,
) -> Collector:
    """The :class:`Collector` of ``env_id`` on ``backend`` (``"serial"``, ``"process"`` or
    ``"ray"``; ``None``: see :func:`lrgym_agents.pools.resolve_backend`)."""
    return Collector(env_id, env_kwargs, backend=backend, workers=workers, ray_address=ray_address)
