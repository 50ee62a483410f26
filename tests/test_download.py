"""Downloads against a real local HTTP server: resume, checksums, safe extraction, resolution."""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from rich.console import Console

from recforge.data import datasets, download
from recforge.data.datasets import (
    DatasetNotFoundError,
    read_sums,
    recorded_archive_sum,
    resolve_and_verify,
    resolve_dataset,
)
from recforge.data.download import (
    ChecksumError,
    DownloadError,
    download_file,
    extract_zip,
    sha256_file,
)
from recforge.data.loading import load_dataset

PAYLOAD = np.random.default_rng(0).bytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; it records every request."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: int | None = None  # send only this many body bytes once, then close
    ranges: Literal["honour", "ignore", "from-zero", "unasked"] = "honour"
    content_type: str | None = None
    announce_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    trailing: bytes = b""  # sent after the file's bytes (beyond any announced length)


class RangeHandler(BaseHTTPRequestHandler):
    """GET with ``Range: bytes=N-`` support (206/416) and a one-shot connection cut."""

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        requested = self.headers.get("Range")
        state.requests.append((self.path, requested))
        data = state.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        ranged = (requested is not None and state.ranges != "ignore") or state.ranges == "unasked"
        start = int(requested.removeprefix("bytes=").split("-")[0]) if requested and ranged else 0
        start = {"from-zero": 0, "unasked": 1}.get(state.ranges, start)
        if start >= len(data) and ranged:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if ranged else 200)
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if state.announce_length:
            self.send_header("Content-Length", str(len(data) - start))
        if state.content_type is not None:
            self.send_header("Content-Type", state.content_type)
        self.end_headers()
        body = data[start:] + state.trailing
        if state.cut_after is not None:
            body, state.cut_after = body[:state.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def running_server() -> Iterator[ThreadingHTTPServer]:
    """A `RangeHandler` server on 127.0.0.1; its ``state`` may be replaced between requests."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = ServerState(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/")  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[ServerState]:
    with running_server() as httpd:
        yield httpd.state  # type: ignore[attr-defined]


def free_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def zip_folder(folder: Path, root: str, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{root}/{path.name}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ---------------------------------------------------------------------- download_file
def test_full_download_with_checksum(server: ServerState, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    dest = download_file(server.base_url + "data.bin", tmp_path / "sub" / "data.bin",
                         sha256=PAYLOAD_SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    download_file(server.base_url + "data.bin", dest, sha256=PAYLOAD_SHA256)
    assert len(server.requests) == 1  # a verified existing file is not fetched again


def test_interrupted_download_resumes_with_a_range_request(server: ServerState,
                                                           tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    server.cut_after = 100_000
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="failed after 100000 bytes.*run again to resume"):
        download_file(server.base_url + "data.bin", dest, sha256=PAYLOAD_SHA256, retries=0,
                      progress=False)
    assert (tmp_path / "data.bin.part").stat().st_size == 100_000 and not dest.exists()
    download_file(server.base_url + "data.bin", dest, sha256=PAYLOAD_SHA256,
                  progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=100000-")]


def test_cut_connection_is_retried_automatically(server: ServerState, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    server.cut_after = 1234
    dest = download_file(server.base_url + "data.bin", tmp_path / "data.bin", retries=1,
                         progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, "bytes=1234-"]


def fetch(server: ServerState, dest: Path, **kwargs: object) -> Path:
    return download_file(server.base_url + "data.bin", dest, progress=False, **kwargs)


@pytest.mark.parametrize(("ranges", "expected"), [
    ("ignore", ["bytes=11-"]), ("from-zero", ["bytes=11-", None])])
def test_server_without_proper_range_support_restarts(
        server: ServerState, tmp_path: Path, ranges: str, expected: list[str | None]) -> None:
    server.files["data.bin"] = PAYLOAD
    server.ranges = ranges
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:11])
    assert fetch(server, tmp_path / "data.bin", sha256=PAYLOAD_SHA256).read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == expected


def test_part_longer_than_the_file_restarts_after_a_416(server: ServerState,
                                                        tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD[:1000]
    (tmp_path / "data.bin.part").write_bytes(b"x" * 2000)
    digest = hashlib.sha256(PAYLOAD[:1000]).hexdigest()
    assert fetch(server, tmp_path / "data.bin", sha256=digest).read_bytes() == PAYLOAD[:1000]
    assert [r for _, r in server.requests] == ["bytes=2000-", None]


@pytest.mark.parametrize(("part", "known"), [
    (b"x" * 300_001, True),  # longer than the known size: never sent as a Range
    (b"garbage", False),  # without a known sum nothing would catch a garbage prefix
])
def test_a_part_that_cannot_be_checked_is_discarded_before_any_request(
        server: ServerState, tmp_path: Path, part: bytes, known: bool) -> None:
    server.files["data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(part)
    sums = {"sha256": PAYLOAD_SHA256, "size": len(PAYLOAD)} if known else {}
    assert fetch(server, tmp_path / "data.bin", **sums).read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None]


def test_a_garbage_part_is_resumed_then_restarted_from_zero_once(
        server: ServerState, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(b"\0" * 5000)
    dest = fetch(server, tmp_path / "data.bin", sha256=PAYLOAD_SHA256, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == ["bytes=5000-", None]


def test_a_complete_part_is_checked_without_a_request(server: ServerState,
                                                      tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    dest = fetch(server, tmp_path / "data.bin", sha256=PAYLOAD_SHA256, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and server.requests == []


def test_a_folder_in_place_of_the_part_is_left_alone(server: ServerState,
                                                     tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").mkdir()
    with pytest.raises(DownloadError, match=r"data.bin.part: in the way of the download"):
        fetch(server, tmp_path / "data.bin")
    assert (tmp_path / "data.bin.part").is_dir() and server.requests == []


@pytest.mark.parametrize(("setup", "message"), [
    ({"content_type": "text/html; charset=utf-8"}, "sent an HTML page, not the file"),
    ({"files": {"data.bin": b"short"}}, "announces 5 bytes, expected 300000"),
    ({"announce_length": False, "trailing": b"more"}, "sent more than 300000 bytes"),
    ({"ranges": "unasked"}, r"sent part of the file \(HTTP 206\) unasked"),
])
def test_a_misbehaving_server_gives_a_one_line_error(
        server: ServerState, tmp_path: Path, setup: dict[str, object], message: str) -> None:
    server.files["data.bin"] = PAYLOAD
    for name, value in setup.items():
        setattr(server, name, value)
    with pytest.raises(DownloadError, match=message) as info:
        fetch(server, tmp_path / "data.bin", sha256=PAYLOAD_SHA256, size=len(PAYLOAD))
    assert "\n" not in str(info.value) and server.base_url + "data.bin" in str(info.value)
    assert not (tmp_path / "data.bin").exists() and len(server.requests) == 1


@pytest.mark.parametrize("url", ["file:///etc/passwd", "notaurl/data.bin", "ftp://h/data.bin"])
def test_only_http_urls_are_downloaded(tmp_path: Path, url: str) -> None:
    with pytest.raises(DownloadError, match=f"{url}: not an http:// or https:// URL"):
        download_file(url, tmp_path / "data.bin", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_does_not_promise_a_resume(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"failed after 0 bytes .*; run again to retry$"):
        download_file(f"http://127.0.0.1:{free_port()}/data.bin", tmp_path / "data.bin",
                      sha256=PAYLOAD_SHA256, progress=False, retries=0)


@pytest.mark.parametrize("announce", [True, False])
def test_without_a_known_size_the_maximum_holds(server: ServerState, tmp_path: Path,
                                                announce: bool) -> None:
    server.files["data.bin"] = PAYLOAD
    server.announce_length = announce
    message = "announces 300000 bytes, more than the 299999" if announce else "more than 299999"
    with pytest.raises(DownloadError, match=message):
        fetch(server, tmp_path / "data.bin", max_size=len(PAYLOAD) - 1)
    assert list(tmp_path.iterdir()) == []
    assert fetch(server, tmp_path / "data.bin", max_size=len(PAYLOAD)).read_bytes() == PAYLOAD


def test_without_a_length_the_whole_body_is_taken(server: ServerState, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    server.announce_length = False
    assert fetch(server, tmp_path / "data.bin", sha256=PAYLOAD_SHA256).read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_download(server: ServerState, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    dest = tmp_path / "data.bin"
    with pytest.raises(ChecksumError) as info:
        download_file(server.base_url + "data.bin", dest, sha256="0" * 64, progress=False)
    assert (info.value.path, info.value.expected) == (str(dest), "0" * 64)
    assert info.value.actual == PAYLOAD_SHA256
    assert f"{dest}: SHA-256 mismatch: expected {'0' * 64}" in str(info.value)
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()


def test_http_error_is_not_retried(server: ServerState, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(server.base_url + "missing.zip", tmp_path / "m.zip", progress=False)
    assert len(server.requests) == 1


def test_progress_bar_on_a_terminal(server: ServerState, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(download, "_console",
                        lambda: Console(file=out, force_terminal=True, width=100))
    server.files["data.bin"] = PAYLOAD
    download_file(server.base_url + "data.bin", tmp_path / "data.bin", progress=True)
    assert "data.bin" in out.getvalue()


# ---------------------------------------------------------------------- extract_zip
def test_extract_zip_strips_the_root_folder(fake_ml100k: Path, tmp_path: Path) -> None:
    archive = tmp_path / "ml.zip"
    archive.write_bytes(zip_folder(fake_ml100k, "ml-100k", {"__MACOSX/._u.data": b"junk"}))
    dest = extract_zip(archive, tmp_path / "out", root="ml-100k")
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in fake_ml100k.iterdir())
    assert (dest / "u.data").read_bytes() == (fake_ml100k / "u.data").read_bytes()


def symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("member", ["../evil.txt", "ok/../../evil.txt", "/abs/evil.txt",
                                    "C:\\evil.txt", symlink_member("root/link")])
def test_extract_zip_refuses_unsafe_members(tmp_path: Path, member: str | zipfile.ZipInfo) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("root/fine.txt", b"fine")
        handle.writestr(member, b"/etc/passwd")
    with pytest.raises(ValueError, match="refusing unsafe archive member"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def member(name: str, mode: int = 0, compress_type: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr, info.compress_type = mode << 16, compress_type
    return info


ENCRYPTED = "root/secret"  # write_zip marks this member as encrypted


def write_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, data in members:
            handle.writestr(name, data)
    data = bytearray(buffer.getvalue())
    entry = data.find(b"PK\x01\x02")  # central directory entries
    while entry != -1:
        name_length = int.from_bytes(data[entry + 28:entry + 30], "little")
        if data[entry + 46:entry + 46 + name_length] == ENCRYPTED.encode():
            data[entry + 8] |= 0x1  # general purpose flag bit 0: encrypted
        entry = data.find(b"PK\x01\x02", entry + 4)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("members", "message"), [
    ([("root/a.txt", b"a"), ("root/A.TXT", b"b")], "duplicate archive member 'A.TXT'"),
    ([("root/a", b"a"), ("root/a/b", b"b")], "member 'a' is both a file and a folder"),
    ([("root/ok", b"1"), ("root/bad\nname", b"2")], r"unsafe archive member .*unsafe path"),
    ([("./", b""), ("root/ok", b"1")], r"unsafe archive member './' \(unsafe path\)"),
    ([("root/" + "n" * 256, b"1")], r"\(name too long\)"),
    ([(member("root/fifo", stat.S_IFIFO | 0o644), b"")], r"\(a link or special file\)"),
    ([(ENCRYPTED, b"x")], r"\(encrypted\)"),
    ([(member("root/odd", compress_type=zipfile.ZIP_BZIP2), b"x")],
     r"\(unsupported compression method 12\)"),
    ([(f"root/f{i}", b"") for i in range(101)], "101 archive members, more than the 100"),
    ([("root/bomb", bytes(2_000_000))], r"would expand to 2,000,000 bytes, more than the"),
])
def test_extract_zip_refuses_hostile_archives(
        tmp_path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]], message: str) -> None:
    archive = write_zip(tmp_path / "bad.zip", members)
    with pytest.raises(ValueError, match=message) as info:
        extract_zip(archive, tmp_path / "out", root="root")
    assert str(info.value).startswith(f"{archive}: ") and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


def test_extract_zip_size_limit_is_relative_to_the_archive(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "big.zip", [("root/zeros", PAYLOAD[:20_000])])
    assert (extract_zip(archive, tmp_path / "out", root="root") / "zeros").stat().st_size == 20_000
    with pytest.raises(ValueError, match="more than the 19,999 allowed"):
        extract_zip(archive, tmp_path / "out2", root="root", max_bytes=19_999)


def test_extract_zip_damaged_member_is_one_line(tmp_path: Path) -> None:
    payload = np.random.default_rng(1).bytes(5000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as handle:
        handle.writestr("root/f", payload)
    data = bytearray(buffer.getvalue())
    data[data.index(payload) + 100] ^= 0xFF
    archive = tmp_path / "bad.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad.zip: damaged archive member 'root/f' \(Bad CRC-32"):
        extract_zip(archive, tmp_path / "out", root="root")
    assert not (tmp_path / "out").exists()


def test_extract_zip_failed_validation_leaves_nothing(fake_ml100k: Path, tmp_path: Path) -> None:
    archive = tmp_path / "ml.zip"
    archive.write_bytes(zip_folder(fake_ml100k, "ml-100k"))

    def reject(folder: Path) -> None:
        assert (folder / "u.data").is_file()
        raise ValueError("rejected")

    with pytest.raises(ValueError, match="rejected"):
        extract_zip(archive, tmp_path / "out", root="ml-100k", validate=reject)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake", "ml.zip"]


def test_extract_zip_rejects_a_non_zip(tmp_path: Path) -> None:
    archive = tmp_path / "fake.zip"
    archive.write_text("<html>not found</html>")
    with pytest.raises(ValueError, match="not a valid zip archive"):
        extract_zip(archive, tmp_path / "out")


# ---------------------------------------------------------------------- resolve_dataset
def publish(monkeypatch: pytest.MonkeyPatch, name: str, archive: bytes) -> str:
    """Make ``archive`` the published archive of dataset ``name``; returns its SHA-256."""
    digest = hashlib.sha256(archive).hexdigest()
    published = datasets.ArchiveSum(digest, len(archive), "test")
    monkeypatch.setattr(datasets, "known_archive",
                        lambda dataset: published if dataset == name else None)
    return digest


@pytest.fixture
def served_ml100k(server: ServerState, fake_ml100k: Path, isolated_data_env: Path,
                  monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fake ML-100K zipped on the server, with its sums standing in for the published ones."""
    sums = {path.name: sha256_file(path) for path in fake_ml100k.iterdir()}
    monkeypatch.setattr(datasets, "known_checksums", lambda name: sums if name == "ml-100k" else {})
    monkeypatch.setenv("RECFORGE_DOWNLOAD_URL", server.base_url)
    server.files["ml-100k.zip"] = zip_folder(fake_ml100k, "ml-100k")
    publish(monkeypatch, "ml-100k", server.files["ml-100k.zip"])
    return sums


def test_resolve_downloads_into_the_cache_and_verifies(
        server: ServerState, served_ml100k: dict[str, str], isolated_data_env: Path) -> None:
    folder, integrity = resolve_and_verify("ml-100k", progress=False)
    assert folder == isolated_data_env / "ml-100k"
    assert integrity.verified and str(integrity).startswith("verified (its files match")
    assert read_sums(folder / "SHA256SUMS") == served_ml100k
    assert recorded_archive_sum(folder / "SHA256SUMS") == datasets.known_archive("ml-100k").sha256
    assert not (isolated_data_env / "downloads" / "ml-100k.zip").exists()
    data = load_dataset("ml-100k")
    assert (data.n_users, data.n_items, len(data)) == (3, 4, 8)
    assert server.requests == [("/ml-100k.zip", None)]


def test_download_with_a_corrupt_file_is_rejected(
        served_ml100k: dict[str, str], isolated_data_env: Path) -> None:
    served_ml100k["u.user"] = "f" * 64
    with pytest.raises(ChecksumError, match=r"u.user: SHA-256 mismatch: expected f{64}"):
        resolve_dataset("ml-100k", progress=False)
    assert not (isolated_data_env / "ml-100k").exists()
    assert not (isolated_data_env / "downloads" / "ml-100k.zip").exists()


def test_archive_checksum_is_checked_when_known(
        server: ServerState, served_ml100k: dict[str, str], isolated_data_env: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = datasets.ArchiveSum("a" * 64, len(server.files["ml-100k.zip"]), "test")
    monkeypatch.setattr(datasets, "known_archive", lambda name: wrong)
    with pytest.raises(ChecksumError, match=r"ml-100k.zip: SHA-256 mismatch"):
        resolve_dataset("ml-100k", progress=False)
    assert not (isolated_data_env / "downloads" / "ml-100k.zip.part").exists()
    assert not (isolated_data_env / "ml-100k").exists()


def test_archive_without_the_expected_files(
        server: ServerState, served_ml100k: dict[str, str], fake_ml100k: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (fake_ml100k / "u.item").unlink()
    server.files["ml-100k.zip"] = zip_folder(fake_ml100k, "ml-100k")
    publish(monkeypatch, "ml-100k", server.files["ml-100k.zip"])
    with pytest.raises(ValueError, match=r"ml-100k.zip: the archive has no u.item under ml-100k/"):
        resolve_dataset("ml-100k", progress=False)


def write_files(folder: Path, names: tuple[str, ...]) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text(f"{name}\n")
    return folder


ML10M_FILES = ("ratings.dat", "movies.dat", "tags.dat")
ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat")


def test_dataset_without_a_published_sum_is_installed_unverified(
        server: ServerState, tmp_path: Path, isolated_data_env: Path) -> None:
    source = write_files(tmp_path / "src", ML10M_FILES)
    server.files["ml-10m.zip"] = zip_folder(source, "ml-10M100K")
    folder, integrity = resolve_and_verify("ml-10m", base_url=server.base_url, progress=False)
    assert not integrity.verified
    assert str(integrity) == ("unverified (no published checksum for ml-10m; its files match "
                              "the sums recorded when it was extracted)")
    assert read_sums(folder / "SHA256SUMS")["tags.dat"] == sha256_file(source / "tags.dat")
    assert recorded_archive_sum(folder / "SHA256SUMS") == hashlib.sha256(
        server.files["ml-10m.zip"]).hexdigest()
    (folder / "tags.dat").write_text("corrupted\n")
    with pytest.raises(ChecksumError, match=rf"ml-10m/tags.dat: SHA-256 mismatch: .*; delete "
                                            rf"{folder} to download it again$"):
        resolve_dataset("ml-10m", base_url=server.base_url)
    assert len(server.requests) == 1


def test_verified_archive_then_tampered_folder(
        server: ServerState, tmp_path: Path, isolated_data_env: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_files(tmp_path / "src", ML1M_FILES)
    server.files["ml-1m.zip"] = zip_folder(source, "ml-1m")
    publish(monkeypatch, "ml-1m", server.files["ml-1m.zip"])
    folder, integrity = resolve_and_verify("ml-1m", base_url=server.base_url, progress=False)
    assert str(integrity).startswith("verified (extracted from ml-1m.zip, whose SHA-256 matched")
    sums_file = folder / "SHA256SUMS"
    sums_file.write_text(sums_file.read_text().replace("# archive", "# was"))
    integrity = resolve_and_verify("ml-1m", base_url=server.base_url)[1]
    assert str(integrity).startswith("unverified (") and f"{sums_file} does not come" in str(
        integrity)
    (folder / "users.dat").write_text("tampered\n")
    with pytest.raises(ChecksumError, match=r"ml-1m/users.dat: SHA-256 mismatch"):
        resolve_dataset("ml-1m", base_url=server.base_url)
    assert len(server.requests) == 1


def test_unreachable_server_gives_a_not_found_error(
        isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = f"http://127.0.0.1:{free_port()}/"
    monkeypatch.setenv("RECFORGE_DOWNLOAD_URL", base)
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("ml-1m", progress=False)
    message = str(info.value)
    assert "download failed" in message and f"{base}ml-1m.zip" in message
    assert f"{isolated_data_env / 'ml-1m'} (no such folder)" in message
