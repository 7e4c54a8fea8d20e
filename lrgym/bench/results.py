"""The benchmark results table on disk: ``results.csv``, one row per run.

``lrgym benchmark`` writes one row per run (:data:`RESULT_COLUMNS`, :func:`write_results`);
:func:`read_results` reads the file back with every value of its type, and :func:`sort_rows`
puts rows in the canonical order every summary (:mod:`lrgym.bench.statistics`,
:mod:`lrgym.bench.leaderboard`) uses, so that nothing depends on the order of the rows in a file.
"""

from __future__ import annotations

import csv
import io
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
            f"Fix: give exactly the columns of lrgym.bench.results.RESULT_COLUMNS "
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
            f"lrgym.bench.results.write_results (columns: {', '.join(RESULT_COLUMNS)})."
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
