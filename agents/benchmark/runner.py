"""Running a benchmark: the results folder, the runs on a worker pool, ``--resume``, and the
``lrgym benchmark`` command (see :mod:`lrgym_agents.benchmark` for what it writes)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import lrgym
from lrgym.bench.baselines import BASELINES, get_baselines
from lrgym.bench.figures import write_figures
from lrgym.bench.leaderboard import summary_text, write_leaderboard
from lrgym.bench.reliability import reliability_markdown
from lrgym.bench.results import read_results, write_results
from lrgym.bench.statistics import oracle_rows, with_oracle
from lrgym.bench.suites import (
    ETA0_RANGES,
    GROUP_BASELINES,
    GROUP_CONTROLLERS,
    SUITE_GROUPS,
    SUITES,
    Suite,
    SuiteGroup,
    get_suite,
)
from lrgym.controllers.files import load_controller
from lrgym.errors import DatasetNotFoundError, InvalidConfigError, LrgymError
from lrgym.jsonfile import file_sha256, write_atomic

from ..pools import make_pool
from ..rundir import progress_bar
from .jobs import BenchmarkWorker, Job, Outcome, plan, row_key, run_job

FORMAT = "lrgym-benchmark"
VERSION = 1
"""The format and version of ``benchmark.json``."""


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
    eta0_grid: Sequence[float] | None = None,
    feature_cost: bool = True,
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
        eta0_grid: the eta_0 values of the sweep (``None``: the constant grid).
        feature_cost: also run each learned controller with features every 10 steps.
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
    suite = _own_suite(suite)
    named = _controllers(controllers)
    jobs = plan(
        suite,
        controllers=named,
        baselines=baselines,
        tasks=tasks,
        eta0_sweep=eta0_sweep,
        perturb=perturb,
        eta0_grid=eta0_grid,
        feature_cost=feature_cost,
    )
    env_kwargs = _env_kwargs(suite, data_root)
    settings = _settings(
        suite, named, baselines, jobs, eta0_sweep, perturb, eta0_grid, feature_cost
    )
    results = _ResultsFolder(Path(out), suite, jobs, _resume(Path(out), settings, resume))
    todo = [job for job in jobs if job.key not in results.rows]
    bar = None
    if progress:
        bar = progress_bar(f"benchmark {suite.name}", len(jobs), len(jobs) - len(todo), "run")

    def save(k: int, outcome: Outcome) -> None:
        results.add(todo[k], outcome)
        if bar is not None:
            bar.update(1)

    try:
        if todo:
            with make_pool(
                backend,
                BenchmarkWorker,
                (suite.env_id, env_kwargs),
                workers=workers,
                ray_address=ray_address,
            ) as pool:
                labels = [
                    f"{j.controller} on task {j.task_index} (eta0 {j.eta0 or 'task'})" for j in todo
                ]
                pool.map(run_job, todo, labels=labels, on_result=save)
    finally:
        if bar is not None:
            bar.close()
    final = results.ordered()
    write_results(results.csv_path, final + oracle_rows(final))
    write_leaderboard(results.csv_path)
    if figures:
        write_figures(results.csv_path)
    return results.csv_path


def _settings(
    suite: Suite,
    named: Sequence[tuple[str, str]],
    baselines: str | None,
    jobs: Sequence[Job],
    eta0_sweep: bool,
    perturb: float,
    eta0_grid: Sequence[float] | None,
    feature_cost: bool,
) -> dict[str, Any]:
    """A benchmark's ``benchmark.json`` (what ``--resume`` checks against)."""
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
    if eta0_grid is not None:  # older benchmarks (without these keys) still resume
        settings["eta0_grid"] = [float(v) for v in eta0_grid]
    if not feature_cost:
        settings["feature_cost"] = False
    return settings


def run_group(
    group: str | SuiteGroup,
    out: str | Path,
    *,
    controllers: Sequence[str] = (),
    baselines: str | None = None,
    tasks: int | None = None,
    perturb: float = 0.2,
    resume: bool = False,
    **options: Any,
) -> Path:
    """Run every suite of a suite group (:data:`lrgym.bench.suites.SUITE_GROUPS`) into
    ``out/SUITE`` and write the group's report, ``out/reliability.md``; returns its path.

    Each suite runs with the eta_0 sweep over its optimiser kind's range
    (:data:`~lrgym.bench.suites.ETA0_RANGES`) and no feature-cost rows; ``controllers`` run on
    every suite (default: the group's pretrained controller for each kind,
    :data:`~lrgym.bench.suites.GROUP_CONTROLLERS`), ``baselines`` too (default: the kind's
    :data:`~lrgym.bench.suites.GROUP_BASELINES`). ``tasks`` defaults to the group's. The
    other ``options`` are :func:`run_benchmark`'s. With ``resume``, suites already started
    continue and the others start.
    """
    group = SUITE_GROUPS[group] if isinstance(group, str) else group
    out = Path(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise InvalidConfigError(
            f"{out} already holds files; pass --resume to continue the group or choose another "
            "--out"
        )
    members = []
    for suite, kind in group.members:
        chosen = list(controllers) or [GROUP_CONTROLLERS[kind]]
        folder = out / suite
        run_benchmark(
            suite,
            folder,
            controllers=chosen,
            baselines=baselines or GROUP_BASELINES[kind],
            tasks=tasks or group.tasks,
            eta0_sweep=True,
            perturb=perturb,
            eta0_grid=ETA0_RANGES[kind],
            feature_cost=False,
            resume=resume and (folder / "benchmark.json").exists(),
            **options,
        )
        rows = with_oracle(read_results(folder / "results.csv"))
        members.append((suite, rows, [name for name, _ in _controllers(chosen)]))
    names = {name for _, _, chosen in members for name in chosen}
    parts = []
    for name in sorted(names) if controllers else [""]:
        learned = {s: (name or chosen[0]) for s, _, chosen in members}
        parts.append(reliability_markdown([(s, rows) for s, rows, _ in members], learned))
    report = out / "reliability.md"
    write_atomic(report, "\n\n".join(parts))
    return report


def _own_suite(suite: str | Suite) -> Suite:
    """The suite of that name, or a suite of the caller's own that does not take the name of one
    of lrgym's suites."""
    if not isinstance(suite, Suite):
        return get_suite(suite)
    if suite.name in SUITES and SUITES[suite.name] != suite:
        raise InvalidConfigError(
            f"this suite is not lrgym's suite {suite.name!r} but carries its name, so its "
            "results would pass for that suite's; give it a name of its own, e.g. "
            f"dataclasses.replace(suite, name={suite.name + '-custom'!r})"
        )
    return suite


def _env_kwargs(suite: Suite, data_root: str | None) -> dict[str, Any]:
    """The suite's env arguments with ``data_root``, checked by building the env once (the data
    is there and the arguments are valid)."""
    env_kwargs = dict(suite.env_kwargs)
    if data_root is not None:
        env_kwargs["data_root"] = data_root
    try:
        gym.make(suite.env_id, **env_kwargs).close()
    except DatasetNotFoundError as error:
        raise DatasetNotFoundError(
            error.dataset,
            error.searched,
            f"{error.reason}\nSuite {suite.name!r} ({suite.env_id}) runs on this data; "
            "--data-root names the root that holds it.",
        ) from None
    return env_kwargs


class _ResultsFolder:
    """``results.csv`` and ``curves/`` as runs finish: the CSV is rewritten atomically after
    every run, its rows in the plan's order, each run's curves written before its row."""

    def __init__(
        self, folder: Path, suite: Suite, jobs: Sequence[Job], done: dict[Any, dict[str, Any]]
    ) -> None:
        self.folder, self.suite = folder, suite
        self.csv_path = folder / "results.csv"
        (folder / "curves").mkdir(parents=True, exist_ok=True)
        self.order = {job.key: k for k, job in enumerate(jobs)}
        self.rows = {key: row for key, row in done.items() if key in self.order}

    def ordered(self) -> list[dict[str, Any]]:
        """The finished rows, in the plan's order."""
        return [self.rows[key] for key in sorted(self.rows, key=self.order.__getitem__)]

    def add(self, job: Job, outcome: Outcome) -> None:
        """Save a finished run: its curves, then the CSV with its row."""
        row, arrays = outcome
        name = f"curves/{job.slug}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        write_atomic(self.folder / name, buffer.getvalue())  # the curves before the row
        self.rows[job.key] = {
            **row,
            "suite": self.suite.name,
            "suite_version": self.suite.version,
            "curves": name,
        }
        write_results(self.csv_path, self.ordered())


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
    return {row_key(r): r for r in read_results(csv_path) if r["kind"] != "oracle"}


def add_arguments(parser: Any) -> None:
    """The ``lrgym benchmark`` flags."""
    parser.add_argument(
        "--suite",
        required=True,
        help=f"one of {', '.join(SUITES)}; or a group of suites: {', '.join(SUITE_GROUPS)}",
    )
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
    """Run ``lrgym benchmark`` from parsed arguments (a suite, or a group of suites)."""
    options: dict[str, Any] = {
        "controllers": args.controller,
        "baselines": args.baselines,
        "tasks": args.tasks,
        "perturb": args.perturb,
        "data_root": args.data_root,
        "backend": backend(args),
        "workers": args.workers,
        "ray_address": args.ray_address,
        "resume": args.resume,
        "progress": not args.no_progress,
        "figures": not args.no_figures,
    }
    group = args.suite in SUITE_GROUPS
    if group and args.eta0_sweep:
        print("lrgym: a suite group always sweeps eta_0 over each suite's range")
    try:
        if group:
            report = run_group(args.suite, args.out, **options)
        else:
            csv_path = run_benchmark(args.suite, args.out, eta0_sweep=args.eta0_sweep, **options)
    except KeyboardInterrupt:
        print(
            "\nlrgym: interrupted; finished runs are saved. Continue with the same command and "
            f"--resume (out: {args.out})"
        )
        return 130
    if group:
        print(report.read_text(), end="")
        print(f"report: {report}")
    else:
        print(summary_text(read_results(csv_path)), end="")
        print(f"results: {csv_path}   leaderboard: {csv_path.parent / 'leaderboard.md'}")
    return 0
