"""Latency and recall of the `Retriever` pipeline: one query at a time, one thread.

Each timed call is the whole ``Retriever.recommend(user, k=10)``: external id lookup, user
encoding (`user_embeddings`), index search with the user's seen items excluded, and the
mapping back to external ids. After ``--warmup`` calls, ``--queries`` calls are timed one by
one (``perf_counter_ns``) on one thread (FAISS OpenMP, BLAS, numba and torch all pinned to
1; index building may use every core); ``p50_ms``/``p99_ms`` are their percentiles.
``recall_at_10`` is the mean overlap of each answer with the exact top 10 (the same seen
items excluded), computed in bulk with the exact index.

Data: ``--items N`` synthetic clustered item vectors (`recforge.retrieval.synthetic`: ~1,000
Gaussian clusters of power-law sizes, log-normal norms, users near the clusters, ~40 seen
items each), or ``--dataset ml-100k``: the user and item embeddings of an ``--model``
(default ``ials``) fitted on all of ML-100K, queried by 1,000 user ids drawn with replacement.
Warm-up calls use other users (synthetic) or another draw of user ids (ML-100K).

    .venv/bin/python benchmarks/retrieval_latency.py --items 1000000 --dim 64 \\
        --json benchmarks/results/retrieval_latency_1m.json
    .venv/bin/python benchmarks/retrieval_latency.py --items 1000000 --sweep --json ...
    .venv/bin/python benchmarks/retrieval_latency.py --dataset ml-100k --sweep --json ...

``--sweep`` times every index kind over a grid of its settings (flat and exact, IVF-Flat
nlist x nprobe, IVF-PQ code size x refinement x nprobe, HNSW M x efSearch) and writes one row
each; without it, the index is ``--index`` (default ``auto``, the library's choice) with
``--param name=value`` settings.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # BLAS before numpy loads; FAISS builds set their own

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, ClassVar

import numba
import numpy as np
import torch

from recforge.cli.common import parse_params
from recforge.data.interactions import IdMap, Interactions
from recforge.data.loading import load_dataset
from recforge.models import create_model
from recforge.models.base import Recommender
from recforge.models.factorization.factors import FactorModel
from recforge.params import Anything, Rule
from recforge.retrieval import ExactIndex, FaissIndex, Retriever, VectorIndex, make_index
from recforge.retrieval.index import default_nlist, faiss_available
from recforge.retrieval.synthetic import clustered_catalogue

K = 10


class PlantedFactors(FactorModel, Recommender):
    """A factor model whose factors are given (the synthetic catalogue's vectors)."""

    param_rules: ClassVar[dict[str, Rule]] = {"user_factors": Anything(),
                                              "item_factors": Anything()}

    def __init__(self, user_factors: Any = None, item_factors: Any = None):
        self.user_factors = user_factors
        self.item_factors = item_factors

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.user_factors_ = np.asarray(self.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(self.item_factors, dtype=np.float32)


def synthetic_model(n_items: int, dim: int, clusters: int, n_users: int,
                    seed: int) -> Recommender:
    """`PlantedFactors` fitted on the clustered catalogue's seen items."""
    cat = clustered_catalogue(n_items, n_users, dim=dim, clusters=clusters, seed=seed)
    coo = cat.seen.tocoo()
    train = Interactions(coo.row, coo.col, user_map=IdMap(np.arange(n_users)),
                         item_map=IdMap(np.arange(n_items)), name="clustered")
    return PlantedFactors(cat.users, cat.items).fit(train)


def ml100k_model(name: str, seed: int) -> tuple[Recommender, Interactions]:
    """A registered model fitted on all of ML-100K."""
    data = load_dataset("ml-100k")
    return create_model(name, seed=seed).fit(data), data


def single_thread() -> None:
    """Pin every query-time thread pool to one thread."""
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    if faiss_available():
        import faiss

        faiss.omp_set_num_threads(1)


def build_threads(n: int) -> None:
    """Let FAISS use ``n`` threads while building."""
    if faiss_available():
        import faiss

        faiss.omp_set_num_threads(n)


def time_queries(retriever: Retriever, user_ids: np.ndarray,
                 warmup_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-call latencies in ms and the returned internal item indices ``(n, K)``; the
    ``warmup_ids`` calls run first, untimed."""
    for user in warmup_ids:
        retriever.recommend(user, K)
    latencies = np.empty(len(user_ids))
    found = np.full((len(user_ids), K), -1, dtype=np.int64)
    for q, user in enumerate(user_ids):
        start = time.perf_counter_ns()
        answer = retriever.recommend(user, K)
        latencies[q] = (time.perf_counter_ns() - start) / 1e6
        found[q, :len(answer)] = answer.items
    return latencies, found


def exact_top(model: Recommender, users: np.ndarray) -> np.ndarray:
    """The exact top ``K`` (seen excluded) of every query, in bulk."""
    vectors = model.item_embeddings()
    index = ExactIndex().build(vectors)
    seen = model.training_history(users)
    exclude = [seen.history(q) for q in range(len(users))]
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    ids, _ = index.search(model.user_embeddings(users), K, exclude=exclude)
    single_thread()
    return ids


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean ``|found & exact| / K`` over queries (vectorised over the K x K pairs)."""
    hits = (found[:, :, None] == exact[:, None, :]) & (exact[:, None, :] >= 0)
    return float(hits.any(axis=2).sum(axis=1).mean() / K)


def measure(model: Recommender, index: VectorIndex, users: np.ndarray, user_ids: np.ndarray,
            exact: np.ndarray, warmup_ids: np.ndarray, user_map: IdMap | None) -> dict[str, Any]:
    """Time the retriever over ``index`` (external ids through ``user_map``) and score its
    recall."""
    retriever = Retriever(model, index, user_map=user_map)
    load_before = os.getloadavg()[0]
    latencies, found = time_queries(retriever, user_ids, warmup_ids)
    return {
        "index": index.kind, "settings": index.settings(),
        "p50_ms": round(float(np.percentile(latencies, 50)), 4),
        "p99_ms": round(float(np.percentile(latencies, 99)), 4),
        "mean_ms": round(float(latencies.mean()), 4),
        "recall_at_10": round(recall_at_k(found, exact[users]), 4),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def timed_build(index: VectorIndex, vectors: np.ndarray, threads: int) -> tuple[VectorIndex, float]:
    """Build ``index`` on ``threads`` FAISS threads; return it with the seconds taken."""
    build_threads(threads)
    start = time.perf_counter()
    index.build(vectors)
    seconds = time.perf_counter() - start
    single_thread()
    return index, round(seconds, 2)


def sweep_grid(n: int, kinds: set[str]) -> list[tuple[str, dict[str, Any], list[dict[str, int]]]]:
    """(kind, build settings, search-time settings to try) for each of ``kinds``."""
    nlists = sorted({max(1, default_nlist(n) // 4), default_nlist(n), default_nlist(n) * 4})
    probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256) if p <= max(nlists)]
    grid: list[tuple[str, dict[str, Any], list[dict[str, int]]]] = []
    grid += [("exact", {}, [{}]), ("flat", {}, [{}])]
    grid += [("ivf-flat", {"nlist": nl}, [{"nprobe": p} for p in probes if p <= nl])
             for nl in nlists]
    grid += [("ivf-pq", {"nlist": nlists[0], "pq_m": m, "refine": r},
              [{"nprobe": p} for p in probes if 8 <= p <= nlists[0]] or [{"nprobe": nlists[0]}])
             for m, r in ((16, 0), (32, 0), (16, 10))]
    grid += [("hnsw", {"m": m, "ef_construction": 100},
              [{"ef_search": ef} for ef in (16, 32, 64, 128, 256, 512)]) for m in (16, 32)]
    return [row for row in grid if row[0] in kinds]


def run_sweep(model: Recommender, users: np.ndarray, user_ids: np.ndarray, exact: np.ndarray,
              warmup_ids: np.ndarray, user_map: IdMap | None,
              args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (index kind, setting)."""
    vectors = model.item_embeddings()
    rows = []
    for kind, settings, knobs in sweep_grid(len(vectors), set(args.kinds.split(","))):
        index = ExactIndex() if kind == "exact" else FaissIndex(kind, seed=args.seed, **settings)
        index, seconds = timed_build(index, vectors, args.build_threads)
        for knob in knobs:
            if knob:
                index.tune(**knob)
            row = measure(model, index, users, user_ids, exact, warmup_ids, user_map)
            rows.append(row | {"build_seconds": seconds})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import faiss

    return {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "faiss": faiss.__version__, "query_threads": 1}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--dataset", choices=["ml-100k"], default=None,
                        help="use a model fitted on ML-100K instead of synthetic vectors")
    parser.add_argument("--model", default="ials", help="the model fitted with --dataset")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--index", default="auto", help="auto, exact, flat, ivf-flat, ivf-pq, hnsw")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--sweep", action="store_true", help="every index kind and setting")
    parser.add_argument("--kinds", default="exact,flat,ivf-flat,ivf-pq,hnsw",
                        help="the index kinds a sweep covers (comma-separated)")
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    single_thread()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    if args.dataset:
        model, data = ml100k_model(args.model, args.seed)
        users = rng.integers(0, model.n_users_, args.queries)
        user_ids = data.user_map.to_external(users)
        warmup_ids = data.user_map.to_external(rng.integers(0, model.n_users_, args.warmup))
        user_map = data.user_map
        source = {"dataset": args.dataset, "model": args.model}
    else:
        model = synthetic_model(args.items, args.dim, args.clusters, args.queries + args.warmup,
                                args.seed)
        users = np.arange(args.queries)
        user_ids = users
        warmup_ids = np.arange(args.queries, args.queries + args.warmup)
        user_map = None
        source = {"dataset": "clustered-synthetic", "clusters": args.clusters}
    vectors = model.item_embeddings()
    print(f"data ready in {time.perf_counter() - start:.1f}s: {vectors.shape}", flush=True)
    exact = np.full((model.n_users_, K), -1, dtype=np.int64)
    exact[users] = exact_top(model, users)
    result: dict[str, Any] = {"items": len(vectors), "dim": vectors.shape[1], **source,
                              "queries": args.queries, "warmup": args.warmup, "k": K,
                              "seed": args.seed, "machine": machine()}
    if args.sweep:
        result["sweep"] = run_sweep(model, users, user_ids, exact, warmup_ids, user_map, args)
    else:
        index = make_index(args.index, len(vectors), **parse_params(args.param))
        index, seconds = timed_build(index, vectors, args.build_threads)
        result |= measure(model, index, users, user_ids, exact, warmup_ids, user_map)
        result["build_seconds"] = seconds
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
