"""CMA-ES as an ask/tell learner, through the ``cma`` package (Hansen's reference code).

The search runs in the env's normalised action box ``[-1, 1]^dim`` (``cma``'s ``bounds``), from
the box's centre with step size ``sigma0``, ``samples`` candidates per iteration (the population
size). ``cma`` minimises, so it is told the negated rewards.

Its internal state is not JSON. :meth:`CMAES.state_dict` therefore stores the seed and every
batch told so far; :meth:`CMAES.from_state_dict` rebuilds the strategy by replaying them (each
replayed ``ask`` is checked to return the stored batch), which restores it bit for bit. All its
random draws come from a private ``numpy`` generator, never from ``numpy``'s global one.

Needs the optional ``cma`` package (``pip install "lrgym[cma]"``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lrgym.errors import InvalidConfigError, LrgymError


@dataclass(frozen=True)
class CMAESConfig:
    """CMA-ES settings.

    Attributes:
        samples: population size (candidates per iteration). ``cma``'s own default for 5
            dimensions would be 8; lrgym uses 16 like REPS, which averages the task noise of
            one-task-per-episode batches better.
        sigma0: initial step size in the normalised action box (``[-1, 1]`` per entry).
    """

    samples: int = 16
    sigma0: float = 0.3

    def __post_init__(self) -> None:
        if int(self.samples) != self.samples or self.samples < 2:
            raise InvalidConfigError(f"samples={self.samples!r} must be an integer >= 2")
        if not (math.isfinite(self.sigma0) and 0 < self.sigma0 <= 2):
            raise InvalidConfigError(
                f"sigma0={self.sigma0!r} must lie in (0, 2] (the action box is [-1, 1])"
            )


@dataclass
class CMAESInfo:
    """What one :meth:`CMAES.tell` did."""

    mean_reward: float
    best_reward: float
    sigma: float
    """The step size after the update."""


def _cma() -> Any:
    try:
        import cma
    except ImportError:
        raise LrgymError('CMA-ES needs the cma package: pip install "lrgym[cma]"') from None
    return cma


class CMAES:
    """CMA-ES over a ``dim``-dimensional action in ``[-1, 1]^dim``.

    Args:
        dim: dimension of the action.
        config: settings (:class:`CMAESConfig`).
        seed: seeds every random draw.
    """

    def __init__(self, dim: int, config: CMAESConfig | None = None, *, seed: int | None = 0):
        if int(dim) != dim or dim < 1:
            raise InvalidConfigError(f"dim={dim!r} must be a positive integer")
        self.dim = int(dim)
        self.config = config or CMAESConfig()
        self.seed = 0 if seed is None else int(seed)
        self.iteration = 0
        self._history: list[tuple[list[list[float]], list[float]]] = []
        self._pending: list[np.ndarray] | None = None
        rng = np.random.default_rng(self.seed)
        cma = _cma()
        options = {
            "popsize": self.config.samples,
            "bounds": [-1.0, 1.0],
            "randn": lambda *shape: rng.standard_normal(shape),
            "verbose": -9,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cma warns about options it evaluates lazily
            self._es = cma.CMAEvolutionStrategy(np.zeros(self.dim), self.config.sigma0, options)

    def ask(self) -> np.ndarray:
        """The next population, ``(samples, dim)`` (asking again before :meth:`tell` returns
        the same population)."""
        if self._pending is None:
            self._pending = [np.asarray(x, dtype=np.float64) for x in self._es.ask()]
        return np.array(self._pending)

    def tell(self, actions: np.ndarray, rewards: Sequence[float] | np.ndarray) -> CMAESInfo:
        """Update with the rewards of the population :meth:`ask` returned.

        Raises:
            InvalidConfigError: the actions are not the asked population, or a reward is not
                finite.
        """
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if self._pending is None:
            raise InvalidConfigError("tell() without ask(): ask for the population first")
        x = np.asarray(actions, dtype=np.float64).reshape(len(self._pending), -1)
        if not np.array_equal(x, np.array(self._pending)) or r.size != len(self._pending):
            raise InvalidConfigError(
                f"tell got {x.shape[0]} actions and {r.size} rewards that are not the "
                f"{len(self._pending)} candidates ask() returned; tell CMA-ES the asked batch"
            )
        if not np.all(np.isfinite(r)):
            raise InvalidConfigError(f"rewards must be finite, got {r.tolist()}")
        self._es.tell(self._pending, (-r).tolist())
        self._history.append((x.tolist(), r.tolist()))
        self._pending = None
        self.iteration += 1
        return CMAESInfo(float(r.mean()), float(r.max()), float(self._es.sigma))

    def recommendation(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The distribution's mean in the box (``cma``'s ``xfavorite``) and
        ``sigma^2 C``."""
        mean = np.asarray(self._es.result.xfavorite, dtype=np.float64)
        cov = float(self._es.sigma) ** 2 * np.asarray(self._es.sm.covariance_matrix)
        return mean, cov

    def state_dict(self) -> dict[str, Any]:
        """The seed and every batch told (JSON-serialisable)."""
        return {
            "dim": self.dim,
            "config": asdict(self.config),
            "seed": self.seed,
            "iteration": self.iteration,
            "history": [[x, r] for x, r in self._history],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> CMAES:
        """Rebuild by replaying the stored batches (bit-identical continuation).

        Raises:
            LrgymError: a replayed population differs from the stored one (another ``cma``
                version draws differently); the state cannot be continued exactly.
        """
        learner = cls(int(state["dim"]), CMAESConfig(**state["config"]), seed=int(state["seed"]))
        for k, (x, r) in enumerate(state["history"]):
            asked = learner.ask()
            if not np.array_equal(asked, np.asarray(x, dtype=np.float64)):
                raise LrgymError(
                    f"CMA-ES state: replaying iteration {k} drew another population than the "
                    "saved one (was it saved with another cma version?); it cannot be "
                    "continued exactly"
                )
            learner.tell(asked, r)
        if learner.iteration != int(state["iteration"]):
            raise LrgymError("CMA-ES state: iteration count does not match its history")
        return learner
