"""``phi1`` between exact steps (``feature_every=k``): which steps are exact, what they record,
and the estimate on the steps between them (see :class:`lrgym.FeatureConfig`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrgym.features.config import EPS, FeatureConfig
from lrgym.features.probe import DirectionalProbe
from lrgym.features.smoother import ShareRegression


@dataclass(frozen=True)
class StepPlan:
    """What one step's ``phi1`` needs, decided before its forward pass.

    Attributes:
        exact: ``phi1`` is computed exactly this step (every ``every``-th step).
        record: layers are recorded: exact steps, and the regression estimates between them
            (``"hold"`` records nothing between exact steps).
        forward_only: the exact ``phi1`` comes from forward-mode AD over every parameter
            (BatchNorm uses batch statistics); layers are then recorded only where the
            regression needs their shares.
        regression: the steps between exact ones are estimated by :class:`ShareRegression`
            (``every > 1``, estimate ``"dense"`` or ``"last"``).
    """

    exact: bool
    record: bool
    forward_only: bool
    regression: bool


class EveryKEstimate:
    """The every-k estimate's state: the layers whose shares it reads, the regression fitted at
    the exact steps, and ``phi1_s - 2 log eta_s`` of the last exact step ``s`` (``"hold"``).

    Args:
        config: the feature settings.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.layers: tuple[nn.Module, ...] | None = None
        """The estimated layers (chosen at the first exact step with an update)."""
        self.parameters: list[int] = []
        """Positions of the estimated layers' parameters."""
        self.regression = ShareRegression()
        self.held = 0.0

    def plan(self, step: int, mixing: bool) -> StepPlan:
        """The plan of step ``step`` (0-based); ``mixing``: BatchNorm uses batch statistics."""
        config = self.config
        exact = step % config.every == 0
        return StepPlan(
            exact=exact,
            record=exact or config.estimate != "hold",
            forward_only=exact and mixing,
            regression=config.every > 1 and config.estimate != "hold",
        )

    def recorded_layers(self, plan: StepPlan) -> tuple[nn.Module, ...] | None:
        """The layers a recording step records (``None``: every layer)."""
        if plan.exact and not plan.forward_only:
            return None
        if plan.regression:
            return self.layers  # None: every layer, until the estimated ones are chosen
        return ()

    def between(
        self, shares: Mapping[nn.Module, torch.Tensor], unit: float, scale: float, examples: int
    ) -> float:
        """``phi1`` of a step between exact ones from the estimated layers' ``shares`` of
        ``update = unit * d`` (the regression works in units of ``d``)."""
        if unit <= 0.0 or self.layers is None:
            return math.log(EPS)  # no step was taken: dw = 0
        chosen = self._chosen_shares(shares, scale, examples) / unit
        return math.log(unit * unit * self.regression.variance(chosen) + EPS)

    def fit(
        self,
        probe: DirectionalProbe,
        shares: Mapping[nn.Module, torch.Tensor],
        derivative: torch.Tensor,
        unit: float,
        scale: float,
    ) -> None:
        """Fold an exact step (``derivative``: its ``grad f_i^T dw``, ``dw = unit * d``) into the
        regression, choosing the estimated layers at the first one."""
        if self.layers is None:
            dense = probe.dense_layers()
            layers = probe.layers
            estimate_dense = self.config.estimate == "dense" and 0 < len(dense) < len(layers)
            chosen_layers = dense if estimate_dense else layers[-1:]
            self.layers = tuple(chosen_layers)
            self.parameters = probe.parameter_indices(chosen_layers)
        chosen = self._chosen_shares(shares, scale, probe.examples)
        self.regression.fit(chosen / unit, (derivative - chosen.sum(dim=1)) / unit)

    def _chosen_shares(
        self, shares: Mapping[nn.Module, torch.Tensor], scale: float, examples: int
    ) -> torch.Tensor:
        """The estimated layers' shares of ``grad f_i^T dw`` as columns ``(N, p)`` (zeros for
        a layer whose output did not reach the loss)."""
        assert self.layers is not None
        device = next(iter(shares.values())).device if shares else None
        columns = [
            shares[m] if m in shares else torch.zeros(examples, device=device) for m in self.layers
        ]
        return torch.stack(columns, dim=1).mul_(scale)

    def state_dict(self, layers: Sequence[nn.Module]) -> dict[str, Any]:
        """``held``, the estimated layers (positions in ``layers``) and the regression."""
        estimated = None if self.layers is None else [list(layers).index(m) for m in self.layers]
        return {
            "held": self.held,
            "estimated_layers": estimated,
            "regression": self.regression.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any], probe: DirectionalProbe) -> None:
        """Restore :meth:`state_dict` (``probe``: the one whose layers it names)."""
        self.held = float(state["held"])
        estimated = state["estimated_layers"]
        if estimated is None:
            self.layers, self.parameters = None, []
        else:
            self.layers = tuple(probe.layers[i] for i in estimated)
            self.parameters = probe.parameter_indices(self.layers)
        self.regression.load_state_dict(state["regression"])
