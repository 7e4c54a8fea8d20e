"""Feature settings and the two variances the features are logs of."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lrgym.errors import InvalidConfigError, choice_error

EPS = 1e-30
"""Added to every variance before the log."""

FEATURE_NAMES = ("avg_phi1", "avg_phi2", "unc_phi1", "unc_phi2", "bias")
"""The entries of ``phi_hat``, in order."""

ESTIMATES = ("dense", "last", "hold")
"""How ``phi1`` is estimated between exact steps (see :class:`FeatureConfig`)."""


@dataclass(frozen=True)
class FeatureConfig:
    """How features are computed in the training loop.

    Attributes:
        gamma: weight of the old value in the running averages, in ``[0, 1)`` (paper notes:
            0.9 in the public reconstructions; our default).
        every: compute ``phi1`` exactly every ``every`` steps (1 = every step, exact).
            ``phi2`` is always exact, and the running averages are updated every step.
        estimate: how ``phi1`` is estimated on the steps between exact ones. Every optimiser
            here steps ``dw = -eta d`` with a direction ``d``, so
            ``phi1 = 2 log eta + log Var_i(grad f_i^T d)``; the estimates work with ``d``:

            * ``"dense"``: from the shares of the *dense* layers (linear layers and convs to a
              1x1 output, whose share is a small matrix product; the last layer for nets
              without spatial convs), computed every step. The other layers' share is
              predicted from them by a least-squares regression over the examples, fitted at
              the exact steps (:class:`ShareRegression`); its residual variance is added.
              Follows the batch-to-batch variation of ``phi1``; costs the dense layers'
              share every step.
            * ``"last"``: the same with the last layer's share alone: cheaper, follows less.
            * ``"hold"``: ``phi1_t ~ phi1_s + 2 log(eta_t / eta_s)`` (``s`` the last exact
              step): only the learning-rate term moves. Costs nothing between exact steps.
    """

    gamma: float = 0.9
    every: int = 1
    estimate: str = "dense"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.gamma) < 1.0:
            raise InvalidConfigError(f"gamma={self.gamma!r} must lie in [0, 1)")
        if int(self.every) != self.every or self.every < 1:
            raise InvalidConfigError(f"feature_every={self.every!r} must be an integer >= 1")
        if self.estimate not in ESTIMATES:
            raise choice_error("feature_estimate", self.estimate, ESTIMATES)


def log_variance(values: torch.Tensor) -> float:
    """``log(Var(values) + EPS)`` with the unbiased variance of a 1-D tensor, in float64."""
    if values.numel() < 2:
        raise InvalidConfigError("a feature needs a batch of at least 2 examples")
    return math.log(float(values.detach().to(torch.float64).var()) + EPS)


def per_example_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each example, shape ``(B,)``.

    Args:
        logits: ``(B, C)`` for classes, or ``(B, T, V)`` for a sequence of ``T`` tokens over a
            vocabulary of ``V`` (next-token prediction): an example's loss is then the mean
            over its ``T`` tokens of each token's cross-entropy.
        targets: ``(B,)`` class labels, or ``(B, T)`` token ids with sequence logits; int64.

    Raises:
        InvalidConfigError: sequence logits whose ``(B, T)`` differs from the targets' shape.
    """
    if logits.dim() == 3 and targets.dim() == 2:
        if tuple(logits.shape[:2]) != tuple(targets.shape):
            raise InvalidConfigError(
                f"sequence logits {tuple(logits.shape)} are (B, T, V): targets must be (B, T), "
                f"not {tuple(targets.shape)}"
            )
        tokens = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        return tokens.view(targets.shape).mean(dim=1)
    return F.cross_entropy(logits, targets, reduction="none")
