"""Golden episodes: fixed seeds and actions on every registered env id, recorded by an earlier
version of lrgym (``tests/golden/episodes.json``) and replayed here.

They pin behaviour across refactors: the reset observation, the reward (or return) and the
final training loss of each episode, and the learning rates ``ControlledLR`` sets in a user's
loop. On the CPU that recorded them (same processor model and torch kernel level) the values
must be bit-identical. On another CPU torch may pick other kernels, which round differently,
and rounding differences grow over a training run, so there the comparison is relative
(``CROSS_CPU_RTOL``) and says so.

Re-record only when behaviour is meant to change (and bump the env's ``-vN``)::

    python tests/test_golden.py --record
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrgym

GOLDEN = Path(__file__).resolve().parent / "golden" / "episodes.json"
CROSS_CPU_RTOL = 1e-3
"""Relative tolerance where the recording CPU differs from this one (see the module doc)."""

SEEDS = (0, 1)
BANDIT_ACTIONS = {
    "zero": [0.0, 0.0, 0.0, 0.0, 0.0],
    "mixed": [0.1, -0.2, 0.05, -0.05, 0.15],
}
DYNAMIC_ACTIONS: dict[str, list[float] | str] = {
    "low": [-0.3],
    "high": [0.2],
    "controller": "mnist-sgd",
}
SMALL = {"steps": [30, 40], "test_size": 300, "eval_size": 300}
"""Overrides that keep the MNIST-size ids cheap; Digits and Toy run their defaults."""
SMALL_SEQUENCES = {"steps": [30, 40], "test_size": 64, "eval_size": 64}
"""The transformer ids' overrides: a sequence is 64 tokens, so 64 of them evaluate as many
predictions as 4096 images."""


def cpu_signature() -> str:
    """What decides torch's CPU kernels: the processor model, its instruction-set flags (oneDNN
    picks kernels by them) and the SIMD level and version of torch."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip()
                if key == "model name" and not flags:
                    model = line.split(":", 1)[1].strip()
                elif key == "flags":
                    flags = hashlib.sha256(line.split(":", 1)[1].strip().encode()).hexdigest()[:12]
                    break
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model} | flags {flags} | {capability} | torch {torch.__version__}"


def _env_kwargs(env_id: str, mnist_root: Path, fake_root: Path) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    dataset = gym.spec(env_id).kwargs["dataset"]
    if dataset == "mnist":
        kwargs["data_root"] = str(mnist_root)
    elif dataset in ("fashion_mnist", "cifar10"):
        kwargs["data_root"] = str(fake_root)
        kwargs["subset_fraction"] = [0.5, 1.0]
    if dataset == "grammar":
        kwargs.update(SMALL_SEQUENCES)
    elif dataset not in ("digits", "toy"):
        kwargs.update(SMALL)
    return kwargs


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def play(
    env_id: str, seed: int, action: list[float] | str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """One episode: the reset observation, the reward (a dynamic env's return) and the final
    training loss. A string action names a pretrained controller that drives a dynamic env
    through ``ControllerWrapper``."""
    env = gym.make(env_id, **kwargs)
    if isinstance(action, str):
        from lrgym.envs import ControllerWrapper

        env = ControllerWrapper(env, action)
    obs, _ = env.reset(seed=seed)
    total, done, info = 0.0, False, {}
    while not done:
        step_action = None if isinstance(action, str) else np.asarray(action, dtype=np.float32)
        _, reward, terminated, truncated, info = env.step(step_action)
        total += float(reward)
        done = terminated or truncated
    env.close()
    return {
        "obs": _floats(obs),
        "reward": total,
        "final_train_loss": float(info["final_train_loss"]),
    }


def controlled_lr_rates() -> list[float]:
    """The rates the pretrained ``mnist-sgd`` controller sets in a hand-written loop."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (256,), generator=generator)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    control = lrgym.ControlledLR(model, optimizer, "mnist-sgd")
    rates = []
    for step in range(25):
        batch = torch.arange(32) + 32 * (step % 8)
        optimizer.zero_grad()
        losses = F.cross_entropy(model(x[batch]), y[batch], reduction="none")
        losses.mean().backward()
        rates.append(float(control.step(losses)))
    return rates


ONE_SEED = ("ResNet-MNIST", "Transformer", "MNIST1D", "MNIST-AdamW")
"""Families whose ids pin seed 0 only: their episodes cost the most (a transformer episode
4-11 s even on ``SMALL``), one seed already runs every code path of a family, and the slow
tier keeps within its budget."""


def _seeds(env_id: str) -> tuple[int, ...]:
    return SEEDS[:1] if any(env_id.endswith(f"-{name}-v0") for name in ONE_SEED) else SEEDS


def cases() -> list[tuple[str, int, str]]:
    actions = [*BANDIT_ACTIONS, *DYNAMIC_ACTIONS]
    ids = [*lrgym.ENV_KWARGS, *lrgym.DYNAMIC_ENV_KWARGS]
    return [
        (env_id, seed, name)
        for env_id in ids
        for seed in _seeds(env_id)
        for name in actions
        if (name in DYNAMIC_ACTIONS) == (env_id in lrgym.DYNAMIC_ENV_KWARGS)
        and (name != "controller" or "RMSprop" not in env_id)
    ]


CHEAP = ("StepSizeControl-Digits-v0", "StepSizeControl-Toy-v0")
"""Ids whose golden episodes also run in the fast tier (``-m "not slow"``)."""


def _marked(env_id: str, seed: int, name: str) -> Any:
    cheap = any(env_id.endswith(cheap_id.removeprefix("StepSizeControl-")) for cheap_id in CHEAP)
    return pytest.param(env_id, seed, name, marks=() if cheap else pytest.mark.slow)


def _action(name: str) -> list[float] | str:
    return {**BANDIT_ACTIONS, **DYNAMIC_ACTIONS}[name]


def _key(env_id: str, seed: int, name: str) -> str:
    return f"{env_id}|seed={seed}|action={name}"


def _same(recorded: Any, now: Any, exact: bool) -> None:
    recorded_array, now_array = np.asarray(recorded), np.asarray(now)
    if exact:
        np.testing.assert_array_equal(now_array, recorded_array)
    else:
        np.testing.assert_allclose(now_array, recorded_array, rtol=CROSS_CPU_RTOL, atol=1e-6)


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize(("env_id", "seed", "action"), [_marked(*case) for case in cases()])
def test_registered_env_replays_its_golden_episode(
    env_id: str,
    seed: int,
    action: str,
    golden: dict[str, Any],
    mnist_root: Path,
    fake_root: Path,
) -> None:
    recorded = golden["episodes"][_key(env_id, seed, action)]
    if recorded.get("mnist") == "real" and mnist_root == fake_root:
        pytest.skip("recorded on the real MNIST files, which are not beside this checkout")
    exact = golden["cpu"] == cpu_signature()
    now = play(env_id, seed, _action(action), _env_kwargs(env_id, mnist_root, fake_root))
    for field in ("obs", "reward", "final_train_loss"):
        _same(recorded[field], now[field], exact)


def test_controlled_lr_replays_its_golden_rates(golden: dict[str, Any]) -> None:
    _same(golden["controlled_lr"], controlled_lr_rates(), golden["cpu"] == cpu_signature())


def record() -> None:
    """Write ``tests/golden/episodes.json`` with this lrgym on this CPU."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tempfile

    from conftest import REAL_DATA, write_fake_cifar10, write_fake_mnist

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        fake = Path(tmp)
        write_fake_mnist(fake, "MNIST")
        write_fake_mnist(fake, "FashionMNIST")
        write_fake_cifar10(fake)
        real = (REAL_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
        mnist = REAL_DATA if real else fake
        episodes = {}
        for env_id, seed, name in cases():
            kwargs = _env_kwargs(env_id, mnist, fake)
            episode = play(env_id, seed, _action(name), kwargs)
            if kwargs.get("data_root") == str(mnist) and real:
                episode["mnist"] = "real"
            episodes[_key(env_id, seed, name)] = episode
            print(_key(env_id, seed, name), episode["reward"], flush=True)
    document = {
        "lrgym": lrgym.__version__,
        "cpu": cpu_signature(),
        "episodes": episodes,
        "controlled_lr": controlled_lr_rates(),
    }
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(document, indent=1) + "\n")
    assert all(math.isfinite(e["reward"]) for e in episodes.values())


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python tests/test_golden.py --record")
    record()
