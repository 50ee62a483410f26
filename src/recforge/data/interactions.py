"""The `Interactions` container: user-item events with dense ids and cached sparse views."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.features import SideTable
from recforge.errors import UnknownNameError

DuplicatePolicy = Literal["latest", "first", "sum", "error", "keep"]
MatrixValues = Literal["auto", "binary", "rating", "weight"]
#: the one spelling of an integer id: no ``+``, no leading zero, no ``-0``, no spaces
CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")


def external_ids(values: Any) -> np.ndarray:
    """External ids: int64 when every value is a canonical integer, else strings.

    Integer arrays are kept. Anything else is taken as text (a float prints as ``1.0``) and
    becomes int64 only when every text matches `CANONICAL_INT` and fits in int64, so
    ``007``, ``+7``, `` 7``, ``7.0`` and ``1e3`` make the whole column strings and distinct
    spellings never merge into one id."""
    values = np.asarray(values)
    if values.dtype.kind in "iu" or len(values) == 0:
        return values
    codes, uniques = pd.factorize(values)
    texts = pd.Series([str(v) for v in uniques], dtype=object)
    ints = _canonical_ints(texts)
    return (texts.to_numpy(dtype=str) if ints is None else ints)[codes]


def canonical_int(text: str) -> int | str:
    """``text`` as an int when it is a canonical int64 integer, else unchanged."""
    if CANONICAL_INT.fullmatch(text) and -2**63 <= (value := int(text)) < 2**63:
        return value
    return text


def _canonical_ints(texts: pd.Series) -> np.ndarray | None:
    """``texts`` as int64 when every one is a canonical integer within int64, else None."""
    if not texts.str.fullmatch(CANONICAL_INT.pattern).all():
        return None
    ints = pd.to_numeric(texts, errors="coerce")
    return ints.to_numpy() if ints.dtype == np.int64 else None


class IdMap:
    """Bidirectional map between external ids and dense internal indices ``0..n-1``.

    External ids are kept sorted (``ids[i]`` is the external id of index ``i``), so the
    same set of ids always maps to the same indices.
    """

    def __init__(self, ids: Any):
        ids = np.asarray(ids)
        if ids.dtype == object:
            ids = ids.astype(str)
        self.ids = ids
        self._index = pd.Index(ids)
        if not self._index.is_unique:
            raise ValueError("IdMap ids must be unique")

    @classmethod
    def from_values(cls, values: Any) -> tuple[IdMap, np.ndarray]:
        """Build a map from (possibly repeated) values; return it with each value's index."""
        codes, uniques = pd.factorize(external_ids(values), sort=True)
        return cls(np.asarray(uniques)), codes.astype(np.int32)

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self.ids, other.ids)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    def to_index(self, external: Any, missing: Literal["raise", "ignore"] = "ignore") -> np.ndarray:
        """Map external ids to indices; unknown ids give ``-1`` (or raise with ``missing='raise'``).

        A query matches an id only in the same spelling: ``"7"`` finds the integer id 7, but
        ``"007"`` and ``7.0`` do not."""
        values = np.atleast_1d(np.asarray(external))
        if self.ids.dtype.kind in "US" and values.dtype.kind not in "US":
            values = values.astype(str)
        elif self.ids.dtype.kind in "iu" and values.dtype.kind not in "iu":
            values = np.array([canonical_int(v) for v in values.astype(str)], dtype=object)
        idx = self._index.get_indexer(values).astype(np.int64)
        if missing == "raise" and (idx < 0).any():
            bad = values[idx < 0][:5].tolist()
            raise UnknownNameError(f"unknown ids: {bad}")
        return idx

    def to_external(self, index: Any) -> np.ndarray:
        """Map indices back to external ids."""
        index = np.asarray(index)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"index out of range for IdMap of size {len(self)}")
        return self.ids[index]


class IdSpace:
    """Users and items as two id maps (``user_map``, ``item_map``): the id space that
    `Interactions`, `recforge.data.events.Events` and the streamed readers share."""

    user_map: IdMap
    item_map: IdMap

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)


class PairData(IdSpace):
    """(user, item) index pairs over an id space, as every model's training data offers them:
    `Interactions`, `recforge.data.events.Events` and the streamed readers. `fit` reads
    ``binary_csr`` (the observed pairs), ``user_counts``/``item_counts`` (rows per user and
    item) and ``ratings`` (None unless the data has explicit ratings)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    @cached_property
    def binary_csr(self) -> sp.csr_matrix:
        """User x item CSR with a 1 for every observed pair, built once."""
        mat = sp.csr_matrix((np.ones(len(self.users), dtype=np.float32),
                             (self.users, self.items)), shape=(self.n_users, self.n_items))
        mat.sum_duplicates()
        mat.sort_indices()
        mat.data[:] = 1.0
        return mat

    @cached_property
    def user_counts(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users).astype(np.int64)

    @cached_property
    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)


class Interactions(PairData):
    """User-item interactions with dense ids, optional ratings/timestamps/weights and side tables.

    ``users[j]``/``items[j]`` are internal indices of interaction ``j``; ``user_map`` and
    ``item_map`` convert to and from external ids. Subsets (``subset``) keep the same maps, so a
    train and a test split index the same id space. The object is treated as immutable: sparse
    views are built once on first use and cached.
    """

    def __init__(
        self,
        users: Any,
        items: Any,
        *,
        user_map: IdMap,
        item_map: IdMap,
        ratings: Any | None = None,
        timestamps: Any | None = None,
        weights: Any | None = None,
        user_features: SideTable | None = None,
        item_features: SideTable | None = None,
        name: str = "",
    ):
        self.users = np.ascontiguousarray(users, dtype=np.int32)
        self.items = np.ascontiguousarray(items, dtype=np.int32)
        n = len(self.users)
        if len(self.items) != n:
            raise ValueError("users and items must have the same length")
        self.ratings = _column(ratings, np.float32, n, "ratings")
        self.timestamps = _column(timestamps, np.int64, n, "timestamps")
        self.weights = _column(weights, np.float32, n, "weights")
        self.user_map = user_map
        self.item_map = item_map
        if n and (self.users.min() < 0 or self.users.max() >= len(user_map)):
            raise ValueError("user index out of range of user_map")
        if n and (self.items.min() < 0 or self.items.max() >= len(item_map)):
            raise ValueError("item index out of range of item_map")
        self.user_features = user_features
        self.item_features = item_features
        self.name = name

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pandas(
        cls,
        df: pd.DataFrame,
        user: str = "user",
        item: str = "item",
        rating: str | None = None,
        timestamp: str | None = None,
        weight: str | None = None,
        *,
        duplicates: DuplicatePolicy = "latest",
        rating_range: tuple[float, float] | None = None,
        user_ids: Any | None = None,
        item_ids: Any | None = None,
        user_features: SideTable | None = None,
        item_features: SideTable | None = None,
        name: str = "",
        source: str = "data frame",
    ) -> Interactions:
        """Build from a data frame; column arguments name the frame's columns.

        ``rating``/``timestamp``/``weight`` default to columns of those names when present.
        ``user_ids``/``item_ids`` fix the id universe (e.g. every catalogue item, rated or not);
        by default it is the ids seen in ``df``. Duplicate (user, item) pairs follow
        ``duplicates``: ``latest`` keeps the latest by timestamp (file order without one),
        ``first`` the earliest, ``sum`` adds weights/ratings, ``error`` raises, ``keep`` keeps all.
        """
        for col in (user, item):
            if col not in df.columns:
                raise UnknownNameError(f"{source}: missing column {col!r} (have {list(df.columns)})")
        rating = _default_col(df, rating, "rating")
        timestamp = _default_col(df, timestamp, "timestamp")
        weight = _default_col(df, weight, "weight")
        if len(df) == 0:
            raise ValueError(f"{source}: no interactions (the dataset is empty)")
        for col, label in ((user, "user"), (item, "item")):
            if df[col].isna().any():
                row = int(np.flatnonzero(df[col].isna().to_numpy())[0])
                raise ValueError(f"{source}: missing {label} id in row {row}")
        if rating is not None:
            _check_ratings(df[rating].to_numpy(dtype=np.float64), rating_range, source)
        df = _deduplicate(df, user, item, rating, timestamp, weight, duplicates, source)
        user_map, users = _map_ids(df[user].to_numpy(), user_ids, "user", source)
        item_map, items = _map_ids(df[item].to_numpy(), item_ids, "item", source)
        return cls(
            users,
            items,
            user_map=user_map,
            item_map=item_map,
            ratings=None if rating is None else df[rating].to_numpy(),
            timestamps=None if timestamp is None else _as_epoch(df[timestamp]),
            weights=None if weight is None else df[weight].to_numpy(),
            user_features=None if user_features is None else user_features.align(user_map),
            item_features=None if item_features is None else item_features.align(item_map),
            name=name,
        )

    @classmethod
    def from_arrays(cls, users: Any, items: Any, **kwargs: Any) -> Interactions:
        """Build from external-id arrays plus optional ``ratings``/``timestamps``/``weights``."""
        columns = {"user": np.asarray(users), "item": np.asarray(items)}
        for key, col in (("ratings", "rating"), ("timestamps", "timestamp"), ("weights", "weight")):
            if kwargs.get(key) is not None:
                columns[col] = np.asarray(kwargs.pop(key))
            else:
                kwargs.pop(key, None)
        return cls.from_pandas(pd.DataFrame(columns), **kwargs)

    @classmethod
    def from_arrow(cls, table: Any, **kwargs: Any) -> Interactions:
        """Build from a ``pyarrow.Table`` (same keyword arguments as `from_pandas`)."""
        return cls.from_pandas(table.to_pandas(), **kwargs)

    @classmethod
    def from_parquet(cls, path: str, **kwargs: Any) -> Interactions:
        """Read a Parquet file (same keyword arguments as `from_pandas`)."""
        kwargs.setdefault("source", str(path))
        return cls.from_pandas(pd.read_parquet(path), **kwargs)

    def to_pandas(self, external_ids: bool = True) -> pd.DataFrame:
        """Columns ``user``, ``item`` and whichever of ``rating``/``timestamp``/``weight`` exist."""
        data: dict[str, np.ndarray] = {
            "user": self.user_map.ids[self.users] if external_ids else self.users,
            "item": self.item_map.ids[self.items] if external_ids else self.items,
        }
        for col, values in (("rating", self.ratings), ("timestamp", self.timestamps),
                            ("weight", self.weights)):
            if values is not None:
                data[col] = values
        return pd.DataFrame(data)

    def to_arrow(self) -> Any:
        import pyarrow as pa

        return pa.Table.from_pandas(self.to_pandas(), preserve_index=False)

    def to_parquet(self, path: str) -> None:
        from recforge.io import atomic_path

        with atomic_path(path) as tmp:
            self.to_pandas().to_parquet(tmp, index=False)

    # ------------------------------------------------------------------ basic properties
    @property
    def n_interactions(self) -> int:
        return len(self.users)

    @property
    def density(self) -> float:
        return len(self) / max(1, self.n_users * self.n_items)

    @property
    def has_ratings(self) -> bool:
        return self.ratings is not None

    def __repr__(self) -> str:
        cols = [c for c, v in (("ratings", self.ratings), ("timestamps", self.timestamps),
                               ("weights", self.weights)) if v is not None]
        label = f"{self.name!r}, " if self.name else ""
        return (f"Interactions({label}{self.n_users} users x {self.n_items} items, "
                f"{len(self)} interactions, columns={cols})")

    # ------------------------------------------------------------------ sparse views
    def values(self, kind: MatrixValues = "auto") -> np.ndarray:
        """Per-interaction values: ratings, weights or ones (``auto`` takes the first present)."""
        if kind == "binary":
            return np.ones(len(self), dtype=np.float32)
        if kind == "rating":
            if self.ratings is None:
                raise ValueError("these interactions have no ratings")
            return self.ratings
        if kind == "weight":
            if self.weights is None:
                raise ValueError("these interactions have no weights")
            return self.weights
        for values in (self.ratings, self.weights):
            if values is not None:
                return values
        return np.ones(len(self), dtype=np.float32)

    def matrix(self, kind: MatrixValues = "auto") -> sp.csr_matrix:
        """User x item CSR matrix of `values` (duplicates summed); ``csr`` caches the default."""
        mat = sp.csr_matrix(
            (self.values(kind), (self.users, self.items)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        mat.sum_duplicates()
        mat.sort_indices()
        return mat

    @cached_property
    def csr(self) -> sp.csr_matrix:
        """User x item CSR of `values` ('auto'), built once."""
        return self.matrix("auto")

    @cached_property
    def binary_csr(self) -> sp.csr_matrix:
        """User x item CSR with a 1 for every observed pair, built once."""
        mat = self.csr.copy()
        mat.data = np.ones_like(mat.data)
        return mat

    @cached_property
    def item_user_csr(self) -> sp.csr_matrix:
        """Item x user CSR (the transpose of `csr`), built once."""
        return self.csr.T.tocsr()

    def item_column(self, kind: str, name: str) -> Any:
        """The item side table's ``kind`` (``categorical``, ``numeric``, ``multihot``,
        ``text``) column ``name``, row ``i`` for item index ``i``; None when absent."""
        table = self.item_features
        if table is None or name not in getattr(table, kind):
            return None
        if not np.array_equal(table.ids, self.item_map.ids):
            table = table.align(self.item_map)
        return getattr(table, kind)[name]

    # ------------------------------------------------------------------ subsets and filters
    def subset(self, index: Any, name: str | None = None) -> Interactions:
        """The interactions at ``index`` (positions or a boolean mask), same id maps."""
        index = np.asarray(index)
        return Interactions(
            self.users[index],
            self.items[index],
            user_map=self.user_map,
            item_map=self.item_map,
            ratings=None if self.ratings is None else self.ratings[index],
            timestamps=None if self.timestamps is None else self.timestamps[index],
            weights=None if self.weights is None else self.weights[index],
            user_features=self.user_features,
            item_features=self.item_features,
            name=self.name if name is None else name,
        )

    def compact(self) -> Interactions:
        """Drop users and items without interactions, re-indexing densely (order is kept)."""
        user_keep = np.flatnonzero(self.user_counts > 0)
        item_keep = np.flatnonzero(self.item_counts > 0)
        return self._reindex(user_keep, item_keep)

    def _reindex(self, user_keep: np.ndarray, item_keep: np.ndarray) -> Interactions:
        user_new = np.full(self.n_users, -1, dtype=np.int64)
        user_new[user_keep] = np.arange(len(user_keep))
        item_new = np.full(self.n_items, -1, dtype=np.int64)
        item_new[item_keep] = np.arange(len(item_keep))
        mask = (user_new[self.users] >= 0) & (item_new[self.items] >= 0)
        user_map = IdMap(self.user_map.ids[user_keep])
        item_map = IdMap(self.item_map.ids[item_keep])
        return Interactions(
            user_new[self.users[mask]],
            item_new[self.items[mask]],
            user_map=user_map,
            item_map=item_map,
            ratings=None if self.ratings is None else self.ratings[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            weights=None if self.weights is None else self.weights[mask],
            user_features=None if self.user_features is None else self.user_features.align(user_map),
            item_features=None if self.item_features is None else self.item_features.align(item_map),
            name=self.name,
        )

    def filter(self, min_user_count: int = 1, min_item_count: int = 1) -> Interactions:
        """One pass: drop users/items with fewer interactions than the minimums, then compact."""
        keep = (self.user_counts[self.users] >= min_user_count) & (
            self.item_counts[self.items] >= min_item_count
        )
        return self.subset(keep).compact()

    def k_core(self, k: int, max_iter: int = 100) -> Interactions:
        """Repeat `filter` until every user and item has at least ``k`` interactions."""
        data = self
        for _ in range(max_iter):
            filtered = data.filter(k, k)
            if len(filtered) == len(data):
                return filtered
            if len(filtered) == 0:
                raise ValueError(f"no interactions survive a {k}-core filter")
            data = filtered
        return data

    def to_implicit(self, threshold: float | None = None) -> Interactions:
        """Keep interactions with rating >= ``threshold`` (all when None) and drop the ratings."""
        keep = np.ones(len(self), dtype=bool)
        if threshold is not None:
            if self.ratings is None:
                raise ValueError("to_implicit(threshold) needs ratings")
            keep = self.ratings >= threshold
        out = self.subset(keep)
        out.ratings = None
        return out

    def with_name(self, name: str) -> Interactions:
        return self.subset(slice(None), name=name)

    def describe(self) -> dict[str, Any]:
        """Summary counts used by ``recforge datasets info``."""
        info: dict[str, Any] = {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": len(self),
            "density": round(self.density, 6),
            "has_ratings": self.ratings is not None,
            "has_timestamps": self.timestamps is not None,
        }
        if self.ratings is not None and len(self):
            info["rating_min"] = float(self.ratings.min())
            info["rating_max"] = float(self.ratings.max())
            info["rating_mean"] = round(float(self.ratings.mean()), 4)
        for label, table in (("user_features", self.user_features),
                             ("item_features", self.item_features)):
            if table is not None:
                info[label] = table.column_names()
        return info


# ---------------------------------------------------------------------- helpers
def _column(values: Any, dtype: Any, n: int, label: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.ascontiguousarray(values, dtype=dtype)
    if len(arr) != n:
        raise ValueError(f"{label} has length {len(arr)}, expected {n}")
    return arr


def _default_col(df: pd.DataFrame, given: str | None, default: str) -> str | None:
    if given is not None:
        if given not in df.columns:
            raise UnknownNameError(f"missing column {given!r} (have {list(df.columns)})")
        return given
    return default if default in df.columns else None


def _check_ratings(values: np.ndarray, rating_range: tuple[float, float] | None, source: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: {int(bad.sum())} missing or non-finite ratings (first at row {row})")
    if rating_range is not None:
        lo, hi = rating_range
        out = (values < lo) | (values > hi)
        if out.any():
            row = int(np.flatnonzero(out)[0])
            raise ValueError(
                f"{source}: rating {values[row]} at row {row} is outside [{lo}, {hi}] "
                f"({int(out.sum())} out of range)"
            )


def _as_epoch(col: pd.Series) -> np.ndarray:
    """Timestamps as int64 seconds since the epoch (datetimes are converted)."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return (col.astype("datetime64[ns]").astype(np.int64) // 1_000_000_000).to_numpy()
    return col.to_numpy(dtype=np.int64)


def _deduplicate(df: pd.DataFrame, user: str, item: str, rating: str | None,
                 timestamp: str | None, weight: str | None, policy: str, source: str) -> pd.DataFrame:
    if policy == "keep":
        return df
    dup = df.duplicated([user, item], keep=False)
    if not dup.any():
        return df
    if policy == "error":
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"{source}: duplicate (user, item) pair at row {row}")
    if policy == "sum":
        agg = {c: "sum" for c in (rating, weight) if c is not None}
        if timestamp is not None:
            agg[timestamp] = "max"
        if not agg:
            return df.drop_duplicates([user, item])
        return df.groupby([user, item], sort=False, as_index=False).agg(agg)
    if policy not in ("latest", "first"):
        raise ValueError(f"unknown duplicates policy {policy!r}")
    order = df
    if timestamp is not None:
        order = df.assign(_row=np.arange(len(df))).sort_values([timestamp, "_row"], kind="stable")
        order = order.drop(columns="_row")
    keep = "last" if policy == "latest" else "first"
    return order.drop_duplicates([user, item], keep=keep).sort_index()


def _map_ids(values: np.ndarray, universe: Any | None, label: str, source: str) -> tuple[IdMap, np.ndarray]:
    if universe is None:
        return IdMap.from_values(values)
    id_map = universe if isinstance(universe, IdMap) else IdMap(np.unique(np.asarray(universe)))
    codes = id_map.to_index(values)
    if (codes < 0).any():
        bad = values[codes < 0][:5].tolist()
        raise ValueError(f"{source}: {label} ids not in the given universe: {bad}")
    return id_map, codes.astype(np.int32)
