"""The self-attention encoder of SASRec and BERT4Rec: item embeddings plus learned position
embeddings through pre-norm transformer blocks, causal (SASRec: a position attends to itself
and the positions before it) or bidirectional (BERT4Rec). Padding positions (the padding
index) are never attended to; a padding row's own output is not used."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from recforge.models.sequential.base import SequenceModule
from recforge.params import parameter_error

#: most transformer blocks and attention heads
MAX_BLOCKS = 64
#: additive attention mask of a forbidden key (finite: an all-padding row stays finite)
_FORBIDDEN = -1e9


class TransformerModule(SequenceModule):
    """``blocks`` pre-norm transformer layers of ``heads`` heads over windows of ``length``
    items; ``feedforward``: the width of each block's position-wise layer (``activation``
    ``relu`` or ``gelu``); ``extra_tokens`` item rows after the catalogue (padding, mask)."""

    def __init__(self, n_items: int, dim: int, length: int, blocks: int, heads: int,
                 dropout: float, causal: bool, feedforward: int, activation: str,
                 extra_tokens: int = 1, bias: bool = False):
        super().__init__(n_items, dim, extra_tokens, bias)
        self.heads = heads
        self.causal = causal
        self.scale = dim ** 0.5
        self.positions = nn.Embedding(length, dim)
        nn.init.normal_(self.positions.weight, std=dim ** -0.5)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, feedforward, dropout, activation,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("order", torch.arange(length), persistent=False)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        length = windows.shape[1]
        padding = windows == self.n_items
        x = self.items(windows) * self.scale + self.positions(self.order[-length:])
        x = self.dropout(x) * ~padding[..., None]
        x = self.blocks(x, mask=self._mask(padding))
        return self.norm(x)

    def _mask(self, padding: torch.Tensor) -> torch.Tensor:
        """``(B * heads, L, L)`` additive mask: padding keys (and, causal, later keys) out."""
        forbidden = padding[:, None, :].expand(-1, padding.shape[1], -1)
        if self.causal:
            later = torch.ones(padding.shape[1], padding.shape[1], dtype=torch.bool,
                               device=padding.device).triu(1)
            forbidden = forbidden | later
        mask = torch.zeros(forbidden.shape, device=padding.device).masked_fill(forbidden,
                                                                               _FORBIDDEN)
        return mask.repeat_interleave(self.heads, dim=0)


def check_heads(model: Any) -> None:
    """The attention heads of ``model`` split its embedding evenly, else a `ParameterError`
    naming the parameter that left its default (``heads`` when both did)."""
    dim, heads = model.embedding_dim, model.heads
    if not dim % heads:
        return
    default_heads = inspect.signature(type(model).__init__).parameters["heads"].default
    if heads == default_heads:
        raise parameter_error("embedding_dim",
                              f"must be a multiple of heads ({heads}), got {dim}")
    raise parameter_error("heads", f"must divide embedding_dim ({dim}), got {heads}")
