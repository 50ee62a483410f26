"""Download files over HTTP with resume and SHA-256 checks; extract zip archives safely."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import os
import shutil
import stat
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
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
#: an archive may expand to at most this many times its size (MovieLens zips expand 3-5x)
MAX_EXPANSION = 20
#: at most this many members in an archive (MovieLens zips hold at most about 25)
MAX_MEMBERS = 100
#: what zipfile raises on a damaged or unsupported archive
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
               ValueError)
#: a file's known size and the most bytes accepted without one
_Sizes = tuple[int | None, int | None]
#: errors after which a download may succeed by resuming
_TRANSIENT = (ConnectionError, TimeoutError, http.client.HTTPException, urllib.error.URLError)


class ChecksumError(ValueError):
    """A file's SHA-256 is not the expected one."""

    def __init__(self, path: str | Path, expected: str, actual: str, hint: str = ""):
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        super().__init__(f"{path}: SHA-256 mismatch: expected {expected}, actual {actual}"
                         + (f"; {hint}" if hint else ""))


class DownloadError(OSError):
    """A download failed: an HTTP error or a misbehaving server (its bytes are discarded), or
    a transfer cut too often (the ``.part`` file is kept for the next run)."""


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
    size: int | None = None,
    max_size: int | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    Bytes go to ``dest.part``. A ``.part`` left by an earlier run is resumed (HTTP Range
    request) only when ``sha256`` is known, so that the final check catches a garbage
    prefix, and it is no longer than ``size``; otherwise it is deleted and the download
    starts from zero. When a resumed file fails the check, the download restarts from zero
    once. A cut connection is resumed up to ``retries`` times. A server that announces a
    length other than ``size``, sends more (or, without ``size``, more than ``max_size``),
    or answers with an HTML page raises `DownloadError`; a final SHA-256 mismatch deletes
    the download and raises `ChecksumError`. Only http(s) URLs are fetched. An existing
    ``dest`` that matches ``sha256`` (or any, without one) is kept.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"{url}: not an http:// or https:// URL")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    transfer = functools.partial(_transfer, url, part, (size, max_size), timeout, progress,
                                 retries, sha256 is not None)
    kept = _keep_part(part, size, sha256)
    if not (kept and part.stat().st_size == size):
        transfer()
    actual = None if sha256 is None else sha256_file(part)
    if actual != sha256 and kept:  # the bytes kept from an earlier run were not the file's
        part.unlink()
        transfer()
        actual = sha256_file(part)
    if sha256 is not None and actual != sha256:
        part.unlink()
        raise ChecksumError(dest, sha256, actual or "")
    os.replace(part, dest)
    return dest


def _keep_part(part: Path, size: int | None, sha256: str | None) -> bool:
    """Whether a non-empty ``.part`` from an earlier run is kept for resuming; else delete it."""
    if not part.exists() and not part.is_symlink():
        return False
    if not part.is_file():
        raise DownloadError(f"{part}: in the way of the download and not a file; remove it")
    length = part.stat().st_size
    if sha256 is not None and (size is None or length <= size):
        return length > 0
    part.unlink()
    return False


def _transfer(url: str, part: Path, sizes: _Sizes, timeout: float, progress: bool,
              retries: int, resumable: bool) -> None:
    """Fetch into ``part``, resuming a cut transfer up to ``retries`` times."""
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, sizes, timeout, progress)
            return
        except DownloadError:  # the server broke the protocol: keep none of its bytes
            part.unlink(missing_ok=True)
            raise
        except _TRANSIENT as exc:
            if attempt == retries:
                got = part.stat().st_size if part.exists() else 0
                then = f"run again to resume from {part}" if resumable and got else \
                    "run again to retry"
                raise DownloadError(f"download of {url} failed after {got} bytes ({exc}); "
                                    f"{then}") from exc


def _fetch(url: str, part: Path, sizes: _Sizes, timeout: float, progress: bool) -> None:
    """One transfer into ``part``, resuming from its current size when the server allows it."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout)
    start = None if response is None else _start(response, url, offset)
    if response is None or start is None:  # the server cannot resume this part: restart
        if response is not None:
            response.close()
        part.unlink()
        return _fetch(url, part, sizes, timeout, progress)
    with response:
        total = _expected_total(response, url, start, sizes)
        limit = total if total is not None else sizes[1]
        with open(part, "ab" if start else "wb") as out, \
                _progress_bar(part.name.removesuffix(".part"), total, start, progress) as advance:
            for block in iter(lambda: response.read(CHUNK_SIZE), b""):
                if limit is not None and out.tell() + len(block) > limit:
                    raise DownloadError(f"{url}: the server sent more than {limit} bytes")
                out.write(block)
                advance(len(block))
    if total is not None and part.stat().st_size < total:
        raise _ShortTransfer(f"connection closed at {part.stat().st_size} of {total} bytes")
    return None


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """The response to a GET from byte ``offset`` on; None when the range is refused (416)."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None


def _start(response: http.client.HTTPResponse, url: str, offset: int) -> int | None:
    """Where the body starts in the file: 0, ``offset``, or None for a range not asked for."""
    if response.status != 206:
        return 0
    if response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
        return offset
    if offset:
        return None
    raise DownloadError(f"{url}: the server sent part of the file (HTTP 206) unasked")


def _expected_total(response: http.client.HTTPResponse, url: str, start: int,
                    sizes: _Sizes) -> int | None:
    """The file's length as announced (else its known size); refuses HTML, a length other
    than the known size, and one over the maximum."""
    size, max_size = sizes
    if response.headers.get("Content-Type", "").startswith("text/html"):
        raise DownloadError(f"{url}: the server sent an HTML page, not the file")
    total = size if response.length is None else start + response.length
    if size is not None and total != size:
        raise DownloadError(f"{url}: the server announces {total} bytes, expected {size}")
    if max_size is not None and total is not None and total > max_size:
        raise DownloadError(f"{url}: the server announces {total} bytes, more than the "
                            f"{max_size} allowed")
    return total


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
    *,
    max_bytes: int | None = None,
    max_members: int = MAX_MEMBERS,
) -> Path:
    """Extract ``zip_path`` into the folder ``dest`` atomically and return ``dest``.

    With ``root``, only the members under that top folder of the archive are extracted,
    directly into ``dest``. Refused with a `ValueError` naming the archive: members with
    absolute paths, ``..`` parts, control characters, symlinks or other special files,
    encryption, or a compression other than stored/deflate; duplicate names (ignoring case);
    a name that is both a file and a folder; more than ``max_members`` members; and files
    that would expand to more than ``max_bytes`` (default: `MAX_EXPANSION` times the
    archive's size), checked before anything is written. Files go to a temporary folder;
    ``validate(temp_folder)`` may inspect (and add to) it before the whole folder replaces
    ``dest``, and nothing is left on failure.
    """
    zip_path = Path(zip_path)
    limit = MAX_EXPANSION * zip_path.stat().st_size if max_bytes is None else max_bytes
    try:
        archive = zipfile.ZipFile(zip_path)
    except _ZIP_ERRORS as exc:
        raise ValueError(f"{zip_path}: not a valid zip archive ({exc})") from None
    with archive:
        members = _safe_members(archive, root, zip_path, max_members)
        if not members:
            raise ValueError(f"{zip_path}: no files under {root or 'the archive root'!r}")
        expanded = sum(info.file_size for info, _ in members)
        if expanded > limit:
            raise ValueError(f"{zip_path}: would expand to {expanded:,} bytes, more than the "
                             f"{limit:,} allowed for an archive of its size")
        with atomic_dir(dest) as tmp:
            for info, relative in members:
                _extract_member(archive, info, tmp.joinpath(*relative.parts), zip_path)
            if validate is not None:
                validate(tmp)
    return Path(dest)


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
                    zip_path: Path) -> None:
    """Write one member (at most its declared size: zipfile stops there) to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(info) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK_SIZE)
    except _ZIP_ERRORS as exc:
        raise ValueError(f"{zip_path}: damaged archive member {info.filename!r} ({exc})") from None


def _safe_members(archive: zipfile.ZipFile, root: str | None, zip_path: Path,
                  max_members: int) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Regular-file members (under ``root``, which is stripped) with their relative paths."""
    infos = archive.infolist()
    if len(infos) > max_members:
        raise ValueError(f"{zip_path}: {len(infos):,} archive members, more than the "
                         f"{max_members:,} allowed")
    members = []
    for info in infos:
        problem = _member_problem(info)
        if problem is not None:
            raise ValueError(f"{zip_path}: refusing unsafe archive member {info.filename!r} "
                             f"({problem})")
        name = PurePosixPath(info.filename)
        if info.is_dir() or (root is not None and (name.parts[0] != root or len(name.parts) < 2)):
            continue
        members.append((info, name if root is None else PurePosixPath(*name.parts[1:])))
    _check_layout([relative for _, relative in members], zip_path)
    return members


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member must not be extracted, or None."""
    name = info.filename
    parts = PurePosixPath(name).parts
    if (not parts or name.startswith("/") or ".." in parts
            or any(char in "\\:" or ord(char) < 32 for char in name)):
        return "unsafe path"
    if any(len(part.encode()) > 255 for part in parts):
        return "name too long"
    if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "a link or special file"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"unsupported compression method {info.compress_type}"
    return None


def _check_layout(paths: list[PurePosixPath], zip_path: Path) -> None:
    """Refuse duplicate names (ignoring case) and a name used for a file and a folder."""
    seen: set[str] = set()
    for path in paths:
        key = path.as_posix().casefold()
        if key in seen:
            raise ValueError(f"{zip_path}: duplicate archive member {path.as_posix()!r}")
        seen.add(key)
    for path in paths:
        clash = next((p for p in path.parents if p.as_posix().casefold() in seen), None)
        if clash is not None:
            raise ValueError(f"{zip_path}: archive member {clash.as_posix()!r} is both a file "
                             f"and a folder")
