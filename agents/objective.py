"""What an ask/tell learner is told: the score of each candidate over the tasks it ran on.

The paper's learner scores each candidate by the reward of one episode on its own task. Learning
one controller for many families asks more of the score (:class:`Objective`, the ``objective``
of :func:`lrgym_agents.loop.train` and ``lrgym train ... --tasks/--comparable/--risk/--perturb``):

* ``tasks = K``: every candidate of an iteration runs on the same ``K`` fresh tasks (common
  random numbers), so that their scores differ by the candidate, not by the draw of tasks;
* ``comparable = "rank"``: on each task, the candidates' rewards are replaced by their centred
  ranks in ``[-1/2, 1/2]`` (:func:`centred_ranks`). Every task then weighs the same, whatever
  its family's reward scale (rewards are log-loss decreases per step, which differ by family and
  run length), and a diverged run weighs no more than the worst finite one;
* ``risk = "cvar"``: a candidate's score is the mean of its worst ``ceil(alpha K)`` task scores
  (the conditional value at risk), not the mean of all ``K``: the learner then improves the
  tasks it does worst on;
* ``perturb = p``: each episode runs its candidate with every controller parameter multiplied by
  its own factor drawn uniformly from ``[1 - p, 1 + p]`` (in the env's raw parameters, not the
  normalised action), and the score is told as the unperturbed candidate's. The learner then
  maximises the expected score under perturbations of theta: it prefers a broad optimum to a
  sharp one (robustness to theta itself).

:func:`candidate_scores` computes the scores from the ``(samples, K)`` rewards; the defaults
(``K = 1``, ``"none"``, ``"mean"``, ``0``) tell the learner the rewards unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lrgym.errors import InvalidConfigError

COMPARABLE = ("none", "rank")
"""How rewards of different tasks are made comparable (:attr:`Objective.comparable`)."""

RISKS = ("mean", "cvar")
"""How a candidate's task scores are combined (:attr:`Objective.risk`)."""


@dataclass(frozen=True)
class Objective:
    """How an iteration's episodes become the scores an ask/tell learner is told.

    Attributes:
        tasks: tasks every candidate of an iteration runs on (shared by all candidates). With
            ``1`` the run's ``same_task`` setting decides whether the candidates share a task
            (the paper gives each episode its own).
        comparable: ``"none"`` (rewards as they are) or ``"rank"`` (centred ranks among the
            candidates on each task; needs shared tasks).
        risk: ``"mean"`` over the tasks or ``"cvar"``, the mean of the worst ``alpha`` share.
        alpha: the CVaR level in ``(0, 1]``: ``ceil(alpha * tasks)`` worst tasks count.
        perturb: the relative size ``p`` of the multiplicative perturbation of theta in each
            episode, in ``[0, 1)`` (0: none).
    """

    tasks: int = 1
    comparable: str = "none"
    risk: str = "mean"
    alpha: float = 0.25
    perturb: float = 0.0

    def __post_init__(self) -> None:
        if int(self.tasks) != self.tasks or self.tasks < 1:
            raise InvalidConfigError(f"tasks={self.tasks!r} must be an integer >= 1")
        if self.comparable not in COMPARABLE:
            raise InvalidConfigError(
                f"comparable={self.comparable!r}; choose one of {list(COMPARABLE)}"
            )
        if self.risk not in RISKS:
            raise InvalidConfigError(f"risk={self.risk!r}; choose one of {list(RISKS)}")
        if not (math.isfinite(self.alpha) and 0 < self.alpha <= 1):
            raise InvalidConfigError(f"alpha={self.alpha!r} must lie in (0, 1], e.g. 0.25")
        if self.risk == "cvar" and self.tasks < 2:
            raise InvalidConfigError(
                f"risk='cvar' takes the worst tasks of each candidate, but tasks={self.tasks}; "
                "give every candidate several tasks (e.g. tasks=4)"
            )
        if not (math.isfinite(self.perturb) and 0 <= self.perturb < 1):
            raise InvalidConfigError(
                f"perturb={self.perturb!r} must lie in [0, 1) (a relative change, e.g. 0.2)"
            )

    @property
    def is_default(self) -> bool:
        """Whether the learner is told the episodes' rewards unchanged."""
        return self == Objective()

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON object."""
        return asdict(self)


def objective_from(value: Objective | Mapping[str, Any] | None) -> Objective:
    """An :class:`Objective` from itself, a dict of its settings, or ``None`` (the default).

    Raises:
        InvalidConfigError: an unknown setting or a value out of range.
    """
    if isinstance(value, Objective):
        return value
    settings = dict(value or {})
    allowed = set(Objective.__dataclass_fields__)
    unknown = set(settings) - allowed
    if unknown:
        raise InvalidConfigError(
            f"the objective has no setting(s) {sorted(unknown)}; its settings are {sorted(allowed)}"
        )
    return Objective(**settings)


def centred_ranks(values: np.ndarray) -> np.ndarray:
    """The ranks of ``values`` scaled to ``[-1/2, 1/2]`` (the lowest -1/2, the highest 1/2; ties
    share their mean rank; a single value scores 0)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 1:
        return np.zeros(1)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(x.size, dtype=np.float64)
    for value in np.unique(x):  # average the ranks of ties
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks / (x.size - 1) - 0.5


def candidate_scores(rewards: np.ndarray, objective: Objective) -> np.ndarray:
    """Each candidate's score from ``rewards[i, k]``, candidate ``i`` on task ``k``.

    With ``comparable="rank"`` each column (a task shared by every candidate) is replaced by
    its centred ranks; then each row is combined by the mean or the CVaR of its ``K`` entries.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise InvalidConfigError(f"rewards must be (candidates, tasks), got shape {r.shape}")
    if objective.comparable == "rank":
        r = np.column_stack([centred_ranks(r[:, k]) for k in range(r.shape[1])])
    if objective.risk == "cvar":
        worst = math.ceil(objective.alpha * r.shape[1] - 1e-9)
        return np.sort(r, axis=1)[:, :worst].mean(axis=1)
    return r.mean(axis=1)


def perturbation_factors(
    seed: int, iteration: int, episodes: int, dim: int, size: float
) -> np.ndarray:
    """The ``(episodes, dim)`` factors in ``[1 - size, 1 + size]`` that perturb the raw
    parameters of iteration ``iteration``'s episodes (the same wherever they are computed)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, iteration, 1]))
    return 1.0 + size * rng.uniform(-1.0, 1.0, size=(episodes, dim))


def perturbed_actions(
    actions: np.ndarray,
    factors: np.ndarray,
    to_theta: Callable[[np.ndarray], np.ndarray],
    to_action: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The normalised actions whose raw parameters are those of ``actions`` times ``factors``
    (row by row; ``to_theta`` and ``to_action`` are the env's conversions)."""
    return np.array(
        [
            np.asarray(to_action(np.asarray(to_theta(a)) * f), dtype=np.float64)
            for a, f in zip(actions, factors, strict=True)
        ]
    )
