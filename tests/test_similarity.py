"""Similarity module: every measure against a direct per-pair computation, blocks, pruning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.models.neighbours import similarity as sim


@pytest.fixture(scope="module")
def ratings() -> np.ndarray:
    rng = np.random.default_rng(0)
    dense = rng.integers(1, 6, size=(30, 20)).astype(np.float64)
    dense[rng.random(dense.shape) > 0.35] = 0.0
    dense[3] = 0.0  # an empty row
    return dense


def _reference_vector(dense: np.ndarray, measure: str) -> np.ndarray:
    support = (dense != 0).astype(float)
    common = support @ support.T
    if measure == "jaccard":
        union = support.sum(1)[:, None] + support.sum(1)[None, :] - common
        out = np.divide(common, union, out=np.zeros_like(common), where=union > 0)
    else:
        dots = dense @ dense.T
        norms = np.linalg.norm(dense, axis=1)
        den = np.outer(norms, norms) if measure == "cosine" else np.ones_like(dots)
        out = np.divide(dots, den, out=np.zeros_like(dots), where=den > 0)
    np.fill_diagonal(out, 0.0)
    return out


def _reference_corated(dense: np.ndarray, measure: str) -> np.ndarray:
    n = len(dense)
    out = np.zeros((n, n))
    for a in range(n):  # reference: one pair at a time, straight from the definitions
        for b in range(n):
            both = (dense[a] != 0) & (dense[b] != 0)
            x, y = dense[a, both], dense[b, both]
            if a == b or not both.any():
                continue
            if measure == "pearson":
                x, y = x - x.mean(), y - y.mean()
            if measure == "msd":
                out[a, b] = 1.0 / (1.0 + np.mean((x - y) ** 2))
            else:
                den = np.sqrt((x * x).sum() * (y * y).sum())
                out[a, b] = (x * y).sum() / den if den > 0 else 0.0
    return out


@pytest.mark.parametrize("measure", ["cosine", "jaccard", "dot"])
def test_vector_similarity_matches_definition(ratings: np.ndarray, measure: str) -> None:
    got = sim.vector_similarity(sp.csr_matrix(ratings), measure).toarray()
    expected = _reference_vector(ratings, measure)
    assert got == pytest.approx(np.where(expected > 0, expected, 0.0), abs=1e-5)


@pytest.mark.parametrize("measure", ["cosine", "pearson", "msd"])
def test_corated_similarity_matches_definition(ratings: np.ndarray, measure: str) -> None:
    got = sim.corated_similarity(sp.csr_matrix(ratings), measure).toarray()
    expected = _reference_corated(ratings, measure)
    assert got == pytest.approx(np.where(expected > 0, expected, 0.0), abs=1e-5)


def test_stored_zero_counts_as_observed() -> None:
    # rows 0 and 1 share column 0 where row 1 holds an explicit 0.0 (e.g. a centred rating)
    matrix = sp.csr_matrix((np.array([1.0, 0.0, 2.0, 3.0]), (np.array([0, 1, 0, 1]),
                                                               np.array([0, 0, 1, 1]))))
    got = sim.corated_similarity(matrix, "msd").toarray()
    assert got[0, 1] == pytest.approx(1.0 / (1.0 + (1.0 + 1.0) / 2))


def test_shrinkage_and_min_support(ratings: np.ndarray) -> None:
    matrix = sp.csr_matrix(ratings)
    support = (ratings != 0).astype(float)
    common = support @ support.T
    plain = sim.corated_similarity(matrix, "pearson").toarray()
    shrunk = sim.corated_similarity(matrix, "pearson", shrinkage=5.0).toarray()
    assert shrunk == pytest.approx(plain * common / (common + 5.0), abs=1e-5)
    supported = sim.corated_similarity(matrix, "pearson", min_support=4).toarray()
    assert supported == pytest.approx(np.where(common >= 4, plain, 0.0), abs=1e-6)
    weighted = sim.vector_similarity(matrix, "cosine", shrinkage=2.0).toarray()
    expected = _reference_vector(ratings, "cosine") * common / (common + 2.0)
    assert weighted == pytest.approx(expected, abs=1e-5)


def test_top_k_keeps_each_rows_best_positive(ratings: np.ndarray) -> None:
    full = sim.corated_similarity(sp.csr_matrix(ratings), "pearson").toarray()
    pruned = sim.corated_similarity(sp.csr_matrix(ratings), "pearson", k=3)
    assert np.diff(pruned.indptr).max() <= 3
    assert pruned.has_sorted_indices
    for row in range(len(ratings)):
        kept = np.sort(pruned[row].toarray().ravel())[::-1][:3]
        best = np.sort(full[row])[::-1][:3]
        assert kept == pytest.approx(best, abs=1e-6)
    assert (pruned.data > 0).all() and pruned.diagonal().sum() == 0


def test_blocks_give_the_same_result(ratings: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = sp.csr_matrix(ratings)
    whole = [sim.corated_similarity(matrix, "pearson", k=4), sim.vector_similarity(matrix, k=4),
             sim.gram_matrix(matrix)]
    monkeypatch.setattr(sim, "BLOCK_BYTES", 1)  # one row per block
    blocked = [sim.corated_similarity(matrix, "pearson", k=4), sim.vector_similarity(matrix, k=4),
               sim.gram_matrix(matrix)]
    for a, b in zip(whole[:2], blocked[:2]):
        assert (a != b).nnz == 0
    assert np.array_equal(whole[2], blocked[2])
    assert whole[2] == pytest.approx(ratings.T @ ratings)


def test_tfidf_and_bm25_by_hand() -> None:
    # 3 documents (rows) x 2 terms; term 0 occurs in every document, term 1 in one
    matrix = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]))
    tfidf = sim.tfidf_weight(matrix).toarray()
    assert tfidf == pytest.approx(np.array([[0.0, np.log(3.0)], [0.0, 0.0], [0.0, 0.0]]))
    bm25 = sim.bm25_weight(matrix, k1=1.2, b=0.75).toarray()
    idf = np.log1p((3 - np.array([3.0, 1.0]) + 0.5) / (np.array([3.0, 1.0]) + 0.5))
    norm = 1 - 0.75 + 0.75 * np.array([2.0, 1.0, 1.0]) / (4.0 / 3.0)
    expected = idf[None, :] * 2.2 / (1.0 + 1.2 * norm[:, None]) * matrix.toarray()
    assert bm25 == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="unknown weighting"):
        sim.apply_weighting(matrix, "idf")  # type: ignore[arg-type]


def test_most_similar_sparse_pads_and_excludes_self() -> None:
    matrix = sp.csr_matrix(np.array([[0.0, 0.5, 0.9], [0.5, 0.0, 0.0], [0.9, 0.0, 0.0]],
                                    dtype=np.float32))
    items, scores = sim.most_similar(matrix, [0, 1], k=2)
    assert items.tolist() == [[2, 1], [0, -1]]
    assert scores[1, 1] == -np.inf
    items, _ = sim.most_similar(matrix.toarray(), [1], k=2)
    assert 1 not in items[0]
    with pytest.raises(IndexError):
        sim.most_similar(matrix, [3], k=1)


def test_invalid_arguments() -> None:
    matrix = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match="unknown similarity"):
        sim.vector_similarity(matrix, "pearson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown co-rated"):
        sim.corated_similarity(matrix, "jaccard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        sim.vector_similarity(matrix, k=0)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_asymmetric_cosine_matches_definition(ratings: np.ndarray, alpha: float) -> None:
    """``x.y / (|x|^(2 alpha) |y|^(2 (1 - alpha)))``, ``x`` the row, ``y`` the neighbour."""
    got = sim.vector_similarity(sp.csr_matrix(ratings), "cosine", alpha=alpha).toarray()
    norms = np.linalg.norm(ratings, axis=1)
    den = norms[:, None] ** (2 * alpha) * norms[None, :] ** (2 * (1 - alpha))
    dots = ratings @ ratings.T
    expected = np.divide(dots, den, out=np.zeros_like(dots), where=dots > 0)
    np.fill_diagonal(expected, 0.0)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    if alpha != 0.5:
        assert not np.allclose(got, got.T)
    binary = (ratings != 0).astype(np.float64)
    conditional = sim.vector_similarity(sp.csr_matrix(binary), "cosine", alpha=0.0).toarray()
    support = binary.sum(1)
    both = binary @ binary.T
    expected = np.divide(both, support[None, :], out=np.zeros_like(both), where=both > 0)
    np.fill_diagonal(expected, 0.0)
    assert conditional == pytest.approx(expected, abs=1e-6)  # alpha=0: P(x | y)


def test_asymmetric_cosine_arguments(ratings: np.ndarray) -> None:
    with pytest.raises(ValueError, match="alpha must be in"):
        sim.vector_similarity(sp.csr_matrix(ratings), "cosine", alpha=1.5)
    with pytest.raises(ValueError, match="applies to similarity"):
        sim.vector_similarity(sp.csr_matrix(ratings), "dot", alpha=0.2)
