"""Cost of the paper's features in the training loop, measured side by side in one run.

For tasks sampled from an env's family (``--env``, default StepSizeControl-MNIST-v0; e.g.
StepSizeControl-Transformer-v0, StepSizeControl-ResNet-MNIST-v0), times optimiser steps of
  * plain training: forward, mean loss, backward, optimiser step (no features at all);
  * the lrgym loop with exact features (phi1 every step);
  * the lrgym loop with phi1 exact every k steps, estimated in between ("dense", "last" or
    "hold", see lrgym.features.FeatureConfig),
interleaved round by round so machine noise hits all modes alike, and prints each mode's median
time per step as a ratio to plain training.

Every mode follows the same learning-rate sequence, so all follow the same weight trajectory and
their smoothed features can be compared: the script prints the correlation over the run of each
every-k mode's smoothed phi1 (avg_phi1, and unc_phi1) with exact's, for three sequences:
  * constant: eta = --lr throughout (the hard case: phi1 moves only with the batches);
  * annealed: cosine decay from --lr to --lr/100 over the run (as a controller that anneals);
  * task: the task's own sampled eta_0 throughout; here the correlation is also pooled over all
    tasks (the spread of the controller's input across the task family).
Timing ratios are medians over all tasks and sequences.

    python perf/feature_overhead.py --data-root ../shared/data
    python perf/feature_overhead.py --env StepSizeControl-Transformer-v0 --lr 1e-3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from lrgym.data.datasets import load_dataset
from lrgym.features import ESTIMATES, FeatureConfig, per_example_losses
from lrgym.registration import ENV_KWARGS
from lrgym.tasks.family import TaskFamily
from lrgym.training import TrainingRun

Schedule = Callable[[int], float]


def plain_steps(run: TrainingRun, steps: int, schedule: Schedule, start: int) -> float:
    """Seconds per step of a plain loop over a copy of the task's model and its batches."""
    model = run.model
    optimizer = run.optimizer
    begin = time.perf_counter()
    for t in range(start, start + steps):
        for group in optimizer.param_groups:
            group["lr"] = schedule(t)
        inputs, targets = run.next_batch()
        loss = per_example_losses(model(inputs), targets).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - begin) / steps


def lrgym_steps(
    run: TrainingRun, steps: int, schedule: Schedule, start: int
) -> tuple[float, np.ndarray]:
    """Seconds per step of the lrgym loop, and the smoothed features after each step (NaN
    once the run diverged)."""
    trace = []
    begin = time.perf_counter()
    for t in range(start, start + steps):
        loss = run.step(schedule(t)).loss
        trace.append(run.control.smoother.vector() if math.isfinite(loss) else np.full(5, np.nan))
    return (time.perf_counter() - begin) / steps, np.array(trace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--env", default="StepSizeControl-MNIST-v0", help="a registered bandit id")
    parser.add_argument("--tasks", type=int, default=4, help="tasks sampled (seeds 0..n-1)")
    parser.add_argument("--steps", type=int, default=100, help="steps timed per mode and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per task")
    parser.add_argument("--every", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--lr", type=float, default=0.01, help="(initial) learning rate")
    args = parser.parse_args()

    kwargs = ENV_KWARGS[args.env]
    names = ("dataset", "architecture", "widths", "norm", "optimizer", "momentum", "batch_size")
    family = TaskFamily(**{k: kwargs[k] for k in names}, lr=kwargs["lr"])
    data = load_dataset(family.dataset, data_root=args.data_root, download=False)
    configs = {"exact": FeatureConfig()}
    for k in args.every:
        for estimate in ESTIMATES:
            configs[f"every-{k}-{estimate}"] = FeatureConfig(every=k, estimate=estimate)
    total = args.steps * args.rounds
    schedules: dict[str, Schedule] = {
        "constant": lambda t: args.lr,
        "annealed": lambda t: args.lr * (0.01 + 0.99 * (1 + math.cos(math.pi * t / total)) / 2),
        "task": lambda t: math.nan,  # replaced by the task's eta_0 below
    }
    pooled: dict[str, list[np.ndarray]] = {m: [] for m in configs}
    ratios: dict[str, list[float]] = {m: [] for m in configs}
    corr: dict[tuple[str, str], list[float]] = {}
    print(
        f"{args.env}: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.tasks} tasks x {args.rounds} rounds x {args.steps} steps per mode, lr {args.lr}"
    )
    for seed in range(args.tasks):
        task = replace(family.sample(np.random.default_rng(seed)), steps=total)
        for name, schedule in schedules.items():
            if name == "task":
                schedule = lambda t, eta0=task.eta0: eta0  # noqa: E731
            runs = {m: TrainingRun(task, data, features=c) for m, c in configs.items()}
            plain = TrainingRun(task, data)  # its model and optimiser, driven plainly
            plain.control.remove()  # without lrgym's hooks
            times: dict[str, list[float]] = {m: [] for m in ["plain", *configs]}
            traces: dict[str, list[np.ndarray]] = {m: [] for m in configs}
            for r in range(args.rounds):
                start = r * args.steps
                times["plain"].append(plain_steps(plain, args.steps, schedule, start))
                for mode, run in runs.items():
                    seconds, trace = lrgym_steps(run, args.steps, schedule, start)
                    times[mode].append(seconds)
                    traces[mode].append(trace)
            base = statistics.median(times["plain"])
            exact = np.concatenate(traces["exact"])
            if not np.all(np.isfinite(exact)):
                print(f"task {seed} {name}: diverged at eta {schedule(0):.3g}, left out")
                continue
            if name == "task":
                for mode in configs:
                    pooled[mode].append(np.concatenate(traces[mode]))
            cells = [
                f"task {seed} {list(task.widths)} {name} (eta {schedule(0):.2g}): "
                f"plain {base * 1e3:.2f} ms"
            ]
            for mode in configs:
                ratio = statistics.median(times[mode]) / base
                ratios[mode].append(ratio)
                cell = f"{mode} x{ratio:.3f}"
                if mode != "exact":
                    other = np.concatenate(traces[mode])
                    c_avg = float(np.corrcoef(exact[:, 0], other[:, 0])[0, 1])
                    c_unc = float(np.corrcoef(exact[:, 2], other[:, 2])[0, 1])
                    corr.setdefault((mode, name), []).append(c_avg)
                    cell += f" (r {c_avg:.4f}/{c_unc:.4f})"
                cells.append(cell)
            print("\n    ".join(cells))
    print("\nsummary: median time per step / plain (over tasks and sequences); minimum")
    print("correlation of smoothed phi1 (avg_phi1) with exact, per learning-rate sequence")
    exact_pool = np.concatenate(pooled["exact"]) if pooled["exact"] else None
    for mode in configs:
        line = f"  {mode:>16}: x{statistics.median(ratios[mode]):.3f}"
        for name in schedules:
            if (mode, name) in corr:
                line += f"   {name} r >= {min(corr[(mode, name)]):.4f}"
        if mode != "exact" and exact_pool is not None:
            pool = np.concatenate(pooled[mode])
            line += (
                f"   pooled over tasks r = {np.corrcoef(exact_pool[:, 0], pool[:, 0])[0, 1]:.4f}"
            )
        print(line)


if __name__ == "__main__":
    main()
