"""Cost of the paper's features in the training loop, measured side by side in one run.

For tasks sampled from StepSizeControl-MNIST-v0's family, times optimiser steps of
  * plain training: forward, mean loss, backward, optimiser step, constant learning rate;
  * the lrgym loop with exact features (phi1 every step);
  * the lrgym loop with phi1 every k steps,
interleaved round by round so machine noise hits all modes alike, and prints each mode's median
time per step as a ratio to plain. With a constant learning rate all modes follow the same weight
trajectory, so it also prints the correlation of every-k's smoothed phi1 with exact's.

    python benchmarks/feature_overhead.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from lrgym.data import load_dataset
from lrgym.features import FeatureConfig
from lrgym.registration import ENV_KWARGS
from lrgym.tasks import TaskFamily, build_model, make_optimizer
from lrgym.training import TrainingRun


def plain_steps(run: TrainingRun, steps: int) -> float:
    """Seconds per step of a plain loop over the same model, data and batches."""
    task = run.task
    model = build_model(
        task, run.data.input_shape, run.data.num_classes, torch.Generator().manual_seed(task.seed)
    )
    optimizer = make_optimizer(task, model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(steps):
        inputs, targets = run._batch()
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def lrgym_steps(run: TrainingRun, steps: int) -> tuple[float, np.ndarray]:
    """Seconds per step of the lrgym loop, and the smoothed features after each step."""
    trace = []
    start = time.perf_counter()
    for _ in range(steps):
        run.step(run.task.eta0)
        trace.append(run.smoother.vector())
    return (time.perf_counter() - start) / steps, np.array(trace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--tasks", type=int, default=3, help="tasks sampled (seeds 0..n-1)")
    parser.add_argument("--steps", type=int, default=200, help="steps timed per mode and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per task")
    parser.add_argument("--every", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--lr", type=float, default=0.01, help="constant learning rate")
    args = parser.parse_args()

    kwargs = ENV_KWARGS["StepSizeControl-MNIST-v0"]
    family = TaskFamily(
        **{
            k: kwargs[k]
            for k in ("dataset", "architecture", "optimizer", "momentum", "batch_size", "lr")
        }
    )
    data = load_dataset("mnist", data_root=args.data_root, download=False)
    modes = ["plain", "exact", *[f"every-{k}" for k in args.every]]
    ratios: dict[str, list[float]] = {m: [] for m in modes[1:]}
    correlations: dict[str, list[float]] = {m: [] for m in modes[2:]}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.tasks} tasks x {args.rounds} rounds x {args.steps} steps"
    )
    for seed in range(args.tasks):
        task = family.sample(np.random.default_rng(seed))
        # a fixed learning rate that trains every sampled net without diverging: the comparison
        # is about cost and agreement, not about this task's eta_0
        task = replace(task, eta0=args.lr, steps=args.steps * args.rounds)
        configs = {"exact": FeatureConfig(every=1)}
        configs.update({f"every-{k}": FeatureConfig(every=k) for k in args.every})
        runs = {m: TrainingRun(task, data, features=c) for m, c in configs.items()}
        plain_run = TrainingRun(task, data)
        times: dict[str, list[float]] = {m: [] for m in modes}
        traces: dict[str, list[np.ndarray]] = {m: [] for m in configs}
        plain_steps(plain_run, 20)  # warm-up
        for _ in range(args.rounds):
            times["plain"].append(plain_steps(plain_run, args.steps))
            for mode, run in runs.items():
                seconds, trace = lrgym_steps(run, args.steps)
                times[mode].append(seconds)
                traces[mode].append(trace)
        base = statistics.median(times["plain"])
        exact = np.concatenate(traces["exact"])
        line = [f"task {seed} widths={list(task.widths)}: plain {base * 1e3:.2f} ms/step"]
        for mode in modes[1:]:
            ratio = statistics.median(times[mode]) / base
            ratios[mode].append(ratio)
            line.append(f"{mode} x{ratio:.3f}")
            if mode != "exact":
                other = np.concatenate(traces[mode])
                corr = float(np.corrcoef(exact[:, 0], other[:, 0])[0, 1])
                corr_u = float(np.corrcoef(exact[:, 2], other[:, 2])[0, 1])
                correlations[mode].append(corr)
                line.append(f"(corr avg_phi1 {corr:.4f}, unc_phi1 {corr_u:.4f})")
        print("  ".join(line))
    print("median over tasks, time per step relative to plain training:")
    for mode in modes[1:]:
        extra = ""
        if mode in correlations:
            extra = f"   min correlation of smoothed phi1 with exact {min(correlations[mode]):.4f}"
        print(f"  {mode:>9}: x{statistics.median(ratios[mode]):.3f}{extra}")


if __name__ == "__main__":
    main()
