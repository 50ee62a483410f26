"""Wide & Deep (Cheng et al., DLRS 2016): a wide linear model over the raw fields and crossed
categorical features, jointly trained with a deep MLP over the field embeddings:

    logit = w_wide^T [x, phi(x)] + w_deep^T a^(lf) + b

``phi(x)`` are the cross-product transformations: for each cross (a list of index-valued
fields, ``crosses``, e.g. ``[["gender", "occupation"]]``) one weight per combination of the
fields' values. A cross with at most ``cross_buckets`` combinations indexes them exactly
(mixed radix of the fields' codes); a larger one is hashed into ``cross_buckets`` buckets.
The deep part's input ``a^(0)`` is the concatenated field vectors (categorical, numeric,
multihot and history alike, `FieldEmbedding`). Both parts are trained by Adam here (the paper
trains the wide part by FTRL with L1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from recforge.errors import InputError
from recforge.models.ranking.base import ClickModel
from recforge.models.ranking.inputs import InputLayout
from recforge.models.ranking.layers import MLP, FieldEmbedding
from recforge.models.ranking.linear import LinearPart
from recforge.models.registry import register
from recforge.params import Integer, Rule, Text
from recforge.params import Sequence as SequenceRule

Batch = dict[str, torch.Tensor]

#: most buckets of one cross (one weight per task each)
MAX_CROSS_BUCKETS = 1 << 26
#: the hash of a large cross: ``h = (h * _MULTIPLIER + code) mod _PRIME`` over its fields
_MULTIPLIER, _PRIME = 1_000_003, 2**31 - 1


class CrossedFeatures(nn.Module):
    """The wide part's weights of the crossed fields (module docstring), summed: ``(B, T)``."""

    def __init__(self, layout: InputLayout, crosses: Sequence[Sequence[str]], buckets: int,
                 n_tasks: int, init_std: float):
        super().__init__()
        self.positions = [cross_positions(layout, cross) for cross in crosses]
        sizes = [[layout.sparse[p][1] for p in cross] for cross in self.positions]
        products = [math.prod(s) for s in sizes]
        self.sizes = sizes
        self.exact = [product <= buckets for product in products]
        self.buckets = [min(product, buckets) for product in products]
        self.register_buffer("offsets", torch.tensor([0, *self.buckets[:-1]]).cumsum(0),
                             persistent=False)
        self.weights = nn.Embedding(sum(self.buckets), n_tasks)
        nn.init.normal_(self.weights.weight, std=init_std)

    def forward(self, batch: Batch) -> torch.Tensor:
        codes = batch["sparse"]
        index = torch.stack([self._bucket(codes, k) for k in range(len(self.positions))], 1)
        return self.weights(index + self.offsets).sum(1)

    def _bucket(self, codes: torch.Tensor, k: int) -> torch.Tensor:
        """``(B,)`` cross ``k``'s bucket of each row."""
        h = torch.zeros(len(codes), dtype=torch.long, device=codes.device)
        for position, size in zip(self.positions[k], self.sizes[k]):
            h = h * size + codes[:, position] if self.exact[k] else \
                (h * _MULTIPLIER + codes[:, position]) % _PRIME
        return h if self.exact[k] else h % self.buckets[k]


def cross_positions(layout: InputLayout, cross: Sequence[str]) -> list[int]:
    """The positions among the index-valued fields of a cross's field names; an unknown,
    repeated or not index-valued name raises a one-line `InputError`."""
    names = [name for name, _ in layout.sparse]
    for name in cross:
        if name not in names:
            kind = "is not index-valued (categorical or hashed)" if name in layout.numeric or \
                name in dict(layout.multihot) else "is not a field"
            raise InputError(f"crosses: {name!r} in {list(cross)} {kind}; index-valued "
                             f"fields: {', '.join(names)}")
    if len(set(cross)) < len(cross):
        raise InputError(f"crosses: {list(cross)} names a field twice")
    return [names.index(name) for name in cross]


class WideDeepModule(nn.Module):
    def __init__(self, layout: InputLayout, n_tasks: int, dim: int, init_std: float,
                 pooling: str, layers: tuple[int, ...], dropout: float, batch_norm: bool,
                 crosses: Sequence[Sequence[str]], cross_buckets: int):
        super().__init__()
        self.linear = LinearPart(layout, n_tasks, init_std)
        self.crossed = CrossedFeatures(layout, crosses, cross_buckets, n_tasks, init_std) \
            if crosses else None
        self.embedding = FieldEmbedding(layout, dim, init_std, pooling)
        self.mlp = MLP(layout.n_fields * dim, layers, dropout, batch_norm, out=n_tasks)

    def forward(self, batch: Batch) -> torch.Tensor:
        wide = self.linear(batch)
        if self.crossed is not None:
            wide = wide + self.crossed(batch)
        return wide + self.mlp(self.embedding(batch).flatten(1))


@register("wide-deep")
class WideDeep(ClickModel):
    """Wide & Deep (module docstring): ``crosses`` lists the crossed fields of the wide part
    (none by default), each hashed into at most ``cross_buckets`` buckets; the deep part's
    hidden widths are ``layers``.

    Paper: Cheng et al., "Wide & Deep learning for recommender systems", DLRS 2016.
    Hyperparameters (defaults): ``crosses=()``, ``cross_buckets=65536``, ``embedding_dim=16``,
        ``init_std=0.0001``, ``layers=(256,128)``, ``dropout=0.0``, ``batch_norm=False``,
        ``fields=None``, ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`); no crosses by default (declare them).
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "crosses": SequenceRule(SequenceRule(Text(), min_len=2)),
        "cross_buckets": Integer(1, MAX_CROSS_BUCKETS),
    }

    def __init__(self, crosses: Sequence[Sequence[str]] = (), cross_buckets: int = 1 << 16,
                 **common: Any):
        self.crosses = crosses
        self.cross_buckets = cross_buckets
        super().__init__(**common)

    def _build_module(self) -> nn.Module:
        return WideDeepModule(self.layout, len(self.tasks_), self.embedding_dim, self.init_std,
                              self.history_pooling, self.layers, self.dropout,
                              self.batch_norm, self.crosses, self.cross_buckets)
