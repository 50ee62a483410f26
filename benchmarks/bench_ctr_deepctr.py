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

``--converge`` trains both libraries to convergence instead (the issue's reference protocol):
up to ``--max-epochs`` epochs, early stopping on validation AUC with ``--patience`` epochs,
the best epoch's weights restored, for each of ``--seeds``; DeepCTR-Torch with its own
defaults otherwise (``init_std`` 1e-4 for embeddings and DNN weights, L2 1e-5 on the whole
embedding and linear tables added to every batch's loss, DCN's L2 1e-5 on the cross
weights), recforge with its defaults and the same embedding size, MLP, optimiser, batch size
(and 2 cross layers for DCN). Reports test AUC, log loss and GAUC per seed and their mean and
spread.

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_ctr_deepctr.py \
        --converge --seeds 0,1,2 --threads 1 \
        --json benchmarks/results/bench_ctr_deepctr_converge_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_ctr import LABEL, fields, metrics, run_model, split, summary

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


def deepctr_inputs(parts: tuple, auto_fields: bool = False,
                   ) -> tuple[list[dict[str, np.ndarray]], list[Any]]:
    """The same encoded inputs as recforge's, as DeepCTR-Torch feature columns: the fields of
    `bench_ctr.fields`, or with ``auto_fields`` the click models' automatic ones
    (`default_fields`: full zip code, standardised numeric age and release year)."""
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat

    from recforge.data.codec import Field
    from recforge.models.ranking.inputs import FeatureInputs, default_fields

    train = parts[0]
    declared = default_fields(train) if auto_fields else [Field(**f) for f in fields()]
    inputs = FeatureInputs(declared, 20).fit(train)
    layout = inputs.layout
    columns: list[Any] = [SparseFeat(name, size, embedding_dim=16)
                          for name, size in layout.sparse]
    columns += [DenseFeat(name, 1) for name in layout.numeric]
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
        x |= {name: rows["numeric"][:, j] for j, name in enumerate(layout.numeric)}
        genres = rows["multihot"]
        x[genre_name] = np.where(genres > 0, np.arange(1, genre_size + 1), 0)
        x["history"] = rows["history"]
        out.append(x)
    return out, columns


def deepctr_model(name: str, columns: list, seed: int, **params: Any) -> Any:
    """DeepCTR-Torch's DeepFM or DCN (MLP 256-128, DCN with 2 cross layers; its defaults
    otherwise, ``params`` overriding them), compiled with Adam 1e-3 and no training metrics."""
    from deepctr_torch.models import DCN, DeepFM

    cls = DeepFM if name == "deepfm" else DCN
    extra = {"dnn_hidden_units": (256, 128)}
    if name == "dcn":
        extra["cross_num"] = 2
    model = cls(columns, columns, task="binary", device="cpu", seed=seed, **extra, **params)
    model.compile("adam", "binary_crossentropy", metrics=[])
    return model


def deepctr_run(name: str, parts: tuple, x: list, columns: list, epochs: int) -> dict[str, Any]:
    train, _, test = parts
    model = deepctr_model(name, columns, 0)
    start = time.perf_counter()
    model.fit(x[0], train.label(LABEL), batch_size=1024, epochs=epochs, verbose=0)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    p = model.predict(x[2], batch_size=1024).ravel()
    predict_seconds = time.perf_counter() - start
    return {"train_examples_per_second": len(train) * epochs / train_seconds,
            "predict_rows_per_second": len(test) / predict_seconds,
            "test_auc": roc_auc(test.label(LABEL), p)}


def deepctr_converge(name: str, seed: int, parts: tuple, x: list, columns: list,
                     max_epochs: int, patience: int,
                     params: dict[str, Any]) -> dict[str, Any]:
    """DeepCTR-Torch trained one epoch at a time (its optimiser state carries over), stopped
    early on validation AUC, the best epoch's weights restored."""
    import copy

    train, valid, test = parts
    model = deepctr_model(name, columns, seed, **params)
    best, best_epoch, best_state, curve = -np.inf, 0, None, []
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        model.fit(x[0], train.label(LABEL), batch_size=1024, epochs=1, verbose=0)
        auc = roc_auc(valid.label(LABEL), model.predict(x[1], batch_size=1 << 14).ravel())
        curve.append(round(auc, 5))
        if auc > best:
            best, best_epoch, best_state = auc, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    seconds = time.perf_counter() - start
    return {"model": f"deepctr-{name}", "seed": seed, "params": params,
            "best_epoch": best_epoch, "epochs_run": len(curve), "valid_auc_curve": curve,
            "fit_seconds": round(seconds, 1),
            "valid": metrics(valid, model.predict(x[1], batch_size=1 << 14).ravel()),
            "test": metrics(test, model.predict(x[2], batch_size=1 << 14).ravel())}


def recforge_auto_fields(name: str, seed: int, parts: tuple, threads: int,
                         params: dict[str, Any]) -> dict[str, Any]:
    """`bench_ctr.run_model`'s record for a model on its automatic fields (no ``fields``)."""
    train, valid, test = parts
    model = create_model(name, seed=seed, threads=threads, **params)
    start = time.perf_counter()
    model.fit(train, valid)
    return {"model": name, "seed": seed, "params": params, "fields": "automatic",
            "best_epoch": model.best_epoch_, "epochs_run": len(model.history_),
            "fit_seconds": round(time.perf_counter() - start, 1),
            "valid": metrics(valid, model.predict_proba(valid)),
            "test": metrics(test, model.predict_proba(test))}


def converge(args: argparse.Namespace, parts: tuple, x: list, columns: list) -> dict[str, Any]:
    """Both libraries to convergence (module docstring, ``--converge``), seed by seed."""
    seeds = [int(s) for s in args.seeds.split(",")]
    deepctr_params = json.loads(args.deepctr_params)
    recforge_params = json.loads(args.recforge_params)
    runs = []
    for name in args.models.split(","):
        extra = {"cross_layers": 2} if name == "dcn" else {}
        for seed in seeds:
            if "recforge" in args.libraries:
                params = {**COMMON, **extra, "epochs": args.max_epochs,
                          "patience": args.patience, **recforge_params}
                fit = recforge_auto_fields if args.auto_fields else run_model
                runs.append(fit(name, seed, parts, args.threads, params))
                print(json.dumps({k: runs[-1][k] for k in ("model", "seed", "best_epoch",
                                                            "test")}), flush=True)
            if "deepctr-torch" in args.libraries:
                torch.set_num_threads(args.threads)
                runs.append(deepctr_converge(name, seed, parts, x, columns, args.max_epochs,
                                             args.patience, deepctr_params))
                print(json.dumps({k: runs[-1][k] for k in ("model", "seed", "best_epoch",
                                                            "valid_auc_curve", "test")}),
                      flush=True)
    out = summary(runs)
    print(json.dumps({m: {k: out[m][k] for k in ("valid_auc", "test_auc")} for m in out},
                     indent=1))
    return {"seeds": seeds, "max_epochs": args.max_epochs, "patience": args.patience,
            "deepctr_params": deepctr_params, "recforge_params": recforge_params,
            "summary": out, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--converge", action="store_true",
                        help="train to convergence with early stopping (module docstring)")
    parser.add_argument("--models", default="deepfm,dcn")
    parser.add_argument("--libraries", default="recforge,deepctr-torch")
    parser.add_argument("--auto-fields", action="store_true",
                        help="both libraries on the automatic fields (`deepctr_inputs`; "
                             "recforge: no ``fields``); only with --converge")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--deepctr-params", default="{}",
                        help="JSON: DeepCTR-Torch model arguments (e.g. l2_reg_embedding)")
    parser.add_argument("--recforge-params", default="{}",
                        help="JSON: extra recforge model parameters")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = split(args.data_dir)
    if args.auto_fields and not args.converge:
        parser.error("--auto-fields needs --converge")
    x, columns = deepctr_inputs(parts, args.auto_fields)
    if args.converge:
        record = {"benchmark": "bench_ctr_deepctr --converge", "dataset": "ml-100k",
                  "threads": args.threads, "common": COMMON, "auto_fields": args.auto_fields,
                  "events": [len(p) for p in parts], **converge(args, parts, x, columns)}
        if args.json:
            write_json(args.json, record)
        return
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
