"""Benchmark suites: fixed, named, versioned lists of held-out tasks.

A :class:`Suite` is an env id, the env's keyword arguments and a fixed list of task seeds; task
``k`` of a suite is the task of ``gym.make(env_id, **env_kwargs).reset(seed=task_seeds[k])``.
Suites are plain data (:meth:`Suite.to_dict` is JSON), and a suite's ``version`` goes up
whenever its definition changes, so results carry the version they were measured on.

**Held out by construction.** Every seed a training run draws is a 32-bit integer: the
ask/tell learners' episode seeds (``lrgym_agents.collect.episode_seeds``) and the Stable-Baselines3
learners' task seeds are ``uint32`` draws of :class:`numpy.random.SeedSequence`, and
``lrgym evaluate`` counts up from its ``--seed``, which the README starts at 1000. Suite seeds
start at :data:`SUITE_SEED_BASE` ``= 2**32``, outside that range, so no training run ever trains
on a suite's task (``reset`` accepts any non-negative integer seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lrgym.errors import choice_error

SUITE_SEED_BASE = 2**32
"""The first suite seed: above every seed a training run draws (those are 32-bit)."""


@dataclass(frozen=True)
class Suite:
    """A named, versioned list of held-out tasks.

    Attributes:
        name: the suite's name (``lrgym benchmark --suite NAME``).
        version: bumped whenever the definition changes.
        env_id: the registered env the tasks come from.
        env_kwargs: its keyword arguments (JSON values).
        task_seeds: the ``reset`` seeds of the tasks, in order.
        description: what the suite tests.
    """

    name: str
    version: int
    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    task_seeds: tuple[int, ...] = ()
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description."""
        return {
            "name": self.name,
            "version": self.version,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "task_seeds": list(self.task_seeds),
            "description": self.description,
        }


def _seeds(count: int, offset: int = 0) -> tuple[int, ...]:
    return tuple(SUITE_SEED_BASE + offset + k for k in range(count))


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "digits",
            1,
            "StepSizeControl-Digits-v0",
            {},
            _seeds(40),
            "the Digits env's family on scikit-learn's embedded 8x8 digits (no download)",
        ),
        Suite(
            "toy",
            1,
            "StepSizeControl-Toy-v0",
            {},
            _seeds(20),
            "the Toy env: small MLPs on synthetic data, seconds per run (for trying things out)",
        ),
        Suite(
            "mnist-family",
            1,
            "StepSizeControl-MNIST-v0",
            {},
            _seeds(20),
            "the paper's training family on MNIST: sampled cnn widths, subsets, steps, eta_0",
        ),
        Suite(
            "mnist-full",
            1,
            "StepSizeControl-MNIST-v0",
            {"architecture": "lenet", "subset_fraction": [1.0, 1.0], "steps": [2000, 2000]},
            _seeds(5),
            "the paper's transfer test: the [20, 50, 500] LeNet on all of MNIST, 2000 steps",
        ),
        Suite(
            "mnist-mlp",
            1,
            "StepSizeControl-MNIST-v0",
            {"architecture": "mlp"},
            _seeds(20),
            "architecture transfer: two-hidden-layer MLPs on MNIST",
        ),
        Suite(
            "mnist-rmsprop",
            1,
            "StepSizeControl-MNIST-RMSprop-v0",
            {},
            _seeds(20),
            "the paper's family on MNIST trained with RMSprop",
        ),
        Suite(
            "fashion-mnist",
            1,
            "StepSizeControl-FashionMNIST-v0",
            {},
            _seeds(20),
            "the paper's family on Fashion-MNIST (data transfer)",
        ),
        Suite(
            "cifar10-quick",
            1,
            "StepSizeControl-CIFAR10-v0",
            {"architecture": "cifar-quick"},
            _seeds(10),
            "the CIFAR-10 quick net [32, 32, 64, 64] (the paper's CIFAR-10 transfer)",
        ),
        Suite(
            "resnet-mnist",
            1,
            "StepSizeControl-ResNet-MNIST-v0",
            {},
            _seeds(8),
            "residual CNNs with BatchNorm (train mode) on MNIST, SGD with momentum 0.9",
        ),
        Suite(
            "transformer",
            1,
            "StepSizeControl-Transformer-v0",
            {},
            _seeds(8),
            "decoder-only transformers on the grammar corpus (next-token loss), AdamW",
        ),
        Suite(
            "mnist1d",
            1,
            "StepSizeControl-MNIST1D-v0",
            {},
            _seeds(8),
            "1-D convnets on MNIST-1D signals, SGD with momentum 0.9",
        ),
        Suite(
            "mnist-adamw",
            1,
            "StepSizeControl-MNIST-AdamW-v0",
            {},
            _seeds(8),
            "the paper's family on MNIST trained with AdamW",
        ),
    )
}
"""Every suite, by name."""


def get_suite(name: str) -> Suite:
    """The suite called ``name``.

    Raises:
        InvalidConfigError: an unknown name (the message lists the suites and the groups).
    """
    if name not in SUITES:
        raise choice_error("suite", name, [*SUITES, *SUITE_GROUPS])
    return SUITES[name]


ETA0_RANGES: dict[str, tuple[float, ...]] = {
    "sgd": (1e-5, 10**-2.5, 1.0),
    "adam": (1e-6, 10**-3.5, 1e-1),
}
"""The eta_0 values a suite group sweeps, by the optimiser kind of a suite: the bottom, the
middle and the top of the range a general controller must hold over (1e-5 .. 1 for SGD,
1e-6 .. 1e-1 for AdamW and RMSprop)."""

GROUP_BASELINES: dict[str, str] = {
    "sgd": "constant,prodigy,schedulefree-sgd,dadapt-sgd,dog,mechanic-sgd,hypergradient,"
    "warmup-cosine",
    "adam": "constant,prodigy,schedulefree-adamw,dadapt-adam,dog,mechanic-adam,hypergradient,"
    "warmup-cosine",
}
"""The baselines a suite group runs on a suite of each optimiser kind: the constant grid (the
oracle), the learning-rate-free optimisers in their variant for that kind at their authors'
settings, hypergradient descent and warm-up + cosine."""

GROUP_CONTROLLERS: dict[str, str] = {"sgd": "general-sgd", "adam": "general-adamw"}
"""The pretrained controller a suite group runs on a suite of each optimiser kind when it is
given no controller."""


@dataclass(frozen=True)
class SuiteGroup:
    """A named group of suites run together, with a sweep of eta_0 over each suite's range.

    Attributes:
        name: the group's name (``lrgym benchmark --suite NAME``).
        version: bumped whenever the definition changes.
        members: ``(suite name, optimiser kind)`` pairs; the kind (``"sgd"`` or ``"adam"``)
            picks the eta_0 range (:data:`ETA0_RANGES`), the baselines
            (:data:`GROUP_BASELINES`) and the default controller (:data:`GROUP_CONTROLLERS`).
        tasks: the first ``tasks`` tasks of each suite.
        description: what the group measures.
    """

    name: str
    version: int
    members: tuple[tuple[str, str], ...]
    tasks: int
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description."""
        return {
            "name": self.name,
            "version": self.version,
            "members": [list(m) for m in self.members],
            "tasks": self.tasks,
            "description": self.description,
        }


SUITE_GROUPS: dict[str, SuiteGroup] = {
    g.name: g
    for g in (
        SuiteGroup(
            "reliability",
            1,
            (
                ("digits", "sgd"),
                ("mnist-family", "sgd"),
                ("mnist-mlp", "sgd"),
                ("resnet-mnist", "sgd"),
                ("mnist1d", "sgd"),
                ("mnist-adamw", "adam"),
                ("mnist-rmsprop", "adam"),
                ("transformer", "adam"),
            ),
            3,
            "every offline family and optimiser: does one controller hold across settings, "
            "from every eta_0 of the range, against the learning-rate-free optimisers",
        ),
    )
}
"""Every suite group, by name."""
