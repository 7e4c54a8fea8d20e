"""Time of lrgym's training step against the plain PyTorch loop a user would write, and of
whole episodes, measured side by side in one run (one torch thread, as every collector runs).

Steps. For tasks sampled from the env's family (default: StepSizeControl-MNIST-v0), times
optimiser steps of
  * naive: the plain loop a user would write for the task's network: ``nn.Conv2d`` layers in
    PyTorch's default (contiguous) memory format; forward, mean loss, backward, optimiser step;
  * plain: the same loop on lrgym's model in lrgym's memory format (``lrgym.tasks.family``:
    whole-input convs as matrix products, the format of ``choose_memory_format``), no features;
  * floor: the plain loop plus one forward of each spatial conv with the update as weights,
    the one operation exact phi1 cannot do without (its cost is the floor of the overhead);
  * minimal: the simplest complete code for exact phi1 and phi2 in a plain SGD loop (model run
    by hand, ``retain_grad`` on the layer outputs, contraction after the step);
  * lrgym: ``TrainingRun.step`` with exact features (phi1 and phi2 every step),
all from the same weights, batches and learning rate (``--lr``; a diverged run, whose steps skip
the features, would not be comparable), interleaved round by round so that machine
noise hits them alike. It prints each task's medians and the ratios lrgym/naive (what features
cost against what the loop saves) and lrgym/plain (the exact-feature overhead in the same
format), then their medians over the tasks.

Episodes. With ``--episodes N`` (default 7) it then times whole episodes (reset + step) of the
env with its defaults and splits each into its parts: the reset, the training steps, the
evaluations of E and the final test pass.

    python perf/episode_time.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import lrgym  # noqa: F401 - registers the environments
from lrgym.data.datasets import ArrayDataset, load_dataset
from lrgym.optimizers import make_optimizer
from lrgym.registration import ENV_KWARGS
from lrgym.tasks.cnn import covers_whole_input
from lrgym.tasks.family import Task, TaskFamily
from lrgym.training import TrainingRun


def naive_model(model: nn.Module) -> nn.Module:
    """The network as a user writes it: every conv an ``nn.Conv2d``, contiguous, same weights."""
    naive = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    for name, module in list(naive.named_children()):
        if isinstance(module, nn.Conv2d) and type(module) is not nn.Conv2d:
            conv = nn.Conv2d(
                module.in_channels,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                bias=module.bias is not None,
            )
            conv.load_state_dict(module.state_dict())
            setattr(naive, name, conv)
    return naive


class PlainLoop:
    """forward, mean loss, backward, optimiser step: the loop without features."""

    def __init__(self, task: Task, model: nn.Module, batches: TrainingRun) -> None:
        self.model, self.batches = model, batches
        self.optimizer = make_optimizer(task, model.parameters())
        self.loss = nn.CrossEntropyLoss()

    def step(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = self.batches.next_batch()
        loss = self.loss(self.model(inputs), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class FloorLoop(PlainLoop):
    """The plain loop plus the one operation exact phi1 cannot do without: a forward of each
    spatial conv on its input with the update as weights (no hooks, no contraction, no
    phi2). Its cost over the plain loop is the floor of the exact-feature overhead."""

    def step(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, targets = self.batches.next_batch()
        spatial = []
        for layer in self.model:  # an nn.Sequential, run by hand to keep the conv inputs
            if isinstance(layer, nn.Conv2d) and not covers_whole_input(layer, x):
                spatial.append((layer, x.detach()))
            x = layer(x)
        loss = self.loss(x, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        for layer, inputs in spatial:  # dW = -lr * momentum buffer
            layer._conv_forward(inputs, self.optimizer.state[layer.weight]["momentum_buffer"], None)


class MinimalLoop(PlainLoop):
    """The simplest complete code for exact phi1 and phi2 in a plain loop (SGD): the model run
    by hand keeping each conv/linear layer's input and output gradient, then after the step
    each layer applied to its input with the update as weights, dotted with its output
    gradient, summed over layers; phi2 from the per-example losses. No probe, no hooks on
    modules, no smoothing. It checks nothing lrgym checks (other optimisers, layer types, a
    layer called twice)."""

    def step(self, lr: float) -> tuple[float, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, targets = self.batches.next_batch()
        kept = []
        for layer in self.model:  # an nn.Sequential
            if isinstance(layer, nn.Conv2d | nn.Linear):
                inputs = x.detach()
                x = layer(x)
                x.retain_grad()
                kept.append((layer, inputs, x))
            else:
                x = layer(x)
        losses = nn.functional.cross_entropy(x, targets, reduction="none")
        self.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        self.optimizer.step()
        derivative = torch.zeros(len(targets))
        with torch.no_grad():
            for layer, inputs, out in kept:  # dW = -lr * momentum buffer: phi1 along it
                state = self.optimizer.state
                update = {name: state[p]["momentum_buffer"] for name, p in layer.named_parameters()}
                z = torch.func.functional_call(layer, update, (inputs,))
                derivative += (z * out.grad).flatten(1).sum(1)
        phi1 = float((derivative * len(targets)).double().var().log()) + 2 * math.log(lr)
        return phi1, float(losses.detach().double().var().log())


def seconds_per_step(step: Callable[[float], object], lr: float, steps: int) -> float:
    begin = time.perf_counter()
    for _ in range(steps):
        step(lr)
    return (time.perf_counter() - begin) / steps


def time_steps(
    task: Task, data: ArrayDataset, lr: float, steps: int, rounds: int
) -> dict[str, float]:
    """Median seconds per step of each loop on ``task`` at learning rate ``lr``."""
    run = TrainingRun(task, data)
    source = TrainingRun(task, data)  # the same initial model, without lrgym's hooks
    source.control.remove()
    naive_batches = TrainingRun(task, data, memory_format="contiguous")
    loops: dict[str, Callable[[float], object]] = {
        "naive": PlainLoop(task, naive_model(source.model), naive_batches).step,
        "plain": PlainLoop(task, copy.deepcopy(source.model), TrainingRun(task, data)).step,
        "floor": FloorLoop(task, copy.deepcopy(source.model), TrainingRun(task, data)).step,
        "minimal": MinimalLoop(task, copy.deepcopy(source.model), TrainingRun(task, data)).step,
        "lrgym": run.step,
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    for step in loops.values():  # warm-up: allocator, oneDNN primitive caches
        seconds_per_step(step, lr, 5)
    order = list(loops)
    for r in range(rounds):  # short blocks, order rotated: drifts of machine speed cancel
        for name in order[r % len(order) :] + order[: r % len(order)]:
            times[name].append(seconds_per_step(loops[name], lr, steps))
    if not np.isfinite(run.step(lr).loss):  # a diverged run skips its features: not comparable
        raise SystemExit(f"task {task} diverged at lr {lr}; pass a smaller --lr")
    return {name: statistics.median(t) for name, t in times.items()}


def time_episodes(env_id: str, kwargs: dict[str, object], episodes: int) -> None:
    """Whole episodes, each split into reset, training steps, evaluations of E and test pass."""
    env = gym.make(env_id, **kwargs)
    shares: dict[str, list[float]] = {}
    totals = []
    print(f"\n{env_id} episodes (reset + step), defaults:")
    for episode in range(episodes):
        seconds = {"evaluate E": 0.0, "test pass": 0.0}
        with timing_evaluations(seconds):
            start = time.perf_counter()
            _, info = env.reset(seed=episode)
            reset = time.perf_counter() - start
            _, reward, *_ = env.step(np.zeros(5, dtype=np.float32))
            total = time.perf_counter() - start
        split = {"reset": reset, **seconds}
        split = {"training steps": total - sum(split.values()), **split}
        for name, part in split.items():
            shares.setdefault(name, []).append(part / total)
        totals.append(total)
        task = info["task"]
        print(
            f"  seed {episode}: {task['steps']:>4} steps, widths {task['widths']}, reward "
            f"{float(reward):.3f}, {total:.2f} s ("
            + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in split.items())
            + ")"
        )
    print(
        f"median {statistics.median(totals):.2f} s per episode (min {min(totals):.2f}, max "
        f"{max(totals):.2f}); median shares: "
        + ", ".join(f"{k} {100 * statistics.median(v):.1f}%" for k, v in shares.items())
    )


@contextmanager
def timing_evaluations(seconds: dict[str, float]) -> Iterator[None]:
    """Adds the time of ``TrainingRun``'s evaluations of E and of the test set to ``seconds``."""
    saved = {}
    for name, part in (("evaluate_train", "evaluate E"), ("evaluate_test", "test pass")):
        original = saved[name] = getattr(TrainingRun, name)

        def timed(*args: Any, _original: Any = original, _part: str = part, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                seconds[_part] += time.perf_counter() - start

        setattr(TrainingRun, name, timed)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(TrainingRun, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="StepSizeControl-MNIST-v0")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--tasks", type=int, default=6, help="tasks sampled (seeds 0..n-1)")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per loop and round")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds per task")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of the timed steps")
    parser.add_argument("--episodes", type=int, default=7, help="whole episodes timed")
    parser.add_argument("--only-episodes", action="store_true", help="skip the step timing")
    args = parser.parse_args()

    torch.set_num_threads(1)
    kwargs = dict(ENV_KWARGS[args.env])
    names = ("dataset", "architecture", "optimizer", "momentum", "batch_size", "lr")
    family = TaskFamily(**{k: kwargs[k] for k in names if k in kwargs})  # type: ignore[arg-type]
    data = load_dataset(family.dataset, data_root=args.data_root, download=False)
    print(
        f"{args.env}: torch {torch.__version__}, 1 thread; {args.tasks} tasks x {args.rounds} "
        f"rounds x {args.steps} steps per loop, learning rate {args.lr}"
    )
    versus_naive, versus_plain, floor, minimal = [], [], [], []
    for seed in range(0 if args.only_episodes else args.tasks):
        task = replace(family.sample(np.random.default_rng(seed)), steps=10**6)
        t = time_steps(task, data, args.lr, args.steps, args.rounds)
        versus_naive.append(t["lrgym"] / t["naive"])
        versus_plain.append(t["lrgym"] / t["plain"])
        floor.append(t["floor"] / t["plain"])
        minimal.append(t["minimal"] / t["plain"])
        print(
            f"  task {seed} widths {list(task.widths)}: naive {1e3 * t['naive']:.2f} ms, plain "
            f"{1e3 * t['plain']:.2f} ms, lrgym {1e3 * t['lrgym']:.2f} ms; lrgym/naive "
            f"x{versus_naive[-1]:.3f}, lrgym/plain x{versus_plain[-1]:.3f} (minimal/plain "
            f"x{minimal[-1]:.3f}, floor/plain x{floor[-1]:.3f})"
        )
    if versus_naive:
        print(
            f"median over tasks: lrgym/naive x{statistics.median(versus_naive):.3f} (range "
            f"{min(versus_naive):.3f}-{max(versus_naive):.3f}), lrgym/plain "
            f"x{statistics.median(versus_plain):.3f} (range {min(versus_plain):.3f}-"
            f"{max(versus_plain):.3f}), minimal/plain x{statistics.median(minimal):.3f}, "
            f"floor/plain x{statistics.median(floor):.3f}"
        )
    if args.episodes:
        env_kwargs = {} if args.data_root is None else {"data_root": args.data_root}
        time_episodes(args.env, env_kwargs, args.episodes)


if __name__ == "__main__":
    main()
