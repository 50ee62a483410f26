"""Downloads against a real local HTTP server: resume, checksums, safe extraction, resolution."""

from __future__ import annotations

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
from recforge.data.datasets import DatasetNotFoundError, load_dataset, read_sums, resolve_dataset
from recforge.data.download import (
    ChecksumError,
    DownloadError,
    download_file,
    extract_zip,
    sha256_file,
)

PAYLOAD = np.random.default_rng(0).bytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; it records every request."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: int | None = None  # send only this many body bytes once, then close
    ranges: Literal["honour", "ignore", "from-zero"] = "honour"


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
        ranged = requested is not None and state.ranges != "ignore"
        start = int(requested.removeprefix("bytes=").split("-")[0]) if ranged else 0
        start = 0 if state.ranges == "from-zero" else start
        if start >= len(data) and ranged:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if ranged else 200)
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if state.cut_after is not None:
            body, state.cut_after = body[:state.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ServerState]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    state = ServerState(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


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
        download_file(server.base_url + "data.bin", dest, retries=0, progress=False)
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


@pytest.mark.parametrize(("ranges", "expected"), [
    ("ignore", ["bytes=11-"]), ("from-zero", ["bytes=11-", None])])
def test_server_without_proper_range_support_restarts(
        server: ServerState, tmp_path: Path, ranges: str, expected: list[str | None]) -> None:
    server.files["data.bin"] = PAYLOAD
    server.ranges = ranges
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes")
    dest = download_file(server.base_url + "data.bin", tmp_path / "data.bin", progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == expected


def test_part_longer_than_the_file_restarts(server: ServerState, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD[:1000]
    (tmp_path / "data.bin.part").write_bytes(b"x" * 2000)
    dest = download_file(server.base_url + "data.bin", tmp_path / "data.bin", progress=False)
    assert dest.read_bytes() == PAYLOAD[:1000]
    assert [r for _, r in server.requests] == ["bytes=2000-", None]


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
@pytest.fixture
def served_ml100k(server: ServerState, fake_ml100k: Path, isolated_data_env: Path,
                  monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fake ML-100K zipped on the server, with its sums standing in for the real ones."""
    sums = {path.name: sha256_file(path) for path in fake_ml100k.iterdir()}
    monkeypatch.setattr(datasets, "known_checksums", lambda name: sums if name == "ml-100k" else {})
    monkeypatch.setenv("RECFORGE_DOWNLOAD_URL", server.base_url)
    server.files["ml-100k.zip"] = zip_folder(fake_ml100k, "ml-100k")
    return sums


def test_resolve_downloads_into_the_cache_and_verifies(
        server: ServerState, served_ml100k: dict[str, str], isolated_data_env: Path) -> None:
    folder = resolve_dataset("ml-100k", progress=False)
    assert folder == isolated_data_env / "ml-100k"
    assert read_sums(folder / "SHA256SUMS") == served_ml100k
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
        served_ml100k: dict[str, str], isolated_data_env: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "known_archive_checksum", lambda name: "a" * 64)
    with pytest.raises(ChecksumError, match=r"ml-100k.zip: SHA-256 mismatch"):
        resolve_dataset("ml-100k", progress=False)
    assert not (isolated_data_env / "downloads" / "ml-100k.zip.part").exists()


def test_archive_without_the_expected_files(
        server: ServerState, served_ml100k: dict[str, str], fake_ml100k: Path) -> None:
    (fake_ml100k / "u.item").unlink()
    server.files["ml-100k.zip"] = zip_folder(fake_ml100k, "ml-100k")
    with pytest.raises(ValueError, match=r"ml-100k.zip: the archive has no u.item under ml-100k/"):
        resolve_dataset("ml-100k", progress=False)


def test_dataset_without_published_sums_gets_its_sums_recorded(
        server: ServerState, tmp_path: Path, isolated_data_env: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("ratings.dat", "movies.dat", "users.dat"):
        (source / name).write_text(f"{name}\n")
    server.files["ml-1m.zip"] = zip_folder(source, "ml-1m")
    folder = resolve_dataset("ml-1m", base_url=server.base_url, progress=False)
    assert read_sums(folder / "SHA256SUMS")["users.dat"] == sha256_file(source / "users.dat")
    (folder / "users.dat").write_text("corrupted\n")
    with pytest.raises(ChecksumError, match=r"ml-1m/users.dat: SHA-256 mismatch"):
        resolve_dataset("ml-1m", base_url=server.base_url)
    assert len(server.requests) == 1


def test_unreachable_server_gives_a_not_found_error(
        isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    monkeypatch.setenv("RECFORGE_DOWNLOAD_URL", base)
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("ml-1m", progress=False)
    message = str(info.value)
    assert "download failed" in message and f"{base}ml-1m.zip" in message
    assert f"{isolated_data_env / 'ml-1m'} (no such folder)" in message
