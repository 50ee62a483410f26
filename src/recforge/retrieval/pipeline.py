"""`Pipeline`: retrieve -> rank -> re-rank -> filter, itself a model under the common contract.

* **retrieve**: the ``retriever`` (any registered model: ``two-tower``, ``ials``, ``ease``, ...)
  ranks the catalogue for each query, the query's history left out, and keeps its top
  ``candidates`` items;
* **rank**: the ``ranker`` (any model, typically a click model such as ``deepfm``) scores
  those candidates for the query (its user, fresh history and context); without a ranker the
  retriever's order stands;
* **re-rank**: ``reranker`` ``"mmr"`` or ``"dpp"`` (`recforge.rerank`) re-orders the ranked
  top ``rerank_depth`` for diversity, on the retriever's item vectors or the items' genres
  (``similarity``), with ``reranker_params`` (``lambda_`` for MMR, ``theta`` for DPP);
* **filter**: the caller's exclusion (seen items, a business filter) as for any model.

Scores are the negated final ranks (``-1`` for the first item): the re-ranked items first,
then the other ranked candidates in the ranker's order, then every other item in the
retriever's order; so `recommend`, the protocols and the report see exactly the pipeline's
order. Each call of `score` records the seconds spent in each stage in ``last_timings``.

The members are fitted on the same training data (the retriever with ``valid`` when given);
``retriever_params`` and ``ranker_params`` are their hyperparameters (a member with a
``seed`` gets the pipeline's unless given one).
"""

from __future__ import annotations

import inspect
import time
from typing import Any, ClassVar

import numpy as np

from recforge.data.interactions import Interactions, PairData
from recforge.data.query import QueryBatch, exclusion_matrix, mask_excluded
from recforge.errors import InputError
from recforge.models.base import Recommender, ValidationScore, members_state, restore_members
from recforge.models.registry import create_model, get_model_class, register
from recforge.params import (
    CUTOFF,
    SEED,
    Anything,
    Choice,
    Mapping,
    Optional,
    Real,
    Rule,
    parameter_error,
)
from recforge.rerank.base import GreedyReranker, item_genres
from recforge.rerank.dpp import DPPReranker
from recforge.rerank.mmr import MMRReranker
from recforge.topk import top_k

RERANKERS: dict[str, type[GreedyReranker]] = {"mmr": MMRReranker, "dpp": DPPReranker}


class ModelName(Rule):
    """The name of a registered model."""

    def describe(self) -> str:
        return "the name of a registered model"

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise parameter_error(name, f"must be {self.describe()}, got {value!r}")
        try:
            get_model_class(value)
        except KeyError as exc:
            raise parameter_error(name, str(exc).strip("'\"")) from None
        return value


@register("pipeline")
class Pipeline(Recommender):
    """retrieve -> rank -> re-rank -> filter (module docstring)."""

    trains_on: ClassVar[tuple[type, ...]] = (Interactions,)
    param_rules: ClassVar[dict[str, Rule]] = {
        "retriever": ModelName(), "retriever_params": Optional(Mapping(Anything())),
        "candidates": CUTOFF, "ranker": Optional(ModelName()),
        "ranker_params": Optional(Mapping(Anything())),
        "reranker": Optional(Choice(*RERANKERS)), "reranker_params": Optional(Mapping(Real())), "rerank_depth": CUTOFF,
        "similarity": Choice("vectors", "genres"), "seed": SEED,
    }

    def __init__(self, retriever: str = "two-tower", retriever_params: dict | None = None,
                 candidates: int = 200, ranker: str | None = "deepfm",
                 ranker_params: dict | None = None, reranker: str | None = None,
                 reranker_params: dict | None = None, rerank_depth: int = 10,
                 similarity: str = "genres", seed: int = 0):
        self.retriever = retriever
        self.retriever_params = retriever_params
        self.candidates = candidates
        self.ranker = ranker
        self.ranker_params = ranker_params
        self.reranker = reranker
        self.reranker_params = reranker_params
        self.rerank_depth = rerank_depth
        self.similarity = similarity
        self.seed = seed
        self.last_timings: dict[str, float] = {}

    @property
    def cold_start(self) -> str:  # type: ignore[override]
        """The last stage's: a ranker that reads features scores cold users by them."""
        last = self.ranker if self.ranker is not None else self.retriever
        return get_model_class(last).cold_start

    @classmethod
    def validate_params(cls, params: dict[str, Any], where: str = "") -> dict[str, Any]:
        """Also the members' parameters, by the rules of the members named (in ``params``,
        else the defaults), in canonical form."""
        out = super().validate_params(params, where)
        defaults = {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items()}
        return out | _member_params({**defaults, **out}, where, only=out)

    def set_params(self, **params: Any) -> Pipeline:
        """As `Recommender.set_params`, the members' parameters checked by their own rules."""
        checked = super().validate_params(params)
        canonical = _member_params({**self.get_params(), **checked}, "", only=checked)
        super().set_params(**params)
        for key, value in canonical.items():
            setattr(self, key, value)
        return self

    # ------------------------------------------------------------------ members
    def _members(self) -> list[Recommender]:
        members = [self._member(self.retriever, self.retriever_params)]
        if self.ranker is not None:
            members.append(self._member(self.ranker, self.ranker_params))
        return members

    def _member(self, name: str, params: dict | None) -> Recommender:
        params = dict(params or {})
        model = create_model(name, **params)
        if "seed" in model.get_params() and "seed" not in params:
            model.set_params(seed=self.seed)
        return model

    def _reranker(self) -> GreedyReranker | None:
        if self.reranker is None:
            return None
        params = dict(self.reranker_params or {})
        similarity = "vectors" if self.similarity == "vectors" else self.genres_
        if similarity is None:
            raise InputError("the pipeline re-ranks on genres, but the training data has no "
                             "genres column; use similarity='vectors'")
        return RERANKERS[self.reranker](candidates=self.rerank_depth, similarity=similarity,
                                        **params)

    # ------------------------------------------------------------------ fitting
    def _fit(self, train: PairData, valid: Interactions | ValidationScore | None) -> None:
        self.genres_ = item_genres(train) if isinstance(train, Interactions) else None
        self._models = self._members()
        self._models[0].fit(train, valid)
        for model in self._models[1:]:
            model.fit(train)
        self._reranker()  # refuse a bad re-ranker now, not at the first request

    # ------------------------------------------------------------------ scoring
    def _score_batch(self, queries: QueryBatch) -> np.ndarray:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        retriever = self._models[0]
        first = retriever.score(queries)
        mask_excluded(first, exclusion_matrix(queries, "seen", self.n_items_))
        n = min(self.candidates, self.n_items_)
        cands, _ = top_k(first.astype(np.float32), n)
        timings["retrieve"] = time.perf_counter() - start
        start = time.perf_counter()
        if len(self._models) > 1:
            ranked = self._models[1].score(queries, cands)
            ranked[cands < 0] = -np.inf
            order = np.argsort(-ranked, axis=1, kind="stable")
            cands = np.take_along_axis(cands, order, axis=1)
            ranked = np.take_along_axis(ranked, order, axis=1)
        else:
            ranked = np.take_along_axis(first, np.maximum(cands, 0), axis=1)
        timings["rank"] = time.perf_counter() - start
        start = time.perf_counter()
        reranker = self._reranker()
        if reranker is not None:
            cands = self._rerank(reranker, cands, ranked)
        timings["rerank"] = time.perf_counter() - start
        self.last_timings = timings
        return _rank_scores(cands, first)

    def _rerank(self, reranker: GreedyReranker, cands: np.ndarray,
                ranked: np.ndarray) -> np.ndarray:
        """The top ``rerank_depth`` candidates re-ordered, then the rest as ranked."""
        depth = min(self.rerank_depth, cands.shape[1])
        features = (self._models[0].item_vectors() if self.similarity == "vectors"
                    else self.genres_)
        if features is None:
            raise InputError(f"{type(self._models[0]).__name__} has no item vectors; use "
                             "similarity='genres'")
        head = reranker.greedy(cands[:, :depth], ranked[:, :depth].astype(np.float64),
                               features, depth)
        return np.concatenate([head, cands[:, depth:]], axis=1)

    def item_vectors(self) -> np.ndarray | None:
        return self._models[0].item_vectors()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, Any]:
        return super()._state() | members_state(self._models)

    def _restore(self, state: dict[str, Any]) -> None:
        models = self._members()
        super()._restore(restore_members(models, state))
        self._models = models


def _member_params(params: dict[str, Any], where: str,
                   only: dict[str, Any]) -> dict[str, Any]:
    """``retriever_params``/``ranker_params`` of ``params`` checked by the rules of the
    members they name, in canonical form (those whose role or parameters are in ``only``)."""
    out = {}
    for role in ("retriever", "ranker"):
        key = f"{role}_params"
        name, values = params[role], params[key]
        if values is not None and name is not None and (role in only or key in only):
            out[key] = get_model_class(name).validate_params(values, where=f"{where}{key}.")
    return out


def _rank_scores(head: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Negated final ranks: ``head`` items (``-1`` padded) in their order, then every other
    item by ``first`` (descending, ties by the lower index)."""
    n, n_items = first.shape
    position = np.full((n, n_items), head.shape[1], dtype=np.int64)
    rows, cols = np.nonzero(head >= 0)
    position[rows, head[rows, cols]] = cols
    order = np.lexsort((-first.astype(np.float64), position), axis=1)
    scores = np.empty((n, n_items), dtype=np.float32)
    ranks = np.broadcast_to(-np.arange(1, n_items + 1, dtype=np.float32), (n, n_items))
    np.put_along_axis(scores, order, ranks, axis=1)
    return scores
