"""Random search as an ask/tell learner: uniform candidates in the action box, with the best
ones re-evaluated so that a single lucky task cannot win.

Each iteration's batch of ``samples`` episodes is made of

1. **re-evaluations**: the ``finalists`` candidates with the best mean reward so far that have
   fewer than ``1 + reevaluations`` rewards get the episodes they lack (at most half the batch);
2. **new candidates**: the rest of the batch, drawn uniformly from ``[-1, 1]^dim``, one episode
   each.

Every episode is on its own task (or on the iteration's task with ``--same-task``), so a
candidate's rewards come from different tasks. The reported controller
(:meth:`RandomSearch.recommendation`) is the candidate with the best mean reward among those
evaluated ``1 + reevaluations`` times; before any candidate is, among those evaluated most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lrgym.errors import InvalidConfigError


@dataclass(frozen=True)
class RandomSearchConfig:
    """Random search settings.

    Attributes:
        samples: episodes per iteration.
        reevaluations: extra episodes a finalist gets (so ``1 + reevaluations`` tasks each).
        finalists: how many of the best candidates are kept re-evaluated.
    """

    samples: int = 16
    reevaluations: int = 3
    finalists: int = 4

    def __post_init__(self) -> None:
        if int(self.samples) != self.samples or self.samples < 2:
            raise InvalidConfigError(f"samples={self.samples!r} must be an integer >= 2")
        if int(self.reevaluations) != self.reevaluations or self.reevaluations < 0:
            raise InvalidConfigError(f"reevaluations={self.reevaluations!r} must be >= 0")
        if int(self.finalists) != self.finalists or self.finalists < 1:
            raise InvalidConfigError(f"finalists={self.finalists!r} must be >= 1")


@dataclass
class RandomSearchInfo:
    """What one :meth:`RandomSearch.tell` did."""

    mean_reward: float
    best_reward: float
    candidates: int
    """Candidates drawn so far."""
    best_mean: float
    """Mean reward of the reported candidate."""
    best_evaluations: int
    """How many rewards that mean is over."""


class RandomSearch:
    """Uniform random search in ``[-1, 1]^dim`` with re-evaluated finalists.

    Args:
        dim: dimension of the action.
        config: settings (:class:`RandomSearchConfig`).
        seed: seeds the candidates.
    """

    def __init__(
        self, dim: int, config: RandomSearchConfig | None = None, *, seed: int | None = 0
    ) -> None:
        if int(dim) != dim or dim < 1:
            raise InvalidConfigError(f"dim={dim!r} must be a positive integer")
        self.dim = int(dim)
        self.config = config or RandomSearchConfig()
        self.rng = np.random.default_rng(seed)
        self.iteration = 0
        self.actions: list[np.ndarray] = []
        self.rewards: list[list[float]] = []
        self._pending: tuple[list[int | None], np.ndarray] | None = None

    def _ranked(self) -> list[int]:
        return sorted(range(len(self.actions)), key=lambda i: -float(np.mean(self.rewards[i])))

    def ask(self) -> np.ndarray:
        """The next batch: re-evaluations of the finalists, then new uniform candidates."""
        if self._pending is not None:
            return self._pending[1].copy()
        wanted = 1 + self.config.reevaluations
        plan: list[int] = []
        for index in self._ranked()[: self.config.finalists]:
            missing = wanted - len(self.rewards[index])
            plan.extend([index] * max(0, min(missing, self.config.samples // 2 - len(plan))))
        fresh = self.config.samples - len(plan)
        new = self.rng.uniform(-1.0, 1.0, size=(fresh, self.dim))
        batch = np.concatenate(
            [np.array([self.actions[i] for i in plan]).reshape(-1, self.dim), new]
        )
        self._pending = ([*plan, *[None] * fresh], batch)
        return batch.copy()

    def tell(self, actions: np.ndarray, rewards: Sequence[float] | np.ndarray) -> RandomSearchInfo:
        """Record the batch's rewards.

        Raises:
            InvalidConfigError: the actions are not the asked batch, or a reward is not finite.
        """
        if self._pending is None:
            raise InvalidConfigError("tell() without ask(): ask for the batch first")
        plan, batch = self._pending
        x = np.asarray(actions, dtype=np.float64).reshape(batch.shape[0], -1)
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if not np.array_equal(x, batch) or r.size != len(plan):
            raise InvalidConfigError(
                f"tell got {x.shape[0]} actions and {r.size} rewards that are not the "
                f"{len(plan)} ask() returned; tell random search the asked batch"
            )
        if not np.all(np.isfinite(r)):
            raise InvalidConfigError(f"rewards must be finite, got {r.tolist()}")
        for index, action, reward in zip(plan, x, r, strict=True):
            if index is None:
                self.actions.append(action.copy())
                self.rewards.append([float(reward)])
            else:
                self.rewards[index].append(float(reward))
        self._pending = None
        self.iteration += 1
        best = self._best()
        return RandomSearchInfo(
            mean_reward=float(r.mean()),
            best_reward=float(r.max()),
            candidates=len(self.actions),
            best_mean=float(np.mean(self.rewards[best])),
            best_evaluations=len(self.rewards[best]),
        )

    def _best(self) -> int:
        most = max(len(r) for r in self.rewards)
        enough = min(most, 1 + self.config.reevaluations)
        eligible = [i for i in range(len(self.actions)) if len(self.rewards[i]) >= enough]
        return max(eligible, key=lambda i: float(np.mean(self.rewards[i])))

    def recommendation(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The best re-evaluated candidate (the box's centre before any episode)."""
        if not self.actions:
            return np.zeros(self.dim), None
        return self.actions[self._best()].copy(), None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (JSON-serialisable)."""
        return {
            "dim": self.dim,
            "config": asdict(self.config),
            "rng": self.rng.bit_generator.state,
            "iteration": self.iteration,
            "actions": [a.tolist() for a in self.actions],
            "rewards": self.rewards,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RandomSearch:
        """Rebuild from :meth:`state_dict` (bit-identical continuation)."""
        learner = cls(int(state["dim"]), RandomSearchConfig(**state["config"]))
        learner.rng.bit_generator.state = state["rng"]
        learner.iteration = int(state["iteration"])
        learner.actions = [np.asarray(a, dtype=np.float64) for a in state["actions"]]
        learner.rewards = [[float(v) for v in r] for r in state["rewards"]]
        return learner
