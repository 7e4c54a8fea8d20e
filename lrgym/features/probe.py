"""The probe: hooks that record what ``grad f_i^T dw`` needs from a model's normal
forward/backward passes, and the contraction of those records with the update."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lrgym.features.contraction import (
    covered_layers,
    is_dense,
    layer_share,
    position_sums,
    sum_shares,
)
from lrgym.features.forward_mode import output_derivatives
from lrgym.features.records import ForwardPass, LayerRecord


class DirectionalProbe:
    """Records what ``grad f_i^T dw`` needs from a model's normal forward/backward passes.

    Once attached (:meth:`start` attaches), hooks on the model itself keep each forward pass
    whose output requires a gradient (:class:`_Pass`, several with gradient accumulation), and
    the output's gradient when backward runs. Between :meth:`start` and :meth:`stop`, forward
    hooks on the chosen covered layers (conv, linear, embedding, layer and group norm: see
    :data:`~lrgym.features.contraction.COVERED`; BatchNorm in passes that use its running
    statistics) keep each layer's input, and a hook on its output keeps the output gradient.
    After the optimiser step, :meth:`layer_shares` and :meth:`directional_derivatives`
    contract them with the update; :meth:`clear` drops them. Without layer hooks a forward pass
    costs nothing extra; :meth:`detach` removes every hook.

    The gradients are those of the loss that was backpropagated, ``L = c sum_i f_i`` over the
    passes' examples; ``scale = 1 / c`` (the number of examples for a mean) turns them into the
    examples' own.

    Parameters outside covered layers, and every parameter of a pass in which BatchNorm
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
        self._records: dict[nn.Module, list[LayerRecord]] = {}
        self._passes: list[ForwardPass] = []
        self._pending: ForwardPass | None = None
        self._paused = False
        self._names = [name for name, _ in model.named_parameters()]
        params = dict(model.named_parameters())
        chosen = [p for p in params.values() if p.requires_grad] if trainable is None else trainable
        updated = {id(p) for p in chosen}
        self._updated = [id(params[n]) in updated for n in self._names]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._root_handles: list[torch.utils.hooks.RemovableHandle] = []
        self._layers, self._eval_layers, covered_ids = covered_layers(model, updated)
        self._eval_modules = frozenset(layer.module for layer in self._eval_layers)
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
        """Record the given layers (every covered layer, BatchNorm included, if ``None``) from
        now on."""
        self.attach()
        self.stop()
        every = (*self.layers, *(layer.module for layer in self._eval_layers))
        chosen = every if layers is None else tuple(layers)
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
        self._pending = pending = ForwardPass(mixing=mixing)
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
        if module in self._eval_modules and self.mixing():  # the pass goes by forward-mode AD
            return
        record = LayerRecord(inputs[0].detach(), len(self._passes))
        self._records.setdefault(module, []).append(record)
        conv = isinstance(module, (nn.Conv1d, nn.Conv2d))
        sums = conv and module.bias is not None and not is_dense(out)

        def keep(grad: torch.Tensor) -> None:
            record.grad = grad
            if sums:
                record.grad_sums = position_sums(grad)

        out.register_hook(keep)

    def clear(self) -> None:
        """Drop what was recorded (call after each step)."""
        self._records.clear()
        self._passes = []

    @property
    def passes(self) -> list[ForwardPass]:
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
        """The covered layers with updated parameters, in module order, BatchNorm aside (it is
        contracted only in passes that use its running statistics)."""
        return tuple(layer.module for layer in self._layers)

    @property
    def uncovered(self) -> bool:
        """Whether some updated parameters lie outside covered layers (handled by forward-mode
        AD)."""
        return bool(self._uncovered)

    def needs_parameters_before(self) -> bool:
        """Whether :meth:`directional_derivatives` will run forward-mode AD, which needs the
        parameters at which the passes ran (otherwise the layer contraction alone gives
        ``grad f_i^T dw``: no BatchNorm with batch statistics, every updated parameter in a
        covered layer)."""
        return bool(self._uncovered) or any(p.mixing for p in self.passes)

    def parameter_indices(self, layers: Iterable[nn.Module]) -> list[int]:
        """Positions (in ``model.named_parameters()`` order) of the given layers' parameters."""
        wanted = set(layers)
        return [i for layer in self._layers if layer.module in wanted for i in layer.indices]

    def dense_layers(self) -> tuple[nn.Module, ...]:
        """Recorded layers whose output has no extent past ``(B, features)`` (linear on flat
        inputs, conv to 1x1; not a layer applied to each token of a sequence).

        Their shares of ``grad f_i^T dw`` cost a small matrix product each; spatial convs cost a
        convolution. Call after a step that recorded every layer.
        """
        dense = []
        for layer in self._layers:
            records = [r for r in self._records.get(layer.module, ()) if r.grad is not None]
            if records and all(is_dense(r.grad) for r in records):  # type: ignore[arg-type]
                dense.append(layer.module)
        return tuple(dense)

    def layer_shares(self, update: Sequence[torch.Tensor | None]) -> dict[nn.Module, torch.Tensor]:
        """Each recorded layer's share of ``c grad f_i^T dw``, shape ``(N,)`` float32, the
        examples of every pass that got a gradient in order (zeros for a pass the layer was
        not part of).

        Args:
            update: ``dw`` per parameter in ``model.named_parameters()`` order; ``None`` where
                the layer was not recorded.
        """
        active = [(k, p.batch) for k, p in enumerate(self._passes) if p.grad is not None]
        shares: dict[nn.Module, torch.Tensor] = {}
        with torch.no_grad():
            for layer in (*self._layers, *self._eval_layers):
                weight = None if layer.weight is None else update[layer.weight]
                bias = None if layer.bias is None else update[layer.bias]
                records = self._records.get(layer.module, ())
                share = layer_share(layer.module, records, weight, bias, active)
                if share is not None:
                    shares[layer.module] = share
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
        recorded: ForwardPass,
        names: Sequence[str],
        update: Sequence[torch.Tensor | None],
        params_before: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        self._paused = True  # the extra forward pass is not to be recorded
        try:
            return output_derivatives(
                self.model, self._names, recorded, names, update, params_before
            )
        finally:
            self._paused = False


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
