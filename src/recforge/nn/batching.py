"""In-memory training examples and their mini-batches.

An epoch's examples are a dict of equally long tensors (user indices, item indices, labels,
...), built in bulk from the shared `recforge.data.sampling.NegativeSampler`; batches are
slices of one seeded permutation, gathered with a single index per tensor (no per-sample
Python code on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from recforge.data.sampling import NegativeSampler

Batch = dict[str, torch.Tensor]


def pointwise_examples(sampler: NegativeSampler, rng: np.random.Generator,
                       negatives: int) -> Batch:
    """Every positive ``(u, i)`` with label 1 and ``negatives`` sampled items of ``u`` with
    label 0 (He et al. 2017, section 3.1.1): ``user``, ``item`` (int64), ``label`` (float32)."""
    users = torch.from_numpy(sampler.users)
    drawn = torch.from_numpy(sampler.sample(sampler.users, negatives, rng).ravel())
    n_pos = len(users)
    return {
        "user": torch.cat([users, users.repeat_interleave(negatives)]),
        "item": torch.cat([torch.from_numpy(sampler.items), drawn]),
        "label": torch.cat([torch.ones(n_pos), torch.zeros(n_pos * negatives)]),
    }


def pairwise_examples(sampler: NegativeSampler, rng: np.random.Generator,
                      negatives: int) -> Batch:
    """Every positive ``(u, i)`` paired with ``negatives`` sampled items ``j`` of ``u`` (one
    triple each, as in BPR): ``user``, ``positive``, ``negative`` (int64)."""
    drawn = sampler.sample(sampler.users, negatives, rng).ravel()
    return {
        "user": torch.from_numpy(sampler.users).repeat_interleave(negatives),
        "positive": torch.from_numpy(sampler.items).repeat_interleave(negatives),
        "negative": torch.from_numpy(drawn),
    }


def example_count(examples: Batch) -> int:
    """The number of examples (the common length of the tensors)."""
    sizes = {len(t) for t in examples.values()}
    if len(sizes) != 1:
        raise ValueError(f"example tensors differ in length: {sorted(sizes)}")
    return sizes.pop()


def shuffled_batches(examples: Batch, batch_size: int, generator: torch.Generator,
                     device: torch.device) -> Iterator[Batch]:
    """Mini-batches of ``examples`` in the order of one permutation drawn from ``generator``
    (a CPU generator, so the order is the same on every device). The examples move to
    ``device`` once; each batch is one gather per tensor."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = example_count(examples)
    order = torch.randperm(n, generator=generator).to(device)
    on_device = {k: v.to(device, non_blocking=True) for k, v in examples.items()}
    for lo in range(0, n, batch_size):
        idx = order[lo:lo + batch_size]
        yield {k: v[idx] for k, v in on_device.items()}


def tensor_batches(batches: Iterable[dict[str, np.ndarray]],
                   device: torch.device) -> Iterator[Batch]:
    """Numpy mini-batches (e.g. from `recforge.data.streaming.pair_batches`) as tensors on
    ``device``, one batch at a time."""
    for batch in batches:
        yield {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
               for k, v in batch.items()}
