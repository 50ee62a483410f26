"""Recommendation models behind one API (see `recforge.models.base.Recommender`)."""

from recforge.models import ease, knn  # noqa: F401  (registers EASE and the kNN models)
from recforge.models.base import NotFittedError, Recommender
from recforge.models.baselines import (
    BaselineOnly,
    GlobalMean,
    ItemMean,
    MostPopular,
    RandomRecommender,
    UserMean,
)
from recforge.models.ials import ImplicitALS
from recforge.models.registry import create_model, get_model_class, model_names, register

__all__ = [
    "BaselineOnly", "GlobalMean", "ImplicitALS", "ItemMean", "MostPopular", "NotFittedError",
    "RandomRecommender", "Recommender", "UserMean", "create_model", "get_model_class",
    "model_names", "register",
]
