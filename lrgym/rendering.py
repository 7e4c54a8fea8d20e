"""Pictures of a training run, for ``render_mode="rgb_array"``."""

from __future__ import annotations

import numpy as np

from lrgym.training import TrainingResult


def draw_curves(
    result: TrainingResult | None, *, width: int = 640, height: int = 360
) -> np.ndarray:
    """The run's mini-batch and evaluation losses and its learning rates, side by side.

    Returns:
        an RGB image, ``(height, width, 3)`` uint8. Before any run, empty axes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 80
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    loss_axes, lr_axes = figure.subplots(1, 2)
    loss_axes.set(title="training loss", xlabel="step", yscale="log")
    lr_axes.set(title="learning rate", xlabel="step", yscale="log")
    if result is not None and result.steps_completed:
        curves = result.curves
        steps = np.arange(1, result.steps_completed + 1)
        finite = np.isfinite(curves.losses) & (curves.losses > 0)
        loss_axes.plot(steps[finite], curves.losses[finite], lw=0.8, label="mini-batch")
        measured = np.isfinite(curves.eval_losses)
        loss_axes.plot(
            curves.eval_steps[measured], curves.eval_losses[measured], "o-", label="eval sample"
        )
        loss_axes.legend(loc="upper right")
        lr_axes.plot(steps, curves.learning_rates, lw=0.8)
        if result.diverged:
            figure.suptitle("diverged", color="red")
    else:
        figure.suptitle("no training run yet")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
