"""The model registry on disk and the model versions loaded for serving.

A registry is a folder of versions: each sub-folder holding a saved model (``model.json``,
as ``recforge train --out REGISTRY/NAME`` writes it, with its catalogue of ids and titles)
is a version named by the folder. ``--model`` may also name one model folder: a registry
of that single version.

Activation is a hot swap: the new version is loaded completely beside the serving one, then
the registry's reference to the active `ServedModel` is replaced in one assignment. A
request takes the reference once when it starts and finishes on that object, so requests
in flight finish on the old version and none fails. The choice is written to the pointer
file ``ACTIVE`` (JSON: the active version and the earlier ones, newest last; written
atomically, `recforge.io.atomic_path`), so that a restart, and every other worker process
(`ModelRegistry.refresh`, a ``stat`` per request), serves the same version. `rollback`
re-activates the previous version. Without a pointer file the last version by name serves.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.query import QueryBatch
from recforge.errors import CorruptFileError, InputError, UnknownNameError, did_you_mean
from recforge.io import atomic_path, json_written_by, read_json
from recforge.models.base import MODEL_FILE, Recommender
from recforge.retrieval.retriever import Retriever, load_retriever
from recforge.topk import top_k

ACTIVE_FILE = "ACTIVE"
WRITER = "recforge serve"
#: most users whose query vectors a version keeps in a table
USER_TABLE_MAX = 500_000
#: a version's folder name
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class ItemInfo:
    """Side information of a version's items, aligned with its item indices: genres
    (multi-hot, ``(n_items, n_genres)``, with their labels), release years (NaN unknown)."""

    genres: sp.csr_matrix | None
    genre_labels: tuple[str, ...]
    years: np.ndarray | None

    def __post_init__(self) -> None:
        names: list[list[str]] = []
        if self.genres is not None:
            indptr, indices = self.genres.indptr, self.genres.indices
            names = [[self.genre_labels[j] for j in indices[indptr[i]:indptr[i + 1]]]
                     for i in range(self.genres.shape[0])]
        object.__setattr__(self, "_names", names)

    def genre_names(self, item: int) -> list[str]:
        """The genre labels of one item."""
        names: list[list[str]] = self._names  # type: ignore[attr-defined]
        return list(names[item]) if names else []


class ServedModel:
    """One loaded version: the model, its `Retriever` (ANN index over its item embeddings),
    an optional ranker and the items' side information. Never mutated once built, so a
    request holding it is unaffected by a swap."""

    def __init__(self, name: str, path: Path, retriever: Retriever, info: ItemInfo,
                 ranker: Recommender | None = None):
        self.name, self.path, self.retriever, self.info = name, path, retriever, info
        self.model: Any = retriever.model
        self.ranker = ranker
        self.loaded_at = time.time()
        ids = retriever.item_map.ids if retriever.item_map is not None else np.arange(
            self.model.n_items_)
        self.item_ids = np.asarray(ids)
        self.popularity = np.asarray(self.model.popularity_, dtype=np.float64)
        self._user_lookup = _lookup(retriever.user_map)
        self._item_lookup = _lookup(retriever.item_map)
        self._user_vectors: np.ndarray | None = None
        self._vectors_lock = threading.Lock()

    @property
    def n_items(self) -> int:
        return int(self.model.n_items_)

    def user_index(self, user: Any) -> int:
        """The internal index of external user id ``user`` (-1: unknown or anonymous)."""
        if user is None:
            return -1
        if self._user_lookup is None:
            return _plain_index(user, int(self.model.n_users_))
        return self._user_lookup.get(str(user), -1)

    def item_indices(self, ids: Any) -> np.ndarray:
        """Internal indices of external item ids (-1 for ids the version does not know)."""
        n = self.n_items
        if self._item_lookup is None:
            return np.array([_plain_index(i, n) for i in ids], dtype=np.int64)
        lookup = self._item_lookup
        return np.array([lookup.get(str(i), -1) for i in ids], dtype=np.int64)

    def training_items(self, user: int) -> np.ndarray:
        """The user's training items (none for an unknown user)."""
        if user < 0:
            return np.zeros(0, dtype=np.int64)
        return self.model.training_history([user]).history(0)

    # ------------------------------------------------------------------ retrieval
    def retrieve(self, user: int, fresh: np.ndarray, n: int,
                 exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """The top ``n`` candidates (internal indices, scores, source) for user index ``user``
        (-1: anonymous) whose fresh items (from the feature store or the request, oldest
        first) are ``fresh``, leaving out ``exclude``.

        Through the ANN index when the model has embeddings: a known user's vector (with the
        fresh items pooled into the history for a two-tower model), or a new user's encoded
        history; else the model's own scores (a sequential model reads the fresh history)."""
        n = min(n, self.n_items)
        query, source = self._query_vector(user, fresh)
        if query is not None and self.retriever.index is not None:
            items, scores = self.retriever.index.search(query.reshape(1, -1), n,
                                                        exclude=[exclude])
            return items[0], scores[0], source
        batch = QueryBatch(np.array([user]), np.array([0, len(fresh)]), fresh.astype(np.int64))
        if user >= 0 and "sequences" in self.model.consumes:
            history = np.concatenate([self.training_items(user), fresh])
            batch = QueryBatch(np.array([user]), np.array([0, len(history)]), history)
        scores = self.model.score(batch).astype(np.float32)
        scores[0, exclude[(exclude >= 0) & (exclude < self.n_items)]] = -np.inf
        items, top = top_k(scores, n)
        keep = np.isfinite(top[0])
        known = user >= 0 and bool(self.model.is_known_user([user])[0])
        return items[0][keep], top[0][keep], "model" if known or len(fresh) else "popularity"

    def _query_vector(self, user: int, fresh: np.ndarray) -> tuple[np.ndarray | None, str]:
        if self.retriever.index is None:
            return None, "model"
        known = user >= 0 and bool(self.model.is_known_user([user])[0])
        if known and not len(fresh):
            return self.user_vector(user), "index"
        if known and _pools_history(self.model):
            return _fresh_user_vector(self.model, user, fresh), "index+fresh"
        if len(fresh) and self.retriever.encoder is not None:
            history = np.concatenate([self.training_items(user), fresh])
            vector = self.retriever.encoder(features=None, history=[history])
            return np.asarray(vector, dtype=np.float32).reshape(-1), "encoder"
        if known:
            return self.user_vector(user), "index"
        return None, "popularity"

    def user_vector(self, user: int) -> np.ndarray:
        """A known user's query vector (`user_embeddings`), from a table of every user's
        vectors computed on first use (per request for more than `USER_TABLE_MAX` users)."""
        if self.model.n_users_ > USER_TABLE_MAX:
            return self.model.user_embeddings([user])[0]
        if self._user_vectors is None:
            with self._vectors_lock:
                if self._user_vectors is None:
                    users = np.arange(self.model.n_users_)
                    self._user_vectors = np.concatenate(
                        [self.model.user_embeddings(users[lo:lo + 4096])
                         for lo in range(0, len(users), 4096)])
        return self._user_vectors[user]

    def rank(self, user: int, fresh: np.ndarray, items: np.ndarray, scores: np.ndarray,
             context: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The candidates re-scored and re-ordered by the ranker (unchanged without one),
        which sees the user, the fresh history and the request's ``context`` columns."""
        if self.ranker is None or not len(items):
            return items, scores
        columns = {name: np.array([value]) for name, value in (context or {}).items()}
        batch = QueryBatch(np.array([user]), np.array([0, len(fresh)]), fresh.astype(np.int64),
                           context=columns)
        ranked = np.asarray(self.ranker.score(batch, items[None, :]), dtype=np.float32)[0]
        order = np.argsort(-ranked, kind="stable")
        return items[order], ranked[order]


def _lookup(id_map: Any) -> dict[str, int] | None:
    """External id (as text) -> internal index of an `IdMap` (None without a map)."""
    if id_map is None:
        return None
    return {str(external): index for index, external in enumerate(id_map.ids.tolist())}


def _plain_index(external: Any, n: int) -> int:
    """Without an id map the external id is the index itself (known below ``n``)."""
    text = str(external)
    return int(text) if text.isdigit() and int(text) < n else -1


def _pools_history(model: Any) -> bool:
    """Whether the model's user tower pools a history it can be given (the two-tower)."""
    module = getattr(model, "module_", None)
    return module is not None and hasattr(module, "user_history") and hasattr(module, "users")


def _fresh_user_vector(model: Any, user: int, fresh: np.ndarray) -> np.ndarray:
    """The two-tower user vector (as `user_embeddings`, last column 0) of a known user whose
    pooled history is their last training items followed by the fresh ones."""
    import torch

    from recforge.data.sequences import pad_histories

    module = model.module_
    pad = model.n_items_
    past = module.user_history[user].cpu().numpy()
    history = np.concatenate([past[past != pad], fresh])
    rows = pad_histories([history], model.history_length, model.popularity_ > 0, pad)
    module.eval()
    with torch.no_grad():
        device = next(module.parameters()).device
        vector = module.users(torch.tensor([user], device=device),
                              torch.from_numpy(rows).to(device)).float().cpu().numpy()[0]
    return np.append(vector, np.float32(0.0))


Loader = Callable[[str, Path], ServedModel]


def served_model_loader(*, data: Any = None, index_kind: str = "auto",
                        index_settings: dict[str, Any] | None = None,
                        ranker: str | None = None) -> Loader:
    """A loader of versions: a `Retriever` over the saved model with an ``index_kind`` index,
    item side information from ``data`` (an `Interactions` with item features, matched by
    external id), and the saved ``ranker`` model (whose items must be the version's)."""
    ranker_model = None if ranker is None else Recommender.load(ranker)

    def load(name: str, path: Path) -> ServedModel:
        retriever = load_retriever(path, index_kind=index_kind, **(index_settings or {}))
        served_ids = (retriever.item_map.ids if retriever.item_map is not None
                      else np.arange(retriever.model.n_items_))
        if ranker_model is not None and ranker_model.n_items_ != len(served_ids):
            raise InputError(f"the ranker {ranker} has {ranker_model.n_items_} items; version "
                             f"{name} has {len(served_ids)}")
        return ServedModel(name, path, retriever, item_info(data, served_ids), ranker_model)

    return load


def item_info(data: Any, item_ids: np.ndarray) -> ItemInfo:
    """``data``'s item genres and years aligned with ``item_ids`` (external ids)."""
    if data is None:
        return ItemInfo(None, (), None)
    rows = np.asarray(data.item_map.to_index(list(item_ids)), dtype=np.int64)
    found = rows >= 0
    genres, labels = None, ()
    labelled = data.item_column("multihot", "genres")
    if labelled is not None:
        labels, matrix = tuple(str(v) for v in labelled[0]), sp.csr_matrix(labelled[1])
        pick = sp.diags(found.astype(np.float32)) @ matrix[np.where(found, rows, 0)]
        genres = sp.csr_matrix(pick)
        genres.eliminate_zeros()
    years = None
    column = data.item_column("numeric", "year")
    if column is not None:
        years = np.where(found, np.asarray(column, dtype=np.float64)[np.where(found, rows, 0)],
                         np.nan)
    return ItemInfo(genres, labels, years)


class ModelRegistry:
    """The versions under ``root`` (module docstring), the active one in memory and the
    pointer file ``pointer`` (default ``root/ACTIVE``)."""

    def __init__(self, root: str | Path, loader: Loader, pointer: str | Path | None = None):
        self.root = Path(root)
        self.single = (self.root / MODEL_FILE).is_file()
        if not self.root.is_dir():
            raise InputError(f"--model {self.root}: no such folder")
        self.pointer = Path(pointer) if pointer is not None else self.root / ACTIVE_FILE
        self._load = loader
        self._loaded: dict[str, ServedModel] = {}
        self._lock = threading.RLock()
        self._pointer_stamp: tuple[int, int, int] | None = None
        if not self.versions():
            raise InputError(f"--model {self.root}: neither a saved model nor a folder of "
                             "saved models (no model.json)")
        self._active = self.get(self._initial())

    # ------------------------------------------------------------------ listing
    def versions(self) -> list[str]:
        """The version names, sorted."""
        if self.single:
            return [self.root.name]
        return sorted(p.name for p in self.root.iterdir()
                      if VERSION_NAME.fullmatch(p.name) and (p / MODEL_FILE).is_file())

    def path(self, name: str) -> Path:
        """The folder of version ``name`` (`UnknownNameError` for an unknown one)."""
        versions = self.versions()
        if name not in versions:
            raise UnknownNameError(f"unknown model version {name!r}"
                                   f"{did_you_mean(name, versions)}")
        return self.root if self.single else self.root / name

    @property
    def active(self) -> ServedModel:
        """The version serving now (take it once per request)."""
        return self._active

    def get(self, name: str) -> ServedModel:
        """Version ``name`` loaded (once; later calls share it)."""
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name, self.path(name))
            return self._loaded[name]

    def loaded(self) -> list[str]:
        """The versions loaded in this process."""
        with self._lock:
            return list(self._loaded)

    def history(self) -> list[str]:
        """The versions activated before the active one, newest last (from the pointer)."""
        state = self._read_pointer()
        return list(state.get("history", [])) if state else []

    # ------------------------------------------------------------------ activation
    def activate(self, name: str) -> ServedModel:
        """Load ``name`` (before touching the serving version), swap it in and record it in
        the pointer file; returns it."""
        with self._lock:
            served = self.get(name)
            previous = self._active.name
            history = [v for v in self.history() if v != name]
            if previous != name:
                history.append(previous)
            self._write_pointer(name, history[-20:])
            self._active = served
            return served

    def rollback(self) -> ServedModel:
        """Re-activate the version active before the current one."""
        with self._lock:
            history = self.history()
            if not history:
                raise InputError("no earlier version to roll back to")
            served = self.get(history[-1])
            self._write_pointer(served.name, history[:-1])
            self._active = served
            return served

    def refresh(self) -> None:
        """Follow the pointer file when another process changed it (one ``stat`` when it did
        not); the new version loads in the background while the current one keeps serving."""
        stamp = self._stamp()
        if stamp == self._pointer_stamp:
            return
        self._pointer_stamp = stamp
        state = self._read_pointer()
        name = state.get("active") if state else None
        if not isinstance(name, str) or name == self._active.name or name not in self.versions():
            return
        threading.Thread(target=self._swap_to, args=(name,), daemon=True).start()

    def _swap_to(self, name: str) -> None:
        served = self.get(name)
        with self._lock:
            self._active = served

    # ------------------------------------------------------------------ pointer file
    def _initial(self) -> str:
        self._pointer_stamp = self._stamp()
        state = self._read_pointer()
        name = state.get("active") if state else None
        versions = self.versions()
        return name if isinstance(name, str) and name in versions else versions[-1]

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.pointer)
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _read_pointer(self) -> dict[str, Any] | None:
        """The pointer file's content (None when absent); a file recforge did not write is
        refused (`CorruptFileError`), never followed or replaced."""
        if not self.pointer.exists():
            return None
        state = read_json(self.pointer)
        if state.get("written_by") != WRITER:
            raise CorruptFileError(f"{self.pointer}: not a pointer file written by {WRITER}; "
                                   "move it away")
        return state

    def _write_pointer(self, name: str, history: list[str]) -> None:
        with atomic_path(self.pointer, owned=lambda p: json_written_by(p, WRITER)) as tmp:
            tmp.write_text(json.dumps({"written_by": WRITER, "active": name,
                                       "history": history, "time": time.time()}))
        self._pointer_stamp = self._stamp()
