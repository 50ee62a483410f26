"""Negative sampling: never a positive, seeded, distinct rows, popularity weighting, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from recforge.data import Interactions
from recforge.data.sampling import NegativeSampler, sample_negatives


def random_csr(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    return sp.random(n_users, n_items, density=density, format="csr", random_state=seed,
                     dtype=np.float32)


@st.composite
def problems(draw: st.DrawFn) -> tuple[sp.csr_matrix, np.ndarray, int, bool, str]:
    """A positives matrix where every user keeps at least ``n`` free items, and a request."""
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(2, 12))
    distinct = draw(st.booleans())
    n = draw(st.integers(1, n_items - 1 if distinct else 6))
    dense = np.zeros((n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        k = draw(st.integers(0, n_items - (n if distinct else 1)))
        dense[u, draw(st.permutations(range(n_items)))[:k]] = 1
    users = np.array(draw(st.lists(st.integers(0, n_users - 1), min_size=1, max_size=20)))
    return sp.csr_matrix(dense), users, n, distinct, draw(st.sampled_from(["uniform",
                                                                          "popularity"]))


@settings(max_examples=80, deadline=None)
@given(problems(), st.integers(0, 5))
def test_never_returns_a_positive(problem: tuple, seed: int) -> None:
    positives, users, n, distinct, method = problem
    weights = np.ones(positives.shape[1])  # popularity method, every item drawable
    out = sample_negatives(positives, users, n, method=method, seed=seed, distinct=distinct,
                           popularity=weights if method == "popularity" else None)
    assert out.shape == (len(users), n) and out.dtype == np.int64
    assert ((out >= 0) & (out < positives.shape[1])).all()
    assert not positives.toarray()[users[:, None], out].any()
    if distinct:
        assert all(len(set(row)) == n for row in out.tolist())


def test_shape_dtype_and_determinism() -> None:
    positives = random_csr(50, 300, 0.1, seed=0)
    users = np.arange(50).repeat(3)
    a = sample_negatives(positives, users, 7, seed=11)
    assert a.shape == (150, 7) and a.dtype == np.int64
    assert np.array_equal(a, sample_negatives(positives, users, 7, seed=11))
    assert not np.array_equal(a, sample_negatives(positives, users, 7, seed=12))
    sampler = NegativeSampler(positives)
    assert np.array_equal(sampler.sample(users, 7, 11), a)


def test_uniform_covers_the_free_items_evenly() -> None:
    positives = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 1, 0, 0]], dtype=np.float32))
    out = sample_negatives(positives, np.zeros(40_000, dtype=int), 1, seed=0)
    counts = np.bincount(out.ravel(), minlength=8)
    assert counts[[0, 2, 5]].sum() == 0
    free = counts[[1, 3, 4, 6, 7]]
    assert np.abs(free / free.sum() - 0.2).max() < 0.015


def test_popularity_sampling_follows_popularity() -> None:
    rng = np.random.default_rng(0)
    n_items = 200
    popularity = rng.pareto(1.0, n_items) + 0.1
    positives = sp.csr_matrix((5, n_items), dtype=np.float32)
    out = sample_negatives(positives, np.zeros(200_000, dtype=int), 1, method="popularity",
                           popularity=popularity, seed=1)
    freq = np.bincount(out.ravel(), minlength=n_items) / out.size
    assert spearmanr(freq, popularity).statistic > 0.95
    assert np.abs(freq - popularity / popularity.sum()).max() < 0.01
    flat = sample_negatives(positives, np.zeros(50_000, dtype=int), 1, method="popularity",
                            popularity=popularity, alpha=0.0, seed=1)
    assert np.bincount(flat.ravel(), minlength=n_items).max() < 2 * 50_000 / n_items


def test_default_popularity_is_item_degree_and_zero_degree_items_are_never_drawn() -> None:
    dense = np.zeros((4, 6), dtype=np.float32)
    dense[1:, 0] = 1  # item 0: degree 3 (positive for users 1-3, free for user 0)
    dense[2, 1] = 1  # item 1: degree 1
    out = sample_negatives(sp.csr_matrix(dense), np.zeros(3000, dtype=int), 1,
                           method="popularity", seed=0)
    counts = np.bincount(out.ravel(), minlength=6)
    assert counts[2:].sum() == 0
    assert 0.65 < counts[0] / counts.sum() < 0.85  # 3 : 1


def test_distinct_rows_even_for_nearly_full_users() -> None:
    dense = np.ones((3, 500), dtype=np.float32)
    dense[0, [7, 99, 123, 400]] = 0  # exactly four free items: the exact fallback path
    dense[1, :300] = 0
    dense[2, ::2] = 0
    sampler = NegativeSampler(sp.csr_matrix(dense))
    out = sampler.sample(np.array([0, 1, 2, 0]), 4, 3, distinct=True)
    assert sorted(out[0]) == [7, 99, 123, 400] and sorted(out[3]) == [7, 99, 123, 400]
    assert not dense[[[1], [2]], out[1:3]].any()
    assert all(len(set(row)) == 4 for row in out.tolist())
    single = sampler.sample(np.zeros(1000, dtype=int), 1, 0)  # with replacement, 4 free items
    assert set(single.ravel().tolist()) == {7, 99, 123, 400}


def test_ncf_protocol_shape_on_real_sized_data() -> None:
    positives = random_csr(943, 1682, 0.063, seed=2)
    out = sample_negatives(positives, np.arange(943), 99, method="uniform", distinct=True)
    assert out.shape == (943, 99)
    assert not positives.toarray()[np.arange(943)[:, None], out].any()
    assert all(len(set(row)) == 99 for row in out.tolist())


def test_sample_triples_covers_every_positive_once() -> None:
    positives = random_csr(30, 80, 0.2, seed=4)
    sampler = NegativeSampler(positives, method="popularity")
    users, items, negatives = sampler.sample_triples(np.random.default_rng(0))
    assert len(users) == positives.nnz
    pairs = sorted(zip(users.tolist(), items.tolist(), strict=True))
    assert pairs == sorted(zip(*positives.nonzero(), strict=True))
    assert not sampler.is_positive(users, negatives).any()
    again = sampler.sample_triples(np.random.default_rng(0))
    assert all(np.array_equal(x, y)
               for x, y in zip((users, items, negatives), again, strict=True))
    ordered, _, _ = sampler.sample_triples(0, shuffle=False)
    assert np.all(np.diff(ordered) >= 0)


def test_accepts_interactions_and_ignores_explicit_zeros() -> None:
    data = Interactions.from_arrays([1, 1, 2], ["a", "b", "a"], item_ids=["a", "b", "c"])
    out = sample_negatives(data, np.array([0]), 5)
    assert set(out.ravel().tolist()) == {2}
    matrix = sp.csr_matrix(([1.0, 0.0], ([0, 0], [0, 1])), shape=(1, 3))  # stored zero at 1
    assert NegativeSampler(matrix).available.tolist() == [2]


def test_errors() -> None:
    full = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0]], dtype=np.float32))
    with pytest.raises(ValueError, match="user 0 has only 0 items"):
        sample_negatives(full, np.array([1, 0]), 1)
    with pytest.raises(ValueError, match="user 1 has only 2 items"):
        sample_negatives(full, np.array([1]), 3, distinct=True)
    with pytest.raises(ValueError, match="unknown sampling method"):
        NegativeSampler(full, method="adversarial")
    with pytest.raises(ValueError, match="one value per item"):
        NegativeSampler(full, method="popularity", popularity=np.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        NegativeSampler(full, method="popularity", popularity=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="positive integer"):
        sample_negatives(full, np.array([1]), 0)
    with pytest.raises(IndexError, match="out of range"):
        sample_negatives(full, np.array([2]), 1)
    with pytest.raises(TypeError, match="sparse"):
        NegativeSampler(np.eye(3))
