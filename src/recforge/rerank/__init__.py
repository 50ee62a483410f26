"""Re-ranking of any model's recommendation lists for diversity: maximal marginal relevance
and determinantal point processes (fast greedy MAP), both vectorised over users."""

from recforge.rerank.base import GreedyReranker, item_genres, minmax_relevance
from recforge.rerank.dpp import DPPReranker
from recforge.rerank.mmr import MMRReranker

__all__ = ["DPPReranker", "GreedyReranker", "MMRReranker", "item_genres", "minmax_relevance"]
