"""``lrgym benchmark``: controllers and baselines on a suite of held-out tasks.

:func:`run_benchmark` runs every chosen controller on the first ``tasks`` tasks of a suite
(:mod:`lrgym.bench.suites`) and writes, in ``out``:

* ``results.csv``: one row per controller x task x eta_0 (:data:`lrgym.bench.leaderboard.
  RESULT_COLUMNS`), rewritten atomically after every finished run, in the plan's order, so a
  crash never loses a finished row; at the end the oracle's rows (the best constant of the grid
  per task) are derived from the constant rows and added;
* ``curves/*.npz``: each run's per-step ``losses`` and ``learning_rates`` and its evaluation
  points ``eval_steps``/``eval_losses`` (plain arrays, loaded with ``allow_pickle=False``);
* ``benchmark.json``: the settings (suite definition, controller files with their SHA-256,
  baselines, options), checked on ``--resume``;
* ``leaderboard.md`` (:func:`lrgym.bench.leaderboard.write_leaderboard`, from the CSV alone)
  and the figures (:func:`lrgym.bench.figures.write_figures`).

What runs, per task (``eta0_source`` in brackets):

* ``constant`` at every value of :data:`lrgym.bench.baselines.LR_GRID` (grid);
* every other baseline from the task's eta_0 (task), or at its own lr for the optimiser
  baselines (fixed);
* every learned controller (``--controller FILE``) from the task's eta_0 (task); with its
  features computed every 10 steps, ``dense`` and ``hold`` (the feature-cost rows); and with
  each entry of ``theta`` scaled by ``1 +- perturb`` (the perturbation rows);
* with ``eta0_sweep``, every learned controller and every baseline that starts from eta_0 again
  from each value of the grid (grid).

Runs are deterministic, so a benchmark killed at any point and continued with ``resume=True``
repeats no finished row and ends with the CSV an uninterrupted benchmark writes (up to the
``wall_time`` column).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import lrgym
from agents.collect import make_pool
from agents.rundir import progress_bar
from lrgym.bench.baselines import BASELINES, LR_GRID, get_baselines
from lrgym.bench.figures import write_figures
from lrgym.bench.leaderboard import (
    oracle_rows,
    read_results,
    summary_text,
    write_leaderboard,
    write_results,
)
from lrgym.bench.suites import SUITES, Suite, get_suite
from lrgym.controllers import LogLinearController
from lrgym.controllers.files import SavedController, load_controller
from lrgym.errors import DatasetNotFoundError, InvalidConfigError, LrgymError
from lrgym.features import FeatureConfig
from lrgym.jsonfile import file_sha256, write_atomic

FORMAT = "lrgym-benchmark"
VERSION = 1
FEATURE_COST = (("dense", 10), ("hold", 10))
"""The learned controllers' cheap-feature variants: (estimate, every)."""


@dataclass(frozen=True)
class Job:
    """One run of the plan: a controller on a task from an eta_0."""

    controller: str
    kind: str
    task_index: int
    task_seed: int
    eta0: float | None  # None: the task's own (or the optimiser baseline's)
    eta0_source: str
    spec: dict[str, Any]  # how to build the controller, see _controller

    @property
    def key(self) -> tuple[str, int, str, str]:
        """What identifies the run in results.csv."""
        return (self.controller, self.task_index, self.eta0_source, _eta0_text(self.eta0))


def _eta0_text(eta0: float | None) -> str:
    return "" if eta0 is None else repr(float(eta0))


def _row_key(row: dict[str, Any]) -> tuple[str, int, str, str]:
    eta0 = None if row["eta0_source"] in ("task", "fixed") else row["eta0"]
    return (row["controller"], int(row["task_index"]), row["eta0_source"], _eta0_text(eta0))


def plan(
    suite: Suite,
    *,
    controllers: Sequence[tuple[str, str]] = (),
    baselines: str | None = None,
    tasks: int | None = None,
    eta0_sweep: bool = False,
    perturb: float = 0.2,
) -> list[Job]:
    """The runs of a benchmark, in the order they are run and written.

    Args:
        suite: the suite.
        controllers: ``(name, path)`` of each learned controller file.
        baselines: comma-separated baseline names (``None``: all of them).
        tasks: the first ``tasks`` tasks of the suite (``None``: all).
        eta0_sweep: also run every eta_0-dependent controller from every grid value.
        perturb: relative perturbation of each ``theta`` entry (0: none).
    """
    chosen = get_baselines(baselines)
    count = len(suite.task_seeds) if tasks is None else int(tasks)
    if not 1 <= count <= len(suite.task_seeds):
        raise InvalidConfigError(
            f"tasks={tasks!r}: suite {suite.name!r} has {len(suite.task_seeds)} tasks; "
            f"choose 1 .. {len(suite.task_seeds)}"
        )
    if not 0.0 <= perturb < 1.0:
        raise InvalidConfigError(f"perturb={perturb!r} must lie in [0, 1)")
    jobs: list[Job] = []
    for index, seed in enumerate(suite.task_seeds[:count]):

        def add(name: str, kind: str, eta0: float | None, source: str, spec: dict[str, Any]):
            jobs.append(Job(name, kind, index, int(seed), eta0, source, spec))  # noqa: B023

        for baseline in chosen:
            spec = {"baseline": baseline.name}
            if baseline.kind == "constant":
                for lr in LR_GRID:
                    add("constant", "constant", lr, "grid", spec)
            else:
                add(
                    baseline.name,
                    baseline.kind,
                    None,
                    "task" if baseline.uses_eta0 else "fixed",
                    spec,
                )
        for name, path in controllers:
            learned = {"file": path}
            add(name, "learned", None, "task", learned)
            for estimate, every in FEATURE_COST:
                features = {"every": every, "estimate": estimate}
                add(
                    f"{name} [every {every}, {estimate}]",
                    "feature-cost",
                    None,
                    "task",
                    {**learned, "features": features},
                )
            if perturb > 0:
                for i in range(5):
                    for sign in (+1, -1):
                        label = f"{name} [theta{i} {'+' if sign > 0 else '-'}{perturb:.0%}]"
                        add(
                            label,
                            "perturbed",
                            None,
                            "task",
                            {**learned, "perturb": [i, 1.0 + sign * perturb]},
                        )
        if eta0_sweep:
            for baseline in chosen:
                if baseline.uses_eta0 and baseline.kind != "constant":
                    for lr in LR_GRID:
                        add(baseline.name, baseline.kind, lr, "grid", {"baseline": baseline.name})
            for name, path in controllers:
                for lr in LR_GRID:
                    add(name, "learned", lr, "grid", {"file": path})
    return jobs


class _Worker:
    """A worker's state: the suite's env and the controller files it has read."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]) -> None:
        self.env = gym.make(env_id, **env_kwargs)
        self.saved: dict[str, SavedController] = {}

    def close(self) -> None:
        self.env.close()


def _controller(worker: _Worker, job: Job, task: lrgym.Task) -> tuple[Any, lrgym.Task]:
    spec = job.spec
    if "baseline" in spec:
        return BASELINES[spec["baseline"]].build(task)
    path = spec["file"]
    if path not in worker.saved:
        worker.saved[path] = load_controller(path)
    saved = worker.saved[path]
    # a contextual policy reads the task's starting features, from this eta_0
    theta = np.array(
        saved.theta_for(lambda: worker.env.reset(options={"task": task})[0]), dtype=np.float64
    )
    if "perturb" in spec:
        entry, factor = spec["perturb"]
        theta[int(entry)] *= float(factor)
    controller = LogLinearController(theta, relative=saved.relative, lr_bounds=saved.lr_bounds)
    return controller, task


def _run_job(worker: _Worker, job: Job) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run one job in a worker: its CSV row (without ``curves``) and its curves."""
    env: Any = worker.env.unwrapped
    worker.env.reset(seed=job.task_seed)
    task = env.task
    if job.eta0 is not None:
        task = dataclasses.replace(task, eta0=float(job.eta0))
    controller, task = _controller(worker, job, task)
    features = None
    if "features" in job.spec:
        f = job.spec["features"]
        features = FeatureConfig(gamma=env.features.gamma, every=f["every"], estimate=f["estimate"])
    result = env.run_controller(controller, task, features=features)
    curves = result.curves
    row = {
        "controller": job.controller,
        "kind": job.kind,
        "task_index": job.task_index,
        "task_seed": job.task_seed,
        "eta0": float(task.eta0),
        "eta0_source": job.eta0_source,
        "final_train_loss": float(result.final_train_loss),
        "initial_train_loss": float(curves.eval_losses[0]),
        "reward": float(env.reward_of(result)),
        "test_loss": float(result.test_loss),
        "test_accuracy": float(result.test_accuracy),
        "diverged": int(result.diverged),
        "steps": int(task.steps),
        "steps_completed": int(result.steps_completed),
        "wall_time": float(result.wall_time),
        "lrgym_version": lrgym.__version__,
    }
    arrays = {
        "losses": curves.losses,
        "learning_rates": curves.learning_rates,
        "eval_steps": curves.eval_steps,
        "eval_losses": curves.eval_losses,
    }
    return row, arrays


def _slug(job: Job) -> str:
    text = f"{job.controller}-t{job.task_index}-{job.eta0_source}{_eta0_text(job.eta0)}"
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in text)
    return safe + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _controllers(paths: Sequence[str]) -> list[tuple[str, str]]:
    """``(name, absolute path)`` of each ``[NAME=]FILE`` (``FILE`` may be a pretrained
    controller's name); names default to the file's stem."""
    named: list[tuple[str, str]] = []
    for item in paths:
        name, _, file = item.rpartition("=") if "=" in item else ("", "", item)
        saved = load_controller(os.path.expanduser(file))  # a clear error now, not in a worker
        assert saved.path is not None
        source = saved.path.resolve()
        name = name or (source.parent.name if source.stem == "controller" else source.stem)
        if any(name == other for other, _ in named) or name in BASELINES or "[" in name:
            raise InvalidConfigError(
                f"controller name {name!r} is taken or not allowed; name it: --controller "
                f"NAME={file}"
            )
        named.append((name, str(source)))
    return named


def run_benchmark(
    suite: str | Suite,
    out: str | Path,
    *,
    controllers: Sequence[str] = (),
    baselines: str | None = None,
    tasks: int | None = None,
    eta0_sweep: bool = False,
    perturb: float = 0.2,
    data_root: str | None = None,
    backend: str | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    resume: bool = False,
    progress: bool = True,
    figures: bool = True,
) -> Path:
    """Run a benchmark into ``out`` (see the module docstring); returns ``out/results.csv``.

    Args:
        suite: a suite of :data:`lrgym.bench.suites.SUITES` by name, or a
            :class:`lrgym.bench.suites.Suite`
            of your own (e.g. ``dataclasses.replace(get_suite("mnist-full"), name=...,
            env_kwargs=...)`` for shorter runs; give it a name of its own, since results
            carry the suite's name and version).
        out: the output folder.
        controllers: learned controller files, ``FILE`` or ``NAME=FILE``.
        baselines: comma-separated baseline names (``None``: all).
        tasks: the first ``tasks`` tasks of the suite (``None``: all).
        eta0_sweep: run every eta_0-dependent controller from every grid value too.
        perturb: relative perturbation of each learned ``theta`` entry (0: none).
        data_root: where the suite's dataset lives.
        backend, workers, ray_address: where the runs run (as for ``lrgym train``).
        resume: continue the benchmark in ``out``.
        progress: show a progress bar.
        figures: write the PNG figures at the end.

    Raises:
        InvalidConfigError: unknown suite or baseline, bad options, or ``out`` holds another
            benchmark (or any benchmark without ``resume``).
        DatasetNotFoundError: the suite's data is not there (the message says where to put it).
    """
    if not isinstance(suite, Suite):
        suite = get_suite(suite)
    elif suite.name in SUITES and SUITES[suite.name] != suite:
        raise InvalidConfigError(
            f"this suite is not lrgym's suite {suite.name!r} but carries its name, so its "
            "results would pass for that suite's; give it a name of its own, e.g. "
            f"dataclasses.replace(suite, name={suite.name + '-custom'!r})"
        )
    named = _controllers(controllers)
    jobs = plan(
        suite,
        controllers=named,
        baselines=baselines,
        tasks=tasks,
        eta0_sweep=eta0_sweep,
        perturb=perturb,
    )
    env_kwargs = dict(suite.env_kwargs)
    if data_root is not None:
        env_kwargs["data_root"] = data_root
    try:  # the data is there and the kwargs are valid
        gym.make(suite.env_id, **env_kwargs).close()
    except DatasetNotFoundError as error:
        raise DatasetNotFoundError(
            error.dataset,
            error.searched,
            f"{error.reason}\nSuite {suite.name!r} ({suite.env_id}) runs on this data; "
            "--data-root names the root that holds it.",
        ) from None
    folder = Path(out)
    settings = {
        "format": FORMAT,
        "version": VERSION,
        "suite": suite.to_dict(),
        "controllers": [{"name": n, "path": p, "sha256": file_sha256(p)} for n, p in named],
        "baselines": [b.name for b in get_baselines(baselines)],
        "tasks": len({j.task_index for j in jobs}),
        "eta0_sweep": bool(eta0_sweep),
        "perturb": float(perturb),
        "lrgym_version": lrgym.__version__,
    }
    done = _resume(folder, settings, resume)
    csv_path = folder / "results.csv"
    (folder / "curves").mkdir(parents=True, exist_ok=True)
    order = {job.key: k for k, job in enumerate(jobs)}
    rows = {key: row for key, row in done.items() if key in order}
    todo = [job for job in jobs if job.key not in rows]

    def save(k: int, outcome: tuple[dict[str, Any], dict[str, np.ndarray]]) -> None:
        row, arrays = outcome
        job = todo[k]
        name = f"curves/{_slug(job)}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        write_atomic(folder / name, buffer.getvalue())  # the curves before the row
        rows[job.key] = {
            **row,
            "suite": suite.name,
            "suite_version": suite.version,
            "curves": name,
        }
        write_results(csv_path, [rows[key] for key in sorted(rows, key=order.__getitem__)])
        if bar is not None:
            bar.update(1)

    bar = None
    if progress:
        bar = progress_bar(f"benchmark {suite.name}", len(jobs), len(jobs) - len(todo), "run")
    try:
        if todo:
            with make_pool(
                backend,
                _Worker,
                (suite.env_id, env_kwargs),
                workers=workers,
                ray_address=ray_address,
            ) as pool:
                labels = [
                    f"{j.controller} on task {j.task_index} (eta0 {j.eta0 or 'task'})" for j in todo
                ]
                pool.map(_run_job, todo, labels=labels, on_result=save)
    finally:
        if bar is not None:
            bar.close()
    final = [rows[key] for key in sorted(rows, key=order.__getitem__)]
    write_results(csv_path, final + oracle_rows(final))
    write_leaderboard(csv_path)
    if figures:
        write_figures(csv_path)
    return csv_path


def _comparable(key: str, value: Any) -> Any:
    """What of a setting must match to resume: a controller file may have moved (a pretrained
    one lives wherever lrgym is installed), its name and content may not have changed."""
    if key == "controllers" and isinstance(value, list):
        return [{k: v for k, v in c.items() if k != "path"} for c in value]
    return value


def _resume(folder: Path, settings: dict[str, Any], resume: bool) -> dict[Any, dict[str, Any]]:
    """The finished rows of the benchmark in ``folder`` (none for a new one)."""
    meta = folder / "benchmark.json"
    if not resume:
        if meta.exists() or (folder / "results.csv").exists():
            raise InvalidConfigError(
                f"{folder} already holds a benchmark; pass --resume to continue it or choose "
                "another --out"
            )
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(meta, json.dumps(settings, indent=2) + "\n")
        return {}
    if not meta.exists():
        raise InvalidConfigError(f"--resume: {meta} does not exist; start without --resume")
    try:
        stored = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LrgymError(f"--resume: {meta} is not readable ({error})") from None
    changed = [
        k
        for k in settings
        if k != "lrgym_version" and _comparable(k, stored.get(k)) != _comparable(k, settings[k])
    ]
    if changed:
        raise InvalidConfigError(
            f"--resume: the benchmark in {folder} was started with other settings "
            f"({', '.join(changed)} differ); use the same command, or another --out"
        )
    csv_path = folder / "results.csv"
    if not csv_path.exists():
        return {}
    return {_row_key(r): r for r in read_results(csv_path) if r["kind"] != "oracle"}


def add_arguments(parser: Any) -> None:
    """The ``lrgym benchmark`` flags."""
    parser.add_argument("--suite", required=True, help=f"one of {', '.join(SUITES)}")
    parser.add_argument(
        "--controller",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="a learned controller file or a pretrained controller's name (repeatable; name: "
        "the file's folder or stem)",
    )
    parser.add_argument(
        "--baselines",
        default=None,
        help=f"comma-separated, default all: {','.join(BASELINES)}",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--tasks", type=int, default=None, help="the first N tasks of the suite")
    parser.add_argument(
        "--eta0-sweep", action="store_true", help="also run from every grid eta0 (1e-5 .. 1)"
    )
    parser.add_argument(
        "--perturb",
        type=float,
        default=0.2,
        help="scale each learned theta entry by 1 +- this (0: skip; default 0.2)",
    )
    parser.add_argument("--data-root", default=None, help="dataset root (see the README)")
    parser.add_argument("--resume", action="store_true", help="continue the benchmark in --out")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def command(args: Any, backend: Callable[[Any], str]) -> int:
    """Run ``lrgym benchmark`` from parsed arguments."""
    try:
        csv_path = run_benchmark(
            args.suite,
            args.out,
            controllers=args.controller,
            baselines=args.baselines,
            tasks=args.tasks,
            eta0_sweep=args.eta0_sweep,
            perturb=args.perturb,
            data_root=args.data_root,
            backend=backend(args),
            workers=args.workers,
            ray_address=args.ray_address,
            resume=args.resume,
            progress=not args.no_progress,
            figures=not args.no_figures,
        )
    except KeyboardInterrupt:
        print(
            "\nlrgym: interrupted; finished runs are saved. Continue with the same command and "
            f"--resume (out: {args.out})"
        )
        return 130
    print(summary_text(read_results(csv_path)), end="")
    print(f"results: {csv_path}   leaderboard: {csv_path.parent / 'leaderboard.md'}")
    return 0
