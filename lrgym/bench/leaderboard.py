"""Benchmark results as a table on disk, and the leaderboard computed from it.

``lrgym benchmark`` runs controllers on a fixed suite of tasks and writes one row per run to
``results.csv`` (:data:`RESULT_COLUMNS`, :func:`write_results`). Everything here reads that
file back (:func:`read_results`) and summarises it; :func:`write_leaderboard` turns it into
``leaderboard.md``. The leaderboard depends on the text of the CSV alone: rows are put in a
canonical order before anything is computed, the bootstrap uses a fixed seed and numbers are
printed with a fixed number of significant digits, so recomputing it (``lrgym leaderboard
OUT/results.csv``) gives the same bytes, whatever the order of the rows in the file.

Conventions every summary shares:

* a *diverged* run (``diverged == 1`` or a non-finite final training loss) counts with its
  initial training loss: a diverged run counts as no progress (:func:`counted_loss`);
* a *task* is a ``(suite, suite_version, task_index)`` triple; summaries weight tasks equally
  (several runs of one line on one task are averaged first);
* the *oracle* of a task is the best constant learning rate of the grid on that task, chosen
  by final training loss (:func:`oracle_rows`).
"""

from __future__ import annotations

import csv
import io
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrgym.errors import InvalidConfigError, choice_error
from lrgym.jsonfile import write_atomic

Row = dict[str, Any]
"""One run: a dict with exactly the keys of :data:`RESULT_COLUMNS`."""

RESULT_COLUMNS: tuple[str, ...] = (
    "controller",
    "kind",
    "suite",
    "suite_version",
    "task_index",
    "task_seed",
    "eta0",
    "eta0_source",
    "final_train_loss",
    "initial_train_loss",
    "reward",
    "test_loss",
    "test_accuracy",
    "diverged",
    "steps",
    "steps_completed",
    "wall_time",
    "lrgym_version",
    "curves",
)
"""The columns of ``results.csv``, in file order.

* ``controller``: the line's name (``"constant"``, ``"cosine"``, ``"adam"``, ``"reps"``,
  ``"reps [theta1 +20%]"``, ...);
* ``kind``: one of :data:`KINDS`;
* ``suite``, ``suite_version``, ``task_index`` (0-based position in the suite), ``task_seed``;
* ``eta0``: the initial learning rate (for ``kind == "constant"``, the constant itself);
* ``eta0_source``: one of :data:`ETA0_SOURCES`;
* ``final_train_loss`` (``inf`` when diverged), ``initial_train_loss`` (before training),
  ``reward``, ``test_loss`` (``inf`` when diverged), ``test_accuracy`` (in [0, 1]);
* ``diverged``: 0 or 1; ``steps``, ``steps_completed``; ``wall_time`` (seconds);
* ``lrgym_version``; ``curves``: the run's ``.npz`` relative to the CSV's folder, or ``""``.

Floats are written as ``repr(float(x))`` (round-trip exact, ``inf`` and ``nan`` included),
integers as integers.
"""

KINDS: tuple[str, ...] = (
    "constant",
    "oracle",
    "schedule",
    "optimizer",
    "learned",
    "feature-cost",
    "perturbed",
)
"""Values of the ``kind`` column: the constant-lr grid, the derived oracle rows, fixed schedules,
optimiser baselines, learned controllers, their every-10-steps variants (``"feature-cost"``) and
their perturbed-parameter variants."""

ETA0_SOURCES: tuple[str, ...] = ("task", "grid", "fixed")
"""Values of the ``eta0_source`` column: the task's own sampled eta0, a value of the
half-decade grid (constant rows and eta0-sweep rows), an optimiser baseline's own rate."""

_TEXT = ("controller", "kind", "suite", "eta0_source", "lrgym_version", "curves")
_INTEGER = ("suite_version", "task_index", "task_seed", "steps", "steps_completed")
_FLOAT = (
    "eta0",
    "final_train_loss",
    "initial_train_loss",
    "reward",
    "test_loss",
    "test_accuracy",
    "wall_time",
)
_FLAG = ("diverged",)

ROBUSTNESS_FACTOR = 2.0
"""A run is *within 2x of the oracle* when its final training loss is at most this factor times
the oracle's on the same task (:func:`robustness_score`)."""

BOOTSTRAP_RESAMPLES = 2000
"""Resamples of the bootstrap confidence intervals (:func:`bootstrap_ci`)."""

TaskKey = tuple[str, int, int]


# --- the CSV file -------------------------------------------------------------------------


def _column_problem(have: Sequence[Any]) -> str:
    """What ``have`` lacks and has too many of, against :data:`RESULT_COLUMNS` ("" if neither)."""
    missing = [c for c in RESULT_COLUMNS if c not in have]
    unexpected = [str(k) for k in have if k not in RESULT_COLUMNS]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(repr(c) for c in missing)}")
    if unexpected:
        parts.append(f"unexpected {', '.join(repr(k) for k in unexpected)}")
    return "; ".join(parts)


def _check_keys(row: Mapping[str, Any], where: str) -> None:
    problem = _column_problem(list(row))
    if problem:
        raise InvalidConfigError(
            f"{where} does not have the results columns: {problem}. "
            f"Fix: give exactly the columns of lrgym.bench.leaderboard.RESULT_COLUMNS "
            f"({', '.join(RESULT_COLUMNS)})."
        )


def _check_values(row: Mapping[str, Any], where: str) -> None:
    if row["kind"] not in KINDS:
        raise choice_error(f"{where}: kind", row["kind"], KINDS)
    if row["eta0_source"] not in ETA0_SOURCES:
        raise choice_error(f"{where}: eta0_source", row["eta0_source"], ETA0_SOURCES)
    if not 0.0 < row["eta0"] < math.inf:
        raise InvalidConfigError(
            f"{where}: eta0={row['eta0']!r} must be a positive finite learning rate"
        )
    if row["task_index"] < 0:
        raise InvalidConfigError(f"{where}: task_index={row['task_index']!r} must be >= 0")


def _format_value(column: str, value: Any) -> str:
    """The CSV text of one value (raises ``TypeError``/``ValueError`` for a wrong type)."""
    if column in _TEXT:
        if not isinstance(value, str):
            raise TypeError("a string")
        return value
    if column in _INTEGER:
        return str(operator.index(value))
    if column in _FLOAT:
        if isinstance(value, str):
            raise TypeError("a number")
        return repr(float(value))
    if value not in (0, 1):  # diverged; True and False compare equal to 1 and 0
        raise ValueError("0 or 1")
    return "1" if value else "0"


def _parse_value(column: str, text: str) -> Any:
    """The value of one CSV field (raises ``ValueError`` for a malformed one)."""
    if column in _TEXT:
        return text
    if column in _INTEGER:
        return int(text)
    if column in _FLOAT:
        return float(text)
    if text not in ("0", "1"):
        raise ValueError("0 or 1")
    return int(text)


_EXPECTED = {
    **{c: "a string" for c in _TEXT},
    **{c: "an integer" for c in _INTEGER},
    **{c: "a float" for c in _FLOAT},
    **{c: "0 or 1" for c in _FLAG},
}


def write_results(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write benchmark rows to a CSV file (atomically), header first, rows in the given order.

    Args:
        path: the file to write (its folder is created).
        rows: dicts with exactly the keys of :data:`RESULT_COLUMNS`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidConfigError: a row lacks a column or has an extra key (both are named), or a
            value has the wrong type, an unknown ``kind``/``eta0_source`` or a bad ``eta0``.
    """
    target = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for number, row in enumerate(rows):
        where = f"results row {number}"
        _check_keys(row, where)
        fields = []
        for column in RESULT_COLUMNS:
            try:
                fields.append(_format_value(column, row[column]))
            except (TypeError, ValueError):
                raise InvalidConfigError(
                    f"{where}: {column}={row[column]!r} must be {_EXPECTED[column]}"
                ) from None
        _check_values(row, where)
        writer.writerow(fields)
    write_atomic(target, buffer.getvalue())
    return target


def read_results(path: str | Path) -> list[Row]:
    """Read a CSV file written by :func:`write_results`, with every value of its type again.

    Returns:
        the rows in file order: strings, Python ints (``task_seed`` may exceed 2**32), floats
        (``inf`` included) and ``diverged`` as 0 or 1.

    Raises:
        InvalidConfigError: the file does not exist, its header is not :data:`RESULT_COLUMNS`
            (the missing and unexpected columns are named) or a value is malformed (its line and
            column are named).
    """
    source = Path(path)
    try:
        text = source.read_text()
    except FileNotFoundError:
        raise InvalidConfigError(
            f"results file {str(source)!r} does not exist. Fix: pass the results.csv that "
            "`lrgym benchmark` wrote."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"results file {str(source)!r} is not readable ({exc})") from None
    lines = csv.reader(io.StringIO(text))
    header = next(lines, None)
    if header is None:
        raise InvalidConfigError(
            f"results file {str(source)!r} is empty; expected the header {','.join(RESULT_COLUMNS)}"
        )
    if tuple(header) != RESULT_COLUMNS:
        problem = _column_problem(header)
        raise InvalidConfigError(
            f"results file {str(source)!r} has the wrong columns: "
            f"{problem or 'the right columns in the wrong order'}. Fix: rewrite it with "
            f"lrgym.bench.leaderboard.write_results (columns: {', '.join(RESULT_COLUMNS)})."
        )
    rows: list[Row] = []
    for fields in lines:
        where = f"results file {str(source)!r} line {lines.line_num}"
        if not fields:
            continue
        if len(fields) != len(RESULT_COLUMNS):
            raise InvalidConfigError(
                f"{where} has {len(fields)} fields, expected {len(RESULT_COLUMNS)}; the file "
                "is damaged. Fix: rerun `lrgym benchmark` to rewrite it."
            )
        row: Row = {}
        for column, field in zip(RESULT_COLUMNS, fields, strict=True):
            try:
                row[column] = _parse_value(column, field)
            except ValueError:
                raise InvalidConfigError(
                    f"{where}: {column}={field!r} is not {_EXPECTED[column]}"
                ) from None
        _check_values(row, where)
        rows.append(row)
    return rows


def sort_rows(rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """The rows in the canonical order every summary uses (by suite, task, controller, kind,
    eta0 source, eta0, then every column's CSV text), so results never depend on the order of
    the rows in a file."""

    def key(row: Mapping[str, Any]) -> tuple[Any, ...]:
        text = tuple(_format_value(c, row[c]) for c in RESULT_COLUMNS)
        return (
            row["suite"],
            row["suite_version"],
            row["task_index"],
            row["controller"],
            row["kind"],
            row["eta0_source"],
            row["eta0"],
            text,
        )

    return [dict(row) for row in sorted(rows, key=key)]


# --- summaries ----------------------------------------------------------------------------


def task_key(row: Mapping[str, Any]) -> TaskKey:
    """The task a row ran on: ``(suite, suite_version, task_index)``."""
    return (row["suite"], row["suite_version"], row["task_index"])


def is_diverged(row: Mapping[str, Any]) -> bool:
    """Whether a run diverged: ``diverged == 1`` or a non-finite final training loss."""
    return bool(row["diverged"]) or not math.isfinite(row["final_train_loss"])


def counted_loss(row: Mapping[str, Any]) -> float:
    """The final training loss summaries count: a diverged run counts as no progress, with its
    initial training loss."""
    return float(row["initial_train_loss"] if is_diverged(row) else row["final_train_loss"])


def _log(value: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log(value))


def per_task_values(
    rows: Iterable[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float]
) -> dict[TaskKey, float]:
    """``value`` of every row, averaged over the rows of each task (tasks in sorted order)."""
    groups: dict[TaskKey, list[float]] = {}
    for row in sort_rows(rows):
        groups.setdefault(task_key(row), []).append(float(value(row)))
    return {key: float(np.mean(groups[key])) for key in sorted(groups)}


def _log_loss(row: Mapping[str, Any]) -> float:
    return _log(counted_loss(row))


def geometric_mean_loss(rows: Iterable[Mapping[str, Any]]) -> float:
    """The geometric mean of the final training losses of ``rows`` (:func:`counted_loss`: a
    diverged run counts as no progress, with its initial training loss).

    Tasks weigh equally: the logs of the runs of one task are averaged first, then the
    per-task means; with one run per task this is the plain geometric mean.

    Raises:
        InvalidConfigError: ``rows`` is empty.
    """
    logs = list(per_task_values(rows, _log_loss).values())
    if not logs:
        raise InvalidConfigError("geometric_mean_loss needs at least one row, got none")
    with np.errstate(invalid="ignore"):
        return float(np.exp(np.mean(logs)))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """A percentile bootstrap confidence interval of the mean of ``values`` (one per task).

    Tasks are resampled with replacement ``resamples`` times with
    ``np.random.default_rng(seed)``, so the interval is the same at every call.

    Returns:
        ``(low, high)``, the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the
        resampled means; ``(nan, nan)`` for no values.
    """
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if resamples < 1:
        raise InvalidConfigError(f"resamples={resamples!r} must be >= 1")
    if not 0.0 < level < 1.0:
        raise InvalidConfigError(f"level={level!r} must lie in (0, 1)")
    if data.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    tail = 100.0 * (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        means = data[picks].mean(axis=1)
        low, high = np.percentile(means, [tail, 100.0 - tail])
    return (float(low), float(high))


def _reward_rank(reward: float) -> float:
    """Sorts the highest reward first and a NaN reward last."""
    return math.inf if math.isnan(reward) else -reward


def oracle_rows(rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """The oracle of every task that has constant-grid rows: the best constant on that task.

    The oracle row copies the ``kind == "constant"`` row with the lowest final training loss
    (ties: the smaller eta0). On a task where every constant diverged it copies the one with the
    highest reward (ties: the smaller eta0). It is renamed ``controller = kind = "oracle"``,
    ``eta0_source = "grid"``, and its ``wall_time`` is the sum of the wall times of all the
    task's constant rows (the cost of finding it).

    Returns:
        one row per task, ordered by ``(suite, suite_version, task_index)``.
    """
    by_task: dict[TaskKey, list[Row]] = {}
    for row in sort_rows(r for r in rows if r["kind"] == "constant"):
        by_task.setdefault(task_key(row), []).append(row)
    oracles = []
    for key in sorted(by_task):
        constants = by_task[key]
        finished = [r for r in constants if not is_diverged(r)]
        if finished:
            best = min(finished, key=lambda r: (r["final_train_loss"], r["eta0"]))
        else:
            best = min(constants, key=lambda r: (_reward_rank(r["reward"]), r["eta0"]))
        oracle = dict(best)
        oracle.update(
            controller="oracle",
            kind="oracle",
            eta0_source="grid",
            wall_time=math.fsum(r["wall_time"] for r in constants),
        )
        oracles.append(oracle)
    return oracles


def with_oracle(rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """``rows`` plus the :func:`oracle_rows` of every task that has constant rows but no oracle
    row yet, in canonical order (:func:`sort_rows`)."""
    rows = sort_rows(rows)
    have = {task_key(r) for r in rows if r["kind"] == "oracle"}
    derived = [r for r in oracle_rows(rows) if task_key(r) not in have]
    return sort_rows(rows + derived)


def robustness_score(
    rows: Iterable[Mapping[str, Any]],
    oracle: Iterable[Mapping[str, Any]],
    *,
    factor: float = ROBUSTNESS_FACTOR,
) -> float | None:
    """The share of ``rows`` within ``factor`` x the oracle's final training loss on their task.

    A run counts when it did not diverge and its final training loss is at most ``factor``
    times the oracle's on the same task (a diverged run counts as ``inf``, and never counts;
    on a task whose oracle diverged every finished run counts). Runs on tasks without an
    oracle row are left out.

    Returns:
        the share in [0, 1], or ``None`` when no run has an oracle to compare with.
    """
    best: dict[TaskKey, float] = {}
    for row in oracle:
        loss = math.inf if is_diverged(row) else float(row["final_train_loss"])
        key = task_key(row)
        best[key] = min(loss, best.get(key, math.inf))
    compared = [r for r in rows if task_key(r) in best]
    if not compared:
        return None
    within = sum(
        1
        for r in compared
        if not is_diverged(r) and r["final_train_loss"] <= factor * best[task_key(r)]
    )
    return within / len(compared)


# --- the leaderboard ----------------------------------------------------------------------


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
    logs = np.array(list(per_task_values(rows, _log_loss).values()))
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
