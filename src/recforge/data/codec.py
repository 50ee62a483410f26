"""`FeatureCodec`: one declaration per field turns raw columns into model inputs and sizes
each field's embedding table (after FuxiCTR's feature map).

A `Field` names a column and its kind; `FeatureCodec.fit` learns each field's state from
training rows and `FeatureCodec.transform` applies it to any rows, unseen ones included.
Index-valued fields use one convention: **index 0 means "no known value"** (missing, a
category not in the vocabulary, a category seen fewer than ``min_count`` times in training,
sequence padding) and known values are ``1..V`` in sorted order of their text.

* ``categorical``: the column's values as text (optionally cut to ``prefix`` characters,
  e.g. zip code regions); vocabulary: the texts seen at least ``min_count`` times.
  Output: int64 indices ``(n,)``; ``size`` ``V + 1``.
* ``hashed``: ``1 + h(text) mod buckets`` with pandas' fixed-key SipHash (the same on every
  run and machine), missing values 0; nothing is learned. ``size`` ``buckets + 1``.
* ``numeric``: ``(x - mean) / std`` with the mean and population standard deviation of the
  finite training values (``std`` 1 when there are fewer than two or it is 0); missing,
  non-numeric and non-finite values become 0 (the mean). Output: float32 ``(n,)``;
  ``size`` 1.
* ``bucketised``: numbers cut at the distinct ``bins``-quantiles of the finite training
  values (``b`` boundaries): ``1 + (number of boundaries <= x)``, missing values 0.
  ``size`` ``b + 2``.
* ``multihot``: sets of labels, given as ``(labels, CSR 0/1 matrix)`` (a `SideTable` column),
  strings joined by ``separator`` or lists; vocabulary as for ``categorical``, unknown labels
  dropped. Output: a float32 CSR ``(n, V)``; ``size`` ``V``.
* ``sequence``: ordered tokens (strings joined by ``separator`` or lists, oldest first);
  vocabulary as for ``categorical``. Output: int64 ``(n, max_length)`` of each row's last
  ``max_length`` known tokens, oldest first, left-padded with 0 (unknown tokens are dropped).
  ``size`` ``V + 1``.

Rows are a `pandas.DataFrame`, a `SideTable` or a mapping of column name to values; a field
whose column is absent encodes every row as unknown (0). `FeatureCodec.save` writes a marked
folder with ``codec.json`` and the vocabularies in ``vocabularies.npz``; `FeatureCodec.load`
reads it without unpickling. `to_dict`/`from_dict` give the same state as one JSON object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.features import SideTable
from recforge.errors import CorruptFileError, InputError, ParameterError, UnknownNameError
from recforge.params import MAX_COUNT, WIDTH, Choice, Integer, Optional, Rule, Text, check_all

FieldKind = Literal["categorical", "hashed", "numeric", "bucketised", "multihot", "sequence"]
KINDS: tuple[str, ...] = ("categorical", "hashed", "numeric", "bucketised", "multihot",
                          "sequence")
#: kinds whose output is one int64 index per row
INDEX_KINDS = frozenset({"categorical", "hashed", "bucketised"})
#: kinds with a learned vocabulary
VOCAB_KINDS = frozenset({"categorical", "multihot", "sequence"})
CODEC_FILE, VOCAB_FILE = "codec.json", "vocabularies.npz"
FORMAT_VERSION = 1
#: embedding width when a field declares none: ``min(64, round(6 * size ** 0.25))``
MAX_AUTO_DIM = 64

FIELD_RULES: dict[str, Rule] = {
    "name": Text(r"[^/\x00]+", "a non-empty name"), "kind": Choice(*KINDS),
    "column": Optional(Text()), "min_count": Integer(1, MAX_COUNT),
    "prefix": Optional(Integer(1, MAX_COUNT)), "buckets": Integer(1, MAX_COUNT),
    "bins": Integer(2, 10_000), "separator": Text(r".+", "a non-empty separator"),
    "max_length": Integer(1, MAX_COUNT), "embedding_dim": Optional(WIDTH),
}

Rows = pd.DataFrame | SideTable | Mapping[str, Any]
Encoded = np.ndarray | sp.csr_matrix


@dataclass(frozen=True)
class Field:
    """One input field: its ``name``, ``kind`` (module docstring), the ``column`` it reads
    (default: ``name``) and the options of its kind: ``min_count`` (vocabularies),
    ``prefix`` (categorical), ``buckets`` (hashed), ``bins`` (bucketised), ``separator``
    (multihot and sequence strings), ``max_length`` (sequence); ``embedding_dim`` (None:
    `FeatureCodec.embedding_sizes` chooses)."""

    name: str
    kind: FieldKind
    column: str | None = None
    min_count: int = 1
    prefix: int | None = None
    buckets: int = 1000
    bins: int = 10
    separator: str = "|"
    max_length: int = 50
    embedding_dim: int | None = None

    def __post_init__(self) -> None:
        check_all(FIELD_RULES, dataclasses.asdict(self), where=f"field {self.name}.")

    @property
    def source(self) -> str:
        """The column this field reads."""
        return self.name if self.column is None else self.column


class FeatureCodec:
    """Encodes rows by a list of `Field` declarations (module docstring)."""

    def __init__(self, fields: Sequence[Field]):
        self.fields = tuple(fields)
        names = [f.name for f in self.fields]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ParameterError(f"field {repeated[0]!r} is declared twice")
        #: per field, what `fit` learned (vocabulary, mean and std, boundaries)
        self.state: dict[str, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        kinds = ", ".join(f"{f.name}:{f.kind}" for f in self.fields)
        return f"FeatureCodec({kinds}{'' if self.fitted else ', unfitted'})"

    @property
    def fitted(self) -> bool:
        return self.state is not None

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise UnknownNameError(f"no field {name!r} (have {[f.name for f in self.fields]})")

    def names(self, *kinds: str) -> list[str]:
        """The field names, in declaration order (only those of ``kinds`` when given)."""
        return [f.name for f in self.fields if not kinds or f.kind in kinds]

    # ------------------------------------------------------------------ fitting
    @classmethod
    def for_side_table(cls, table: SideTable | None,
                       prefix: Mapping[str, int] | None = None) -> FeatureCodec:
        """A codec declaring every categorical (cut to ``prefix[column]`` characters where
        given), numeric (standardised) and multihot column of ``table`` (text excluded), in
        that order; unfitted."""
        if table is None:
            return cls([])
        prefix = prefix or {}
        return cls([Field(c, "categorical", prefix=prefix.get(c)) for c in table.categorical]
                   + [Field(c, "numeric") for c in table.numeric]
                   + [Field(c, "multihot") for c in table.multihot])

    def fit(self, rows: Rows | None) -> FeatureCodec:
        """Learn every field's state from ``rows`` (a field without its column gets an empty
        vocabulary, mean 0 and std 1, no boundaries); returns ``self``."""
        columns = as_columns(rows)
        if columns:
            _row_count(columns, None)
        self.state = {f.name: _fit_field(f, columns.get(f.source)) for f in self.fields}
        return self

    # ------------------------------------------------------------------ encoding
    def transform(self, rows: Rows | None, n_rows: int | None = None) -> dict[str, Encoded]:
        """Each field's encoding of ``rows`` (module docstring), by name. ``n_rows`` is
        needed only when ``rows`` holds none of the fields' columns."""
        return self._transform(rows, n_rows)[0]

    def index_and_dense(self, rows: Rows | None,
                        n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, dense)`` of ``rows``: ``(n, I)`` int64 of the index-valued fields
        (categorical, hashed, bucketised) and ``(n, D)`` float32 of the numeric values and
        multihot rows, each side by side in declaration order (the inputs of an embedding
        layer and of an MLP)."""
        encoded, n = self._transform(rows, n_rows)
        indices = [encoded[name] for name in self.names(*INDEX_KINDS)]
        dense = [encoded[f.name][:, None] if f.kind == "numeric" else encoded[f.name].toarray()
                 for f in self.fields if f.kind in ("numeric", "multihot")]
        return (np.stack(indices, axis=1) if indices else np.zeros((n, 0), dtype=np.int64),
                (np.concatenate(dense, axis=1) if dense else np.zeros((n, 0))).astype(np.float32))

    def design_matrix(self, rows: Rows | None, n_rows: int | None = None) -> sp.csr_matrix:
        """A float32 CSR for linear models: one column per index of each index-valued field
        (one-hot, the unknown index 0 included), one per numeric field (its standardised
        value), one per multihot label, one per sequence index (1 when the row holds it);
        columns in declaration order, named by `feature_names`."""
        encoded, n = self._transform(rows, n_rows)
        sizes = self.sizes()
        blocks = [_design_block(f, encoded[f.name], sizes[f.name]) for f in self.fields]
        return sp.hstack(blocks, format="csr", dtype=np.float32) if blocks else \
            sp.csr_matrix((n, 0), dtype=np.float32)

    def _transform(self, rows: Rows | None,
                   n_rows: int | None) -> tuple[dict[str, Encoded], int]:
        state = self._state()
        columns = as_columns(rows)
        n = _row_count(columns, n_rows)
        return {f.name: _encode(f, state[f.name], columns.get(f.source), n)
                for f in self.fields}, n

    def feature_names(self) -> list[str]:
        """The names of `design_matrix`'s columns: ``field=value`` (``field=?`` for index 0),
        ``field`` for numeric fields, ``field#k`` for hash buckets and bins."""
        state = self._state()
        names: list[str] = []
        for f in self.fields:
            vocab = state[f.name].get("vocabulary")
            if f.kind == "numeric":
                names.append(f.name)
            elif f.kind == "multihot":
                names += [f"{f.name}={v}" for v in vocab]
            elif vocab is not None:
                names += [f"{f.name}=?"] + [f"{f.name}={v}" for v in vocab]
            else:
                names += [f"{f.name}=?"] + [f"{f.name}#{k}" for k in range(1, self.sizes()[f.name])]
        return names

    # ------------------------------------------------------------------ sizes
    def sizes(self) -> dict[str, int]:
        """Per field: distinct indices (index kinds and sequences, unknown included), labels
        (multihot) or 1 (numeric)."""
        state = self._state()
        return {f.name: _size(f, state[f.name]) for f in self.fields}

    def embedding_sizes(self, default_dim: int | None = None) -> dict[str, tuple[int, int]]:
        """Per field ``(rows, width)`` of its embedding table: `sizes` rows and the field's
        ``embedding_dim``, else ``default_dim``, else ``min(64, round(6 * rows ** 0.25))``."""
        return {name: (size, f.embedding_dim or default_dim or _auto_dim(size))
                for (name, size), f in zip(self.sizes().items(), self.fields)}

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """The declarations and fitted state as one JSON-able object (vocabularies as lists)."""
        meta, vocabularies = self._parts()
        for name, vocab in vocabularies.items():
            meta["state"][name]["vocabulary"] = vocab.tolist()
        return meta

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "codec") -> FeatureCodec:
        """The codec `to_dict` described; a malformed description raises `CorruptFileError`
        naming ``where``."""
        try:
            codec = cls([Field(**spec) for spec in data["fields"]])
            if data.get("state") is not None:
                codec.state = {f.name: _read_state(f, data["state"][f.name])
                               for f in codec.fields}
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{where}: not a valid feature codec ({exc})") from None
        return codec

    def save(self, path: str | Path) -> Path:
        """Write a ``codec`` folder (``codec.json``, ``vocabularies.npz``); atomic, marked."""
        from recforge.io import atomic_dir

        meta, vocabularies = self._parts()
        meta["format_version"] = FORMAT_VERSION
        with atomic_dir(path, "codec") as tmp:
            (tmp / CODEC_FILE).write_text(_json(meta))
            np.savez(tmp / VOCAB_FILE, **{f"v{i}": v for i, v in enumerate(vocabularies.values())},
                     names=np.array(list(vocabularies), dtype=str))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureCodec:
        """Read a folder written by `save` (JSON and ``allow_pickle=False`` arrays)."""
        from recforge.io import read_metadata

        meta = read_metadata(path, CODEC_FILE, "codec", FORMAT_VERSION)
        file = Path(path) / VOCAB_FILE
        try:
            with np.load(file, allow_pickle=False) as npz:
                names = npz["names"].tolist()
                vocabularies = {name: npz[f"v{i}"] for i, name in enumerate(names)}
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptFileError(f"{file}: not readable vocabularies ({exc})") from None
        for name, vocab in vocabularies.items():
            if name not in (meta.get("state") or {}):
                raise CorruptFileError(f"{file}: vocabulary of undeclared field {name!r}")
            meta["state"][name]["vocabulary"] = vocab
        return cls.from_dict(meta, where=str(Path(path) / CODEC_FILE))

    def _parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able declarations and state without vocabularies, vocabularies by field)."""
        state = self._state()
        vocabularies = {n: s["vocabulary"] for n, s in state.items() if "vocabulary" in s}
        meta = {"fields": [dataclasses.asdict(f) for f in self.fields],
                "state": {n: {k: v for k, v in s.items() if k != "vocabulary"}
                          for n, s in state.items()}}
        return meta, vocabularies

    def _state(self) -> dict[str, dict[str, Any]]:
        if self.state is None:
            raise InputError("the feature codec is not fitted; call fit(rows) first")
        return self.state


# ---------------------------------------------------------------------- columns
def as_columns(rows: Rows | None) -> dict[str, Any]:
    """``rows`` as a dict of column name to values; a `SideTable`'s multihot columns become
    ``(labels, CSR)`` pairs."""
    if rows is None:
        return {}
    if isinstance(rows, SideTable):
        return {**rows.categorical, **rows.numeric, **rows.text, **rows.multihot}
    if isinstance(rows, pd.DataFrame):
        return {str(c): rows[c].to_numpy() for c in rows.columns}
    return dict(rows)


def _length(values: Any) -> int:
    return values[1].shape[0] if isinstance(values, tuple) else len(values)


def _row_count(columns: Mapping[str, Any], n_rows: int | None) -> int:
    lengths = {_length(v) for v in columns.values()}
    if n_rows is not None:
        lengths.add(int(n_rows))
    if len(lengths) > 1:
        raise InputError(f"the columns (and n_rows) disagree on the number of rows: "
                         f"{sorted(lengths)}")
    if not lengths:
        raise InputError("no columns to encode; pass n_rows for rows without any")
    return lengths.pop()


def _texts(values: Any, prefix: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values as str, missing mask); missing entries hold ``""``."""
    raw = np.asarray(values, dtype=object)
    missing = np.asarray(pd.isna(raw), dtype=bool)
    texts = raw.astype(str)
    if prefix is not None:
        texts = texts.astype(f"<U{prefix}")
    texts[missing] = ""
    return texts, missing


def _factorize(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(code of each value, the distinct values): ``-1`` for a missing value. Hash-based, so
    the text conversion and lookups run once per distinct value, not once per row (pandas
    categoricals keep their categories)."""
    if isinstance(values, pd.Categorical):  # only the categories that occur
        codes, used = pd.factorize(values.codes, use_na_sentinel=False)
        present = used >= 0
        remap = np.where(present, np.cumsum(present) - 1, -1)
        return remap[codes].astype(np.int64), np.asarray(values.categories[used[present]],
                                                         dtype=object)
    codes, uniques = pd.factorize(np.asarray(values, dtype=object)
                                  if np.asarray(values).dtype.kind in "OUS" else
                                  np.asarray(values), use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _distinct_texts(values: Any, prefix: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-missing texts of ``values`` (cut to ``prefix``), sorted, and how
    often each occurs."""
    codes, uniques = _factorize(values)
    texts, missing = _texts(uniques, prefix)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    distinct, inverse = np.unique(texts[~missing], return_inverse=True)
    return distinct.astype(str), np.bincount(inverse.ravel(), weights=counts[~missing],
                                             minlength=len(distinct)).astype(np.int64)


def _tokens(values: Any, separator: str) -> tuple[np.ndarray, np.ndarray]:
    """(row of each token, token text) of label sets or sequences: ``(labels, CSR)`` pairs,
    strings joined by ``separator`` or lists; empty tokens and missing rows give none."""
    if isinstance(values, tuple):
        labels, matrix = values
        coo = sp.coo_matrix(matrix)
        keep = coo.data != 0
        order = np.lexsort((coo.col[keep], coo.row[keep]))
        return (coo.row[keep][order].astype(np.int64),
                np.asarray(labels, dtype=str)[coo.col[keep][order]])
    series = pd.Series(list(values), dtype=object)
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        series = series.str.split(separator)
    flat = series.explode()
    keep = flat.notna().to_numpy()
    tokens, missing = _texts(flat.to_numpy()[keep])
    rows = flat.index.to_numpy()[keep]
    present = ~missing & (tokens != "")
    return rows[present].astype(np.int64), tokens[present]


def _vocabulary(texts: np.ndarray, min_count: int) -> np.ndarray:
    """The distinct ``texts`` seen at least ``min_count`` times, sorted."""
    uniques, counts = np.unique(texts, return_counts=True)
    return uniques[counts >= min_count].astype(str)


def _lookup(vocab: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """1-based positions of ``texts`` in the sorted ``vocab``, 0 when absent."""
    if not len(vocab):
        return np.zeros(len(texts), dtype=np.int64)
    at = np.searchsorted(vocab, texts).clip(max=len(vocab) - 1)
    return np.where(vocab[at] == texts, at + 1, 0).astype(np.int64)


def _numbers(values: Any) -> np.ndarray:
    """float64 values, NaN where missing, non-numeric or infinite."""
    raw = np.asarray(values)
    if raw.dtype.kind in "biuf":
        out = raw.astype(np.float64)
    else:
        out = pd.to_numeric(pd.Series(raw.astype(object)), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(out), out, np.nan)


# ---------------------------------------------------------------------- per kind
def _fit_field(field: Field, values: Any) -> dict[str, Any]:
    kind = field.kind
    if kind == "hashed":
        return {}
    if kind == "numeric":
        return _fit_numeric(values)
    if kind == "bucketised":
        finite = np.array([]) if values is None else _numbers(values)
        finite = finite[np.isfinite(finite)]
        cuts = np.quantile(finite, np.arange(1, field.bins) / field.bins) if len(finite) \
            else np.array([])
        return {"boundaries": np.unique(cuts).tolist()}
    if values is None:
        return {"vocabulary": np.array([], dtype=str)}
    if kind == "categorical":
        texts, counts = _distinct_texts(values, field.prefix)
        return {"vocabulary": texts[counts >= field.min_count]}
    return {"vocabulary": _vocabulary(_tokens(values, field.separator)[1], field.min_count)}


def _fit_numeric(values: Any) -> dict[str, Any]:
    if values is None:
        return {"mean": 0.0, "std": 1.0}
    raw = _numbers(values).astype(np.float32)
    finite = np.isfinite(raw)
    mean = float(np.nanmean(raw)) if finite.any() else 0.0
    std = float(np.nanstd(raw)) if finite.sum() > 1 else 1.0
    return {"mean": mean, "std": std or 1.0}


def _encode(field: Field, state: dict[str, Any], values: Any, n: int) -> Encoded:
    kind = field.kind
    if kind == "numeric":
        raw = np.full(n, state["mean"], np.float32) if values is None else \
            _numbers(values).astype(np.float32)
        return np.nan_to_num((raw - state["mean"]) / state["std"])
    if kind == "multihot":
        vocab = state["vocabulary"]
        rows, tokens = (np.zeros(0, np.int64), np.zeros(0, str)) if values is None else \
            _tokens(values, field.separator)
        cols = _lookup(vocab, tokens) - 1
        keep = cols >= 0
        matrix = sp.csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])),
                               shape=(n, len(vocab)))
        matrix.data[:] = 1.0  # a label listed twice is still one label
        return matrix
    if kind == "sequence":
        return _encode_sequence(field, state["vocabulary"], values, n)
    if values is None:
        return np.zeros(n, dtype=np.int64)
    if kind == "bucketised":
        numbers = _numbers(values)
        index = 1 + np.searchsorted(np.asarray(state["boundaries"]), numbers, side="right")
        return np.where(np.isnan(numbers), 0, index).astype(np.int64)
    codes, uniques = _factorize(values)
    texts, missing = _texts(uniques, field.prefix)
    if kind == "hashed":
        hashed = pd.util.hash_array(texts.astype(object)) % np.uint64(field.buckets)
        table = np.where(missing, 0, hashed.astype(np.int64) + 1)
    else:
        table = np.where(missing, 0, _lookup(state["vocabulary"], texts))
    return np.where(codes >= 0, table[np.maximum(codes, 0)], 0)


def _encode_sequence(field: Field, vocab: np.ndarray, values: Any, n: int) -> np.ndarray:
    """Each row's last ``max_length`` known tokens, oldest first, left-padded with 0."""
    from recforge.data.sequences import last_window

    if values is None:
        return np.zeros((n, field.max_length), dtype=np.int64)
    rows, tokens = _tokens(values, field.separator)
    index = _lookup(vocab, tokens)
    known = index > 0
    return last_window(rows[known], index[known], n, field.max_length, pad=0)


def _size(field: Field, state: dict[str, Any]) -> int:
    if field.kind == "numeric":
        return 1
    if field.kind == "hashed":
        return field.buckets + 1
    if field.kind == "bucketised":
        return len(state["boundaries"]) + 2
    return len(state["vocabulary"]) + (field.kind != "multihot")


def _auto_dim(size: int) -> int:
    return int(min(MAX_AUTO_DIM, max(1, round(6 * size ** 0.25))))


def _design_block(field: Field, encoded: Encoded, size: int) -> sp.csr_matrix:
    n = encoded.shape[0]
    if field.kind == "multihot":
        return encoded
    if field.kind == "numeric":
        return sp.csr_matrix(encoded[:, None].astype(np.float32))
    if field.kind == "sequence":
        rows = np.repeat(np.arange(n), encoded.shape[1])
        flat = encoded.ravel()
        keep = flat > 0
        block = sp.csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], flat[keep])),
                              shape=(n, size))
        block.data[:] = 1.0
        return block
    return sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), encoded)), shape=(n, size))


def _read_state(field: Field, state: Mapping[str, Any]) -> dict[str, Any]:
    """A saved field state, checked and with arrays restored."""
    if field.kind == "numeric":
        mean, std = float(state["mean"]), float(state["std"])
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise ValueError(f"field {field.name!r}: mean {mean} and std {std} must be finite, "
                             "std positive")
        return {"mean": mean, "std": std}
    if field.kind == "bucketised":
        cuts = np.asarray(state["boundaries"], dtype=np.float64)
        if cuts.ndim != 1 or not np.isfinite(cuts).all() or (np.diff(cuts) <= 0).any():
            raise ValueError(f"field {field.name!r}: boundaries must increase")
        return {"boundaries": cuts.tolist()}
    if field.kind in VOCAB_KINDS:
        vocab = np.asarray(state["vocabulary"], dtype=str)
        if vocab.ndim != 1 or (len(vocab) > 1 and not (vocab[1:] > vocab[:-1]).all()):
            raise ValueError(f"field {field.name!r}: the vocabulary must be sorted and distinct")
        return {"vocabulary": vocab}
    return {}


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=1)
