"""The state features phi1/phi2 against a float64 per-example-gradient reference.

The reference below differentiates each example's loss separately (a plain loop over the
examples, each through a float64 ``functional_call``), so it shares nothing with the contraction
in :mod:`lrgym.features` except the definition: ``phi1 = log(Var_i(grad f_i^T dw) + 1e-30)`` and
``phi2 = log(Var_i(f_i) + 1e-30)`` with the unbiased variance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lrgym.data.datasets import ArrayDataset, load_dataset
from lrgym.errors import InvalidConfigError
from lrgym.features import EPS, FeatureConfig, FeatureSmoother, ShareRegression, base_features
from lrgym.tasks.family import Task, build_model
from lrgym.training import TrainingRun

TOL = 1e-4
FLOOR = math.log(1e-30)


# --------------------------------------------------------------------------------------------
# helpers


def make_task(
    dataset: str,
    architecture: str,
    widths: tuple[int, ...],
    *,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    batch_size: int = 16,
    eta0: float = 0.05,
    seed: int = 0,
) -> Task:
    return Task(
        dataset=dataset,
        architecture=architecture,
        widths=widths,
        subset_fraction=0.2,
        steps=10,
        batch_size=batch_size,
        eta0=eta0,
        optimizer=optimizer,
        momentum=momentum,
        seed=seed,
    )


def reference_features(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    update: Mapping[str, torch.Tensor],
    params: Mapping[str, torch.Tensor] | None = None,
) -> tuple[float, float, torch.Tensor]:
    """``(phi1, phi2, df)`` from per-example gradients, all in float64.

    A plain loop: example ``i`` alone is pushed through the network and differentiated, and
    ``df_i = sum over parameters of grad f_i . dw``. ``model`` only supplies the structure (and
    buffers); the parameters are ``params`` (default: the model's own), cast to float64. Names
    missing from ``update`` have a zero update.
    """
    source = dict(model.named_parameters()) if params is None else params
    p64 = {
        n: source[n].detach().to(torch.float64).requires_grad_(True)
        for n, _ in model.named_parameters()
    }
    b64 = {
        n: b.detach().to(torch.float64) if b.is_floating_point() else b
        for n, b in model.named_buffers()
    }
    names = list(update)
    x64 = inputs.detach().to(torch.float64)
    df = torch.zeros(inputs.shape[0], dtype=torch.float64)
    losses = torch.zeros(inputs.shape[0], dtype=torch.float64)
    for i in range(inputs.shape[0]):
        logits = functional_call(model, {**b64, **p64}, (x64[i : i + 1],))
        loss = F.cross_entropy(logits, targets[i : i + 1])
        losses[i] = loss.detach()
        if not names:
            continue
        grads = torch.autograd.grad(loss, [p64[n] for n in names], allow_unused=True)
        for name, g in zip(names, grads, strict=True):
            if g is not None:
                df[i] += (g * update[name].detach().to(torch.float64)).sum()
    phi1 = math.log(float(df.var(correction=1)) + 1e-30)
    phi2 = math.log(float(losses.var(correction=1)) + 1e-30)
    return phi1, phi2, df


def random_update(model: nn.Module, seed: int, scale: float = 0.01) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        n: scale * torch.randn(p.shape, generator=gen, dtype=p.dtype)
        for n, p in model.named_parameters()
    }


def random_batch(
    shape: tuple[int, ...], classes: int, batch: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=gen, dtype=torch.float32)
    y = torch.randint(0, classes, (batch,), generator=gen)
    return x, y


def sgd_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> dict:
    """``-lr * grad`` of the mean loss, without touching ``.grad``."""
    names, params = zip(*model.named_parameters(), strict=True)
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params)
    return {n: -lr * g for n, g in zip(names, grads, strict=True)}


def record_batches(run: TrainingRun, monkeypatch: pytest.MonkeyPatch) -> list:
    """Make ``run`` remember every mini-batch it draws."""
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = run.next_batch

    def spy() -> tuple[torch.Tensor, torch.Tensor]:
        batch = original()
        batches.append(batch)
        return batch

    monkeypatch.setattr(run, "next_batch", spy)
    return batches


@pytest.fixture(scope="module")
def datasets() -> dict[str, ArrayDataset]:
    """Both file-free datasets, loaded once.

    Also pays the one-off imports here instead of inside the first test: scikit-learn (digits)
    and ``torch._dynamo``, which ``torch.optim`` imports when the first optimiser is built.
    """
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    return {name: load_dataset(name) for name in ("digits", "toy")}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def run_model(
    model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    with torch.no_grad():
        return functional_call(model, dict(params), (x,))


# --------------------------------------------------------------------------------------------
# 1. base_features against the per-example reference


MODEL_CASES = {
    "cnn-digits": ("digits", "cnn", (4, 9, 40), (1, 8, 8), 10),
    "cnn-28": ("mnist", "cnn", (5, 12, 60), (1, 28, 28), 10),
    "lenet-28": ("mnist", "lenet", (20, 50, 500), (1, 28, 28), 10),
    "cifar-quick": ("cifar10", "cifar-quick", (32, 32, 64, 64), (3, 32, 32), 10),
    "mlp-flat": ("toy", "mlp", (32, 24), (16,), 4),
}


FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@pytest.mark.parametrize(
    "case,memory_format",
    [(case, f) for case in MODEL_CASES for f in FORMATS if case != "mlp-flat" or f == "contiguous"],
)
def test_base_features_matches_per_example_reference(case: str, memory_format: str) -> None:
    dataset, arch, widths, shape, classes = MODEL_CASES[case]
    task = make_task(dataset, arch, widths)
    model = build_model(task, shape, classes, torch.Generator().manual_seed(3))
    x, y = random_batch(shape, classes, 10, seed=4)
    update = random_update(model, seed=5)
    if arch != "mlp":  # the model, its inputs and the update all in the layout under test
        layout = FORMATS[memory_format]
        model = model.to(memory_format=layout)
        x = x.contiguous(memory_format=layout)
        update = {n: u.contiguous(memory_format=layout) if u.dim() == 4 else u
                  for n, u in update.items()}  # fmt: skip

    phi1, phi2 = base_features(model, x, y, update)
    ref1, ref2, df = reference_features(model, x, y, update)

    assert df.abs().max() > 0  # the update does change the losses
    assert abs(phi1 - ref1) < TOL, (phi1, ref1)
    assert abs(phi2 - ref2) < TOL, (phi2, ref2)


def test_partial_update_means_zero_for_missing_names() -> None:
    task = make_task("digits", "cnn", (4, 9, 40))
    model = build_model(task, (1, 8, 8), 10, torch.Generator().manual_seed(1))
    x, y = random_batch((1, 8, 8), 10, 10, seed=2)
    full = random_update(model, seed=3)
    names = [n for n, _ in model.named_parameters()]
    partial = {n: full[n] for n in names[2:5]}  # second conv's bias, third conv, ...

    phi1, _ = base_features(model, x, y, partial)
    ref1, _, _ = reference_features(model, x, y, partial)
    ref_full, _, _ = reference_features(model, x, y, full)

    assert abs(phi1 - ref1) < TOL
    assert abs(ref1 - ref_full) > 1e-2  # leaving names out genuinely changes the feature


def test_update_dtype_is_cast_to_the_parameter_dtype() -> None:
    task = make_task("toy", "mlp", (20,))
    model = build_model(task, (16,), 4, torch.Generator().manual_seed(0))
    x, y = random_batch((16,), 4, 9, seed=1)
    update = {n: dw.to(torch.float64) for n, dw in random_update(model, seed=2).items()}
    phi1, _ = base_features(model, x, y, update)
    assert abs(phi1 - reference_features(model, x, y, update)[0]) < TOL


# --------------------------------------------------------------------------------------------
# 2. parameters outside conv/linear layers: the jvp fallback


class ElementwiseScale(nn.Module):
    """``x * s + t`` with learned per-feature ``s`` and ``t``."""

    def __init__(self, width: int, gen: torch.Generator) -> None:
        super().__init__()
        self.scale = nn.Parameter(1.0 + 0.3 * torch.randn(width, generator=gen))
        self.shift = nn.Parameter(0.3 * torch.randn(width, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def uncovered_model() -> nn.Module:
    gen = torch.Generator().manual_seed(7)
    norm = nn.BatchNorm1d(24)
    with torch.random.fork_rng():  # the Linear layers' default init must not move the global RNG
        torch.manual_seed(7)
        model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16, 24),
            norm,
            nn.ReLU(),
            ElementwiseScale(24, gen),
            nn.Linear(24, 20),
            nn.LayerNorm(20),
            nn.Tanh(),
            nn.Linear(20, 5),
        )
    with torch.no_grad():
        norm.weight.copy_(1.0 + 0.3 * torch.randn(24, generator=gen))
        norm.bias.copy_(0.3 * torch.randn(24, generator=gen))
        norm.running_mean.copy_(0.5 * torch.randn(24, generator=gen))
        norm.running_var.copy_(0.5 + torch.rand(24, generator=gen))
        ln = model[6]
        ln.weight.copy_(1.0 + 0.3 * torch.randn(20, generator=gen))
        ln.bias.copy_(0.3 * torch.randn(20, generator=gen))
    return model.eval()  # eval: BatchNorm uses running stats, so examples stay independent


UNCOVERED = ("2.weight", "2.bias", "4.scale", "4.shift", "6.weight", "6.bias")


@pytest.mark.parametrize("which", ["all", "uncovered-only"])
def test_jvp_fallback_matches_reference(which: str) -> None:
    model = uncovered_model()
    x, y = random_batch((16,), 5, 14, seed=8)
    update = random_update(model, seed=9, scale=0.05)
    if which == "uncovered-only":
        update = {n: update[n] for n in UNCOVERED}

    phi1, phi2 = base_features(model, x, y, update)
    ref1, ref2, _ = reference_features(model, x, y, update)

    assert abs(phi1 - ref1) < TOL, (phi1, ref1)
    assert abs(phi2 - ref2) < TOL, (phi2, ref2)
    assert phi1 > FLOOR + 10  # the uncovered parameters contribute something


def test_jvp_fallback_leaves_buffers_and_mode_alone() -> None:
    model = uncovered_model()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    x, y = random_batch((16,), 5, 6, seed=1)
    base_features(model, x, y, random_update(model, seed=2))
    assert not model.training
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n


class DirectWeight(nn.Module):
    """Uses a Linear layer's weight a second time outside that layer's forward."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        with torch.device("meta"):  # no draw from the global RNG; values are set below
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 3)
        self.to_empty(device="cpu")
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(x))
        h = torch.tanh(h @ self.fc.weight.T)  # tied use, invisible to the fc layer's hooks
        return self.out(h)


class BypassedLayer(DirectWeight):
    """Calls F.linear with a Linear layer's weight: the layer's own forward never runs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(F.linear(x, self.fc.weight, self.fc.bias))
        return self.out(h)


@pytest.mark.parametrize("cls", [DirectWeight, BypassedLayer])
def test_parameter_used_outside_its_layer(cls: type[nn.Module]) -> None:
    model = cls()
    x, y = random_batch((4,), 3, 8, seed=1)
    gen = torch.Generator().manual_seed(2)
    update = {"fc.weight": torch.randn(4, 4, generator=gen), "out.bias": torch.randn(3)}
    phi1, _ = base_features(model, x, y, update)
    assert abs(phi1 - reference_features(model, x, y, update)[0]) < TOL


def batch_fixed_reference(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    update: Mapping[str, torch.Tensor],
) -> float:
    """``phi1`` with ``df_i`` the derivative of example ``i``'s loss with the whole batch held
    fixed (BatchNorm's batch statistics move with ``w``): one float64 backward pass per example
    through the full batch, on a copy of the model's buffers."""
    p64 = {n: p.detach().double().requires_grad_(True) for n, p in model.named_parameters()}
    df = torch.zeros(inputs.shape[0], dtype=torch.float64)
    for i in range(inputs.shape[0]):
        b64 = {
            n: b.detach().clone().double() if b.is_floating_point() else b.clone()
            for n, b in model.named_buffers()
        }
        logits = functional_call(model, {**b64, **p64}, (inputs.double(),))
        loss = F.cross_entropy(logits[i : i + 1], targets[i : i + 1])
        grads = torch.autograd.grad(loss, list(p64.values()), allow_unused=True)
        for (name, _), g in zip(p64.items(), grads, strict=True):
            if g is not None and name in update:
                df[i] += (g * update[name].double()).sum()
    return math.log(float(df.var()) + 1e-30)


def test_batchnorm_in_train_mode_holds_the_batch_fixed() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Linear(4, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Linear(6, 5),
        nn.BatchNorm1d(5),
        nn.Linear(5, 3),
    ).train()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    x, y = random_batch((4,), 3, 12, seed=1)
    update = random_update(model, seed=2, scale=0.05)
    phi1, _ = base_features(model, x, y, update)
    assert abs(phi1 - batch_fixed_reference(model, x, y, update)) < TOL
    # not what each example alone through the network would give (that is another quantity)
    assert abs(phi1 - reference_features(model.eval(), x, y, update)[0]) > 1e-2
    for n, b in model.named_buffers():  # running statistics untouched
        assert torch.equal(b, buffers[n]), n


# --------------------------------------------------------------------------------------------
# 3. the in-loop fast path against the reference


OPTIMIZERS = [("sgd", 0.0, 0.1), ("sgd", 0.9, 0.1), ("rmsprop", 0.0, 1e-3), ("adam", 0.0, 1e-3)]
LOOP_TASKS = {"digits-cnn": ("digits", "cnn", (4, 9, 40)), "toy-mlp": ("toy", "mlp", (32, 24))}


LOOP_CASES = [("digits-cnn", "contiguous"), ("digits-cnn", "channels_last"), ("toy-mlp", "auto")]


@pytest.mark.parametrize("optimizer,momentum,lr", OPTIMIZERS)
@pytest.mark.parametrize("setting,memory_format", LOOP_CASES)
def test_training_run_matches_reference(
    setting: str,
    memory_format: str,
    optimizer: str,
    momentum: float,
    lr: float,
    datasets: dict[str, ArrayDataset],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset, arch, widths = LOOP_TASKS[setting]
    data = datasets[dataset]
    task = make_task(dataset, arch, widths, optimizer=optimizer, momentum=momentum, seed=11)
    run = TrainingRun(
        task, data, features=FeatureConfig(gamma=0.8), eval_size=16, memory_format=memory_format
    )
    if memory_format == "channels_last":  # the layout under test is the one that ran
        assert run.model[2].weight.is_contiguous(memory_format=torch.channels_last)
        assert not run.model[2].weight.is_contiguous()  # conv2: 4 input channels
    batches = record_batches(run, monkeypatch)
    structure = build_model(task, data.input_shape, data.num_classes, torch.Generator())

    for step in range(3):
        before = snapshot(run.model)
        outcome = run.step(lr)
        after = snapshot(run.model)
        update = {n: after[n] - before[n] for n in before}
        x, y = batches[step]
        ref1, ref2, _ = reference_features(structure, x, y, update, params=before)
        assert math.isfinite(outcome.phi1)
        assert abs(outcome.phi1 - ref1) < TOL, (step, outcome.phi1, ref1)
        assert abs(outcome.phi2 - ref2) < TOL, (step, outcome.phi2, ref2)
        assert outcome.loss == pytest.approx(
            float(F.cross_entropy(run_model(structure, before, x), y))
        )
    assert len(batches) == 3


# --------------------------------------------------------------------------------------------
# 4. scaling the update


@pytest.mark.parametrize("c", [3.0, 0.1])
def test_scaling_sgd_update_shifts_phi1_by_two_log_c(c: float) -> None:
    task = make_task("digits", "cnn", (4, 9, 40))
    model = build_model(task, (1, 8, 8), 10, torch.Generator().manual_seed(2))
    x, y = random_batch((1, 8, 8), 10, 16, seed=3)
    lr = 0.05
    base = sgd_update(model, x, y, lr)
    scaled = sgd_update(model, x, y, c * lr)

    phi1, phi2 = base_features(model, x, y, base)
    phi1_c, phi2_c = base_features(model, x, y, scaled)

    assert phi1_c - phi1 == pytest.approx(2 * math.log(c), abs=1e-6)
    assert phi2_c == phi2
    assert abs(phi1 - reference_features(model, x, y, base)[0]) < TOL


@pytest.mark.parametrize("setting", list(LOOP_TASKS))
@pytest.mark.parametrize("c", [3.0, 0.1])
def test_scaling_learning_rate_in_loop(
    setting: str, c: float, datasets: dict[str, ArrayDataset]
) -> None:
    dataset, arch, widths = LOOP_TASKS[setting]
    data = datasets[dataset]
    task = make_task(dataset, arch, widths, optimizer="sgd", momentum=0.0, seed=5)
    lr = 0.3
    first = TrainingRun(task, data, eval_size=8).step(lr)
    second = TrainingRun(task, data, eval_size=8).step(c * lr)
    assert second.phi1 - first.phi1 == pytest.approx(2 * math.log(c), abs=1e-5)
    assert second.phi2 == first.phi2
    assert second.loss == first.loss


# --------------------------------------------------------------------------------------------
# 5. zero update


def test_zero_update_hits_the_floor() -> None:
    assert EPS == 1e-30
    task = make_task("toy", "mlp", (20,))
    model = build_model(task, (16,), 4, torch.Generator().manual_seed(0))
    x, y = random_batch((16,), 4, 8, seed=1)
    zeros = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for update in ({}, zeros):
        phi1, phi2 = base_features(model, x, y, update)
        assert math.isfinite(phi1)
        assert phi1 == FLOOR
        assert phi2 > FLOOR + 10


def test_zero_learning_rate_in_loop_hits_the_floor(datasets: dict[str, ArrayDataset]) -> None:
    data = datasets["digits"]
    task = make_task("digits", "cnn", (4, 9, 40), optimizer="sgd", momentum=0.9)
    run = TrainingRun(task, data, eval_size=8)
    for _ in range(2):
        outcome = run.step(0.0)
        assert outcome.phi1 == FLOOR
        assert math.isfinite(outcome.phi2)


def test_zero_update_with_fallback_hits_the_floor() -> None:
    model = uncovered_model()
    x, y = random_batch((16,), 5, 6, seed=3)
    assert base_features(model, x, y, {})[0] == FLOOR


# --------------------------------------------------------------------------------------------
# 6. no side effects, argument validation


def test_base_features_leaves_params_and_grads_untouched() -> None:
    task = make_task("digits", "cnn", (4, 9, 40))
    model = build_model(task, (1, 8, 8), 10, torch.Generator().manual_seed(0))
    params = list(model.parameters())
    for i, p in enumerate(params):
        if i % 2 == 0:
            p.grad = torch.full_like(p, float(i + 1))
    before = snapshot(model)
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    x, y = random_batch((1, 8, 8), 10, 8, seed=1)

    base_features(model, x, y, random_update(model, seed=2))

    for (n, p), g in zip(model.named_parameters(), grads, strict=True):
        assert torch.equal(p, before[n]), n
        if g is None:
            assert p.grad is None, n
        else:
            assert torch.equal(p.grad, g), n
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())  # the probe removed its hooks


def test_unknown_parameter_name_raises() -> None:
    task = make_task("toy", "mlp", (20,))
    model = build_model(task, (16,), 4, torch.Generator().manual_seed(0))
    x, y = random_batch((16,), 4, 8, seed=1)
    update = random_update(model, seed=2)
    update["not_a_param.weight"] = torch.zeros(3)
    with pytest.raises(InvalidConfigError, match=r"not_a_param\.weight"):
        base_features(model, x, y, update)


def test_wrong_update_shape_raises() -> None:
    task = make_task("toy", "mlp", (20,))
    model = build_model(task, (16,), 4, torch.Generator().manual_seed(0))
    x, y = random_batch((16,), 4, 8, seed=1)
    name, param = next(iter(model.named_parameters()))
    with pytest.raises(InvalidConfigError, match=name.replace(".", r"\.")):
        base_features(model, x, y, {name: torch.zeros(param.numel())})
    with pytest.raises(InvalidConfigError):
        base_features(model, x, y, {name: torch.zeros(param.T.shape)})


def test_batch_of_one_raises() -> None:
    task = make_task("toy", "mlp", (20,))
    model = build_model(task, (16,), 4, torch.Generator().manual_seed(0))
    x, y = random_batch((16,), 4, 1, seed=1)
    with pytest.raises(InvalidConfigError):
        base_features(model, x, y, {})


# --------------------------------------------------------------------------------------------
# 7. smoothing and its configuration


def expected_smoothing(values: list[float], gamma: float) -> tuple[float, float]:
    average, uncertainty = values[0], 0.0
    for value in values[1:]:
        average = gamma * average + (1.0 - gamma) * value
        uncertainty = gamma * uncertainty + (1.0 - gamma) * (value - average) ** 2
    return average, uncertainty


def test_smoother_matches_hand_recursion() -> None:
    gamma = 0.7
    phi1 = [-3.0, -1.5, -2.25, 0.5, -4.0]
    phi2 = [1.0, 2.0, 0.0, 1.75, 1.25]
    smoother = FeatureSmoother(gamma)
    for step, (a, b) in enumerate(zip(phi1, phi2, strict=True)):
        smoother.update(0, a)
        smoother.update(1, b)
        a1, u1 = expected_smoothing(phi1[: step + 1], gamma)
        a2, u2 = expected_smoothing(phi2[: step + 1], gamma)
        vector = smoother.vector()
        assert vector.dtype.name == "float64"
        assert vector.tolist() == pytest.approx([a1, a2, u1, u2, 1.0], abs=1e-12)

    # hand-unrolled first steps, independent of expected_smoothing
    s = FeatureSmoother(0.5)
    s.update(1, 4.0)
    assert (s.average[1], s.uncertainty[1]) == (4.0, 0.0)
    s.update(1, 2.0)  # a = 0.5*4 + 0.5*2 = 3; u = 0.5*0 + 0.5*(2-3)^2 = 0.5
    assert (s.average[1], s.uncertainty[1]) == (3.0, 0.5)
    s.update(1, 7.0)  # a = 1.5 + 3.5 = 5; u = 0.25 + 0.5*(7-5)^2 = 2.25
    assert (s.average[1], s.uncertainty[1]) == (5.0, 2.25)
    assert math.isnan(s.average[0]) and s.uncertainty[0] == 0.0


@pytest.mark.parametrize("gamma", [-0.1, 1.0, 1.5, float("nan")])
def test_feature_config_rejects_bad_gamma(gamma: float) -> None:
    with pytest.raises(InvalidConfigError):
        FeatureConfig(gamma=gamma)


@pytest.mark.parametrize("every", [0, -1, 1.5])
def test_feature_config_rejects_bad_every(every: float) -> None:
    with pytest.raises(InvalidConfigError):
        FeatureConfig(every=every)  # type: ignore[arg-type]


def test_feature_config_accepts_edges() -> None:
    assert FeatureConfig(gamma=0.0, every=1).gamma == 0.0
    assert FeatureConfig(gamma=0.999, every=5).every == 5


# --------------------------------------------------------------------------------------------
# 8. computing phi1 every k steps


EVERY_K_SETTINGS = {
    # dataset, architecture, widths, optimizer, estimate, the estimating layers' parameters
    "toy-mlp": ("toy", "mlp", (32, 24), "sgd", "dense", [("5.weight", "5.bias")]),
    "digits-cnn": (
        "digits",
        "cnn",
        (4, 9, 40),
        "sgd",
        "dense",
        [("4.weight", "4.bias"), ("6.weight", "6.bias")],
    ),
    "digits-cnn-last": ("digits", "cnn", (4, 9, 40), "sgd", "last", [("6.weight", "6.bias")]),
    "digits-cnn-adam": (
        "digits",
        "cnn",
        (4, 9, 40),
        "adam",
        "dense",
        [("4.weight", "4.bias"), ("6.weight", "6.bias")],
    ),
}
EVERY_K_RATES = [0.05, 0.03, 0.08, 0.05, 0.02, 0.04, 0.06, 0.05]


def regression_reference(
    fits: list[tuple[np.ndarray, np.ndarray]], keep: float
) -> tuple[np.ndarray, float]:
    """``(beta, residual variance)`` of the weighted least-squares fit of the other layers'
    share on the chosen layers' shares, pooled over the exact steps ``fits`` (oldest first,
    weights ``keep^(n-1)``, then ``(1 - keep) keep^(n-j)``), each batch centred."""
    n = len(fits)
    rows, targets, weights = [], [], []
    for j, (chosen, rest) in enumerate(fits):
        w = keep ** (n - 1) if j == 0 else (1 - keep) * keep ** (n - 1 - j)
        rows.append(math.sqrt(w) * (chosen - chosen.mean(0)))
        targets.append(math.sqrt(w) * (rest - rest.mean()))
        weights.append(w)
    a, b = np.concatenate(rows), np.concatenate(targets)
    beta = np.linalg.lstsq(a, b, rcond=None)[0]
    batch = fits[0][1].shape[0]
    return beta, float(((b - a @ beta) ** 2).sum()) / (batch - 1)


@pytest.mark.parametrize("setting", list(EVERY_K_SETTINGS))
def test_every_k_is_exact_every_k_steps_and_regressed_in_between(
    setting: str, datasets: dict[str, ArrayDataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, architecture, widths, optimizer, estimate, layers = EVERY_K_SETTINGS[setting]
    data = datasets[dataset]
    momentum = 0.9 if optimizer == "sgd" else 0.0
    task = make_task(dataset, architecture, widths, optimizer=optimizer, momentum=momentum, seed=3)
    rates = EVERY_K_RATES if optimizer == "sgd" else [r / 20 for r in EVERY_K_RATES]
    gamma = 0.8
    config = FeatureConfig(gamma=gamma, every=3, estimate=estimate)
    run = TrainingRun(task, data, features=config, eval_size=8)
    batches = record_batches(run, monkeypatch)
    structure = build_model(task, data.input_shape, data.num_classes, torch.Generator())
    outcomes = []
    fits: list[tuple[np.ndarray, np.ndarray]] = []
    for step, lr in enumerate(rates, start=1):
        before = snapshot(run.model)
        outcome = run.step(lr)
        outcomes.append(outcome)
        after = snapshot(run.model)
        update = {n: after[n] - before[n] for n in before}
        x, y = batches[-1]
        ref1, ref2, df = reference_features(structure, x, y, update, params=before)
        # the estimating layers' shares, in units of the direction d = -dw / lr
        chosen = np.stack(
            [
                reference_features(structure, x, y, {n: update[n] for n in names}, before)[
                    2
                ].numpy()
                / lr
                for names in layers
            ],
            axis=1,
        )
        assert abs(outcome.phi2 - ref2) < TOL
        if step in (1, 4, 7):
            assert abs(outcome.phi1 - ref1) < TOL, (step, outcome.phi1, ref1)
            fits.append((chosen, df.numpy() / lr - chosen.sum(1)))
        else:  # the fresh shares, and the regression fitted at the exact steps so far
            beta, residual = regression_reference(fits, keep=0.5)
            variance = np.var(chosen @ (1 + beta), ddof=1) + residual
            expected = math.log(lr * lr * variance + 1e-30)
            assert abs(outcome.phi1 - expected) < 10 * TOL, (step, outcome.phi1, expected)
            assert abs(outcome.phi1 - ref1) > 1e-6  # an estimate, not the exact value
    # both averages are updated every step with gamma
    a1, u1 = expected_smoothing([o.phi1 for o in outcomes], gamma)
    a2, u2 = expected_smoothing([o.phi2 for o in outcomes], gamma)
    assert run.control.smoother.vector().tolist() == pytest.approx([a1, a2, u1, u2, 1.0], abs=1e-9)


def test_share_regression_recovers_a_linear_relation() -> None:
    # rest = 2 x1 - x2 + noise of variance 0.25: beta -> (2, -1), residual -> 0.25
    gen = torch.Generator().manual_seed(0)
    regression = ShareRegression(keep=0.5)
    for _ in range(6):
        chosen = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
        noise = 0.5 * torch.randn(4000, generator=gen, dtype=torch.float64)
        regression.fit(chosen, 2 * chosen[:, 0] - chosen[:, 1] + noise)
    fresh = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    expected = float((3 * fresh[:, 0]).var()) + 0.25  # (1 + beta) = (3, 0)
    assert regression.variance(fresh) == pytest.approx(expected, rel=0.05)
    # a column that is all zeros (a layer that got no update) does not break the solve
    zero = ShareRegression()
    zero.fit(torch.zeros(50, 1), torch.randn(50, generator=gen))
    assert math.isfinite(zero.variance(torch.zeros(50, 1)))
    with pytest.raises(RuntimeError, match="before any fit"):
        ShareRegression().variance(fresh)


def test_hold_estimate_moves_only_the_learning_rate_term(
    datasets: dict[str, ArrayDataset],
) -> None:
    data = datasets["digits"]
    task = make_task("digits", "cnn", (4, 9, 40), optimizer="adam", momentum=0.0, seed=5)
    config = FeatureConfig(gamma=0.5, every=3, estimate="hold")
    run = TrainingRun(task, data, features=config, eval_size=8)
    exact_run = TrainingRun(task, data, features=FeatureConfig(gamma=0.5), eval_size=8)
    rates = [1e-3, 2e-3, 5e-4, 1e-3, 3e-3]
    outcomes = [run.step(lr) for lr in rates]
    exact = [exact_run.step(lr) for lr in rates]
    for i in (0, 3):  # exact steps agree with the exact run
        assert outcomes[i].phi1 == pytest.approx(exact[i].phi1, abs=1e-9)
    for i, s in ((1, 0), (2, 0), (4, 3)):
        expected = outcomes[s].phi1 + 2 * math.log(rates[i] / rates[s])
        assert outcomes[i].phi1 == pytest.approx(expected, abs=1e-9)
        assert outcomes[i].phi1 != pytest.approx(exact[i].phi1, abs=1e-6)
    a1, _ = expected_smoothing([o.phi1 for o in outcomes], 0.5)
    assert run.control.smoother.vector()[0] == pytest.approx(a1, abs=1e-9)


def test_feature_estimate_is_validated() -> None:
    with pytest.raises(InvalidConfigError, match="'dense', 'last', 'hold'"):
        FeatureConfig(every=2, estimate="interpolate")
