"""The synthetic generator: shape, validity, determinism, realism and learnability."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recforge.data import Interactions, synthetic
from recforge.data.movielens import AGE_BOUNDS, AGE_BUCKETS
from recforge.data.synthetic import (
    GENRES,
    OCCUPATIONS,
    SyntheticConfig,
    generate,
    generate_chunks,
    write_parquet,
)

SMALL = {"n_users": 300, "n_items": 200, "n_interactions": 6000, "seed": 3}


@pytest.fixture(scope="module")
def default_data() -> Interactions:
    return generate()


@pytest.fixture(scope="module")
def small() -> Interactions:
    return generate(**SMALL)


def test_counts_and_id_ranges(small: Interactions) -> None:
    assert len(small) == SMALL["n_interactions"]
    assert small.name == "synthetic"
    assert small.user_map.ids.tolist() == list(range(1, SMALL["n_users"] + 1))
    assert small.item_map.ids.tolist() == list(range(1, SMALL["n_items"] + 1))
    assert small.user_counts.min() >= SyntheticConfig().min_user_interactions
    cap = SyntheticConfig(**SMALL).max_user_interactions
    assert small.user_counts.max() <= cap


def test_ratings_are_integers_one_to_five(default_data: Interactions) -> None:
    values, shares = np.unique(default_data.ratings, return_counts=True)
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    shares = shares / shares.sum()
    assert shares[3] > shares[0] and shares[4] > shares[0]  # skewed to high ratings, like ML
    assert 3.2 < default_data.ratings.mean() < 3.9


def test_no_duplicate_user_item_pairs(default_data: Interactions) -> None:
    keys = default_data.users.astype(np.int64) * default_data.n_items + default_data.items
    assert len(np.unique(keys)) == len(default_data)


def test_same_seed_same_data_and_other_seed_differs() -> None:
    a, b = generate(**SMALL).to_pandas(), generate(**SMALL).to_pandas()
    pd.testing.assert_frame_equal(a, b)
    c = generate(**{**SMALL, "seed": 4}).to_pandas()
    assert not a[["user", "item"]].equals(c[["user", "item"]])


def test_same_data_in_another_process_with_one_thread() -> None:
    """Compiled kernels must not depend on thread count or compilation state."""
    script = ("import sys; from recforge.data.synthetic import generate; "
              f"generate(**{SMALL!r}).to_pandas().to_csv(sys.stdout, index=False)")
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stdout
    here = generate(**SMALL).to_pandas()
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out)), here, check_dtype=False)


def test_popularity_and_activity_are_skewed(default_data: Interactions) -> None:
    items = np.sort(default_data.item_counts)[::-1]
    assert items[: len(items) // 10].sum() > 0.4 * items.sum()
    users = default_data.user_counts
    assert users.max() > 5 * np.median(users)


def _hit_rates(data: Interactions, k: int = 10) -> dict[str, float]:
    """Recall@k (capped at k) of random, popularity and a rank-16 truncated SVD on a random
    20% per-interaction holdout, over users with held-out items."""
    rng = np.random.default_rng(0)
    test = rng.random(len(data)) < 0.2
    shape = (data.n_users, data.n_items)
    train = sp.csr_matrix((np.ones((~test).sum()), (data.users[~test], data.items[~test])), shape)
    held = sp.csr_matrix((np.ones(test.sum()), (data.users[test], data.items[test])), shape)
    _, _, vt = svds(train, k=16, random_state=0)
    scores = {
        "random": rng.random(shape),
        "popularity": np.tile(np.asarray(train.sum(axis=0)).ravel(), (shape[0], 1)),
        "svd": (train @ vt.T) @ vt,
    }
    n_held = np.asarray(held.sum(axis=1)).ravel()
    users = np.flatnonzero(n_held > 0)
    out = {}
    for name, score in scores.items():
        score = np.asarray(score, dtype=np.float64)
        score[train.nonzero()] = -np.inf
        top = np.argsort(-score[users], axis=1)[:, :k]
        hits = np.asarray(held[users[:, None], top].sum(axis=1)).ravel()
        out[name] = float(np.mean(hits / np.minimum(n_held[users], k)))
    return out


def test_learnable_popularity_beats_random_and_factors_beat_popularity(
        default_data: Interactions) -> None:
    rates = _hit_rates(default_data)
    assert rates["popularity"] > 5 * rates["random"]
    assert rates["svd"] > 1.3 * rates["popularity"]


STATIC = {"n_users": 2000, "n_items": 500, "n_interactions": 40_000, "activity_exponent": 0.0,
          "taste_drift": 0.0, "popularity_drift": 0.0, "novelty_boost": 0.0,
          "new_item_fraction": 0.0, "seed": 1}


def _sampler_error(head_items: int, monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """Relative L1 gap between generated item counts and the exact target (20 items per user
    drawn without replacement with weight popularity * exp(affinity * u.v), by Gumbel-top-k
    over the whole catalogue), and the ratio of the mean true affinity of the chosen items."""
    monkeypatch.setattr(synthetic, "_HEAD_ITEMS", head_items)
    data = generate(**STATIC)
    world = synthetic._World(SyntheticConfig(**STATIC))
    affinity = world.user_factors @ world.item_factors.T
    logits = world.log_popularity + world.config.affinity * affinity
    keys = logits + np.random.default_rng(0).gumbel(size=(4, *logits.shape))
    chosen = np.argpartition(-keys, 19, axis=2)[..., :20]
    target = np.bincount(chosen.ravel(), minlength=STATIC["n_items"]) / 4
    gap = np.abs(data.item_counts - target).sum() / target.sum()
    ratio = affinity[data.users, data.items].mean() / np.take_along_axis(
        affinity[None], chosen, axis=2).mean()
    return gap, ratio


def test_sampler_follows_the_latent_target(monkeypatch: pytest.MonkeyPatch) -> None:
    gap, ratio = _sampler_error(STATIC["n_items"], monkeypatch)
    assert gap < 0.15 and 0.95 < ratio < 1.05
    # a catalogue beyond the popularity head: the tail is drawn by popularity, then reweighted
    gap, ratio = _sampler_error(100, monkeypatch)
    assert gap < 0.35 and 0.7 < ratio < 1.05


def test_genres_track_co_consumption(default_data: Interactions) -> None:
    """Items sharing a genre are consumed by more similar users than items that share none
    (genres are drawn from the same latent vectors that drive the interactions)."""
    genres = default_data.item_features.multihot["genres"][1].toarray() > 0
    assert genres.any(axis=1).all()
    assert 1.2 < genres.sum(axis=1).mean() < 3.0
    x = default_data.item_user_csr.astype(np.float64)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    busy = np.flatnonzero(norms > 0)
    sims = (x[busy] @ x[busy].T).toarray() / np.outer(norms[busy], norms[busy])
    shared = (genres[busy].astype(int) @ genres[busy].T.astype(int)) > 0
    off_diag = ~np.eye(len(busy), dtype=bool)
    assert sims[shared & off_diag].mean() > 1.1 * sims[~shared].mean()


def test_side_tables(small: Interactions) -> None:
    items = small.item_features.to_pandas()
    assert len(items) == SMALL["n_items"]
    assert items["id"].tolist() == list(range(1, SMALL["n_items"] + 1))
    years = items["title"].str.extract(r"\((\d{4})\)$")[0].astype(int)
    assert (years == items["year"]).all()
    assert small.item_features.multihot["genres"][0] == list(GENRES)
    users = small.user_features.to_pandas()
    assert len(users) == SMALL["n_users"]
    assert set(users["gender"]) <= {"M", "F"} and set(users["occupation"]) <= set(OCCUPATIONS)
    expected = np.array(AGE_BUCKETS)[np.searchsorted(AGE_BOUNDS, users["age"], side="right")]
    assert (users["age_bucket"].to_numpy() == expected).all()


def test_interactions_follow_release_and_popularity_drifts(default_data: Interactions) -> None:
    year = default_data.item_features.numeric["year"][default_data.items]
    event_year = pd.to_datetime(default_data.timestamps, unit="s").year
    assert (event_year >= year).all()
    late = default_data.timestamps >= np.quantile(default_data.timestamps, 0.8)
    start_year = pd.Timestamp(SyntheticConfig().start).year
    new = year >= start_year
    assert new[late].mean() > 1.5 * new[~late].mean()  # new releases gain share over time


def test_chunks_do_not_change_the_data() -> None:
    whole = generate(**SMALL).to_pandas()
    for size in (70, 1000):
        chunks = list(generate_chunks(chunk_users=size, **SMALL))
        assert len(chunks) == -(-SMALL["n_users"] // size)
        for chunk in chunks:
            assert chunk["user"].nunique() <= size
        joined = pd.concat(chunks, ignore_index=True)
        pd.testing.assert_frame_equal(joined[whole.columns], whole, check_dtype=False)


def test_write_parquet_round_trips(tmp_path) -> None:
    path = write_parquet(tmp_path / "syn.parquet", chunk_users=100, **SMALL)
    back = Interactions.from_parquet(str(path), duplicates="error")
    data = generate(**SMALL)
    assert np.array_equal(back.user_map.ids[back.users], data.user_map.ids[data.users])
    assert np.array_equal(back.item_map.ids[back.items], data.item_map.ids[data.items])
    assert np.array_equal(back.ratings, data.ratings)
    assert np.array_equal(back.timestamps, data.timestamps)
    assert [p.name for p in tmp_path.iterdir()] == ["syn.parquet"]  # no temporary left


def test_implicit_feedback_and_counts() -> None:
    implicit = generate(**SMALL, feedback="implicit")
    assert implicit.ratings is None and implicit.weights is None
    assert np.array_equal(implicit.items, generate(**SMALL).items)
    counted = generate(**SMALL, feedback="implicit", counts=True)
    assert counted.weights.min() >= 1 and counted.weights.max() > 1


def test_heavy_users_on_a_small_catalogue_get_distinct_items() -> None:
    data = generate(n_users=20, n_items=60, n_interactions=20 * 24, new_item_fraction=0.0,
                    seed=5)
    assert data.user_counts.max() == 30  # half the catalogue, the cap
    keys = data.users.astype(np.int64) * data.n_items + data.items
    assert len(np.unique(keys)) == len(data)


@pytest.mark.parametrize("kwargs, match", [
    ({"feedback": "stars"}, "feedback"),
    ({"n_items": 8}, "too small"),
    ({"n_interactions": 10}, "between"),
    ({"start": "not a date"}, "start"),
    ({"counts": True}, "implicit"),
    ({"n_genres": 40}, "n_genres"),
])
def test_bad_parameters_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_users"):
        next(generate_chunks(chunk_users=0, **SMALL))
