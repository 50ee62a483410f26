"""Property-based hostile input: random bytes and mutated CSV/TSV/Parquet files into the
readers, random argument strings into the command line.

Every input must give either a correct result or a refusal: `ValueError`/`OSError` from the
readers (the CLI's exit 2 with exactly one ``error:`` line on stderr). An exit 1 (a bug), a
traceback or another exception type fails the test, and so does an exit 0 whose result
contradicts the input.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from recforge.cli import main
from recforge.data.interactions import CANONICAL_INT, Interactions
from recforge.data.loading import load_dataset
from recforge.data.readers import read_interactions
from recforge.evaluation.metrics import parse_metric

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
CLI_SETTINGS = settings(SETTINGS, max_examples=25)
SUFFIXES = (".csv", ".tsv", ".dat", ".parquet", ".csv.gz")
SEPARATORS = {".csv": ",", ".tsv": "\t", ".dat": "::"}
NASTY = ["", ",", "\t", "::", '"', "\n", "\r\n", "\ufeff", "\x00", "nan", "inf", "-", "1e999",
         "99999999999999999999", "007", "1.0", " ", "\xe9", "\\", "user", "#"]

ids = st.one_of(st.integers(-10**6, 10**6).map(str),
                st.sampled_from(["007", "7", "+7", " 7", "7.0", "1e3", "-0", "a", "A", "é"]),
                st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                        max_size=4).filter(lambda s: s.strip() not in ("", "nan") and "," not in s
                                           and '"' not in s))
rows = st.lists(st.tuples(ids, ids, st.integers(1, 5), st.integers(-10**12, 10**12)),
                min_size=1, max_size=12)


def read_or_refuse(path: Path) -> Interactions | None:
    """The file read by the readers, or None for a refusal (a ValueError or an OSError)."""
    try:
        return read_interactions(path)
    except (ValueError, OSError) as exc:
        assert str(exc).strip(), "a refusal needs a message"
        return None


def check_invariants(data: Interactions) -> None:
    """What any successfully read log satisfies."""
    assert len(data) >= 1
    for id_map in (data.user_map, data.item_map):
        kind = id_map.ids.dtype.kind
        assert kind in "iU"
        if kind == "U":  # strings only when some id is not a canonical int64 integer
            assert not all(map(is_int64_text, id_map.ids))
    if data.ratings is not None:
        assert np.isfinite(data.ratings).all()


def is_int64_text(text: str) -> bool:
    return bool(CANONICAL_INT.fullmatch(text)) and -2**63 <= int(text) < 2**63


def expected_ids(texts: list[str]) -> set:
    """External ids by the rule: all canonical integers -> ints, else the texts unchanged."""
    return {int(t) for t in texts} if all(map(is_int64_text, texts)) else set(texts)


def csv_text(table: list[tuple[str, str, int, int]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user", "item", "rating", "timestamp"])
    writer.writerows(table)
    return buffer.getvalue()


@SETTINGS
@given(table=rows)
def test_generated_logs_read_back_exactly(tmp_path: Path, table: list) -> None:
    path = tmp_path / "log.csv"
    path.write_text(csv_text(table))
    data = read_interactions(path)  # a well-formed log is never refused
    check_invariants(data)
    assert set(data.user_map.ids.tolist()) == expected_ids([u for u, _, _, _ in table])
    assert set(data.item_map.ids.tolist()) == expected_ids([i for _, i, _, _ in table])
    latest = {(u, i): (r, t) for u, i, r, t in sorted(table, key=lambda row: row[3])}
    frame = data.to_pandas()
    assert len(frame) == len(latest)
    got = {(str(u), str(i)): (r, t) for u, i, r, t in frame.itertuples(index=False)}
    assert got == {key: (float(r), t) for key, (r, t) in latest.items()}


def mutate(text: str, edits: list[tuple[int, str, int]]) -> str:
    """Apply (position, inserted text, deleted length) edits."""
    for position, insert, delete in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + delete:]
    return text


edits = st.lists(st.tuples(st.integers(0, 10**4), st.sampled_from(NASTY), st.integers(0, 3)),
                 min_size=1, max_size=4)


@SETTINGS
@given(table=rows, edits=edits, suffix=st.sampled_from([".csv", ".tsv", ".dat"]))
def test_mutated_text_logs_are_read_or_refused(tmp_path: Path, table: list, edits: list,
                                               suffix: str) -> None:
    text = csv_text(table).replace(",", SEPARATORS[suffix])
    path = tmp_path / f"log{suffix}"
    path.write_bytes(mutate(text, edits).encode("utf-8", "surrogatepass"))
    data = read_or_refuse(path)
    if data is not None:
        check_invariants(data)


@SETTINGS
@given(blob=st.binary(max_size=300), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_are_read_or_refused(tmp_path: Path, blob: bytes, suffix: str) -> None:
    path = tmp_path / f"blob{suffix}"
    path.write_bytes(blob)
    try:
        data = load_dataset(str(path))
    except (ValueError, OSError):
        return
    check_invariants(data)


columns = st.lists(st.one_of(st.integers(-5, 5), st.sampled_from(["007", "7", "x", "1.0"]),
                             st.floats(allow_nan=True, allow_infinity=True), st.none()),
                   min_size=1, max_size=8)


@SETTINGS
@given(users=columns, items=columns, ratings=columns, flips=st.lists(st.integers(0, 10**5),
                                                                     max_size=3))
def test_parquet_with_mixed_types_and_flipped_bytes(tmp_path: Path, users: list, items: list,
                                                    ratings: list, flips: list) -> None:
    n = min(len(users), len(items), len(ratings))
    frame = pd.DataFrame({"user": pd.Series(users[:n], dtype=object).map(
        lambda v: None if v is None else str(v)), "item": items[:n],
        "rating": pd.Series(ratings[:n], dtype=object).map(str)})
    path = tmp_path / "log.parquet"
    try:
        frame.to_parquet(path)
    except pa.ArrowException:  # pyarrow cannot store this mix at all: nothing to read
        return
    blob = bytearray(path.read_bytes())
    for flip in flips:
        blob[flip % len(blob)] ^= 0xFF
    path.write_bytes(bytes(blob))
    data = read_or_refuse(path)
    if data is not None:
        check_invariants(data)
        if not flips:
            assert set(data.user_map.ids.tolist()) == expected_ids(frame["user"].tolist())


# ---------------------------------------------------------------------- command line

TINY = "user,item,rating,timestamp\n" + "".join(
    f"{u},{i},{1 + (u + i) % 5},{1000 + 10 * u + i}\n" for u in range(1, 7) for i in range(1, 7)
    if (u + i) % 3)
texts = st.text(st.sampled_from(list("hrndcgmaeps@0123456789-,.=[]{}:xyz _\"")), max_size=14)
values = st.one_of(texts, st.sampled_from(["1", "0", "-1", "1000000000", "nan", "[1,2]", "007",
                                           "99999999999999999999", "1,5", "5,1", "sampled-3",
                                           "sampled-0", "sampled-999", "full", "random",
                                           "temporal", "leave-last-out", "u1", "hr@10,rmse",
                                           "user=user,item=item", "user=nope", "item=user"]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("hostile")
    data = folder / "tiny.csv"
    data.write_text(TINY)
    model = folder / "ease"
    assert main(["train", "--dataset", str(data), "--model", "ease", "--out", str(model)]) == 0
    return {"data": str(data), "model": str(model), "folder": str(folder)}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code if isinstance(exc.code, int) else 2
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_ok_or_one_line(code: int, err: str) -> None:
    assert code in (0, 2), f"exit {code}: {err}"
    if code == 2:
        errors = [line for line in err.splitlines() if "error:" in line]
        others = [line for line in err.splitlines() if "error:" not in line]
        assert len(errors) == 1, err
        assert all(line.startswith("warning:") for line in others), err


@CLI_SETTINGS
@given(options=st.lists(st.tuples(st.sampled_from(["--metrics", "--protocol", "--split",
                                                   "--seed", "--columns", "--rating-range",
                                                   "--param", "--model"]), values),
                        max_size=3))
def test_evaluate_and_split_with_random_arguments(tiny: dict, capsys: pytest.CaptureFixture,
                                                   options: list) -> None:
    given_options = dict(options)
    record = Path(tiny["folder"]) / "record.json"
    record.unlink(missing_ok=True)
    argv = ["evaluate", "--dataset", tiny["data"], "--json", str(record), "--model",
            given_options.pop("--model", "most-popular")]
    argv += [x for pair in given_options.items() for x in pair]
    code, _, err = run_cli(argv, capsys)
    event(f"evaluate: exit {code}")
    assert_ok_or_one_line(code, err)
    if code == 0:  # exactly the requested metrics, each a number or NaN (undefined)
        names = given_options.get("--metrics", "ndcg@10,hr@10,recall@10,precision@10")
        metrics = json.loads(record.read_text())["metrics"]
        wanted = [parse_metric(n).name for n in names.split(",") if n.strip()]
        assert list(metrics) == list(dict.fromkeys(wanted))
        assert all(isinstance(v, float) for v in metrics.values())
    split_argv = ["split", "--dataset", tiny["data"]] + [
        x for pair in given_options.items() if pair[0] in ("--split", "--seed", "--columns",
                                                           "--rating-range") for x in pair]
    code, _, err = run_cli(split_argv, capsys)
    assert_ok_or_one_line(code, err)


@CLI_SETTINGS
@given(command=st.sampled_from(["recommend", "similar"]), target=values,
       k=st.one_of(st.none(), st.integers(-3, 10**6).map(str), values),
       index=st.sampled_from([None, "auto", "exact", "ivf"]), with_data=st.booleans())
def test_serving_with_random_arguments(tiny: dict, capsys: pytest.CaptureFixture, command: str,
                                       target: str, k: str | None, index: str | None,
                                       with_data: bool) -> None:
    argv = [command, "--model", tiny["model"], "--user" if command == "recommend" else "--item",
            target, "--json"]
    argv += ["-k", k] if k is not None else []
    argv += ["--index", index] if index is not None else []
    argv += ["--dataset", tiny["data"]] if with_data else []
    code, out, err = run_cli(argv, capsys)
    event(f"{command}: exit {code}")
    assert_ok_or_one_line(code, err)
    if code == 0:
        answer = json.loads(out)
        assert 1 <= len(answer["items"]) <= 6
        scores = [item["score"] for item in answer["items"]]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(item["id"], int) for item in answer["items"])


def test_hostile_paths(tiny: dict, capsys: pytest.CaptureFixture) -> None:
    folder = tiny["folder"]
    for argv in (["split", "--dataset", folder], ["evaluate", "--dataset", folder, "--model",
                                                   "ease"],
                 ["recommend", "--model", tiny["data"], "--user", "1"],
                 ["similar", "--model", folder + "/absent", "--item", "1"],
                 ["evaluate", "--dataset", tiny["data"], "--model", "ease", "--json", folder]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2
        assert_ok_or_one_line(code, err)
