"""The inputs of a click model: every field of the user, the item and the moment, encoded once
by a `FeatureCodec` and assembled per (query, candidate) row.

Each declared `Field` has a *scope*, found from where its column lives: ``user`` (the user id
``user`` or a column of the user side table), ``item`` (the item id ``item`` or a column of the
item side table) or ``event`` (a per-event context column: time, device, ...). User- and
item-scope fields are encoded once per user and per item at fit time and gathered per row, so
scoring a user against 1,000 candidates encodes the user once; event-scope fields are encoded
from the rows' context. A user outside the training users takes the all-unknown row (index 0
in every field). The user's recent items (``history_length`` of them, oldest first) are the
codes of the ``item`` field, 0 for padding, pooled by the model with the item embeddings.

A batch of rows is a dict of arrays: ``sparse`` ``(n, S)`` int64 (index-valued fields, in
declaration order), ``numeric`` ``(n, N)`` float32, ``multihot`` ``(n, M)`` float32 (the
multihot fields side by side) and ``history`` ``(n, L)`` int64; `InputLayout` records the
widths, which size the model's embedding tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.codec import INDEX_KINDS, FeatureCodec, Field, as_columns
from recforge.data.events import Events, time_context
from recforge.data.features import SideTable
from recforge.errors import InputError

Rows = dict[str, np.ndarray]
#: the id fields every default declaration starts with
ID_FIELDS = (Field("user", "categorical"), Field("item", "categorical"))


@dataclass(frozen=True)
class InputLayout:
    """Field names and table sizes of the batch arrays (what the model's layers are built
    from): ``sparse`` and ``multihot`` as ``(name, size)`` pairs, ``numeric`` names, the
    position of the ``item`` field among ``sparse`` (None without one) and ``history_length``
    (0: no history)."""

    sparse: tuple[tuple[str, int], ...]
    numeric: tuple[str, ...]
    multihot: tuple[tuple[str, int], ...]
    item_field: int | None
    history_length: int

    @property
    def n_fields(self) -> int:
        """Fields the embedding layer returns a vector for (history counts as one)."""
        return (len(self.sparse) + len(self.numeric) + len(self.multihot)
                + (self.history_length > 0))

    def to_dict(self) -> dict[str, Any]:
        return {"sparse": [list(p) for p in self.sparse], "numeric": list(self.numeric),
                "multihot": [list(p) for p in self.multihot], "item_field": self.item_field,
                "history_length": self.history_length}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputLayout:
        return cls(tuple((str(n), int(s)) for n, s in data["sparse"]),
                   tuple(str(n) for n in data["numeric"]),
                   tuple((str(n), int(s)) for n, s in data["multihot"]),
                   None if data["item_field"] is None else int(data["item_field"]),
                   int(data["history_length"]))


def default_fields(events: Events) -> list[Field]:
    """Ids, then every side-table column (categorical, numeric standardised, multihot; text
    left out), then every context column: categorical when it holds text or at most 64
    distinct integers (an hour, a weekday), else numeric."""
    fields = [*ID_FIELDS]
    for table in (events.user_features, events.item_features):
        fields += FeatureCodec.for_side_table(table).fields
    for name in events.context.columns:
        column = events.context[name]
        discrete = column.dtype.kind in "OUSb" or (column.dtype.kind in "iu"
                                                    and column.nunique() <= 64)
        fields.append(Field(str(name), "categorical" if discrete else "numeric"))
    return fields


class FeatureInputs:
    """Encodes rows of (user, item, context, history) for a click model (module docstring).
    `fit` learns the codec on training events and encodes the side tables; then `events`
    and `pairs` build batches."""

    def __init__(self, fields: list[Field], history_length: int):
        for f in fields:
            if f.kind == "sequence":
                raise InputError(f"field {f.name!r}: a click model takes the user's history "
                                 "through history_length, not a sequence field")
        self.codec = FeatureCodec(fields)
        self.history_length = history_length
        self.scopes: dict[str, str] = {}
        self.user_codes: dict[str, Any] = {}
        self.item_codes: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, events: Events) -> FeatureInputs:
        """Learn the codec from ``events`` (vocabularies weighted by events) and encode every
        user and item once."""
        self.scopes = _scopes(self.codec.fields, events)
        self.codec.fit(_event_columns(events))
        self._encode_sides(events.user_map.ids, events.user_features,
                           events.item_map.ids, events.item_features)
        return self

    def _encode_sides(self, user_ids: np.ndarray, users: SideTable | None,
                      item_ids: np.ndarray, items: SideTable | None) -> None:
        self.user_codes = self._side_codes("user", user_ids, users, unknown_row=True)
        self.item_codes = self._side_codes("item", item_ids, items, unknown_row=False)

    def _side_codes(self, scope: str, ids: np.ndarray, table: SideTable | None,
                    unknown_row: bool) -> dict[str, Any]:
        """The ``scope`` fields' encodings per user or item (plus an all-unknown last row)."""
        names = [f.name for f in self.codec.fields if self.scopes[f.name] == scope]
        columns = {scope: ids, **as_columns(table)}
        if unknown_row:
            columns = {k: _with_missing_row(v) for k, v in columns.items()}
        encoded = self.codec.transform(columns, n_rows=len(ids) + unknown_row)
        if unknown_row:
            encoded = {k: _zero_last_row(v) for k, v in encoded.items()}
        return {name: encoded[name] for name in names}

    @property
    def layout(self) -> InputLayout:
        sizes = self.codec.sizes()
        sparse = tuple((f.name, sizes[f.name]) for f in self.codec.fields
                       if f.kind in INDEX_KINDS)
        names = [name for name, _ in sparse]
        return InputLayout(
            sparse=sparse,
            numeric=tuple(f.name for f in self.codec.fields if f.kind == "numeric"),
            multihot=tuple((f.name, sizes[f.name]) for f in self.codec.fields
                           if f.kind == "multihot"),
            item_field=names.index("item") if "item" in names else None,
            history_length=self.history_length if "item" in names else 0)

    # ------------------------------------------------------------------ batches
    def events(self, events: Events, history: np.ndarray | None) -> Rows:
        """Inputs of every event (users and items of the training id space; a user without
        training events is unknown to the id field but keeps their side features), context
        from the events' columns; ``history`` ``(n, L)`` item indices (-1: none) or None."""
        return self._assemble(events.users, events.items, events.columns(), history)

    def pairs(self, users: np.ndarray, items: np.ndarray, context: Mapping[str, Any],
              history: np.ndarray | None) -> Rows:
        """Inputs of (user, item) rows: ``users`` -1 for an unknown user, ``context`` columns
        per row (``timestamp`` gives ``hour`` and ``weekday`` when those are fields and the
        context lacks them), ``history`` per row or None."""
        context = dict(context)
        if "timestamp" in context:
            derived = time_context(np.asarray(context["timestamp"], dtype=np.int64))
            for name in derived.columns:
                context.setdefault(name, derived[name].to_numpy())
        return self._assemble(users, items, context, history)

    def _assemble(self, users: np.ndarray, items: np.ndarray, context: Mapping[str, Any],
                  history: np.ndarray | None) -> Rows:
        n = len(items)
        sources = {f.source for f in self.codec.fields if self.scopes[f.name] == "event"}
        encoded = self.codec.transform({k: v for k, v in context.items() if k in sources},
                                       n_rows=n)
        for name, codes in self.user_codes.items():
            encoded[name] = codes[users]  # -1 (unknown) is the all-unknown last row
        for name, codes in self.item_codes.items():
            encoded[name] = codes[items]
        return self._arrays(encoded, n, history)

    def _arrays(self, encoded: Mapping[str, Any], n: int, history: np.ndarray | None) -> Rows:
        layout = self.layout
        out: Rows = {
            "sparse": _stack([encoded[name] for name, _ in layout.sparse], n, np.int64),
            "numeric": _stack([encoded[name] for name in layout.numeric], n, np.float32),
            "multihot": (sp.hstack([encoded[name] for name, _ in layout.multihot]).toarray()
                         .astype(np.float32) if layout.multihot
                         else np.zeros((n, 0), np.float32)),
        }
        if layout.history_length:
            out["history"] = self.history_codes(history, n)
        return out

    def history_codes(self, history: np.ndarray | None, n: int) -> np.ndarray:
        """``(n, L)`` codes of the ``item`` field for item indices (-1 and unknown items: 0)."""
        length = self.history_length
        if history is None:
            return np.zeros((n, length), dtype=np.int64)
        history = np.asarray(history, dtype=np.int64)[:, -length:]
        codes = self.item_codes["item"]
        inside = (history >= 0) & (history < len(codes))
        out = np.zeros((n, length), dtype=np.int64)
        out[:, length - history.shape[1]:] = np.where(inside, codes[np.where(inside, history, 0)], 0)
        return out

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """JSON-able description (codec, scopes, history length) and the side encodings as
        arrays named ``user.K``/``item.K`` for field number ``K`` (multihot as CSR)."""
        meta = {"codec": self.codec.to_dict(), "scopes": self.scopes,
                "history_length": self.history_length}
        number = {f.name: k for k, f in enumerate(self.codec.fields)}
        arrays = {f"user.{number[k]}": v for k, v in self.user_codes.items()}
        arrays |= {f"item.{number[k]}": v for k, v in self.item_codes.items()}
        return {"meta": meta, "arrays": arrays}

    @classmethod
    def restore(cls, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> FeatureInputs:
        codec = FeatureCodec.from_dict(meta["codec"], where="model.json inputs_")
        inputs = cls(list(codec.fields), int(meta["history_length"]))
        inputs.codec = codec
        inputs.scopes = dict(meta["scopes"])
        names = [f.name for f in codec.fields]
        for key, value in arrays.items():
            scope, number = key.split(".")
            codes = inputs.user_codes if scope == "user" else inputs.item_codes
            codes[names[int(number)]] = value
        return inputs


def _scopes(fields: tuple[Field, ...], events: Events) -> dict[str, str]:
    """Each field's scope: where its column is (module docstring)."""
    user_cols = {"user", *as_columns(events.user_features)}
    item_cols = {"item", *as_columns(events.item_features)}
    event_cols = {str(c) for c in events.context.columns}
    scopes = {}
    for f in fields:
        places = [s for s, cols in (("user", user_cols), ("item", item_cols),
                                    ("event", event_cols)) if f.source in cols]
        if not places:
            have = sorted(user_cols | item_cols | event_cols)
            raise InputError(f"field {f.name!r}: no column {f.source!r} in the events or "
                             f"their side tables (have {have})")
        if len(places) > 1:
            raise InputError(f"field {f.name!r}: column {f.source!r} is in both the "
                             f"{places[0]} and {places[1]} data; rename one")
        scopes[f.name] = places[0]
    return scopes


def _event_columns(events: Events) -> dict[str, Any]:
    """Every column of ``events`` per event, ids included (``user``, ``item``)."""
    return {"user": events.user_map.ids[events.users], "item": events.item_map.ids[events.items],
            **events.columns()}


def _with_missing_row(values: Any) -> Any:
    """``values`` plus one missing entry (the unknown user's row)."""
    if isinstance(values, tuple):
        labels, matrix = values
        return labels, sp.vstack([matrix, sp.csr_matrix((1, matrix.shape[1]))], format="csr")
    values = np.asarray(values)
    missing = np.array([None], dtype=object) if values.dtype.kind in "OUS" else \
        np.array([np.nan])
    return np.concatenate([values.astype(object) if values.dtype.kind in "OUS" else
                           values.astype(np.float64), missing])


def _zero_last_row(encoded: Any) -> Any:
    """The unknown row encodes as unknown in every kind (numeric: 0, the mean)."""
    if sp.issparse(encoded):
        encoded = encoded.tolil()
        encoded[encoded.shape[0] - 1] = 0
        return encoded.tocsr()
    encoded = np.array(encoded)
    encoded[-1] = 0
    return encoded


def _stack(columns: list[np.ndarray], n: int, dtype: Any) -> np.ndarray:
    return np.stack(columns, axis=1).astype(dtype) if columns else np.zeros((n, 0), dtype)
