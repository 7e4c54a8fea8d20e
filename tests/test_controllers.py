"""Learning-rate controllers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrgym.controllers import (
    ConstantController,
    ControlState,
    LogLinearController,
    ScheduleController,
)
from lrgym.errors import InvalidConfigError

PHI = np.array([-10.0, -2.0, 0.5, 0.25, 1.0])


def state(step: int = 5, features: np.ndarray | None = PHI, previous: float = 0.02) -> ControlState:
    return ControlState(step, features, previous, eta0=0.01, total_steps=100)


def test_log_linear_is_exp_of_theta_dot_features() -> None:
    theta = np.array([0.1, -0.3, 0.2, 0.4, -2.0])
    controller = LogLinearController(theta)
    expected = math.exp(-1.0 + 0.6 + 0.1 + 0.1 - 2.0)
    assert controller.learning_rate(state()) == pytest.approx(expected, rel=1e-12)


def test_log_linear_uses_eta0_before_features_exist() -> None:
    controller = LogLinearController(np.ones(5))
    assert controller.learning_rate(state(step=1, features=None)) == 0.01


def test_relative_form_multiplies_the_previous_rate() -> None:
    theta = np.array([0.0, 0.0, 0.0, 0.0, math.log(0.5)])
    controller = LogLinearController(theta, relative=True)
    assert controller.learning_rate(state(previous=0.02)) == pytest.approx(0.01)


def test_log_linear_clips_in_log_space_without_overflow() -> None:
    controller = LogLinearController([0, 0, 0, 0, 1e6], lr_bounds=(1e-6, 2.0))
    assert controller.learning_rate(state()) == 2.0
    controller = LogLinearController([0, 0, 0, 0, -1e6], lr_bounds=(1e-6, 2.0))
    assert controller.learning_rate(state()) == pytest.approx(1e-6)


def test_bounded_form_ramps_by_at_most_its_factor_per_step_to_the_rule_s_rate() -> None:
    # the rule asks for 1.0 from 1e-3: 1.2**k steps up, brute force in float64, until it holds
    controller = LogLinearController([0, 0, 0, 0, 0.0], max_change=1.2)
    rates, previous = [], 1e-3
    for step in range(2, 52):
        previous = controller.learning_rate(state(step=step, previous=previous))
        rates.append(previous)
    expected = [min(1e-3 * 1.2**k, 1.0) for k in range(1, 51)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert rates[-1] == 1.0 and rates[36] < 1.0 < 1e-3 * 1.2**38  # arrives at step 38, stays
    # and down: a NaN rule falls to lr_bounds' low end no faster than the bound allows
    low = LogLinearController([0, 0, 0, 0, 0.0], max_change=2.0)
    assert low.learning_rate(state(features=PHI * math.nan, previous=0.02)) == 0.01
    # the first step is eta_0 whatever the bound (no previous rate to bound it by)
    assert controller.learning_rate(state(step=1, features=None)) == 0.01


def test_bounded_form_leaves_a_rate_within_its_factor_unchanged() -> None:
    theta = np.array([0.1, -0.3, 0.2, 0.4, -2.0])
    free = LogLinearController(theta).learning_rate(state(previous=0.1))
    bounded = LogLinearController(theta, max_change=1.5).learning_rate(state(previous=0.1))
    assert 0.1 / 1.5 < free < 0.1 * 1.5 and bounded == free


@pytest.mark.parametrize("max_change", [1.0, 0.5, math.inf, math.nan, True, "2"])
def test_bounded_form_rejects_a_factor_that_is_not_above_1(max_change: object) -> None:
    with pytest.raises(InvalidConfigError, match=rf"max_change={max_change!r}.*None"):
        LogLinearController(np.zeros(5), max_change=max_change)  # type: ignore[arg-type]


def test_probe_start_returns_the_rate_its_rule_maps_to_itself_by_bisection() -> None:
    theta = np.array([-0.9164, 0.976, 0.3, -0.2, -5.6143])
    probe_rate, probe = 1e-3, np.array([-12.0, -1.5, 0.0, 0.0, 1.0])  # phi_hat at the probe
    v = probe[0] - 2 * math.log(probe_rate)  # phi1 = 2 ln eta + V

    def excess(log_eta: float) -> float:  # the rule's log-rate minus the rate it was fed
        return float(theta @ [2 * log_eta + v, *probe[1:]]) - log_eta

    low, high = -30.0, 10.0  # excess falls with log_eta: bisection in float64
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    controller = LogLinearController(theta, start="probe")
    assert controller.probes_first_step
    first = ControlState(1, probe, probe_rate, eta0=0.5, total_steps=100)
    assert controller.learning_rate(first) == pytest.approx(math.exp(low), rel=1e-12)
    # later steps follow the rule itself, as without the probe start
    later = ControlState(2, PHI, 0.02, eta0=0.5, total_steps=100)
    assert controller.learning_rate(later) == LogLinearController(theta).learning_rate(later)


def test_probe_start_falls_back_to_eta0_where_the_rule_has_no_fixed_point() -> None:
    probe = np.array([-12.0, -1.5, 0.0, 0.0, 1.0])
    first = ControlState(1, probe, 1e-3, eta0=0.5, total_steps=100)
    assert LogLinearController([0.5, 0, 0, 0, -3], start="probe").learning_rate(first) == 0.5
    first = ControlState(1, probe * math.nan, 1e-3, eta0=0.5, total_steps=100)
    assert LogLinearController(np.zeros(5), start="probe").learning_rate(first) == 0.5
    assert not LogLinearController(np.zeros(5)).probes_first_step


def test_probe_start_is_refused_for_the_relative_form_and_unknown_starts() -> None:
    with pytest.raises(InvalidConfigError, match="absolute form"):
        LogLinearController(np.zeros(5), relative=True, start="probe")
    with pytest.raises(InvalidConfigError, match=r"start='eta_0'.*'eta0', 'probe'"):
        LogLinearController(np.zeros(5), start="eta_0")


@pytest.mark.parametrize("theta", [np.ones(4), [0, 0, 0, 0, math.nan]])
def test_log_linear_rejects_bad_theta(theta: object) -> None:
    with pytest.raises(InvalidConfigError, match="5 finite numbers"):
        LogLinearController(theta)  # type: ignore[arg-type]


def test_constant_and_schedules() -> None:
    assert ConstantController().learning_rate(state()) == 0.01
    assert ConstantController(0.3).learning_rate(state()) == 0.3
    exp = ScheduleController("exponential", decay=0.9)
    assert exp.learning_rate(state(step=3)) == pytest.approx(0.01 * 0.81)
    step = ScheduleController("step", decay=0.1, every=10)
    assert [step.learning_rate(state(step=s)) for s in (1, 10, 11, 21)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.0001]
    )
    cosine = ScheduleController("cosine", decay=0.1)
    assert cosine.learning_rate(state(step=1)) == pytest.approx(0.01)
    assert cosine.learning_rate(state(step=51)) == pytest.approx(0.01 * 0.55)
    with pytest.raises(InvalidConfigError, match="'exponential', 'step', 'cosine'"):
        ScheduleController("linear")
