"""The serving pipeline: user id -> query vector -> index search -> seen items dropped -> items.

A `Retriever` wraps a fitted model. When the model exposes the retrieval factorisation
(`Recommender.user_embeddings` / `item_embeddings`, whose inner products are its scores), the
item embeddings go into a `VectorIndex` (`make_index("auto")` by default: exact for small
catalogues, IVF-Flat for large ones) and a request encodes the user, searches the index with the
user's training items excluded and maps the result to external ids and titles. Otherwise
the model's own exact `recommend` answers. Users the model does not know (unknown ids, or
no training interactions) get the model's cold-start answer, popular items, never an error.

New users described by features and/or a history of item ids (`recommend_for`) need an
encoder: the ``encoder`` argument, or else the model's ``encode_users`` method, called with
the batch convention of `encode_users` for one user, ``encoder(features=features,
history=[items])`` (``features``: the caller's one-row feature table or None; ``items``:
internal item indices), returning one query vector (``(1, dim)`` or ``(dim,)``) in the
space of the item embeddings. Without an encoder, or with neither features nor a known
history, the model ranks the history as an anonymous query (`recforge.data.query.QueryBatch`,
its items excluded): popular items, unless the model reads histories (it consumes
``sequences``).

A saved model folder can carry its catalogue (`save_catalogue`, or `write_catalogue` while
the model folder is written: external user and item ids and titles in ``catalogue.npz``,
plain string/number arrays, no pickle), so that `load_retriever` serves it without the
training data. The model's fingerprint of its training ids must match the catalogue's.

`similar` ranks items by the cosine similarity of the model's item vectors (as
`Recommender.similar_items` does) through a second index over the unit-length vectors,
built on first use. A model without item vectors answers with its own ``similar_items``
(e.g. EASE's learned item-item weights).

A request names one id, an integer or a string (`IdMap.to_index` matches its exact
spelling); ``k`` beyond the catalogue returns the whole ranking.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.interactions import IdMap, Interactions, canonical_int
from recforge.data.query import QueryBatch
from recforge.errors import CorruptFileError, InputError, ParameterError, UnknownNameError
from recforge.io import (
    MissingFileError,
    atomic_path,
    first_line,
    ids_fingerprint,
    plain,
    read_json,
)
from recforge.models.base import MODEL_FILE, Recommender, model_output
from recforge.retrieval.index import VectorIndex, make_index

Encoder = Callable[..., Any]
CATALOGUE_FILE = "catalogue.npz"


@dataclass(frozen=True)
class Recommendations:
    """One answer: internal indices, external ids, scores, titles and where it came from.

    ``source`` is ``index`` (ANN/exact search over embeddings), ``model`` (the model's own
    exact ranking, of a known user or, when it reads histories, of a new user's history),
    ``encoder`` (a new user's encoded query) or ``popularity`` (cold start).
    """

    items: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    titles: list[str | None] | None
    source: str

    def __len__(self) -> int:
        return len(self.items)

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per item: rank, id, score and title."""
        titles = self.titles or [None] * len(self)
        return [{"rank": r + 1, "id": plain(i), "score": float(s), "title": t}
                for r, (i, s, t) in enumerate(zip(self.ids, self.scores, titles))]


class Retriever:
    """Recommendations and similar items for a fitted model, served through a vector index.

    ``user_map``/``item_map`` translate external ids (identity when None); ``titles[i]`` is
    item ``i``'s title. ``index`` overrides the index built from the model's item
    embeddings; ``index_kind`` and ``index_settings`` choose it otherwise."""

    def __init__(self, model: Any, index: VectorIndex | None = None, *,
                 user_map: IdMap | None = None, item_map: IdMap | None = None,
                 titles: Sequence[str | None] | None = None, encoder: Encoder | None = None,
                 index_kind: str = "auto", **index_settings: Any):
        model.check_fitted()
        self.model = model
        self.user_map, self.item_map = user_map, item_map
        self.titles = None if titles is None else list(titles)
        if self.titles is not None and len(self.titles) != model.n_items_:
            raise ValueError(f"got {len(self.titles)} titles for {model.n_items_} items")
        self.encoder = encoder or getattr(model, "encode_users", None)
        self._index_kind, self._index_settings = index_kind, index_settings
        self.index = index if index is not None else self._build_index(model.item_embeddings())
        self._similar_index: VectorIndex | None = None
        self._unit = np.empty((0, 0), dtype=np.float32)

    @classmethod
    def from_data(cls, model: Any, data: Interactions, **kwargs: Any) -> Retriever:
        """A retriever using ``data``'s id maps and item titles (the ``title`` text column)."""
        return cls(model, user_map=data.user_map, item_map=data.item_map,
                   titles=item_titles(data), **kwargs)

    def _build_index(self, vectors: np.ndarray | None) -> VectorIndex | None:
        if vectors is None:
            return None
        index = make_index(self._index_kind, len(vectors), **self._index_settings)
        return index.build(vectors)

    # ------------------------------------------------------------------ requests
    def recommend(self, user: Any, k: int = 10, exclude_seen: bool = True) -> Recommendations:
        """Top-``k`` items for the user with external id ``user`` (popular items for a user the
        model does not know)."""
        k = _clamp_k(k, self.model.n_items_)
        index = _index_of(self.user_map, user, self.model.n_users_)
        known = index >= 0 and bool(self.model.is_known_user([index])[0])
        if not known or self.index is None:
            items, scores = self.model.recommend([index], k, exclude_seen=exclude_seen)
            return self._answer(items[0], scores[0], "model" if known else "popularity")
        query = self.model.user_embeddings([index])
        seen = [self._seen(index)] if exclude_seen else None
        items, scores = self.index.search(query, k, exclude=seen)
        return self._answer(items[0], scores[0], "index")

    def recommend_for(self, history: Sequence[Any] = (), features: Any = None,
                      k: int = 10) -> Recommendations:
        """Top-``k`` items for a new user given their item ids (``history``) and features."""
        k = _clamp_k(k, self.model.n_items_)
        queries = QueryBatch.from_ids([None], [list(history)], user_map=None,
                                      item_map=self.item_map)
        items = queries.history(0)
        items = items[(items >= 0) & (items < self.model.n_items_)]
        if self.encoder is None or self.index is None or (features is None and not len(items)):
            top, scores = self.model.recommend(queries, k)
            reads = "sequences" in self.model.consumes and len(items)
            source = "model" if reads else "popularity"
            return self._answer(top[0], scores[0], source)
        query = np.asarray(self.encoder(features=features, history=[items]), dtype=np.float32)
        top, scores = self.index.search(query.reshape(1, -1), k, exclude=[items])
        return self._answer(top[0], scores[0], "encoder")

    def similar(self, item: Any, k: int = 10) -> Recommendations:
        """The ``k`` items most cosine-similar to the item with external id ``item`` (or most
        similar by the model's own ``similar_items`` when it has no item vectors)."""
        k = _clamp_k(k, max(self.model.n_items_ - 1, 1))
        index = _index_of(self.item_map, item, self.model.n_items_)
        if index < 0:
            raise UnknownNameError(f"unknown item id {plain(item)!r}")
        if self._similar_index is None:
            vectors = self.model.item_vectors()
            if vectors is None:
                return self._model_similar(index, k)
            self._unit = _unit_rows(vectors)
            self._similar_index = self._build_index(self._unit)
        query = self._unit[index:index + 1]
        items, scores = self._similar_index.search(query, k, exclude=[[index]])
        return self._answer(items[0], scores[0], "index")

    # ------------------------------------------------------------------ helpers
    def _model_similar(self, index: int, k: int) -> Recommendations:
        try:
            items, scores = self.model.similar_items([index], k)
        except NotImplementedError:
            raise InputError(f"{type(self.model).__name__} has neither item vectors nor an "
                             "item-item similarity, so it cannot rank similar items") from None
        return self._answer(items[0], scores[0], "model")

    def _seen(self, user: int) -> np.ndarray:
        return self.model.training_history([user]).history(0)

    def _answer(self, items: np.ndarray, scores: np.ndarray, source: str) -> Recommendations:
        found = items >= 0
        items, scores = items[found], scores[found]
        ids = items if self.item_map is None else self.item_map.to_external(items)
        titles = None if self.titles is None else [self.titles[i] for i in items]
        return Recommendations(items, ids, scores, titles, source)


def item_titles(data: Interactions) -> np.ndarray | None:
    """Titles aligned with ``data``'s item indices (its ``title`` text column), or None."""
    return data.item_column("text", "title")


def save_catalogue(folder: str | Path, data: Interactions) -> Path:
    """Add ``data``'s external user/item ids and item titles to the saved model in ``folder``.

    The folder is rewritten as one unit (atomic, locked; `recforge.models.base.model_output`).
    Data whose ids are not those the model was trained on (its fingerprint) is refused."""
    folder = Path(folder)
    with model_output(folder, update=True) as tmp:
        if not (tmp / MODEL_FILE).is_file():
            raise MissingFileError(f"{folder} is not a saved recforge model (no {MODEL_FILE})")
        state = read_json(tmp / MODEL_FILE).get("state")
        fingerprint = state.get("data_fingerprint_") if isinstance(state, dict) else None
        _check_ids(fingerprint, data.user_map.ids, data.item_map.ids,
                   lambda why: InputError(f"the data does not fit the model in {folder}: {why}"))
        write_catalogue(tmp, data)
    return folder / CATALOGUE_FILE


def write_catalogue(folder: Path, data: Interactions) -> Path:
    """Write ``catalogue.npz`` (``data``'s ids and titles) into ``folder``: the temporary
    folder of a model being written (`recforge.models.base.model_output`)."""
    titles = item_titles(data)
    arrays = {"user_ids": data.user_map.ids, "item_ids": data.item_map.ids}
    if titles is not None:
        arrays["titles"] = np.array(["" if t is None else str(t) for t in titles], dtype=str)
    with atomic_path(folder / CATALOGUE_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return folder / CATALOGUE_FILE


def load_retriever(model_path: str | Path, data: Interactions | None = None,
                   **kwargs: Any) -> Retriever:
    """A retriever over a saved model, with ids and titles from ``data``, else from the
    folder's catalogue (`save_catalogue`), else internal indices and no titles.

    ``data`` or a catalogue whose ids are not those the model was trained on (their number,
    or the model's fingerprint of them) is refused: the answers would name the wrong items."""
    model = Recommender.load(model_path)
    fingerprint = getattr(model, "data_fingerprint_", None)
    if data is not None:
        if (data.n_users, data.n_items) != (model.n_users_, model.n_items_):
            raise InputError(f"the data has {data.n_users} users x {data.n_items} items; the "
                             f"model was trained on {model.n_users_} x {model.n_items_}")
        _check_ids(fingerprint, data.user_map.ids, data.item_map.ids,
                   lambda why: InputError(f"the data does not fit the model in {model_path}: "
                                          f"{why}"))
        return Retriever.from_data(model, data, **kwargs)
    catalogue = Path(model_path) / CATALOGUE_FILE
    if not catalogue.is_file():
        return Retriever(model, **kwargs)
    user_ids, item_ids, titles = read_catalogue(catalogue)
    if (len(user_ids), len(item_ids)) != (model.n_users_, model.n_items_):
        raise CorruptFileError(f"{catalogue}: {len(user_ids)} users x {len(item_ids)} items; "
                               f"the model has {model.n_users_} x {model.n_items_}")
    _check_ids(fingerprint, user_ids, item_ids, lambda why: CorruptFileError(f"{catalogue}: {why}"))
    return Retriever(model, user_map=IdMap(user_ids), item_map=IdMap(item_ids), titles=titles,
                     **kwargs)


def read_catalogue(file: Path) -> tuple[np.ndarray, np.ndarray, list[str | None] | None]:
    """User ids, item ids and titles (or None) of a ``catalogue.npz``, checked: one-dimensional
    unique ids, one title string per item. Problems raise `CorruptFileError` naming it."""
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, KeyError,
            AttributeError) as exc:  # AttributeError: a bare .npy array has no context manager
        raise CorruptFileError(f"{file}: not a readable catalogue ({first_line(exc)})") from None
    for key in ("user_ids", "item_ids"):
        ids = arrays.get(key)
        if ids is None or ids.ndim != 1 or ids.dtype.kind not in "iuU" \
                or len(np.unique(ids)) != len(ids):
            raise CorruptFileError(f"{file}: {key!r} must be a one-dimensional array of unique "
                                   "integer or string ids")
    titles = arrays.get("titles")
    if titles is not None and (titles.dtype.kind != "U" or titles.shape != arrays["item_ids"].shape):
        raise CorruptFileError(f"{file}: 'titles' must hold one string per item")
    return (arrays["user_ids"], arrays["item_ids"],
            None if titles is None else [t or None for t in titles.tolist()])


def _check_ids(fingerprint: Any, user_ids: np.ndarray, item_ids: np.ndarray,
               error: Callable[[str], Exception]) -> None:
    """Raise ``error(why)`` when the model's ``fingerprint`` (None: a model saved before
    fingerprints) is not that of ``user_ids`` and ``item_ids``."""
    if fingerprint is not None and fingerprint != ids_fingerprint(user_ids, item_ids):
        raise error("its user and item ids are not those the model was trained on (the "
                    "fingerprint in model.json differs)")


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _index_of(id_map: IdMap | None, external: Any, n: int) -> int:
    """The internal index of one external id (an int or a string), ``-1`` when unknown;
    without an id map the id is the index itself, known below ``n``."""
    if isinstance(external, bool) or not isinstance(external, (int, str, np.integer)):
        raise ParameterError(f"an id is one integer or string, got {type(external).__name__} "
                             f"{external!r}")
    if id_map is not None:
        return int(id_map.to_index([external])[0])
    value = canonical_int(external) if isinstance(external, str) else int(external)
    return value if isinstance(value, int) and 0 <= value < n else -1


def _clamp_k(k: int, n: int) -> int:
    """``k`` checked (a positive integer) and capped at ``n``, the most there can be."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"k must be a positive integer, got {k!r}")
    return int(min(k, n))
