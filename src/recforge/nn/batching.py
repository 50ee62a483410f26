"""Training examples as tensors and their mini-batches.

An epoch's (or a streamed chunk's) examples are a dict of equally long tensors (user indices,
item indices, labels, ...), built in bulk by the numpy builders of `recforge.data.streaming`
(`pointwise_arrays`, `pairwise_arrays`) with the shared
`recforge.data.sampling.NegativeSampler` and converted by `as_batch`; batches are
slices of one seeded permutation, gathered with a single index per tensor (no per-sample
Python code on the hot path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from recforge.data.sampling import NegativeSampler
from recforge.data.streaming import pairwise_arrays, pointwise_arrays

Batch = dict[str, torch.Tensor]


def as_batch(arrays: dict[str, np.ndarray]) -> Batch:
    """Numpy example arrays as CPU tensors (sharing their memory)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def pointwise_examples(sampler: NegativeSampler, rng: np.random.Generator,
                       negatives: int) -> Batch:
    """Every positive of ``sampler`` with label 1 and ``negatives`` sampled items of its user
    with label 0 (`recforge.data.streaming.pointwise_arrays`): ``user``, ``item`` (int64),
    ``label`` (float32)."""
    return as_batch(pointwise_arrays(sampler.users, sampler.items, sampler, rng, negatives))


def pairwise_examples(sampler: NegativeSampler, rng: np.random.Generator,
                      negatives: int) -> Batch:
    """Every positive of ``sampler`` paired with ``negatives`` sampled items of its user (one
    triple each, as in BPR; `recforge.data.streaming.pairwise_arrays`): ``user``,
    ``positive``, ``negative`` (int64)."""
    return as_batch(pairwise_arrays(sampler.users, sampler.items, sampler, rng, negatives))


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


def chunked_batches(chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                    build: Callable[[np.ndarray, np.ndarray], Batch], batch_size: int,
                    generator: torch.Generator, device: torch.device) -> Iterator[Batch]:
    """Mini-batches of a streamed epoch: each ``(users, items)`` chunk of positives becomes
    its examples by ``build`` (drawn when the chunk is reached), batched in a random order
    within the chunk (`shuffled_batches`); one chunk's examples are in memory at a time."""
    for users, items in chunks:
        yield from shuffled_batches(build(users, items), batch_size, generator, device)


def tensor_batches(batches: Iterable[dict[str, np.ndarray]],
                   device: torch.device) -> Iterator[Batch]:
    """Numpy mini-batches (e.g. from `recforge.data.streaming.pair_batches`) as tensors on
    ``device``, one batch at a time."""
    for batch in batches:
        yield {k: v.to(device, non_blocking=True) for k, v in as_batch(batch).items()}
