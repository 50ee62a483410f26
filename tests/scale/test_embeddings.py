"""Large embedding tables (`recforge.nn.embeddings`, `recforge.nn.trainer.make_optimizers`):
a 10M-id vocabulary hashed into a bounded table, trained with sparse gradients and
SparseAdam by the shared trainer, and its saved state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from recforge.errors import InputError, ParameterError
from recforge.nn.embeddings import HashedEmbedding
from recforge.nn.trainer import ScoringModule, Trainer, TrainingConfig, pointwise_loss

N_USERS = 10_000_000
ROWS = 1 << 14


class HashedMF(ScoringModule):
    """Dot product of a hashed 10M-user table and a small item table (both sparse), plus a
    dense bias (the dense optimiser's parameter)."""

    def __init__(self, sparse: bool = True):
        super().__init__()
        self.users = HashedEmbedding(N_USERS, 8, max_rows=ROWS, sparse=sparse, init_std=0.1)
        self.items = HashedEmbedding(50, 8, sparse=sparse, init_std=0.1)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.users(users) * self.items(items)).sum(1) + self.bias


def examples(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Users spread over 10M ids; the label is a function of the user's hash row and item."""
    rng = np.random.default_rng(seed)
    users = torch.from_numpy(rng.integers(0, N_USERS, n))
    items = torch.from_numpy(rng.integers(0, 50, n))
    rows = HashedEmbedding(N_USERS, 1, max_rows=ROWS).row_of(users)
    return {"user": users, "item": items, "label": ((rows + items) % 2).float()}


def test_a_10m_id_table_trains_in_bounded_memory_with_sparse_gradients() -> None:
    torch.manual_seed(0)
    module = HashedMF()
    assert module.users.hashed and module.users.rows == ROWS
    assert sum(p.numel() for p in module.parameters()) == ROWS * 8 + 50 * 8 + 1
    trainer = Trainer(module, TrainingConfig(learning_rate=0.05, train_batch_size=512),
                      torch.device("cpu"))
    assert isinstance(trainer.sparse_optimizer, torch.optim.SparseAdam)
    assert [p for g in trainer.optimizer.param_groups for p in g["params"]] == [module.bias]
    data = examples(10_000, 1)
    losses = [trainer.run_epoch(e, data, pointwise_loss)["loss"] for e in range(4)]
    assert losses[-1] < 0.9 * losses[0]
    # a step's gradient touches only the rows of its batch
    trainer.optimizer.zero_grad()
    trainer.sparse_optimizer.zero_grad()
    batch = {k: v[:64] for k, v in data.items()}
    pointwise_loss(module, batch).backward()
    grad = module.users.table.weight.grad
    assert grad.is_sparse
    touched = grad.coalesce().indices()[0].unique()
    assert set(touched.tolist()) == set(module.users.row_of(batch["user"]).unique().tolist())
    # every moment the optimiser keeps is the table's size, not the vocabulary's
    state_sizes = [t.numel() for s in trainer.sparse_optimizer.state.values()
                   for t in s.values() if torch.is_tensor(t) and t.dim()]
    assert state_sizes and max(state_sizes) <= ROWS * 8


def test_sparse_optimiser_state_is_saved_and_restored() -> None:
    torch.manual_seed(0)
    config = TrainingConfig(learning_rate=0.05, train_batch_size=256)
    first = Trainer(HashedMF(), config, torch.device("cpu"))
    data = examples(4000, 2)
    first.run_epoch(0, data, pointwise_loss)
    tensors, state = first.state()
    tensors = {k: v.clone() for k, v in tensors.items()}  # as read back from a file
    assert any(k.startswith("sparse_optim/") for k in tensors) and "sparse_optimizer" in state
    weights = {k: v.clone() for k, v in first.module.state_dict().items()}
    second = Trainer(HashedMF(), config, torch.device("cpu"))
    second.module.load_state_dict(weights)
    second.load_state(tensors, state)
    a = first.run_epoch(1, data, pointwise_loss)["loss"]
    b = second.run_epoch(1, data, pointwise_loss)["loss"]
    assert a == pytest.approx(b, rel=1e-6)


def test_sgd_steps_sparse_tables_and_decay_or_momentum_are_refused() -> None:
    module = HashedMF()
    trainer = Trainer(module, TrainingConfig(optimizer="sgd"), torch.device("cpu"))
    assert type(trainer.sparse_optimizer) is torch.optim.SGD
    for bad in ({"weight_decay": 1e-4}, {"optimizer": "sgd", "momentum": 0.9}):
        with pytest.raises(InputError, match=r"must be 0 with sparse embeddings"):
            Trainer(HashedMF(), TrainingConfig(**bad), torch.device("cpu"))
    dense = Trainer(HashedMF(sparse=False), TrainingConfig(weight_decay=1e-4),
                    torch.device("cpu"))
    assert dense.sparse_optimizer is None


def test_unhashed_ids_keep_their_own_rows_and_arguments_are_checked() -> None:
    table = HashedEmbedding(100, 4, max_rows=100)
    ids = torch.arange(100)
    assert not table.hashed and torch.equal(table.row_of(ids), ids)
    hashed = HashedEmbedding(1000, 4, max_rows=100)
    rows = hashed.row_of(torch.arange(1000))
    assert rows.min() >= 0 and rows.max() < 100 and len(rows.unique()) == 100
    assert torch.equal(rows, HashedEmbedding(1000, 4, max_rows=100).row_of(torch.arange(1000)))
    with pytest.raises(ParameterError, match="^max_rows: "):
        HashedEmbedding(10, 4, max_rows=0)
