"""Download files over HTTP with resume and SHA-256 checks; extract zip archives safely."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import stat
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from recforge.io import atomic_dir

DEFAULT_TIMEOUT = 60.0
CHUNK_SIZE = 1 << 20
#: errors after which a download may succeed by resuming
_TRANSIENT = (ConnectionError, TimeoutError, http.client.HTTPException, urllib.error.URLError)


class ChecksumError(ValueError):
    """A file's SHA-256 is not the expected one."""

    def __init__(self, path: str | Path, expected: str, actual: str):
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        super().__init__(f"{path}: SHA-256 mismatch: expected {expected}, actual {actual}")


class DownloadError(OSError):
    """A download failed: HTTP error, or a transfer cut too often (a ``.part`` file is kept)."""


class _ShortTransfer(ConnectionError):
    """The server closed the connection before sending all the announced bytes."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 2,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    Bytes go to ``dest.part``; a ``.part`` left by an interrupted run is resumed with an HTTP
    Range request when the server supports it (otherwise the transfer restarts). A cut
    connection is resumed up to ``retries`` times. With ``sha256`` the finished file is
    verified (a mismatch deletes it and raises `ChecksumError`) before being renamed into
    place. An existing ``dest`` that matches ``sha256`` (or any, without one) is kept.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout, progress)
            break
        except _TRANSIENT as exc:
            if attempt == retries:
                size = part.stat().st_size if part.exists() else 0
                raise DownloadError(f"download of {url} failed after {size} bytes ({exc}); "
                                    f"run again to resume from {part}") from exc
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256:
            part.unlink()
            raise ChecksumError(dest, sha256, actual)
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One transfer into ``part``, resuming from its current size when possible."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part is as long as the file, or longer: restart
            part.unlink()
            return _fetch(url, part, timeout, progress)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    with response:
        resumed = offset > 0 and _resumes_at(response, offset)
        if response.status == 206 and not resumed:  # a range we did not ask for: restart
            part.unlink()
            return _fetch(url, part, timeout, progress)
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as out, \
                _progress_bar(part.name.removesuffix(".part"), total, start, progress) as advance:
            for block in iter(lambda: response.read(CHUNK_SIZE), b""):
                out.write(block)
                advance(len(block))
    if total is not None and part.stat().st_size < total:
        raise _ShortTransfer(f"connection closed at {part.stat().st_size} of {total} bytes")
    return None


def _resumes_at(response: http.client.HTTPResponse, offset: int) -> bool:
    """True when the server answered a Range request with the bytes from ``offset`` on."""
    content_range = response.headers.get("Content-Range", "")
    return response.status == 206 and content_range.startswith(f"bytes {offset}-")


def _console() -> Console:
    return Console(stderr=True)


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, done: int,
                  enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n_bytes)``; draws a Rich bar only when enabled and on a terminal."""
    console = _console()
    if not (enabled and console.is_terminal):
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def extract_zip(
    zip_path: str | Path,
    dest: str | Path,
    root: str | None = None,
    validate: Callable[[Path], None] | None = None,
) -> Path:
    """Extract ``zip_path`` into the folder ``dest`` atomically and return ``dest``.

    With ``root``, only the members under that top folder of the archive are extracted,
    directly into ``dest``. Members with absolute paths, ``..`` parts or symlinks are
    refused. Files go to a temporary folder; ``validate(temp_folder)`` may inspect (and
    add to) it before the whole folder replaces ``dest``, and nothing is left on failure.
    """
    zip_path = Path(zip_path)
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{zip_path}: not a valid zip archive ({exc})") from None
    with archive, atomic_dir(dest) as tmp:
        members = _safe_members(archive, root, zip_path)
        if not members:
            raise ValueError(f"{zip_path}: no files under {root or 'the archive root'!r}")
        for info, relative in members:
            target = tmp.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK_SIZE)
        if validate is not None:
            validate(tmp)
    return Path(dest)


def _safe_members(archive: zipfile.ZipFile, root: str | None,
                  zip_path: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Regular-file members (under ``root``, which is stripped) with their relative paths."""
    members = []
    for info in archive.infolist():
        name = PurePosixPath(info.filename)
        unsafe = (name.is_absolute() or ".." in name.parts or "\\" in info.filename
                  or ":" in info.filename or stat.S_ISLNK(info.external_attr >> 16))
        if unsafe:
            raise ValueError(f"{zip_path}: refusing unsafe archive member {info.filename!r}")
        if info.is_dir():
            continue
        if root is not None:
            if name.parts[0] != root or len(name.parts) < 2:
                continue
            name = PurePosixPath(*name.parts[1:])
        members.append((info, name))
    return members
