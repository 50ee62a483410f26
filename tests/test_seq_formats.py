"""The published interaction formats (`recforge.data.seq_formats`: sequence, sessions,
adjacency), the random-per-user split and ``recforge evaluate --format`` on them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.cli import main
from recforge.data.movielens import read_ml100k
from recforge.data.readers import DataFormatError
from recforge.data.seq_formats import (
    detect_format,
    read_adjacency,
    read_format,
    read_sequence,
    read_sessions,
    read_split,
)
from recforge.data.sequences import Sequences
from recforge.data.splits import (
    SPLITTERS,
    leave_last_out,
    make_split,
    random_per_user_split,
    random_split,
)
from recforge.errors import UnknownNameError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sequences(data) -> dict[int, list[int]]:
    """Each user's items in time order, by external ids."""
    seqs = Sequences.from_interactions(data)
    return {int(data.user_map.ids[u]): data.item_map.ids[seqs.sequence(u)].tolist()
            for u in range(seqs.n_users) if seqs.lengths[u]}


def pairs(data) -> set[tuple[int, int]]:
    return set(zip(data.user_map.ids[data.users].tolist(), data.item_map.ids[data.items].tolist()))


# ---------------------------------------------------------------------- readers
def test_sequence_line_order_is_time_order(tmp_path: Path) -> None:
    text = "7 30\n3 10\n\n7 20\n3 30\n7 10\n3 20\n"
    data = read_sequence(write(tmp_path / "seq.txt", text))
    assert sequences(data) == {3: [10, 30, 20], 7: [30, 20, 10]}
    # timestamps are the line numbers (blank lines counted): distinct, so no tie rule matters
    assert sorted(data.timestamps.tolist()) == [1, 2, 4, 5, 6, 7]
    for ties in ("item-id", "random"):
        seqs = Sequences.from_interactions(data, ties=ties, seed=3)
        assert np.array_equal(seqs.items, Sequences.from_interactions(data).items)
    commas = read_sequence(write(tmp_path / "seq.csv", text.replace(" ", ",")))
    assert sequences(commas) == sequences(data)
    # leave-last-out holds out the last line of each user
    assert pairs(leave_last_out(data).test) == {(3, 20), (7, 10)}


def test_sequence_repeats_keep_the_latest_unless_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "seq.txt", "1 5\n1 6\n1 5\n")
    assert sequences(read_sequence(path)) == {1: [6, 5]}
    assert sequences(read_sequence(path, duplicates="keep")) == {1: [5, 6, 5]}


def test_sessions_are_users_in_exact_time_order(tmp_path: Path) -> None:
    text = ("SessionId\tItemId\tTime\n"
            "42\t1\t1000.75\n42\t2\t1000.25\n42\t3\t999.5\n"
            "8\t2\t50\n8\t4\t40\n")
    data = read_sessions(write(tmp_path / "s.tsv", text))
    assert data.user_map.ids.tolist() == [8, 42] and data.n_users == 2
    # 1000.25 and 1000.75 fall in one second: their exact order survives the flooring
    assert sequences(data) == {8: [4, 2], 42: [3, 2, 1]}
    assert data.timestamps.dtype == np.int64 and sorted(data.timestamps.tolist()) == \
        [40, 50, 999, 1000, 1000]
    headless = tmp_path / "s.csv.gz"
    with gzip.open(headless, "wt") as out:
        out.write(text.split("\n", 1)[1].replace("\t", ","))
    assert sequences(read_sessions(headless)) == sequences(data)
    assert read_format(headless, "sessions").n_users == 2


def test_adjacency_with_its_test_file(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "0 1 2 3\n1\n2 3 1\n")
    test = write(tmp_path / "test.txt", "0 4\n2\n5 1\n")
    alone = read_adjacency(train)
    assert alone.timestamps is None and alone.user_map.ids.tolist() == [0, 1, 2]
    assert alone.user_counts.tolist() == [3, 0, 2]  # user 1 has a line and no items
    split = read_split(train, test, "adjacency")
    assert split.method == "test file"
    assert split.train.user_map == split.test.user_map and \
        split.train.item_map == split.test.item_map
    assert split.train.user_map.ids.tolist() == [0, 1, 2, 5]
    assert split.train.item_map.ids.tolist() == [1, 2, 3, 4]
    assert pairs(split.train) == {(0, 1), (0, 2), (0, 3), (2, 3), (2, 1)}
    assert pairs(split.test) == {(0, 4), (5, 1)}
    assert split.summary()["n_cold_users"] == 1 and split.summary()["n_cold_items"] == 1


def test_a_sequence_test_file_comes_after_the_training_file(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "1 1\n1 2\n2 1\n")
    test = write(tmp_path / "test.txt", "1 3\n2 2\n")
    split = read_split(train, test, "sequence")
    assert split.test.timestamps.min() > split.train.timestamps.max()
    assert split.test.timestamps.tolist() == [4, 5]


def test_detection_only_where_unambiguous(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "a.txt", "0 1 2 3\n1 5\n2 3 1\n")) == "adjacency"
    assert detect_format(write(tmp_path / "b.txt", "3\n0 1 2\n")) == "adjacency"
    assert detect_format(write(tmp_path / "s.tsv", "SessionId\tItemId\tTime\n1\t2\t3\n")) \
        == "sessions"
    for name, text in (("seq.txt", "1 2\n1 3\n2 2\n"),  # sequence or any user-item log
                       ("log.csv", "user,item,rating\n1,2,5\n1,3,4\n"),
                       ("ts.tsv", "1\t2\t3\n4\t5\t6\n"),  # sessions or user-item-time
                       ("fm.libfm", "1 0:1 5:1\n0 1:1 6:1 7:1\n"),
                       ("gaps.csv", "1,2,,4\n1,2\n"), ("empty.txt", "")):
        assert detect_format(write(tmp_path / name, text)) is None, name
    frame = pd.DataFrame({"user": [1, 2], "item": [3, 4]})
    frame.to_parquet(tmp_path / "x.parquet")
    assert detect_format(tmp_path / "x.parquet") is None
    assert detect_format(tmp_path / "missing.txt") is None


@pytest.mark.parametrize(("fmt", "text", "line", "problem"), [
    ("sequence", "", None, "the file is empty"),
    ("sequence", "\n  \n", None, "the file is empty"),
    ("sequence", "1 2\n1 x\n", 2, "non-integer item id 'x'"),
    ("sequence", "user item\n1 2\n", 1, "non-integer user id 'user'"),
    ("sequence", "1 2\n1 2 3\n", 2, "expected 2 fields (user item), found 3"),
    ("sequence", "1 2\n\n3\n", 3, "expected 2 fields (user item), found 1"),
    ("sequence", "1 2.0\n", 1, "non-integer item id '2.0'"),
    ("sequence", "1 +2\n", 1, "non-integer item id '+2'"),
    ("sequence", "1 02\n", 1, "item id '02' has a leading zero"),
    ("sequence", "-1 2\n", 1, "negative user id '-1'"),
    ("sequence", "1 1234567890123456789\n", 1, "item id '1234567890123456789' is too large"),
    ("sequence", "1,2\n1,,3\n", 2, "an empty field or mixed separators"),
    ("sequence", "1 2\n3 4,5\n", 2, "an empty field or mixed separators"),
    ("sequence", "1 2\n,\n", 2, "an empty field or mixed separators"),
    ("sequence", "1 2\n1 3\x1f4\n", 2, "non-integer item id '3\\x1f4'"),
    ("sessions", "1 2 3\n1 3 3\x1f4\n", 2, "non-numeric time '3\\x1f4'"),
    ("sessions", "1 2\n", 1, "expected 3 fields (session item time), found 2"),
    ("sessions", "SessionId ItemId Time\n1 2 3\n1 2 noon\n", 3, "non-numeric time 'noon'"),
    ("sessions", "1 2 3\n1 2 inf\n", 2, "non-numeric time 'inf'"),
    ("sessions", "s1 2 3\n", 1, "non-integer session id 's1'"),
    ("sessions", "SessionId ItemId Time\n", None, "the file is empty"),
    ("adjacency", "0 1 2\n1 3 x\n", 2, "non-integer item id 'x'"),
    ("adjacency", "0 1 2\nu 3\n", 2, "non-integer user id 'u'"),
    ("adjacency", "0 1\n1 2\n0 3\n", 3, "user 0 already has a line (line 1)"),
    ("adjacency", "0\n1\n", None, "no line lists an item"),
])
def test_malformed_files_name_file_line_and_problem(tmp_path: Path, fmt: str, text: str,
                                                    line: int | None, problem: str) -> None:
    path = write(tmp_path / "data.txt", text)
    with pytest.raises(DataFormatError) as caught:
        read_format(path, fmt)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.startswith(str(path)), message
    assert caught.value.line == line and problem in caught.value.problem, message


def test_errors_found_in_a_later_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recforge.data.ctr_formats as ctr

    monkeypatch.setattr(ctr, "_BLOCK_BYTES", 64)  # many blocks: lines are counted across them
    lines = [f"{u} {u % 7}" for u in range(100)]
    lines[83] = "83 seven"
    with pytest.raises(DataFormatError, match="line 84: non-integer item id 'seven'"):
        read_sequence(write(tmp_path / "seq.txt", "\n".join(lines) + "\n"))
    lines[83] = "83 7"
    data = read_sequence(write(tmp_path / "seq.txt", "\n".join(lines) + "\n"))
    assert len(data) == 100 and sorted(data.timestamps.tolist()) == list(range(1, 101))
    adjacency = "\n".join(f"{u} " + " ".join(map(str, range(u % 9))) for u in range(60))
    assert read_adjacency(write(tmp_path / "adj.txt", adjacency)).user_counts.tolist() == \
        [u % 9 for u in range(60)]


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'sessions'"):
        read_format(write(tmp_path / "a.txt", "1 2\n"), "session")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_format(tmp_path / "none.txt", "sequence")


def test_random_per_user_split_is_lightgcns_named_split() -> None:
    rng = np.random.default_rng(0)
    data = read_sequence_frame(rng)
    split = make_split(data, "random-per-user", seed=4)
    reference = random_split(data, 0.2, seed=4, per_user=True)
    assert "random-per-user" in SPLITTERS and split.method == "random-per-user"
    assert split.params == {"test_fraction": 0.2}
    assert pairs(split.test) == pairs(reference.test)
    assert pairs(random_per_user_split(data, 0.5, seed=4).test) == \
        pairs(random_split(data, 0.5, seed=4, per_user=True).test)
    assert split.train_valid(seed=1).method == "random-per-user"


def read_sequence_frame(rng: np.random.Generator, n_users: int = 60, n_items: int = 80,
                        per_user: int = 12):
    from recforge.data.interactions import Interactions

    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False)
                            for _ in range(n_users)])
    return Interactions.from_arrays(users, items, timestamps=np.arange(len(users)))


# ---------------------------------------------------------------------- the command line
def popular_log(rng: np.random.Generator, n_users: int = 150, n_items: int = 200,
                per_user: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Users and items (each user's items distinct, Zipf-like popularity), grouped by user."""
    weights = 1.0 / np.arange(1, n_items + 1)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False, p=weights / weights.sum())
                            for _ in range(n_users)])
    return np.repeat(np.arange(n_users), per_user), items


def evaluate(args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "record.json"
    out.unlink(missing_ok=True)
    assert main(["evaluate", *args, "--model", "most-popular", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_cli_sequence_and_sessions_next_item(tmp_path: Path) -> None:
    users, items = popular_log(np.random.default_rng(1))
    seq = tmp_path / "seq.txt"
    np.savetxt(seq, np.c_[users, items], fmt="%d")
    record = evaluate(["--dataset", str(seq), "--format", "sequence"], tmp_path)
    assert (record["format"], record["split"], record["protocol"]) == \
        ("sequence", "leave-last-out", "next-item")
    assert record["n_test"] == 150 and record["n_train"] == 150 * 14
    full_hr = record["metrics"]["HR@10"]
    assert 10 / 200 < full_hr <= 1  # popularity beats a random list of 10 of 200 items
    sessions = tmp_path / "sessions.tsv"
    frame = pd.DataFrame({"SessionId": users, "ItemId": items,
                          "Time": 1.6e9 + np.arange(len(users)) * 0.4})
    frame.to_csv(sessions, sep="\t", index=False)
    for data, fmt in ((seq, "sequence"), (sessions, "sessions")):
        record = evaluate(["--dataset", str(data), "--format", fmt, "--split", "leave-last-out",
                           "--protocol", "next-item-sampled-100"], tmp_path)
        assert record["protocol"] == "next-item-sampled-100" and record["n_test"] == 150
        assert 10 / 101 < record["metrics"]["HR@10"] <= 1 and record["metrics"]["HR@10"] > \
            full_hr
        sampled = record["metrics"]
        # the sasrec protocol is this one (the sessions file is detected by its header)
        named = ["--format", fmt] if fmt == "sequence" else []
        preset = evaluate(["--dataset", str(data), *named, "--protocol", "sasrec"], tmp_path)
        assert preset["paper_protocol"] == "sasrec"
        assert preset["metrics"] == {k: sampled[k] for k in ("HR@10", "NDCG@10")}


def test_cli_adjacency_with_test_file_and_lightgcn_protocol(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    users, items = popular_log(np.random.default_rng(2))
    test = np.random.default_rng(3).random(len(users)) < 0.2
    for name, part in (("train.txt", ~test), ("test.txt", test)):
        lines = [" ".join(map(str, [u, *items[part & (users == u)]])) for u in range(150)]
        write(tmp_path / name, "\n".join(lines) + "\n")
    record = evaluate(["--dataset", str(tmp_path / "train.txt"), "--test",
                       str(tmp_path / "test.txt"), "--protocol", "lightgcn"], tmp_path)
    assert "as --format adjacency (detected" in capsys.readouterr().out
    assert (record["format"], record["split"], record["protocol"]) == \
        ("adjacency", "test file", "full")
    assert set(record["metrics"]) == {"Recall@20", "NDCG@20"}
    assert record["n_train"] == int((~test).sum()) and record["n_test"] == int(test.sum())
    assert 20 / 200 < record["metrics"]["Recall@20"] <= 1
    resplit = evaluate(["--dataset", str(tmp_path / "train.txt"), "--format", "adjacency",
                        "--test-fraction", "0.25"], tmp_path)
    assert resplit["split"] == "random-per-user" and resplit["protocol"] == "full"


SEQ = "1 2\n1 3\n2 2\n2 4\n"


@pytest.mark.parametrize(("text", "args", "expected"), [
    ("1 2\n1 3\n2 2 7\n", ["--format", "sequence"],
     "data.txt, line 3: expected 2 fields (user item), found 3"),
    ("1 2 3\n2 2\n", ["--protocol", "next-item"],
     "protocol next-item orders each user's events by time"),
    (SEQ, ["--format", "sequence", "--split", "temporal"], "--split temporal does not apply"),
    (SEQ, ["--format", "sequence", "--columns", "user=0"], "--columns does not apply"),
    (SEQ, ["--format", "sequence", "--label", "click"], "--label applies to CTR files"),
    (SEQ, ["--format", "sequence", "--test", "data.txt", "--split", "random"],
     "--split does not apply with --test"),
    (SEQ, ["--format", "sequence", "--protocol", "lightgcn", "--split", "leave-last-out"],
     "--protocol lightgcn splits by random-per-user"),
    (SEQ, ["--format", "sequence", "--test-fraction", "0.3"],
     "--test-fraction applies to --split random"),
    (SEQ, ["--format", "sequence", "--test-fraction", "1.5"], "argument --test-fraction"),
    (SEQ, ["--test", "data.txt"], "--test applies to CTR files and to --format sequence"),
])
def test_cli_bad_input_exits_2_with_one_line(text: str, args: list[str], expected: str,
                                             tmp_path: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "data.txt", text)
    assert main(["evaluate", "--dataset", "data.txt", "--model", "most-popular", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in " ".join(err.split()) and len(err.splitlines()) == 1, err


# ---------------------------------------------------------------------- ML-100K round trips
def test_ml100k_round_trips_through_sequence_and_adjacency(ml100k_dir: Path,
                                                           tmp_path: Path) -> None:
    data = read_ml100k(ml100k_dir)
    seqs = Sequences.from_interactions(data)  # the default tie rule, file-order
    users = data.user_map.ids[seqs.users]
    items = data.item_map.ids[seqs.items]
    np.savetxt(tmp_path / "ml.txt", np.c_[users, items], fmt="%d")
    back = read_sequence(tmp_path / "ml.txt")
    assert (back.n_users, back.n_items, len(back)) == (data.n_users, data.n_items, len(data))
    assert sequences(back) == sequences(data)
    for ties in ("file-order", "random"):  # line numbers leave no ties to order
        assert pairs(leave_last_out(back, ties=ties, seed=5).test) == \
            pairs(leave_last_out(data).test)
    frame = pd.DataFrame({"SessionId": users, "ItemId": items,
                          "Time": data.timestamps[seqs.positions]})
    frame.to_csv(tmp_path / "ml.tsv", sep="\t", index=False)
    sessions = read_sessions(tmp_path / "ml.tsv")
    assert sequences(sessions) == sequences(data)
    assert pairs(leave_last_out(sessions).test) == pairs(leave_last_out(data).test)

    split = random_per_user_split(data, 0.2, seed=0)
    for name, part in (("train.txt", split.train), ("test.txt", split.test)):
        csr = part.binary_csr
        lines = [" ".join(map(str, [part.user_map.ids[u],
                                    *part.item_map.ids[csr.indices[csr.indptr[u]:
                                                                   csr.indptr[u + 1]]]]))
                 for u in range(csr.shape[0])]
        write(tmp_path / name, "\n".join(lines) + "\n")
    assert detect_format(tmp_path / "train.txt") == "adjacency"
    published = read_split(tmp_path / "train.txt", tmp_path / "test.txt", "adjacency")
    assert published.train.user_map == data.user_map
    assert published.train.item_map == data.item_map
    assert pairs(published.train) == pairs(split.train)
    assert pairs(published.test) == pairs(split.test)
