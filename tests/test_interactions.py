"""Interactions, IdMap and SideTable behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data import IdMap, Interactions, SideTable


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "user": [10, 10, 20, 20, 30, 10],
        "item": ["b", "a", "a", "c", "c", "b"],
        "rating": [4.0, 3.0, 5.0, 2.0, 1.0, 5.0],
        "timestamp": [1, 2, 3, 4, 5, 0],
    })


def test_id_maps_are_sorted_and_bidirectional() -> None:
    data = Interactions.from_pandas(frame())
    assert data.user_map.ids.tolist() == [10, 20, 30]
    assert data.item_map.ids.tolist() == ["a", "b", "c"]
    assert data.user_map.to_index([30, 99]).tolist() == [2, -1]
    assert data.item_map.to_external([2, 0]).tolist() == ["c", "a"]
    with pytest.raises(KeyError, match="unknown ids"):
        data.user_map.to_index([99], missing="raise")


def test_duplicates_keep_latest_by_timestamp() -> None:
    data = Interactions.from_pandas(frame())
    assert len(data) == 5
    out = data.to_pandas().set_index(["user", "item"])
    assert out.loc[(10, "b"), "rating"] == 4.0  # timestamp 1 beats the later row at 0


def test_duplicate_policies() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Interactions.from_pandas(frame(), duplicates="error")
    summed = Interactions.from_pandas(frame(), duplicates="sum").to_pandas()
    assert summed.set_index(["user", "item"]).loc[(10, "b"), "rating"] == 9.0
    assert len(Interactions.from_pandas(frame(), duplicates="keep")) == 6


def test_csr_views_are_cached_and_consistent() -> None:
    data = Interactions.from_pandas(frame())
    assert data.csr is data.csr
    dense = data.csr.toarray()
    assert dense.shape == (3, 3)
    assert dense[0].tolist() == [3.0, 4.0, 0.0]
    assert np.array_equal(data.item_user_csr.toarray(), dense.T)
    assert data.binary_csr.sum() == len(data)
    assert data.user_counts.tolist() == [2, 2, 1]
    assert data.item_counts.tolist() == [2, 1, 2]


def test_bad_ratings_are_reported() -> None:
    bad = frame()
    bad.loc[3, "rating"] = np.nan
    with pytest.raises(ValueError, match="non-finite ratings .*row 3"):
        Interactions.from_pandas(bad, source="log.csv")
    with pytest.raises(ValueError, match=r"outside \[1, 4\]"):
        Interactions.from_pandas(frame(), rating_range=(1, 4))
    with pytest.raises(ValueError, match="empty"):
        Interactions.from_pandas(frame().iloc[:0])
    with pytest.raises(KeyError, match="missing column 'usr'"):
        Interactions.from_pandas(frame(), user="usr")


def test_subset_keeps_id_space_and_compact_drops_unused() -> None:
    data = Interactions.from_pandas(frame())
    part = data.subset(data.users == 0)
    assert part.n_users == 3 and len(part) == 2
    small = part.compact()
    assert small.n_users == 1 and small.n_items == 2
    assert small.item_map.ids.tolist() == ["a", "b"]


def test_k_core_and_filter() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 50, 400), "item": rng.integers(0, 80, 400)})
    core = Interactions.from_pandas(df).k_core(3)
    assert core.user_counts.min() >= 3 and core.item_counts.min() >= 3
    with pytest.raises(ValueError, match="no interactions survive"):
        Interactions.from_pandas(df).k_core(1000)


def test_to_implicit_threshold() -> None:
    data = Interactions.from_pandas(frame()).to_implicit(threshold=4)
    assert data.ratings is None and len(data) == 2
    assert data.csr.data.tolist() == [1.0, 1.0]


def test_universe_includes_unrated_items() -> None:
    data = Interactions.from_pandas(frame(), item_ids=["a", "b", "c", "d"])
    assert data.n_items == 4 and data.item_counts[3] == 0
    with pytest.raises(ValueError, match="not in the given universe"):
        Interactions.from_pandas(frame(), item_ids=["a", "b"])


def test_parquet_and_arrow_round_trip(tmp_path) -> None:
    data = Interactions.from_pandas(frame())
    data.to_parquet(tmp_path / "x.parquet")
    back = Interactions.from_parquet(tmp_path / "x.parquet")
    pd.testing.assert_frame_equal(back.to_pandas(), data.to_pandas())
    again = Interactions.from_arrow(data.to_arrow())
    assert np.array_equal(again.csr.toarray(), data.csr.toarray())


def test_datetime_timestamps_become_epoch_seconds() -> None:
    df = frame().assign(timestamp=pd.to_datetime(["2020-01-01"] * 6) + pd.to_timedelta(
        np.arange(6), unit="s"))
    data = Interactions.from_pandas(df, duplicates="keep")
    assert data.timestamps[0] == 1577836800


def test_side_table_align_and_multihot() -> None:
    table = SideTable.from_pandas(
        pd.DataFrame({"id": ["c", "a"], "genres": ["Drama|Comedy", "Comedy"],
                      "year": [1999, None], "title": ["C", "A"]}),
        "id", numeric=["year"], multihot={"genres": ("genres", "|")}, text=["title"])
    data = Interactions.from_pandas(frame(), item_features=table)
    feats = data.item_features
    assert feats.ids.tolist() == ["a", "b", "c"]
    assert feats.text["title"].tolist() == ["A", None, "C"]
    assert np.isnan(feats.numeric["year"][0]) and feats.numeric["year"][2] == 1999
    labels, matrix = feats.multihot["genres"]
    assert labels == ["Comedy", "Drama"]
    assert matrix.toarray().tolist() == [[1, 0], [0, 0], [1, 1]]
    assert "genres:Drama" in feats.to_pandas().columns


def test_idmap_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="unique"):
        IdMap(["a", "a"])
