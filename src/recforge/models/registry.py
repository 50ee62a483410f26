"""Name -> model class registry used by the CLI and experiment files.

The built-in models are a table of ``name -> "module:Class"`` (`BUILTIN`): listing the names
imports nothing, and a model's module (and so numba or PyTorch) is imported the first time its
class is asked for. The module's ``@register(name)`` decorator then records the class, exactly
as it does for a user's model defined anywhere else. A new built-in model needs both its
decorator and its line in `BUILTIN` (the tests check that they agree).

Renamed models are in `RENAMED`: asking for an old name raises a one-line error saying the new
one, except when loading a saved model (`saved_model_class`), which maps it silently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from recforge.errors import UnknownNameError, did_you_mean

#: built-in models: registry name -> "module:Class", imported on first use
BUILTIN: dict[str, str] = {
    # baselines
    "random": "recforge.models.baselines.simple:RandomRecommender",
    "most-popular": "recforge.models.baselines.simple:MostPopular",
    "global-mean": "recforge.models.baselines.simple:GlobalMean",
    "user-mean": "recforge.models.baselines.simple:UserMean",
    "item-mean": "recforge.models.baselines.simple:ItemMean",
    "baseline-only": "recforge.models.baselines.simple:BaselineOnly",
    "recent-popular": "recforge.models.baselines.recent:RecentPopular",
    # neighbours
    "user-knn": "recforge.models.neighbours.knn:UserKNN",
    "item-knn": "recforge.models.neighbours.knn:ItemKNN",
    "user-knn-implicit": "recforge.models.neighbours.knn:UserKNNImplicit",
    "item-knn-implicit": "recforge.models.neighbours.knn:ItemKNNImplicit",
    "ease": "recforge.models.neighbours.ease:EASE",
    # factorization
    "biased-mf": "recforge.models.factorization.mf:BiasedMF",
    "biased-mf-als": "recforge.models.factorization.mf:BiasedMFALS",
    "als-wr": "recforge.models.factorization.als_explicit:ExplicitALS",
    "truncated-svd": "recforge.models.factorization.svd:TruncatedSVD",
    "svdpp": "recforge.models.factorization.svdpp:SVDpp",
    "ials": "recforge.models.factorization.ials:ImplicitALS",
    "bpr": "recforge.models.factorization.bpr:BPR",
    "blend": "recforge.models.factorization.blend:LinearBlend",
    # neural (PyTorch, except AutoRec)
    "autorec": "recforge.models.neural.autorec:AutoRec",
    "gmf": "recforge.models.neural.ncf:GMF",
    "mlp": "recforge.models.neural.ncf:MLP",
    "dot-mf": "recforge.models.neural.ncf:DotMF",
    "neumf": "recforge.models.neural.ncf:NeuMF",
    # retrieval (PyTorch)
    "two-tower": "recforge.models.retrieval.two_tower:TwoTower",
    # sequential (PyTorch)
    "sasrec": "recforge.models.sequential.sasrec:SASRec",
    "gru4rec": "recforge.models.sequential.gru4rec:GRU4Rec",
    "bert4rec": "recforge.models.sequential.bert4rec:BERT4Rec",
    # graph (PyTorch)
    "lightgcn": "recforge.models.graph.lightgcn:LightGCN",
    # ranking: click models over features (PyTorch)
    "logistic-regression": "recforge.models.ranking.linear:LogisticRegression",
    "fm": "recforge.models.ranking.linear:FactorizationMachine",
    "deepfm": "recforge.models.ranking.deepfm:DeepFM",
    "wide-deep": "recforge.models.ranking.wide_deep:WideDeep",
    "xdeepfm": "recforge.models.ranking.xdeepfm:XDeepFM",
    "dcn": "recforge.models.ranking.dcn:DCN",
    "dcn-v2": "recforge.models.ranking.dcn:DCNV2",
    "shared-bottom": "recforge.models.ranking.multitask:SharedBottom",
    "mmoe": "recforge.models.ranking.multitask:MMoE",
    "ple": "recforge.models.ranking.multitask:PLE",
    # retrieve -> rank -> re-rank
    "pipeline": "recforge.retrieval.pipeline:Pipeline",
}

#: old registry name -> new one (the old name fails with the new one in its message)
RENAMED: dict[str, str] = {
    "als": "als-wr",  # explicit ALS-WR, not implicit ALS ("ials")
    "svd": "truncated-svd",  # truncated SVD of the centred ratings, not Surprise's SGD "SVD"
}

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: register a model under a kebab-case ``name`` (a built-in name, or an
    old one in `RENAMED`, is refused for any other class)."""

    def wrap(cls: T) -> T:
        taken = (name in _REGISTRY and _REGISTRY[name] is not cls) or name in RENAMED or (
            name in BUILTIN and BUILTIN[name] != f"{cls.__module__}:{cls.__qualname__}")
        if taken:
            raise ValueError(f"model name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def get_model_class(name: str) -> type:
    """The class registered as ``name`` (imported on first use); an unknown or renamed name
    raises `UnknownNameError` saying the new name, or the closest and the list of known ones."""
    key = _key(name)
    if key in RENAMED:
        raise UnknownNameError(f"unknown model {name!r}: renamed to {RENAMED[key]!r}")
    if key not in _REGISTRY and key in BUILTIN:
        importlib.import_module(BUILTIN[key].partition(":")[0])  # its @register records it
    if key not in _REGISTRY:
        names = model_names()
        raise UnknownNameError(f"unknown model {name!r}{did_you_mean(key, names)}; "
                               f"available: {', '.join(names)}")
    return _REGISTRY[key]


def saved_model_class(name: str) -> type:
    """`get_model_class` for the name recorded in a saved model: an old name in `RENAMED`
    maps to its new one silently (saved folders are the user's data)."""
    key = _key(name)
    return get_model_class(RENAMED.get(key, key))


def create_model(name: str, **params: Any) -> Any:
    """Instantiate the model registered as ``name`` with ``params`` (an unknown name or a bad
    value raises `recforge.errors.ParameterError` naming the parameter)."""
    cls = get_model_class(name)
    return cls(**cls.validate_params(params))


def model_names() -> list[str]:
    """Every registered name, built-in or not, sorted; imports no model."""
    return sorted(BUILTIN.keys() | _REGISTRY.keys())
