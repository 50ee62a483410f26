"""FeatureCodec: each field kind's encoding of seen, unseen and missing values, sizes,
design matrices and persistence without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.codec import FeatureCodec, Field
from recforge.data.features import SideTable
from recforge.errors import CorruptFileError, InputError, ParameterError

TRAIN = pd.DataFrame({
    "city": ["paris", "rome", "paris", None, "oslo"],
    "zip": ["75001", "00100", "75002", "75003", None],
    "age": [20.0, 30.0, np.nan, 40.0, 30.0],
    "tags": ["a|b", "b", "", None, "c|a"],
    "history": [["x", "y"], ["y"], [], ["z", "x", "y"], ["x"]],
})
NEW = pd.DataFrame({
    "city": ["rome", "berlin", None],
    "zip": ["75999", "99999", None],
    "age": [30.0, np.nan, 1e6],
    "tags": ["b|zzz", None, "a|a"],
    "history": [["x", "unknown", "y", "z"], [], ["z"]],
})
FIELDS = [Field("city", "categorical"), Field("region", "categorical", column="zip", prefix=2),
          Field("city_hash", "hashed", column="city", buckets=7), Field("age", "numeric"),
          Field("age_bin", "bucketised", column="age", bins=2), Field("tags", "multihot"),
          Field("history", "sequence", max_length=3)]


@pytest.fixture()
def codec() -> FeatureCodec:
    return FeatureCodec(FIELDS).fit(TRAIN)


def test_categorical_sorted_vocabulary_with_zero_for_missing_and_unseen(
        codec: FeatureCodec) -> None:
    out = codec.transform(NEW)
    # vocabulary: oslo 1, paris 2, rome 3
    assert out["city"].tolist() == [3, 0, 0]
    # regions: 00 -> 1, 75 -> 2
    assert out["region"].tolist() == [2, 0, 0]
    assert codec.sizes()["city"] == 4 and codec.sizes()["region"] == 3


def test_min_count_sends_rare_categories_to_the_unknown_index() -> None:
    codec = FeatureCodec([Field("city", "categorical", min_count=2)]).fit(TRAIN)
    assert codec.transform(TRAIN)["city"].tolist() == [1, 0, 1, 0, 0]


def test_hashed_is_stable_in_range_and_zero_for_missing(codec: FeatureCodec) -> None:
    first = codec.transform(TRAIN)["city_hash"]
    again = FeatureCodec(FIELDS).fit(NEW).transform(TRAIN)["city_hash"]
    assert np.array_equal(first, again)  # nothing learned: any fit gives the same buckets
    assert first[3] == 0 and ((first[[0, 1, 2, 4]] >= 1) & (first[[0, 1, 2, 4]] <= 7)).all()
    assert first[0] == first[2]


def test_numeric_is_standardised_by_training_statistics(codec: FeatureCodec) -> None:
    finite = np.array([20.0, 30.0, 40.0, 30.0])
    values = codec.transform(NEW)["age"]
    assert values[0] == pytest.approx((30 - finite.mean()) / finite.std())
    assert values[1] == 0.0  # missing: the mean
    assert values.dtype == np.float32


def test_constant_numeric_column_does_not_divide_by_zero() -> None:
    codec = FeatureCodec([Field("x", "numeric")]).fit({"x": np.ones(4)})
    assert codec.transform({"x": np.array([1.0, 3.0])})["x"].tolist() == [0.0, 2.0]


def test_numbers_read_as_text_and_garbage_do_not_crash() -> None:
    codec = FeatureCodec([Field("x", "numeric"), Field("b", "bucketised", column="x",
                                                       bins=2)])
    codec.fit({"x": np.array(["1", "3", "abc", None, ""], dtype=object)})
    assert codec.state["x"] == {"mean": 2.0, "std": 1.0}
    out = codec.transform({"x": np.array(["3", "inf", None], dtype=object)})
    assert out["x"].tolist() == [1.0, 0.0, 0.0] and out["b"].tolist() == [2, 0, 0]


def test_bucketised_uses_training_quantiles(codec: FeatureCodec) -> None:
    # median of 20, 30, 40, 30 is 30: bins (-inf, 30) -> 1 and [30, inf) -> 2
    assert codec.state["age_bin"]["boundaries"] == [30.0]
    assert codec.transform(NEW)["age_bin"].tolist() == [2, 0, 2]
    assert codec.transform(TRAIN)["age_bin"].tolist() == [1, 2, 0, 2, 2]


def test_multihot_from_strings_lists_and_side_table_agree(codec: FeatureCodec) -> None:
    expected = [[0, 1, 0], [0, 0, 0], [1, 0, 0]]  # labels a, b, c; 'zzz' is dropped
    assert codec.transform(NEW)["tags"].toarray().tolist() == expected
    lists = pd.DataFrame({"tags": [["b", "zzz"], None, ["a"]]})
    assert codec.transform(lists)["tags"].toarray().tolist() == expected
    table = SideTable([1, 2, 3], multihot={"tags": (["b", "a", "zzz"],
                                                    np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]]))})
    assert codec.transform(table)["tags"].toarray().tolist() == expected


def test_sequence_keeps_the_last_known_tokens_left_padded(codec: FeatureCodec) -> None:
    # vocabulary: x 1, y 2, z 3
    assert codec.transform(NEW)["history"].tolist() == [[1, 2, 3], [0, 0, 0], [0, 0, 3]]
    joined = pd.DataFrame({"history": ["x|unknown|y|z", "", "z"]})
    assert codec.transform(joined)["history"].tolist() == [[1, 2, 3], [0, 0, 0], [0, 0, 3]]


def test_absent_columns_encode_as_unknown(codec: FeatureCodec) -> None:
    out = codec.transform({"city": np.array(["paris", "oslo"])})
    assert out["city"].tolist() == [2, 1]
    assert out["region"].tolist() == [0, 0] and out["age"].tolist() == [0.0, 0.0]
    assert out["tags"].nnz == 0 and out["history"].tolist() == [[0, 0, 0]] * 2
    indices, dense = codec.index_and_dense(None, n_rows=2)
    assert indices.shape == (2, 4) and not indices.any() and dense.shape == (2, 1 + 3)


def test_design_matrix_columns_match_feature_names(codec: FeatureCodec) -> None:
    matrix = codec.design_matrix(NEW)
    names = codec.feature_names()
    assert matrix.shape == (3, len(names))
    row = dict(zip(names, matrix.toarray()[0]))
    assert row["city=rome"] == 1 and row["region=75"] == 1 and row["tags=b"] == 1
    assert row["history=x"] == row["history=y"] == row["history=z"] == 1
    assert row["city=?"] == 0 and row["age_bin#2"] == 1
    # one-hot blocks: exactly one 1 per index-valued field and row
    one_hot = [n for n in names if n.split("=")[0].split("#")[0] in ("city", "region",
                                                                      "city_hash", "age_bin")]
    assert (matrix.toarray()[:, [names.index(n) for n in one_hot]].sum(1) == 4).all()


def test_embedding_sizes_follow_the_declarations(codec: FeatureCodec) -> None:
    codec2 = FeatureCodec([Field("city", "categorical", embedding_dim=5),
                           Field("zip", "hashed", buckets=99)]).fit(TRAIN)
    sizes = codec2.embedding_sizes()
    assert sizes["city"] == (4, 5)
    assert sizes["zip"] == (100, round(6 * 100 ** 0.25))
    assert codec2.embedding_sizes(default_dim=8)["zip"] == (100, 8)


def test_save_and_load_without_pickle(codec: FeatureCodec, tmp_path: Path) -> None:
    folder = codec.save(tmp_path / "codec")
    with np.load(folder / "vocabularies.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    loaded = FeatureCodec.load(folder)
    for name, value in codec.transform(NEW).items():
        other = loaded.transform(NEW)[name]
        assert (other != value).nnz == 0 if hasattr(value, "nnz") else np.array_equal(other,
                                                                                      value)
    round_trip = FeatureCodec.from_dict(json.loads(json.dumps(codec.to_dict())))
    assert np.array_equal(round_trip.design_matrix(NEW).toarray(),
                          codec.design_matrix(NEW).toarray())


def test_tampered_or_malformed_codecs_are_refused(codec: FeatureCodec, tmp_path: Path) -> None:
    folder = codec.save(tmp_path / "codec")
    text = (folder / "codec.json").read_text()
    (folder / "codec.json").write_text(text.replace('"numeric"', '"numerik"'))
    with pytest.raises(CorruptFileError, match="codec.json"):
        FeatureCodec.load(folder)
    bad = codec.to_dict()
    bad["state"]["age"]["std"] = 0.0
    with pytest.raises(CorruptFileError, match="std"):
        FeatureCodec.from_dict(bad)


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "a", "kind": "categorial"}, "a.kind"),
    ({"name": "a", "kind": "hashed", "buckets": 0}, "a.buckets"),
    ({"name": "a", "kind": "sequence", "max_length": 1.5}, "a.max_length"),
    ({"name": "a", "kind": "bucketised", "bins": 1}, "a.bins"),
])
def test_bad_declarations_name_the_field_and_option(spec: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        Field(**spec)


def test_duplicate_fields_and_unfitted_use_are_errors() -> None:
    with pytest.raises(ParameterError, match="twice"):
        FeatureCodec([Field("a", "numeric"), Field("a", "hashed")])
    with pytest.raises(InputError, match="not fitted"):
        FeatureCodec([Field("a", "numeric")]).transform(TRAIN)
    with pytest.raises(InputError, match="disagree"):
        FeatureCodec([Field("a", "numeric")]).fit({"a": [1.0, 2.0], "b": [1.0]})
