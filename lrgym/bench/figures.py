"""Figures of a benchmark's results: PNG files drawn from ``results.csv`` and the run curves.

:func:`write_figures` reads the CSV (:func:`lrgym.bench.results.read_results`) and the ``.npz``
curves it points to, and writes each figure whose data exists:

* ``sensitivity.png``: final training loss against eta0, for the constant grid and every
  controller of an eta0 sweep, with the oracle's median as a reference;
* ``loss_curves.png`` and ``lr_trajectories.png``: the mini-batch loss and the learning rate
  of every controller of the leaderboard's main table on the first three tasks;
* ``perturbation.png``: how much perturbing a learned controller's parameters changes its
  final training loss, task by task.

The figures follow the leaderboard's conventions (:mod:`lrgym.bench.statistics`): a diverged run
counts with its initial training loss, and tasks weigh equally.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrgym.bench.leaderboard import eta0_label
from lrgym.bench.results import Row, read_results
from lrgym.bench.statistics import (
    TaskKey,
    counted_loss,
    is_diverged,
    per_task_values,
    task_key,
    with_oracle,
)
from lrgym.errors import InvalidConfigError
from lrgym.jsonfile import write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
"""Resolution of every figure."""

SMOOTHING = 20
"""Window (steps) of the moving average of the mini-batch loss curves."""

CURVE_TASKS = 3
"""Number of tasks (the lowest task indices) drawn in the curve figures."""

_LINESTYLES = ("-", "--", "-.", ":")


class _Styles:
    """A colour and line style per line label, fixed for all the figures of one call: ten
    colours, then the same colours with the next line style (40 distinct styles)."""

    def __init__(self, labels: Iterable[str]) -> None:
        import matplotlib

        palette = matplotlib.colormaps["tab10"]
        # plain controllers first, so that they get the solid lines; variants ("name [...]") after
        others = sorted(set(labels) - {"oracle"}, key=lambda label: (" [" in label, label))
        self._styles: dict[str, dict[str, Any]] = {"oracle": {"color": "black", "ls": "--"}}
        for i, label in enumerate(others):
            self._styles[label] = {
                "color": palette(i % 10),
                "ls": _LINESTYLES[(i // 10) % len(_LINESTYLES)],
            }

    def __call__(self, label: str) -> dict[str, Any]:
        return self._styles.get(label, {"color": "grey", "ls": "-"})


def _new_figure(width: float, height: float, panels: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def _legend_outside(figure: Figure, axes: Sequence[Axes]) -> None:
    """One legend for all panels, right of the plot area (duplicate labels once)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        for handle, label in zip(handles, labels, strict=True):
            seen.setdefault(label, handle)
    if seen:
        figure.legend(
            list(seen.values()),
            list(seen),
            loc="outside right upper",
            fontsize="small",
            ncol=1 if len(seen) <= 24 else 2,
            frameon=False,
        )


def _save(figure: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    figure.clear()
    write_atomic(path, buffer.getvalue())
    return path


def _log_counted_loss(row: Mapping[str, Any]) -> float:
    loss = counted_loss(row)
    return math.log(loss) if loss > 0 else math.nan


def _suite_title(rows: Sequence[Row]) -> str:
    suites = sorted({(r["suite"], r["suite_version"]) for r in rows})
    return ", ".join(f"{name} v{version}" for name, version in suites)


def _sensitivity(rows: list[Row], styles: _Styles) -> Figure | None:
    """Final training loss against eta0 (median over tasks, interquartile band)."""
    if not any(
        r["eta0_source"] == "grid" and r["kind"] not in ("constant", "oracle") for r in rows
    ):
        return None
    series: dict[str, list[Row]] = {}
    for r in rows:
        if r["eta0_source"] != "grid" or r["kind"] == "oracle":
            continue
        label = "constant" if r["kind"] == "constant" else r["controller"]
        series.setdefault(label, []).append(r)
    figure, (ax,) = _new_figure(8.0, 5.0)
    for label in sorted(series):
        at: dict[str, list[Row]] = {}
        for r in series[label]:
            at.setdefault(eta0_label(r["eta0"]), []).append(r)
        points = []
        for group in at.values():
            logs = np.array(list(per_task_values(group, _log_counted_loss).values()))
            logs = logs[np.isfinite(logs)]
            if logs.size:
                quartiles = np.exp(np.percentile(logs, [25.0, 50.0, 75.0]))
                points.append((min(r["eta0"] for r in group), *quartiles))
        if not points:
            continue
        eta0, low, median, high = np.array(sorted(points)).T
        style = styles(label)
        ax.plot(eta0, median, marker="o", ms=3, lw=1.2, label=label, **style)
        ax.fill_between(eta0, low, high, color=style["color"], alpha=0.12, lw=0)
    oracle = [r for r in rows if r["kind"] == "oracle"]
    if oracle:
        losses = np.array(list(per_task_values(oracle, counted_loss).values()))
        ax.axhline(
            float(np.median(losses)), color="black", ls="--", lw=1.0, label="oracle (median)"
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="eta0",
        ylabel="final training loss (diverged runs at their initial loss)",
        title=f"{_suite_title(rows)}: eta0 sensitivity (median over tasks, quartile band)",
    )
    ax.grid(True, which="major", alpha=0.3)
    _legend_outside(figure, [ax])
    return figure


def _load_curves(folder: Path, row: Row) -> dict[str, np.ndarray] | None:
    """The run's curves, or ``None`` when the row names none or the file is missing."""
    if not row["curves"]:
        return None
    path = folder / row["curves"]
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in ("losses", "learning_rates")}
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidConfigError(
            f"curves file {str(path)!r} is not readable ({exc}). Fix: rerun the benchmark run "
            "that wrote it, or set its row's curves to an empty string."
        ) from None


def moving_average(values: np.ndarray, window: int = SMOOTHING) -> tuple[np.ndarray, np.ndarray]:
    """The trailing moving average of per-step values over ``window`` steps.

    Returns:
        ``(steps, averages)``: every 1-based step ``t`` and the mean of the values of steps
        ``max(1, t - window + 1)`` to ``t`` (the first ``window - 1`` steps average the steps so
        far, so the curve starts at step 1). A non-finite value makes the windows that hold it
        non-finite.
    """
    if window < 1:
        raise InvalidConfigError(f"window={window!r} must be >= 1")
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    steps = np.arange(1, data.size + 1)
    if data.size == 0:
        return steps, np.zeros(0)
    with np.errstate(invalid="ignore"):
        sums = np.convolve(data, np.ones(window))[: data.size]
    return steps, sums / np.minimum(steps, window)


def _curve_lines(rows: list[Row]) -> dict[str, list[Row]]:
    """The main table's lines that have curves to draw: runs from the task's eta0 or their own
    rate, and the oracle (the constant grid's lines and the perturbed variants, which have a
    figure of their own, are left out)."""
    lines: dict[str, list[Row]] = {}
    for r in rows:
        if r["kind"] == "oracle":
            lines.setdefault("oracle", []).append(r)
        elif r["eta0_source"] in ("task", "fixed") and r["kind"] != "perturbed":
            lines.setdefault(r["controller"], []).append(r)
    return lines


def _curve_figures(
    rows: list[Row], folder: Path, styles: _Styles
) -> tuple[Figure | None, Figure | None]:
    """``loss_curves.png`` and ``lr_trajectories.png``, or ``None`` for no curves."""
    lines = _curve_lines(rows)
    tasks = sorted(
        {task_key(r) for group in lines.values() for r in group},
        key=lambda key: (key[2], key[0], key[1]),
    )[:CURVE_TASKS]
    curves: dict[TaskKey, list[tuple[str, dict[str, np.ndarray]]]] = {}
    for key in tasks:
        for label in sorted(lines):
            run = next((r for r in lines[label] if task_key(r) == key), None)
            loaded = None if run is None else _load_curves(folder, run)
            if loaded is not None:
                curves.setdefault(key, []).append((label, loaded))
    if not curves:
        return None, None

    def draw(
        plot: Callable[[Axes, str, dict[str, np.ndarray]], None], ylabel: str, clip: bool = False
    ) -> Figure:
        figure, axes = _new_figure(5.0 * len(tasks), 4.2, panels=len(tasks))
        for ax, key in zip(axes, tasks, strict=True):
            for label, loaded in curves.get(key, []):
                plot(ax, label, loaded)
            if clip:  # a diverging run shoots up by dozens of decades: stop at 3x the start
                starts = [float(c["losses"][0]) for _, c in curves.get(key, []) if c["losses"].size]
                finite = [x for x in starts if math.isfinite(x) and x > 0]
                if finite:
                    ax.set_ylim(top=3.0 * max(finite))
            ax.set(title=f"{key[0]} v{key[1]} task {key[2]}", xlabel="step")
            ax.grid(True, which="major", alpha=0.3)
        axes[0].set_ylabel(ylabel)
        _legend_outside(figure, axes)
        return figure

    def plot_loss(ax: Axes, label: str, loaded: dict[str, np.ndarray]) -> None:
        steps, averages = moving_average(loaded["losses"])
        keep = np.isfinite(averages) & (averages > 0)
        ax.plot(steps[keep], averages[keep], lw=1.0, label=label, **styles(label))
        ax.set(xscale="log", yscale="log")

    def plot_lr(ax: Axes, label: str, loaded: dict[str, np.ndarray]) -> None:
        rates = np.asarray(loaded["learning_rates"], dtype=np.float64).reshape(-1)
        steps = np.arange(1, rates.size + 1)
        keep = np.isfinite(rates) & (rates > 0)
        ax.plot(steps[keep], rates[keep], lw=1.0, label=label, **styles(label))
        ax.set(yscale="log")

    loss_figure = draw(plot_loss, f"mini-batch loss ({SMOOTHING}-step moving average)", clip=True)
    lr_figure = draw(plot_lr, "learning rate")
    return loss_figure, lr_figure


def _perturbation(rows: list[Row], styles: _Styles) -> Figure | None:
    """Final training loss of each perturbed variant over its unperturbed controller's."""
    base: dict[tuple[str, TaskKey], Row] = {}
    for r in rows:
        if r["kind"] == "learned" and r["eta0_source"] == "task":
            base.setdefault((r["controller"], task_key(r)), r)
    ratios: dict[str, list[tuple[float, bool]]] = {}
    for r in rows:
        if r["kind"] != "perturbed" or r["eta0_source"] != "task":
            continue
        reference = base.get((r["controller"].split(" [")[0], task_key(r)))
        if reference is None:
            continue
        ratio = counted_loss(r) / counted_loss(reference)
        if math.isfinite(ratio) and ratio > 0:
            ratios.setdefault(r["controller"], []).append((ratio, is_diverged(r)))
    if not ratios:
        return None
    variants = sorted(ratios)
    figure, (ax,) = _new_figure(max(6.0, 1.5 + 0.9 * len(variants)), 4.8)
    for position, variant in enumerate(variants):
        points = ratios[variant]
        offsets = np.linspace(-0.2, 0.2, len(points)) if len(points) > 1 else np.zeros(1)
        color = styles(variant)["color"]
        for (ratio, diverged), offset in zip(points, offsets, strict=True):
            ax.plot(
                position + offset,
                ratio,
                marker="x" if diverged else "o",
                ms=6 if diverged else 4,
                ls="none",
                color="red" if diverged else color,
                alpha=0.8,
            )
    ax.axhline(1.0, color="black", lw=1.0, label="no change")
    ax.axhline(2.0, color="grey", lw=0.8, ls="--", label="2x / 0.5x")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.plot([], [], marker="x", ls="none", color="red", label="perturbed run diverged")
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels(variants, rotation=30, ha="right", fontsize="small")
    ax.set_xlim(-0.6, len(variants) - 0.4)
    ax.set(
        yscale="log",
        ylabel="final training loss / unperturbed controller's",
        title=f"{_suite_title(rows)}: parameter perturbation (one point per task)",
    )
    ax.grid(True, axis="y", which="major", alpha=0.3)
    _legend_outside(figure, [ax])
    return figure


def write_figures(csv_path: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw the figures of a results CSV and write them as PNG files (atomically).

    Each figure is written only when its data exists: ``sensitivity.png`` when the CSV holds an
    eta0 sweep (``eta0_source == "grid"`` rows of other kinds than constant and oracle),
    ``loss_curves.png`` and ``lr_trajectories.png`` when at least one run's curves file exists,
    ``perturbation.png`` when there are perturbed runs with their unperturbed controller's run
    on the same task. Curves files are found relative to the CSV's folder; rows without one,
    or whose file is missing, are skipped.

    Args:
        csv_path: a file written by :func:`lrgym.bench.results.write_results`.
        out_dir: the folder to write into; default the CSV's folder.

    Returns:
        the paths written, in the order above.

    Raises:
        InvalidConfigError: the CSV is missing or malformed, or a curves file is unreadable.
    """
    source = Path(csv_path)
    folder = source.parent if out_dir is None else Path(out_dir)
    rows = with_oracle(read_results(source))
    labels = {"constant", "oracle"} | {r["controller"] for r in rows}
    styles = _Styles(labels)
    written = []
    sensitivity = _sensitivity(rows, styles)
    if sensitivity is not None:
        written.append(_save(sensitivity, folder / "sensitivity.png"))
    loss_figure, lr_figure = _curve_figures(rows, source.parent, styles)
    if loss_figure is not None and lr_figure is not None:
        written.append(_save(loss_figure, folder / "loss_curves.png"))
        written.append(_save(lr_figure, folder / "lr_trajectories.png"))
    perturbation = _perturbation(rows, styles)
    if perturbation is not None:
        written.append(_save(perturbation, folder / "perturbation.png"))
    return written
