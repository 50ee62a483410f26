"""The click-model layers (recforge.models.ranking.layers, multitask, wide_deep) against their
formulas computed by brute force: FM term, CIN, DCN and DCN-V2 cross layers, parallel MLPs,
multi-task gates and crossed-feature buckets."""

from __future__ import annotations

import itertools

import pytest
import torch

from recforge.errors import InputError
from recforge.models.ranking.inputs import InputLayout
from recforge.models.ranking.layers import (
    CIN,
    MLP,
    CrossNet,
    CrossNetV2,
    ParallelMLP,
    fm_interaction,
)
from recforge.models.ranking.multitask import Extraction, MultiTaskModule
from recforge.models.ranking.wide_deep import CrossedFeatures, cross_positions

torch.manual_seed(0)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fm_interaction_is_the_pairwise_sum():
    emb = torch.randn(4, 5, 3, dtype=torch.float64)
    brute = sum((emb[:, i] * emb[:, j]).sum(1) for i, j in itertools.combinations(range(5), 2))
    _close(fm_interaction(emb), brute.unsqueeze(1))


@pytest.mark.parametrize("sizes", [(6, 4), (5, 3), (4,)])
def test_cin_shape_and_first_layer(sizes):
    batch, fields, dim = 3, 4, 5
    cin = CIN(fields, sizes, split_half=True).double()
    x0 = torch.randn(batch, fields, dim, dtype=torch.float64)
    out = cin(x0)
    hidden = [s // 2 for s in sizes[:-1]]
    assert cin.out_dim == sum(sizes[:-1]) - sum(hidden) + sizes[-1]
    assert out.shape == (batch, cin.out_dim)
    # first layer: X^1_h = sum_ij W_hij (x0_i * x0_j) + b_h; maps past the split are pooled
    w = cin.layers[0].weight.reshape(sizes[0], fields, fields)
    x1 = torch.einsum("hij,bid,bjd->bhd", w, x0, x0) + cin.layers[0].bias[:, None]
    first = sizes[0] - (sizes[0] // 2 if len(sizes) > 1 else 0)
    _close(out[:, :first], x1[:, sizes[0] - first:].sum(-1))
    if len(sizes) > 1:  # the second layer reads the first half of layer one's maps
        w2 = cin.layers[1].weight.reshape(sizes[1], sizes[0] // 2, fields)
        x2 = torch.einsum("hij,bid,bjd->bhd", w2, x1[:, :sizes[0] // 2], x0) \
            + cin.layers[1].bias[:, None]
        _close(out[:, first:], x2.sum(-1))


def test_cross_net_layers_follow_the_formula():
    net = CrossNet(6, 2).double()
    with torch.no_grad():
        net.biases.normal_()
    x0 = torch.randn(5, 6, dtype=torch.float64)
    x = x0
    for w, b in zip(net.weights, net.biases):  # x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l
        x = torch.stack([x0[r] * (x[r] @ w) + b + x[r] for r in range(len(x0))])
    _close(net(x0), x)


def test_cross_net_v2_full_rank_formula():
    net = CrossNetV2(6, 2).double()
    x0 = torch.randn(5, 6, dtype=torch.float64)
    x = x0
    for layer in net.full:  # x_{l+1} = x_0 * (W_l x_l + b_l) + x_l
        x = x0 * (x @ layer.weight.T + layer.bias) + x
    _close(net(x0), x)


def test_cross_net_v2_low_rank_mixture():
    dim, rank, experts = 6, 2, 3
    net = CrossNetV2(dim, 2, rank=rank, experts=experts).double()
    assert net.u.shape == (2, experts, dim, rank) and net.c.shape == (2, experts, rank, rank)
    x0 = torch.randn(4, dim, dtype=torch.float64)
    gates = net.gate_weights(0, x0)
    assert gates.shape == (4, experts)
    _close(gates.sum(1), torch.ones(4, dtype=torch.float64))
    assert net.experts(0, x0, x0).shape == (4, experts, dim)
    x = x0
    for layer in range(2):  # brute force: each expert's formula, one at a time
        mixed = torch.zeros_like(x)
        g = torch.softmax(x @ net.gates[layer], dim=1)
        for e in range(experts):
            low = torch.tanh(net.c[layer, e] @ torch.tanh(net.v[layer, e].T @ x.T))
            expert = x0 * ((net.u[layer, e] @ low).T + net.biases[layer])
            mixed += g[:, e:e + 1] * expert
        x = mixed + x
    _close(net(x0), x)


def test_parallel_mlp_is_separate_mlps():
    par = ParallelMLP(5, 3, (4, 2), out=1).double()
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    for c in range(3):
        single = MLP(5, (4, 2), out=1).double()
        linears = [m for m in single if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, par.weights, par.biases):
                lin.weight.copy_(w[c].T)
                lin.bias.copy_(b[c])
        _close(par(x)[:, c], single(x[:, c]))


def test_extraction_gates_sum_to_one_and_see_only_their_experts():
    tasks, shared, per_task = 2, 1, 2
    layer = Extraction(4, tasks, shared, per_task, (3,), 0.0, False, last=False)
    inputs = torch.randn(6, tasks + 1, 4)
    out, gates = layer(inputs)
    assert out.shape == (6, tasks + 1, 3) and gates.shape == (6, tasks + 1, 5)
    _close(gates.sum(-1), torch.ones(6, tasks + 1))
    # experts: task 0's (0, 1), task 1's (2, 3), shared (4); the shared gate sees all
    assert (gates[:, 0, 2:4] == 0).all() and (gates[:, 1, 0:2] == 0).all()
    assert (gates[:, 0, [0, 1, 4]] > 0).all() and (gates[:, 2] > 0).all()
    last = Extraction(4, tasks, shared, per_task, (3,), 0.0, False, last=True)
    assert last(inputs)[1].shape == (6, tasks, 5)


def _layout() -> InputLayout:
    return InputLayout(sparse=(("user", 10), ("item", 7), ("device", 3)), numeric=("age",),
                       multihot=(("genres", 4),), item_field=1, history_length=2)


def _batch(n: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    sparse = torch.stack([torch.randint(0, s, (n,), generator=g) for s in (10, 7, 3)], 1)
    return {"sparse": sparse, "numeric": torch.randn(n, 1, generator=g),
            "multihot": (torch.rand(n, 4, generator=g) > 0.5).float(),
            "history": torch.randint(0, 7, (n, 2), generator=g)}


@pytest.mark.parametrize(("shared", "per_task", "levels"), [(1, 0, 1), (3, 0, 1), (1, 2, 2)])
def test_multitask_module_outputs_one_logit_per_task(shared, per_task, levels):
    module = MultiTaskModule(_layout(), 3, 4, 0.1, "mean", (8,), 0.0, False, (4,), shared,
                             per_task, levels)
    batch = _batch()
    assert module(batch).shape == (8, 3)
    _, gates = module.extract(batch)
    assert len(gates) == levels
    for weights in gates:
        _close(weights.sum(-1), torch.ones(weights.shape[:2]))


def test_crossed_features_buckets():
    layout = _layout()
    crossed = CrossedFeatures(layout, [["user", "device"], ["user", "item"]], 40, 1, 0.1)
    assert crossed.exact == [True, False] and crossed.buckets == [30, 40]
    codes = _batch(50)["sparse"]
    exact, hashed = crossed._bucket(codes, 0), crossed._bucket(codes, 1)
    torch.testing.assert_close(exact, codes[:, 0] * 3 + codes[:, 2])  # mixed radix
    assert hashed.min() >= 0 and hashed.max() < 40
    same = (codes[:, None, :2] == codes[None, :, :2]).all(-1)  # same (user, item): same bucket
    assert (hashed[:, None] == hashed[None, :])[same].all()
    assert crossed(_batch(50)).shape == (50, 1)


@pytest.mark.parametrize(("cross", "problem"), [
    (["user", "nope"], "'nope' in \\['user', 'nope'\\] is not a field"),
    (["user", "genres"], "'genres' .* is not index-valued"),
    (["user", "age"], "'age' .* is not index-valued"),
    (["user", "user"], "names a field twice"),
])
def test_cross_positions_refuse_bad_names(cross, problem):
    with pytest.raises(InputError, match=problem):
        cross_positions(_layout(), cross)
    assert cross_positions(_layout(), ["device", "user"]) == [2, 0]
