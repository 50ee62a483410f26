"""Safe output for every file and folder recforge writes, and checked reading of saved folders.

Ownership
    recforge replaces only what it wrote itself. Every folder it writes carries a marker,
    ``.recforge.json`` (`MARKER`): the folder's kind (``model``, ``index``, ``run``, ``tune``,
    ``split``, ``report``, ``checkpoint``), the marker format, the creation time and the
    SHA-256 of every other file in the folder. The marker is written last, so a folder with
    a marker is complete, and readers check the sums, so a damaged or tampered file is
    refused rather than served. A folder target is written only when it is absent, an empty
    folder, a folder whose marker names the same kind, or (for kinds with an earlier format
    that had no marker) a folder the writer's ``legacy`` test recognises. Anything else (a
    user's folder, a regular file, a symbolic link) raises `OutputExistsError` naming the
    path. A file target (`atomic_path` with ``owned``) is replaced only when ``owned(path)``
    says recforge wrote it.

Locking
    A writer holds an advisory lock (``fcntl.flock``, non-blocking) on ``.NAME.recforge.lock``
    beside the target from the ownership check until the new content is in place; a second
    writer gets `ConcurrentWriteError` naming the path. The lock file is removed on release;
    a locker re-checks that the file it locked is still the one at the lock path, so the
    removal cannot let two writers in.

Crash safety
    The content is written into ``.NAME.tmp-PID-RAND`` beside the target and flushed to disk
    (fsync), then switched in. An absent target is created by one ``rename``. An existing
    one is swapped with the new folder in one atomic step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``); the old content, now under the temporary name, is then deleted.
    Where the system cannot exchange (not Linux, some network filesystems), the old folder
    is renamed to ``.NAME.old-PID-RAND`` and the new one renamed into place; a crash between
    the two renames leaves no target, which `recover` repairs.

Recovery
    The next writer (under the lock) and a reader that finds the target missing call
    `recover`: leftovers whose names match recforge's own patterns above and whose PID is no
    longer running are cleaned up: an ``old`` folder is renamed back to a missing target
    (the interrupted write never reported success), everything else is deleted. Nothing
    else beside the target is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recforge import __version__
from recforge.errors import ConcurrentWriteError, CorruptFileError, InputError, OutputExistsError

#: the ownership marker and manifest of every folder recforge writes
MARKER = ".recforge.json"
MARKER_FORMAT = 1
#: metadata files larger than this are refused unread
MAX_JSON_BYTES = 64 << 20
#: deepest nesting accepted in a metadata file
MAX_JSON_DEPTH = 32
_CHUNK = 1 << 20
Legacy = Callable[[Path], bool]


class MissingFileError(CorruptFileError, FileNotFoundError):
    """A saved folder, or a file a saved folder needs, is not there."""


# ---------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, kind: str | None = None, *, legacy: Legacy | None = None,
               update: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block succeeds it becomes
    ``path`` in one atomic step (a reader sees the old or the new folder, never none or a
    mix), and on failure nothing changes.

    With ``kind``, ``path`` is checked and locked on entry (before the block's work), so an
    unusable target fails fast: `OutputExistsError` unless it is absent, empty, a recforge
    ``kind`` folder or recognised by ``legacy``; `ConcurrentWriteError` while another
    process writes it. The new folder gets the marker with its files' sums. With ``update``
    the temporary folder starts with (hard links to) the current folder's files. Without
    ``kind`` (recforge's own caches) the target is replaced whatever it holds, unlocked.

    Hard links are shared with the current folder: replace such a file (`atomic_path`, or
    unlink it first), never write into it."""
    path = _output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _claimed(path, lambda: check_target(path, kind, legacy)) if kind else _unlocked(path):
        tmp = _leftover_name(path, "tmp")
        tmp.mkdir()
        try:
            if update and path.is_dir():
                _link_tree(path, tmp)
            yield tmp
            if kind:
                _seal(tmp, kind)
            _fsync_tree(tmp)
            os.chmod(tmp, 0o777 & ~_umask())
            _switch(tmp, path)
        finally:
            _remove(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike,
                owned: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` (one atomic rename) only
    if the block succeeds.

    With ``owned``, an existing ``path`` is replaced only if ``owned(path)`` (recforge wrote
    it; else `OutputExistsError`), and the path is locked while written
    (`ConcurrentWriteError` for a second writer). Without it (caches) nothing is checked."""
    path = _output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _claimed(path, lambda: _check_file_target(path, owned)) if owned else _unlocked(path):
        tmp = _leftover_name(path, "tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            yield tmp
            _fsync(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _output_path(path: str | os.PathLike) -> Path:
    """``path`` as a `Path`; `InputError` when it names no file or folder ('' or '/')."""
    out = Path(path)
    if not out.name or out.name in (".", ".."):
        raise InputError(f"{str(path)!r} is not a usable output path (it names no file or "
                         "folder)")
    return out


def check_target(path: Path, kind: str, legacy: Legacy | None = None) -> None:
    """Return if ``path`` may be written as a recforge ``kind`` folder (absent, empty, a
    ``kind`` folder by its marker, or ``legacy(path)``); else `OutputExistsError`."""
    if path.is_symlink():
        raise OutputExistsError(f"{path} is a symbolic link; recforge writes only real "
                                "folders (choose another output path)")
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputExistsError(f"{path} exists and is a file, not a recforge {kind} folder; "
                                "refusing to replace it (choose another output path)")
    found = marker_kind(path)
    if found == kind:
        _check_no_foreign_files(path)
        return
    if not any(path.iterdir()) or (found is None and legacy is not None and legacy(path)):
        return
    what = f"a recforge {found} folder" if found else "a folder recforge did not write"
    raise OutputExistsError(f"{path} holds {what}, not a recforge {kind} folder; refusing to "
                            "replace it (choose another output path or remove it yourself)")


def _check_no_foreign_files(folder: Path) -> None:
    """`OutputExistsError` when a marked ``folder`` holds files its marker does not list
    (added after recforge wrote it: replacing the folder would delete them)."""
    listed = set(read_marker(folder)["files"]) | {MARKER}
    foreign = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                     if not p.is_dir() and p.relative_to(folder).as_posix() not in listed)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise OutputExistsError(f"{folder} holds files recforge did not write ({shown}); "
                                "refusing to replace it (move them out or choose another "
                                "output path)")


def _check_file_target(path: Path, owned: Callable[[Path], bool]) -> None:
    if path.is_symlink() or (path.exists() and (not path.is_file() or not owned(path))):
        raise OutputExistsError(f"{path} exists and was not written by recforge; refusing to "
                                "replace it (choose another output path)")


@contextlib.contextmanager
def _claimed(path: Path, check: Callable[[], None]) -> Iterator[None]:
    """Hold ``path``'s advisory write lock; under it, clean up after killed writers
    (`recover`), then run ``check``."""
    lock = path.with_name(f".{path.name}.recforge.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConcurrentWriteError(f"{path}: another process is writing it (lock {lock} "
                                       "is held); try again when it has finished") from None
        if _same_file(fd, lock):
            break
        os.close(fd)  # the holder removed the file while we waited: lock the new one
    try:
        recover(path)
        check()
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def _unlocked(path: Path) -> Iterator[None]:
    """An unguarded write (a cache): leftovers of killed writers are still cleaned up."""
    recover(path)
    yield


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _switch(tmp: Path, path: Path) -> None:
    """Put folder ``tmp`` at ``path`` atomically; any old content ends up at ``tmp`` (or is
    removed), so that the caller deletes it."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    if _exchange(tmp, path):
        return
    old = _leftover_name(path, "old")
    os.rename(path, old)
    os.rename(tmp, path)
    _remove(old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically; False (nothing changed) where the system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _load_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    func = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if func is not None:
        func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
        func.restype = ctypes.c_int
    return func


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_RENAMEAT2 = _load_renameat2()


# ---------------------------------------------------------------------- recovery
def _leftover_name(path: Path, what: str) -> Path:
    return path.with_name(f".{path.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}")


def _leftover_pattern(path: Path) -> re.Pattern[str]:
    """Names of ``path``'s temporary and old copies (the suffix-less ``old-PID`` is the
    previous version's)."""
    return re.compile(rf"\.{re.escape(path.name)}\.(tmp|old)-(\d+)(-[0-9a-f]{{8}})?")


def recover(path: str | os.PathLike) -> None:
    """Clean up after writers of ``path`` that were killed: restore a missing ``path`` from
    its ``old`` copy and delete the other leftovers. Only names of recforge's own patterns
    whose process is no longer running are touched."""
    path = Path(path)
    for what, entry in sorted(_dead_leftovers(path), key=lambda e: e[0] != "old"):
        # old copies first: one is restored before the others are deleted
        if what == "old" and not os.path.lexists(path):
            os.rename(entry, path)
        else:
            _remove(entry)


def _dead_leftovers(path: Path) -> list[tuple[str, Path]]:
    """``(tmp|old, entry)`` for the leftovers of ``path``'s writers that are not running."""
    if not path.parent.is_dir():
        return []
    pattern = _leftover_pattern(path)
    matches = [(pattern.fullmatch(entry.name), entry) for entry in path.parent.iterdir()]
    return [(match.group(1), entry) for match, entry in matches
            if match and not _running(int(match.group(2)))]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def readable(path: str | os.PathLike) -> Path:
    """``path`` as a saved folder to read: a missing one left so by a killed writer (its old
    copy beside it) is restored first. Never blocks: while a live writer holds the lock, the
    path is returned as it is."""
    path = Path(path)
    if not os.path.lexists(path) and _dead_leftovers(path):
        with contextlib.suppress(ConcurrentWriteError), _claimed(path, lambda: None):
            pass  # taking the lock recovers
    return path


# ---------------------------------------------------------------------- markers
def _seal(folder: Path, kind: str) -> None:
    """Write ``folder``'s marker: its kind and the SHA-256 of every other file in it."""
    files = {p.relative_to(folder).as_posix(): sha256_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}
    marker = {"written_by": "recforge", "kind": kind, "format": MARKER_FORMAT,
              "recforge_version": __version__,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "files": files}
    (folder / MARKER).write_text(json.dumps(marker, indent=1))


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``folder``'s marker, None when it has none; `CorruptFileError` when it is damaged."""
    file = Path(folder) / MARKER
    if not file.is_file():
        return None
    marker = read_json(file)
    files = marker.get("files")
    if (marker.get("written_by") != "recforge" or marker.get("format") != MARKER_FORMAT
            or not isinstance(marker.get("kind"), str) or not isinstance(files, dict)
            or not all(isinstance(v, str) for v in files.values())):
        raise CorruptFileError(f"{file}: not a valid recforge marker (written_by, kind, "
                               "format, files)")
    return marker


def marker_kind(folder: Path) -> str | None:
    """The kind named by ``folder``'s marker; None when it has none or a damaged one."""
    try:
        marker = read_marker(folder)
    except CorruptFileError:
        return None
    return None if marker is None else marker["kind"]


def verify_folder(folder: str | os.PathLike, kind: str) -> dict[str, Any] | None:
    """``folder``'s marker after checking that it names ``kind`` and that every file it
    lists is there with the recorded SHA-256; None for a folder without a marker."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        return None
    if marker["kind"] != kind:
        raise CorruptFileError(f"{folder} holds a recforge {marker['kind']}, not a {kind}")
    for name, digest in marker["files"].items():
        file = folder / name
        if ".." in Path(name).parts or not file.is_file():
            raise MissingFileError(f"{file}: missing (listed in {folder / MARKER})")
        if sha256_file(file) != digest:
            raise CorruptFileError(f"{file}: damaged or modified since it was written "
                                   "(SHA-256 differs from the folder's marker)")
    return marker


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def json_written_by(path: Path, writer: str) -> bool:
    """Whether the JSON file ``path`` is an object that says ``"written_by": writer``."""
    try:
        value = read_json(path)
    except (CorruptFileError, OSError):
        return False
    return value.get("written_by") == writer


def ids_fingerprint(user_ids: Any, item_ids: Any) -> str:
    """SHA-256 of the user and item ids in index order: what a model was trained on, so that
    a catalogue or data set with other ids (or the same ids in another order) is refused."""
    digest = hashlib.sha256()
    for ids in (user_ids, item_ids):
        digest.update(json.dumps([plain(v) for v in ids]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def plain(value: Any) -> Any:
    """A numpy scalar, or a zero-dimensional array or PyTorch tensor, as its Python value;
    anything else unchanged (duck-typed: this module imports neither numpy nor PyTorch)."""
    return value.item() if hasattr(value, "item") and getattr(value, "shape", None) == () else value


def json_default(value: Any) -> Any:
    """The ``default=`` of `json.dumps` wherever recforge writes JSON: numpy scalars and
    zero-dimensional arrays or tensors as Python values, sets as lists."""
    if isinstance(value, (tuple, set)):
        return list(value)
    scalar = plain(value)
    if scalar is value:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return scalar


# ---------------------------------------------------------------------- reading
def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, checked for size, syntax, nesting and type; anything
    wrong raises `CorruptFileError` naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise CorruptFileError(f"{path}: {size:,} bytes, more than a recforge metadata "
                                   f"file may have ({MAX_JSON_BYTES:,})")
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({first_line(exc)})") from None
    if not isinstance(value, dict):
        raise CorruptFileError(f"{path}: expected a JSON object, found {type(value).__name__}")
    if _depth(value) > MAX_JSON_DEPTH:
        raise CorruptFileError(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (iterative, so any depth is measured safely)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def read_metadata(folder: str | os.PathLike, filename: str, what: str, version: int,
                  legacy_versions: Collection[int] = ()) -> dict[str, Any]:
    """The JSON ``filename`` of a saved ``what`` (model, index, checkpoint) folder.

    The folder is restored first if a killed writer left it missing (`readable`); its
    marker's sums are checked (`verify_folder`). ``format_version`` must be ``version``
    (which requires the marker) or one of ``legacy_versions`` (folders written before
    markers). Every problem raises an input error naming the file."""
    folder = readable(folder)
    meta_file = folder / filename
    if not meta_file.is_file():
        raise MissingFileError(f"{folder} is not a saved recforge {what} (no {filename})")
    meta = read_json(meta_file)
    found = meta.get("format_version")
    if type(found) is not int or found not in (version, *legacy_versions):
        raise CorruptFileError(f"{folder}: unsupported {what} format version {found!r}")
    marker = verify_folder(folder, what)
    if found == version and marker is None:
        raise MissingFileError(f"{folder}: no {MARKER} (the marker every {what} folder of "
                               f"format {version} has); the folder is incomplete or damaged")
    return meta


def has_metadata(folder: Path, filename: str) -> bool:
    """Whether ``folder/filename`` is a JSON object with an integer ``format_version`` (how
    a folder of the format before markers is recognised)."""
    try:
        return type(read_json(folder / filename).get("format_version")) is int
    except (CorruptFileError, OSError):
        return False


# ---------------------------------------------------------------------- helpers
def _link_tree(source: Path, dest: Path) -> None:
    """Hard-link (else copy) every file of ``source`` except the marker into ``dest``."""
    for file in sorted(source.rglob("*")):
        target = dest / file.relative_to(source)
        if file.is_dir() and not file.is_symlink():
            target.mkdir(exist_ok=True)
        elif file.is_file() and file.name != MARKER:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, target)
            except OSError:
                shutil.copy2(file, target)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for item in folder.rglob("*"):
        if item.is_file() and not item.is_symlink():
            _fsync(item)
    _fsync(folder)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink(missing_ok=True)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
