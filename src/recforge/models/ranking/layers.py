"""The layers click models are built from (PyTorch): one embedding per field, an MLP, the
factorization-machine interaction, the Compressed Interaction Network, cross networks (DCN and
DCN-V2) and target attention over the user's history (DIN).

`FieldEmbedding` turns a batch of `recforge.models.ranking.inputs` arrays into ``(B, F, d)``:
one vector per field, as FuxiCTR's feature embedding does: an index-valued field looks its
index up in its own table (index 0, "unknown", has a vector too); a numeric field scales a
learned vector by its standardised value; a multihot field averages the vectors of its labels;
the history averages (or, with target attention, weights) the item field's vectors of the
user's recent items, padding left out. With ``dim=1`` it gives the first-order (linear)
weights of every field.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from recforge.models.ranking.inputs import InputLayout

Batch = dict[str, torch.Tensor]


class FieldEmbedding(nn.Module):
    """Per-field vectors ``(B, F, dim)`` (module docstring); fields in the order sparse,
    numeric, multihot, history."""

    def __init__(self, layout: InputLayout, dim: int, init_std: float,
                 history_pooling: str = "mean"):
        super().__init__()
        self.layout = layout
        sizes = [size for _, size in layout.sparse]
        self.register_buffer("offsets", torch.tensor([0, *sizes[:-1]]).cumsum(0),
                             persistent=False)
        self.sparse = nn.Embedding(max(sum(sizes), 1), dim)
        self.numeric = nn.Parameter(torch.empty(len(layout.numeric), dim))
        widths = [size for _, size in layout.multihot]
        self.multihot = nn.Parameter(torch.empty(sum(widths), dim))
        self.multihot_bounds = [0, *torch.tensor(widths, dtype=torch.long).cumsum(0).tolist()]
        self.attention = (TargetAttention(dim) if history_pooling == "attention"
                          and layout.history_length else None)
        for weight in (self.sparse.weight, self.numeric, self.multihot):
            nn.init.normal_(weight, std=init_std)

    def forward(self, batch: Batch) -> torch.Tensor:
        parts = []
        if self.layout.sparse:
            parts.append(self.sparse(batch["sparse"] + self.offsets))
        if self.layout.numeric:
            parts.append(batch["numeric"].unsqueeze(-1) * self.numeric)
        bounds = self.multihot_bounds
        for lo, hi in itertools.pairwise(bounds):
            labels = batch["multihot"][:, lo:hi]
            mean = labels @ self.multihot[lo:hi] / labels.sum(1, keepdim=True).clamp(min=1)
            parts.append(mean.unsqueeze(1))
        if self.layout.history_length:
            parts.append(self._history(batch, parts[0]).unsqueeze(1))
        return torch.cat(parts, dim=1)

    def _history(self, batch: Batch, sparse: torch.Tensor) -> torch.Tensor:
        """The pooled vectors of the user's recent items (zeros for an empty history)."""
        codes = batch["history"]
        item = self.layout.item_field
        vectors = self.sparse(codes + self.offsets[item])
        mask = (codes > 0).unsqueeze(-1).to(vectors.dtype)
        if self.attention is not None:
            return self.attention(sparse[:, item], vectors, mask)
        return (vectors * mask).sum(1) / mask.sum(1).clamp(min=1)


class TargetAttention(nn.Module):
    """DIN's activation unit (Zhou et al., KDD 2018): each history item's weight is an MLP of
    ``[h, t, h - t, h * t]`` for the target item ``t``; the weighted sum (not normalised by a
    softmax, as in the paper) pools the history."""

    def __init__(self, dim: int, hidden: int = 36):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(4 * dim, hidden), nn.PReLU(), nn.Linear(hidden, 1))

    def forward(self, target: torch.Tensor, history: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        t = target.unsqueeze(1).expand_as(history)
        weights = self.score(torch.cat([history, t, history - t, history * t], dim=-1))
        return (weights * mask * history).sum(1)


class MLP(nn.Sequential):
    """Linear layers of widths ``hidden`` with ReLU, optional batch normalisation and dropout;
    ``out`` adds a last linear layer of that width without activation."""

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0,
                 batch_norm: bool = False, out: int | None = None):
        layers: list[nn.Module] = []
        for width in hidden:
            layers.append(nn.Linear(in_dim, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        if out is not None:
            layers.append(nn.Linear(in_dim, out))
            in_dim = out
        super().__init__(*layers)
        self.out_dim = in_dim


def fm_interaction(emb: torch.Tensor) -> torch.Tensor:
    """Rendle's pairwise term ``sum_{i<j} <v_i, v_j>`` of ``(B, F, d)`` field vectors in
    ``O(F d)``: ``((sum_i v_i)^2 - sum_i v_i^2) / 2`` summed over ``d``; shape ``(B, 1)``."""
    square_of_sum = emb.sum(1).pow(2)
    sum_of_square = emb.pow(2).sum(1)
    return 0.5 * (square_of_sum - sum_of_square).sum(1, keepdim=True)


class CIN(nn.Module):
    """The Compressed Interaction Network of xDeepFM (Lian et al., KDD 2018): layer ``k``'s
    feature maps are ``X^k_h = sum_{i,j} W^{k,h}_{ij} (X^{k-1}_i * X^0_j) + b^{k,h}``
    (element-wise over the embedding, no activation, as in the paper's equation 6), each map
    sum-pooled over the embedding into the output. With ``split_half`` the first half of each
    hidden layer's maps (``size // 2``) goes on to the next layer and the rest to the output,
    as in the paper's code; the last layer's maps all go to the output."""

    def __init__(self, n_fields: int, layer_sizes: Sequence[int], split_half: bool = True):
        super().__init__()
        self.layers = nn.ModuleList()
        self.splits: list[tuple[int, int]] = []  # (maps to the next layer, maps to the output)
        prev = n_fields
        for k, size in enumerate(layer_sizes):
            # weight[h, i * n_fields + j] is W^{k,h}_{ij}
            self.layers.append(nn.Linear(prev * n_fields, size))
            nxt = size // 2 if split_half and k < len(layer_sizes) - 1 else size
            direct = size - nxt if split_half and k < len(layer_sizes) - 1 else size
            self.splits.append((nxt, direct))
            prev = nxt
        self.out_dim = sum(direct for _, direct in self.splits)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``(B, F, d)`` field vectors -> ``(B, out_dim)`` pooled feature maps. Computed with
        the embedding dimension first, ``(B, d, maps)``, so that each layer is one matrix
        product of the ``(B d, H F)`` outer products."""
        batch, _, dim = x0.shape
        hidden, pooled = x0.transpose(1, 2), []  # (B, d, F)
        base = hidden.unsqueeze(-2)  # (B, d, 1, F)
        for layer, (nxt, direct) in zip(self.layers, self.splits):
            z = layer((hidden.unsqueeze(-1) * base).reshape(batch, dim, -1))  # (B, d, H_k)
            hidden = z[..., :nxt]  # the last layer (or no split): nxt = direct = every map
            pooled.append(z[..., z.shape[-1] - direct:].sum(1))
        return torch.cat(pooled, dim=1)


class CrossNet(nn.Module):
    """DCN's cross network (Wang et al., ADKDD 2017): ``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l``,
    one weight vector per layer (Xavier-normal, as a ``d x 1`` matrix)."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(layers, dim) * (2.0 / (dim + 1)) ** 0.5)
        self.biases = nn.Parameter(torch.zeros(layers, dim))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, D)``."""
        x = x0
        for w, b in zip(self.weights, self.biases):
            x = x0 * (x @ w).unsqueeze(1) + b + x
        return x


class CrossNetV2(nn.Module):
    """DCN-V2's cross layers (Wang et al., WWW 2021): full rank
    ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``, or with ``rank`` the mixture of ``experts``
    low-rank experts ``x_{l+1} = sum_e G_{l,e}(x_l) x_0 * (U_{l,e} g(C_{l,e} g(V_{l,e}^T x_l))
    + b_l) + x_l`` (``g`` = tanh) whose gates ``G_l`` are a softmax over the experts of
    linear functions of ``x_l``, one set per layer."""

    def __init__(self, dim: int, layers: int, rank: int | None = None, experts: int = 4):
        super().__init__()
        self.rank = rank
        self.layers = layers
        if rank is None:
            self.full = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
            return
        self.u = _xavier(layers, experts, dim, rank)
        self.v = _xavier(layers, experts, dim, rank)
        self.c = _xavier(layers, experts, rank, rank)
        self.gates = nn.Parameter((torch.rand(layers, dim, experts) * 2 - 1) / dim ** 0.5)
        self.biases = nn.Parameter(torch.zeros(layers, dim))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, D)``."""
        x = x0
        for layer in range(self.layers):
            x = x + (self._full(layer, x0, x) if self.rank is None else self._mixture(layer, x0, x))
        return x

    def _full(self, layer: int, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.full[layer](x)

    def _mixture(self, layer: int, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (self.gate_weights(layer, x).unsqueeze(-1) * self.experts(layer, x0, x)).sum(1)

    def experts(self, layer: int, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(B, E, D)`` each low-rank expert's ``x_0 * (U g(C g(V^T x)) + b)``."""
        low = torch.tanh(torch.einsum("bd,edr->ber", x, self.v[layer]))
        low = torch.tanh(torch.einsum("ers,bes->ber", self.c[layer], low))
        return x0.unsqueeze(1) * (torch.einsum("bes,eds->bed", low, self.u[layer])
                                  + self.biases[layer])

    def gate_weights(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` the softmax gates of layer ``layer``'s experts."""
        return torch.softmax(x @ self.gates[layer], dim=1)


def _xavier(*shape: int) -> nn.Parameter:
    """Xavier-normal weights of ``shape``, each of its trailing ``(fan_in, fan_out)``
    matrices scaled by its own two sides."""
    return nn.Parameter(torch.randn(*shape) * (2.0 / (shape[-2] + shape[-1])) ** 0.5)


class ParallelMLP(nn.Module):
    """``count`` MLPs of the same widths (those of `MLP`: ReLU, optional batch normalisation
    and dropout after each hidden layer; ``out`` adds a last linear layer) evaluated at once,
    MLP ``c`` on its own input row: ``(B, count, in_dim)`` -> ``(B, count, out_dim)``. The
    experts and per-task towers of the multi-task models."""

    def __init__(self, in_dim: int, count: int, hidden: Sequence[int], dropout: float = 0.0,
                 batch_norm: bool = False, out: int | None = None):
        super().__init__()
        widths = [in_dim, *hidden, *([] if out is None else [out])]
        bounds = [1 / a ** 0.5 for a in widths[:-1]]  # nn.Linear's initial range
        self.weights = nn.ParameterList(
            nn.Parameter((torch.rand(count, a, b) * 2 - 1) * bound)
            for (a, b), bound in zip(itertools.pairwise(widths), bounds))
        self.biases = nn.ParameterList(
            nn.Parameter((torch.rand(count, b) * 2 - 1) * bound)
            for b, bound in zip(widths[1:], bounds))
        self.norms = nn.ModuleList(nn.BatchNorm1d(count * w) for w in hidden) \
            if batch_norm else None
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.n_hidden = len(hidden)
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.einsum("bci,cio->bco", x, w) + b
            if k < self.n_hidden:
                if self.norms is not None:
                    x = self.norms[k](x.flatten(1)).view_as(x)
                x = torch.relu(x)
                if self.dropout is not None:
                    x = self.dropout(x)
        return x
