"""The leaderboard of benchmark results: ``leaderboard.md`` and the terminal summary.

:func:`write_leaderboard` reads a ``results.csv`` (:func:`lrgym.bench.results.read_results`) and
writes ``leaderboard.md`` (:func:`leaderboard_markdown`). The leaderboard depends on the text of
the CSV alone: rows are put in a canonical order before anything is computed, the bootstrap uses
a fixed seed (:mod:`lrgym.bench.statistics`, whose conventions every table follows) and numbers
are printed with a fixed number of significant digits, so recomputing it (``lrgym leaderboard
OUT/results.csv``) gives the same bytes, whatever the order of the rows in the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrgym.bench.results import Row, read_results
from lrgym.bench.statistics import (
    bootstrap_ci,
    geometric_mean_loss,
    is_diverged,
    log_loss,
    per_task_values,
    robustness_score,
    task_key,
    with_oracle,
)
from lrgym.errors import InvalidConfigError
from lrgym.jsonfile import write_atomic


def eta0_label(eta0: float) -> str:
    """How tables name a grid learning rate: one significant digit, ``1e-03``, ``3e-03``."""
    return f"{eta0:.0e}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.0f}%"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


@dataclass
class _Line:
    """One line of a table: a label and its runs."""

    label: str
    kind: str
    rows: list[Row]

    def geometric_mean(self) -> float:
        return geometric_mean_loss(self.rows)

    def sort_key(self) -> tuple[bool, float, str, str]:
        loss = self.geometric_mean()
        return (math.isnan(loss), 0.0 if math.isnan(loss) else loss, self.label, self.kind)


def _mean_with_ci(rows: list[Row], value: Callable[[Mapping[str, Any]], float]) -> str:
    tasks = np.array(list(per_task_values(rows, value).values()))
    low, high = bootstrap_ci(tasks)
    return f"{_number(float(np.mean(tasks)))} [{_number(low)}, {_number(high)}]"


def loss_with_ci(rows: Iterable[Mapping[str, Any]]) -> str:
    """The geometric-mean final training loss of ``rows`` (:func:`geometric_mean_loss`) with
    its 95% bootstrap interval over tasks (:func:`bootstrap_ci` of the per-task log losses), as
    the leaderboard prints it: ``"0.0208 [0.0127, 0.0323]"``."""
    logs = np.array(list(per_task_values(rows, log_loss).values()))
    low, high = bootstrap_ci(logs)
    with np.errstate(invalid="ignore"):
        point = float(np.exp(np.mean(logs)))
    return f"{_number(point)} [{_number(float(np.exp(low)))}, {_number(float(np.exp(high)))}]"


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in cells) + " |" for cells in body]
    return lines


def _main_lines(rows: list[Row]) -> list[_Line]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row["kind"] == "oracle":
            key = ("oracle", "oracle")
        elif row["kind"] == "constant" and row["eta0_source"] == "grid":
            key = (f"constant {eta0_label(row['eta0'])}", "constant")
        elif row["eta0_source"] in ("task", "fixed"):
            key = (row["controller"], row["kind"])
        else:
            continue
        groups.setdefault(key, []).append(row)
    lines = [_Line(label, kind, group) for (label, kind), group in groups.items()]
    return sorted(lines, key=_Line.sort_key)


def _sweep_lines(rows: list[Row]) -> list[_Line]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row["eta0_source"] != "grid" or row["kind"] == "oracle":
            continue
        key = ("constant", "constant") if row["kind"] == "constant" else (row["controller"], "")
        groups.setdefault(key, []).append(row)
    lines = [_Line(label, kind, group) for (label, kind), group in groups.items()]
    return sorted(lines, key=_Line.sort_key)


HOW_TO_READ = """\
## How to read this

Each line of the main table is one controller run from the task's own eta0 (optimiser \
baselines from their own learning rate), one constant learning rate of the grid (`constant \
1e-03`) or the oracle. *runs* counts its runs. *final train loss* is the geometric mean of the \
final training losses; *reward* and *test accuracy* are means. Every task weighs the same: a \
line's runs on one task are averaged first (losses in log space). A diverged run (diverged flag \
set, or a non-finite final loss) counts as no progress: its loss is its initial training loss. \
*diverged* counts the runs that diverged; *wall time* is the median time of one run in \
seconds. The brackets are 95% confidence intervals from a bootstrap over tasks (2000 resamples \
of the tasks with replacement, fixed seed, 2.5th and 97.5th percentiles). *within 2x of \
oracle* is the robustness score: the share of the line's runs whose final training loss is at \
most twice the oracle's on the same task (a diverged run never counts). The oracle is the best \
grid constant of each task, chosen by final training loss after the fact: a single constant \
matches it only where it is the best on every task, and a controller that changes the rate \
can beat it; its wall time is that of the whole grid, the cost of finding it. Lines are \
sorted by final train loss.
"""

SENSITIVITY_NOTE = """\
Each controller run from every learning rate of the grid instead of the task's eta0 (the \
constant line: the grid itself). *within 2x of oracle* is the share of all its grid runs within \
twice the oracle's final training loss on their task; the other columns are geometric-mean \
final training losses over tasks (diverged runs at their initial loss), over the whole grid and \
at each eta0 ("-": not run).
"""


def leaderboard_markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """The leaderboard of benchmark rows, as Markdown.

    Oracle rows are derived (:func:`oracle_rows`) for tasks that have constant rows but none;
    rows are put in canonical order first, so the text never depends on their order.

    Layout: a title (suites and versions, number of tasks, lrgym versions seen); the main table
    (controllers run from the task's eta0 or their own rate, each constant of the grid, the
    oracle) sorted by geometric-mean final training loss; when the rows hold an eta0 sweep
    (``eta0_source == "grid"`` rows of other kinds than constant and oracle), a table
    "Sensitivity to eta0"; and a "How to read this" paragraph.

    Raises:
        InvalidConfigError: there are no rows.
    """
    table = with_oracle(rows)
    if not table:
        raise InvalidConfigError("the results have no rows: nothing to rank")
    suites = sorted({(r["suite"], r["suite_version"]) for r in table})
    tasks = {task_key(r) for r in table}
    versions = sorted({r["lrgym_version"] for r in table})
    oracle = [r for r in table if r["kind"] == "oracle"]
    suite_text = ", ".join(f"{name} v{version}" for name, version in suites)
    out = [
        f"# Leaderboard: {suite_text}",
        "",
        f"{len(tasks)} task{'s' * (len(tasks) != 1)}, {len(table)} runs; "
        f"lrgym {', '.join(versions)}.",
        "",
    ]

    header: tuple[str, ...] = (
        "controller",
        "kind",
        "runs",
        "final train loss (geometric mean [95% CI])",
        "reward (mean [95% CI])",
        "test accuracy (mean [95% CI])",
        "diverged",
        "wall time (median s per run)",
        "within 2x of oracle",
    )
    body: list[tuple[str, ...]] = []
    for line in _main_lines(table):
        body.append(
            (
                line.label,
                line.kind,
                str(len(line.rows)),
                loss_with_ci(line.rows),
                _mean_with_ci(line.rows, lambda r: r["reward"]),
                _mean_with_ci(line.rows, lambda r: r["test_accuracy"]),
                str(sum(is_diverged(r) for r in line.rows)),
                _number(float(np.median([r["wall_time"] for r in line.rows]))),
                _share(robustness_score(line.rows, oracle)) if oracle else "-",
            )
        )
    out += _table(header, body)

    if any(r["eta0_source"] == "grid" and r["kind"] not in ("constant", "oracle") for r in table):
        sweep = _sweep_lines(table)
        grid: dict[str, float] = {}
        for line in sweep:
            for r in line.rows:
                label = eta0_label(r["eta0"])
                grid[label] = min(r["eta0"], grid.get(label, math.inf))
        columns = sorted(grid, key=grid.__getitem__)
        header = (
            "controller",
            "within 2x of oracle (grid)",
            "final train loss (geometric mean over the grid)",
            *columns,
        )
        body = []
        for line in sweep:
            at: dict[str, list[Row]] = {}
            for r in line.rows:
                at.setdefault(eta0_label(r["eta0"]), []).append(r)
            body.append(
                (
                    line.label,
                    _share(robustness_score(line.rows, oracle)) if oracle else "-",
                    _number(line.geometric_mean()),
                    *(_number(geometric_mean_loss(at[c])) if c in at else "-" for c in columns),
                )
            )
        out += ["", "## Sensitivity to eta0", "", SENSITIVITY_NOTE.rstrip("\n"), ""]
        out += _table(header, body)

    out += ["", HOW_TO_READ.rstrip("\n")]
    return "\n".join(out) + "\n"


def summary_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """A few plain-text lines for a terminal: every controller of the main table except the
    single grid constants (the best of them stays) and the perturbed variants, with its
    geometric-mean final training loss, its robustness score and, with an eta0 sweep, its
    robustness over the grid (the constant grid's own on the line ``constant (grid)``)."""
    table = with_oracle(rows)
    oracle = [r for r in table if r["kind"] == "oracle"]
    sweep = {line.label: line for line in _sweep_lines(table)}
    if set(sweep) <= {"constant"}:  # the grid alone is no sweep
        sweep = {}
    main = _main_lines(table)
    best_constant = next((line for line in main if line.kind == "constant"), None)
    chosen = [
        line for line in main if line.kind not in ("constant", "perturbed") or line is best_constant
    ]
    header = ["controller", "final train loss", "within 2x of oracle"]
    if sweep:
        header.append("from every eta0 of the grid")
    body: list[list[str]] = []
    for line in chosen:
        cells = [line.label, _number(line.geometric_mean())]
        cells.append(_share(robustness_score(line.rows, oracle)) if oracle else "-")
        if sweep:
            name = "constant" if line is best_constant else line.label
            grid = sweep.get(name)
            cells.append(_share(robustness_score(grid.rows, oracle)) if grid and oracle else "-")
        body.append(cells)
    widths = [max(len(c) for c in column) for column in zip(header, *body, strict=True)]
    suites = sorted({f"{r['suite']} v{r['suite_version']}" for r in table})
    tasks = len({task_key(r) for r in table})
    lines = [f"{', '.join(suites)}: {tasks} held-out task{'s' * (tasks != 1)}"]
    for row in (header, *body):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def write_leaderboard(csv_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the leaderboard of a results CSV (:func:`leaderboard_markdown`) atomically.

    It reads the CSV (:func:`read_results`), so the leaderboard depends on the file's text
    alone: ``lrgym leaderboard OUT/results.csv`` rewrites the same bytes the benchmark wrote.

    Args:
        csv_path: a file written by :func:`write_results`.
        out_path: where to write; default ``leaderboard.md`` beside the CSV.

    Returns:
        the path written.

    Raises:
        InvalidConfigError: the CSV is missing, malformed or has no rows.
    """
    source = Path(csv_path)
    target = source.with_name("leaderboard.md") if out_path is None else Path(out_path)
    rows = read_results(source)
    if not rows:
        raise InvalidConfigError(
            f"results file {str(source)!r} has no rows: nothing to rank. Fix: run "
            "`lrgym benchmark` to completion first."
        )
    write_atomic(target, leaderboard_markdown(rows))
    return target
