"""Property tests: hostile archives and garbage ``.part`` files fed through the real download,
extraction and verification path (`resolve_and_verify` against a local HTTP server).

Every example ends in a correct install or in a one-line `ValueError`/`OSError` naming the
archive or its URL, never in another exception, never with files outside the cache, and
never as "verified" unless a (test-)published sum matched.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_download import ServerState, running_server

from recforge.cli import main
from recforge.data import datasets
from recforge.data.datasets import Integrity, resolve_and_verify

ROOT = "ml-10M100K"  # ml-10m has no published sum: its archives reach the extraction
FILES = ("ratings.dat", "movies.dat", "tags.dat")
VERIFIED_WORD = re.compile(r"\bverified\b")
SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def httpd() -> Iterator[ThreadingHTTPServer]:
    with running_server() as server:
        yield server


@contextlib.contextmanager
def sandbox(httpd: ThreadingHTTPServer, files: dict[str, bytes],
            published: dict[str, bytes] | None = None) -> Iterator[tuple[ServerState, Path]]:
    """A fresh server state serving ``files``, an empty cache, and ``published`` archives
    (dataset name -> archive bytes) standing in for the sums shipped in checksums.json."""
    sums = {name: datasets.ArchiveSum(hashlib.sha256(data).hexdigest(), len(data), "test")
            for name, data in (published or {}).items()}
    state = ServerState(base_url=httpd.state.base_url, files=dict(files))
    httpd.state = state
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.dict(os.environ, {"RECFORGE_CACHE_DIR": f"{tmp}/cache",
                                         "RECFORGE_DOWNLOAD_URL": state.base_url}), \
            mock.patch.object(datasets, "known_archive", sums.get):
        os.environ.pop("RECFORGE_DATA_DIR", None)
        yield state, Path(tmp)


def install(name: str) -> tuple[Path, Integrity] | Exception:
    """`resolve_and_verify`, returning a bad-input error instead of raising it."""
    try:
        return resolve_and_verify(name, progress=False)
    except (ValueError, OSError) as exc:
        return exc


def assert_clean_failure(error: Exception, tmp: Path, name: str) -> None:
    """A one-line message naming the archive; nothing installed, nothing left behind."""
    message = str(error)
    assert f"{name}.zip" in message.splitlines()[0], message
    assert not (tmp / "cache" / name).exists()
    left = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    assert left == [], left


def zip_bytes(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        warnings.simplefilter("ignore")  # duplicate names are the point of some examples
        for member, data in members:
            out.writestr(member, data)
    return buffer.getvalue()


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


#: each hazard: the members it adds and the words of the error it must cause
HAZARDS: dict[str, tuple[list[tuple[str | zipfile.ZipInfo, bytes]], str]] = {
    "traversal": ([(f"{ROOT}/../../evil.txt", b"x")], "refusing unsafe archive member"),
    "absolute": ([("/tmp/evil.txt", b"x")], "refusing unsafe archive member"),
    "backslash": ([(f"{ROOT}\\..\\evil.txt", b"x")], "refusing unsafe archive member"),
    "symlink": ([(symlink(f"{ROOT}/link"), b"/etc/passwd")], "a link or special file"),
    "duplicate": ([(f"{ROOT}/RATINGS.DAT", b"again")], "duplicate archive member"),
    "clash": ([(f"{ROOT}/extra-x", b"1"), (f"{ROOT}/extra-x/y", b"2")], "both a file and a folder"),
    "bomb": ([(f"{ROOT}/extra-zeros", bytes(3_000_000))], "would expand to"),
    "many": ([(f"{ROOT}/extra-{i}", b"") for i in range(101)], "archive members, more than"),
}


@st.composite
def crafted_archive(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes], str | None]:
    """(archive, the dataset files it holds, its hazard or None), members in random order."""
    present = draw(st.lists(st.sampled_from(FILES), unique=True, min_size=2, max_size=3))
    contents = {name: draw(st.binary(max_size=400)) for name in present}
    extras = draw(st.lists(st.text("abcdefgh._-", min_size=1, max_size=6), unique=True,
                           max_size=4))
    members: list[tuple[str | zipfile.ZipInfo, bytes]] = [
        (f"{ROOT}/{name}", data) for name, data in contents.items()]
    members += [(f"{ROOT}/extra-{name}", b"junk") for name in extras]
    members += [(f"__MACOSX/{ROOT}/._{name}", b"junk") for name in present[:1]]
    hazard = draw(st.sampled_from([None, *HAZARDS]))
    if hazard == "duplicate" and "ratings.dat" not in contents:
        hazard = None
    for member in HAZARDS[hazard][0] if hazard else []:
        members.insert(draw(st.integers(0, len(members))), member)
    return zip_bytes(members), contents, hazard


@SETTINGS
@given(crafted=crafted_archive())
def test_crafted_archives_install_correctly_or_fail_cleanly(
        httpd: ThreadingHTTPServer, crafted: tuple[bytes, dict[str, bytes], str | None]) -> None:
    archive, contents, hazard = crafted
    with sandbox(httpd, {"ml-10m.zip": archive}) as (state, tmp):
        result = install("ml-10m")
        assert len(state.requests) == 1
        if hazard is not None or set(contents) != set(FILES):
            assert isinstance(result, Exception), hazard
            words = HAZARDS[hazard][1] if hazard else "the archive has no"
            assert words in str(result)
            assert_clean_failure(result, tmp, "ml-10m")
            return
        assert not isinstance(result, Exception), result
        folder, integrity = result
        assert {name: (folder / name).read_bytes() for name in FILES} == contents
        assert not integrity.verified and not VERIFIED_WORD.search(str(integrity))
        assert not list(tmp.rglob("evil.txt"))


def genuine_archive() -> bytes:
    return zip_bytes([(f"{ROOT}/{name}", f"{name}\n".encode() * 50) for name in FILES])


GENUINE = genuine_archive()


@SETTINGS
@given(data=st.one_of(
    st.binary(max_size=3000),
    st.binary(max_size=200).map(lambda tail: b"PK\x03\x04" + tail),
    st.integers(0, len(GENUINE) - 1).map(lambda cut: GENUINE[:cut]),
    st.tuples(st.integers(0, len(GENUINE) - 1), st.integers(1, 255)).map(
        lambda spot: GENUINE[:spot[0]] + bytes([GENUINE[spot[0]] ^ spot[1]])
        + GENUINE[spot[0] + 1:])),
    published=st.booleans())
def test_random_or_damaged_bytes_never_install(
        httpd: ThreadingHTTPServer, data: bytes, published: bool) -> None:
    with sandbox(httpd, {"ml-10m.zip": data},
                 {"ml-10m": GENUINE} if published else None) as (_, tmp):
        result = install("ml-10m")
        if isinstance(result, Exception):
            assert_clean_failure(result, tmp, "ml-10m")
            return
        # a flipped byte the zip format does not cover (e.g. a timestamp) may still install
        assert not published and not result[1].verified
        assert {name: (result[0] / name).read_bytes() for name in FILES} == {
            name: f"{name}\n".encode() * 50 for name in FILES}


@SETTINGS
@given(part=st.one_of(
    st.binary(max_size=2 * len(GENUINE)),
    st.integers(0, len(GENUINE)).map(lambda cut: GENUINE[:cut]),
    st.just(GENUINE + b"tail")),
    published=st.booleans(), ranges=st.sampled_from(["honour", "ignore", "from-zero"]))
def test_a_garbage_part_never_breaks_the_next_download(
        httpd: ThreadingHTTPServer, part: bytes, published: bool, ranges: str) -> None:
    with sandbox(httpd, {"ml-10m.zip": GENUINE},
                 {"ml-10m": GENUINE} if published else None) as (state, tmp):
        state.ranges = ranges  # type: ignore[assignment]
        (tmp / "cache" / "downloads").mkdir(parents=True)
        (tmp / "cache" / "downloads" / "ml-10m.zip.part").write_bytes(part)
        result = install("ml-10m")
        assert not isinstance(result, Exception), result
        folder, integrity = result
        assert (folder / "tags.dat").read_bytes() == b"tags.dat\n" * 50
        assert integrity.verified == published
        assert bool(VERIFIED_WORD.search(str(integrity))) == published
        assert not (tmp / "cache" / "downloads" / "ml-10m.zip.part").exists()
        if ranges == "honour":
            assert [r for _, r in state.requests] == expected_requests(part, published)


def expected_requests(part: bytes, published: bool) -> list[str | None]:
    """A .part is resumed only under a known sum and known size; garbage restarts once."""
    resumable = published and 0 < len(part) <= len(GENUINE)
    if not resumable:
        return [None]
    if len(part) == len(GENUINE):
        return [] if part == GENUINE else [None]
    return [f"bytes={len(part)}-"] + ([] if GENUINE.startswith(part) else [None])


@SETTINGS
@given(cut=st.none() | st.integers(0, len(GENUINE) - 1), announce=st.booleans(),
       html=st.booleans(), trailing=st.sampled_from([b"", b"<html>oops</html>"]),
       published=st.booleans())
def test_a_misbehaving_server_gives_a_clean_result(
        httpd: ThreadingHTTPServer, cut: int | None, announce: bool, html: bool,
        trailing: bytes, published: bool) -> None:
    with sandbox(httpd, {"ml-10m.zip": GENUINE},
                 {"ml-10m": GENUINE} if published else None) as (state, tmp):
        state.cut_after, state.announce_length, state.trailing = cut, announce, trailing
        state.content_type = "text/html" if html else "application/zip"
        result = install("ml-10m")
        assert len(state.requests) <= 3
        if isinstance(result, Exception):
            assert_clean_failure(result, tmp, "ml-10m")
            assert html or trailing or (cut is not None and not announce)
            return
        folder, integrity = result
        assert (folder / "ratings.dat").read_bytes() == b"ratings.dat\n" * 50
        assert integrity.verified == published


@pytest.mark.parametrize("hazard", ["bomb", "traversal", "many"])
def test_the_cli_reports_a_hostile_archive_in_one_line(
        httpd: ThreadingHTTPServer, capsys: pytest.CaptureFixture, hazard: str) -> None:
    members, words = HAZARDS[hazard]
    archive = zip_bytes([(f"{ROOT}/{name}", b"x") for name in FILES] + members)
    with sandbox(httpd, {"ml-10m.zip": archive}) as (_, tmp):
        status = main(["datasets", "download", "ml-10m"])
        assert not list(tmp.rglob("evil.txt"))
    out, err = capsys.readouterr()
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: ") and words in err and "Traceback" not in err
