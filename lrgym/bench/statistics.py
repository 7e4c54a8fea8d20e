"""What summaries of benchmark results compute: per-task means, geometric-mean losses, bootstrap
intervals, the oracle and the robustness score.

Conventions every summary shares:

* a *diverged* run (``diverged == 1`` or a non-finite final training loss) counts with its
  initial training loss: a diverged run counts as no progress (:func:`counted_loss`);
* a *task* is a ``(suite, suite_version, task_index)`` triple; summaries weight tasks equally
  (several runs of one line on one task are averaged first);
* the *oracle* of a task is the best constant learning rate of the grid on that task, chosen
  by final training loss (:func:`oracle_rows`).

Rows are dicts of :data:`lrgym.bench.results.RESULT_COLUMNS`; they are put in canonical order
(:func:`lrgym.bench.results.sort_rows`) before anything is computed, and the bootstrap uses a
fixed seed, so every summary depends on the rows alone, not on their order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lrgym.bench.results import Row, sort_rows
from lrgym.errors import InvalidConfigError

ROBUSTNESS_FACTOR = 2.0
"""A run is *within 2x of the oracle* when its final training loss is at most this factor times
the oracle's on the same task (:func:`robustness_score`)."""

BOOTSTRAP_RESAMPLES = 2000
"""Resamples of the bootstrap confidence intervals (:func:`bootstrap_ci`)."""

TaskKey = tuple[str, int, int]


def task_key(row: Mapping[str, Any]) -> TaskKey:
    """The task a row ran on: ``(suite, suite_version, task_index)``."""
    return (row["suite"], row["suite_version"], row["task_index"])


def is_diverged(row: Mapping[str, Any]) -> bool:
    """Whether a run diverged: ``diverged == 1`` or a non-finite final training loss."""
    return bool(row["diverged"]) or not math.isfinite(row["final_train_loss"])


def counted_loss(row: Mapping[str, Any]) -> float:
    """The final training loss summaries count: a diverged run counts as no progress, with its
    initial training loss."""
    return float(row["initial_train_loss"] if is_diverged(row) else row["final_train_loss"])


def per_task_values(
    rows: Iterable[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float]
) -> dict[TaskKey, float]:
    """``value`` of every row, averaged over the rows of each task (tasks in sorted order)."""
    groups: dict[TaskKey, list[float]] = {}
    for row in sort_rows(rows):
        groups.setdefault(task_key(row), []).append(float(value(row)))
    return {key: float(np.mean(groups[key])) for key in sorted(groups)}


def log_loss(row: Mapping[str, Any]) -> float:
    """The natural log of a row's :func:`counted_loss` (``-inf`` for a zero loss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log(counted_loss(row)))


def geometric_mean_loss(rows: Iterable[Mapping[str, Any]]) -> float:
    """The geometric mean of the final training losses of ``rows`` (:func:`counted_loss`: a
    diverged run counts as no progress, with its initial training loss).

    Tasks weigh equally: the logs of the runs of one task are averaged first, then the
    per-task means; with one run per task this is the plain geometric mean.

    Raises:
        InvalidConfigError: ``rows`` is empty.
    """
    logs = list(per_task_values(rows, log_loss).values())
    if not logs:
        raise InvalidConfigError("geometric_mean_loss needs at least one row, got none")
    with np.errstate(invalid="ignore"):
        return float(np.exp(np.mean(logs)))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """A percentile bootstrap confidence interval of the mean of ``values`` (one per task).

    Tasks are resampled with replacement ``resamples`` times with
    ``np.random.default_rng(seed)``, so the interval is the same at every call.

    Returns:
        ``(low, high)``, the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the
        resampled means; ``(nan, nan)`` for no values.
    """
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if resamples < 1:
        raise InvalidConfigError(f"resamples={resamples!r} must be >= 1")
    if not 0.0 < level < 1.0:
        raise InvalidConfigError(f"level={level!r} must lie in (0, 1)")
    if data.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    tail = 100.0 * (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        means = data[picks].mean(axis=1)
        low, high = np.percentile(means, [tail, 100.0 - tail])
    return (float(low), float(high))


def _reward_rank(reward: float) -> float:
    """Sorts the highest reward first and a NaN reward last."""
    return math.inf if math.isnan(reward) else -reward


def oracle_rows(rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """The oracle of every task that has constant-grid rows: the best constant on that task.

    The oracle row copies the ``kind == "constant"`` row with the lowest final training loss
    (ties: the smaller eta0). On a task where every constant diverged it copies the one with the
    highest reward (ties: the smaller eta0). It is renamed ``controller = kind = "oracle"``,
    ``eta0_source = "grid"``, and its ``wall_time`` is the sum of the wall times of all the
    task's constant rows (the cost of finding it).

    Returns:
        one row per task, ordered by ``(suite, suite_version, task_index)``.
    """
    by_task: dict[TaskKey, list[Row]] = {}
    for row in sort_rows(r for r in rows if r["kind"] == "constant"):
        by_task.setdefault(task_key(row), []).append(row)
    oracles = []
    for key in sorted(by_task):
        constants = by_task[key]
        finished = [r for r in constants if not is_diverged(r)]
        if finished:
            best = min(finished, key=lambda r: (r["final_train_loss"], r["eta0"]))
        else:
            best = min(constants, key=lambda r: (_reward_rank(r["reward"]), r["eta0"]))
        oracle = dict(best)
        oracle.update(
            controller="oracle",
            kind="oracle",
            eta0_source="grid",
            wall_time=math.fsum(r["wall_time"] for r in constants),
        )
        oracles.append(oracle)
    return oracles


def with_oracle(rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """``rows`` plus the :func:`oracle_rows` of every task that has constant rows but no oracle
    row yet, in canonical order (:func:`sort_rows`)."""
    rows = sort_rows(rows)
    have = {task_key(r) for r in rows if r["kind"] == "oracle"}
    derived = [r for r in oracle_rows(rows) if task_key(r) not in have]
    return sort_rows(rows + derived)


def robustness_score(
    rows: Iterable[Mapping[str, Any]],
    oracle: Iterable[Mapping[str, Any]],
    *,
    factor: float = ROBUSTNESS_FACTOR,
) -> float | None:
    """The share of ``rows`` within ``factor`` x the oracle's final training loss on their task.

    A run counts when it did not diverge and its final training loss is at most ``factor``
    times the oracle's on the same task (a diverged run counts as ``inf``, and never counts;
    on a task whose oracle diverged every finished run counts). Runs on tasks without an
    oracle row are left out.

    Returns:
        the share in [0, 1], or ``None`` when no run has an oracle to compare with.
    """
    best: dict[TaskKey, float] = {}
    for row in oracle:
        loss = math.inf if is_diverged(row) else float(row["final_train_loss"])
        key = task_key(row)
        best[key] = min(loss, best.get(key, math.inf))
    compared = [r for r in rows if task_key(r) in best]
    if not compared:
        return None
    within = sum(
        1
        for r in compared
        if not is_diverged(r) and r["final_train_loss"] <= factor * best[task_key(r)]
    )
    return within / len(compared)
