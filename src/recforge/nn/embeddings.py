"""Id embeddings for vocabularies larger than memory: the hashing trick and sparse gradients.

`HashedEmbedding` holds ``min(n_ids, max_rows)`` rows. Up to ``max_rows`` ids each id has
its own row; beyond it, ids share rows through a fixed multiplicative hash (Knuth's
``2654435761``, then modulo the row count: the same on every run and machine), the hashing
trick of Weinberger et al., "Feature Hashing for Large Scale Multitask Learning", ICML 2009
(collisions cost accuracy, not memory). With ``sparse=True`` the table's gradient is sparse
(only the rows a batch looks up) and `recforge.nn.trainer.make_optimizers` steps it with
``torch.optim.SparseAdam`` (or plain SGD), so an optimiser step costs the batch, not the
table. Memory: the table and its two Adam moments, ``3 x rows x dim`` floats, whatever
``n_ids`` is: a 10M-id vocabulary hashed into 2^20 rows of 32 floats takes 384 MiB.
"""

from __future__ import annotations

import torch
from torch import nn

from recforge.params import MAX_COUNT, WIDTH, Integer, Optional, check_all

#: Knuth's multiplicative hash constant (2^32 / golden ratio)
_HASH_MULTIPLIER = 2654435761


class HashedEmbedding(nn.Module):
    """``n_ids`` ids embedded in ``dim`` floats in at most ``max_rows`` rows (None: one row
    per id); ``sparse``: sparse gradients (module docstring)."""

    def __init__(self, n_ids: int, dim: int, max_rows: int | None = None,
                 sparse: bool = False, init_std: float = 0.01):
        super().__init__()
        check_all({"n_ids": Integer(1, MAX_COUNT), "dim": WIDTH,
                   "max_rows": Optional(Integer(1, MAX_COUNT))},
                  {"n_ids": n_ids, "dim": dim, "max_rows": max_rows})
        self.n_ids = n_ids
        self.hashed = max_rows is not None and n_ids > max_rows
        self.table = nn.Embedding(max_rows if self.hashed else n_ids, dim, sparse=sparse)
        nn.init.normal_(self.table.weight, std=init_std)

    @property
    def rows(self) -> int:
        """Rows held (``max_rows`` when hashed, else ``n_ids``)."""
        return self.table.num_embeddings

    def row_of(self, ids: torch.Tensor) -> torch.Tensor:
        """The table row of each id (the id itself when not hashed)."""
        if not self.hashed:
            return ids
        return (ids.long() * _HASH_MULTIPLIER) % self.rows

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.row_of(ids))
