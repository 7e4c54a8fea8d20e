"""The paper's state features and their smoothing.

For a mini-batch of ``B`` examples with per-example losses ``f_i`` and the parameter update
``dw`` the optimiser actually applied:

* ``phi1 = log(Var_i(grad f_i(w)^T dw) + EPS)``: spread of the first-order predicted change
  of each example's loss ("predictive change in function value");
* ``phi2 = log(Var_i(f_i(w)) + EPS)``: spread of the losses ("disagreement of function values").

``Var`` is the unbiased sample variance over the batch, computed in float64; ``EPS = 1e-30``
keeps a batch with zero variance finite (the feature floor is ``log(1e-30) ~ -69``).

``grad f_i^T dw`` is computed without per-example gradients. For a conv or linear layer ``l``
with input ``x_l`` and output gradient ``g_l = dL/dy_l`` of the mean loss ``L = (1/B) sum f_i``,
the layer's share of example ``i``'s directional derivative is
``B * <g_l[i], layer(x_l[i]; dW_l, db_l)>``: the layer applied to its own input with the update
as its weights. The input and the output gradient come from the normal forward/backward pass;
the cost is one extra forward of each layer. Parameters of other layer types, and every
parameter when BatchNorm uses batch statistics (each example's loss then depends on the whole
batch; the derivative holds the batch fixed), are handled exactly by forward-mode automatic
differentiation (``torch.func.jvp``) of the model's output, dotted with the output's gradient.

:class:`FeatureSmoother` keeps the running averages and uncertainties
(``a <- gamma a + (1 - gamma) phi``; ``u <- gamma u + (1 - gamma) (phi - a)^2``) and builds the
controller's input ``phi_hat = [a1, a2, u1, u2, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrgym.errors import InvalidConfigError, choice_error
from lrgym.tasks.cnn import covers_whole_input, flatten_alike

EPS = 1e-30
"""Added to every variance before the log."""

FEATURE_NAMES = ("avg_phi1", "avg_phi2", "unc_phi1", "unc_phi2", "bias")
"""The entries of ``phi_hat``, in order."""

_COVERED = (nn.Conv2d, nn.Linear)
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
    """Cross-entropy of each example, shape ``(B,)``."""
    return F.cross_entropy(logits, targets, reduction="none")


@dataclass
class _Record:
    """One call of a layer: its input, the forward pass it belongs to, and the gradient of its
    output once backward ran (with, for a spatial conv with a bias, that gradient summed over
    positions, ``(B, C)``, taken while it is still in cache)."""

    inputs: torch.Tensor
    pass_index: int
    grad: torch.Tensor | None = None
    grad_sums: torch.Tensor | None = None


@dataclass
class _Pass:
    """One forward pass of the whole model whose output required a gradient.

    ``grad`` is the gradient of the output once backward ran. ``args``, ``kwargs`` and ``rng``
    (the random-number state before the pass, so dropout draws the same masks again) are kept
    only when forward-mode AD will need to run the pass again; ``mixing``: some BatchNorm layer
    used batch statistics, so each example's output depends on the whole batch."""

    mixing: bool
    batch: int = 0
    grad: torch.Tensor | None = None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    rng: tuple[torch.Tensor, list[torch.Tensor]] | None = None


class DirectionalProbe:
    """Records what ``grad f_i^T dw`` needs from a model's normal forward/backward passes.

    Once attached (:meth:`start` attaches), hooks on the model itself keep each forward pass
    whose output requires a gradient (:class:`_Pass`, several with gradient accumulation), and
    the output's gradient when backward runs. Between :meth:`start` and :meth:`stop`, forward
    hooks on the chosen conv and linear layers keep each layer's input, and a hook on its output
    keeps the output gradient. After the optimiser step, :meth:`layer_shares` and
    :meth:`directional_derivatives` contract them with the update; :meth:`clear` drops them.
    Without layer hooks a forward pass costs nothing extra; :meth:`detach` removes every hook.

    The gradients are those of the loss that was backpropagated, ``L = c sum_i f_i`` over the
    passes' examples; ``scale = 1 / c`` (the number of examples for a mean) turns them into the
    examples' own.

    Parameters outside conv/linear layers, and every parameter of a pass in which BatchNorm
    used batch statistics (then example ``i``'s loss depends on the whole batch through them,
    and ``grad f_i^T dw`` is the derivative with the batch held fixed), are handled exactly by
    forward-mode AD of the model's output, contracted with the output's gradient:
    ``grad f_i^T dw = scale <g_out[i], (J dw)[i]>``, as ``f_i`` depends on the output of
    example ``i`` alone. That needs the forward to return one tensor with the batch first.

    Args:
        model: the model.
        trainable: the parameters that are updated (default: those requiring a gradient);
            layers none of whose parameters are updated are not recorded.
        keep_inputs: keep every pass's inputs, for forward-mode AD over every parameter
            (otherwise they are kept only where the pass needs it); settable as
            :attr:`keep_inputs`.
    """

    def __init__(
        self,
        model: nn.Module,
        trainable: Iterable[nn.Parameter] | None = None,
        *,
        keep_inputs: bool = False,
    ) -> None:
        self.model = model
        self.keep_inputs = keep_inputs
        self._records: dict[nn.Module, list[_Record]] = {}
        self._passes: list[_Pass] = []
        self._pending: _Pass | None = None
        self._paused = False
        self._names = [name for name, _ in model.named_parameters()]
        params = dict(model.named_parameters())
        chosen = [p for p in params.values() if p.requires_grad] if trainable is None else trainable
        updated = {id(p) for p in chosen}
        self._updated = [id(params[n]) in updated for n in self._names]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._root_handles: list[torch.utils.hooks.RemovableHandle] = []
        covered_ids: set[int] = set()
        layers = []
        for module in model.modules():
            if isinstance(module, _COVERED):
                own = list(module.parameters(recurse=False))
                covered_ids.update(id(p) for p in own)
                if any(id(p) in updated for p in own):
                    layers.append(
                        (module, [self._names.index(n) for n in _param_names(model, module)])
                    )
        self._layers = layers
        self._uncovered = [
            n for n in self._names if id(params[n]) not in covered_ids and id(params[n]) in updated
        ]
        self._norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def attach(self) -> None:
        """Hook the model itself, so that its forward passes are recorded (idempotent)."""
        if not self._root_handles:
            self._root_handles = [
                self.model.register_forward_pre_hook(_Hook(self._pre_hook), with_kwargs=True),
                self.model.register_forward_hook(_Hook(self._post_hook), with_kwargs=True),
            ]

    def detach(self) -> None:
        """Remove every hook from the model."""
        self.stop()
        for handle in self._root_handles:
            handle.remove()
        self._root_handles = []

    def start(self, layers: Iterable[nn.Module] | None = None) -> None:
        """Record the given layers (all recorded conv/linear layers if ``None``) from now on."""
        self.attach()
        self.stop()
        chosen = self.layers if layers is None else tuple(layers)
        self._handles = [m.register_forward_hook(_Hook(self._forward_hook)) for m in chosen]

    def stop(self) -> None:
        """Stop recording layers (what was recorded stays until :meth:`clear`)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def mixing(self) -> bool:
        """Whether some BatchNorm layer uses batch statistics now (train mode, or no running
        statistics): then each example's output depends on the whole batch."""
        return any(m.training or not m.track_running_stats for m in self._norms)

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._paused:
            return
        mixing = self.mixing()
        self._pending = pending = _Pass(mixing=mixing)
        if (mixing or self._uncovered or self.keep_inputs) and torch.is_grad_enabled():
            pending.args = tuple(_detached(a) for a in args)
            pending.kwargs = {k: _detached(v) for k, v in kwargs.items()}
            pending.rng = (torch.get_rng_state(), _cuda_rng_states())

    def _post_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        pending, self._pending = self._pending, None
        if self._paused or pending is None:
            return
        if not isinstance(output, torch.Tensor):
            if any(isinstance(o, torch.Tensor) and o.requires_grad for o in _leaves(output)):
                pending.batch = -1  # reported at the step: the features need one output tensor
                self._passes.append(pending)
            return
        if not output.requires_grad or output.dim() == 0:
            return
        pending.batch = output.shape[0]

        def keep(grad: torch.Tensor) -> None:
            pending.grad = grad

        output.register_hook(keep)
        self._passes.append(pending)

    def _forward_hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor):
        if self._paused or not out.requires_grad:
            return
        record = _Record(inputs[0].detach(), len(self._passes))
        self._records.setdefault(module, []).append(record)
        sums = isinstance(module, nn.Conv2d) and module.bias is not None and not _is_dense(out)

        def keep(grad: torch.Tensor) -> None:
            record.grad = grad
            if sums:
                record.grad_sums = grad.sum(dim=(2, 3))

        out.register_hook(keep)

    def clear(self) -> None:
        """Drop what was recorded (call after each step)."""
        self._records.clear()
        self._passes = []

    @property
    def passes(self) -> list[_Pass]:
        """The recorded forward passes whose output got a gradient, in order."""
        return [p for p in self._passes if p.grad is not None]

    @property
    def forward_passes(self) -> int:
        """Recorded forward passes, with or without a gradient yet."""
        return len(self._passes)

    @property
    def non_tensor_output(self) -> bool:
        """Whether a recorded forward returned something other than one tensor."""
        return any(p.batch < 0 for p in self._passes)

    @property
    def examples(self) -> int:
        """Examples in the passes that got a gradient."""
        return sum(p.batch for p in self.passes)

    @property
    def layers(self) -> tuple[nn.Module, ...]:
        """The recorded conv and linear layers (those with updated parameters), in module
        order."""
        return tuple(module for module, _ in self._layers)

    @property
    def uncovered(self) -> bool:
        """Whether some updated parameters lie outside conv/linear layers (handled by
        forward-mode AD)."""
        return bool(self._uncovered)

    def needs_parameters_before(self) -> bool:
        """Whether :meth:`directional_derivatives` will run forward-mode AD, which needs the
        parameters at which the passes ran (otherwise the layer contraction alone gives
        ``grad f_i^T dw``: no BatchNorm with batch statistics, every updated parameter in a
        conv/linear layer)."""
        return bool(self._uncovered) or any(p.mixing for p in self.passes)

    def parameter_indices(self, layers: Iterable[nn.Module]) -> list[int]:
        """Positions (in ``model.named_parameters()`` order) of the given layers' parameters."""
        wanted = set(layers)
        return [i for module, index in self._layers if module in wanted for i in index]

    def dense_layers(self) -> tuple[nn.Module, ...]:
        """Recorded layers whose output has no spatial extent (linear, or conv to 1x1).

        Their shares of ``grad f_i^T dw`` cost a small matrix product each; spatial convs cost a
        convolution. Call after a step that recorded every layer.
        """
        dense = []
        for module, _ in self._layers:
            records = [r for r in self._records.get(module, ()) if r.grad is not None]
            if records and all(_is_dense(r.grad) for r in records):  # type: ignore[arg-type]
                dense.append(module)
        return tuple(dense)

    def layer_shares(self, update: Sequence[torch.Tensor | None]) -> dict[nn.Module, torch.Tensor]:
        """Each recorded layer's share of ``c grad f_i^T dw``, shape ``(N,)`` float32, the
        examples of every pass that got a gradient in order (zeros for a pass the layer was
        not part of).

        Args:
            update: ``dw`` per parameter in ``model.named_parameters()`` order; ``None`` where
                the layer was not recorded.
        """
        active = [(k, p) for k, p in enumerate(self._passes) if p.grad is not None]
        shares: dict[nn.Module, torch.Tensor] = {}
        with torch.no_grad():
            for module, index in self._layers:
                per_pass: dict[int, torch.Tensor] = {}
                for record in self._records.get(module, ()):
                    if record.grad is None:  # the layer's output did not reach the loss
                        continue
                    weight = update[index[0]]
                    bias = update[index[1]] if len(index) > 1 else None
                    if weight is None:
                        raise ValueError(f"no update given for recorded layer {module}")
                    share = _contract(module, record, weight, bias)
                    k = record.pass_index
                    per_pass[k] = per_pass[k] + share if k in per_pass else share
                if not per_pass:
                    continue
                if len(active) == 1 and active[0][0] in per_pass:
                    shares[module] = per_pass[active[0][0]]
                    continue
                device = next(iter(per_pass.values())).device
                pieces = [
                    per_pass[k] if k in per_pass else torch.zeros(p.batch, device=device)
                    for k, p in active
                ]
                shares[module] = torch.cat(pieces)
        return shares

    def directional_derivatives(
        self,
        update: Sequence[torch.Tensor],
        *,
        scale: float,
        params_before: Sequence[torch.Tensor],
        shares: Mapping[nn.Module, torch.Tensor] | None = None,
        every_parameter: bool = False,
    ) -> torch.Tensor:
        """``grad f_i(w)^T dw`` for every example of the passes that got a gradient, ``(N,)``.

        Args:
            update: ``dw`` for every parameter, in ``model.named_parameters()`` order.
            scale: ``1 / c`` for the backpropagated loss ``c sum_i f_i`` (``N`` for the mean).
            params_before: the parameters ``w`` at which the passes ran (used only by
                forward-mode AD, see :meth:`needs_parameters_before`).
            shares: :meth:`layer_shares` of ``update`` when the caller has them already.
            every_parameter: use forward-mode AD for every parameter (exact for any model,
                e.g. one that uses a layer's weight outside the layer).
        """
        passes = self.passes
        total_examples = sum(p.batch for p in passes)
        device = passes[0].grad.device if passes and passes[0].grad is not None else None
        if every_parameter:
            total = torch.zeros(total_examples, dtype=torch.float32, device=device)
        else:
            if shares is None:
                shares = self.layer_shares(update)
            total = sum_shares(shares.values(), total_examples, scale=scale, device=device)
        offset = 0
        for p in passes:
            whole = every_parameter or p.mixing
            names = self._updated_names() if whole else self._uncovered
            if names:
                part = self._output_derivatives(p, names, update, params_before).mul_(scale)
                piece = total[offset : offset + p.batch]
                if whole:
                    piece.copy_(part.to(piece.device))
                else:
                    piece.add_(part.to(piece.device))
            offset += p.batch
        return total

    def _updated_names(self) -> list[str]:
        return [n for n, updated in zip(self._names, self._updated, strict=True) if updated]

    def _output_derivatives(
        self,
        recorded: _Pass,
        names: Sequence[str],
        update: Sequence[torch.Tensor | None],
        params_before: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """``<g_out[i], (J dw)[i]>`` with ``J`` the Jacobian of the pass's output in the
        parameters ``names``, by forward-mode AD, ``(B,)`` float32."""
        if recorded.args is None or recorded.rng is None:
            raise InvalidConfigError(
                "forward-mode AD needs the forward pass's inputs, which were not kept (the pass "
                "ran with gradients disabled)"
            )
        assert recorded.grad is not None
        values = dict(zip(self._names, params_before, strict=True))
        index = {n: i for i, n in enumerate(self._names)}
        tangents = []
        for n in names:
            dw = update[index[n]]
            tangents.append(torch.zeros_like(values[n]) if dw is None else dw.to(values[n].dtype))
        buffers = dict(self.model.named_buffers())
        args, kwargs, (cpu_state, cuda_states) = recorded.args, recorded.kwargs or {}, recorded.rng

        def output(*free: torch.Tensor) -> torch.Tensor:
            # copies: BatchNorm's running statistics stay as they are
            copies = {n: b.clone() for n, b in buffers.items()}
            state = {**values, **copies, **dict(zip(names, free, strict=True))}
            torch.set_rng_state(cpu_state)  # dropout draws the pass's masks again
            if cuda_states:
                torch.cuda.set_rng_state_all(cuda_states)
            return torch.func.functional_call(self.model, state, args, kwargs)

        devices = list(range(len(cuda_states)))
        self._paused = True  # the extra forward pass is not to be recorded
        try:
            with torch.random.fork_rng(devices=devices):
                primals = tuple(values[n] for n in names)
                tangent = torch.func.jvp(output, primals, tuple(tangents))[1]
        except RuntimeError as exc:
            raise InvalidConfigError(
                f"forward-mode differentiation of {type(self.model).__name__} failed ({exc}); "
                "every parameter outside conv/linear layers, and every parameter of a model "
                "with BatchNorm in train mode, is handled by forward-mode AD"
            ) from exc
        finally:
            self._paused = False
        grad = recorded.grad.to(tangent.dtype)
        return torch.linalg.vecdot(tangent.flatten(1), grad.flatten(1)).detach().to(torch.float32)


class _Hook:
    """A probe's hook on a module. A copy of the model (``copy.deepcopy``, pickling) gets an
    inert hook instead: the copy is not recorded into this probe, nor drags a copy of it along.
    """

    def __init__(self, function: Any) -> None:
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> _InertHook:
        return _InertHook()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_InertHook, ())


class _InertHook:
    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _cuda_rng_states() -> list[torch.Tensor]:
    return torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []


def sum_shares(
    shares: Iterable[torch.Tensor],
    examples: int,
    *,
    scale: float,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``scale`` times the sum of layer shares (see :meth:`DirectionalProbe.layer_shares`): the
    layers' part of ``grad f_i^T dw``, shape ``(N,)`` float32 (zeros for no shares)."""
    total = torch.zeros(examples, dtype=torch.float32, device=device)
    for share in shares:
        total += share
    return total.mul_(scale)


def _is_dense(grad: torch.Tensor) -> bool:
    return grad.dim() <= 2 or grad.shape[2:].numel() == 1


def _contract(
    module: nn.Module, record: _Record, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``<grad[i], layer(x[i]; weight, bias)>`` for each example ``i`` of the recorded input
    ``x`` and output gradient ``grad``, shape ``(B,)``.

    Works in the memory format the layer ran in (no copy of the activations); a spatial conv's
    bias share is ``sum_hw grad[i]`` dotted with the bias, which spares adding it everywhere."""
    x, grad = record.inputs, record.grad
    assert grad is not None
    if isinstance(module, nn.Conv2d) and _is_dense(grad) and covers_whole_input(module, x):
        # a conv whose kernel covers its whole input is a matrix product (much faster on CPU)
        z = F.linear(*flatten_alike(x, weight), bias)
        return torch.linalg.vecdot(z, grad.flatten(1)).to(torch.float32)
    if isinstance(module, nn.Conv2d):
        z = module._conv_forward(x, weight, None)
        share = torch.linalg.vecdot(*_rows_in_memory_order(z, grad))
        if bias is not None:
            sums = record.grad_sums if record.grad_sums is not None else grad.sum(dim=(2, 3))
            share = share + sums @ bias
        return share.to(torch.float32)
    z = F.linear(x, weight, bias)
    return torch.linalg.vecdot(z.flatten(1), grad.flatten(1)).to(torch.float32)


def _rows_in_memory_order(z: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``z`` and ``grad`` ``(B, C, H, W)`` as ``(B, C*H*W)`` rows whose entries are in the same
    order, views where ``z``'s layout (contiguous or channels-last) allows."""
    if z.is_contiguous():
        return z.flatten(1), grad.contiguous().flatten(1)
    if z.is_contiguous(memory_format=torch.channels_last):
        grad = grad.contiguous(memory_format=torch.channels_last)
        return z.permute(0, 2, 3, 1).flatten(1), grad.permute(0, 2, 3, 1).flatten(1)
    return z.flatten(1), grad.flatten(1)


def _param_names(model: nn.Module, module: nn.Module) -> list[str]:
    ids = {id(p): n for n, p in model.named_parameters()}
    return [ids[id(p)] for p in (module.weight, module.bias) if p is not None]


def base_features(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    update: Mapping[str, torch.Tensor],
) -> tuple[float, float]:
    """``(phi1, phi2)`` of one batch and one update, computed from scratch.

    Leaves the model's parameters, ``.grad``, buffers (BatchNorm's running statistics) and mode
    untouched. With BatchNorm in train mode, example ``i``'s loss depends on the whole batch;
    ``grad f_i^T dw`` is then its derivative with the batch held fixed.

    Args:
        model: a classifier mapping ``inputs`` to logits ``(B, classes)``.
        inputs: a batch, ``(B, ...)``.
        targets: class labels, ``(B,)`` int64.
        update: parameter name (as in ``model.named_parameters()``) to ``dw``, shaped like the
            parameter; a parameter left out has ``dw = 0``.

    Raises:
        InvalidConfigError: ``update`` names a parameter the model does not have, or a shape
            differs.
    """
    params = dict(model.named_parameters())
    unknown = sorted(set(update) - set(params))
    if unknown:
        raise InvalidConfigError(
            f"update names unknown parameters {unknown}; the model has {sorted(params)}"
        )
    dws = []
    for name, param in params.items():
        dw = update.get(name)
        if dw is None:
            dw = torch.zeros_like(param)
        elif tuple(dw.shape) != tuple(param.shape):
            raise InvalidConfigError(
                f"update[{name!r}] has shape {tuple(dw.shape)}, the parameter {tuple(param.shape)}"
            )
        dws.append(dw.detach().to(param.dtype))
    probe = DirectionalProbe(model, trainable=params.values(), keep_inputs=True)
    before = [p.detach() for p in params.values()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    probe.start()
    try:
        with torch.enable_grad():
            losses = per_example_losses(model(inputs), targets)
            trainable = [p for p in params.values() if p.requires_grad]
            grads = torch.autograd.grad(losses.mean(), trainable, allow_unused=True)
        probe.stop()
        batch = inputs.shape[0]
        derivative = probe.directional_derivatives(dws, scale=batch, params_before=before)
        if not probe.needs_parameters_before():  # the contraction alone
            # sum_i grad f_i^T dw = B grad L^T dw. A weight also used outside its own layer
            # (tied weights, F.linear(x, layer.weight)) breaks the per-layer contraction and
            # this identity; forward-mode AD over every parameter is exact for any model.
            full = {id(p): g for p, g in zip(trainable, grads, strict=True) if g is not None}
            expected = batch * sum(
                float((full[id(p)].double() * dw.double()).sum())
                for p, dw in zip(params.values(), dws, strict=True)
                if id(p) in full
            )
            scale = float(derivative.abs().double().sum()) + abs(expected) + 1e-30
            if abs(float(derivative.double().sum()) - expected) > 1e-5 * scale:
                derivative = probe.directional_derivatives(
                    dws, scale=batch, params_before=before, every_parameter=True
                )
    finally:
        probe.detach()
        probe.clear()
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
    return log_variance(derivative), log_variance(losses)


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
