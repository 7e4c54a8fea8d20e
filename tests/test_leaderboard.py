"""The results table, the leaderboard and the figures (lrgym.bench: leaderboard, figures)."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrgym.bench.figures import moving_average, write_figures
from lrgym.bench.leaderboard import leaderboard_markdown, write_leaderboard
from lrgym.bench.results import RESULT_COLUMNS, read_results, write_results
from lrgym.bench.statistics import bootstrap_ci, geometric_mean_loss, oracle_rows, robustness_score
from lrgym.cli import main
from lrgym.errors import InvalidConfigError

GRID = [10 ** (k / 2) for k in range(-10, 1)]
"""The half-decade grid 1e-5, 3.16e-5, ..., 1."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_row(**fields: Any) -> dict[str, Any]:
    """A results row: defaults for every column, overridden by ``fields``."""
    row: dict[str, Any] = {
        "controller": "constant",
        "kind": "constant",
        "suite": "toy",
        "suite_version": 1,
        "task_index": 0,
        "task_seed": 12345,
        "eta0": 1e-3,
        "eta0_source": "grid",
        "final_train_loss": 0.5,
        "initial_train_loss": 2.3,
        "reward": 1.0,
        "test_loss": 0.6,
        "test_accuracy": 0.8,
        "diverged": 0,
        "steps": 60,
        "steps_completed": 60,
        "wall_time": 0.25,
        "lrgym_version": "0.1.0",
        "curves": "",
    }
    unknown = set(fields) - set(row)
    assert not unknown, unknown
    row.update(fields)
    return row


def _outcome(loss: float, initial: float, diverged: bool) -> dict[str, Any]:
    if diverged:
        return {
            "final_train_loss": math.inf,
            "test_loss": math.inf,
            "diverged": 1,
            "reward": -1.0 - 0.1 * initial,
            "test_accuracy": 0.1,
        }
    return {
        "final_train_loss": loss,
        "test_loss": 1.1 * loss,
        "diverged": 0,
        "reward": math.log(initial / loss),
        "test_accuracy": min(1.0, max(0.0, 1.0 - loss / 3.0)),
    }


def synthetic_rows(
    n_tasks: int = 4, *, sweep: bool = True, seed: int = 0, folder: Path | None = None
) -> list[dict[str, Any]]:
    """A small benchmark: the constant grid, learned/schedule/optimiser/feature-cost/perturbed
    controllers at the task's eta0 and (``sweep``) an eta0 sweep of two controllers. With a
    ``folder``, every run that the curve figures draw gets a small ``.npz`` under
    ``folder/curves``."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for task in range(n_tasks):
        best = -2.5 + 0.3 * float(rng.normal())
        scale = 0.05 + 0.1 * float(rng.random())
        initial = 2.3 + 0.01 * float(rng.random())
        common = {"task_index": task, "task_seed": 2**40 + 17 * task, "initial_train_loss": initial}

        def grid_loss(eta: float, best: float = best, scale: float = scale) -> float:
            return scale * (1.0 + (math.log10(eta) - best) ** 2)

        for eta in GRID:
            diverged = math.log10(eta) > best + 1.2
            rows.append(
                make_row(
                    eta0=eta,
                    wall_time=0.25 * (1 + task),
                    **common,
                    **_outcome(grid_loss(eta), initial, diverged),
                )
            )
        eta0 = 10 ** (best + 0.8 * float(rng.normal()))
        learned = scale * 1.1 * (1.0 + 0.2 * float(rng.random()))
        at_task = [
            ("reps", "learned", eta0, "task", learned, False),
            ("cosine", "schedule", eta0, "task", 0.9 * grid_loss(eta0), False),
            ("adam", "optimizer", 1e-3, "fixed", 1.5 * scale, False),
            ("reps [every 10, dense]", "feature-cost", eta0, "task", 1.05 * learned, False),
            ("reps [theta1 +20%]", "perturbed", eta0, "task", 1.3 * learned, task == 0),
            ("reps [theta1 -20%]", "perturbed", eta0, "task", 0.9 * learned, False),
        ]
        for name, kind, eta, source, loss, diverged in at_task:
            rows.append(
                make_row(
                    controller=name,
                    kind=kind,
                    eta0=eta,
                    eta0_source=source,
                    wall_time=0.5 + 0.125 * task,
                    **common,
                    **_outcome(loss, initial, diverged),
                )
            )
        if sweep:
            for eta in GRID:
                distance = (math.log10(eta) - best) ** 2
                reps = _outcome(scale * 1.2 * (1 + 0.1 * distance), initial, distance > 4.0)
                cosine = _outcome(0.9 * grid_loss(eta), initial, math.log10(eta) > best + 1.2)
                for name, kind, outcome in (
                    ("reps", "learned", reps),
                    ("cosine", "schedule", cosine),
                ):
                    rows.append(make_row(controller=name, kind=kind, eta0=eta, **common, **outcome))
    if folder is not None:
        for row in rows:
            if row["eta0_source"] in ("task", "fixed") or row["kind"] == "constant":
                row["curves"] = _write_curves(folder, row)
    return rows


def _write_curves(folder: Path, row: dict[str, Any]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{row['controller']}-{row['eta0']:.3g}-{row['task_index']}")
    relative = f"curves/{slug}.npz"
    steps = np.arange(1, 61)
    final = row["initial_train_loss"] if row["diverged"] else row["final_train_loss"]
    losses = row["initial_train_loss"] * (final / row["initial_train_loss"]) ** (steps / 60.0)
    (folder / "curves").mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / relative,
        losses=losses * (1 + 0.05 * np.sin(steps)),
        learning_rates=row["eta0"] * 0.98**steps,
        eval_steps=np.array([20, 40, 60]),
        eval_losses=losses[[19, 39, 59]],
    )
    return relative


# --- the CSV file -------------------------------------------------------------------------


def test_results_round_trip_exactly(tmp_path: Path) -> None:
    rows = synthetic_rows(3)
    rows[0]["task_seed"] = 2**63 + 12345  # larger than any fixed-width integer
    rows[1]["reward"] = 0.1 + 0.2  # not a short decimal
    assert any(math.isinf(r["final_train_loss"]) for r in rows)
    path = write_results(tmp_path / "out" / "results.csv", rows)
    assert path.read_text().splitlines()[0] == ",".join(RESULT_COLUMNS)
    back = read_results(path)
    assert back == rows
    assert [type(v) for v in back[0].values()] == [type(v) for v in rows[0].values()]
    assert back[0]["task_seed"] == 2**63 + 12345
    assert back[1]["reward"] == 0.1 + 0.2
    # names with commas and brackets survive the CSV quoting
    assert {r["controller"] for r in back} >= {"reps [every 10, dense]", "reps [theta1 +20%]"}


def test_write_results_names_missing_and_extra_keys(tmp_path: Path) -> None:
    row = make_row()
    del row["reward"]
    with pytest.raises(InvalidConfigError, match="missing 'reward'"):
        write_results(tmp_path / "a.csv", [row])
    with pytest.raises(InvalidConfigError, match="unexpected 'seed'"):
        write_results(tmp_path / "b.csv", [make_row() | {"seed": 3}])
    with pytest.raises(InvalidConfigError, match="kind='bogus'"):
        write_results(tmp_path / "c.csv", [make_row(kind="bogus")])
    with pytest.raises(InvalidConfigError, match="steps='sixty'"):
        write_results(tmp_path / "d.csv", [make_row(steps="sixty")])
    assert not list(tmp_path.iterdir())  # nothing written on an error


def test_read_results_names_bad_columns_values_and_paths(tmp_path: Path) -> None:
    good = write_results(tmp_path / "results.csv", [make_row()])
    header, line = good.read_text().splitlines()
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(header.replace("reward", "score") + "\n" + line + "\n")
    with pytest.raises(InvalidConfigError, match="missing 'reward'; unexpected 'score'"):
        read_results(renamed)
    extra = tmp_path / "extra.csv"
    extra.write_text(header + ",notes\n" + line + ",x\n")
    with pytest.raises(InvalidConfigError, match="unexpected 'notes'"):
        read_results(extra)
    damaged = tmp_path / "damaged.csv"
    fields = line.split(",")
    fields[RESULT_COLUMNS.index("final_train_loss")] = "low"
    damaged.write_text(header + "\n" + ",".join(fields) + "\n")
    with pytest.raises(InvalidConfigError, match="line 2: final_train_loss='low'"):
        read_results(damaged)
    missing = tmp_path / "nowhere" / "results.csv"
    with pytest.raises(InvalidConfigError, match=re.escape(str(missing))):
        read_results(missing)


# --- summaries ----------------------------------------------------------------------------


def test_oracle_is_the_best_constant_of_each_task() -> None:
    rows = synthetic_rows(5, sweep=False)
    # task 1: a tie between two constants; task 2: every constant diverged
    ties = [r for r in rows if r["kind"] == "constant" and r["task_index"] == 1]
    for r in ties[3:5]:
        r.update(final_train_loss=0.001, diverged=0)
    for r in rows:
        if r["kind"] == "constant" and r["task_index"] == 2:
            r.update(_outcome(0.0, r["initial_train_loss"], True))
            r["reward"] = -abs(math.log10(r["eta0"]) + 2.7)  # best at eta0 = 10**-2.5
    random.Random(0).shuffle(rows)

    oracles = oracle_rows(rows)
    assert [o["task_index"] for o in oracles] == [0, 1, 2, 3, 4]
    for oracle in oracles:
        constants = [
            r for r in rows if r["kind"] == "constant" and r["task_index"] == oracle["task_index"]
        ]
        best = None
        for r in constants:  # brute force: lowest finished loss, then smaller eta0
            if r["diverged"]:
                continue
            if best is None or (r["final_train_loss"], r["eta0"]) < (
                best["final_train_loss"],
                best["eta0"],
            ):
                best = r
        if best is None:  # all diverged: highest reward, then smaller eta0
            for r in constants:
                if best is None or (-r["reward"], r["eta0"]) < (-best["reward"], best["eta0"]):
                    best = r
        assert best is not None
        expected = best | {
            "controller": "oracle",
            "kind": "oracle",
            "eta0_source": "grid",
            "wall_time": pytest.approx(sum(r["wall_time"] for r in constants), rel=1e-12),
        }
        assert oracle == expected
    assert oracles[1]["eta0"] == ties[3]["eta0"] < ties[4]["eta0"]
    assert oracles[2]["eta0"] == pytest.approx(10**-2.5) and oracles[2]["diverged"] == 1


def test_robustness_score_matches_a_count() -> None:
    rows = synthetic_rows(6)
    oracles = oracle_rows(rows)
    best = {o["task_index"]: o["final_train_loss"] for o in oracles}
    for name in ("reps", "cosine", "reps [theta1 +20%]", "adam"):
        runs = [r for r in rows if r["controller"] == name]
        count = 0
        for r in runs:
            loss = math.inf if r["diverged"] else r["final_train_loss"]
            if loss <= 2.0 * best[r["task_index"]] and not math.isinf(loss):
                count += 1
        assert robustness_score(runs, oracles) == count / len(runs)
    assert robustness_score(rows, []) is None
    # a task whose oracle diverged: every finished run is within 2x, no diverged one
    oracle = make_row(kind="oracle", **_outcome(0.0, 2.3, True))
    finished, diverged = make_row(final_train_loss=2.2), make_row(**_outcome(0.0, 2.3, True))
    assert robustness_score([finished, diverged], [oracle]) == 0.5


def test_geometric_mean_counts_a_diverged_run_as_no_progress() -> None:
    rows = [
        make_row(task_index=0, final_train_loss=0.5),
        make_row(task_index=1, final_train_loss=0.2),
        make_row(task_index=2, initial_train_loss=2.0, **_outcome(0.0, 2.0, True)),
        make_row(task_index=3, initial_train_loss=4.0, final_train_loss=math.inf),
    ]
    assert geometric_mean_loss(rows) == pytest.approx((0.5 * 0.2 * 2.0 * 4.0) ** 0.25)
    # several runs of one task are averaged (in log space) before the tasks
    two_runs = [*rows[:2], make_row(task_index=1, final_train_loss=0.8)]
    expected = math.exp((math.log(0.5) + (math.log(0.2) + math.log(0.8)) / 2) / 2)
    assert geometric_mean_loss(two_runs) == pytest.approx(expected)
    with pytest.raises(InvalidConfigError):
        geometric_mean_loss([])


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_tasks() -> None:
    values = np.random.default_rng(3).lognormal(size=200)
    few, many = bootstrap_ci(values[:8]), bootstrap_ci(values)
    assert few[0] < float(np.mean(values[:8])) < few[1]
    assert many[0] < float(np.mean(values)) < many[1]
    assert many[1] - many[0] < 0.6 * (few[1] - few[0])
    assert bootstrap_ci(values[:8]) == few  # a fixed seed: the same interval every time
    assert bootstrap_ci([2.5]) == (2.5, 2.5)


# --- the leaderboard ----------------------------------------------------------------------


def _table_rows(text: str, title: str) -> list[list[str]]:
    """The body cells of the first Markdown table after the line ``title``."""
    lines = text.splitlines()
    start = lines.index(title) if title else 0
    table = []
    for line in lines[start:]:
        if line.startswith("|"):
            table.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif table:
            break
    return table[2:]


def test_leaderboard_layout(tmp_path: Path) -> None:
    rows = synthetic_rows(4)
    text = write_leaderboard(write_results(tmp_path / "results.csv", rows)).read_text()
    assert text.startswith("# Leaderboard: toy v1\n\n4 tasks, ")
    assert "lrgym 0.1.0." in text and "## How to read this" in text
    body = _table_rows(text, "")
    labels = [cells[0] for cells in body]
    assert {"oracle", "reps", "cosine", "adam", "constant 1e-03", "constant 3e-03"} <= set(labels)
    assert "reps [every 10, dense]" in labels and "reps [theta1 +20%]" in labels
    assert len([label for label in labels if label.startswith("constant ")]) == len(GRID)
    losses = [float(cells[3].split(" [")[0]) for cells in body]
    assert losses == sorted(losses)  # sorted by geometric-mean final loss
    oracle = body[labels.index("oracle")]
    assert oracle[2] == "4" and oracle[8] == "100%"
    # its wall time is the whole grid's: the median over tasks of the sum of the constants'
    assert oracle[7] == f"{np.median([0.25 * (1 + t) * len(GRID) for t in range(4)]):.3g}"
    perturbed = body[labels.index("reps [theta1 +20%]")]
    assert perturbed[6] == "1"  # one diverged run
    for cells in body:  # every point estimate lies in its interval
        for cell in cells[3:6]:
            point, low, high = map(float, re.findall(r"[-\d.e+]+|inf|nan", cell))
            assert low <= point <= high
    sensitivity = _table_rows(text, "## Sensitivity to eta0")
    assert sorted(cells[0] for cells in sensitivity) == ["constant", "cosine", "reps"]
    header = next(line for line in text.splitlines() if line.startswith("| controller | within"))
    assert header.endswith(
        "| 1e-05 | 3e-05 | 1e-04 | 3e-04 | 1e-03 | 3e-03 | 1e-02 | 3e-02 | 1e-01 | 3e-01 | 1e+00 |"
    )


def test_leaderboard_is_byte_identical_however_it_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = synthetic_rows(5)
    csv = write_results(tmp_path / "a" / "results.csv", rows)
    first = write_leaderboard(csv).read_bytes()
    assert write_leaderboard(csv).read_bytes() == first
    assert leaderboard_markdown(read_results(csv)).encode() == first
    assert main(["leaderboard", str(csv)]) == 0
    assert (tmp_path / "a" / "leaderboard.md").read_bytes() == first
    assert "leaderboard.md" in capsys.readouterr().out
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    other = write_results(tmp_path / "b" / "results.csv", shuffled)
    assert other.read_bytes() != csv.read_bytes()
    assert write_leaderboard(other).read_bytes() == first
    # a CSV that already holds the oracle rows (as the benchmark writes it) ranks the same
    with_oracle = write_results(tmp_path / "c" / "results.csv", rows + oracle_rows(rows))
    out = tmp_path / "c" / "board.md"
    assert main(["leaderboard", str(with_oracle), "--out", str(out)]) == 0
    assert out.read_bytes() == first


def test_leaderboard_without_sweep_or_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [r for r in synthetic_rows(3, sweep=False) if r["kind"] != "constant"]
    text = write_leaderboard(write_results(tmp_path / "results.csv", rows)).read_text()
    assert "Sensitivity" not in text and "| oracle |" not in text
    assert all(cells[8] == "-" for cells in _table_rows(text, ""))
    assert main(["leaderboard", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err


# --- figures ------------------------------------------------------------------------------


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_SIGNATURE and len(data) > 5000


@pytest.mark.slow
def test_write_figures(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    rows = synthetic_rows(4, folder=folder)
    rows[-1]["curves"] = "curves/deleted.npz"  # a missing file is skipped
    csv = write_results(folder / "results.csv", rows)
    written = write_figures(csv)
    names = ["sensitivity.png", "loss_curves.png", "lr_trajectories.png", "perturbation.png"]
    assert written == [folder / name for name in names]
    assert all(_is_png(path) for path in written)

    plain = tmp_path / "plain"
    no_sweep = synthetic_rows(2, sweep=False, folder=plain)
    elsewhere = tmp_path / "figures"
    written = write_figures(write_results(plain / "results.csv", no_sweep), elsewhere)
    assert [p.name for p in written] == names[1:]
    assert all(_is_png(path) for path in written) and not (plain / "sensitivity.png").exists()

    bare = [r | {"curves": ""} for r in no_sweep if r["kind"] != "perturbed"]
    assert write_figures(write_results(tmp_path / "bare" / "results.csv", bare)) == []


def test_moving_average_is_trailing() -> None:
    values = np.random.default_rng(0).random(45)
    steps, averages = moving_average(values, window=20)
    assert steps.tolist() == list(range(1, 46))
    for t in steps:  # brute force: the mean of the last (up to) 20 values
        assert averages[t - 1] == pytest.approx(np.mean(values[max(0, t - 20) : t]))
    _, averages = moving_average(np.array([1.0, 3.0, np.inf, 2.0]), window=2)
    assert averages.tolist() == [1.0, 2.0, math.inf, math.inf]
