"""recforge.retrieval: indexes (exact and FAISS), exclusion, persistence, the Retriever, CLI."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

from recforge.cli import main
from recforge.data import Interactions
from recforge.models import create_model
from recforge.retrieval import (
    ExactIndex,
    FaissIndex,
    FaissUnavailableError,
    Retriever,
    load_index,
    make_index,
)
from recforge.retrieval.index import default_nlist
from recforge.retrieval.retriever import load_retriever
from recforge.retrieval.synthetic import clustered_catalogue
from recforge.testing import contract_data


def _brute_top(items: np.ndarray, queries: np.ndarray, k: int,
               exclude: list[np.ndarray] | None = None) -> np.ndarray:
    """Reference top-k: full sort by (score desc, index asc) after masking exclusions."""
    scores = (queries @ items.T).astype(np.float64)
    for r, row in enumerate(exclude or []):
        scores[r, row] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(len(items)), scores.shape), -scores), axis=1)
    return order[:, :k]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a, b)) / len(b) for a, b in zip(found, truth)]))


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """FAISS's OpenMP k-means crawls on a busy machine; one thread keeps the tests fast."""
    try:
        import faiss
    except ImportError:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


@pytest.fixture(scope="module")
def catalogue():
    return clustered_catalogue(4000, n_users=60, dim=16, clusters=40, seen_mean=20, seed=1)


@pytest.fixture(scope="module")
def exclusions(catalogue) -> list[np.ndarray]:
    seen = catalogue.seen
    return [seen.indices[seen.indptr[u]:seen.indptr[u + 1]] for u in range(seen.shape[0])]


# ---------------------------------------------------------------------- exact index
def test_exact_index_is_the_brute_force_top_k(catalogue, exclusions) -> None:
    index = ExactIndex().build(catalogue.items)
    ids, scores = index.search(catalogue.users, 10, exclude=exclusions)
    assert np.array_equal(ids, _brute_top(catalogue.items, catalogue.users, 10, exclusions))
    expected = np.take_along_axis(catalogue.users @ catalogue.items.T, ids, 1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert not any(np.isin(row, ex).any() for row, ex in zip(ids, exclusions))


def test_ties_go_to_the_lower_id_and_short_rows_are_padded() -> None:
    index = ExactIndex().build(np.ones((5, 2), dtype=np.float32))
    ids, scores = index.search(np.ones((1, 2)), 4, exclude=[[0, 2]])
    assert ids.tolist() == [[1, 3, 4, -1]]
    assert scores[0, 3] == -np.inf and np.all(scores[0, :3] == 2.0)


def test_exclusion_of_most_items_keeps_the_exact_remainder() -> None:
    rng = np.random.default_rng(0)
    items, queries = rng.standard_normal((100, 8)), rng.standard_normal((3, 8))
    exclude = [rng.choice(100, size=s, replace=False) for s in (95, 0, 60)]
    ids, _ = ExactIndex().build(items).search(queries, 10, exclude=exclude)
    truth = _brute_top(items.astype(np.float32), queries.astype(np.float32), 10, exclude)
    assert ids[0, :5].tolist() == truth[0, :5].tolist() and (ids[0, 5:] == -1).all()
    assert np.array_equal(ids[1:], truth[1:])


def test_custom_ids_and_add_equal_one_build(catalogue) -> None:
    items = catalogue.items
    ids = np.arange(len(items)) * 7 + 1000
    whole = ExactIndex().build(items, ids)
    parts = ExactIndex().build(items[:1000], ids[:1000]).add(items[1000:], ids[1000:])
    assert len(parts) == len(items)
    exclude = [ids[:50]] * len(catalogue.users)
    for a, b in zip(whole.search(catalogue.users, 10, exclude), parts.search(catalogue.users, 10, exclude)):
        assert np.array_equal(a, b)
    found, _ = whole.search(catalogue.users, 10, exclude)
    assert np.isin(found, ids).all() and not np.isin(found, ids[:50]).any()


@pytest.mark.parametrize(("call", "message"), [
    (lambda ix: ix.search(np.ones((1, 3)), 5), "dimension 3"),
    (lambda ix: ix.search(np.ones((1, 4)), 0), "k must be at least 1"),
    (lambda ix: ix.add(np.ones((2, 5))), "dimension 5"),
    (lambda ix: ix.add(np.ones((2, 4)), ids=[1]), "1 ids for 2 vectors"),
    (lambda ix: ix.search(np.ones((2, 4)), 5, exclude=[[1]]), "exclude has 1 rows for 2"),
    (lambda ix: ix.build(np.full((2, 4), np.nan)), "NaN"),
    (lambda ix: ix.build(np.ones(4)), "2-d"),
])
def test_bad_input_raises_a_clear_error(call, message: str) -> None:
    index = ExactIndex().build(np.ones((10, 4)))
    with pytest.raises(ValueError, match=message):
        call(index)


def test_empty_index_and_unknown_kind() -> None:
    with pytest.raises(ValueError, match="empty"):
        ExactIndex().search(np.ones((1, 4)), 3)
    with pytest.raises(ValueError, match="unknown index kind 'annoy'"):
        make_index("annoy")
    with pytest.raises(ValueError, match="takes no settings"):
        make_index("exact", nprobe=3)


def test_auto_is_exact_for_small_catalogues_and_ivf_for_large() -> None:
    assert isinstance(make_index("auto", 1682), ExactIndex)
    require_module("faiss")
    large = make_index("auto", 1_000_000)
    assert large.kind == "ivf-flat"
    large.build(np.random.default_rng(0).standard_normal((2000, 4)))
    assert large.settings()["nprobe"] == large.settings()["nlist"] // 16


def test_without_faiss_auto_falls_back_and_named_kinds_fail(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with caplog.at_level(logging.WARNING, logger="recforge.retrieval.index"):
        index = make_index("auto", 2_000_000)
    assert isinstance(index, ExactIndex)
    assert "faiss is not installed" in caplog.text
    with pytest.raises(FaissUnavailableError, match="pip install 'recforge\\[ann\\]'"):
        make_index("hnsw")


def test_default_nlist() -> None:
    assert default_nlist(1_000_000) == 1024
    assert default_nlist(1682) == 32
    assert default_nlist(10) == 1


# ---------------------------------------------------------------------- FAISS kinds
FAISS_CASES = [
    ("flat", {}, 1.0),
    ("ivf-flat", {"nlist": 16, "nprobe": 16}, 1.0),  # every list probed: exact
    ("ivf-flat", {"nlist": 16, "nprobe": 4}, 0.9),
    ("ivf-pq", {"nlist": 16, "nprobe": 16, "pq_m": 8, "pq_bits": 6, "refine": 10}, 0.95),
    ("hnsw", {"m": 16, "ef_search": 128}, 0.9),  # inner-product graphs miss some hub items
]


@pytest.mark.parametrize(("kind", "settings", "min_recall"), FAISS_CASES)
def test_faiss_kinds_reach_their_recall(catalogue, exclusions, kind: str, settings: dict,
                                        min_recall: float) -> None:
    require_module("faiss")
    index = make_index(kind, **settings).build(catalogue.items)
    ids, scores = index.search(catalogue.users, 10, exclude=exclusions)
    truth = _brute_top(catalogue.items, catalogue.users, 10, exclusions)
    assert _recall(ids, truth) >= min_recall
    assert not any(np.isin(row, ex).any() for row, ex in zip(ids, exclusions))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    if min_recall == 1.0:
        assert np.array_equal(np.sort(ids, 1), np.sort(truth, 1))


def test_ivf_pq_without_refinement_is_approximate(catalogue) -> None:
    require_module("faiss")
    index = make_index("ivf-pq", nlist=16, nprobe=16, pq_m=4, pq_bits=6).build(catalogue.items)
    ids, _ = index.search(catalogue.users, 10)
    recall = _recall(ids, _brute_top(catalogue.items, catalogue.users, 10))
    assert 0.2 < recall < 0.95  # 4-byte codes lose information; refinement recovers it


@pytest.mark.parametrize("kind", ["exact", "flat", "ivf-flat", "ivf-pq", "hnsw"])
def test_save_load_round_trip_is_identical(tmp_path: Path, catalogue, exclusions,
                                           kind: str) -> None:
    if kind != "exact":
        require_module("faiss")
    settings = {"ivf-flat": {"nlist": 32, "nprobe": 3},
                "ivf-pq": {"nlist": 32, "nprobe": 4, "pq_m": 4, "pq_bits": 6, "refine": 2},
                "hnsw": {"m": 8, "ef_search": 20}}.get(kind, {})
    ids = np.arange(len(catalogue.items)) + 10
    index = make_index(kind, **settings).build(catalogue.items, ids)
    before = index.search(catalogue.users, 10, exclude=[e + 10 for e in exclusions])
    index.save(tmp_path / "ix")
    loaded = load_index(tmp_path / "ix")
    after = loaded.search(catalogue.users, 10, exclude=[e + 10 for e in exclusions])
    assert loaded.kind == kind and loaded.settings() == index.settings() and len(loaded) == len(index)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers
    assert {p.name for p in (tmp_path / "ix").iterdir()} <= {
        ".recforge.json", "index.json", "ids.npy", "vectors.npy", "index.faiss"}


def test_seeded_ivf_training_is_reproducible(catalogue) -> None:
    require_module("faiss")
    runs = [FaissIndex("ivf-pq", nlist=32, nprobe=2, pq_m=4, pq_bits=6, seed=3).build(catalogue.items)
            .search(catalogue.users, 10) for _ in range(2)]
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])


def test_faiss_knob_errors() -> None:
    require_module("faiss")
    with pytest.raises(ValueError, match="nprobe must be a positive integer"):
        FaissIndex("ivf-flat", nprobe=0)
    with pytest.raises(ValueError, match="unknown FAISS index kind"):
        FaissIndex("lsh")
    with pytest.raises(ValueError, match="pq_m=5 must divide"):
        FaissIndex("ivf-pq", nlist=4, pq_m=5).build(np.ones((400, 16)))
    index = FaissIndex("hnsw").build(np.eye(4))
    assert index.tune(ef_search=7).settings()["ef_search"] == 7


# ---------------------------------------------------------------------- retrieval factorisation
@pytest.fixture(scope="module")
def data() -> Interactions:
    return contract_data()


@pytest.mark.parametrize(("name", "params"), [
    ("ials", {"factors": 8, "epochs": 3}), ("bpr", {"factors": 8, "epochs": 3}),
    ("dot-mf", {"factors": 8, "epochs": 1}), ("gmf", {"factors": 8, "epochs": 1}),
])
def test_embeddings_reproduce_the_scores(data: Interactions, name: str, params: dict) -> None:
    model = create_model(name, seed=0, **params).fit(data)
    users = np.arange(model.n_users_)
    product = model.user_embeddings(users) @ model.item_embeddings().T
    np.testing.assert_allclose(product, model.score(users), rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError):
        model.user_embeddings([model.n_users_])


@pytest.mark.parametrize("name", ["mlp", "ease"])
def test_models_whose_scores_do_not_factorise_have_no_embeddings(data: Interactions,
                                                                  name: str) -> None:
    params = {"epochs": 1, "seed": 0} if name == "mlp" else {}
    model = create_model(name, **params).fit(data)
    assert model.user_embeddings([0]) is None and model.item_embeddings() is None


# ---------------------------------------------------------------------- Retriever
@pytest.fixture(scope="module", params=["ials", "bpr"])
def fitted(request, data: Interactions):
    return create_model(request.param, factors=8, epochs=4, seed=0).fit(data)


def test_retriever_matches_model_recommend(fitted, data: Interactions) -> None:
    retriever = Retriever.from_data(fitted, data, index_kind="exact")
    for exclude_seen in (True, False):
        expected, scores = fitted.recommend(np.arange(fitted.n_users_), 7, exclude_seen)
        for u, external in enumerate(data.user_map.ids):
            answer = retriever.recommend(external, 7, exclude_seen=exclude_seen)
            assert answer.source == ("index" if fitted.is_known_user([u])[0] else "popularity")
            assert answer.items.tolist() == expected[u][expected[u] >= 0].tolist()
            assert answer.ids.tolist() == data.item_map.to_external(answer.items).tolist()
            np.testing.assert_allclose(answer.scores, scores[u][:len(answer)], rtol=1e-5)


def test_unknown_users_get_popular_items(fitted, data: Interactions) -> None:
    retriever = Retriever.from_data(fitted, data)
    answer = retriever.recommend("no-such-user", 5)
    expected, _ = fitted.recommend([-1], 5)
    assert answer.source == "popularity" and answer.items.tolist() == expected[0].tolist()


def test_similar_matches_similar_items(fitted, data: Interactions) -> None:
    retriever = Retriever.from_data(fitted, data)
    expected, _ = fitted.similar_items([3], 6)
    answer = retriever.similar(data.item_map.ids[3], 6)
    assert answer.items.tolist() == expected[0].tolist()
    with pytest.raises(KeyError, match="unknown item id"):
        retriever.similar(10_000)


def test_recommend_for_uses_the_encoder_or_popularity(fitted, data: Interactions) -> None:
    seen = fitted.training_history([5]).history(0)
    calls = []

    def encoder(features, history):
        calls.append(history)
        return fitted.user_embeddings([5])

    retriever = Retriever.from_data(fitted, data, encoder=encoder)
    answer = retriever.recommend_for(history=data.item_map.ids[seen], k=5)
    assert answer.source == "encoder" and np.array_equal(calls[0][0], seen)
    assert answer.items.tolist() == retriever.recommend(data.user_map.ids[5], 5).items.tolist()
    plain = Retriever.from_data(fitted, data).recommend_for(history=data.item_map.ids[seen], k=5)
    expected, _ = fitted.recommend([-1], 5 + len(seen), exclude_seen=False)
    assert plain.source == "popularity"
    assert plain.items.tolist() == [i for i in expected[0] if i not in seen][:5]


def test_models_without_embeddings_use_their_own_ranking(data: Interactions) -> None:
    model = create_model("ease").fit(data)
    retriever = Retriever(model)
    assert retriever.index is None
    answer = retriever.recommend(4, 5)
    assert answer.source == "model" and answer.items.tolist() == model.recommend([4], 5)[0][0].tolist()
    similar = retriever.similar(0, 4)  # EASE's own item-item weights
    expected_items, expected_scores = model.similar_items([0], 4)
    assert similar.source == "model" and similar.items.tolist() == expected_items[0].tolist()
    assert similar.scores.tolist() == pytest.approx(expected_scores[0].tolist())
    with pytest.raises(ValueError, match="neither item vectors nor an item-item similarity"):
        Retriever(create_model("most-popular").fit(data)).similar(0)


def test_retriever_bad_input(fitted) -> None:
    retriever = Retriever(fitted)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        retriever.recommend(0, k=0)
    with pytest.raises(ValueError, match="titles for"):
        Retriever(fitted, titles=["a"])
    assert retriever.recommend(10**6, 3).source == "popularity"  # out of range: cold start


# ---------------------------------------------------------------------- command line
def _json_out(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def fake_resolved(fake_ml100k: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake ML-100K folder, found by the loader without checksum verification."""
    monkeypatch.setattr("recforge.data.movielens.resolve_dataset", lambda *args: fake_ml100k)
    return fake_ml100k


def test_cli_train_recommend_similar_on_fake_ml100k(fake_resolved: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "model"
    assert main(["train", "--dataset", "ml-100k", "--model", "ials", "--param", "factors=2",
                 "--param", "epochs=2", "--out", str(out)]) == 0
    rec = _json_out(capsys, ["recommend", "--model", str(out), "--user", "3", "-k", "2", "--json"])
    assert rec["user"] == 3 and rec["source"] == "index"
    # user 3 rated movies 1 and 2; movie 3 is called "unknown" in the fake u.item
    assert {r["id"]: r["title"] for r in rec["items"]} == {3: "unknown", 4: "Unrated Film (1998)"}
    sim = _json_out(capsys, ["similar", "--model", str(out), "--item", "1", "--json"])
    assert {r["id"] for r in sim["items"]} == {2, 3, 4}
    assert sim["items"][[r["id"] for r in sim["items"]].index(2)]["title"] == "Misérables, Les (1995)"
    cold = _json_out(capsys, ["recommend", "--model", str(out), "--user", "77", "--json"])
    assert cold["source"] == "popularity"
    for argv, message in ((["similar", "--model", str(out), "--item", "99"], "unknown item id 99"),
                          (["recommend", "--model", str(out), "--user", "1", "-k", "0"], "-k"),
                          (["recommend", "--model", str(tmp_path), "--user", "1"], "no model.json")):
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_cli_dataset_supplies_ids_for_a_model_saved_from_python(
        fake_resolved: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from recforge.data.movielens import load_ml100k

    data = load_ml100k()
    create_model("bpr", factors=2, epochs=2, seed=0).fit(data).save(tmp_path / "bpr")
    argv = ["recommend", "--model", str(tmp_path / "bpr"), "--user", "1", "--json",
            "--dataset", "ml-100k"]
    rec = _json_out(capsys, argv)
    assert [r["id"] for r in rec["items"]] == [4]
    assert rec["items"][0]["title"] == "Unrated Film (1998)"
    assert load_retriever(tmp_path / "bpr").item_map is None  # no catalogue: internal ids


def test_cli_recommend_on_ml100k(ml100k_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ials"
    assert main(["train", "--dataset", "ml-100k", "--data-dir", str(ml100k_dir), "--model", "ials",
                 "--out", str(out)]) == 0
    rec = _json_out(capsys, ["recommend", "--model", str(out), "--user", "42", "--json"])
    assert len(rec["items"]) == 10 and all(r["title"] for r in rec["items"])
    retriever = load_retriever(out)
    internal = retriever.item_map.to_index([r["id"] for r in rec["items"]])
    user = retriever.user_map.to_index([42])[0]
    assert not set(internal) & set(retriever.model.training_history([user]).history(0))
    sim = _json_out(capsys, ["similar", "--model", str(out), "--item", "50", "--json"])
    assert 50 not in [r["id"] for r in sim["items"]] and len(sim["items"]) == 10


# ---------------------------------------------------------------------- synthetic catalogue
def test_clustered_catalogue_is_seeded_and_shaped() -> None:
    a = clustered_catalogue(3000, n_users=100, dim=8, clusters=30, seen_mean=10, seed=4)
    b = clustered_catalogue(3000, n_users=100, dim=8, clusters=30, seen_mean=10, seed=4)
    assert a.items.shape == (3000, 8) and a.users.shape == (100, 8)
    assert np.array_equal(a.items, b.items) and (a.seen != b.seen).nnz == 0
    assert 7 < a.seen.getnnz(axis=1).mean() <= 10.5 and set(np.unique(a.seen.data)) == {1.0}
    sizes = np.bincount(a.item_cluster, minlength=30)
    assert sizes.max() > 4 * np.median(sizes)  # power-law cluster sizes, not uniform
    with pytest.raises(ValueError, match="positive"):
        clustered_catalogue(0)
