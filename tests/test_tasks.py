"""Task families, model construction and optimisers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import toy_task

from lrgym.errors import InvalidConfigError
from lrgym.optimizers import make_optimizer
from lrgym.tasks.architectures import choose_memory_format
from lrgym.tasks.cnn import WholeInputConv2d
from lrgym.tasks.family import Task, TaskFamily, build_model


def task(**changes: object) -> Task:
    """A small MNIST CNN task with ``changes``."""
    mnist_cnn = {"dataset": "mnist", "architecture": "cnn", "widths": (4, 6, 20)}
    small = {"subset_fraction": 0.2, "steps": 10, "batch_size": 8, "eta0": 0.01, "seed": 7}
    return toy_task(**{**mnist_cnn, **small, "momentum": 0.9, **changes})


def test_samples_stay_inside_the_documented_inclusive_ranges() -> None:
    family = TaskFamily(
        widths=((2, 3), (5, 5), (7, 9)),
        subset_fraction=(0.2, 0.3),
        steps=(10, 12),
        batch_size=(16, 17),
        lr=(1e-3, 1e-1),
    )
    rng = np.random.default_rng(0)
    tasks = [family.sample(rng) for _ in range(400)]
    assert {t.widths[0] for t in tasks} == {2, 3}
    assert {t.widths[1] for t in tasks} == {5}
    assert {t.widths[2] for t in tasks} == {7, 8, 9}
    assert {t.steps for t in tasks} == {10, 11, 12}
    assert {t.batch_size for t in tasks} == {16, 17}
    assert all(0.2 <= t.subset_fraction <= 0.3 for t in tasks)
    logs = np.log10([t.eta0 for t in tasks])
    assert logs.min() >= -3 and logs.max() <= -1
    # log-uniform: about half the draws below the geometric middle 1e-2
    assert 0.4 < np.mean(logs < -2) < 0.6


def test_a_task_is_determined_by_the_generator_seed() -> None:
    family = TaskFamily()
    first = family.sample(np.random.default_rng(42))
    assert first == family.sample(np.random.default_rng(42))
    assert first != family.sample(np.random.default_rng(43))


def test_fixed_variants_ignore_sampled_widths() -> None:
    rng = np.random.default_rng(0)
    assert TaskFamily(architecture="lenet").sample(rng).widths == (20, 50, 500)
    assert TaskFamily(architecture="cifar-quick").sample(rng).widths == (32, 32, 64, 64)


@pytest.mark.parametrize(
    ("architecture", "widths", "shape"),
    [
        ("cnn", (3, 5, 30), (1, 28, 28)),
        ("cnn", (3, 5, 30), (3, 32, 32)),
        ("cnn", (3, 5, 30), (1, 8, 8)),
        ("lenet", (20, 50, 500), (1, 28, 28)),
        ("cifar-quick", (32, 32, 64, 64), (3, 32, 32)),
        ("mlp", (16, 8), (16,)),
        ("mlp", (12,), (1, 8, 8)),
    ],
)
def test_models_map_inputs_to_class_logits(
    architecture: str, widths: tuple[int, ...], shape: tuple[int, ...]
) -> None:
    model = build_model(
        task(architecture=architecture, widths=widths), shape, 10, torch.Generator().manual_seed(0)
    )
    assert model(torch.randn(5, *shape)).shape == (5, 10)


def test_lenet_has_the_paper_layer_sequence() -> None:
    model = build_model(
        task(architecture="lenet", widths=(20, 50, 500)),
        (1, 28, 28),
        10,
        torch.Generator().manual_seed(0),
    )
    kinds = [type(m).__name__ for m in model]
    assert kinds == [
        "Conv2d",
        "MaxPool2d",
        "Conv2d",
        "MaxPool2d",
        "WholeInputConv2d",
        "ReLU",
        "WholeInputConv2d",
        "Flatten",
    ]
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [20, 50, 500, 10]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5), (4, 4), (1, 1)]


def test_init_comes_from_the_generator_alone() -> None:
    state = torch.random.get_rng_state()
    make = lambda seed: build_model(task(), (1, 28, 28), 10, torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = make(1), make(1), make(2)
    assert torch.equal(state, torch.random.get_rng_state())
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
        bound = 1 / math.sqrt(pa.shape[1:].numel()) if pa.dim() > 1 else None
        if bound is not None:
            assert pa.abs().max() <= bound


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop), ("adam", torch.optim.Adam)],
)
def test_optimizers_come_from_torch_optim(name: str, cls: type) -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = make_optimizer(task(optimizer=name, eta0=0.5), params)
    assert isinstance(optimizer, cls)
    assert optimizer.param_groups[0]["lr"] == 0.5
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"architecture": "vgg"}, "architecture='vgg'"),
        ({"optimizer": "sgdm"}, "'sgd', 'rmsprop', 'adam'"),
        ({"dataset": "svhn"}, "dataset='svhn'"),
        ({"momentum": 1.0}, "momentum=1.0"),
        ({"subset_fraction": (0.5, 1.5)}, "subset_fraction"),
        ({"steps": (0, 5)}, "steps"),
        ({"steps": (1.5, 5)}, "integers"),
        ({"lr": (-1.0, 1.0)}, "lr="),
        ({"lr": "fast"}, "lr='fast'"),
        ({"widths": ((1, 2),)}, "3 ranges"),
        ({"architecture": "mlp", "widths": ()}, "at least one"),
    ],
)
def test_bad_families_name_the_field(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidConfigError, match=words.replace("(", r"\(").replace("[", r"\[")):
        TaskFamily(**kwargs)  # type: ignore[arg-type]


def test_image_architectures_refuse_flat_inputs() -> None:
    with pytest.raises(InvalidConfigError, match="use architecture='mlp'"):
        build_model(task(dataset="toy"), (16,), 4, torch.Generator())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("bias", [True, False])
def test_whole_input_conv_is_the_convolution_it_replaces(
    layout: torch.memory_format, bias: bool
) -> None:
    gen = torch.Generator().manual_seed(0)
    conv = WholeInputConv2d(6, 7, 4, bias=bias).double().to(memory_format=layout)
    x = torch.randn(5, 6, 4, 4, dtype=torch.float64, generator=gen)
    expected = F.conv2d(x, conv.weight.detach().contiguous(), conv.bias)  # float64 reference
    out = conv(x.contiguous(memory_format=layout))
    assert out.shape == (5, 7, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    (out**2).sum().backward()  # gradients reach the conv-shaped parameters
    assert conv.weight.grad is not None and conv.weight.grad.shape == (7, 6, 4, 4)
    larger = torch.randn(5, 6, 6, 6, dtype=torch.float64, generator=gen)  # not a whole input
    torch.testing.assert_close(conv(larger), F.conv2d(larger, conv.weight, conv.bias))
    assert conv(larger).shape == (5, 7, 3, 3)


@pytest.mark.parametrize("architecture", ["cnn", "lenet", "cifar-quick"])
def test_conv_nets_train_channels_last_on_the_cpu_and_mlps_contiguous(architecture: str) -> None:
    assert choose_memory_format(architecture, "cpu") == torch.channels_last  # measured table
    assert choose_memory_format(architecture, "cpu", "contiguous") == torch.contiguous_format
    assert choose_memory_format("mlp", "cpu", "channels_last") == torch.contiguous_format
    assert choose_memory_format(architecture, "meta") == torch.contiguous_format  # not measured
    with pytest.raises(InvalidConfigError, match=r"memory_format='nhwc'.*'channels_last'"):
        choose_memory_format(architecture, "cpu", "nhwc")
