"""The paper's reward: the average decrease of the log training loss over a run."""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_DIVERGENCE_PENALTY = -1.0
"""Reward of a diverged run, and the floor of every other run's reward."""


def log_loss_decrease(
    eval_losses: Sequence[float],
    *,
    diverged: bool,
    penalty: float = DEFAULT_DIVERGENCE_PENALTY,
) -> float:
    """``r = -(1/(S-1)) sum_{s=2..S} (log E_s - log E_{s-1}) = (log E_1 - log E_S) / (S - 1)``.

    ``E_1 .. E_S`` are the training losses at the S evaluation points, measured on a fixed
    evaluation sample (the first point is the untrained network, the last the end of the run).
    A diverged run (a non-finite loss) gets ``penalty``; every other run gets
    ``max(r, penalty)``, so that no finite run scores below a diverged one and the reward is
    always finite.

    Raises:
        ValueError: fewer than 2 evaluation points, or a non-finite ``penalty``.
    """
    if len(eval_losses) < 2:
        raise ValueError(f"the reward needs at least 2 evaluation points, got {len(eval_losses)}")
    if not math.isfinite(penalty):
        raise ValueError(f"penalty={penalty!r} must be finite")
    first, last = float(eval_losses[0]), float(eval_losses[-1])
    if diverged or not all(math.isfinite(v) and v > 0 for v in (first, last)):
        return float(penalty)
    reward = (math.log(first) - math.log(last)) / (len(eval_losses) - 1)
    return max(reward, float(penalty))
