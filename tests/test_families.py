"""The architecture families beyond the paper's: ``resnet`` (BatchNorm, GroupNorm, none),
``transformer`` (causal, decoder-only) and ``cnn1d``: what they are built of, that the
generator alone initialises them, that causality holds, and the inputs each accepts."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from lrgym.errors import InvalidConfigError
from lrgym.tasks.architectures import build_network, check_architecture, choose_memory_format
from lrgym.tasks.family import TaskFamily
from lrgym.tasks.resnet import BasicBlock
from lrgym.tasks.transformer import CausalSelfAttention, DecoderOnly


def build(
    architecture: str, shape: tuple[int, ...], widths: tuple[int, ...], **kw: str
) -> nn.Module:
    return build_network(architecture, shape, widths, 10, torch.Generator().manual_seed(3), **kw)


@pytest.mark.parametrize(
    ("norm", "kind"), [("batch", nn.BatchNorm2d), ("group", nn.GroupNorm), ("none", None)]
)
def test_resnet_stages_blocks_and_norms_are_as_documented(norm: str, kind: type | None) -> None:
    model = build("resnet", (1, 28, 28), (3, 2, 8), norm=norm)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 6  # 3 stages x 2 blocks
    assert [b.conv2.out_channels for b in blocks] == [8, 8, 16, 16, 32, 32]
    assert [b.conv1.stride for b in blocks] == [(1, 1), (1, 1), (2, 2), (1, 1), (2, 2), (1, 1)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | nn.GroupNorm)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if kind is None:
        assert not norms and all(c.bias is not None for c in convs)
    else:
        assert norms and all(isinstance(n, kind) for n in norms)
        assert all(c.bias is None for c in convs)  # the norm's shift replaces the bias
        assert len(norms) == len(convs)  # one after every conv, shortcut projections included
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert isinstance(model[-1], nn.Linear) and isinstance(model[-3], nn.AdaptiveAvgPool2d)


def test_group_norm_groups_divide_the_channels() -> None:
    model = build("resnet", (3, 16, 16), (2, 1, 12), norm="group")
    groups = {
        (m.num_groups, m.num_channels) for m in model.modules() if isinstance(m, nn.GroupNorm)
    }
    assert groups == {(4, 12), (8, 24)}  # gcd(channels, 8)


def test_a_resnet_with_batchnorm_mixes_examples_only_in_train_mode() -> None:
    model = build("resnet", (1, 8, 8), (2, 1, 4))
    x = torch.randn(6, 1, 8, 8)
    changed = x.clone()
    changed[1:] += 1.0
    assert not torch.allclose(model(x)[0], model(changed)[0])  # batch statistics
    model.eval()
    torch.testing.assert_close(model(x)[0], model(changed)[0])


def test_every_parameter_and_buffer_comes_from_the_generator_and_global_rng_is_untouched() -> None:
    for architecture, shape, widths in [
        ("resnet", (1, 12, 12), (2, 2, 8)),
        ("transformer", (16,), (2, 32, 4)),
        ("cnn1d", (1, 40), (8, 9, 10)),
    ]:
        state = torch.get_rng_state()
        first, second = build(architecture, shape, widths), build(architecture, shape, widths)
        assert torch.equal(state, torch.get_rng_state())
        for (name, a), b in zip(
            first.state_dict().items(), second.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name  # no uninitialised memory from the meta device
            assert torch.isfinite(a.float()).all(), name
    transformer = build("transformer", (16,), (2, 32, 4))
    assert float(transformer.blocks[0].norm1.weight.detach().min()) == 1.0
    assert 0.8 < float(transformer.tokens.weight.detach().std()) < 1.2  # N(0, 1)


def test_the_transformer_is_causal_and_predicts_every_position() -> None:
    model = build("transformer", (12,), (2, 32, 2)).double()
    x = torch.randint(0, 10, (3, 12))
    out = model(x)
    assert out.shape == (3, 12, 10)
    later = x.clone()
    later[:, 7:] = (later[:, 7:] + 1) % 10  # change the future only
    torch.testing.assert_close(model(later)[:, :7], out[:, :7], rtol=0, atol=1e-12)
    assert not torch.allclose(model(later)[:, 7:], out[:, 7:])


def test_attention_matches_a_per_head_loop() -> None:
    """An independent reference: each head's softmax over the allowed positions, in float64."""
    torch.manual_seed(0)
    attention = CausalSelfAttention(8, 2).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    q, k, v = attention.query(x), attention.key(x), attention.value(x)
    heads = []
    for h in range(2):
        part = slice(4 * h, 4 * h + 4)
        rows = []
        for t in range(5):
            scores = (q[:, t, part].unsqueeze(1) * k[:, : t + 1, part]).sum(-1) / 2.0
            rows.append((torch.softmax(scores, -1).unsqueeze(-1) * v[:, : t + 1, part]).sum(1))
        heads.append(torch.stack(rows, 1))
    expected = attention.out(torch.cat(heads, -1))
    torch.testing.assert_close(attention(x), expected, rtol=1e-12, atol=1e-12)


def test_transformer_parameters_sit_in_layers_the_features_contract() -> None:
    model = build("transformer", (8,), (1, 16, 2))
    assert isinstance(model, DecoderOnly)
    kinds = (nn.Linear, nn.Embedding, nn.LayerNorm)
    owned = {id(p) for m in model.modules() if isinstance(m, kinds) for p in m.parameters(False)}
    assert owned == {id(p) for p in model.parameters()}


def test_cnn1d_halves_the_length_three_times() -> None:
    model = build("cnn1d", (1, 40), (8, 9, 10))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [8, 9, 10]
    assert model[-1].in_features == 10 * 5 and model(torch.randn(2, 1, 40)).shape == (2, 10)


def test_transformer_families_sample_d_model_as_a_multiple_of_heads() -> None:
    family = TaskFamily(dataset="toy", architecture="transformer")
    tasks = [family.sample(np.random.default_rng(s)) for s in range(200)]
    assert all(t.widths[1] % t.widths[2] == 0 for t in tasks)
    assert {t.widths[0] for t in tasks} == {1, 2, 3} and {t.widths[2] for t in tasks} == {2, 3, 4}
    assert all(32 <= t.widths[1] <= 128 for t in tasks)
    assert all(t.norm is None for t in tasks) and "norm" not in tasks[0].to_dict()


def test_resnet_tasks_carry_their_norm() -> None:
    task = TaskFamily(architecture="resnet", norm="group").sample(np.random.default_rng(0))
    assert task.norm == "group" and task.to_dict()["norm"] == "group"
    with pytest.raises(InvalidConfigError, match=r"norm='layer'.*'batch', 'group', 'none'"):
        TaskFamily(architecture="resnet", norm="layer")
    with pytest.raises(InvalidConfigError, match="resnet family needs 3 ranges"):
        TaskFamily(architecture="resnet", widths=((1, 2),))


@pytest.mark.parametrize(
    ("architecture", "shape", "tokens", "advice"),
    [
        ("transformer", (1, 28, 28), False, "'cnn' or 'resnet' (or 'mlp')"),
        ("cnn1d", (64,), True, "'transformer'"),
        ("mlp", (64,), True, "'transformer'"),
        ("resnet", (1, 40), False, "'cnn1d' (or 'mlp')"),
    ],
)
def test_an_architecture_refuses_inputs_it_cannot_take_and_names_one_that_can(
    architecture: str, shape: tuple[int, ...], tokens: bool, advice: str
) -> None:
    with pytest.raises(InvalidConfigError, match=re.escape(f"use architecture={advice}")):
        check_architecture(architecture, "data", shape, tokens=tokens)


def test_only_image_nets_train_channels_last() -> None:
    assert choose_memory_format("resnet") == torch.contiguous_format  # not measured: contiguous
    for architecture in ("transformer", "cnn1d"):
        assert choose_memory_format(architecture, choice="channels_last") == torch.contiguous_format
