"""Exact features on lrgym's own new families, as built for a task: the resnet family (GroupNorm,
BatchNorm in train mode) and the decoder-only transformer (causal attention, token and
position embeddings, LayerNorm), against an independent float64 per-example-gradient reference
(the single layer kinds: test_features_layers.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pytest
import torch
from test_features import batch_fixed_reference
from torch import nn
from torch.func import functional_call

import lrgym.features.probe as probe_module
from lrgym.features import base_features
from lrgym.tasks.architectures import build_network

RELATIVE = 1e-5
"""phi1 is a log-variance: an absolute difference of 1e-5 is a relative one of 1e-5."""


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy by hand (log-softmax and a gather), the mean over tokens of a
    sequence: shares no code with :func:`per_example_losses`."""
    picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -picked.reshape(picked.shape[0], -1).mean(dim=1)


def reference_phi1(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    update: Mapping[str, torch.Tensor],
) -> float:
    """``log Var_i(grad f_i^T dw)``: example ``i`` alone through a float64 copy, differentiated."""
    params = {n: p.detach().double().requires_grad_(True) for n, p in model.named_parameters()}
    buffers = {
        n: b.detach().double() if b.is_floating_point() else b for n, b in model.named_buffers()
    }
    x = inputs.double() if inputs.is_floating_point() else inputs
    df = torch.zeros(inputs.shape[0], dtype=torch.float64)
    for i in range(inputs.shape[0]):
        loss = token_losses(
            functional_call(model, {**buffers, **params}, (x[i : i + 1],)), targets[i : i + 1]
        )
        grads = torch.autograd.grad(loss.sum(), list(params.values()), allow_unused=True)
        for (name, _), g in zip(params.items(), grads, strict=True):
            if g is not None:
                df[i] += (g * update[name].double()).sum()
    return math.log(float(df.var()) + 1e-30)


def update_for(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        n: 0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
        for n, p in model.named_parameters()
    }


def perturbed(model: nn.Module, seed: int) -> nn.Module:
    """The model with every normalisation's scale, shift and running statistics moved off their
    initial values (so the test sees them), in float64, eval mode."""
    gen = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm | nn.GroupNorm | nn.modules.batchnorm._BatchNorm):
                module.weight.add_(
                    0.3 * torch.randn(module.weight.shape, generator=gen, dtype=torch.float64)
                )
                module.bias.add_(
                    0.3 * torch.randn(module.bias.shape, generator=gen, dtype=torch.float64)
                )
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.add_(
                    0.5 * torch.randn(module.running_mean.shape, generator=gen, dtype=torch.float64)
                )
                module.running_var.mul_(
                    0.5 + torch.rand(module.running_var.shape, generator=gen, dtype=torch.float64)
                )
    return model.eval()


def seeded(build: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def images(batch: int, shape: tuple[int, ...], classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((batch, *shape), generator=gen, dtype=torch.float64)
    return x, torch.randint(0, classes, (batch,), generator=gen)


def tokens(batch: int, length: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    stream = torch.randint(0, vocab, (batch, length + 1), generator=gen)
    return stream[:, :-1], stream[:, 1:]


CASES: dict[str, Callable[[], tuple[nn.Module, torch.Tensor, torch.Tensor]]] = {
    "resnet-group": lambda: (
        build_network(
            "resnet", (1, 6, 6), (2, 1, 4), 3, torch.Generator().manual_seed(4), norm="group"
        ),
        *images(8, (1, 6, 6), 3),
    ),
    "transformer": lambda: (
        build_network("transformer", (6,), (2, 8, 2), 7, torch.Generator().manual_seed(5)),
        *tokens(8, 6, 7),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_features_match_the_float64_per_example_reference_by_the_contraction_alone(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x, y = CASES[case]()
    model = perturbed(model, seed=6)
    update = update_for(model, seed=7)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("forward-mode AD ran: a parameter was not contracted")

    monkeypatch.setattr(probe_module, "output_derivatives", refuse)
    phi1, phi2 = base_features(model, x, y, update)
    assert abs(phi1 - reference_phi1(model, x, y, update)) < RELATIVE
    losses = token_losses(model(x if not x.is_floating_point() else x.double()), y)
    assert abs(phi2 - math.log(float(losses.var()) + 1e-30)) < RELATIVE


def test_float32_transformer_features_match_the_reference() -> None:
    """The network as the env trains it (float32), against the float64 reference."""
    model = build_network("transformer", (6,), (2, 8, 2), 7, torch.Generator().manual_seed(5))
    x, y = tokens(8, 6, 7)
    update = {n: u.float() for n, u in update_for(model, seed=8).items()}
    phi1, _ = base_features(model, x, y, update)
    assert abs(phi1 - reference_phi1(model, x, y, update)) < 1e-4


def test_batchnorm_in_train_mode_goes_by_forward_mode_with_the_batch_held_fixed() -> None:
    model = build_network("resnet", (1, 6, 6), (2, 1, 4), 3, torch.Generator().manual_seed(4))
    model = perturbed(model, seed=6).train()
    x, y = images(8, (1, 6, 6), 3)
    update = update_for(model, seed=7)
    phi1, _ = base_features(model, x, y, update)
    assert abs(phi1 - batch_fixed_reference(model, x, y, update)) < RELATIVE
