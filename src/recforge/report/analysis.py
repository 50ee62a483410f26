"""What the figures and tables show, computed from the record in bulk (vectorised over users).

Every analysis reads each label's first-seed run (lowest seed). Beyond-accuracy figures use
the training data: ``pop`` = training interactions per item, ``n_users`` = users with
training interactions (as the `Evaluator`). Diversity is on the items' genre multi-hot when
the data has one, else on each model's item vectors (NaN for models without them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.evaluation import metrics as m
from recforge.evaluation.protocols import lookup_hits
from recforge.experiments.record import ExperimentRecord, ModelRecord
from recforge.report.tables import ranked_labels, runs_by_label
from recforge.rerank import MMRReranker, item_genres

CUTOFF = 10
N_DECILES = 10
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
ACTIVITY_QUANTILES = 4
#: most test users re-ranked for the MMR trade-off curve
TRADEOFF_USERS = 10_000


@dataclass
class Context:
    """The record with what several analyses share, computed once."""

    record: ExperimentRecord

    @cached_property
    def order(self) -> list[str]:
        """Labels, best first on the primary metric."""
        return ranked_labels(self.record)

    @cached_property
    def first(self) -> dict[str, ModelRecord]:
        """Each label's first-seed run, best label first."""
        groups = runs_by_label(self.record)
        return {label: groups[label][0] for label in self.order}

    @cached_property
    def relevance(self) -> sp.csr_matrix:
        """Binary test relevance, one row per test user (rows of ``top_items``)."""
        return self.record.test.matrix("binary")[self.record.test_users]

    @cached_property
    def n_relevant(self) -> np.ndarray:
        return np.diff(self.relevance.indptr)

    @cached_property
    def genres(self) -> sp.csr_matrix | None:
        return item_genres(self.record.train)

    @cached_property
    def popularity(self) -> np.ndarray:
        return self.record.train.item_counts

    @cached_property
    def n_active(self) -> int:
        return int((self.record.train.user_counts > 0).sum())

    @property
    def diversity_basis(self) -> str:
        """What intra-list diversity is measured on, in words."""
        return "genres" if self.genres is not None else "item vectors"

    def diversity_features(self, run: ModelRecord) -> np.ndarray | sp.spmatrix | None:
        """Genres when the data has them, else the model's item vectors (or None)."""
        return self.genres if self.genres is not None else run.model.item_vectors()

    def hits(self, items: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Hits of lists for the test users at positions ``rows`` (``top_items`` row order)."""
        return lookup_hits(self.relevance[rows], items)[0]

    def sample_rows(self, limit: int, seed: int = 0) -> np.ndarray:
        """Positions of at most ``limit`` test users (all when fewer), drawn with ``seed``."""
        n = len(self.record.test_users)
        if n <= limit:
            return np.arange(n)
        return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def cutoff_curves(ctx: Context) -> dict[str, dict[str, np.ndarray]]:
    """Precision, Recall and NDCG at K = 1..max_k (mean over test users) per label."""
    out = {}
    for label, run in ctx.first.items():
        hits = ctx.hits(run.top_items)
        ks = np.arange(1, hits.shape[1] + 1)
        ideal = m.ideal_binary_gains(ctx.n_relevant, len(ks))
        out[label] = {
            "Precision": np.array([np.nanmean(m.precision(hits, k)) for k in ks]),
            "Recall": np.array([np.nanmean(m.recall(hits, ctx.n_relevant, k)) for k in ks]),
            "NDCG": np.array([np.nanmean(m.ndcg(hits, ideal, k)) for k in ks]),
        }
    return out


def _list_beyond(ctx: Context, items: np.ndarray,
                 features: np.ndarray | sp.spmatrix | None) -> dict[str, float]:
    k = min(CUTOFF, items.shape[1])
    diversity = (np.nanmean(m.intra_list_diversity(items, features, k))
                 if features is not None else np.nan)
    return {f"Coverage@{k}": m.catalog_coverage(items, ctx.record.train.n_items, k),
            f"Diversity@{k}": float(diversity),
            f"Novelty@{k}": float(np.nanmean(m.novelty(items, ctx.popularity, ctx.n_active, k))),
            f"ARP@{k}": float(np.nanmean(m.average_popularity(items, ctx.popularity, k)))}


def beyond_accuracy(ctx: Context) -> dict[str, dict[str, float]]:
    """Coverage, intra-list diversity, novelty and average popularity of the top-10 lists."""
    return {label: _list_beyond(ctx, run.top_items, ctx.diversity_features(run))
            for label, run in ctx.first.items()}


def popularity_decile(ctx: Context) -> np.ndarray:
    """Each item's training popularity decile, 0 (most popular 10%) to 9; ties by index."""
    n_items = ctx.record.train.n_items
    rank = np.empty(n_items, dtype=np.int64)
    rank[np.argsort(-ctx.popularity, kind="stable")] = np.arange(n_items)
    return rank * N_DECILES // n_items


def popularity_groups(ctx: Context) -> np.ndarray:
    """Item group labels ``"decile 1"``..``"decile 10"`` (for maps without genres)."""
    return np.char.add("decile ", (popularity_decile(ctx) + 1).astype(str))


def popularity_deciles(ctx: Context) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Share of training interactions and of each label's top-10 recommendations falling in
    each popularity decile of the catalogue (decile 1 = the 10% most popular items)."""
    decile = popularity_decile(ctx)
    catalogue = np.bincount(decile, weights=ctx.popularity, minlength=N_DECILES)
    shares = {}
    for label, run in ctx.first.items():
        top = run.top_items[:, :CUTOFF]
        counts = np.bincount(decile[top[top >= 0]], minlength=N_DECILES)
        shares[label] = counts / max(counts.sum(), 1)
    return catalogue / max(catalogue.sum(), 1), shares


def activity_edges(ctx: Context) -> np.ndarray:
    """Bucket edges over test users' training counts: quartiles of the users with history,
    after a cold-start bucket ``[0, 1)`` when some test users have none."""
    activity = ctx.record.train.user_counts[ctx.record.test_users]
    warm = activity[activity > 0]
    inner = np.unique(np.quantile(warm, np.linspace(0, 1, ACTIVITY_QUANTILES + 1)[:-1]))
    edges = np.concatenate([[0.0, 1.0] if (activity == 0).any() else [], inner, [np.inf]])
    return np.unique(edges)


def by_activity(ctx: Context, protocol: str, name: str) -> pd.DataFrame:
    """``name`` per activity bucket (rows) and label (columns), with a ``users`` column."""
    edges = activity_edges(ctx)
    frames = {label: run.results[protocol].by_activity(ctx.record.train, edges)
              for label, run in ctx.first.items()
              if protocol in run.results and name in run.results[protocol].per_user}
    if not frames:
        return pd.DataFrame()
    table = pd.DataFrame({label: frame[name] for label, frame in frames.items()})
    table.insert(0, "users", next(iter(frames.values()))["users"])
    return table


def tradeoff(ctx: Context, labels: list[str]) -> dict[str, pd.DataFrame]:
    """NDCG@10 and intra-list diversity of MMR-re-ranked lists for each lambda in `LAMBDAS`,
    over the test users (a seeded sample of `TRADEOFF_USERS` when there are more)."""
    sample = ctx.sample_rows(TRADEOFF_USERS)
    ideal = m.ideal_binary_gains(ctx.n_relevant[sample], CUTOFF)
    out = {}
    for label in labels:
        run = ctx.first[label]
        features = ctx.diversity_features(run)
        if features is None:
            continue
        rows = []
        for lam in LAMBDAS:
            items = MMRReranker(lam, similarity=features).rerank(
                run.model, ctx.record.test_users[sample], CUTOFF)
            hits = ctx.hits(items, sample)
            rows.append({"lambda": lam,
                         "NDCG@10": float(np.nanmean(m.ndcg(hits, ideal, CUTOFF))),
                         "Diversity@10": float(np.nanmean(
                             m.intra_list_diversity(items, features, CUTOFF)))})
        out[label] = pd.DataFrame(rows)
    return out


def item_titles(ctx: Context) -> np.ndarray:
    """Each item's title, or its external id when the data has no titles."""
    data = ctx.record.train
    ids = data.item_map.ids.astype(str)
    titles = data.item_column("text", "title")
    return ids if titles is None else np.where(pd.isna(titles), ids, titles).astype(str)


def example_users(ctx: Context, n_users: int = 3, seed: int = 0) -> np.ndarray:
    """Positions (rows of ``top_items``) of ``n_users`` test users with at least 5 training
    interactions, drawn with ``seed``, in ascending order."""
    activity = ctx.record.train.user_counts[ctx.record.test_users]
    pool = np.flatnonzero(activity >= 5)
    if len(pool) == 0:
        pool = np.arange(len(activity))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(n_users, len(pool)), replace=False))


def top_rated(ctx: Context, user: int, k: int = CUTOFF) -> list[tuple[int, float]]:
    """The user's ``k`` highest-valued training items (rating, else weight), ties by index."""
    row = ctx.record.train.matrix("auto")[user]
    order = np.lexsort((row.indices, -row.data))[:k]
    return [(int(row.indices[j]), float(row.data[j])) for j in order]


def primary_genres(ctx: Context) -> np.ndarray | None:
    """Each item's rarest genre (its most specific one), ``"none"`` without genres."""
    if ctx.genres is None:
        return None
    member = ctx.genres.toarray() > 0
    labels = np.array(ctx.record.train.item_features.multihot["genres"][0] + ["none"])
    prevalence = np.where(member, member.sum(axis=0), np.inf)
    rarest = np.argmin(prevalence, axis=1)
    return labels[np.where(member.any(axis=1), rarest, len(labels) - 1)]


def tsne_maps(ctx: Context, max_models: int = 2,
              max_items: int = 1000) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """2-D t-SNE (seed 0) of the item vectors of the best ``max_models`` labels that have
    them, over the ``max_items`` most popular items: ``{label: (xy, items)}``."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    items = np.sort(np.argsort(-ctx.popularity, kind="stable")[:max_items])
    out = {}
    for label, run in ctx.first.items():
        vectors = run.model.item_vectors()
        if vectors is None or len(out) == max_models:
            continue
        tsne = TSNE(2, perplexity=min(30.0, (len(items) - 1) / 3), init="pca",
                    max_iter=500, random_state=0)
        with threadpool_limits(1):  # measured faster than 2 OpenMP threads on a shared machine
            out[label] = (tsne.fit_transform(np.asarray(vectors[items], np.float32)), items)
    return out
