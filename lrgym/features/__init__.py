"""The paper's state features and their smoothing.

For a mini-batch of ``B`` examples with per-example losses ``f_i`` and the parameter update
``dw`` the optimiser actually applied:

* ``phi1 = log(Var_i(grad f_i(w)^T dw) + EPS)``: spread of the first-order predicted change
  of each example's loss ("predictive change in function value");
* ``phi2 = log(Var_i(f_i(w)) + EPS)``: spread of the losses ("disagreement of function values").

``Var`` is the unbiased sample variance over the batch, computed in float64; ``EPS = 1e-30``
keeps a batch with zero variance finite (the feature floor is ``log(1e-30) ~ -69``).

``grad f_i^T dw`` is computed without per-example gradients. For a layer ``l`` whose output is
affine in its parameters given its input (conv1d/2d, linear, embedding, layer and group norm,
BatchNorm using its running statistics) with input ``x_l`` and output gradient
``g_l = dL/dy_l`` of the mean loss ``L = (1/B) sum f_i``, the layer's share of example ``i``'s
directional derivative is ``B * <g_l[i], layer(x_l[i]; dW_l, db_l)>``: the layer's functional
form applied to its own input with the update in place of its parameters, summed over
positions and sequence tokens. The input and the output gradient come from the normal
forward/backward pass; the cost is one extra forward of each layer. Parameters of other layer
types, and every parameter when BatchNorm uses batch statistics (each example's loss then
depends on the whole batch; the derivative holds the batch fixed), are handled exactly by
forward-mode automatic differentiation (``torch.func.jvp``) of the model's output, dotted with
the output's gradient.

:class:`FeatureSmoother` keeps the running averages and uncertainties
(``a <- gamma a + (1 - gamma) phi``; ``u <- gamma u + (1 - gamma) (phi - a)^2``) and builds the
controller's input ``phi_hat = [a1, a2, u1, u2, 1]``.

Modules: :mod:`~lrgym.features.config` (settings, ``log_variance``),
:mod:`~lrgym.features.records` and :mod:`~lrgym.features.probe` (what the hooks record),
:mod:`~lrgym.features.contraction` (a covered layer's share),
:mod:`~lrgym.features.forward_mode` (the other parameters), :mod:`~lrgym.features.base`
(one batch from scratch), :mod:`~lrgym.features.smoother` (running statistics, the share
regression), :mod:`~lrgym.features.estimate` (exact steps and the every-k estimate),
:mod:`~lrgym.features.direction` (the update's direction, the hypergradient) and
:mod:`~lrgym.features.step_probe` (:class:`StepProbe`: one training step's features, phase by
phase).
"""

from __future__ import annotations

from lrgym.features.base import base_features
from lrgym.features.config import (
    EPS,
    ESTIMATES,
    FEATURE_NAMES,
    FeatureConfig,
    log_variance,
    per_example_losses,
)
from lrgym.features.contraction import sum_shares
from lrgym.features.probe import DirectionalProbe
from lrgym.features.smoother import FeatureSmoother, ShareRegression
from lrgym.features.step_probe import StepProbe

__all__ = [
    "EPS",
    "ESTIMATES",
    "FEATURE_NAMES",
    "DirectionalProbe",
    "FeatureConfig",
    "FeatureSmoother",
    "ShareRegression",
    "StepProbe",
    "base_features",
    "log_variance",
    "per_example_losses",
    "sum_shares",
]
