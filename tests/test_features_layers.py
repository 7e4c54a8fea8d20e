"""``grad f_i^T dw`` for the layer kinds past conv2d/linear (LayerNorm, GroupNorm, Embedding,
Conv1d, BatchNorm in eval and train mode) and for a causal self-attention sequence model,
against a float64 per-example-gradient reference.

The reference pushes each example alone through a float64 copy of the model, differentiates
its loss with ``torch.autograd.grad`` and dots the gradient with ``dw``: it shares nothing with
the contraction but the definition. BatchNorm in train mode is the exception: there example
``i``'s loss depends on the whole batch, and the reference differentiates it with the whole
batch pushed through (the batch held fixed, as the features define it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import lrgym
from lrgym.controllers import LogLinearController
from lrgym.errors import InvalidConfigError
from lrgym.features import DirectionalProbe, FeatureConfig, base_features, per_example_losses

REL = 1e-5  # relative error of grad f_i^T dw (and of Var_i, as a difference of logs)


# --------------------------------------------------------------------------------------------
# the reference


def example_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One example's loss from its logits ``(1, C)`` or ``(1, T, V)``: the cross-entropy, or
    the mean over the sequence's tokens of each token's cross-entropy."""
    if logits.dim() == 3:
        return F.cross_entropy(logits[0], target[0])
    return F.cross_entropy(logits, target)


def reference(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    update: Mapping[str, torch.Tensor],
    *,
    batch_fixed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(df, losses)`` in float64: ``df_i = grad f_i^T dw`` by one backward pass per example,
    on a float64 copy of the parameters and buffers. ``batch_fixed``: push the whole batch
    through for each example (BatchNorm in train mode); else example ``i`` alone."""
    p64 = {n: p.detach().double().requires_grad_(True) for n, p in model.named_parameters()}
    x64 = x.double() if x.is_floating_point() else x
    df = torch.zeros(x.shape[0], dtype=torch.float64)
    losses = torch.zeros(x.shape[0], dtype=torch.float64)
    for i in range(x.shape[0]):
        b64 = {
            n: b.detach().clone().double() if b.is_floating_point() else b.clone()
            for n, b in model.named_buffers()
        }
        if batch_fixed:
            logits = functional_call(model, {**b64, **p64}, (x64,))[i : i + 1]
        else:
            logits = functional_call(model, {**b64, **p64}, (x64[i : i + 1],))
        loss = example_loss(logits, y[i : i + 1])
        losses[i] = loss.detach()
        grads = torch.autograd.grad(loss, list(p64.values()), allow_unused=True)
        for (name, _), g in zip(p64.items(), grads, strict=True):
            if g is not None:
                df[i] += (g * update[name].double()).sum()
    return df, losses


def probe_derivatives(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, update: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, DirectionalProbe]:
    """``grad f_i^T dw`` from the probe alone (no fallback, unlike :func:`base_features`), and
    the probe; the model's buffers are restored."""
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    params = dict(model.named_parameters())
    probe = DirectionalProbe(model, keep_inputs=True)
    probe.start()
    losses = per_example_losses(model(x), y)
    torch.autograd.grad(losses.mean(), list(params.values()), allow_unused=True)
    probe.stop()
    derivative = probe.directional_derivatives(
        [update[n] for n in params],
        scale=x.shape[0],
        params_before=[p.detach() for p in params.values()],
    )
    probe.detach()
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(buffers[n])
    return derivative, probe


def random_update(model: nn.Module, seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}


def randomised(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with every parameter and floating buffer drawn from a seeded generator (norm
    layers' weights about 1, running variances positive), so no test starts at an identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shift = 1.0 if name.endswith("weight") and p.dim() == 1 else 0.0
            p.copy_(shift + 0.4 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
            elif name.endswith("running_mean"):
                b.copy_(0.5 * torch.randn(b.shape, generator=gen))
    return model


def assert_close(derivative: torch.Tensor, df: torch.Tensor) -> None:
    error = float((derivative.double() - df).norm() / df.norm())
    assert error <= REL, error
    assert float(df.abs().max()) > 0  # the update changes the losses


# --------------------------------------------------------------------------------------------
# the models


class TokenMean(nn.Module):
    """Token ids ``(B, T)`` -> embeddings (a padding id among them) -> mean over T -> logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6, padding_idx=0)
        self.head = nn.Linear(6, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(tokens)).mean(dim=1))


class BiasOnlyNorm(nn.LayerNorm):
    """A LayerNorm with a bias and no weight (``x_hat + b``)."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
        del self.weight
        self.register_parameter("weight", None)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention from ``nn.Linear`` projections."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (
            nn.Linear(width, width),
            nn.Linear(width, width),
            nn.Linear(width, width),
        )
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, length, width = h.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        scores = q @ k.transpose(-2, -1) / math.sqrt(width // self.heads)
        causal = torch.ones(length, length, dtype=torch.bool, device=h.device).tril()
        weights = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, length, width))


class TinyTransformer(nn.Module):
    """Token and learned position embeddings (positions expanded to ``(B, T)``), one pre-LN
    block (causal attention, MLP), a final LayerNorm and a head: next-token logits
    ``(B, T, V)``."""

    def __init__(self, vocab: int = 13, width: int = 8, heads: int = 2, length: int = 6) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(length, width)
        self.norm1, self.norm2, self.norm_out = (nn.LayerNorm(width) for _ in range(3))
        self.attention = CausalSelfAttention(width, heads)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        h = self.tokens(tokens) + self.positions(positions)
        h = h + self.attention(self.norm1(h))
        h = h + self.mlp(self.norm2(h))
        return self.head(self.norm_out(h))


def conv_bn_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, stride=2),
        nn.Flatten(),
        nn.Linear(27, 6),
        nn.BatchNorm1d(6),
        nn.Tanh(),
        nn.Linear(6, 4),
    )


def tokens(batch: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def batch_of(shape: tuple[int, ...], classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen), torch.randint(0, classes, (shape[0],), generator=gen)


Case = Callable[[], tuple[nn.Module, torch.Tensor, torch.Tensor]]


def layer_norm_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(
        nn.Linear(5, 8),
        nn.LayerNorm(8),
        nn.Tanh(),
        nn.Linear(8, 6),
        nn.LayerNorm(6, bias=False),
        nn.Tanh(),
        nn.Linear(6, 7),
        BiasOnlyNorm(7),
        nn.LayerNorm(7, elementwise_affine=False),
        nn.Linear(7, 3),
    )
    return (model, *batch_of((12, 5), 3, seed=1))


def group_norm_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3),
        nn.GroupNorm(3, 6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 16, 4),
    )
    return (model, *batch_of((10, 2, 6, 6), 4, seed=2))


def embedding_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x = tokens(12, 5, 11, seed=3)
    x[:, 0] = 0  # the padding id in every sequence: its row's update must not count
    return TokenMean(), x, torch.randint(0, 4, (12,), generator=torch.Generator().manual_seed(4))


def conv1d_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(
        nn.Conv1d(3, 5, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(5, 4, 3, stride=2, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv1d(4, 6, 5, bias=False),
        nn.Flatten(),
        nn.Linear(6, 3),
    )
    return (model, *batch_of((11, 3, 9), 3, seed=5))


def batchnorm_eval_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return (conv_bn_net().eval(), *batch_of((10, 2, 7, 7), 4, seed=6))


def transformer_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    sequences = tokens(9, 7, 13, seed=7)
    return TinyTransformer(), sequences[:, :-1], sequences[:, 1:]  # next-token prediction


CONTRACTED: dict[str, Case] = {
    "layer-norm": layer_norm_case,
    "group-norm": group_norm_case,
    "embedding": embedding_case,
    "conv1d": conv1d_case,
    "batchnorm-eval": batchnorm_eval_case,
    "causal-attention": transformer_case,
}


# --------------------------------------------------------------------------------------------
# the tests


@pytest.fixture
def no_forward_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("forward-mode AD ran: the contraction should cover the model")

    monkeypatch.setattr("lrgym.features.probe.output_derivatives", refuse)


@pytest.mark.parametrize("case", list(CONTRACTED))
@pytest.mark.usefixtures("no_forward_mode")
def test_contraction_matches_per_example_reference(case: str) -> None:
    model, x, y = CONTRACTED[case]()
    randomised(model, seed=11)
    update = random_update(model, seed=12)
    df, losses = reference(model, x, y, update)

    derivative, probe = probe_derivatives(model, x, y, update)
    assert not probe.uncovered  # every parameter in a contracted layer
    assert_close(derivative, df)
    phi1, phi2 = base_features(model, x, y, update)
    assert abs(phi1 - math.log(float(df.var()))) <= REL
    assert abs(phi2 - math.log(float(losses.var()))) <= REL


def test_batchnorm_in_train_mode_goes_by_forward_mode_with_the_batch_fixed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = randomised(conv_bn_net().train(), seed=13)
    x, y = batch_of((10, 2, 7, 7), 4, seed=14)
    update = random_update(model, seed=15)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    df, _ = reference(model, x, y, update, batch_fixed=True)
    import lrgym.features.probe as probe_module

    runs: list[int] = []
    original = probe_module.output_derivatives

    def counted(*args: object, **kwargs: object) -> torch.Tensor:
        runs.append(len(args[3]))  # type: ignore[arg-type]  # the parameters it covers
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(probe_module, "output_derivatives", counted)
    derivative, _ = probe_derivatives(model, x, y, update)
    assert runs == [len(update)]  # one forward-mode pass over every parameter
    assert_close(derivative, df)
    for n, b in model.named_buffers():  # running statistics untouched (batch fixed)
        assert torch.equal(b, buffers[n]), n
    # with running statistics the same net is another quantity
    eval_df, _ = reference(model.eval(), x, y, update)
    assert float((eval_df - df).norm() / df.norm()) > 1e-2


def test_multihead_attention_output_projection_goes_by_forward_mode() -> None:
    """``nn.MultiheadAttention`` uses its output projection's weight functionally (the layer's
    own forward never runs), so that layer is not contracted."""

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = nn.MultiheadAttention(6, 2, batch_first=True)
            self.head = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.attention(x, x, x, need_weights=False)[0].mean(dim=1))

    model = randomised(Attention(), seed=16)
    x, y = batch_of((8, 4, 6), 3, seed=17)
    update = random_update(model, seed=18)
    derivative, probe = probe_derivatives(model, x, y, update)
    assert probe.uncovered
    assert model.attention.out_proj not in probe.layers
    assert_close(derivative, reference(model, x, y, update)[0])


def test_layer_without_the_batch_first_is_an_error() -> None:
    class SharedPositions(TinyTransformer):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # positions (T,): no batch
            h = self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1]))
            return self.head(self.norm_out(h))

    model = SharedPositions()
    sequences = tokens(4, 7, 13, seed=19)
    update = random_update(model, seed=20)
    with pytest.raises(InvalidConfigError, match="examples first"):
        probe_derivatives(model, sequences[:, :-1], sequences[:, 1:], update)


def test_sequence_losses_are_token_means() -> None:
    gen = torch.Generator().manual_seed(21)
    logits, targets = torch.randn(3, 5, 7, generator=gen), tokens(3, 5, 7, seed=22)
    losses = per_example_losses(logits, targets)
    assert losses.shape == (3,)
    for i in range(3):
        expected = sum(float(F.cross_entropy(logits[i, t], targets[i, t])) for t in range(5)) / 5
        assert float(losses[i]) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InvalidConfigError, match="targets must be"):
        per_example_losses(logits, targets[:, :4])


EVERY_K_MODELS: dict[str, Callable[[], tuple[nn.Module, Callable[[int], tuple]]]] = {
    "transformer": lambda: (
        TinyTransformer(),
        lambda step: (lambda s: (s[:, :-1], s[:, 1:]))(tokens(8, 7, 13, seed=100 + step)),
    ),
    "conv-batchnorm": lambda: (conv_bn_net(), lambda step: batch_of((8, 2, 7, 7), 4, 100 + step)),
}


@pytest.mark.parametrize("estimate", ["dense", "last", "hold"])
@pytest.mark.parametrize("setting", list(EVERY_K_MODELS))
def test_every_k_estimates_run_on_the_new_layers(setting: str, estimate: str) -> None:
    torch.manual_seed(23)
    model, batches = EVERY_K_MODELS[setting]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    config = FeatureConfig(every=4, estimate=estimate)
    control = lrgym.ControlledLR(
        model, optimizer, LogLinearController([0, 0, 0, 0, math.log(0.05)]), features=config
    )
    phi1 = []
    for step in range(9):
        x, y = batches(step)
        optimizer.zero_grad()
        losses = per_example_losses(model(x), y)
        losses.mean().backward()
        control.step(losses)
        assert control.last_step is not None
        phi1.append(control.last_step.phi1)
    assert all(math.isfinite(v) for v in phi1), phi1
    assert all(math.isfinite(v) for v in control.smoother.vector())
