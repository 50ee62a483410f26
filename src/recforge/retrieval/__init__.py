"""Retrieval: approximate nearest-neighbour indexes and the `Retriever` serving pipeline."""

from recforge.retrieval.index import (
    EXACT_MAX_ITEMS,
    INDEX_KINDS,
    ExactIndex,
    FaissIndex,
    FaissUnavailableError,
    VectorIndex,
    faiss_available,
    load_index,
    make_index,
)
from recforge.retrieval.retriever import Recommendations, Retriever

__all__ = [
    "EXACT_MAX_ITEMS", "INDEX_KINDS", "ExactIndex", "FaissIndex", "FaissUnavailableError",
    "Recommendations", "Retriever", "VectorIndex", "faiss_available", "load_index",
    "make_index",
]
