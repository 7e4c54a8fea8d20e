"""Episodic Relative Entropy Policy Search (REPS), the paper's learner.

REPS keeps a Gaussian search distribution ``N(mean, cov)`` over the action (the controller
parameters). Each iteration samples a batch of actions, runs one episode for each, and moves the
distribution towards the high-reward samples as far as a KL bound ``epsilon`` allows:

1. the dual ``g(eta) = eta eps + R_max + eta log((1/N) sum_j exp((R_j - R_max) / eta))`` is
   minimised over ``eta > 0`` with its analytic gradient (:func:`solve_dual`);
2. each sample gets the weight ``d_j = exp((R_j - R_max) / eta)`` (:func:`reps_weights`); the
   weighted sample distribution is ``epsilon`` away from the uniform one in KL;
3. the new mean and covariance are the weighted maximum-likelihood fit
   (:func:`weighted_gaussian`), with a floor on the variances.

Plain REPS shrinks the covariance too early when rewards are noisy. Two options counter it:
``reuse`` fits the update to the last few batches, not only the newest, and
``covariance_mixing`` blends the old covariance into the new one.

The update math (:func:`solve_dual`, :func:`reps_weights`, :func:`weighted_gaussian`,
:meth:`REPS.tell`) is separate from the loop that collects episodes (:mod:`lrgym_agents.loop`),
so any collector, or a user's own loop, can drive it::

    agent = REPS(dim=5, seed=0)
    for _ in range(iterations):
        actions = agent.ask()                      # (samples, 5)
        rewards = [run_episode(a) for a in actions]
        agent.tell(actions, rewards)
    agent.mean                                     # the learned action
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from lrgym.errors import InvalidConfigError

_ETA_MIN = 1e-12


@dataclass(frozen=True)
class REPSConfig:
    """REPS settings.

    Attributes:
        epsilon: KL bound between the reweighted and the sampled batch (the paper's 1.0).
        samples: actions sampled per iteration (``N``).
        reuse: batches the update is fitted to: the newest and the ``reuse - 1`` before it.
        covariance_mixing: weight ``a`` of the old covariance,
            ``cov' = (1 - a) cov_fit + a cov_old``, in ``[0, 1)``.
        min_std: floor on the standard deviation along every eigen-direction of ``cov``.
        init_std: standard deviation of the initial isotropic distribution.
    """

    epsilon: float = 1.0
    samples: int = 16
    reuse: int = 2
    covariance_mixing: float = 0.5
    min_std: float = 0.01
    init_std: float = 0.3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise InvalidConfigError(f"epsilon={self.epsilon!r} must be a positive number")
        if int(self.samples) != self.samples or self.samples < 2:
            raise InvalidConfigError(f"samples={self.samples!r} must be an integer >= 2")
        if int(self.reuse) != self.reuse or self.reuse < 1:
            raise InvalidConfigError(f"reuse={self.reuse!r} must be an integer >= 1")
        if not 0.0 <= self.covariance_mixing < 1.0:
            raise InvalidConfigError(
                f"covariance_mixing={self.covariance_mixing!r} must lie in [0, 1)"
            )
        if not (self.min_std >= 0 and math.isfinite(self.min_std)):
            raise InvalidConfigError(f"min_std={self.min_std!r} must be >= 0")
        if not (self.init_std > 0 and math.isfinite(self.init_std)):
            raise InvalidConfigError(f"init_std={self.init_std!r} must be > 0")


def dual(eta: float, rewards: np.ndarray, epsilon: float) -> tuple[float, float]:
    """The REPS dual ``g(eta)`` and its derivative ``g'(eta)``.

    ``g(eta) = eta eps + R_max + eta log((1/N) sum_j exp(a_j / eta))`` with
    ``a_j = R_j - R_max``, and ``g'(eta) = eps + log((1/N) sum_j w_j) - sum_j w_j a_j /
    (eta sum_j w_j)`` with ``w_j = exp(a_j / eta)``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    a = r - r.max()
    w = np.exp(a / eta)
    mean_w = w.mean()
    value = eta * epsilon + r.max() + eta * math.log(mean_w)
    gradient = epsilon + math.log(mean_w) - float(w @ a) / (eta * w.sum())
    return float(value), float(gradient)


def solve_dual(rewards: Sequence[float] | np.ndarray, epsilon: float) -> float:
    """``eta* = argmin_{eta > 0} g(eta)`` (L-BFGS-B on ``log eta`` with the analytic gradient,
    on rewards shifted and scaled to a unit spread).

    Returns ``inf`` when all rewards are equal (every ``eta`` satisfies the bound: the update
    keeps uniform weights).

    Raises:
        InvalidConfigError: a reward is not finite, or there are fewer than 2.
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if r.size < 2:
        raise InvalidConfigError(f"REPS needs at least 2 rewards per update, got {r.size}")
    if not np.all(np.isfinite(r)):
        raise InvalidConfigError(f"REPS got non-finite rewards: {r[~np.isfinite(r)].tolist()}")
    spread = float(r.max() - r.min())
    if spread <= 1e-12 * max(1.0, float(np.abs(r).max())):
        return math.inf

    # solved on z = (r - max r) / spread, for which eta_z = eta / spread: the solver's
    # tolerances then mean the same for every reward scale and offset
    z = (r - r.max()) / spread

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        eta = max(math.exp(float(x[0])), _ETA_MIN)
        value, gradient = dual(eta, z, epsilon)
        return value, np.array([gradient * eta])  # chain rule for log eta

    result = minimize(
        objective,
        np.zeros(1),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-12},
    )
    return max(math.exp(float(result.x[0])), _ETA_MIN) * spread


def reps_weights(rewards: Sequence[float] | np.ndarray, eta: float) -> np.ndarray:
    """Normalised weights ``d_j / sum d`` with ``d_j = exp((R_j - R_max) / eta)``."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if math.isinf(eta):
        return np.full(r.size, 1.0 / r.size)
    d = np.exp((r - r.max()) / eta)
    return d / d.sum()


def kl_to_uniform(weights: np.ndarray) -> float:
    """KL divergence of the weighted sample distribution from the uniform one."""
    w = np.asarray(weights, dtype=np.float64)
    positive = w > 0
    return float(np.sum(w[positive] * np.log(w.size * w[positive])))


def weighted_gaussian(
    samples: np.ndarray, weights: np.ndarray, min_std: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted maximum-likelihood mean and covariance of ``samples`` ``(N, d)``.

    The covariance uses the unbiased weighted estimator
    ``sum_j w_j (x_j - mu)(x_j - mu)^T / (1 - sum_j w_j^2)`` (``w`` normalised), then every
    eigenvalue is raised to at least ``min_std ** 2``.
    """
    x = np.asarray(samples, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mean = w @ x
    centred = x - mean
    denominator = 1.0 - float(w @ w)
    cov = (centred * w[:, None]).T @ centred / max(denominator, 1e-12)
    return mean, floor_covariance(cov, min_std)


def floor_covariance(cov: np.ndarray, min_std: float) -> np.ndarray:
    """``cov`` symmetrised, with every eigenvalue at least ``min_std ** 2``."""
    sym = (cov + cov.T) / 2
    values, vectors = np.linalg.eigh(sym)
    values = np.maximum(values, min_std**2)
    return (vectors * values) @ vectors.T


@dataclass
class UpdateInfo:
    """What one :meth:`REPS.tell` did."""

    eta: float
    """The dual's minimiser (``inf``: all rewards equal)."""
    kl: float
    """KL of the weighted batch from the uniform one (``<= epsilon``)."""
    samples_used: int
    """Samples the update was fitted to (the newest batch and the reused ones)."""
    mean_reward: float
    """Mean reward of the newest batch."""
    best_reward: float
    """Best reward of the newest batch."""


class REPS:
    """Episodic REPS over a ``dim``-dimensional action.

    Args:
        dim: dimension of the action.
        config: settings (:class:`REPSConfig`).
        seed: seeds every random draw (the samples of :meth:`ask`).
        init_mean: mean of the initial distribution (zeros if ``None``).

    Samples are not clipped to an action box (the update needs the drawn values); an env
    clips what it receives.
    """

    def __init__(
        self,
        dim: int,
        config: REPSConfig | None = None,
        *,
        seed: int | None = None,
        init_mean: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        if int(dim) != dim or dim < 1:
            raise InvalidConfigError(f"dim={dim!r} must be a positive integer")
        self.dim = int(dim)
        self.config = config or REPSConfig()
        mean = np.zeros(self.dim) if init_mean is None else np.asarray(init_mean, np.float64)
        if mean.shape != (self.dim,) or not np.all(np.isfinite(mean)):
            raise InvalidConfigError(f"init_mean={init_mean!r} must be {self.dim} finite numbers")
        self.mean = mean.copy()
        self.cov = np.eye(self.dim) * self.config.init_std**2
        self.rng = np.random.default_rng(seed)
        self.iteration = 0
        self._history: list[tuple[np.ndarray, np.ndarray]] = []

    def ask(self) -> np.ndarray:
        """Draw ``config.samples`` actions from the search distribution, ``(N, dim)``."""
        return self.rng.multivariate_normal(self.mean, self.cov, size=self.config.samples)

    def tell(self, actions: np.ndarray, rewards: Sequence[float] | np.ndarray) -> UpdateInfo:
        """Update the distribution with a batch's actions and rewards (one REPS iteration).

        Raises:
            InvalidConfigError: shapes disagree or a reward is not finite.
        """
        x = np.asarray(actions, dtype=np.float64)
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.dim or x.shape[0] != r.size:
            raise InvalidConfigError(
                f"tell got actions of shape {x.shape} and {r.size} rewards; expected "
                f"(N, {self.dim}) and N"
            )
        history = [*self._history, (x, r)][-self.config.reuse :]
        all_x = np.concatenate([h[0] for h in history])
        all_r = np.concatenate([h[1] for h in history])
        eta = solve_dual(all_r, self.config.epsilon)  # validates the rewards
        self._history = history  # only a batch that was accepted is reused
        weights = reps_weights(all_r, eta)
        mean, cov = weighted_gaussian(all_x, weights)
        a = self.config.covariance_mixing
        self.mean = mean
        self.cov = floor_covariance((1.0 - a) * cov + a * self.cov, self.config.min_std)
        self.iteration += 1
        return UpdateInfo(
            eta=eta,
            kl=kl_to_uniform(weights),
            samples_used=int(all_r.size),
            mean_reward=float(r.mean()),
            best_reward=float(r.max()),
        )

    def recommendation(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The search distribution's mean (the learned action) and covariance."""
        return self.mean.copy(), self.cov.copy()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (JSON-serialisable)."""
        return {
            "dim": self.dim,
            "config": asdict(self.config),
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "iteration": self.iteration,
            "rng": self.rng.bit_generator.state,
            "history": [[h[0].tolist(), h[1].tolist()] for h in self._history],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> REPS:
        """Rebuild an agent from :meth:`state_dict` (bit-identical continuation)."""
        agent = cls(int(state["dim"]), REPSConfig(**state["config"]))
        agent.mean = np.asarray(state["mean"], dtype=np.float64)
        agent.cov = np.asarray(state["cov"], dtype=np.float64)
        agent.iteration = int(state["iteration"])
        agent.rng.bit_generator.state = state["rng"]
        agent._history = [
            (np.asarray(x, dtype=np.float64).reshape(-1, agent.dim), np.asarray(r, np.float64))
            for x, r in state["history"]
        ]
        return agent
