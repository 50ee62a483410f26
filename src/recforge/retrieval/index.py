"""Vector indexes for maximum-inner-product search: one interface over exact search and FAISS.

Every index maps ids (int64; by default the row positions ``0..n-1``) to ``dim``-d float32
vectors and answers ``search(queries, k, exclude)`` with the ``k`` ids of largest inner
product per query, best first, and their scores. Kinds:

* ``exact``: numpy matrix products over blocks of queries and the numba top-k of
  `recforge.topk` (ties go to the lower position). No dependency beyond numpy and numba.
* ``flat``: FAISS ``IndexFlatIP``, the same exact scan in FAISS's kernels.
* ``ivf-flat``: an inverted file: k-means (``nlist`` centroids) partitions the vectors and a
  query scans the ``nprobe`` lists whose centroids score highest.
* ``ivf-pq``: the same lists holding product-quantised codes (``pq_m`` sub-vectors of
  ``pq_bits`` bits) for memory; ``refine`` > 0 re-ranks ``refine * k`` candidates with the
  full vectors (FAISS ``IndexRefineFlat``), which PQ needs to reach high recall.
* ``hnsw``: a hierarchical navigable small-world graph (``m`` links per node, built with
  ``ef_construction``, searched with a beam of ``max(ef_search, k)``).

`make_index("auto", n)` uses exact search below `EXACT_MAX_ITEMS` items: there a single
query's exact scan costs well under a millisecond and is never wrong. Above it, IVF-Flat
with ``nlist`` the power of two nearest ``sqrt(n)`` and ``nprobe = nlist / 16``. On the 1M x
64 clustered benchmark (``benchmarks/retrieval_latency.py --sweep``, figures in
BENCHMARKS.md) that scans 1/16 of the vectors for recall@10 of 0.99 against exact search in
about a millisecond on one thread; ``nlist = 4 sqrt(n)`` (4096) gave the same recall at the
same scanned fraction but trained 14x longer, and HNSW over inner products stalled below
0.95 recall (greedy graph search misses the long "hub" vectors that win inner products).
Without FAISS, ``auto`` falls back to exact search with a logged notice; asking for a FAISS
kind by name raises `FaissUnavailableError`.

Exclusion (e.g. items a user has seen) over-fetches: the index is asked for ``k + e`` ids,
``e`` the longest exclusion list of the batch, and the excluded ids are dropped, so the
result is the top ``k`` of the non-excluded ids whenever the index finds them (exact kinds:
always). FAISS ``IDSelector`` search parameters were not used: they apply to a whole search
call, so per-query exclusions would cost one call per query.

Saving writes a folder atomically (`recforge.io.atomic_dir`): ``index.json`` (kind,
settings, dimension, format version), ``ids.npy``, ``vectors.npy`` (exact) or
``index.faiss`` (`faiss.write_index`), and the marker with the files' sums, which loading
checks. Nothing is pickled. IVF and PQ training are seeded
(FAISS k-means ``seed``), so a rebuild from the same vectors gives the same index.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recforge.errors import CorruptFileError
from recforge.io import MissingFileError, atomic_dir, first_line, has_metadata, read_metadata
from recforge.topk import top_k

FORMAT_VERSION = 2  # 2: the folder has a marker with its files' sums
INDEX_FILE = "index.json"
FAISS_KINDS = ("flat", "ivf-flat", "ivf-pq", "hnsw")
INDEX_KINDS = ("exact", *FAISS_KINDS)
#: `make_index("auto")` searches exactly below this many items
EXACT_MAX_ITEMS = 50_000
#: float32 scores computed at once by the exact index (64 MiB)
_EXACT_BLOCK_FLOATS = 1 << 24
#: defaults of the FAISS knobs (nlist/pq_m default by size, see `FaissIndex`)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 64
#: IVF probes 1/IVF_PROBE_FRACTION of its lists unless ``nprobe`` is given
IVF_PROBE_FRACTION = 16

log = logging.getLogger(__name__)
Exclude = Sequence[Any] | None


class FaissUnavailableError(ImportError):
    """A FAISS index kind was asked for but ``faiss`` cannot be imported."""


def import_faiss() -> Any:
    """The ``faiss`` module, or `FaissUnavailableError` with the install hint."""
    try:
        import faiss
    except ImportError as exc:
        raise FaissUnavailableError(
            "FAISS indexes need faiss: pip install 'recforge[ann]' (or faiss-cpu); "
            "the 'exact' index works without it") from exc
    return faiss


def faiss_available() -> bool:
    """True when ``faiss`` can be imported."""
    try:
        import_faiss()
    except FaissUnavailableError:
        return False
    return True


class VectorIndex:
    """Base: ids, dimension checks, exclusion and persistence; subclasses store and search."""

    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        self.dim: int | None = None
        self._ids = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, n={len(self)}, dim={self.dim})"

    def settings(self) -> dict[str, Any]:
        """The index's knobs, as saved in ``index.json``."""
        return {}

    # ------------------------------------------------------------------ building
    def build(self, vectors: Any, ids: Any | None = None) -> VectorIndex:
        """Replace the contents with ``vectors`` (training the index where it needs it)."""
        vectors = self._as_vectors(vectors, check_dim=False)
        if not len(vectors):
            raise ValueError("cannot build an index from zero vectors")
        self.dim = vectors.shape[1]
        self._ids = np.empty(0, dtype=np.int64)
        self._reset(vectors)
        return self.add(vectors, ids)

    def add(self, vectors: Any, ids: Any | None = None) -> VectorIndex:
        """Append ``vectors``; ``ids`` default to the next positions ``len(self)...``."""
        if self.dim is None:
            raise ValueError("the index is empty; call build() first")
        vectors = self._as_vectors(vectors)
        if ids is None:
            ids = np.arange(len(self), len(self) + len(vectors), dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        self._add(vectors)
        self._ids = np.concatenate([self._ids, ids])
        return self

    def _as_vectors(self, vectors: Any, check_dim: bool = True) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-d array, got {vectors.ndim}-d")
        if check_dim and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vectors.shape[1]}; "
                             f"the index holds {self.dim}-d vectors")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
        return vectors

    # ------------------------------------------------------------------ searching
    def search(self, queries: Any, k: int, exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids and scores of the ``k`` best items per query, as two ``(n, k)`` arrays.

        ``exclude[r]`` lists ids never returned for query ``r``. Rows with fewer than ``k``
        results are padded with id ``-1`` and score ``-inf``."""
        if k < 1:
            raise ValueError("k must be at least 1")
        if not len(self):
            raise ValueError("the index is empty; call build() first")
        queries = self._as_vectors(np.atleast_2d(queries))
        if exclude is not None and len(exclude) != len(queries):
            raise ValueError(f"exclude has {len(exclude)} rows for {len(queries)} queries")
        lengths = _lengths(exclude, len(queries))
        fetch = min(k + int(lengths.max(initial=0)), len(self))
        positions, scores = self._search(queries, fetch)
        ids = np.where(positions >= 0, self._ids[np.maximum(positions, 0)], -1)
        drop = positions < 0
        if lengths.any():
            drop |= _excluded(ids, exclude, lengths)
        return _first_kept(ids, scores, drop, k)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path/`` (``index.json``, ``ids.npy``, the kind's data) as one unit:
        atomic, locked against a concurrent writer, and only over an absent or empty folder
        or an earlier recforge index folder (`recforge.io.atomic_dir`)."""
        if self.dim is None:
            raise ValueError("cannot save an empty index")
        meta = {"format_version": FORMAT_VERSION, "kind": self.kind, "dim": self.dim,
                "settings": self.settings()}
        with atomic_dir(path, "index", legacy=lambda folder: has_metadata(folder, INDEX_FILE)) \
                as tmp:
            (tmp / INDEX_FILE).write_text(json.dumps(meta, indent=2))
            np.save(tmp / "ids.npy", self._ids)
            self._save_data(tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        """Load an index written by `save` (any kind; never unpickles). A missing, damaged or
        inconsistent file raises `recforge.errors.CorruptFileError` naming it."""
        path = Path(path)
        meta = read_metadata(path, INDEX_FILE, "index", FORMAT_VERSION, legacy_versions=(1,))
        meta_file = path / INDEX_FILE
        kind, dim, settings = meta.get("kind"), meta.get("dim"), meta.get("settings")
        if not isinstance(kind, str) or type(dim) is not int or dim < 1 \
                or not isinstance(settings, dict):
            raise CorruptFileError(f"{meta_file}: needs 'kind' (a string), 'dim' (a positive "
                                   "integer) and 'settings' (an object)")
        try:
            index = _new_index(kind, settings)
        except (TypeError, ValueError) as exc:
            raise CorruptFileError(f"{meta_file}: {first_line(exc)}") from None
        index.dim = dim
        index._ids = _load_npy(path / "ids.npy")
        try:
            index._load_data(path)
        except (ValueError, RuntimeError, OSError) as exc:
            raise CorruptFileError(f"{path}: the index data is unreadable "
                                   f"({first_line(exc)})") from None
        index._check_loaded(path)
        return index

    def _check_loaded(self, path: Path) -> None:
        """The ids are one integer per stored vector and the vectors have ``dim`` columns."""
        count, dim = self._stored()
        if self._ids.ndim != 1 or self._ids.dtype.kind not in "iu" or len(self._ids) != count:
            raise CorruptFileError(f"{path / 'ids.npy'}: expected {count} integer ids (one per "
                                   f"vector), found {self._ids.dtype} of shape {self._ids.shape}")
        if dim != self.dim:
            raise CorruptFileError(f"{path}: the vectors have dimension {dim}, "
                                   f"{INDEX_FILE} says {self.dim}")

    # ------------------------------------------------------------------ subclass hooks
    def _reset(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _add(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (``-1`` for none) and scores of the ``k`` best vectors per query."""
        raise NotImplementedError

    def _save_data(self, folder: Path) -> None:
        raise NotImplementedError

    def _load_data(self, folder: Path) -> None:
        raise NotImplementedError

    def _stored(self) -> tuple[int, int]:
        """Number and dimension of the stored vectors."""
        raise NotImplementedError


class ExactIndex(VectorIndex):
    """Exact inner-product search: blocked numpy matrix products and the numba top-k."""

    kind = "exact"

    def _reset(self, vectors: np.ndarray) -> None:
        self._vectors = np.empty((0, vectors.shape[1]), dtype=np.float32)

    def _add(self, vectors: np.ndarray) -> None:
        self._vectors = np.concatenate([self._vectors, vectors])

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        step = max(1, _EXACT_BLOCK_FLOATS // len(self._vectors))
        parts = [top_k(queries[lo:lo + step] @ self._vectors.T, k)
                 for lo in range(0, len(queries), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _save_data(self, folder: Path) -> None:
        np.save(folder / "vectors.npy", self._vectors)

    def _load_data(self, folder: Path) -> None:
        self._vectors = _load_npy(folder / "vectors.npy")
        if self._vectors.ndim != 2 or self._vectors.dtype != np.float32:
            raise CorruptFileError(f"{folder / 'vectors.npy'}: expected a 2-d float32 array, "
                                   f"found {self._vectors.dtype} of shape {self._vectors.shape}")

    def _stored(self) -> tuple[int, int]:
        return self._vectors.shape


class FaissIndex(VectorIndex):
    """A FAISS inner-product index of kind ``flat``, ``ivf-flat``, ``ivf-pq`` or ``hnsw``.

    ``nlist`` defaults to `default_nlist` of the catalogue size at build time, ``nprobe`` to
    ``nlist / 16`` and ``pq_m`` to ``dim // 4`` (16-byte codes for 64-d vectors). ``nprobe``
    and ``ef_search`` are search-time knobs: change them with `tune` without rebuilding."""

    def __init__(self, kind: str = "hnsw", *, nlist: int | None = None,
                 nprobe: int | None = None, pq_m: int | None = None, pq_bits: int = 8,
                 refine: int = 0, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION,
                 ef_search: int = HNSW_EF_SEARCH, seed: int = 0):
        super().__init__()
        if kind not in FAISS_KINDS:
            raise ValueError(f"unknown FAISS index kind {kind!r}; valid: {', '.join(FAISS_KINDS)}")
        optional = {"nlist": nlist, "nprobe": nprobe, "pq_m": pq_m}
        _check_positive(pq_bits=pq_bits, m=m, ef_construction=ef_construction,
                        ef_search=ef_search, **{k: v for k, v in optional.items() if v is not None})
        if refine < 0:
            raise ValueError(f"refine must be >= 0, got {refine}")
        self.faiss = import_faiss()
        self.kind = kind
        self.nlist, self.nprobe, self.pq_m, self.pq_bits = nlist, nprobe, pq_m, pq_bits
        self.refine, self.m, self.ef_construction = refine, m, ef_construction
        self.ef_search, self.seed = ef_search, seed
        self._index: Any = None

    def settings(self) -> dict[str, Any]:
        """The knobs that apply to this kind."""
        keys = {"flat": (), "ivf-flat": ("nlist", "nprobe", "seed"),
                "ivf-pq": ("nlist", "nprobe", "pq_m", "pq_bits", "refine", "seed"),
                "hnsw": ("m", "ef_construction", "ef_search")}[self.kind]
        return {key: getattr(self, key) for key in keys}

    def tune(self, nprobe: int | None = None, ef_search: int | None = None) -> FaissIndex:
        """Change the search-time knobs (IVF ``nprobe``, HNSW ``ef_search``)."""
        _check_positive(**{k: v for k, v in (("nprobe", nprobe), ("ef_search", ef_search))
                           if v is not None})
        self.nprobe = nprobe or self.nprobe
        self.ef_search = ef_search or self.ef_search
        self._apply_search_knobs()
        return self

    def _reset(self, vectors: np.ndarray) -> None:
        self._index = self._new_faiss_index(len(vectors))
        if not self._index.is_trained:
            self._index.train(vectors)
        self._apply_search_knobs()

    def _new_faiss_index(self, n: int) -> Any:
        faiss, dim, ip = self.faiss, self.dim, self.faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            return faiss.IndexFlatIP(dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.m, ip)
            index.hnsw.efConstruction = self.ef_construction
            return index
        self.nlist = self.nlist or default_nlist(n)
        self.nprobe = self.nprobe or max(1, self.nlist // IVF_PROBE_FRACTION)
        quantizer = faiss.IndexFlatIP(dim)
        if self.kind == "ivf-flat":
            index = faiss.IndexIVFFlat(quantizer, dim, self.nlist, ip)
        else:
            self.pq_m = self.pq_m or max(1, dim // 4)
            if dim % self.pq_m:
                raise ValueError(f"pq_m={self.pq_m} must divide the dimension {dim}")
            index = faiss.IndexIVFPQ(quantizer, dim, self.nlist, self.pq_m, self.pq_bits, ip)
            index.pq.cp.seed = self.seed
        index.cp.seed = self.seed
        if self.kind == "ivf-pq" and self.refine:
            return faiss.IndexRefineFlat(index)  # FAISS's wrapper keeps the parts alive
        return index

    def _apply_search_knobs(self) -> None:
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = self.ef_search
        elif self.kind != "flat":
            ivf = self.faiss.extract_index_ivf(self._index)
            ivf.nprobe = self.nprobe
            if self.refine:
                self._index.k_factor = float(self.refine)

    def _add(self, vectors: np.ndarray) -> None:
        self._index.add(vectors)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, positions = self._index.search(queries, k)
        return positions, scores

    def _save_data(self, folder: Path) -> None:
        self.faiss.write_index(self._index, str(folder / "index.faiss"))

    def _load_data(self, folder: Path) -> None:
        self._index = self.faiss.read_index(str(folder / "index.faiss"))
        self._apply_search_knobs()

    def _stored(self) -> tuple[int, int]:
        return self._index.ntotal, self._index.d


def default_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: the power of two nearest ``sqrt(n)``, at most ``n / 39``
    (FAISS's k-means wants 39 training points per centroid), at least 1."""
    target = 2 ** round(math.log2(max(math.sqrt(n), 1)))
    return int(max(1, min(target, n // 39)))


def make_index(kind: str = "auto", n: int | None = None, **settings: Any) -> VectorIndex:
    """A new, empty index of ``kind`` (``auto``: by catalogue size ``n``, see the module doc)."""
    if kind == "auto":
        if n is not None and n < EXACT_MAX_ITEMS:
            return ExactIndex()
        if not faiss_available():
            log.warning("faiss is not installed: using exact search for %s items "
                        "(pip install 'recforge[ann]' for approximate indexes)", n)
            return ExactIndex()
        kind = "ivf-flat"
    return _new_index(kind, settings)


def load_index(path: str | Path) -> VectorIndex:
    """Load an index saved by `VectorIndex.save`."""
    return VectorIndex.load(path)


def _load_npy(file: Path) -> np.ndarray:
    """An array from a ``.npy`` file; a missing or unreadable one raises an input error."""
    try:
        return np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise MissingFileError(f"{file}: missing") from None
    except (ValueError, EOFError, OSError) as exc:
        raise CorruptFileError(f"{file}: not a readable array ({first_line(exc)})") from None


def _new_index(kind: str, settings: dict[str, Any]) -> VectorIndex:
    if kind == "exact":
        if settings:
            raise ValueError(f"the exact index takes no settings, got {sorted(settings)}")
        return ExactIndex()
    if kind not in FAISS_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; valid: auto, {', '.join(INDEX_KINDS)}")
    return FaissIndex(kind, **settings)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _lengths(exclude: Exclude, n: int) -> np.ndarray:
    if exclude is None:
        return np.zeros(n, dtype=np.int64)
    return np.fromiter((np.size(row) for row in exclude), dtype=np.int64, count=n)


def _excluded(ids: np.ndarray, exclude: Sequence[Any], lengths: np.ndarray) -> np.ndarray:
    """``(n, f)`` mask: ``ids[r, j]`` is listed in ``exclude[r]`` (vectorised over pairs)."""
    n, f = ids.shape
    listed = np.concatenate([np.asarray(row, dtype=np.int64).ravel() for row in exclude])
    values, codes = np.unique(np.concatenate([ids.ravel(), listed]), return_inverse=True)
    rows = np.concatenate([np.repeat(np.arange(n), f), np.repeat(np.arange(n), lengths)])
    keys = rows * len(values) + codes.ravel()
    return np.isin(keys[:ids.size], keys[ids.size:]).reshape(n, f)


def _first_kept(ids: np.ndarray, scores: np.ndarray, drop: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` entries of each row not dropped, in order; padded with -1 / -inf."""
    n = len(ids)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]
    out_ids = np.full((n, k), -1, dtype=np.int64)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    kept = ~np.take_along_axis(drop, order, 1)
    width = order.shape[1]
    out_ids[:, :width] = np.where(kept, np.take_along_axis(ids, order, 1), -1)
    out_scores[:, :width] = np.where(kept, np.take_along_axis(scores, order, 1), -np.inf)
    return out_ids, out_scores
