"""The paper's reward."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrgym.reward import log_loss_decrease


def test_matches_the_sum_of_log_decreases() -> None:
    losses = [2.3, 1.1, 0.9, 0.95, 0.4]
    direct = -sum(math.log(losses[s]) - math.log(losses[s - 1]) for s in range(1, 5)) / 4
    assert log_loss_decrease(losses, diverged=False) == pytest.approx(direct, rel=1e-12)


def test_rising_loss_is_negative_and_floored_at_the_penalty() -> None:
    assert log_loss_decrease([1.0, 2.0], diverged=False) == pytest.approx(-math.log(2))
    assert log_loss_decrease([1.0, 1e9], diverged=False, penalty=-3.0) == -3.0


def test_divergence_gets_the_penalty() -> None:
    assert log_loss_decrease([2.0, 1.0, math.inf], diverged=True, penalty=-2.0) == -2.0
    assert log_loss_decrease([2.0, np.nan], diverged=False, penalty=-1.5) == -1.5


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        log_loss_decrease([1.0], diverged=False)
    with pytest.raises(ValueError, match="penalty"):
        log_loss_decrease([1.0, 0.5], diverged=False, penalty=-math.inf)
