"""Side tables: per-user or per-item features aligned to an id map."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from recforge.data.interactions import IdMap


class SideTable:
    """Features of users or items, one row per external id.

    Four kinds of column: ``categorical`` (strings), ``numeric`` (floats, NaN when missing),
    ``multihot`` (a CSR 0/1 matrix with one column per label, e.g. genres) and ``text``
    (strings, e.g. titles). ``align`` reorders rows to an `IdMap` so row ``i`` describes
    internal index ``i``.
    """

    def __init__(
        self,
        ids: Any,
        categorical: dict[str, Any] | None = None,
        numeric: dict[str, Any] | None = None,
        multihot: dict[str, tuple[list[str], Any]] | None = None,
        text: dict[str, Any] | None = None,
    ):
        self.ids = np.asarray(ids)
        n = len(self.ids)
        self.categorical = {k: _check(np.asarray(v, dtype=object), n, k)
                            for k, v in (categorical or {}).items()}
        self.numeric = {k: _check(np.asarray(v, dtype=np.float32), n, k)
                        for k, v in (numeric or {}).items()}
        self.multihot = {k: (list(labels), _check(sp.csr_matrix(m, dtype=np.float32), n, k))
                         for k, (labels, m) in (multihot or {}).items()}
        self.text = {k: _check(np.asarray(v, dtype=object), n, k) for k, v in (text or {}).items()}

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"SideTable(n={len(self)}, columns={self.column_names()})"

    def column_names(self) -> dict[str, list[str]]:
        return {kind: list(cols) for kind, cols in (
            ("categorical", self.categorical), ("numeric", self.numeric),
            ("multihot", self.multihot), ("text", self.text)) if cols}

    def take(self, rows: np.ndarray, ids: Any) -> SideTable:
        """Rows ``rows`` (``-1`` gives an empty row) relabelled with ``ids``."""
        rows = np.asarray(rows, dtype=np.int64)
        missing = rows < 0
        safe = np.where(missing, 0, rows)

        def pick(values: np.ndarray, fill: Any) -> np.ndarray:
            out = values[safe] if len(values) else np.full(len(rows), fill, dtype=values.dtype)
            out = out.copy()
            out[missing] = fill
            return out

        multihot = {}
        for k, (labels, m) in self.multihot.items():
            sub = m[safe].tolil() if len(rows) else sp.lil_matrix((0, m.shape[1]))
            for r in np.flatnonzero(missing):
                sub.rows[r], sub.data[r] = [], []
            multihot[k] = (labels, sub.tocsr())
        return SideTable(
            ids,
            categorical={k: pick(v, None) for k, v in self.categorical.items()},
            numeric={k: pick(v, np.nan) for k, v in self.numeric.items()},
            multihot=multihot,
            text={k: pick(v, None) for k, v in self.text.items()},
        )

    def align(self, id_map: IdMap) -> SideTable:
        """Reorder rows to ``id_map``; ids without a row get missing values."""
        index = pd.Index(_comparable(self.ids, id_map.ids))
        return self.take(index.get_indexer(id_map.ids), id_map.ids)

    def multihot_dense(self, name: str) -> np.ndarray:
        return self.multihot[name][1].toarray()

    def to_pandas(self) -> pd.DataFrame:
        """One row per id; multi-hot columns become ``name:label`` 0/1 columns."""
        frame = pd.DataFrame({"id": self.ids})
        for k, v in self.categorical.items():
            frame[k] = v
        for k, v in self.numeric.items():
            frame[k] = v
        for k, v in self.text.items():
            frame[k] = v
        for k, (labels, m) in self.multihot.items():
            dense = m.toarray().astype(np.int8)
            for j, label in enumerate(labels):
                frame[f"{k}:{label}"] = dense[:, j]
        return frame

    @classmethod
    def from_pandas(
        cls,
        df: pd.DataFrame,
        id_col: str,
        categorical: list[str] = (),
        numeric: list[str] = (),
        multihot: dict[str, Any] | None = None,
        text: list[str] = (),
    ) -> SideTable:
        """Build from a frame. ``multihot`` maps a name to a list of 0/1 columns or to
        ``(column, separator)`` for a delimited string column such as ``"Action|Comedy"``."""
        mh = {}
        for name, spec in (multihot or {}).items():
            if isinstance(spec, tuple):
                col, sep = spec
                mh[name] = _split_multihot(df[col].fillna("").astype(str), sep)
            else:
                mh[name] = (list(spec), sp.csr_matrix(df[list(spec)].to_numpy(dtype=np.float32)))
        return cls(
            df[id_col].to_numpy(),
            categorical={c: df[c].astype(object).where(df[c].notna(), None).to_numpy()
                         for c in categorical},
            numeric={c: pd.to_numeric(df[c], errors="coerce").to_numpy() for c in numeric},
            multihot=mh,
            text={c: df[c].astype(object).where(df[c].notna(), None).to_numpy() for c in text},
        )


def _check(values: Any, n: int, name: str) -> Any:
    if values.shape[0] != n:
        raise ValueError(f"feature {name!r} has {values.shape[0]} rows, expected {n}")
    return values


def _comparable(ids: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cast ``ids`` to the kind of ``target`` so string and integer ids can be matched."""
    if target.dtype.kind in "US" and ids.dtype.kind not in "US":
        return ids.astype(str)
    if target.dtype.kind in "iu" and ids.dtype.kind not in "iu":
        return pd.to_numeric(pd.Series(ids), errors="coerce").to_numpy()
    return ids


def _split_multihot(col: pd.Series, sep: str) -> tuple[list[str], sp.csr_matrix]:
    lists = col.str.split(sep)
    labels = sorted({x for row in lists for x in row if x})
    index = {label: j for j, label in enumerate(labels)}
    rows, cols = [], []
    for i, row in enumerate(lists):
        for x in row:
            if x:
                rows.append(i)
                cols.append(index[x])
    data = np.ones(len(rows), dtype=np.float32)
    return labels, sp.csr_matrix((data, (rows, cols)), shape=(len(col), len(labels)))
