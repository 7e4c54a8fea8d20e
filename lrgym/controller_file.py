"""Learned controllers as small, versioned JSON files.

A controller file holds the learned search distribution over ``theta`` (mean and covariance),
the env it was learned on (id and keyword arguments), the feature settings and the lrgym version.
:func:`load_controller` reads one back; :meth:`SavedController.controller` gives the
:class:`~lrgym.controllers.LogLinearController` that runs it::

    saved = lrgym.load_controller("runs/digits/controller.json")
    result = lrgym.train(task, saved.controller(), data)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrgym.controllers import DEFAULT_LR_BOUNDS, LogLinearController
from lrgym.errors import LrgymError

FORMAT = "lrgym-controller"
VERSION = 1
"""The file format version :func:`load_controller` reads."""


class ControllerFileError(LrgymError):
    """A controller file is missing, unreadable, of another format or of a newer version."""


@dataclass(frozen=True)
class SavedController:
    """A learned log-linear controller and where it came from.

    Attributes:
        theta: mean of the learned distribution over ``theta`` (5 numbers).
        theta_cov: its covariance (5 x 5).
        env_id: the env it was learned on.
        env_kwargs: that env's keyword arguments (beyond the registered ones).
        relative: whether the controller is the relative form.
        lr_bounds: the clipping range of eta.
        features: the feature settings (``gamma``, ``every``, ``estimate``).
        lrgym_version: the lrgym version that wrote the file.
        source: free-form provenance (algorithm, iteration, seed).
    """

    theta: tuple[float, ...]
    theta_cov: tuple[tuple[float, ...], ...]
    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    relative: bool = False
    lr_bounds: tuple[float, float] = DEFAULT_LR_BOUNDS
    features: Mapping[str, Any] = field(default_factory=dict)
    lrgym_version: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)

    def controller(self) -> LogLinearController:
        """The controller with ``theta`` = the learned mean."""
        return LogLinearController(self.theta, relative=self.relative, lr_bounds=self.lr_bounds)

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "lrgym_version": self.lrgym_version,
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "theta": list(self.theta),
            "theta_cov": [list(row) for row in self.theta_cov],
            "relative": self.relative,
            "lr_bounds": list(self.lr_bounds),
            "features": dict(self.features),
            "source": dict(self.source),
        }


def save_controller(saved: SavedController, path: str | os.PathLike[str]) -> Path:
    """Write ``saved`` to ``path`` atomically (a crash leaves the old file or the new one)."""
    target = Path(path)
    write_atomic(target, json.dumps(saved.to_json(), indent=1) + "\n")
    return target


def load_controller(path: str | os.PathLike[str]) -> SavedController:
    """Read a controller file written by :func:`save_controller` (``lrgym train reps``).

    Raises:
        ControllerFileError: the file is missing, not JSON, not a controller file, of a newer
            format version, or its values are malformed.
    """
    source = Path(path)
    try:
        content = json.loads(source.read_text())
    except FileNotFoundError:
        raise ControllerFileError(f"controller file {str(source)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControllerFileError(
            f"controller file {str(source)!r} is not readable JSON ({exc})"
        ) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ControllerFileError(
            f'{str(source)!r} is not an lrgym controller file (no "format": "{FORMAT}")'
        )
    version = content.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ControllerFileError(
            f"{str(source)!r} has format version {version!r}; this lrgym reads versions up to "
            f"{VERSION}: upgrade lrgym"
        )
    try:
        theta = _floats(content["theta"], 5, "theta")
        cov = tuple(_floats(row, 5, "theta_cov row") for row in content["theta_cov"])
        if len(cov) != 5:
            raise ValueError("theta_cov must have 5 rows")
        low, high = _floats(content["lr_bounds"], 2, "lr_bounds")
        saved = SavedController(
            theta=theta,
            theta_cov=cov,
            env_id=str(content["env_id"]),
            env_kwargs=dict(content.get("env_kwargs", {})),
            relative=bool(content.get("relative", False)),
            lr_bounds=(low, high),
            features=dict(content.get("features", {})),
            lrgym_version=str(content.get("lrgym_version", "")),
            source=dict(content.get("source", {})),
        )
        saved.controller()  # validates theta and lr_bounds
    except (KeyError, TypeError, ValueError, LrgymError) as exc:
        raise ControllerFileError(f"controller file {str(source)!r} is malformed: {exc}") from None
    return saved


def _floats(values: Sequence[Any], count: int, name: str) -> tuple[float, ...]:
    numbers = tuple(float(v) for v in values)
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name} must be {count} finite numbers, got {values!r}")
    return numbers


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text or bytes) to ``path`` so that a crash at any moment leaves either
    the old content or the new one: write a temporary file beside it, flush it to disk, rename
    it over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def theta_distribution(
    action_mean: np.ndarray, action_cov: np.ndarray, center: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map a Gaussian over normalised actions to one over ``theta = center + scale * a``."""
    theta = center + scale * np.clip(action_mean, -1.0, 1.0)
    return theta, action_cov * np.outer(scale, scale)
