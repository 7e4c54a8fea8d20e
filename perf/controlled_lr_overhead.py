"""Cost of lrgym.ControlledLR in a user's own training loop, measured side by side in one run.

A loop as a user writes it (zero_grad, forward, per-example cross-entropy, backward of its
mean, step) on MNIST, for two models outside lrgym's task family:

  * ``bn-resnet``: a small CNN with batch normalisation and a residual block (BatchNorm in train
    mode: phi1 needs forward-mode AD of the model, see lrgym.control);
  * ``plain-cnn``: the same network without batch normalisation (phi1 from the conv/linear
    contraction alone, as in lrgym's own task family);

each driven by
  * ``constant``: ``optimizer.step()`` at a constant learning rate (no features);
  * ``exact``: ``control.step(losses)`` with phi1 every step;
  * ``every10``: ``control.step(losses)`` with ``feature_every=10`` (the "dense" estimate in
    between);
  * ``every10-hold``: the same with the "hold" estimate;
  * ``floor`` (``bn-resnet`` only): the simplest code for exact phi1 and phi2 of a BatchNorm
    model in train mode, written into the loop by hand: keep the parameters, the output and its
    gradient, step, then one ``torch.func.jvp`` of the model along ``dw`` (the batch held
    fixed) dotted with the output gradient, and the two variances. No hooks, no checks, no
    smoothing: what any exact method pays at least.

Blocks of ``--steps`` steps of each variant are interleaved round by round, order rotated, so
machine noise hits all alike. Prints the median time per step of each and its ratio to the
constant loop of the same model, and the median of the per-round ratios.

    python perf/controlled_lr_overhead.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import lrgym
from lrgym.data.datasets import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))
from user_models import Net  # the models live beside the studies that use them

from lrgym.features import FeatureConfig


def make_loop(
    variant: str,
    batchnorm: bool,
    batches: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    lr: float,
) -> Callable[[int], None]:
    torch.manual_seed(0)
    model = Net(batchnorm)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    control = None
    if variant not in ("constant", "floor"):
        every = 1 if variant == "exact" else 10
        estimate = "hold" if variant.endswith("hold") else "dense"
        config = FeatureConfig(every=every, estimate=estimate)
        # a constant rate, so that every variant follows the same kind of trajectory
        control = lrgym.ControlledLR(
            model, optimizer, lrgym.ConstantController(lr), features=config
        )

    names = [n for n, _ in model.named_parameters()]

    def floor_step(x: torch.Tensor, y: torch.Tensor) -> None:
        before = [p.detach().clone() for p in model.parameters()]
        buffers = dict(model.named_buffers())
        output = model(x)
        output.retain_grad()
        losses = F.cross_entropy(output, y, reduction="none")
        optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        optimizer.step()
        dw = [p.detach() - w for p, w in zip(model.parameters(), before, strict=True)]

        def out(*w: torch.Tensor) -> torch.Tensor:
            state = {
                **{k: b.clone() for k, b in buffers.items()},
                **dict(zip(names, w, strict=True)),
            }
            return torch.func.functional_call(model, state, (x,))

        _, tangent = torch.func.jvp(out, tuple(before), tuple(dw))
        df = x.shape[0] * (tangent * output.grad).sum(dim=1)
        torch.log(df.double().var() + 1e-30), torch.log(losses.detach().double().var() + 1e-30)

    def steps(n: int) -> None:
        if variant == "floor":
            for _ in range(n):
                floor_step(*batches())
            return
        for _ in range(n):
            x, y = batches()
            optimizer.zero_grad(set_to_none=True)
            losses = F.cross_entropy(model(x), y, reduction="none")
            losses.mean().backward()
            if control is None:
                optimizer.step()
            else:
                control.step(losses)

    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--steps", type=int, default=20, help="steps per block")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("mnist", data_root=args.data_root)
    x_all, y_all = data.normalise(data.train_x), data.train_y
    gen = torch.Generator().manual_seed(0)

    def batches() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, x_all.shape[0], (args.batch_size,), generator=gen)
        return x_all[idx], y_all[idx]

    print(
        f"torch {torch.__version__}, {args.threads} thread(s), MNIST batch {args.batch_size}, "
        f"SGD momentum 0.9, {args.rounds} rounds x {args.steps} steps per variant"
    )
    print("| model | variant | median ms/step | ratio to constant | median per-round ratio |")
    print("|---|---|---|---|---|")
    for name, batchnorm in (("bn-resnet", True), ("plain-cnn", False)):
        variants = ["constant", "exact", "every10", "every10-hold"] + (
            ["floor"] if batchnorm else []
        )
        loops = {v: make_loop(v, batchnorm, batches, args.lr) for v in variants}
        times: dict[str, list[float]] = {v: [] for v in variants}
        for loop in loops.values():  # warm-up: allocator, oneDNN primitive caches
            loop(5)
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                start = time.perf_counter()
                loops[v](args.steps)
                times[v].append((time.perf_counter() - start) / args.steps)
        base = statistics.median(times["constant"])
        for v in variants:
            per_round = [t / c for t, c in zip(times[v], times["constant"], strict=True)]
            median = statistics.median(times[v])
            print(
                f"| {name} | {v} | {1000 * median:.2f} | {median / base:.2f} | "
                f"{statistics.median(per_round):.2f} |"
            )


if __name__ == "__main__":
    main()
