"""Recommendation models behind one API (see `recforge.models.base.Recommender`)."""

# imported for their registrations: EASE, kNN and the rating-prediction family
from recforge.models.base import NotFittedError, Recommender
from recforge.models.baselines.simple import (
    BaselineOnly,
    GlobalMean,
    ItemMean,
    MostPopular,
    RandomRecommender,
    UserMean,
)
from recforge.models.factorization import als_explicit, blend, mf, svd, svdpp  # noqa: F401
from recforge.models.factorization.bpr import BPR
from recforge.models.factorization.ials import ImplicitALS
from recforge.models.neighbours import ease, knn  # noqa: F401
from recforge.models.neural import autorec  # noqa: F401
from recforge.models.neural.ncf import GMF, MLP, DotMF, NeuMF  # noqa: F401  (imports torch)
from recforge.models.registry import create_model, get_model_class, model_names, register
from recforge.models.retrieval.two_tower import TwoTower  # noqa: F401  (imports torch)

__all__ = [
    "BPR", "BaselineOnly", "GlobalMean", "ImplicitALS", "ItemMean", "MostPopular", "NotFittedError",
    "RandomRecommender", "Recommender", "UserMean", "create_model", "get_model_class",
    "model_names", "register",
]
