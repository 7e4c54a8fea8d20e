"""The ``transformer`` family: small decoder-only transformers for next-token prediction.

A net maps token ids ``(B, T)`` to logits ``(B, T, V)``: token and learned position
embeddings (both ``nn.Embedding``, positions looked up per example so every layer's input
keeps the batch first), ``layers`` pre-LayerNorm blocks (causal multi-head self-attention,
then a 4x-wide GELU MLP, each added to the residual stream), a final LayerNorm and a linear
head (not tied to the token embedding). Attention's query, key, value and output projections
are ``nn.Linear`` layers; the attention itself has no parameters.

``widths`` is ``(layers, d_model, heads)``; ``d_model`` must be a multiple of ``heads``
(families round it to one inside their range, :func:`round_widths`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lrgym.errors import InvalidConfigError

MLP_RATIO = 4
"""Hidden width of each block's MLP, in multiples of ``d_model``."""


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``t`` attends to positions ``<= t``."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        split = (batch, length, self.heads, width // self.heads)
        q, k, v = (f(x).view(split).transpose(1, 2) for f in (self.query, self.key, self.value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(split[-1])
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        weights = torch.softmax(scores.masked_fill(future, -math.inf), dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(batch, length, width)
        return self.out(mixed)


class Block(nn.Module):
    """``x + attention(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, MLP_RATIO * d_model),
            nn.GELU(),
            nn.Linear(MLP_RATIO * d_model, d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DecoderOnly(nn.Module):
    """A decoder-only transformer over sequences of ``length`` tokens from ``vocab``."""

    def __init__(self, vocab: int, length: int, layers: int, d_model: int, heads: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(length, d_model)
        self.blocks = nn.Sequential(*(Block(d_model, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        where = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        h = self.tokens(x) + self.positions(where)
        return self.head(self.norm(self.blocks(h)))


def round_widths(
    widths: Sequence[int], ranges: Sequence[tuple[int, int]] | None = None
) -> tuple[int, ...]:
    """``(layers, d_model, heads)`` with ``d_model`` rounded down to a multiple of ``heads``,
    or up where rounding down would leave its sampled range ``ranges[1]``."""
    layers, d_model, heads = (int(w) for w in widths)
    rounded = max(heads, d_model - d_model % heads)
    if ranges is not None and rounded < ranges[1][0]:
        rounded += heads
    return layers, rounded, heads


def transformer(shape: tuple[int, ...], widths: Sequence[int], classes: int) -> DecoderOnly:
    """A decoder-only transformer for sequences of ``shape`` ``(T,)`` over ``classes`` tokens;
    ``widths`` is ``(layers, d_model, heads)``."""
    layers, d_model, heads = (int(w) for w in widths)
    if min(layers, d_model, heads) < 1 or d_model % heads:
        raise InvalidConfigError(
            f"transformer widths={list(widths)!r}: (layers, d_model, heads) must be positive "
            "with d_model a multiple of heads"
        )
    return DecoderOnly(classes, shape[0], layers, d_model, heads)
