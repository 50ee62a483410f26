"""Re-ranking of any model's recommendation lists (diversity: maximal marginal relevance)."""

from recforge.rerank.mmr import MMRReranker, item_genres

__all__ = ["MMRReranker", "item_genres"]
