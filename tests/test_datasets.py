"""Dataset registry: names, info, where datasets are found, checksums, load_dataset dispatch."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
from conftest import write_fake_ml100k

from recforge.cli import main
from recforge.data import datasets
from recforge.data.datasets import (
    DatasetNotFoundError,
    Integrity,
    dataset_info,
    dataset_names,
    known_checksums,
    read_sums,
    resolve_and_verify,
    resolve_dataset,
    write_sums,
)
from recforge.data.download import ChecksumError, sha256_file
from recforge.data.loading import load_dataset
from recforge.errors import CorruptFileError

ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat")


def fake_ml1m(folder: Path) -> Path:
    """An ml-1m folder whose files exist (resolution never parses them)."""
    folder.mkdir(parents=True)
    for name in ML1M_FILES:
        (folder / name).write_text(f"{name}\n")
    return folder


def test_names() -> None:
    assert dataset_names() == ["ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest",
                               "ml-latest-small", "synthetic"]


def test_info_when_absent_and_present(isolated_data_env: Path) -> None:
    info = dataset_info("ml-1m")
    assert info["url"] == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert info["files"] == list(ML1M_FILES)
    assert info["ratings"] == 1_000_209
    assert info["local"] is None
    folder = fake_ml1m(isolated_data_env / "ml-1m")
    assert dataset_info("ml-1m")["local"] == str(folder)
    assert dataset_info("synthetic")["url"] is None


def test_unknown_names_list_the_valid_ones(tmp_path: Path) -> None:
    for call in (dataset_info, resolve_dataset, load_dataset):
        with pytest.raises(ValueError, match=r"unknown dataset 'ml-2k'.*ml-100k, ml-1m, .*synthetic"):
            call("ml-2k")
    with pytest.raises(ValueError, match="generated in memory"):
        resolve_dataset("synthetic")


def test_data_dir_argument_may_be_the_folder_or_its_parent(
        tmp_path: Path, isolated_data_env: Path) -> None:
    folder = fake_ml1m(tmp_path / "mine" / "ml-1m")
    assert resolve_dataset("ml-1m", folder, download=False) == folder
    assert resolve_dataset("ml-1m", folder.parent, download=False) == folder


def test_data_dir_argument_wins_over_env_and_cache(
        tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = fake_ml1m(tmp_path / "mine" / "ml-1m")
    env = fake_ml1m(tmp_path / "env" / "ml-1m")
    cached = fake_ml1m(isolated_data_env / "ml-1m")
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(env.parent))
    assert resolve_dataset("ml-1m", mine) == mine
    assert resolve_dataset("ml-1m") == env
    monkeypatch.delenv("RECFORGE_DATA_DIR")
    assert resolve_dataset("ml-1m") == cached


def test_wrong_data_folder_says_what_is_missing(tmp_path: Path, isolated_data_env: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "ratings.dat").write_text("x\n")
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("ml-1m", wrong)
    message = str(info.value)
    assert "the data_dir argument does not hold it" in message
    assert f"{wrong} (missing movies.dat, users.dat)" in message
    assert f"{wrong / 'ml-1m'} (no such folder)" in message


def test_incomplete_env_folder_is_an_error(
        tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "env" / "ml-1m").mkdir(parents=True)
    fake_ml1m(isolated_data_env / "ml-1m")
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError, match=r"RECFORGE_DATA_DIR has it incomplete"):
        resolve_dataset("ml-1m")


def test_offline_error_says_where_to_put_the_files(
        tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("ml-10m", download=False)
    message = str(info.value)
    assert "downloading is disabled" in message
    assert f"{tmp_path / 'data' / 'ml-10m'} (no such folder)" in message
    assert f"{tmp_path / 'data' / 'ml-10M100K'} (no such folder)" in message
    assert f"{isolated_data_env / 'ml-10m'} (no such folder)" in message
    assert "https://files.grouplens.org/datasets/movielens/ml-10m.zip" in message
    assert "ratings.dat, movies.dat, tags.dat" in message


def test_folder_sums_detect_a_corrupt_file(tmp_path: Path, isolated_data_env: Path) -> None:
    folder = fake_ml1m(tmp_path / "ml-1m")
    write_sums(folder)
    assert read_sums(folder / "SHA256SUMS") == {n: sha256_file(folder / n) for n in ML1M_FILES}
    resolve_dataset("ml-1m", folder)
    (folder / "users.dat").write_text("tampered\n")
    with pytest.raises(ChecksumError) as info:
        resolve_dataset("ml-1m", folder)
    assert info.value.path == str(folder / "users.dat")
    assert info.value.actual == sha256_file(folder / "users.dat")
    assert "users.dat: SHA-256 mismatch" in str(info.value)


def test_embedded_ml100k_sums_reject_other_files(fake_ml100k: Path, isolated_data_env: Path) -> None:
    with pytest.raises(ChecksumError, match=r"ml-100k/u.data: SHA-256 mismatch"):
        resolve_dataset("ml-100k", fake_ml100k)


def test_embedded_ml100k_sums_match_the_real_files(ml100k_dir: Path) -> None:
    sums = known_checksums("ml-100k")
    assert sums == read_sums(ml100k_dir / "SHA256SUMS")
    assert sums == {name: sha256_file(ml100k_dir / name) for name in sums}
    assert set(sums) == set(datasets.get_spec("ml-100k").files)
    assert resolve_and_verify("ml-100k", ml100k_dir, download=False) == (ml100k_dir, Integrity(
        True, "its files match the known SHA-256 sums of ml-100k"))


def test_checksums_json_is_well_formed() -> None:
    table = json.loads((Path(datasets.__file__).parent / "checksums.json").read_text())
    downloadable = [name for name in dataset_names() if datasets.get_spec(name).archive]
    assert sorted(name for name in table if not name.startswith("_")) == sorted(downloadable)
    for name in downloadable:
        archive = table[name]["archive"]
        assert (archive is None) == (name in ("ml-10m", "ml-latest"))
        if archive is None:
            assert table[name]["note"] and datasets.known_archive(name) is None
            continue
        assert re.fullmatch(r"[0-9a-f]{64}", archive["sha256"]) and archive["size"] > 0
        assert archive["source"].startswith("tensorflow/datasets: tensorflow_datasets/")
        assert datasets.known_archive(name) == datasets.ArchiveSum(**archive)
        assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in table[name].get("files", {}).values())


def test_a_folder_without_recorded_sums_is_unverified(
        tmp_path: Path, isolated_data_env: Path) -> None:
    folder = fake_ml1m(tmp_path / "ml-1m")
    path, integrity = resolve_and_verify("ml-1m", folder)
    assert path == folder and not integrity.verified
    assert str(integrity) == f"unverified (no {folder / 'SHA256SUMS'} to check its files against)"
    write_sums(folder)  # sums of whatever is there: still not from a verified archive
    assert str(resolve_and_verify("ml-1m", folder)[1]).startswith(
        f"unverified ({folder / 'SHA256SUMS'} does not come from an archive that matched")
    ml10m = fake_ml10m(tmp_path / "ml-10M100K")
    assert str(resolve_and_verify("ml-10m", ml10m)[1]) == (
        f"unverified (no published checksum for ml-10m; no {ml10m / 'SHA256SUMS'} to check "
        "its files against)")


def fake_ml10m(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("ratings.dat", "movies.dat", "tags.dat"):
        (folder / name).write_text(f"{name}\n")
    return folder


@pytest.mark.parametrize("line", ["nonsense", "abc  u.data", f"{'0' * 64}", f"{'g' * 64}  x"])
def test_a_malformed_sums_file_is_a_one_line_error(
        tmp_path: Path, isolated_data_env: Path, line: str) -> None:
    folder = fake_ml1m(tmp_path / "ml-1m")
    (folder / "SHA256SUMS").write_text(f"# archive ml-1m.zip sha256 {'0' * 64}\n{line}\n")
    with pytest.raises(CorruptFileError) as info:
        resolve_dataset("ml-1m", folder)
    assert str(info.value) == f"{folder / 'SHA256SUMS'}:2: not a '<sha256>  <file name>' line"


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


VERIFIED_WORD = re.compile(r"\bverified\b")


def test_cli_download_says_unverified_without_a_published_sum(
        tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path))
    fake_ml10m(tmp_path / "ml-10m")
    status, out, err = cli(capsys, "datasets", "download", "ml-10m")
    assert status == 0 and err == ""
    assert "unverified (no published checksum for ml-10m" in out
    assert not VERIFIED_WORD.search(out)


def test_cli_download_says_verified_for_known_sums(
        tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    folder = write_fake_ml100k(tmp_path / "ml-100k")
    sums = {path.name: sha256_file(path) for path in folder.iterdir()}
    monkeypatch.setattr(datasets, "known_checksums", lambda name: sums)
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path))
    status, out, _ = cli(capsys, "datasets", "download", "ml-100k")
    assert status == 0 and "unverified" not in out
    assert f"ml-100k is at {folder}: verified (its files match the known SHA-256 sums" in out


def test_cli_info_states_the_verification(
        tmp_path: Path, isolated_data_env: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_fake_ml100k(tmp_path / "ml-100k")
    (folder / "u.data").write_text("1\t1\t5\t874965758\n")
    status, _, err = cli(capsys, "datasets", "info", "ml-100k", "--data-dir", str(folder))
    assert status == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and f"{folder / 'u.data'}: SHA-256 mismatch" in err
    fake = fake_ml10m(tmp_path / "ml-10M100K")
    (fake / "ratings.dat").write_text("1::1::5::838985046\n2::1::3::838983525\n")
    (fake / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    status, out, _ = cli(capsys, "datasets", "info", "ml-10m", "--data-dir", str(fake), "--json")
    assert status == 0
    assert json.loads(out[out.index("{"):])["integrity"].startswith("unverified (no published checksum")


def test_cli_list_says_which_datasets_have_a_published_sum(
        isolated_data_env: Path, capsys: pytest.CaptureFixture) -> None:
    status, out, _ = cli(capsys, "datasets", "list")
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 4}
    assert status == 0 and "checksum" in out and "[dim]" not in out
    assert " none " in rows["ml-10m"] and " none " in rows["ml-latest"]
    assert " published " in rows["ml-1m"] and " published " in rows["ml-25m"]


def test_cli_incomplete_data_dir_is_a_one_line_error(
        tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text("1::1::5::1\n")
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path))
    status, out, err = cli(capsys, "datasets", "download", "ml-1m")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "$RECFORGE_DATA_DIR has it incomplete" in err and "missing movies.dat, users.dat" in err


def test_load_dataset_reads_a_file_with_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("uid,iid,stars\n1,2,4\n3,2,5\n")
    data = load_dataset(path, columns={"user": "uid", "item": "iid", "rating": "stars"},
                        rating_range=(1, 5))
    assert (data.n_users, data.n_items, len(data)) == (2, 1, 2)
    with pytest.raises(ValueError, match="columns= applies to interaction files"):
        load_dataset("ml-1m", columns={"user": "u"})


def test_load_dataset_passes_keywords_to_synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    module = types.ModuleType("recforge.data.synthetic")
    module.generate = lambda **kwargs: calls.append(kwargs) or "generated"
    monkeypatch.setitem(sys.modules, "recforge.data.synthetic", module)
    assert load_dataset("synthetic", n_users=5, seed=3) == "generated"
    assert calls == [{"n_users": 5, "seed": 3}]
