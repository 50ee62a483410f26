"""The dataset registry: names, and where each dataset is found or downloaded (loading one by
name is `recforge.data.loading.load_dataset`).

A registered dataset is looked for in (1) the ``data_dir`` argument (the dataset folder
itself or its parent), (2) ``$RECFORGE_DATA_DIR/<name>``, (3) the cache
``$RECFORGE_CACHE_DIR/<name>`` (default ``~/.cache/recforge/<name>``), and otherwise (4)
downloaded from GroupLens into the cache (base URL overridable with
``$RECFORGE_DOWNLOAD_URL``).

Integrity: ``checksums.json`` ships the published SHA-256 (and size) of each archive that has
one, with its source, and per-file sums for ML-100K. A download is checked against the
archive's sum; extraction then records every file's sum, and the archive's, in the folder's
``SHA256SUMS``. A folder is *verified* when its files match the shipped per-file sums, or
match sums recorded from an archive whose sum matched the shipped one; it is *unverified*
when no published sum applies (``ml-10m``, ``ml-latest``, a folder without ``SHA256SUMS``).
A file that differs from a known or recorded sum raises `ChecksumError` either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from recforge.data.download import ChecksumError, download_file, extract_zip, sha256_file
from recforge.errors import CorruptFileError

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
ENV_DATA_DIR = "RECFORGE_DATA_DIR"
ENV_CACHE_DIR = "RECFORGE_CACHE_DIR"
ENV_DOWNLOAD_URL = "RECFORGE_DOWNLOAD_URL"
SUMS_FILE = "SHA256SUMS"
#: the most bytes accepted for an archive without a published size (ml-latest.zip: ~350 MB)
MAX_ARCHIVE_BYTES = 4 << 30

#: the canonical ML-100K train/test folds (train = ``<fold>.base``, test = ``<fold>.test``)
ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


class DatasetNotFoundError(FileNotFoundError):
    """A registered dataset is neither on disk nor downloadable (the message says where to put it)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: the files its loader reads and where it can be downloaded."""

    name: str
    description: str
    files: tuple[str, ...] = ()
    ratings: int | None = None
    archive: str | None = None
    folder: str | None = None

    def url(self, base_url: str | None = None) -> str | None:
        """The archive's URL under ``base_url`` (default: env override, then GroupLens)."""
        if self.archive is None:
            return None
        base = base_url or os.environ.get(ENV_DOWNLOAD_URL) or DEFAULT_BASE_URL
        return base.rstrip("/") + "/" + self.archive


def _movielens(name: str, description: str, files: tuple[str, ...], ratings: int | None,
               folder: str | None = None) -> DatasetSpec:
    return DatasetSpec(name, description, files, ratings, f"{name}.zip", folder or name)


_ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre", "u.occupation", "u.info",
                 *(f"{fold}.{part}" for fold in ML100K_FOLDS for part in ("base", "test")))
_CSV_FILES = ("ratings.csv", "movies.csv")

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    _movielens("ml-100k", "MovieLens 100K: 943 users, 1,682 movies, ratings 1-5, "
               "demographics, canonical folds u1-u5/ua/ub (1998)", _ML100K_FILES, 100_000),
    _movielens("ml-1m", "MovieLens 1M: 6,040 users, 3,706 rated movies, ratings 1-5, "
               "demographics (2003)", ("ratings.dat", "movies.dat", "users.dat"), 1_000_209),
    _movielens("ml-10m", "MovieLens 10M: 69,878 users, 10,677 movies, half-star ratings, "
               "tags (2009)", ("ratings.dat", "movies.dat", "tags.dat"), 10_000_054,
               folder="ml-10M100K"),
    _movielens("ml-20m", "MovieLens 20M: 138,493 users, 27,278 movies, half-star ratings "
               "(2015)", _CSV_FILES, 20_000_263),
    _movielens("ml-25m", "MovieLens 25M: 162,541 users, 62,423 movies, half-star ratings "
               "(2019)", _CSV_FILES, 25_000_095),
    _movielens("ml-latest", "MovieLens latest full: all ratings to date, half-star "
               "(changes over time, about 33 million ratings)", _CSV_FILES, None),
    _movielens("ml-latest-small", "MovieLens latest small: about 100,000 ratings by 610 "
               "users (changes over time)", _CSV_FILES, None),
    DatasetSpec("synthetic", "Synthetic interactions generated in memory "
                "(recforge.data.synthetic.generate; keyword arguments set its size and seed)"),
)}


def dataset_names() -> list[str]:
    """Names accepted by `load_dataset`, `resolve_dataset` and `dataset_info`."""
    return list(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name`` (case-insensitive); unknown names list the valid ones."""
    spec = DATASETS.get(name.lower())
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return spec


def cache_dir() -> Path:
    """Where downloads go: ``$RECFORGE_CACHE_DIR`` or ``~/.cache/recforge``."""
    configured = os.environ.get(ENV_CACHE_DIR)
    return Path(configured) if configured else Path.home() / ".cache" / "recforge"


@cache
def _checksum_table() -> dict[str, Any]:
    return json.loads(resources.files("recforge.data").joinpath("checksums.json").read_text())


def known_checksums(name: str) -> dict[str, str]:
    """Published per-file SHA-256 sums shipped with recforge for ``name`` (may be empty)."""
    return dict(_checksum_table().get(name, {}).get("files", {}))


@dataclass(frozen=True)
class ArchiveSum:
    """The published SHA-256 and size of a dataset's archive, and where it was published."""

    sha256: str
    size: int
    source: str


def known_archive(name: str) -> ArchiveSum | None:
    """The archive's published sum shipped with recforge; None when there is none."""
    entry = _checksum_table().get(name, {}).get("archive")
    return None if entry is None else ArchiveSum(entry["sha256"], entry["size"], entry["source"])


@dataclass(frozen=True)
class Integrity:
    """Whether a dataset folder's content was checked against a published sum, and how."""

    verified: bool
    reason: str

    def __str__(self) -> str:
        return f"{'verified' if self.verified else 'unverified'} ({self.reason})"


def dataset_info(name: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Description, URL, expected files, number of ratings and local folder (or None)."""
    spec = get_spec(name)
    local = None
    if spec.archive is not None:
        with contextlib.suppress(DatasetNotFoundError):
            found = _local_folder(spec, data_dir)[0]
            local = None if found is None else str(found)
    archive = known_archive(spec.name)
    return {"name": spec.name, "description": spec.description, "url": spec.url(),
            "files": list(spec.files), "ratings": spec.ratings, "local": local,
            "archive_sha256": None if archive is None else archive.sha256}


def resolve_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    *,
    base_url: str | None = None,
    progress: bool = True,
) -> Path:
    """The folder holding dataset ``name``'s files, downloading it into the cache if needed.

    Raises `DatasetNotFoundError` (saying where to put the files) when it is not on disk and
    cannot be downloaded, and `ChecksumError` naming the file when one is corrupt.
    """
    return resolve_and_verify(name, data_dir, download, base_url=base_url,
                              progress=progress)[0]


def resolve_and_verify(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    *,
    base_url: str | None = None,
    progress: bool = True,
) -> tuple[Path, Integrity]:
    """`resolve_dataset`, also saying whether the folder is verified (see the module doc)."""
    spec = get_spec(name)
    url = spec.url(base_url)
    if url is None:
        raise ValueError(f"{spec.name!r} is generated in memory, not stored in a folder")
    folder, looked = _local_folder(spec, data_dir)
    if folder is None:
        if not download:
            raise DatasetNotFoundError(_not_found(spec, looked, "downloading is disabled"))
        try:
            folder = _download(spec, url, progress)
        except OSError as exc:
            raise DatasetNotFoundError(_not_found(spec, looked, f"download failed: {exc}")) from exc
    try:
        return folder, verify_folder(spec, folder)
    except ChecksumError as exc:
        if folder != cache_dir() / spec.name:
            raise
        hint = f"delete {folder} to download it again"
        raise ChecksumError(exc.path, exc.expected, exc.actual, hint) from None


def _local_folder(spec: DatasetSpec, data_dir: str | Path | None) -> tuple[Path | None, list[str]]:
    """The first complete local folder (None when there is none), and what was looked at.

    An explicit ``data_dir`` without the files, or a ``$RECFORGE_DATA_DIR`` folder that is
    incomplete, raises rather than falling back silently to another copy.
    """
    looked: list[str] = []
    if data_dir is not None:
        found = _first_complete(spec, [Path(data_dir), *_named_in(spec, Path(data_dir))], looked)
        if found is None:
            raise DatasetNotFoundError(_not_found(spec, looked, "the data_dir argument does not hold it"))
        return found, looked
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        folders = _named_in(spec, Path(env))
        found = _first_complete(spec, folders, looked)
        if found is not None:
            return found, looked
        if any(folder.is_dir() for folder in folders):
            raise DatasetNotFoundError(_not_found(spec, looked, f"${ENV_DATA_DIR} has it incomplete"))
    return _first_complete(spec, [cache_dir() / spec.name], looked), looked


def _named_in(spec: DatasetSpec, base: Path) -> list[Path]:
    """``base/<name>`` and ``base/<folder in the archive>`` (e.g. ``ml-10M100K``)."""
    return list(dict.fromkeys([base / spec.name, base / (spec.folder or spec.name)]))


def _first_complete(spec: DatasetSpec, folders: list[Path], looked: list[str]) -> Path | None:
    """The first of ``folders`` holding all the files; the others are described in ``looked``."""
    for folder in folders:
        missing = _missing_files(spec, folder)
        if not missing:
            return folder
        looked.append(_describe(folder, missing))
    return None


def _missing_files(spec: DatasetSpec, folder: Path) -> list[str]:
    if not folder.is_dir():
        return list(spec.files)
    return [f for f in spec.files if not (folder / f).is_file()]


def _describe(folder: Path, missing: list[str]) -> str:
    if not folder.is_dir():
        return f"{folder} (no such folder)"
    return f"{folder} (missing {', '.join(missing)})"


def _not_found(spec: DatasetSpec, looked: list[str], reason: str) -> str:
    places = "\n".join(f"  - {place}" for place in looked)
    return (
        f"dataset {spec.name!r} not found ({reason}). Looked in:\n{places}\n"
        f"Put the files {', '.join(spec.files)} in one folder and pass it as data_dir, or "
        f"place it at ${ENV_DATA_DIR}/{spec.name}; or download {spec.url()} and extract "
        f"its folder {spec.folder}/ to {cache_dir() / spec.name}."
    )


def verify_folder(spec: DatasetSpec, folder: Path) -> Integrity:
    """Check the dataset's files against the shipped sums, else the folder's ``SHA256SUMS``.

    Raises `ChecksumError` for a file that differs; returns whether the folder is verified.
    """
    published = known_checksums(spec.name)
    if published:
        _check_files(spec, folder, published)
        return Integrity(True, f"its files match the known SHA-256 sums of {spec.name}")
    sums_file = folder / SUMS_FILE
    recorded = read_sums(sums_file)
    _check_files(spec, folder, recorded)
    archive = known_archive(spec.name)
    if archive is not None and recorded_archive_sum(sums_file) == archive.sha256 \
            and set(spec.files) <= set(recorded):
        return Integrity(True, f"extracted from {spec.archive}, whose SHA-256 matched the "
                               f"published one; its files match the sums recorded then")
    unpublished = f"no published checksum for {spec.name}; " if archive is None else ""
    if not recorded:
        return Integrity(False, f"{unpublished}no {sums_file} to check its files against")
    if archive is None:
        return Integrity(False, f"{unpublished}its files match the sums recorded when it was "
                                f"extracted")
    return Integrity(False, f"{sums_file} does not come from an archive that matched the "
                            f"published SHA-256 of {spec.archive}")


def _check_files(spec: DatasetSpec, folder: Path, sums: dict[str, str]) -> None:
    for name in spec.files:
        if name in sums:
            actual = sha256_file(folder / name)
            if actual != sums[name]:
                raise ChecksumError(folder / name, sums[name], actual)


_ARCHIVE_LINE = re.compile(r"# archive (\S+) sha256 ([0-9a-f]{64})$")


def read_sums(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style file (``<hex>  <name>`` lines, ``#`` comments); {} when absent.

    Raises `CorruptFileError` naming the line when one is not of that form.
    """
    if not path.is_file():
        return {}
    sums = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest) or not name.strip():
            raise CorruptFileError(f"{path}:{number}: not a '<sha256>  <file name>' line")
        sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def recorded_archive_sum(path: Path) -> str | None:
    """The archive SHA-256 that `write_sums` recorded in ``path``; None when there is none."""
    if not path.is_file():
        return None
    found = (_ARCHIVE_LINE.match(line) for line in path.read_text(errors="replace").splitlines())
    return next((match.group(2) for match in found if match), None)


def write_sums(folder: Path, archive: str | None = None, archive_sha256: str | None = None) -> None:
    """Write ``SHA256SUMS`` for every file under ``folder`` (paths relative, sorted), after a
    ``# archive <name> sha256 <hex>`` line naming the archive it was extracted from."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SUMS_FILE)
    header = [f"# archive {archive} sha256 {archive_sha256}\n"] if archive_sha256 else []
    lines = [f"{sha256_file(p)}  {p.relative_to(folder).as_posix()}\n" for p in files]
    (folder / SUMS_FILE).write_text("".join(header + lines))


def _download(spec: DatasetSpec, url: str, progress: bool) -> Path:
    """Download ``url`` and extract it into the cache; the zip is removed afterwards.

    The archive is checked against its published sum when there is one; its extraction is
    capped (`extract_zip`) relative to its size. The per-file sums recorded by `_seal`
    derive from verified content exactly when the archive's sum was known and matched.
    """
    known = known_archive(spec.name)
    archive = download_file(url, cache_dir() / "downloads" / url.rsplit("/", 1)[-1],
                            sha256=None if known is None else known.sha256,
                            size=None if known is None else known.size,
                            max_size=MAX_ARCHIVE_BYTES, progress=progress)
    target = cache_dir() / spec.name
    try:
        digest = known.sha256 if known is not None else sha256_file(archive)
        extract_zip(archive, target, root=spec.folder,
                    validate=lambda tmp: _seal(spec, tmp, url, digest))
    finally:
        archive.unlink(missing_ok=True)
    return target


def _seal(spec: DatasetSpec, folder: Path, url: str, archive_sha256: str) -> None:
    """Check a freshly extracted folder and record its sums (runs before it is moved into place)."""
    missing = _missing_files(spec, folder)
    if missing:
        raise ValueError(f"{url}: the archive has no {', '.join(missing)} under {spec.folder}/")
    _check_files(spec, folder, known_checksums(spec.name))
    write_sums(folder, spec.archive, archive_sha256)
