"""The running statistics the controller reads, and the regression that estimates ``phi1``
between exact steps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lrgym.errors import InvalidConfigError


class ShareRegression:
    """Predicts ``Var_i(grad f_i^T d)`` from a few layers' shares between exact steps.

    Write ``df_i = sum_j x_ij + r_i`` with ``x_ij`` the share of chosen layer ``j`` (columns of
    ``chosen``) and ``r_i`` the share of all other layers. At each exact step :meth:`fit` adds
    the batch's covariance matrix of ``(x_i1, ..., x_ip, r_i)`` to exponentially weighted
    moments (weight ``1 - keep`` for the new batch). :meth:`variance` then predicts
    ``r_i ~ x_i^T beta`` by least squares and returns
    ``Var_i(x_i^T (1 + beta)) + residual variance``: the chosen layers' fresh shares carry the
    batch-to-batch variation, the regression carries how the other layers move with them.
    """

    def __init__(self, keep: float = 0.5) -> None:
        if not 0.0 <= keep < 1.0:
            raise InvalidConfigError(f"keep={keep!r} must lie in [0, 1)")
        self.keep = float(keep)
        self.moments: torch.Tensor | None = None
        self._slope: torch.Tensor | None = None  # 1 + beta
        self._residual = 0.0

    def fit(self, chosen: torch.Tensor, rest: torch.Tensor) -> None:
        """Fold in one exact step: ``chosen`` ``(B, p)`` shares, ``rest`` ``(B,)`` the others."""
        z = torch.cat([chosen, rest[:, None]], dim=1).to(torch.float64)
        z = z - z.mean(dim=0)
        moments = z.T @ z / (z.shape[0] - 1)
        if self.moments is None:
            self.moments = moments
        else:
            self.moments = self.keep * self.moments + (1.0 - self.keep) * moments
        p = chosen.shape[1]
        mxx, mxy, myy = self.moments[:p, :p], self.moments[:p, p], self.moments[p, p]
        # a tiny ridge keeps a layer whose share is all zeros from making mxx singular
        ridge = 1e-12 * float(mxx.diagonal().sum()) + 1e-300
        beta = torch.linalg.solve(mxx + ridge * torch.eye(p, dtype=mxx.dtype), mxy)
        self._slope = (1.0 + beta).to(chosen.dtype)
        self._residual = max(float(myy - mxy @ beta), 0.0)

    def variance(self, chosen: torch.Tensor) -> float:
        """Predicted ``Var_i(df_i)`` for a batch whose chosen layers' shares are ``chosen``."""
        if self._slope is None:
            raise RuntimeError("ShareRegression.variance called before any fit")
        prediction = (chosen @ self._slope).to(torch.float64)
        return float(prediction.var()) + self._residual

    def state_dict(self) -> dict[str, Any]:
        """The fitted moments, slope ``1 + beta`` and residual variance (``None``, ``None``,
        ``0.0`` before any fit)."""
        return {"moments": self.moments, "slope": self._slope, "residual": self._residual}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.moments = state["moments"]
        self._slope = state["slope"]
        self._residual = float(state["residual"])


class FeatureSmoother:
    """Running averages and uncertainties of ``phi1`` and ``phi2``.

    The first value of a feature initialises its average (uncertainty 0), so the average does
    not start biased towards 0.
    """

    def __init__(self, gamma: float) -> None:
        self.gamma = float(gamma)
        self.average = [math.nan, math.nan]
        self.uncertainty = [0.0, 0.0]

    def update(self, index: int, value: float) -> None:
        """Fold a new raw value of feature ``index`` (0: phi1, 1: phi2) into its statistics."""
        g = self.gamma
        if math.isnan(self.average[index]):
            self.average[index] = value
            return
        self.average[index] = g * self.average[index] + (1.0 - g) * value
        deviation = value - self.average[index]
        self.uncertainty[index] = g * self.uncertainty[index] + (1.0 - g) * deviation**2

    def vector(self) -> np.ndarray:
        """``phi_hat = [a1, a2, u1, u2, 1]`` as float64, shape ``(5,)``."""
        return np.array([*self.average, *self.uncertainty, 1.0], dtype=np.float64)
