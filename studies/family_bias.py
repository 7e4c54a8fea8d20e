"""Does one theta serve every family? The per-task best constant learning rate of each family of
``StepSizeControl-Mixture-v0``, beside the paper's starting features, and how well one rule of
those features predicts it across families.

For each family (``--include``/``--exclude`` as the env takes them), ``--tasks`` training tasks
(seeds 0, 1, ...; the benchmark's held-out seeds start at 2**32) each train at every constant
rate of the half-decade grid ``--grid`` (eta_0 set to the rate, so the run is constant from its
first step: what the controller's bias alone, ``theta = [0, 0, 0, 0, log eta]``, sets). Written:
a CSV of every run, and a Markdown report:

* per family: the best single constant over its tasks (the family's "bias", learned
  separately), the spread of the per-task best rates, and the starting features ``phi1``,
  ``phi2`` that a controller sees at the task's own eta_0 (``reset``'s observation);
* one rule for all: ``log eta* = w1 phi1 + w2 phi2 + b`` fitted by least squares over every
  task, and leave-one-family-out (fitted without the family, scored on it): the median
  absolute error in decades and the share of tasks within a factor 2 of their best rate's
  loss. Beside it the null rule: the best single constant over the other families;
* with ``--at-best`` (after the grid): each task rerun at its best rate, and the same tables
  for what the features read once the rate has settled (:func:`fixed_point_report`).

    python studies/family_bias.py --data-root ../shared/data --tasks 4 --workers 2 \\
        --out docs/mixture/family_bias
    python studies/family_bias.py --data-root ../shared/data --workers 2 --at-best \\
        --out docs/mixture/family_bias
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import lrgym  # noqa: F401 - registers the environments
from lrgym.controllers import LogLinearController
from lrgym.registration import MIXTURE_ID
from lrgym_agents.pools import make_pool

FIELDS = (
    "family",
    "seed",
    "eta0_drawn",
    "phi1",
    "phi2",
    "eta",
    "final_train_loss",
    "diverged",
    "phi1_run",
    "phi2_run",
    "controller",
)


def build(kwargs: dict[str, Any]) -> gym.Env:
    """A worker's state: the mixture env."""
    return gym.make(MIXTURE_ID, **kwargs)


def run(env: gym.Env, job: tuple[Any, ...]) -> dict[str, Any]:
    """One task of ``family`` (seed ``seed``) trained at the constant rate ``eta``; with a
    fourth entry ``theta``, trained by the log-linear controller ``theta`` from ``eta`` or, where
    ``eta`` is ``None``, from the task's own eta_0 (the row's ``eta``), with a fifth,
    ``max_change``, in the bounded form (``LogLinearController(max_change=...)``), and with a
    sixth ``True``, from the probe start (``start="probe"``: eta_0 is not used, the row's
    ``eta`` is the first step's rate); a seventh names the controller in the row (default
    ``"theta"``)."""
    defaults = (None, None, None, None, None, False, "theta")
    family, seed, eta, theta, max_change, probe, label = (*job, *defaults[len(job) :])
    obs, info = env.reset(seed=seed, options={"family": family})
    base: Any = env.unwrapped
    if theta is None or eta is not None:  # a given eta_0 (the constant's, or the controller's)
        task = dataclasses.replace(base.task, eta0=eta)
        env.reset(seed=seed, options={"family": family, "task": task})
    if theta is None:
        theta = [0.0, 0.0, 0.0, 0.0, math.log(eta)]
    elif eta is None:
        eta = float(info["task"]["eta0"])
    if max_change is None and not probe:
        _, _, _, _, step = env.step(base.theta_to_action(theta))
    else:
        bounds, start = base.settings.lr_bounds, "probe" if probe else "eta0"
        controller = LogLinearController(
            theta, lr_bounds=bounds, max_change=max_change, start=start
        )
        result = base.run_controller(controller, base.task)
        eta = float(result.curves.learning_rates[0]) if probe else eta
        step = {
            "curves": result.curves,
            "final_train_loss": result.final_train_loss,
            "diverged": result.diverged,
        }
    raw = step["curves"].raw_features
    late = raw[len(raw) // 2 :]  # the run's second half: the features the rate settles on
    late = late[np.all(np.isfinite(late), axis=1)]
    phi_run = np.median(late, axis=0) if len(late) else np.full(2, np.nan)
    return {
        "family": family,
        "seed": seed,
        "eta0_drawn": float(info["task"]["eta0"]),
        "phi1": float(obs[0]),
        "phi2": float(obs[1]),
        "eta": eta,
        "final_train_loss": float(step["final_train_loss"]),
        "diverged": bool(step["diverged"]),
        "phi1_run": float(phi_run[0]),
        "phi2_run": float(phi_run[1]),
        "controller": "constant" if job[3:] == () else label,
    }


def best_per_task(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (family, seed): the starting features, every rate's loss and the best rate."""
    tasks: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        if row.get("controller", "constant") != "constant":
            continue
        key = (row["family"], int(row["seed"]))
        entry = tasks.setdefault(
            key, {"phi": (float(row["phi1"]), float(row["phi2"])), "losses": {}}
        )
        loss = float(row["final_train_loss"])
        entry["losses"][float(row["eta"])] = loss if math.isfinite(loss) else math.inf
    for entry in tasks.values():
        entry["best"] = min(entry["losses"], key=entry["losses"].get)
    return tasks


def _loss_at(entry: dict[str, Any], log10_eta: float) -> float:
    """The task's loss at the grid rate nearest ``log10_eta`` (clipped to the grid)."""
    rates = sorted(entry["losses"])
    nearest = min(rates, key=lambda r: abs(math.log10(r) - log10_eta))
    return float(entry["losses"][nearest])


def _fit(points: list[tuple[float, float, float]]) -> np.ndarray:
    x = np.array([[p[0], p[1], 1.0] for p in points])
    y = np.array([p[2] for p in points])
    return np.linalg.lstsq(x, y, rcond=None)[0]


def _best_constant(entries: list[dict[str, Any]]) -> float:
    """The grid rate with the lowest geometric-mean loss over ``entries`` (log10)."""
    rates = sorted(entries[0]["losses"])

    def score(rate: float) -> float:
        return float(np.mean([math.log(min(e["losses"][rate], 1e30)) for e in entries]))

    return math.log10(min(rates, key=score))


def report(rows: list[dict[str, Any]]) -> str:
    """The Markdown report of the runs ``rows``."""
    tasks = best_per_task(rows)
    families = list(dict.fromkeys(f for f, _ in tasks))
    by_family = {f: [e for (g, _), e in tasks.items() if g == f] for f in families}
    lines = [
        "| family | tasks | best single constant | per-task best rate (median, range) | "
        "phi1 at eta_0 (median, range) | phi2 (median) |",
        "|---|---|---|---|---|---|",
    ]
    for family, entries in by_family.items():
        best = [math.log10(e["best"]) for e in entries]
        phi1 = [e["phi"][0] for e in entries]
        phi2 = [e["phi"][1] for e in entries]
        lines.append(
            f"| {family} | {len(entries)} | 1e{_best_constant(entries):+.1f} | "
            f"1e{np.median(best):+.1f} (1e{min(best):+.1f} .. 1e{max(best):+.1f}) | "
            f"{np.median(phi1):.1f} ({min(phi1):.1f} .. {max(phi1):.1f}) | "
            f"{np.median(phi2):.2f} |"
        )
    points = {
        f: [(e["phi"][0], e["phi"][1], math.log10(e["best"])) for e in entries]
        for f, entries in by_family.items()
    }
    return "\n".join([*lines, "", *rule_tables(by_family, points, "phi1", "phi2")]) + "\n"


def rule_tables(
    by_family: dict[str, list[dict[str, Any]]],
    points: dict[str, list[tuple[float, float, float]]],
    x1: str,
    x2: str,
) -> list[str]:
    """The pooled fit ``log10 eta* = w1 x1 + w2 x2 + b`` over ``points`` (per family: ``(x1,
    x2, log10 eta*)`` of each task, in ``by_family``'s order), and the leave-one-family-out
    table beside the other families' best single constant."""
    families = list(by_family)
    pooled = [p for f in families for p in points[f]]
    w = _fit(pooled)
    residual = [abs(p[2] - (w[0] * p[0] + w[1] * p[1] + w[2])) for p in pooled]
    lines = [
        f"One rule fitted over every task: log10 eta* = {w[0]:.3f} {x1} + {w[1]:.3f} {x2} + "
        f"{w[2]:.2f}; median |error| {np.median(residual):.2f} decades.",
        "",
        "Left out (fitted on the other families, scored on this one): median |error| in "
        "decades of the rule and of the other families' best single constant, and the share of "
        "tasks that end within 2x of their best rate's loss.",
        "",
        "| family | rule: error | rule: within 2x | constant: error | constant: within 2x |",
        "|---|---|---|---|---|",
    ]
    for family in families:
        others = [p for f in families if f != family for p in points[f]]
        if len({(p[0], p[1]) for p in others}) < 3:
            continue
        w_out = _fit(others)
        constant = _best_constant([e for f in families if f != family for e in by_family[f]])
        rule_err, const_err, rule_ok, const_ok = [], [], 0, 0
        for entry, (a, b, best) in zip(by_family[family], points[family], strict=True):
            guess = w_out[0] * a + w_out[1] * b + w_out[2]
            rule_err.append(abs(guess - best))
            const_err.append(abs(constant - best))
            floor = entry["losses"][entry["best"]]
            rule_ok += _loss_at(entry, guess) <= 2 * floor
            const_ok += _loss_at(entry, constant) <= 2 * floor
        n = len(rule_err)
        lines.append(
            f"| {family} | {np.median(rule_err):.2f} | {rule_ok}/{n} | "
            f"{np.median(const_err):.2f} | {const_ok}/{n} |"
        )
    return lines


def at_best_points(
    rows: list[dict[str, Any]], at_best: list[dict[str, Any]]
) -> dict[str, list[tuple[float, float, float]]]:
    """Per family, each task's ``(c, phi2, log10 eta*)`` at its best rate: ``c = phi1 - 2 ln
    eta*`` (phi1 per unit step: ``phi1`` grows as ``2 ln eta``) and ``phi2`` read over the
    second half of the run at that rate (``at_best``)."""
    tasks = best_per_task(rows)
    run = {(r["family"], int(r["seed"])): r for r in at_best}
    points: dict[str, list[tuple[float, float, float]]] = {}
    for (family, seed), entry in tasks.items():
        r = run[(family, seed)]
        c = float(r["phi1_run"]) - 2 * math.log(entry["best"])
        points.setdefault(family, []).append((c, float(r["phi2_run"]), math.log10(entry["best"])))
    return points


def rule_theta(points: list[tuple[float, float, float]]) -> list[float]:
    """The log-linear controller whose fixed point is the rule ``log10 eta* = w1 c + w2 phi2 +
    b`` fitted to ``points``: it settles where ``ln eta = theta1 (2 ln eta + c) + theta2 phi2 +
    theta5``, so ``theta1 / (1 - 2 theta1) = w1 ln 10``, ``theta2 = w2 ln 10 (1 - 2 theta1)``,
    ``theta5 = b ln 10 (1 - 2 theta1)``."""
    w = _fit(points)
    k = w[0] * math.log(10)
    theta1 = k / (1 + 2 * k)
    scale = math.log(10) * (1 - 2 * theta1)
    return [round(float(v), 4) for v in (theta1, w[1] * scale, 0.0, 0.0, w[2] * scale)]


def fixed_point_report(rows: list[dict[str, Any]], at_best: list[dict[str, Any]]) -> str:
    """What the features read at each task's best rate, once the rate has settled
    (:func:`at_best_points`). The log-linear controller ``ln eta = theta1 phi1 + ... + b``
    settles where ``ln eta = theta1 (2 ln eta + c) + b``; one theta can hold every family at its
    best rate only where ``log10 eta*`` is (close to) a linear function of ``c``, which the fit
    and the held-out table say."""
    tasks = best_per_task(rows)
    families = list(dict.fromkeys(f for f, _ in tasks))
    by_family = {f: [e for (g, _), e in tasks.items() if g == f] for f in families}
    points = at_best_points(rows, at_best)
    lines = [
        "| family | c = phi1 - 2 ln eta* at the best rate (median, range) | phi2 (median) |",
        "|---|---|---|",
    ]
    for family in families:
        cs = [p[0] for p in points[family]]
        lines.append(
            f"| {family} | {np.median(cs):.1f} ({min(cs):.1f} .. {max(cs):.1f}) | "
            f"{np.median([p[1] for p in points[family]]):.2f} |"
        )
    pooled = rule_theta([p for f in families for p in points[f]])
    lines += ["", f"The controller whose fixed point is the pooled rule: theta = {pooled}.", ""]
    return "\n".join([*lines, *rule_tables(by_family, points, "c", "phi2")]) + "\n"


def theta_report(rows: list[dict[str, Any]], train_rows: list[dict[str, Any]]) -> str:
    """The controller ``theta`` (rows ``controller == "theta"``, from each task's eta_0) beside
    the grid on the same tasks: its loss over the per-task oracle's, and how many tasks end
    within 2x of the oracle, with the best single constants of the training tasks (the
    family's own, and the one over every family) beside it."""
    tasks = best_per_task(rows)
    trained = best_per_task(train_rows)
    overall = _best_constant(list(trained.values()))
    lines = [
        f"| family | tasks | controller / oracle (geometric mean) | controller within 2x | "
        f"family's training constant within 2x | one constant (1e{overall:+.1f}) within 2x |",
        "|---|---|---|---|---|---|",
    ]
    totals = [0, 0, 0, 0]
    every: list[float] = []
    for family in dict.fromkeys(f for f, _ in tasks):
        own = _best_constant([e for (f, _), e in trained.items() if f == family])
        ratios, ok, own_ok, all_ok = [], 0, 0, 0
        for row in rows:
            if row["family"] != family or row.get("controller") != "theta":
                continue
            entry = tasks[(family, int(row["seed"]))]
            floor = entry["losses"][entry["best"]]
            loss = float(row["final_train_loss"])
            loss = loss if math.isfinite(loss) else math.inf
            ratios.append(math.log(min(loss, 1e30) / floor))
            ok += loss <= 2 * floor
            own_ok += _loss_at(entry, own) <= 2 * floor
            all_ok += _loss_at(entry, overall) <= 2 * floor
        n = len(ratios)
        if not n:  # a family the controller did not run on (--include)
            continue
        every += ratios
        totals = [totals[0] + n, totals[1] + ok, totals[2] + own_ok, totals[3] + all_ok]
        lines.append(
            f"| {family} | {n} | {math.exp(np.mean(ratios)):.2f} | {ok}/{n} | {own_ok}/{n} | "
            f"{all_ok}/{n} |"
        )
    n = totals[0]
    geo = math.exp(np.mean(every)) if every else math.nan
    lines.append(f"| all | {n} | {geo:.2f} | {totals[1]}/{n} | {totals[2]}/{n} | {totals[3]}/{n} |")
    return "\n".join(lines) + "\n"


def perturbed(theta: list[float], factor: float) -> list[tuple[str, list[float]]]:
    """Each single-entry perturbation of ``theta`` by ``1 +- factor`` (entries that are 0 stay
    0 and are left out), labelled ``theta[k] x1.2``."""
    variants = []
    for k, value in enumerate(theta):
        for scale in (1 + factor, 1 - factor):
            if value != 0:
                changed = list(theta)
                changed[k] = value * scale
                variants.append((f"theta[{k}] x{scale:g}", changed))
    return variants


def perturbation_report(rows: list[dict[str, Any]], reference: list[dict[str, Any]]) -> str:
    """Per perturbed controller (``rows``): on how many tasks its final training loss is within
    2x of the unperturbed controller's (``reference``), and the worst ratio."""
    base = {(r["family"], r["seed"]): _loss(r) for r in reference}
    lines = [
        "| variant | tasks within 2x of the unperturbed | worst ratio (task) |",
        "|---|---|---|",
    ]
    for label in dict.fromkeys(r["controller"] for r in rows):
        ratios = {
            (r["family"], r["seed"]): _loss(r) / base[(r["family"], r["seed"])]
            for r in rows
            if r["controller"] == label
        }
        worst = max(ratios, key=ratios.get)  # type: ignore[arg-type]
        ok = sum(v <= 2 for v in ratios.values())
        lines.append(
            f"| {label} | {ok}/{len(ratios)} | {ratios[worst]:.3g} ({worst[0]}, {worst[1]}) |"
        )
    return "\n".join(lines) + "\n"


def _loss(row: dict[str, Any]) -> float:
    loss = float(row["final_train_loss"])
    return loss if math.isfinite(loss) else math.inf


def run_jobs(jobs: list[tuple[Any, ...]], kwargs: dict[str, Any], workers: int, path: Path) -> None:
    """Run ``jobs`` on ``workers`` processes, writing each row to ``path`` as it finishes."""
    started = time.perf_counter()
    backend = "process" if workers > 1 else "serial"
    with (
        path.open("w", newline="") as fh,
        make_pool(backend, build, (kwargs,), workers=workers) as pool,
    ):
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()

        def save(k: int, row: dict[str, Any]) -> None:
            writer.writerow(row)
            fh.flush()
            print(
                f"{k + 1}/{len(jobs)} {row['family']} seed {row['seed']} eta "
                f"{row['eta']:.0e}: {row['final_train_loss']:.4g}",
                flush=True,
            )

        pool.map(run, jobs, on_result=save)
    print(f"{len(jobs)} runs in {time.perf_counter() - started:.0f} s")


def _read(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--include", nargs="+", default=None)
    parser.add_argument("--exclude", nargs="+", default=[])
    parser.add_argument("--tasks", type=int, default=4, help="training tasks per family")
    parser.add_argument(
        "--grid", nargs=2, type=float, default=[-6.0, 0.0], help="log10 rates, half-decades"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="folder for runs.csv, report.md")
    parser.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="with --theta: the training tasks' grid (default: --out's runs.csv), for the "
        "families' training constants beside held-out seeds evaluated into another --out",
    )
    parser.add_argument("--report-only", action="store_true", help="report the CSVs in --out")
    parser.add_argument(
        "--at-best",
        action="store_true",
        help="rerun each task at its best rate from --out's runs.csv, reading the features "
        "(at_best.csv), for the fixed-point table",
    )
    parser.add_argument(
        "--theta",
        nargs=5,
        type=float,
        default=None,
        help="evaluate this controller from each task's own eta_0 on --seeds, beside the grid "
        "(evaluate.csv)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[100, 101], help="with --theta")
    parser.add_argument(
        "--max-change",
        type=float,
        default=None,
        help="with --theta: bound the rate's change per step to this factor (the bounded form; "
        "0: no bound); "
        "the grid is read from evaluate.csv, only the controller runs",
    )
    parser.add_argument(
        "--eta0",
        nargs=2,
        type=float,
        default=None,
        metavar=("SGD", "ADAPTIVE"),
        help="with --max-change: start the controller from these eta_0 (SGD families, Adam-type "
        "families) instead of the tasks' own",
    )
    parser.add_argument(
        "--tag", default="", help="with --max-change: a suffix of the output files' names"
    )
    parser.add_argument(
        "--perturb",
        type=float,
        default=0.0,
        help="with --max-change: run each single-entry perturbation of --theta by 1 +- this "
        "factor instead, against the unperturbed controller's CSV (run that first)",
    )
    parser.add_argument(
        "--probe-start",
        action="store_true",
        help="with --max-change (none: 0): start the controller from the rate at which its rule "
        "is its own fixed point on the task's first batch (start='probe'), whatever eta_0",
    )
    parser.add_argument(
        "--lofo",
        action="store_true",
        help="leave one family out: for each family, the fixed-point theta fitted without it "
        "(on --runs and the at_best.csv beside it) run from the probe start on --seeds, beside "
        "--out's grid (evaluate_lofo.csv)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path, at_best = args.runs or args.out / "runs.csv", args.out / "at_best.csv"
    kwargs: dict[str, Any] = {"data_root": args.data_root, "download": False}
    if args.include:
        kwargs["include"] = args.include
    if args.exclude:
        kwargs["exclude"] = args.exclude
    if args.lofo:
        train_rows = _read(path)
        points = at_best_points(train_rows, _read(path.parent / "at_best.csv"))
        families = build(kwargs).unwrapped.mixture.members()  # type: ignore[attr-defined]
        thetas = {f: rule_theta([p for g in points if g != f for p in points[g]]) for f in families}
        out = args.out / "evaluate_lofo.csv"
        run_jobs(
            [(f, s, None, thetas[f], None, True) for f in families for s in args.seeds],
            kwargs,
            args.workers,
            out,
        )
        grid = [r for r in _read(args.out / "evaluate.csv") if r["controller"] == "constant"]
        text = theta_report([*grid, *_read(out)], train_rows)
        fitted = "\n".join(f"- {f}: theta = {thetas[f]}" for f in families)
        header = (
            "Leave one family out: each family's controller is the fixed-point theta fitted on "
            "the other families' training tasks, from the probe start (eta_0 not used).\n\n"
        )
        out.with_suffix(".md").write_text(f"{header}{text}\n{fitted}\n")
        print(text)
        return
    if args.theta is not None and args.max_change is not None:
        members = build(kwargs).unwrapped.members  # type: ignore[attr-defined]

        def start(family: str) -> float | None:
            if args.eta0 is None:
                return None
            return args.eta0[0] if members[family].optimizer == "sgd" else args.eta0[1]

        jobs_b = [
            (f, s, start(f), list(args.theta), args.max_change or None, args.probe_start)
            for f in members
            for s in args.seeds
        ]
        tag = "" if args.eta0 is None else f"_eta0_{args.eta0[0]:g}_{args.eta0[1]:g}"
        tag += ("_probe" if args.probe_start else "") + (f"_{args.tag}" if args.tag else "")
        out = args.out / f"evaluate_max{args.max_change:g}{tag}.csv"
        if args.perturb:
            variants = perturbed(list(args.theta), args.perturb)
            jobs_p = [(*job[:3], v, *job[4:], label) for label, v in variants for job in jobs_b]
            moved = out.with_name(f"{out.stem}_perturb{args.perturb:g}.csv")
            run_jobs(jobs_p, kwargs, args.workers, moved)
            text = perturbation_report(_read(moved), _read(out))
            header = f"theta = {list(args.theta)} +-{args.perturb:g} per entry, against {out.name}"
            moved.with_suffix(".md").write_text(f"{header}\n\n{text}")
            print(text)
            return
        run_jobs(jobs_b, kwargs, args.workers, out)
        grid = [r for r in _read(args.out / "evaluate.csv") if r["controller"] == "constant"]
        text = theta_report([*grid, *_read(out)], _read(path))
        bound = f"at most x{args.max_change:g}" if args.max_change else "unbounded"
        header = f"theta = {list(args.theta)}, rate change per step {bound}"
        if args.eta0 is not None:
            header += f", eta_0 {args.eta0[0]:g} (SGD), {args.eta0[1]:g} (Adam-type)"
        if args.probe_start:
            header += ", from the probe start (eta_0 not used)"
        (out.with_suffix(".md")).write_text(f"{header}\n\n{text}")
        print(text)
        return
    if args.theta is not None:
        families = build(kwargs).unwrapped.mixture.members()  # type: ignore[attr-defined]
        low, high = args.grid
        rates = [10.0 ** (low + k / 2) for k in range(round((high - low) * 2) + 1)]
        jobs: list[tuple[Any, ...]] = [
            (f, s, r) for f in families for s in args.seeds for r in rates
        ]
        jobs += [(f, s, None, list(args.theta)) for f in families for s in args.seeds]
        run_jobs(jobs, kwargs, args.workers, args.out / "evaluate.csv")
        text = theta_report(_read(args.out / "evaluate.csv"), _read(path))
        (args.out / "evaluate.md").write_text(f"theta = {list(args.theta)}\n\n{text}")
        print(text)
        return
    if args.at_best:
        tasks = best_per_task(_read(path))
        run_jobs([(f, s, e["best"]) for (f, s), e in tasks.items()], kwargs, args.workers, at_best)
    elif not args.report_only:
        families = build(kwargs).unwrapped.mixture.members()  # type: ignore[attr-defined]
        low, high = args.grid
        rates = [10.0 ** (low + k / 2) for k in range(round((high - low) * 2) + 1)]
        jobs = [(f, s, r) for f in families for s in range(args.tasks) for r in rates]
        run_jobs(jobs, kwargs, args.workers, path)
    rows = _read(path)
    text = report(rows)
    if at_best.is_file():
        text += "\n## At the best rate\n\n" + fixed_point_report(rows, _read(at_best))
    (args.out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
