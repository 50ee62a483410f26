"""Synthetic item and user embeddings with the structure learned embeddings have.

Isotropic Gaussian vectors are the worst case of every approximate index (no structure to
exploit, every neighbour about as far as any other) and unlike trained embeddings, which
gather in clusters (genres, tastes) of very unequal size. `clustered_catalogue` draws:

* ``clusters`` centres from a low-rank Gaussian (``rank`` latent directions plus a little
  full-rank noise), so clusters are themselves correlated, as related genres are;
* cluster sizes from a power law (a few large clusters, a long tail of small ones);
* items at centre + ``spread`` times Gaussian noise of the same scale as the centres, then
  scaled by a log-normal norm factor (in factor models popular items have longer vectors);
* users (queries) at a centre drawn by cluster size, plus ``spread`` noise: a user's best
  items lie mostly in their cluster, partly in neighbouring ones;
* per-user seen items, Poisson(``seen_mean``) of them: half from the user's own cluster
  (histories follow taste), half uniform, so excluding them changes the top-k.

Everything is seeded and vectorised; 1M x 64 items take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class ClusteredCatalogue:
    """Item vectors, user query vectors and each user's seen items (a CSR over items)."""

    items: np.ndarray
    users: np.ndarray
    seen: sp.csr_matrix
    item_cluster: np.ndarray
    user_cluster: np.ndarray


def clustered_catalogue(n_items: int, n_users: int = 1000, dim: int = 64, clusters: int = 1000,
                        spread: float = 0.5, rank: int = 16, seen_mean: float = 40.0,
                        seed: int = 0) -> ClusteredCatalogue:
    """Draw a clustered catalogue (see the module doc); all vectors float32."""
    if n_items < 1 or n_users < 1 or dim < 1 or clusters < 1:
        raise ValueError("n_items, n_users, dim and clusters must be positive")
    rng = np.random.default_rng(seed)
    clusters = min(clusters, n_items)
    rank = min(rank, dim)
    basis = rng.standard_normal((rank, dim)) / np.sqrt(rank)
    centres = rng.standard_normal((clusters, rank)) @ basis
    centres += 0.3 * rng.standard_normal((clusters, dim)) / np.sqrt(dim)
    weights = rng.permutation((np.arange(clusters) + 1.0) ** -0.8)
    weights /= weights.sum()
    item_cluster = np.sort(rng.choice(clusters, size=n_items, p=weights))
    items = _around(rng, centres, item_cluster, spread, dim)
    items *= rng.lognormal(0.0, 0.25, size=(n_items, 1))
    user_cluster = rng.choice(clusters, size=n_users, p=weights)
    users = _around(rng, centres, user_cluster, spread, dim)
    seen = _seen_items(rng, item_cluster, user_cluster, clusters, seen_mean)
    return ClusteredCatalogue(items.astype(np.float32), users.astype(np.float32), seen,
                              item_cluster, user_cluster)


def _around(rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray,
            spread: float, dim: int) -> np.ndarray:
    return centres[labels] + spread * rng.standard_normal((len(labels), dim)) / np.sqrt(dim)


def _seen_items(rng: np.random.Generator, item_cluster: np.ndarray, user_cluster: np.ndarray,
                clusters: int, seen_mean: float) -> sp.csr_matrix:
    """Half of each user's Poisson(seen_mean) items from their cluster, half uniform."""
    n_items, n_users = len(item_cluster), len(user_cluster)
    counts = rng.poisson(seen_mean, size=n_users)
    own = rng.random(counts.sum()) < 0.5
    rows = np.repeat(np.arange(n_users), counts)
    sizes = np.bincount(item_cluster, minlength=clusters)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # items are sorted by cluster
    label = user_cluster[rows]
    in_cluster = starts[label] + np.floor(rng.random(len(rows)) * sizes[label]).astype(np.int64)
    anywhere = rng.integers(0, n_items, size=len(rows))
    picked = np.where(own & (sizes[label] > 0), in_cluster, anywhere)
    seen = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, picked)),
                         shape=(n_users, n_items))
    seen.data[:] = 1.0  # duplicates were summed
    return seen
