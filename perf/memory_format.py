"""Which memory format trains each architecture fastest: the measurement behind
``lrgym.tasks.architectures.FASTEST_MEMORY_FORMAT``.

For each conv architecture and the image sizes it meets (the cnn family on MNIST's 28x28, on
CIFAR-10's 3x32x32 and on the 8x8 digits; the fixed LeNet; CIFAR quick), samples tasks from the
registered env's family and times lrgym's training step with exact features
(``TrainingRun.step``) in the contiguous and in the channels-last format, from the same weights
and batches, interleaved in short blocks so that drifts of machine speed cancel. Prints the
median time per step of each format and the ratio contiguous / channels-last (above 1: channels-
last is faster) per task and per architecture. One torch thread, as every collector runs.

CIFAR-10 is not needed on disk: its timing uses random images of CIFAR-10's shape.

    python perf/memory_format.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from lrgym.data.datasets import ArrayDataset, load_dataset
from lrgym.tasks.family import Task, TaskFamily
from lrgym.training import TrainingRun

CASES = {  # name: (dataset, architecture)
    "cnn on MNIST 28x28": ("mnist", "cnn"),
    "cnn on CIFAR-10 3x32x32": ("cifar10", "cnn"),
    "cnn on digits 8x8": ("digits", "cnn"),
    "lenet on MNIST": ("mnist", "lenet"),
    "cifar-quick on CIFAR-10": ("cifar10", "cifar-quick"),
}


def random_cifar10(n: int = 5000) -> ArrayDataset:
    """Random images and labels of CIFAR-10's shapes (timing only)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return ArrayDataset(
        name="cifar10",
        train_x=images,
        train_y=labels,
        test_x=images[:100],
        test_y=labels[:100],
        offset=torch.full((3,), 127.5),
        scale=torch.full((3,), 1 / 64),
        num_classes=10,
    )


def step_times(task: Task, data: ArrayDataset, steps: int, rounds: int) -> dict[str, float]:
    """Median seconds per featured step in each format."""
    runs = {f: TrainingRun(task, data, memory_format=f) for f in ("contiguous", "channels_last")}
    lr = min(task.eta0, 0.01)  # a rate at which no run diverges (a diverged step is cheaper)
    for run in runs.values():
        for _ in range(3):
            run.step(lr)
    times: dict[str, list[float]] = {f: [] for f in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % 2 :] + names[: r % 2]:
            start = time.perf_counter()
            for _ in range(steps):
                run = runs[name]
                if not np.isfinite(run.step(lr).loss):
                    raise SystemExit(f"task {task} diverged at lr {lr}; pick other seeds")
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--tasks", type=int, default=4, help="tasks per case (seeds 0..n-1)")
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    parser.add_argument("--rounds", type=int, default=20, help="blocks per format and task")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, device cpu; ratio = contiguous / channels-last")
    datasets: dict[str, ArrayDataset] = {}
    verdicts = {}
    for case, (dataset, architecture) in CASES.items():
        if dataset not in datasets:
            datasets[dataset] = (
                random_cifar10()
                if dataset == "cifar10"
                else load_dataset(dataset, data_root=args.data_root, download=False)
            )
        family = TaskFamily(dataset=dataset, architecture=architecture)
        ratios = []
        for seed in range(args.tasks):
            task = replace(family.sample(np.random.default_rng(seed)), steps=10**6)
            t = step_times(task, datasets[dataset], args.steps, args.rounds)
            ratios.append(t["contiguous"] / t["channels_last"])
            print(
                f"  {case}, widths {list(task.widths)}: contiguous {1e3 * t['contiguous']:.2f} ms"
                f", channels-last {1e3 * t['channels_last']:.2f} ms, ratio x{ratios[-1]:.2f}"
            )
        median = statistics.median(ratios)
        verdicts[case] = "channels_last" if median > 1 else "contiguous"
        print(f"{case}: median ratio x{median:.2f} -> {verdicts[case]}")
    print("fastest: " + ", ".join(f"{case}: {choice}" for case, choice in verdicts.items()))


if __name__ == "__main__":
    main()
