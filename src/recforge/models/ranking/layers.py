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
    feature maps are ``X^k_h = sum_{i,j} W^{k,h}_{ij} (X^{k-1}_i * X^0_j)`` (element-wise over
    the embedding), each map sum-pooled over the embedding into the output. With
    ``split_half`` half of each hidden layer's maps go to the output and half to the next
    layer, as in the paper's code."""

    def __init__(self, n_fields: int, layer_sizes: Sequence[int], split_half: bool = True):
        super().__init__()
        self.convs = nn.ModuleList()
        self.split_half = split_half
        prev, out_dim = n_fields, 0
        for k, size in enumerate(layer_sizes):
            self.convs.append(nn.Conv1d(prev * n_fields, size, kernel_size=1))
            last = k == len(layer_sizes) - 1
            nxt = size // 2 if split_half and not last else size
            out_dim += size - nxt if split_half and not last else size
            prev = nxt
        self.out_dim = out_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        batch, _, dim = x0.shape
        hidden, pooled = x0, []
        for k, conv in enumerate(self.convs):
            z = torch.einsum("bhd,bmd->bhmd", hidden, x0).reshape(batch, -1, dim)
            z = torch.relu(conv(z))
            if self.split_half and k < len(self.convs) - 1:
                hidden, direct = torch.split(z, z.shape[1] // 2, dim=1)
            else:
                hidden, direct = z, z
            pooled.append(direct.sum(-1))
        return torch.cat(pooled, dim=1)


class CrossNet(nn.Module):
    """DCN's cross network (Wang et al., ADKDD 2017): ``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l``,
    one weight vector per layer."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.empty(layers, dim))
        self.biases = nn.Parameter(torch.zeros(layers, dim))
        nn.init.xavier_normal_(self.weights)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.weights, self.biases):
            x = x0 * (x @ w).unsqueeze(1) + b + x
        return x


class CrossNetV2(nn.Module):
    """DCN-V2's cross layers (Wang et al., WWW 2021): full rank
    ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``, or with ``rank`` the mixture of ``experts``
    low-rank experts ``x_0 * (U_e g(C_e g(V_e^T x_l)) + b_l)`` gated by a softmax of ``x_l``
    (``g`` = tanh), added to ``x_l``."""

    def __init__(self, dim: int, layers: int, rank: int | None = None, experts: int = 4):
        super().__init__()
        self.rank = rank
        if rank is None:
            self.full = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        else:
            self.u = nn.Parameter(torch.empty(layers, experts, dim, rank))
            self.v = nn.Parameter(torch.empty(layers, experts, dim, rank))
            self.c = nn.Parameter(torch.empty(layers, experts, rank, rank))
            self.gates = nn.ModuleList(nn.Linear(dim, 1, bias=False) for _ in range(experts))
            self.biases = nn.Parameter(torch.zeros(layers, dim))
            for weight in (self.u, self.v, self.c):
                nn.init.xavier_normal_(weight)
        self.layers = layers

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in range(self.layers):
            x = x + (self._full(layer, x0, x) if self.rank is None else self._mixture(layer, x0, x))
        return x

    def _full(self, layer: int, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.full[layer](x)

    def _mixture(self, layer: int, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        low = torch.tanh(torch.einsum("bd,edr->ber", x, self.v[layer]))
        low = torch.tanh(torch.einsum("ber,ers->bes", low, self.c[layer]))
        experts = x0.unsqueeze(1) * (torch.einsum("bes,eds->bed", low, self.u[layer])
                                     + self.biases[layer])
        gates = torch.softmax(torch.cat([g(x) for g in self.gates], dim=1), dim=1)
        return (gates.unsqueeze(-1) * experts).sum(1)
