"""recforge's DeepFM and DCN side by side with DeepCTR-Torch's on ML-100K events: training
and prediction throughput (examples per second) and test AUC, in one run.

Same split as `bench_ctr.py` (time order 80/10/10), same inputs for both libraries, built
once by recforge's `FeatureInputs` (user id, item id, gender, occupation, age bucket, zip
prefix, year bin, hour, weekday as index fields; genres as a mean-pooled multi-valued field;
the previous 20 items mean-pooled with the item id's embeddings), embedding size 16, MLP
256-128, Adam 1e-3, batch 1024, the same number of threads (``torch.set_num_threads``), CPU.
DCN has 2 cross layers in both (DeepCTR's default). DeepCTR-Torch is compiled without
training metrics (it computes them per batch with scikit-learn otherwise), so its loop does
only the optimisation.

Training throughput is the training examples over the wall time of ``--epochs`` epochs
(recforge: ``Trainer`` epochs after the inputs are encoded; DeepCTR: ``model.fit``); the two
libraries alternate ``--repeats`` times and the median is reported. Prediction throughput:
the test part's rows over the wall time of one prediction pass.

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_ctr_deepctr.py \
        --threads 2 --repeats 3 --json benchmarks/results/bench_ctr_deepctr_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_ctr import LABEL, fields, split

from recforge.evaluation.classification import roc_auc
from recforge.experiments.rundir import write_json
from recforge.models.registry import create_model

COMMON = {"embedding_dim": 16, "layers": (256, 128), "learning_rate": 1e-3,
          "train_batch_size": 1024}


def recforge_run(name: str, parts: tuple, epochs: int, threads: int) -> dict[str, Any]:
    train, _, test = parts
    extra = {"cross_layers": 2} if name == "dcn" else {}
    model = create_model(name, seed=0, threads=threads, epochs=epochs, fields=fields(),
                         **COMMON, **extra)
    model.fit(train)
    train_seconds = sum(e["seconds"] for e in model.history_)
    start = time.perf_counter()
    p = model.predict_proba(test)
    predict_seconds = time.perf_counter() - start
    return {"train_examples_per_second": len(train) * epochs / train_seconds,
            "predict_rows_per_second": len(test) / predict_seconds,
            "test_auc": roc_auc(test.label(LABEL), p)}


def deepctr_inputs(parts: tuple) -> tuple[list[dict[str, np.ndarray]], list[Any]]:
    """The same encoded inputs as recforge's, as DeepCTR-Torch feature columns."""
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat

    from recforge.data.codec import Field
    from recforge.models.ranking.inputs import FeatureInputs

    train = parts[0]
    inputs = FeatureInputs([Field(**f) for f in fields()], 20).fit(train)
    layout = inputs.layout
    columns: list[Any] = [SparseFeat(name, size, embedding_dim=16)
                          for name, size in layout.sparse]
    (genre_name, genre_size), = layout.multihot
    columns.append(VarLenSparseFeat(SparseFeat(genre_name, genre_size + 1, embedding_dim=16),
                                    maxlen=genre_size, combiner="mean"))
    item_size = dict(layout.sparse)["item"]
    columns.append(VarLenSparseFeat(SparseFeat("history", item_size, embedding_dim=16,
                                               embedding_name="item"),
                                    maxlen=20, combiner="mean"))
    out = []
    for part in parts:
        rows = inputs.events(part, part.history)
        x = {name: rows["sparse"][:, j] for j, (name, _) in enumerate(layout.sparse)}
        genres = rows["multihot"]
        x[genre_name] = np.where(genres > 0, np.arange(1, genre_size + 1), 0)
        x["history"] = rows["history"]
        out.append(x)
    return out, columns


def deepctr_run(name: str, parts: tuple, x: list, columns: list, epochs: int) -> dict[str, Any]:
    from deepctr_torch.models import DCN, DeepFM

    train, _, test = parts
    cls = DeepFM if name == "deepfm" else DCN
    extra = {"dnn_hidden_units": (256, 128)}
    if name == "dcn":
        extra["cross_num"] = 2
    model = cls(columns, columns, task="binary", device="cpu", seed=0, **extra)
    model.compile("adam", "binary_crossentropy", metrics=[])
    start = time.perf_counter()
    model.fit(x[0], train.label(LABEL), batch_size=1024, epochs=epochs, verbose=0)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    p = model.predict(x[2], batch_size=1024).ravel()
    predict_seconds = time.perf_counter() - start
    return {"train_examples_per_second": len(train) * epochs / train_seconds,
            "predict_rows_per_second": len(test) / predict_seconds,
            "test_auc": roc_auc(test.label(LABEL), p)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = split(args.data_dir)
    x, columns = deepctr_inputs(parts)
    results: dict[str, Any] = {}
    for name in ("deepfm", "dcn"):
        runs: dict[str, list] = {"recforge": [], "deepctr-torch": []}
        for _ in range(args.repeats):
            runs["recforge"].append(recforge_run(name, parts, args.epochs, args.threads))
            torch.set_num_threads(args.threads)
            runs["deepctr-torch"].append(deepctr_run(name, parts, x, columns, args.epochs))
        med = {lib: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
               for lib, rs in runs.items()}
        results[name] = {"median": med, "runs": runs, "ratio_train": (
            med["recforge"]["train_examples_per_second"]
            / med["deepctr-torch"]["train_examples_per_second"]), "ratio_predict": (
            med["recforge"]["predict_rows_per_second"]
            / med["deepctr-torch"]["predict_rows_per_second"])}
        print(json.dumps({name: {k: v for k, v in results[name].items() if k != "runs"}}),
              flush=True)
    record = {"benchmark": "bench_ctr_deepctr", "dataset": "ml-100k", "threads": args.threads,
              "epochs": args.epochs, "repeats": args.repeats, "common": COMMON,
              "train_events": len(parts[0]), "test_events": len(parts[2]), "results": results}
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
