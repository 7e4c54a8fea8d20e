"""The plain-PyTorch training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import toy_task

from lrgym.controllers import ConstantController, Controller, ControlState, LogLinearController
from lrgym.data.datasets import load_dataset
from lrgym.errors import InvalidConfigError
from lrgym.training import TrainingRun, evaluation_steps, train


def test_result_curves_have_one_entry_per_step() -> None:
    result = train(toy_task(), ConstantController(), load_dataset("toy"), eval_points=4)
    assert result.steps_completed == 30 and not result.diverged
    assert result.curves.learning_rates.shape == (30,) and np.all(
        result.curves.learning_rates == 0.05
    )
    assert result.curves.features.shape == (30, 5) and np.all(result.curves.features[:, 4] == 1.0)
    assert result.curves.raw_features.shape == (30, 2)
    assert list(result.curves.eval_steps) == [0, 10, 20, 30]
    assert result.curves.eval_losses[-1] < result.curves.eval_losses[0]
    assert 0.0 <= result.test_accuracy <= 1.0 and result.wall_time > 0


def test_controller_sees_the_previous_features_and_rate() -> None:
    seen: list[ControlState] = []

    class Recorder(Controller):
        def learning_rate(self, state: ControlState) -> float:
            seen.append(state)
            return 0.01 * state.step

    result = train(toy_task(steps=5), Recorder(), load_dataset("toy"))
    assert seen[0].features is None and seen[0].previous_lr == 0.05
    for before, after, row in zip(seen, seen[1:], result.curves.features, strict=False):
        np.testing.assert_array_equal(after.features, row)
        assert after.previous_lr == pytest.approx(0.01 * before.step)
    np.testing.assert_allclose(result.curves.learning_rates, 0.01 * np.arange(1, 6))


def test_log_linear_bias_only_controller_is_a_constant_rate_after_step_one() -> None:
    theta = [0.0, 0.0, 0.0, 0.0, math.log(0.02)]
    result = train(toy_task(steps=6), LogLinearController(theta), load_dataset("toy"))
    np.testing.assert_allclose(result.curves.learning_rates, [0.05] + [0.02] * 5)


def test_a_bad_learning_rate_from_a_controller_is_named() -> None:
    class Broken(Controller):
        def learning_rate(self, state: ControlState) -> float:
            return -1.0

    with pytest.raises(InvalidConfigError, match=r"Broken returned lr=-1.0 at step 1"):
        train(toy_task(), Broken(), load_dataset("toy"))


def test_divergence_stops_the_run() -> None:
    result = train(toy_task(steps=50), ConstantController(1e5), load_dataset("toy"), eval_points=5)
    assert result.diverged and result.steps_completed < 50
    assert not np.isfinite(result.curves.losses[-1])
    assert np.isinf(result.curves.eval_losses[-1])
    assert result.test_loss == math.inf and result.test_accuracy == 0.0


def test_evaluation_steps_are_evenly_spaced() -> None:
    assert list(evaluation_steps(90, 10)) == list(range(0, 91, 10))
    assert list(evaluation_steps(7, 3)) == [0, 4, 7]
    with pytest.raises(InvalidConfigError, match="eval_points=1"):
        evaluation_steps(10, 1)


def test_batches_cover_the_subset_before_repeating() -> None:
    """Mini-batches are drawn without replacement from the task's training subset: each pass
    over the subset yields every subset row exactly once, and no row from outside it."""
    data = load_dataset("toy")  # continuous Gaussian rows: each row identifies one example
    run = TrainingRun(toy_task(subset_fraction=0.25, batch_size=32), data)
    index_of = {row.numpy().tobytes(): i for i, row in enumerate(data.train_x)}
    assert len(index_of) == data.train_x.shape[0] == 512
    subset = [index_of[row.numpy().tobytes()] for row in run._x]
    assert len(subset) == 128 and len(set(subset)) == 128  # round(0.25 * 512) distinct rows
    passes: list[list[int]] = []
    for _ in range(2):  # two passes of 4 batches each
        drawn: list[int] = []
        for _ in range(4):
            inputs, targets = run.next_batch()
            rows = [index_of[row.numpy().tobytes()] for row in inputs]  # KeyError: not a row
            assert targets.tolist() == data.train_y[rows].tolist()
            drawn += rows
        assert sorted(drawn) == sorted(subset)  # a permutation: no repeat, nothing outside
        passes.append(drawn)
    assert passes[0] != passes[1]  # each pass is shuffled afresh


def test_training_run_rejects_data_of_another_task() -> None:
    with pytest.raises(InvalidConfigError, match="task is for 'toy' but data is 'digits'"):
        TrainingRun(toy_task(), load_dataset("digits"))


def test_advancing_in_stretches_records_the_run_train_records() -> None:
    """``train`` is ``advance(task.steps)``: advancing the same run in uneven stretches, with
    ``E`` at every stretch's end, gives the same steps, and ``E`` where both measured it."""
    data, task = load_dataset("toy"), toy_task(steps=25)
    controller = LogLinearController([0.02, 0.0, -0.05, 0.0, -3.0])
    whole = train(task, controller, data, eval_points=6)  # E after 0, 5, 10, 15, 20, 25
    run = TrainingRun(task, data, controller=controller, eval_steps=[0, 7, 10, 20, 25])
    taken = [run.advance(n) for n in (7, 3, 10, 100)]
    assert taken == [7, 3, 10, 5] and run.finished and run.advance(5) == 0
    got = run.result()  # exact: the same steps; evaluations do not touch training
    for name in ("losses", "learning_rates", "features", "raw_features"):
        assert np.array_equal(getattr(got.curves, name), getattr(whole.curves, name)), name
    for step in (0, 10, 20, 25):
        assert (
            run.eval_loss(step)
            == whole.curves.eval_losses[list(whole.curves.eval_steps).index(step)]
        )
    assert got.test_loss == whole.test_loss and got.final_train_loss == run.eval_loss(25)
    with pytest.raises(KeyError, match="after step 5"):
        run.eval_loss(5)


def test_advance_at_a_given_rate_is_a_constant_controller() -> None:
    data, task = load_dataset("toy"), toy_task(steps=12, eta0=0.3)
    given = TrainingRun(task, data, eval_steps=[0, 12])
    given.advance(12, lr=0.02)
    constant = train(task, ConstantController(0.02), data, eval_points=2)
    assert given.curves() == constant.curves


@pytest.mark.parametrize("steps", [[], [3, 2], [-1, 4], [0, 31]])
def test_evaluation_steps_outside_the_run_are_refused(steps: list[int]) -> None:
    with pytest.raises(InvalidConfigError, match="must be non-decreasing steps in \\[0, 30\\]"):
        TrainingRun(toy_task(), load_dataset("toy"), eval_steps=steps)


def test_a_divergence_stops_advance_and_marks_the_later_evaluations() -> None:
    run = TrainingRun(toy_task(eta0=1e3, momentum=0.9), load_dataset("toy"), eval_steps=[0, 10, 30])
    taken = run.advance(30, lr=1e3)
    assert run.diverged and run.finished and 0 < taken < 30
    assert run.eval_loss(30) == math.inf and run.curves().eval_losses[-1] == math.inf
    assert run.result().test_accuracy == 0.0
