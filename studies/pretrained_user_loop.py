"""A pretrained controller in a user's own training loop on real MNIST, against constant rates.

The loop is what a user writes: a model outside lrgym's task family (``user_models.Net``: a
small CNN with a residual block, with batch normalisation by default, ``--model bn-resnet``, or
without, ``--model resnet``), ``torch.optim.SGD`` with momentum 0.9,
batches of 64 drawn from all 60,000 training images, ``--steps`` steps. From each initial
learning rate of the grid (``--grid``, default 1e-5 to 1 in half decades: five decades) it runs

  * ``constant``: that learning rate throughout;
  * ``controlled``: ``lrgym.ControlledLR(model, optimizer, --controller)`` starting from it,

for ``--seeds`` seeds (initial weights and batch order; the same for both). Final training loss
is the mean cross-entropy on a fixed sample of ``--eval-size`` training images with the model in
eval mode (BatchNorm's running statistics), test accuracy on all 10,000 test images. A run whose
loss becomes non-finite is stopped and counted as diverged (its loss: the initial one).

Prints, per initial rate, the geometric mean over seeds of the final training loss of both, and
the best constant rate of the grid; writes every run to ``--out`` (CSV).

    python studies/pretrained_user_loop.py --data-root ../shared/data --out runs/user-loop.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

GRID = [10 ** (e / 2) for e in range(-10, 1)]


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one model from one initial rate; return its row."""
    import torch
    import torch.nn.functional as F
    from user_models import Net

    import lrgym
    from lrgym.data.datasets import load_dataset

    torch.set_num_threads(1)
    data = load_dataset("mnist", data_root=job["data_root"])
    x_all, y_all = data.normalise(data.train_x), data.train_y
    gen = torch.Generator().manual_seed(job["seed"])
    torch.manual_seed(job["seed"])
    model = Net(batchnorm=job["model"] == "bn-resnet")
    optimizer = torch.optim.SGD(model.parameters(), lr=job["eta0"], momentum=0.9)
    control = None
    if job["method"] == "controlled":
        control = lrgym.ControlledLR(model, optimizer, job["controller"])
    eval_idx = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(0))
    eval_x, eval_y = x_all[eval_idx[: job["eval_size"]]], y_all[eval_idx[: job["eval_size"]]]

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(c) for c in x.split(1000)])
        model.train()
        loss = float(F.cross_entropy(logits, y))
        return loss, float((logits.argmax(1) == y).float().mean())

    initial, _ = evaluate(eval_x, eval_y)
    start = time.perf_counter()
    diverged, rates = False, []
    for _ in range(job["steps"]):
        idx = torch.randint(0, x_all.shape[0], (job["batch_size"],), generator=gen)
        optimizer.zero_grad(set_to_none=True)
        losses = F.cross_entropy(model(x_all[idx]), y_all[idx], reduction="none")
        if not torch.isfinite(losses).all():
            diverged = True
            break
        losses.mean().backward()
        rates.append(optimizer.param_groups[0]["lr"])
        if control is None:
            optimizer.step()
        else:
            control.step(losses)
    seconds = time.perf_counter() - start
    final, accuracy = (initial, 0.0) if diverged else evaluate(eval_x, eval_y)
    if not math.isfinite(final):
        final, accuracy, diverged = initial, 0.0, True
    test_x, test_y = data.normalise(data.test_x), data.test_y
    test_accuracy = 0.0 if diverged else evaluate(test_x, test_y)[1]
    return {
        **{k: job[k] for k in ("method", "eta0", "seed")},
        "final_train_loss": final,
        "initial_train_loss": initial,
        "train_accuracy": accuracy,
        "test_accuracy": test_accuracy,
        "diverged": diverged,
        "median_lr": float(np.median(rates)) if rates else math.nan,
        "last_lr": rates[-1] if rates else math.nan,
        "seconds": seconds,
    }


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--controller", default="mnist-sgd")
    parser.add_argument("--model", choices=("bn-resnet", "resnet"), default="bn-resnet")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-size", type=int, default=5000)
    parser.add_argument("--grid", type=float, nargs="+", default=GRID)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/user-loop.csv"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    jobs = [
        {
            "method": method,
            "eta0": eta0,
            "seed": seed,
            "controller": args.controller,
            "model": args.model,
            "data_root": args.data_root,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "eval_size": args.eval_size,
        }
        for eta0 in args.grid
        for seed in range(args.seeds)
        for method in ("controlled", "constant")
    ]
    start = time.perf_counter()
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers) as pool:
        for i, row in enumerate(pool.imap_unordered(run_one, jobs), start=1):
            rows.append(row)
            print(
                f"[{i}/{len(jobs)}] {row['method']:10s} eta0 {row['eta0']:.0e} seed "
                f"{row['seed']}: loss {row['final_train_loss']:.4g}"
                f"{' (diverged)' if row['diverged'] else ''}",
                flush=True,
            )
            rows.sort(key=lambda r: (r["eta0"], r["method"], r["seed"]))
            partial = args.out.with_suffix(".partial")
            with open(partial, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            partial.replace(args.out)  # a crash keeps every finished row
    wall = time.perf_counter() - start

    def cell(method: str, eta0: float) -> list[dict[str, Any]]:
        return [r for r in rows if r["method"] == method and r["eta0"] == eta0]

    print(
        f"\n{args.controller} in a user loop: {args.model} on MNIST, SGD momentum 0.9, "
        f"{args.steps} steps of {args.batch_size}, {args.seeds} seeds; wall {wall:.0f} s"
    )
    print("| eta0 | constant: final train loss (geo. mean) | diverged | controlled | diverged |")
    print("|---|---|---|---|---|")
    means = {}
    for eta0 in args.grid:
        line = [f"{eta0:.0e}"]
        for method in ("constant", "controlled"):
            runs = cell(method, eta0)
            means[method, eta0] = geomean([r["final_train_loss"] for r in runs])
            line += [f"{means[method, eta0]:.4g}", str(sum(r["diverged"] for r in runs))]
        print("| " + " | ".join(line) + " |")
    best = min(args.grid, key=lambda e: means["constant", e])
    best_loss = means["constant", best]
    print(f"\nbest constant: {best:.0e} with {best_loss:.4g}")
    for method in ("constant", "controlled"):
        within = [e for e in args.grid if means[method, e] <= 2 * best_loss]
        print(
            f"{method}: within 2x of the best constant from {len(within)}/{len(args.grid)} "
            f"initial rates; geometric mean over the grid "
            f"{geomean([means[method, e] for e in args.grid]):.4g}"
        )


if __name__ == "__main__":
    main()
