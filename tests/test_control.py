"""The drop-in controller :class:`lrgym.ControlledLR` in hand-written PyTorch loops.

The features it computes inside a user's loop are checked against :func:`base_features`
computed from scratch (itself checked against float64 per-example gradients in
``test_features.py``); lrgym's own loop must give bit-identical curves.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_features import batch_fixed_reference
from torch import nn

import lrgym
from lrgym.controllers import Controller, ControlState, LogLinearController, PlateauController
from lrgym.controllers.files import PRETRAINED_DIR, ControllerFileError
from lrgym.data.datasets import ArrayDataset, load_dataset
from lrgym.errors import InvalidConfigError
from lrgym.features import FeatureConfig, base_features
from lrgym.registration import MIXTURE_ID
from lrgym.tasks.family import Task
from lrgym.training import TrainingRun

TOL = 1e-4


@pytest.fixture(scope="module")
def digits() -> ArrayDataset:
    return load_dataset("digits")


def family_task(seed: int, steps: int, optimizer: str = "sgd") -> Task:
    """A task of the paper's family (random small CNN, data subset, eta0) on digits."""
    env_id = "StepSizeControl-Digits-v0"
    env = gym.make(env_id).unwrapped
    env.reset(seed=seed)
    task = env.task
    assert task is not None
    changes: dict[str, object] = {"steps": steps, "optimizer": optimizer}
    if optimizer == "rmsprop":
        changes["eta0"] = task.eta0 / 30
    return dataclasses.replace(task, **changes)


def draws(task: Task, data: ArrayDataset) -> tuple[nn.Module, list[tuple[torch.Tensor, ...]]]:
    """The task's initial model and its mini-batches, drawn by lrgym's sampler (no training)."""
    source = TrainingRun(task, data, memory_format="contiguous")
    source.control.remove()
    batches = [source.next_batch() for _ in range(task.steps)]
    return copy.deepcopy(source.model), batches


def plain_optimizer(task: Task, model: nn.Module) -> torch.optim.Optimizer:
    if task.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=task.eta0, momentum=task.momentum)
    return torch.optim.RMSprop(model.parameters(), lr=task.eta0)


CASES = {
    "sgd-momentum, pretrained, exact": ("sgd", "mnist-sgd", FeatureConfig()),
    "sgd-momentum, every 3 dense": ("sgd", "mnist-sgd", FeatureConfig(every=3)),
    "rmsprop, pretrained": ("rmsprop", "mnist-rmsprop", FeatureConfig()),
    "rmsprop, plateau (asks after backward)": ("rmsprop", "plateau", FeatureConfig()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hand_written_loop_is_bit_identical_to_train(case: str, digits: ArrayDataset) -> None:
    optimizer_name, which, config = CASES[case]
    task = family_task(seed=4, steps=45, optimizer=optimizer_name)

    def make() -> Controller:
        if which == "plateau":
            return PlateauController(interval=3, patience=1)
        return lrgym.load_controller(which).controller()

    result = lrgym.train(task, make(), digits, features=config, memory_format="contiguous")

    model, batches = draws(task, digits)
    optimizer = plain_optimizer(task, model)
    control = lrgym.ControlledLR(
        model, optimizer, make(), eta0=task.eta0, total_steps=task.steps, features=config
    )
    losses_curve, rates, features = [], [], []
    returned = control.lr
    for x, y in batches:
        optimizer.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")
        losses.mean().backward()
        on_optimizer = optimizer.param_groups[0]["lr"]
        lr = control.step(losses)
        assert control.last_step is not None
        losses_curve.append(control.last_step.loss)
        rates.append(control.last_step.lr)
        features.append(control.features)
        if which != "plateau":  # the rate set after the previous step is the one used
            assert control.last_step.lr == returned == on_optimizer
        assert optimizer.param_groups[0]["lr"] == lr
        returned = lr

    assert result.steps_completed == task.steps
    # exact on any CPU: the same torch ops on the same shapes and layout, one torch thread
    assert np.array_equal(result.curves.losses, np.array(losses_curve))
    assert np.array_equal(result.curves.learning_rates, np.array(rates))
    assert np.array_equal(result.curves.features, np.array(features))
    assert len(set(rates)) > 3  # the controller did move the rate


# --------------------------------------------------------------------------------------------
# a model outside the family


class ResidualBN(nn.Module):
    """conv-BN-ReLU, a residual conv-BN block, pooling, a linear head: BatchNorm in train mode
    and a skip connection, neither in the paper's family."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.head = nn.Linear(width * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.stem(x)))
        h = h + F.relu(self.bn2(self.conv(h)))
        return self.head(F.max_pool2d(h, 2).flatten(1))


def digit_batches(data: ArrayDataset, count: int, size: int, seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    x, y = data.normalise(data.train_x), data.train_y
    out = []
    for _ in range(count):
        idx = torch.randint(0, x.shape[0], (size,), generator=gen)
        out.append((x[idx], y[idx]))
    return out


def test_batchnorm_residual_model_trains_with_pretrained_controller(digits: ArrayDataset) -> None:
    """phi1 in the user's loop against base_features from scratch at sampled steps."""
    torch.manual_seed(0)
    model = ResidualBN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    control = lrgym.ControlledLR(model, optimizer, "mnist-sgd")
    sampled = {1, 2, 7, 30, 80}
    checked = []
    first_losses, last_losses = [], []
    for step, (x, y) in enumerate(digit_batches(digits, 120, 32, seed=1), start=1):
        check = step in sampled
        if check:  # the model as the forward pass sees it (its BatchNorm statistics too)
            snapshot = copy.deepcopy(model)
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")
        losses.mean().backward()
        control.step(losses)
        assert control.last_step is not None
        if check:
            update = {n: p.detach() - before[n] for n, p in model.named_parameters()}
            phi1, phi2 = base_features(snapshot, x, y, update)
            assert abs(control.last_step.phi1 - phi1) < TOL, (step, control.last_step.phi1, phi1)
            assert abs(control.last_step.phi2 - phi2) < TOL
            if step in (2, 80):  # and against float64 per-example gradients, batch held fixed
                reference = batch_fixed_reference(snapshot, x, y, update)
                assert abs(control.last_step.phi1 - reference) < TOL
            checked.append(step)
        (first_losses if step <= 10 else last_losses).append(control.last_step.loss)
    assert checked == sorted(sampled)
    assert np.mean(last_losses[-10:]) < 0.25 * np.mean(first_losses)
    assert 1e-4 < control.lr < 1.0


class MaskedDropout(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


def test_forward_mode_replays_dropout() -> None:
    """PReLU's parameter lies outside the covered layers (forward-mode AD, which reruns the
    pass, dropout included); the reference applies the pass's dropout mask explicitly."""
    torch.manual_seed(0)
    p = 0.3
    model = nn.Sequential(nn.Linear(16, 24), nn.PReLU(24), nn.Dropout(p), nn.Linear(24, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    control = lrgym.ControlledLR(model, optimizer, LogLinearController([0, 0, 0, 0, -4.0]))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 16, generator=gen), torch.randint(0, 4, (20,), generator=gen)
    before = {n: t.detach().clone() for n, t in model.named_parameters()}
    torch.manual_seed(7)
    losses = F.cross_entropy(model(x), y, reduction="none")
    torch.manual_seed(7)  # dropout's first draw: the mask of the pass above
    mask = F.dropout(torch.ones(20, 24), p)
    losses.mean().backward()
    control.step(losses)
    reference = nn.Sequential(model[0], model[1], MaskedDropout(mask), model[3])
    update = {n: t.detach() - before[n] for n, t in model.named_parameters()}
    clone = copy.deepcopy(reference)
    clone.load_state_dict({**before, "2.mask": mask}, strict=False)
    phi1, _ = base_features(clone, x, y, {k: v for k, v in update.items()})
    assert control.last_step is not None
    assert abs(control.last_step.phi1 - phi1) < TOL


def test_parameter_groups_and_weight_decay_are_measured(digits: ArrayDataset) -> None:
    """AdamW with weight decay on the weights only, in two parameter groups: every group gets
    the controller's rate, and phi1 is that of the update actually applied."""
    torch.manual_seed(0)
    model = ResidualBN(width=4).eval()  # BatchNorm on running statistics: the contraction
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-3
    )
    control = lrgym.ControlledLR(model, optimizer, LogLinearController([0, 0, 0, 0, -6.0]))
    for step, (x, y) in enumerate(digit_batches(digits, 3, 16, seed=6)):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        snapshot = copy.deepcopy(model)
        optimizer.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")
        losses.mean().backward()
        lr = control.step(losses)
        assert [g["lr"] for g in optimizer.param_groups] == [lr, lr]
        update = {n: p.detach() - before[n] for n, p in model.named_parameters()}
        assert control.last_step is not None
        assert abs(control.last_step.phi1 - base_features(snapshot, x, y, update)[0]) < TOL, step


def test_gradient_accumulation_matches_one_batch(digits: ArrayDataset) -> None:
    """Two micro-batches of 16, each backpropagating half its mean, give the features of one
    batch of 32."""
    ((x, y),) = digit_batches(digits, 1, 32, seed=2)
    outcomes = []
    for micro in (1, 2):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        control = lrgym.ControlledLR(model, optimizer, LogLinearController([0, 0, 0, 0, -3.0]))
        parts = []
        for xs, ys in zip(x.chunk(micro), y.chunk(micro), strict=True):
            losses = F.cross_entropy(model(xs), ys, reduction="none")
            (losses.mean() / micro).backward()
            parts.append(losses)
        control.step(parts)
        outcomes.append(control.last_step)
    one, two = outcomes
    assert one is not None and two is not None
    assert abs(one.phi1 - two.phi1) < TOL and abs(one.phi2 - two.phi2) < 1e-9


def test_declared_sum_reduction_gives_the_mean_features(digits: ArrayDataset) -> None:
    ((x, y),) = digit_batches(digits, 1, 24, seed=3)
    results = {}
    for reduction in ("mean", "sum"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        lr = 0.1 if reduction == "mean" else 0.1 / 24  # the same update either way
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        control = lrgym.ControlledLR(
            model, optimizer, lrgym.ConstantController(lr), loss_reduction=reduction
        )
        losses = F.cross_entropy(model(x), y, reduction="none")
        (losses.mean() if reduction == "mean" else losses.sum()).backward()
        control.step(losses)
        assert control.last_step is not None
        results[reduction] = control.last_step.phi1
    assert results["mean"] == pytest.approx(results["sum"], abs=TOL)


def test_copies_of_the_model_are_not_recorded(digits: ArrayDataset) -> None:
    """A deep copy (an EMA model, the best model so far) or a pickled model carries inert hooks:
    training the copy neither feeds nor breaks the original's controller."""
    torch.manual_seed(0)
    model = ResidualBN(width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    control = lrgym.ControlledLR(model, optimizer, "mnist-sgd")
    copies = [copy.deepcopy(model)]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    copies.append(torch.load(buffer, weights_only=False))
    (x, y), (x2, y2) = digit_batches(digits, 2, 16, seed=5)
    for other in copies:
        hooks = [
            h
            for m in other.modules()
            for h in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]
        ]
        assert hooks and all(h(None, (), {}) is None and not vars(h) for h in hooks)  # inert
        F.cross_entropy(other(x2), y2).backward()  # forward and backward of a copy
    assert control.probe.recorder.forward_passes == 0
    losses = F.cross_entropy(model(x), y, reduction="none")
    losses.mean().backward()
    control.step(losses)
    assert control.last_step is not None and math.isfinite(control.last_step.phi1)


# --------------------------------------------------------------------------------------------
# checkpoints


RESUME_CASES = {
    "pretrained, every 4 dense": (lambda: "mnist-sgd", 4, "sgd"),
    "plateau, exact, adam": (lambda: PlateauController(interval=2, patience=1), 1, "adam"),
    "hypergradient, exact, adam": (
        lambda: lrgym.controllers.HypergradientController(1e-7),
        1,
        "adam",
    ),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resuming_from_state_dict_gives_the_uninterrupted_curve(
    case: str, digits: ArrayDataset
) -> None:
    make, every, optimizer_name = RESUME_CASES[case]
    batches = digit_batches(digits, 24, 32, seed=4)

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer, lrgym.ControlledLR]:
        torch.manual_seed(0)
        model = ResidualBN(width=4)
        if optimizer_name == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(), lr=0.02, momentum=0.9
            )
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, optimizer, lrgym.ControlledLR(model, optimizer, make(), feature_every=every)

    def run(model, optimizer, control, part) -> list[tuple[float, float, float]]:
        curve = []
        for x, y in part:
            optimizer.zero_grad()
            losses = F.cross_entropy(model(x), y, reduction="none")
            losses.mean().backward()
            control.step(losses)
            curve.append((control.last_step.loss, control.last_step.lr, control.last_step.phi1))
        return curve

    whole = run(*fresh(), batches)

    model, optimizer, control = fresh()
    first = run(model, optimizer, control, batches[:10])
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "control": control.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    model, optimizer, control = fresh()
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    control.load_state_dict(checkpoint["control"])
    second = run(model, optimizer, control, batches[10:])

    assert first + second == whole
    assert len({lr for _, lr, _ in whole}) > 3


def test_state_from_other_feature_settings_is_refused() -> None:
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = lrgym.ControlledLR(model, optimizer, "mnist-sgd", feature_every=5).state_dict()
    other = lrgym.ControlledLR(model, optimizer, "mnist-sgd")
    with pytest.raises(InvalidConfigError, match="every=5"):
        other.load_state_dict(state)


# --------------------------------------------------------------------------------------------
# misuse


def one_step(
    model: nn.Module, reduction: str = "none", backward: bool = True, controller: str = "mnist-sgd"
) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    control = lrgym.ControlledLR(model, optimizer, controller)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    output = model(x)
    logits = output if isinstance(output, torch.Tensor) else output["logits"]
    losses = F.cross_entropy(logits, y, reduction=reduction)
    if backward:
        losses.mean().backward()
    control.step(losses)


def test_reduced_loss_is_refused() -> None:
    with pytest.raises(InvalidConfigError, match=r"single number.*reduction='none'"):
        one_step(nn.Linear(4, 3), reduction="mean")


def test_losses_of_the_wrong_shape_or_count_are_refused() -> None:
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    control = lrgym.ControlledLR(model, optimizer, "mnist-sgd")
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    losses = F.cross_entropy(model(x), y, reduction="none")
    losses.mean().backward()
    with pytest.raises(InvalidConfigError, match=r"shape \(2, 4\)"):
        control.step(losses.reshape(2, 4))
    with pytest.raises(InvalidConfigError, match=r"4 entries.*saw 8 examples"):
        control.step(losses[:4])
    with pytest.raises(InvalidConfigError, match=r"torch\.Tensor"):
        control.step(losses.tolist()[0])  # type: ignore[arg-type]


def test_step_without_backward_is_refused() -> None:
    with pytest.raises(InvalidConfigError, match="without a backward pass"):
        one_step(nn.Linear(4, 3), backward=False)


def test_step_without_forward_is_refused() -> None:
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    control = lrgym.ControlledLR(model, optimizer, "mnist-sgd")
    with pytest.raises(InvalidConfigError, match="no forward pass"):
        control.step(torch.ones(8))


def test_model_without_parameters_is_refused() -> None:
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(InvalidConfigError, match="no parameters"):
        lrgym.ControlledLR(nn.ReLU(), optimizer, "mnist-sgd")


def test_optimizer_of_another_model_is_refused() -> None:
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(InvalidConfigError, match="not Linear's"):
        lrgym.ControlledLR(nn.Linear(4, 3), optimizer, "mnist-sgd")


class DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(x)}


def test_model_returning_a_dict_is_refused() -> None:
    with pytest.raises(InvalidConfigError, match="other than one tensor"):
        one_step(DictOutput())


def test_unknown_pretrained_name_lists_the_known_ones() -> None:
    with pytest.raises(ControllerFileError, match="mnist-sgd"):
        one_step(nn.Linear(4, 3), controller="mnist-sgdd")


def test_schedule_without_total_steps_is_refused() -> None:
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidConfigError, match="total_steps"):
        lrgym.ControlledLR(model, optimizer, lrgym.ScheduleController("cosine"))


# --------------------------------------------------------------------------------------------
# pretrained controllers


def test_pretrained_controllers_load_by_name_with_their_provenance() -> None:
    names = lrgym.pretrained_controllers()
    assert {"mnist-sgd", "mnist-rmsprop", "general-sgd", "general-adamw"} <= set(names)
    optimizers = {"mnist-sgd": "sgd", "mnist-rmsprop": "rmsprop"}
    mixtures = {"general-sgd": "*-sgd", "general-adamw": "*-adamw"}
    for name in names:
        saved = lrgym.load_controller(name)
        assert saved.path == PRETRAINED_DIR / f"{name}.json"
        source = saved.source
        assert source["name"] == name
        assert source["algorithm"] in ("reps", "cmaes") and source["episodes"] >= 256
        assert isinstance(source["seed"], int) and saved.lrgym_version
        assert source["command"].startswith(f"lrgym train {source['algorithm']} --env ")
        assert f"--env {saved.env_id} " in source["command"]
        assert "data_root" not in saved.env_kwargs  # no path of the machine it was learned on
        if name in optimizers:
            assert lrgym.ENV_KWARGS[saved.env_id]["optimizer"] == optimizers[name]
        if name in mixtures:  # learned across families, from the probe start, within budget
            assert saved.env_id == MIXTURE_ID and saved.env_kwargs["include"] == mixtures[name]
            assert saved.start == "probe" and saved.controller().probes_first_step
            assert 0 < source["learning_seconds"] <= 3600
        evaluation = source["evaluation"]
        assert "lrgym benchmark" in evaluation["command"]
        assert evaluation["final_train_loss_geomean"]
        with open(saved.path) as handle:  # plain JSON, safe to open
            assert json.load(handle)["format"] == "lrgym-controller"


def test_a_path_still_loads_a_file(tmp_path) -> None:
    saved = lrgym.load_controller("mnist-sgd")
    path = lrgym.save_controller(saved, tmp_path / "mine.json")
    assert lrgym.load_controller(path).theta == saved.theta
    with pytest.raises(ControllerFileError):
        lrgym.load_controller(tmp_path / "missing.json")


def test_user_controller_is_asked_after_backward_with_the_step_loss() -> None:
    """Any object with learning_rate() works; it is asked after the backward pass with the
    step's loss."""

    class Halving(Controller):
        def __init__(self) -> None:
            self.seen: list[ControlState] = []

        def learning_rate(self, state: ControlState) -> float:
            self.seen.append(state)
            return state.eta0 / 2**state.step

    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.4)
    controller = Halving()
    control = lrgym.ControlledLR(model, optimizer, controller)
    for _ in range(3):
        optimizer.zero_grad()
        losses = F.cross_entropy(
            model(torch.randn(8, 4)), torch.randint(0, 3, (8,)), reduction="none"
        )
        losses.mean().backward()
        assert control.step(losses) == pytest.approx(0.4 / 2 ** len(controller.seen))
        assert controller.seen[-1].loss == pytest.approx(float(losses.detach().mean()))
    assert [s.step for s in controller.seen] == [1, 2, 3]
    assert controller.seen[0].features is None and controller.seen[1].features is not None


def test_readme_example_runs_and_learns() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Use a learned controller in your own training loop")[1]
    code = section.split("```python\n")[1].split("```")[0]
    assert len(code.strip().splitlines()) <= 15
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    losses = namespace["losses"]
    assert isinstance(losses, torch.Tensor) and float(losses.mean()) < 0.3
    assert 1e-4 < float(namespace["lr"]) < 1.0  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# the probe start


FIXED_POINT_THETA = [-0.9164, 0.976, 0.0, 0.0, -5.6143]


def probe_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def first_direction(name: str, model: nn.Module, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The optimiser's first update direction ``d`` (``dw = -lr d``), written out in float64."""
    if name == "sgd":  # momentum: the first buffer is the gradient
        return grads
    eps, decay = 1e-8, 0.01  # AdamW's: m_hat = g, v_hat = g^2 on the first step
    weights = [p.detach().double() for p in model.parameters()]
    return [g / (g.abs() + eps) + decay * w for g, w in zip(grads, weights, strict=True)]


def make_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_the_probe_start_steps_at_the_rule_s_fixed_point_of_a_float64_reference(name: str) -> None:
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    # reference: per-example gradients in float64, the rule's fixed point in closed form
    reference = copy.deepcopy(probe_model()).double()
    losses = F.cross_entropy(reference(x.double()), y, reduction="none")
    per_example = [
        torch.autograd.grad(loss, list(reference.parameters()), retain_graph=True)
        for loss in losses
    ]
    mean = [torch.stack(g).mean(0) for g in zip(*per_example, strict=True)]
    d = first_direction(name, reference, mean)
    df = torch.stack(
        [sum((gi * di).sum() for gi, di in zip(g, d, strict=True)) for g in per_example]
    )
    v, phi2 = math.log(float(df.var())), math.log(float(losses.detach().var()))
    t1, t2, _, _, t5 = FIXED_POINT_THETA
    expected = math.exp((t1 * v + t2 * phi2 + t5) / (1 - 2 * t1))

    rates, weights = [], []
    for eta0 in (1e-5, 1.0):  # eta_0 is not used
        model = probe_model()
        optimizer = make_optimizer(name, model, eta0)
        controller = LogLinearController(FIXED_POINT_THETA, start="probe")
        control = lrgym.ControlledLR(model, optimizer, controller)
        losses32 = F.cross_entropy(model(x), y, reduction="none")
        losses32.mean().backward()
        control.step(losses32)
        rates.append(control.last_step.lr)
        weights.append([p.detach().clone() for p in model.parameters()])
        assert control.lr == pytest.approx(control.last_step.lr, rel=1e-6)  # its fixed point
    assert rates[0] == rates[1] and rates[0] == pytest.approx(expected, rel=1e-4)
    # the step taken is the optimiser's own first step at that rate, from the same state
    plain = probe_model()
    optimizer = make_optimizer(name, plain, rates[0])
    F.cross_entropy(plain(x), y).backward()
    optimizer.step()
    for got in weights:
        for a, b in zip(got, plain.parameters(), strict=True):
            assert torch.equal(a, b.detach())


def test_the_probe_start_is_refused_for_an_optimiser_that_sets_its_own_step() -> None:
    prodigyopt = pytest.importorskip("prodigyopt")
    model = probe_model()
    optimizer = prodigyopt.Prodigy(model.parameters(), lr=1.0)
    with pytest.raises(InvalidConfigError, match=r"probe start.*start='eta0'"):
        lrgym.ControlledLR(model, optimizer, LogLinearController(np.zeros(5), start="probe"))
