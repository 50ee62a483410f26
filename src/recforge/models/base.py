"""The model API every recforge recommender implements.

Conventions (scikit-learn style): hyperparameters are ``__init__`` arguments stored under
the same name; learned state is set by ``fit`` in attributes with a trailing underscore.
Users and items are *internal indices* of the training `Interactions` id maps (use
``train.user_map.to_index`` to convert external ids).

The scoring contract: `score(queries, candidates)` scores the given candidate items of each
query (or the whole catalogue), where a query (`recforge.data.query.QueryBatch`) is a user
index or none (``-1``), a history of items with timestamps and per-request context; user
indices stand for queries with the users' training history (`training_history`).
`recommend` and `predict` are thin conveniences over `score`, and every protocol, the
`recforge.retrieval.Retriever` and the MMR re-ranker call only these public methods. A model
implements `score` itself, or the hooks below it (`_score` per known user, `_score_batch` per
batch of queries), and `fit` (the base `fit` sets the shared state, then calls `_fit`); it
declares what it needs in `consumes` (`CAPABILITIES`).

Cold start: a user index outside ``[0, n_users_)`` (e.g. ``-1`` from an unknown external id),
or a user with no training interactions, is scored by item popularity in the training data;
`predict` returns the model's `fallback_prediction` for such pairs and for unknown items.

Tie rule: `recommend` orders by score, descending, and breaks ties by the lower item index.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions, PairData
from recforge.data.query import QueryBatch, exclusion_matrix, mask_excluded
from recforge.errors import (
    CorruptFileError,
    InputError,
    ParameterError,
    TrainingDivergedError,
    did_you_mean,
)
from recforge.io import (
    MissingFileError,
    atomic_dir,
    first_line,
    has_metadata,
    ids_fingerprint,
    json_default,
    read_metadata,
)
from recforge.params import CUTOFF, Rule, check_all, parameter_error
from recforge.topk import top_k

FORMAT_VERSION = 2  # 2: the folder has a marker and the model a data fingerprint
_SPARSE_SUFFIX = ("__data", "__indices", "__indptr", "__shape")


#: what a model may consume: user x item ``interactions``, explicit ``ratings``, event
#: ``timestamps``, ``user_features`` / ``item_features`` side tables, per-event ``context``
#: of its queries (the request time, a device), and each query's own history, in time order
#: (``sequences``), rather than the training interactions of its user
CAPABILITIES = frozenset({"interactions", "ratings", "timestamps", "user_features",
                          "item_features", "context", "sequences"})


#: old hyperparameter name -> the one every model now uses (``reg`` for a penalty in the
#: objective, ``learning_rate``, ``init_std`` for the spread of initial weights, ``threads``);
#: passing an old name fails saying the new one, a saved model's old names load silently
RENAMED_PARAMS: dict[str, str] = {
    "lr": "learning_rate", "regularization": "reg", "bias_regularization": "reg_bias",
    "init_scale": "init_std", "num_threads": "threads",
}


#: an early-stopping criterion given to `Recommender.fit` as ``valid``: called with the model
#: after each epoch, it returns (name, value), higher is better (the evaluation layer builds
#: the ranking one: `recforge.evaluation.early_stopping`)
ValidationScore = Callable[["Recommender"], tuple[str, float]]


class NotFittedError(RuntimeError):
    """A model was used before `fit`."""


def _validating(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a model's ``__init__`` so that its parameters are checked once, after the
    outermost ``__init__`` of the construction returns."""

    @functools.wraps(init)
    def wrapper(self: Recommender, *args: Any, **kwargs: Any) -> None:
        outermost = "_constructing" not in self.__dict__
        if outermost:  # an unknown (or renamed) keyword fails as a ParameterError naming it
            valid = self._param_names()
            self.validate_params({k: v for k, v in kwargs.items() if k not in valid})
        self.__dict__["_constructing"] = True
        try:
            init(self, *args, **kwargs)
        finally:
            if outermost:
                del self.__dict__["_constructing"]
        if outermost:
            self._check_own_params()

    return wrapper


class Recommender:
    """Base class: subclasses implement `_fit` and `_score` (and `_predict` for ratings)."""

    #: registry name (kebab-case), set by `recforge.models.registry.register`
    name: ClassVar[str] = ""
    #: True when the model needs explicit ratings in the training data
    requires_ratings: ClassVar[bool] = False
    #: True when `predict` estimates ratings (rather than ranking scores)
    predicts_ratings: ClassVar[bool] = False
    #: what the model needs from the training data and from its queries (`CAPABILITIES`);
    #: a model with ``requires_ratings`` consumes ``ratings`` too
    consumes: ClassVar[frozenset[str]] = frozenset({"interactions"})
    #: how a user without training interactions is scored: ``"popularity"`` (the base's
    #: fallback; a model of time may rank by recency) or ``"features"`` (by their side
    #: features, history and context, which the model reads for every user)
    cold_start: ClassVar[str] = "popularity"
    #: the kinds of training data `fit` accepts (each a `PairData`)
    trains_on: ClassVar[tuple[type, ...]] = (Interactions,)
    #: rows of the score matrix computed at once by `recommend`/`score`
    batch_size: int = 2048

    #: the rule of each hyperparameter (`recforge.params`), declared by each class for its own
    #: parameters and merged along the inheritance chain into `rules`
    param_rules: ClassVar[dict[str, Rule]] = {}
    _all_rules: ClassVar[dict[str, Rule]] = {}

    # ------------------------------------------------------------------ parameters
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = cls.consumes - CAPABILITIES
        if unknown:
            raise TypeError(f"{cls.__name__} consumes unknown capabilities {sorted(unknown)}")
        if cls.requires_ratings:
            cls.consumes = cls.consumes | {"ratings"}
        cls._all_rules = {name: rule for klass in reversed(cls.__mro__)
                          for name, rule in vars(klass).get("param_rules", {}).items()}
        if "__init__" in vars(cls):
            cls.__init__ = _validating(vars(cls)["__init__"])  # type: ignore[method-assign]

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    @classmethod
    def param_names(cls) -> list[str]:
        """The hyperparameter names (the ``__init__`` arguments)."""
        return cls._param_names()

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """The declared rule of every hyperparameter."""
        missing = [name for name in cls._param_names() if name not in cls._all_rules]
        if missing:
            raise TypeError(f"{cls.__name__} declares no rule for {', '.join(missing)}")
        return {name: cls._all_rules[name] for name in cls._param_names()}

    @classmethod
    def validate_params(cls, params: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """``params`` checked by the declared rules, in canonical form; an unknown name or a bad
        value raises `recforge.errors.ParameterError` naming ``where + name``. The constructor,
        `set_params`, experiment files and the command line all check through this."""
        valid = cls._param_names()
        for key in params:
            if key not in valid:
                new = RENAMED_PARAMS.get(key)
                hint = f": renamed to {new!r}" if new in valid else did_you_mean(key, valid)
                shown = key if str(key).isprintable() else repr(key)  # the error is one line
                raise parameter_error(f"{where}{shown}", f"{cls.__name__} has no parameter "
                                                       f"{key!r}{hint}; "
                                                       f"valid: {', '.join(valid)}")
        return check_all(cls.rules(), params, where)

    @classmethod
    def saved_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters recorded in a saved model with old names (`RENAMED_PARAMS`) mapped
        to the current ones, silently: saved folders are the user's data."""
        valid = cls._param_names()
        return {RENAMED_PARAMS[k] if RENAMED_PARAMS.get(k) in valid else k: v
                for k, v in params.items()}

    def _check_own_params(self) -> None:
        checked = self.validate_params({name: getattr(self, name)
                                        for name in self._param_names()})
        for name, value in checked.items():
            setattr(self, name, value)

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Hyperparameters as passed to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Recommender:
        """Set hyperparameters, checked like the constructor's (`validate_params`): an unknown
        name or a bad value, alone or with the others (`_check_own_params`), raises
        `recforge.errors.ParameterError` and changes nothing."""
        before = self.get_params()
        for key, value in self.validate_params(params).items():
            setattr(self, key, value)
        try:
            self._check_own_params()
        except ParameterError:
            for key, value in before.items():
                setattr(self, key, value)
            raise
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fitting
    def fit(self, train: PairData,
            valid: Interactions | ValidationScore | None = None) -> Recommender:
        """Learn from ``train`` (`Interactions` unless the class's ``trains_on`` says more).
        Iterative models stop early on ``valid``: held-out ratings (rating models, -RMSE) or a
        `ValidationScore`."""
        if not isinstance(train, self.trains_on):
            accepted = " or ".join(t.__name__ for t in self.trains_on)
            raise InputError(f"{type(self).__name__} trains on {accepted}, not "
                             f"{type(train).__name__}")
        if len(train) == 0:
            raise ValueError("cannot fit on an empty dataset")
        if self.requires_ratings and train.ratings is None:
            raise ValueError(f"{type(self).__name__} needs explicit ratings; the data has none")
        self.n_users_ = train.n_users
        self.n_items_ = train.n_items
        self.seen_ = train.binary_csr
        self.popularity_ = train.item_counts.astype(np.float32)
        self.user_activity_ = train.user_counts.astype(np.int64)
        has_r = train.ratings is not None
        self.global_mean_ = float(train.ratings.mean()) if has_r else 0.0
        self.rating_range_ = [float(train.ratings.min()), float(train.ratings.max())] if has_r else None
        self.data_fingerprint_ = ids_fingerprint(train.user_map.ids, train.item_map.ids)
        self._fit(train, valid)
        self._check_finite()
        return self

    #: what to try when `fit` produces non-finite values (ends the error message)
    divergence_hint: ClassVar[str] = ("the hyperparameters make the fit diverge or overflow "
                                      "(a learning rate too high, or a regularisation or "
                                      "initial scale too large or too small for the data)")

    def _check_finite(self) -> None:
        """Raise `TrainingDivergedError` when a learned array (dense, or a sparse matrix's
        stored values) holds NaN or an infinity. The minimum and maximum tell (NaN propagates
        through both), without a temporary array the size of the state."""
        for key, value in self._state().items():
            values = value.data if sp.issparse(value) else value
            if (isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.floating)
                    and values.size and not (np.isfinite(values.min())
                                             and np.isfinite(values.max()))):
                raise TrainingDivergedError(
                    f"{type(self).__name__}: training produced NaN or infinite values in "
                    f"{key}; {self.divergence_hint}")

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        """Learn the model's own state after `fit` has set the base state (nothing here)."""

    def _score(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for known users: a ``(len(users), n_items_)`` float array,
        new or read-only (callers write into a fresh float32 array; never learned state)."""
        raise NotImplementedError

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of (user, item) pairs, both known: `score` of each distinct user with their
        items as candidates."""
        distinct, inverse = np.unique(users, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(distinct))
        column = np.arange(len(users)) - np.repeat(np.cumsum(counts) - counts, counts)
        candidates = np.full((len(distinct), counts.max(initial=0)), -1, dtype=np.int64)
        candidates[inverse[order], column] = items[order]
        out = np.empty(len(users), dtype=np.float32)
        out[order] = self.score(distinct, candidates)[inverse[order], column]
        return out

    @property
    def fallback_prediction(self) -> float:
        """What `predict` returns for unknown users or items (the training mean rating)."""
        return self.global_mean_

    # ------------------------------------------------------------------ inference
    def check_fitted(self) -> None:
        """Raise `NotFittedError` unless `fit` (or `load`) has run."""
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def is_known_user(self, users: Any) -> np.ndarray:
        """True for users inside the training id space that had training interactions."""
        self.check_fitted()
        users = np.asarray(users, dtype=np.int64)
        inside = (users >= 0) & (users < self.n_users_)
        known = np.zeros(len(users), dtype=bool)
        known[inside] = self.user_activity_[users[inside]] > 0
        return known

    def training_history(self, users: Any) -> QueryBatch:
        """Queries of ``users`` (internal indices) whose history is their training items (in
        index order); unknown users (``-1``, outside the id space) get an empty history."""
        self.check_fitted()
        return QueryBatch.from_users(users, self.seen_)

    def as_queries(self, queries: Any) -> QueryBatch:
        """``queries`` as a `QueryBatch`: user indices get their training history."""
        return queries if isinstance(queries, QueryBatch) else self.training_history(queries)

    def score(self, queries: Any, candidates: Any | None = None) -> np.ndarray:
        """Scores for ``queries`` (a `QueryBatch`, or user indices: their training history):
        every item, ``(n, n_items_)``, or the given ``candidates`` per query, ``(n, m)``.

        ``candidates`` is an ``(n, m)`` item index array padded with ``-1``, or ragged (one
        index sequence per query, padded here). Padding and items outside the catalogue score
        ``-inf``; so do NaN scores. Users the model cannot score (unknown, no training
        interactions) get popularity scores unless the model reads their history."""
        self.check_fitted()
        queries = self.as_queries(queries)
        cands = None if candidates is None else pad_candidates(candidates, len(queries))
        if len(queries) <= self.batch_size:  # one block: no copy into a second array
            return self._score_block(queries, cands)
        n_cols = self.n_items_ if cands is None else cands.shape[1]
        out = np.empty((len(queries), n_cols), dtype=np.float32)
        for lo in range(0, len(queries), self.batch_size):
            sl = slice(lo, lo + self.batch_size)
            out[sl] = self._score_block(queries.take(sl), None if cands is None else cands[sl])
        return out

    def _score_block(self, queries: QueryBatch, candidates: np.ndarray | None) -> np.ndarray:
        """`_score_batch` with NaN as ``-inf``, gathered at ``candidates`` when given."""
        block = self._score_batch(queries)
        np.copyto(block, -np.inf, where=np.isnan(block))  # NaN never outranks a score
        return block if candidates is None else candidate_scores(block, candidates)

    def _score_batch(self, queries: QueryBatch) -> np.ndarray:
        """Scores of every item for a batch of queries, ``(len(queries), n_items_)``: `_score`
        for known users, popularity for the rest. Models that read the queries' history or
        context override this."""
        known = self.is_known_user(queries.users)
        if known.all():
            return _own_float32(self._score(queries.users), (len(queries), self.n_items_))
        block = np.empty((len(queries), self.n_items_), dtype=np.float32)
        block[~known] = self.popularity_
        if known.any():
            block[known] = self._score(queries.users[known])
        return block

    def recommend(self, users: Any, k: int = 10, exclude_seen: bool = True,
                  candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items and scores per query (user indices or a `QueryBatch`), as two
        ``(n, k)`` arrays, from `score`.

        The query's history (for user indices: their training items) is left out when
        ``exclude_seen``; ``candidates`` (a boolean mask over items) restricts the catalogue.
        Rows with fewer than ``k`` eligible items are padded with item ``-1`` and score
        ``-inf``; ``k`` is a cut-off in ``[1, 100000]`` (`recforge.params.CUTOFF`). Ties: the
        lower item index first.
        """
        self.check_fitted()
        k = CUTOFF.check("k", k)
        queries = self.as_queries(users)
        out_items = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for lo in range(0, len(queries), self.batch_size):
            sl = slice(lo, lo + self.batch_size)
            batch = queries.take(sl) if len(queries) > self.batch_size else queries
            block = self.score(batch)
            mask_excluded(block, exclusion_matrix(batch, "seen" if exclude_seen else None,
                                                  self.n_items_))
            if candidates is not None:
                block[:, ~np.asarray(candidates, dtype=bool)] = -np.inf
            out_items[sl], out_scores[sl] = top_items(block, k)
        return out_items, out_scores

    def predict(self, users: Any, items: Any) -> np.ndarray:
        """Scores of (user, item) pairs; cold pairs get `fallback_prediction`.

        Rating models (``predicts_ratings``) clip to the training rating range."""
        self.check_fitted()
        users = np.asarray(users, dtype=np.int64).ravel()
        items = np.asarray(items, dtype=np.int64).ravel()
        if len(users) != len(items):
            raise ValueError("users and items must have the same length")
        ok = self.is_known_user(users) & (items >= 0) & (items < self.n_items_)
        out = np.full(len(users), self.fallback_prediction, dtype=np.float32)
        if ok.any():
            out[ok] = self._predict(users[ok], items[ok])
        if self.predicts_ratings and self.rating_range_ is not None:
            np.clip(out, *self.rating_range_, out=out)
        return out

    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings used by `similar_items`, or None when the model has none."""
        return None

    def user_embeddings(self, users: Any) -> np.ndarray | None:
        """Query vectors of known ``users`` for retrieval, or None when scores do not factorise.

        The retrieval factorisation: ``score(u)[i] == user_embeddings([u])[0] @
        item_embeddings()[i]`` up to float error, so a maximum-inner-product index over the
        item embeddings ranks items as `recommend` does (`recforge.retrieval.Retriever`)."""
        return None

    def item_embeddings(self) -> np.ndarray | None:
        """Item vectors of the retrieval factorisation (see `user_embeddings`), or None."""
        return None

    def _user_index(self, users: Any) -> np.ndarray:
        """``users`` as an index array inside ``[0, n_users_)``; ``IndexError`` otherwise."""
        self.check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise IndexError("user index out of range")
        return users

    def similar_items(self, items: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most cosine-similar to each of ``items`` (itself excluded)."""
        self.check_fitted()
        k = CUTOFF.check("k", k)
        vectors = self.item_vectors()
        if vectors is None:
            raise NotImplementedError(f"{type(self).__name__} has no item vectors")
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        if items.size and (items.min() < 0 or items.max() >= self.n_items_):
            raise IndexError("item index out of range")
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sims = unit[items] @ unit.T
        sims[np.arange(len(items)), items] = -np.inf
        return top_k(sims.astype(np.float32), min(k, self.n_items_ - 1))

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, Any]:
        """Learned attributes (trailing underscore) to save; override to add more."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def _restore(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def save(self, path: str | Path) -> Path:
        """Write ``path/`` with ``model.json`` (class, params, scalars, the fingerprint of the
        training ids) and ``arrays.npz``, as one unit (`model_output`): atomic, locked against
        a concurrent writer, and only over an absent or empty folder or an earlier recforge
        model folder (else `recforge.errors.OutputExistsError`)."""
        self.check_fitted()
        meta, arrays = self._serialised()
        with model_output(path) as tmp:
            _write_model_files(tmp, meta, arrays)
        return Path(path)

    def write_files(self, folder: str | Path) -> None:
        """Write ``model.json`` and ``arrays.npz`` into ``folder``: the temporary folder of a
        `model_output` that writes the model together with other files (a catalogue)."""
        self.check_fitted()
        _write_model_files(Path(folder), *self._serialised())

    def _serialised(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``model.json``'s content and the arrays; unsaveable state raises ``TypeError``."""
        scalars: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for key, value in self._state().items():
            if sp.issparse(value):
                csr = sp.csr_matrix(value)
                for suffix, part in zip(_SPARSE_SUFFIX, (csr.data, csr.indices, csr.indptr,
                                                         np.asarray(csr.shape))):
                    arrays[key + suffix] = part
            elif isinstance(value, np.ndarray):
                if value.dtype == object:
                    raise TypeError(f"cannot save object array {key!r}; use a typed array")
                arrays[key] = value
            elif value is None or isinstance(value, (bool, int, float, str, list, dict)):
                scalars[key] = value
            elif isinstance(value, np.generic):
                scalars[key] = value.item()
            else:
                raise TypeError(f"cannot save attribute {key!r} of type {type(value).__name__}")
        meta = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.get_params(),
            "state": scalars,
            "sparse": sorted({k[: -len(s)] for k in arrays for s in _SPARSE_SUFFIX
                              if k.endswith(s)}),
        }
        return meta, arrays

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model saved by `save` (never unpickles: JSON + ``allow_pickle=False``).

        Folders of format 1 (before markers and fingerprints) still load. A missing, damaged
        or inconsistent file raises `recforge.errors.CorruptFileError` (an input error) with
        one line naming the file and what is wrong."""
        from recforge.models.registry import saved_model_class

        path = Path(path)
        meta = read_metadata(path, MODEL_FILE, "model", FORMAT_VERSION, legacy_versions=(1,))
        meta_file = path / MODEL_FILE
        _check_model_meta(meta, meta_file)
        try:
            model_cls = saved_model_class(meta["model"])
            if cls is not Recommender and not issubclass(model_cls, cls):
                raise InputError(f"it holds a {model_cls.__name__}, not a {cls.__name__}")
            params = model_cls.saved_params(meta["params"])
            model = model_cls(**model_cls.validate_params(params, where="params."))
        except (InputError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{meta_file}: {first_line(exc)}") from None
        state = {**meta["state"], **_read_arrays(path / ARRAYS_FILE, meta["sparse"])}
        try:
            model._restore(state)
            _check_learned_state(model)
            _probe(model)
        except _STATE_ERRORS as exc:
            raise CorruptFileError(f"{path}: the saved state is inconsistent "
                                   f"({first_line(exc)})") from None
        return model


MODEL_FILE, ARRAYS_FILE = "model.json", "arrays.npz"
#: names of saved state: attributes with a trailing underscore (sparse parts add a suffix), or
#: dotted names (a torch module's weights), never the name of a method
_STATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*_|[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+")
_STATE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError,
                 ArithmeticError)
#: what each key of ``model.json`` must hold
_META_TYPES: dict[str, type] = {"model": str, "class": str, "params": dict, "state": dict,
                                "sparse": list}


_MEMBER_KEY = re.compile(r"member(\d+)__(.+)")


def members_state(members: list[Recommender]) -> dict[str, Any]:
    """The learned state of a composite model's members, each key prefixed ``memberK__``
    (``K`` the member's position), for the composite's `Recommender._state`."""
    return {f"member{k}__{key}": value for k, member in enumerate(members)
            for key, value in member._state().items()}


def restore_members(members: list[Recommender],
                    state: dict[str, Any]) -> dict[str, Any]:
    """Give each of ``members`` its part of ``state`` (`members_state`); the rest (the
    composite's own state) is returned."""
    parts: list[dict[str, Any]] = [{} for _ in members]
    own = {}
    for key, value in state.items():
        match = _MEMBER_KEY.fullmatch(key)
        if match and int(match[1]) < len(members):
            parts[int(match[1])][match[2]] = value
        else:
            own[key] = value
    for member, part in zip(members, parts):
        member._restore(part)
    return own


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` is a model folder of the format before markers (a ``model.json``
    with a format version), which a new save may replace."""
    return has_metadata(folder, MODEL_FILE)


def model_output(path: str | Path, update: bool = False) -> contextlib.AbstractContextManager[Path]:
    """`recforge.io.atomic_dir` for a model folder at ``path``: checked and locked on entry
    (an earlier model folder may be replaced), written as one unit on exit; with ``update``
    the temporary folder starts with the current folder's files."""
    return atomic_dir(path, "model", legacy=is_model_folder, update=update)


def _write_model_files(folder: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    (folder / MODEL_FILE).write_text(json.dumps(meta, indent=2, default=json_default))
    np.savez(folder / ARRAYS_FILE, **arrays)


def _check_model_meta(meta: dict[str, Any], file: Path) -> None:
    """``model.json``'s keys and their types; `CorruptFileError` naming the first problem."""
    for key, kind in _META_TYPES.items():
        if key not in meta:
            raise CorruptFileError(f"{file}: missing key {key!r}")
        if not isinstance(meta[key], kind):
            raise CorruptFileError(f"{file}: {key!r} must be a JSON {_JSON_NAMES[kind]}, found "
                                   f"{type(meta[key]).__name__}")
    bad = [name for name in [*meta["state"], *meta["sparse"]]
           if not isinstance(name, str) or not _STATE_NAME.fullmatch(name)]
    if bad:
        raise CorruptFileError(f"{file}: {bad[0]!r} is not a learned-state name (letters, digits "
                               "and underscores ending in an underscore, or dotted)")


_JSON_NAMES = {str: "string", dict: "object", list: "array"}


def _read_arrays(file: Path, sparse: list[str]) -> dict[str, Any]:
    """The arrays of ``arrays.npz`` with the ``sparse`` ones assembled into CSR matrices."""
    try:
        npz = np.load(file, allow_pickle=False)
        if isinstance(npz, np.lib.npyio.NpzFile):
            with npz:
                arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise MissingFileError(f"{file}: missing") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, KeyError) as exc:
        raise CorruptFileError(f"{file}: not a readable array archive "
                               f"({first_line(exc)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise CorruptFileError(f"{file}: a single .npy array, not an .npz archive")
    for key in sparse:
        parts = [arrays.pop(key + suffix, None) for suffix in _SPARSE_SUFFIX]
        if any(part is None for part in parts):
            raise CorruptFileError(f"{file}: sparse matrix {key!r} lacks one of its arrays "
                                   f"({', '.join(key + s for s in _SPARSE_SUFFIX)})")
        arrays[key] = _csr(file, key, *parts)
    bad = [key for key in arrays if not _STATE_NAME.fullmatch(key)]
    if bad:
        raise CorruptFileError(f"{file}: {bad[0]!r} is not a learned-state name")
    return arrays


def _csr(file: Path, key: str, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
         shape: np.ndarray) -> sp.csr_matrix:
    """A CSR matrix from its saved parts, fully checked (indices inside the shape)."""
    try:
        if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any():
            raise ValueError(f"shape {shape.tolist()} is not two non-negative integers")
        matrix = sp.csr_matrix((data, indices, indptr), shape=tuple(int(s) for s in shape))
        matrix.check_format(full_check=True)
    except (ValueError, TypeError, IndexError) as exc:
        raise CorruptFileError(f"{file}: sparse matrix {key!r} is invalid "
                               f"({first_line(exc)})") from None
    return matrix


def _check_learned_state(model: Recommender) -> None:
    """The base class's learned state is there and consistent (sizes agree); else
    ``ValueError`` naming the attribute."""
    state = vars(model)
    missing = [name for name in _BASE_STATE if name not in state]
    if missing:
        raise ValueError(f"missing learned attribute {missing[0]!r}")
    n_users, n_items = state["n_users_"], state["n_items_"]
    for name, value in (("n_users_", n_users), ("n_items_", n_items)):
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    expected = {"seen_": (n_users, n_items), "popularity_": (n_items,),
                "user_activity_": (n_users,)}
    for name, shape in expected.items():
        found = getattr(state[name], "shape", None)
        if found != shape:
            raise ValueError(f"{name} has shape {found}, expected {shape} (n_users_ x n_items_)")
    if not sp.issparse(state["seen_"]):
        raise ValueError("seen_ must be a sparse matrix")
    if type(state["global_mean_"]) not in (int, float):
        raise ValueError(f"global_mean_ must be a number, got {state['global_mean_']!r}")
    rating_range = state["rating_range_"]
    if rating_range is not None and (not isinstance(rating_range, list) or len(rating_range) != 2
                                     or any(type(v) not in (int, float) for v in rating_range)):
        raise ValueError(f"rating_range_ must be null or two numbers, got {rating_range!r}")
    fingerprint = state.get("data_fingerprint_")
    if fingerprint is not None and not _FINGERPRINT.fullmatch(str(fingerprint)):
        raise ValueError(f"data_fingerprint_ must be a SHA-256 hex digest, got {fingerprint!r}")


_BASE_STATE = ("n_users_", "n_items_", "seen_", "popularity_", "user_activity_",
               "global_mean_", "rating_range_")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def _probe(model: Recommender) -> None:
    """Score, rank and predict for the first and last known users, and check the embeddings'
    shapes, so that model-specific arrays of the wrong size fail at load time, not later
    with wrong ids."""
    known = np.flatnonzero(model.user_activity_ > 0)
    users = known[[0, -1]] if len(known) else np.array([-1])
    scores = model.score(users)
    if scores.shape != (len(users), model.n_items_):
        raise ValueError(f"scores have shape {scores.shape}, expected "
                         f"{(len(users), model.n_items_)}")
    model.recommend(users, k=1)
    model.predict(users, np.full(len(users), model.n_items_ - 1))
    for name, vectors in (("item_vectors", model.item_vectors()),
                          ("item_embeddings", model.item_embeddings())):
        if vectors is not None and np.shape(vectors)[0] != model.n_items_:
            raise ValueError(f"{name} has {np.shape(vectors)[0]} rows for {model.n_items_} items")
    items = model.item_embeddings()
    if items is not None and len(known):
        query = np.asarray(model.user_embeddings(users))
        if query.shape != (len(users), np.shape(items)[1]):
            raise ValueError(f"user_embeddings have shape {query.shape}, the item embeddings "
                             f"{np.shape(items)}")


def top_items(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best-scored items per row and their scores, best first (ties: the lower item
    index first); rows with fewer than ``k`` finite scores are padded with ``-1`` / ``-inf``."""
    out_items = np.full((len(scores), k), -1, dtype=np.int64)
    out_scores = np.full((len(scores), k), -np.inf, dtype=np.float32)
    k_eff = min(k, scores.shape[1])
    idx, val = top_k(scores, k_eff)
    out_items[:, :k_eff] = np.where(np.isfinite(val), idx, -1)
    out_scores[:, :k_eff] = val
    return out_items, out_scores


def _own_float32(scores: Any, shape: tuple[int, int]) -> np.ndarray:
    """``scores`` as a writable float32 array of ``shape`` that no model state shares: the
    array itself when it is one (a fresh product), else a copy."""
    fresh = (isinstance(scores, np.ndarray) and scores.dtype == np.float32
             and scores.shape == shape and scores.flags.owndata and scores.flags.writeable
             and scores.flags.c_contiguous)
    if fresh:
        return scores
    out = np.empty(shape, dtype=np.float32)
    out[...] = scores
    return out


def pad_candidates(candidates: Any, n: int) -> np.ndarray:
    """Candidate items as an ``(n, m)`` int64 array: a 2-D array as is, ragged sequences
    padded with ``-1``; a row count other than ``n`` raises `recforge.errors.InputError`."""
    if isinstance(candidates, np.ndarray) and candidates.ndim == 2:
        padded = candidates.astype(np.int64, copy=False)
    else:
        rows = [np.asarray(row, dtype=np.int64).ravel() for row in candidates]
        width = max((len(row) for row in rows), default=0)
        padded = np.full((len(rows), width), -1, dtype=np.int64)
        for r, row in enumerate(rows):
            padded[r, :len(row)] = row
    if len(padded) != n:
        raise InputError(f"{len(padded)} candidate lists for {n} queries")
    return padded


def candidate_scores(block: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``block[q, candidates[q, j]]``, ``-inf`` where the candidate is outside the catalogue."""
    inside = (candidates >= 0) & (candidates < block.shape[1])
    picked = np.take_along_axis(block, np.where(inside, candidates, 0), axis=1)
    return np.where(inside, picked, np.float32(-np.inf))
