"""Bad command-line input and bad data files: one explicit line (exit 2), never a traceback,
never a silent wrong answer (issue 10, "Hardening")."""

from __future__ import annotations

import json
import re
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.cli import main
from recforge.cli.common import parse_id, parse_metrics
from recforge.data.interactions import IdMap, Interactions, external_ids
from recforge.data.readers import (
    DataFormatError,
    RatingScaleWarning,
    parse_column_spec,
    read_interactions,
)
from recforge.errors import InputError, ParameterError, UnknownNameError
from recforge.evaluation import Evaluator
from recforge.evaluation.metrics import parse_metric
from recforge.experiments import runner
from recforge.experiments.config import parse_experiment
from recforge.experiments.steps import load_data
from recforge.models import MostPopular
from recforge.models.registry import create_model
from recforge.retrieval.retriever import Retriever

RATINGS = """user,item,rating,timestamp
1,10,5,100
1,11,3,101
1,12,4,102
2,10,4,103
2,13,2,104
2,11,5,105
3,12,1,106
3,13,4,107
3,10,3,108
4,11,2,109
4,12,5,110
4,13,3,111
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("data") / "tiny.csv", RATINGS)


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    """The single line the CLI wrote to stderr (asserting there is exactly one)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:"), lines
    return lines[0]


# ---------------------------------------------------------------------- ids


def test_distinct_spellings_of_a_number_are_distinct_string_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "ids.csv", "user,item\n007,1\n7,2\n+7,1\n 7,2\n7.0,1\n1e3,2\n")
    data = read_interactions(path)
    assert data.user_map.ids.dtype.kind == "U"
    assert sorted(data.user_map.ids.tolist()) == sorted(["007", "7", "+7", " 7", "7.0", "1e3"])
    assert data.item_map.ids.dtype == np.int64  # every item is a canonical integer


def test_one_float_spelling_makes_strings_not_floats(tmp_path: Path) -> None:
    data = read_interactions(write(tmp_path / "f.csv", "user,item\n1,5\n2,5\n1.0,6\n"))
    assert data.user_map.ids.tolist() == ["1", "1.0", "2"]
    assert data.item_map.ids.dtype == np.int64


def test_canonical_integers_stay_integers_and_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path / "ok.csv", "user,item\n-3,0\n10,9223372036854775807\n2,0\n")
    data = read_interactions(path)
    assert data.user_map.ids.dtype == np.int64 and data.user_map.ids.tolist() == [-3, 2, 10]
    frame = data.to_pandas()
    assert frame["item"].tolist() == [0, 9223372036854775807, 0]
    too_big = read_interactions(write(tmp_path / "big.csv", "user,item\n9223372036854775808,1\n"))
    assert too_big.user_map.ids.tolist() == ["9223372036854775808"]


def test_string_ids_round_trip_exactly(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "user,item\n007,a b\n7,A\n007,x\n")
    frame = read_interactions(path).to_pandas()
    assert sorted(zip(frame["user"], frame["item"])) == [("007", "a b"), ("007", "x"), ("7", "A")]


def test_parquet_ids_follow_the_same_rule(tmp_path: Path) -> None:
    strings = tmp_path / "s.parquet"
    pd.DataFrame({"user": ["007", "7"], "item": [1.0, 2.0]}).to_parquet(strings)
    data = read_interactions(strings)
    assert data.user_map.ids.tolist() == ["007", "7"] and data.item_map.ids.tolist() == ["1.0",
                                                                                        "2.0"]
    mixed = tmp_path / "m.parquet"
    pd.DataFrame({"user": pd.Series([7, "7", 8], dtype=object).astype(str), "item": [1, 2, 3]}
                 ).to_parquet(mixed)
    assert read_interactions(mixed).user_map.ids.tolist() == [7, 8]


def test_python_api_never_merges_spellings() -> None:
    data = Interactions.from_arrays(np.array([7, "007", "7"], dtype=object), [1, 2, 3])
    assert data.user_map.ids.tolist() == ["007", "7"]
    assert external_ids(np.array(["5", "-0"])).tolist() == ["5", "-0"]  # -0 is not canonical
    assert external_ids(np.array(["5", "-4"])).tolist() == [5, -4]


def test_lookups_match_the_exact_spelling() -> None:
    ints = IdMap([1, 7, 20])
    assert ints.to_index(["7", "007", "7.0", " 7", "+7", "x"]).tolist() == [1, -1, -1, -1, -1, -1]
    assert ints.to_index(np.array([7.0])).tolist() == [-1]
    assert ints.to_index(["99999999999999999999999"]).tolist() == [-1]
    texts = IdMap(["007", "7"])
    assert texts.to_index([7, "007"]).tolist() == [1, 0]
    with pytest.raises(UnknownNameError, match="unknown ids"):
        ints.to_index(["007"], missing="raise")


# ---------------------------------------------------------------------- ratings


@pytest.mark.parametrize(("value", "problem"), [
    ("inf", "non-finite rating inf"), ("-Infinity", "non-finite rating -inf"),
    ("nan", "non-numeric rating 'nan'"), ("", "missing rating"),
    ("1e400", "non-finite rating inf"),
])
def test_non_finite_ratings_are_errors_naming_the_line(tmp_path: Path, value: str,
                                                       problem: str) -> None:
    path = write(tmp_path / "r.csv", f"user,item,rating\n1,1,4\n2,1,{value}\n")
    with pytest.raises(DataFormatError) as info:
        read_interactions(path)
    assert (info.value.line, info.value.problem) == (3, problem)


def test_weights_must_be_finite_too(tmp_path: Path) -> None:
    for value, problem in (("inf", "non-finite weight inf"), ("", "missing weight")):
        path = write(tmp_path / "w.csv", f"user,item,weight\n1,2,3\n2,2,{value}\n")
        with pytest.raises(DataFormatError, match=f"line 3: {problem}"):
            read_interactions(path)


def test_implausible_ratings_warn_with_the_observed_range(tmp_path: Path) -> None:
    path = write(tmp_path / "w.csv", "user,item,rating\n1,1,99999\n2,1,3\n3,2,-7\n")
    with pytest.warns(RatingScaleWarning, match=r"w.csv: ratings range from -7 to 99999"):
        data = read_interactions(path)
    assert data.ratings.tolist() == [99999, 3, -7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_interactions(path, rating_range=(-10, 100000))  # a declared scale: no warning
        read_interactions(write(tmp_path / "ok.csv", "user,item,rating\n1,1,0.5\n2,1,10\n"))


def test_rating_range_makes_outliers_an_error_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "w.csv", "user,item,rating\n1,1,4\n2,1,3\n3,2,-7\n")
    with pytest.raises(DataFormatError, match=r"w.csv, line 4: rating -7 is outside the rating "
                                              r"range \[1, 5\] \(1 ratings outside\)"):
        read_interactions(path, rating_range=(1, 5))
    with pytest.raises(ParameterError, match="low <= high"):
        read_interactions(path, rating_range=(5, 1))
    no_ratings = write(tmp_path / "n.csv", "user,item\n1,1\n")
    with pytest.raises(DataFormatError, match="no rating column"):
        read_interactions(no_ratings, rating_range=(1, 5))


def test_rating_range_on_a_registered_dataset() -> None:
    with pytest.raises(InputError, match=r"synthetic: row \d+: rating \d is outside the rating "
                                         r"range \[2, 3\]"):
        load_data("synthetic", rating_range=(2, 3), dataset_kwargs={"n_users": 30, "n_items": 20,
                                                                   "n_interactions": 200})


def test_cli_rating_range_and_scale_warning(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path / "w.csv", RATINGS.replace("1,10,5,", "1,10,99999,"))
    assert main(["split", "--dataset", str(path), "--rating-range", "1,5"]) == 2
    assert "w.csv, line 2: rating 99999 is outside" in one_error_line(capsys)
    assert main(["split", "--dataset", str(path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "to 99999" in err[0]
    for bad in ("5", "1,x", "5,1", "1,5,7", "nan,5"):
        assert main(["split", "--dataset", str(path), "--rating-range", bad]) == 2
        assert "range" in one_error_line(capsys)


# ---------------------------------------------------------------------- metrics


def test_metric_names_are_checked_with_a_suggestion() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown metric 'ndgc@10' \(did you mean 'ndcg'"):
        parse_metric("ndgc@10")
    for bad in ("hr@0", "hr@-1", "hr@1e9", "hr@", "hr@ten", "hr@10@10", "hr@9999999999999999"):
        with pytest.raises(InputError, match="cutoff"):
            parse_metric(bad)
    assert parse_metric("HR @ 1000000000").name == "HR@1000000000"
    with pytest.raises(InputError, match="names no metric"):
        parse_metrics(" , ,")


def _split() -> tuple[Interactions, Interactions]:
    rng = np.random.default_rng(0)
    users, items = np.repeat(np.arange(12), 5), rng.integers(0, 30, 60)
    data = Interactions.from_arrays(users, items, duplicates="first")
    test = rng.random(len(data)) < 0.3
    return data.subset(~test), data.subset(test)


def test_huge_cutoffs_equal_the_catalogue_cutoff_without_allocating() -> None:
    train, test = _split()
    model = MostPopular().fit(train)
    n = train.n_items
    small = Evaluator(train, test, [f"hr@{n}", f"ndcg@{n}", f"recall@{n}", "mrr"]).evaluate(model)
    tracemalloc.start()
    huge = Evaluator(train, test, ["hr@1000000000", "ndcg@1000000000", "recall@1000000000",
                                   "mrr"]).evaluate(model)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000
    assert list(huge.metrics) == ["HR@1000000000", "NDCG@1000000000", "Recall@1000000000", "MRR"]
    assert list(huge.metrics.values()) == pytest.approx(list(small.metrics.values()))
    sampled = Evaluator(train, test, ["hr@1000000000", "hr@6"],
                        protocol="sampled-5").evaluate(model)
    assert sampled.metrics["HR@1000000000"] == sampled.metrics["HR@6"] == 1.0


def test_sampled_protocol_needs_fewer_negatives_than_items() -> None:
    train, test = _split()
    n = train.n_items
    with pytest.raises(InputError, match=rf"sampled-{n}: {n} negatives per test item need more "
                                         rf"than {n} items; the data has {n}"):
        Evaluator(train, test, ["hr@5"], protocol=f"sampled-{n}")
    Evaluator(train, test, ["hr@5"], protocol=f"sampled-{n - 1}")


# ---------------------------------------------------------------------- rating metrics


def test_rating_metrics_are_refused_for_ranking_models() -> None:
    train, test = _split()
    rated = Interactions.from_arrays(train.user_map.ids[train.users], train.item_map.ids[
        train.items], ratings=np.full(len(train), 3.0))
    with pytest.raises(InputError, match=r"RMSE needs a model that predicts ratings; "
                                         r"most-popular only ranks items"):
        Evaluator(rated, rated, ["rmse"]).evaluate(MostPopular().fit(rated))
    with pytest.raises(InputError, match=r"RMSE, MAE need ratings; the test data has none"):
        Evaluator(train, test, ["rmse", "mae"])


def test_cli_refuses_rmse_for_a_ranking_model_before_loading(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = str(tmp_path / "absent.csv")  # never read: the check comes first
    assert main(["evaluate", "--dataset", missing, "--model", "most-popular",
                 "--metrics", "ndcg@10,rmse"]) == 2
    assert "RMSE needs a model that predicts ratings" in one_error_line(capsys)


def test_experiment_refuses_rmse_for_a_ranking_model_before_loading(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
[experiment]
name = "x"
seeds = [0]
[data]
dataset = "synthetic"
[split]
method = "random"
[evaluation]
protocols = ["full"]
metrics = METRICS
[[models]]
name = "user-mean"
[[models]]
name = "ease"
"""
    with pytest.raises(ValueError, match=r"models\[1\]\.name: RMSE needs a model"):
        parse_experiment(text.replace("METRICS", '["rmse", "ndcg@5"]'))
    experiment = parse_experiment(text.replace("METRICS", '["ndcg@5"]'))
    experiment.evaluation.metrics = ["rmse", "ndcg@5"]  # built in Python, not read from a file
    monkeypatch.setattr(runner, "load_split", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(InputError, match="RMSE needs a model that predicts ratings; ease"):
        runner.run_experiment(experiment)


# ---------------------------------------------------------------------- command line


@pytest.mark.parametrize("metrics", [",", " , ", "hr@0", "hr@1e9", "ndgc@10", "hr@10,,xyz"])
def test_cli_bad_metrics(tiny_csv: Path, capsys: pytest.CaptureFixture, metrics: str) -> None:
    assert main(["evaluate", "--dataset", str(tiny_csv), "--model", "most-popular",
                 "--metrics", metrics]) == 2
    assert "metric" in one_error_line(capsys)


def test_cli_huge_metric_cutoff_runs(tiny_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["evaluate", "--dataset", str(tiny_csv), "--model", "most-popular", "--split",
                 "leave-last-out", "--metrics", "hr@1000000000", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["HR@1000000000"] == 1.0


@pytest.mark.parametrize(("where", "problem"), [
    ("absent/r.json", "does not exist"), (".", "is a folder, not a file")])
def test_cli_bad_json_path_fails_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 where: str, problem: str) -> None:
    missing = str(tmp_path / "absent.csv")  # loading it would fail with another message
    assert main(["evaluate", "--dataset", missing, "--model", "most-popular",
                 "--json", str(tmp_path / where)]) == 2
    assert problem in one_error_line(capsys)


def test_a_parameter_given_twice_is_refused(capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--model", "ease", "--param", "reg=1", "--param", "reg=2"]) == 2
    assert "--param reg is given twice" in one_error_line(capsys)


def test_ids_on_the_command_line() -> None:
    assert parse_id("42", "--user") == 42 and parse_id("-3", "--user") == -3
    assert parse_id("007", "--user") == "007" and parse_id("a b", "--user") == "a b"
    assert parse_id("7.0", "--user") == "7.0"
    for bad in ("[1,2]", "{\"a\":1}", "NaN", "true", "False", "null", "inf", "", "  "):
        with pytest.raises(InputError, match="--user"):
            parse_id(bad, "--user")


@pytest.fixture(scope="module")
def saved_ease(tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "ease"
    assert main(["train", "--dataset", str(tiny_csv), "--model", "ease", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("user", ["[1,2]", "{\"a\":1}", "nan", "true", ""])
def test_cli_refuses_non_scalar_ids(saved_ease: Path, capsys: pytest.CaptureFixture,
                                    user: str) -> None:
    assert main(["recommend", "--model", str(saved_ease), "--user", user]) == 2
    assert "--user" in one_error_line(capsys)
    assert main(["similar", "--model", str(saved_ease), "--item", user]) == 2
    assert "--item" in one_error_line(capsys)


def _json_answer(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_unknown_users_get_the_cold_start_answer(saved_ease: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    known = _json_answer(capsys, ["recommend", "--model", str(saved_ease), "--user", "1"])
    assert known["user"] == 1 and known["source"] == "model"
    for user in ("99", "007", "someone"):  # 007 is not user 7: never merged
        answer = _json_answer(capsys, ["recommend", "--model", str(saved_ease), "--user", user])
        assert answer["source"] == "popularity" and len(answer["items"]) == 4


def test_cli_similar_uses_eases_own_similarities(saved_ease: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    answer = _json_answer(capsys, ["similar", "--model", str(saved_ease), "--item", "10",
                                   "-k", "50"])
    assert answer["source"] == "model" and answer["item"] == 10
    assert {r["id"] for r in answer["items"]} <= {11, 12, 13} and len(answer["items"]) == 3
    assert main(["similar", "--model", str(saved_ease), "--item", "99"]) == 2
    assert "unknown item id 99" in one_error_line(capsys)


def test_retriever_takes_one_scalar_id_and_clamps_k() -> None:
    data = Interactions.from_arrays(["a", "a", "b", "c"], [1, 2, 2, 3])
    retriever = Retriever.from_data(create_model("ease").fit(data), data)
    for bad in ([1, 2], {"a": 1}, True, 1.5, None):
        with pytest.raises(ParameterError, match="one integer or string"):
            retriever.recommend(bad)
    for k in (0, -1, 2.0, "3", True):
        with pytest.raises(ParameterError, match="positive integer"):
            retriever.recommend("a", k=k)
    assert retriever.recommend("a", k=10**12).ids.tolist() == [3]  # clamped: no huge arrays
    assert len(retriever.recommend("nobody", k=10**12)) == 3
    similar = retriever.similar(2, k=10**12)
    assert 1 <= len(similar) <= 2 and set(similar.ids.tolist()) <= {1, 3}


# ---------------------------------------------------------------------- cases nobody listed


@pytest.mark.parametrize(("body", "problem"), [
    (b"", "empty.csv: the file is empty"),
    (b"\n\n", "line 1: no header (the first line is empty)"),
    (b"user,item,rating\n", "no interactions (the dataset is empty)"),
    (b"user\n1\n2\n", "no item column"),
    (b"user,item,user\n1,2,3\n", "line 1: duplicate column name 'user' in the header"),
    (b"user,item,rating\n1,2,3\n3\t4\t5\n", "line 3: expected 3 fields, found 1"),
    (b"user,item,timestamp\n1,2,99999999999999999999\n",
     "line 2: timestamp 99999999999999999999 is outside the 64-bit integer range"),
    (b"user,item,timestamp\n1,2,1e30\n", "line 2: timestamp 1e+30 is outside the 64-bit"),
    (b"user,item,rating\n1,2,1e39\n", "line 2: rating 1e+39 is too large"),
    (b"user,item\n\xe9,2\n", "line 2: not valid utf-8"),
    (b"user,item\n1,\"2\n3,4\n", "cannot parse"),
    (b"user,item\r1,2\r", "cannot parse the header"),
])
def test_malformed_files_are_refused_with_one_reason(tmp_path: Path, body: bytes,
                                                     problem: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(body)
    with pytest.raises(ValueError, match=re.escape(problem)) as info:
        read_interactions(path)
    assert "\n" not in str(info.value)


def test_bom_crlf_and_negative_timestamps_are_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_bytes(b"\xef\xbb\xbfuser,item,timestamp\r\n1,2,-5\r\n3,4,-100\r\n")
    data = read_interactions(path)
    assert data.user_map.ids.tolist() == [1, 3] and data.timestamps.tolist() == [-5, -100]


def test_parquet_datetimes_are_epoch_seconds(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    when = pd.to_datetime(["2020-01-01 00:00:00", "2021-01-01 00:00:07", None])
    pd.DataFrame({"user": [1, 2, 3], "item": [1, 2, 3], "timestamp": when}).to_parquet(path)
    with pytest.raises(DataFormatError, match="row 2: missing timestamp"):
        read_interactions(path)
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": when[:2].tz_localize("UTC")}
                 ).to_parquet(path)
    assert read_interactions(path).timestamps.tolist() == [1577836800, 1609459207]


def test_folders_and_column_specs(tmp_path: Path, tiny_csv: Path) -> None:
    with pytest.raises(FileNotFoundError, match="a folder, not a file"):
        read_interactions(tmp_path)
    with pytest.raises(InputError, match="maps user and item to the same column 'user'"):
        read_interactions(tiny_csv, {"user": "user", "item": "user"})
    with pytest.raises(InputError, match="field 'user' is given twice"):
        parse_column_spec("user=user,user=item")


def test_cli_sampled_protocol_larger_than_the_catalogue(tiny_csv: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--dataset", str(tiny_csv), "--model", "most-popular", "--split",
                 "leave-last-out", "--protocol", "sampled-4"]) == 2
    assert "sampled-4: 4 negatives per test item need more than 4 items" in one_error_line(capsys)
