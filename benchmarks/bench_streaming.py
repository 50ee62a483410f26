"""Peak memory, time and throughput of one BPR epoch streamed from a Parquet file.

The log is the synthetic implicit set of 10M interactions (100,000 users x 50,000 items,
seed 0), written by `recforge.data.synthetic.write_parquet` in row groups of 10,000 users
(in a child process, so its memory is not counted). The measured process then

1. scans the file (`ParquetInteractions`: id maps and the positives matrix, record batch by
   record batch, ``--chunk-rows`` rows at a time),
2. builds the shared `NegativeSampler` on the positives,
3. trains a dot-product MF (``NCFModule(head="dot")``, ``--factors``) for one epoch with the
   shared `Trainer` and the BPR loss on `pair_batches` (row groups in a random order, each
   chunk shuffled, ``--negatives`` uniform negatives per interaction, batches of
   ``--batch-size``), converted batch by batch (`tensor_batches`).

With ``--fit gmf`` or ``--fit dot-mf`` steps 2 and 3 are the model's own `fit` instead:
``DotMF``/``GMF(loss="bpr", epochs=1, ...)`` fitted on the `ParquetInteractions`, which
builds the sampler on its positives and streams the epoch from the file's row groups in a
seeded random order (`recforge.models.neural.torch_base`); the learning rate, factors,
batch size and negatives are the ones above.

Peak memory is the process's maximum resident set size (``getrusage``), which includes the
Python interpreter, numpy, PyTorch and the model's parameters and Adam state. The CPU time
and load average are recorded so that a throughput measured on a busy machine can be told
apart.

    .venv/bin/python benchmarks/bench_streaming.py \
        --json benchmarks/results/bench_streaming_10m.json
    .venv/bin/python benchmarks/bench_streaming.py --fit dot-mf --threads 1 \
        --json benchmarks/results/bench_streaming_10m_fit.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.data.sampling import NegativeSampler
from recforge.data.streaming import ParquetInteractions, pair_batches
from recforge.data.synthetic import write_parquet
from recforge.experiments.rundir import write_json
from recforge.models.neural.ncf import GMF, DotMF, NCFModule
from recforge.nn.batching import tensor_batches
from recforge.nn.trainer import Trainer, TrainingConfig, bpr_loss

DATA = {"n_users": 100_000, "n_items": 50_000, "n_interactions": 10_000_000,
        "feedback": "implicit", "seed": 0}
ROW_GROUP_USERS = 10_000
#: the models whose own `fit` ``--fit`` runs
FIT_MODELS = {"gmf": GMF, "dot-mf": DotMF}


def peak_rss_mb() -> float:
    """The maximum resident set size of this process so far, in MiB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def streamed_epoch(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Scan, sampler, one streamed BPR epoch: timings and memory after each step."""
    record: dict[str, Any] = {"rss_mb_after_imports": round(current_rss_mb(), 1)}
    start = time.perf_counter()
    source = ParquetInteractions(path, chunk_rows=args.chunk_rows)
    record["scan_seconds"] = round(time.perf_counter() - start, 2)
    sampler = NegativeSampler(source.positives)
    record["rss_mb_after_scan_and_sampler"] = round(current_rss_mb(), 1)
    torch.manual_seed(0)
    module = NCFModule(source.n_users, source.n_items, "dot", factors=args.factors)
    config = TrainingConfig(epochs=1, train_batch_size=args.batch_size, learning_rate=0.001,
                            threads=args.threads, device="cpu")
    trainer = Trainer(module, config, torch.device("cpu"))
    rng = np.random.default_rng(0)
    batches = pair_batches(source.chunks(rng), sampler, args.batch_size, rng, args.negatives)
    epoch = trainer.run_batches(0, tensor_batches(batches, torch.device("cpu")),
                                len(source) * args.negatives, bpr_loss)
    record |= {"data": repr(source), "epoch": epoch,
               "epoch_seconds": round(time.perf_counter() - start - record["scan_seconds"], 1),
               "total_seconds": round(time.perf_counter() - start, 1),
               "cpu_seconds": round(time.process_time(), 1),
               "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
               "peak_rss_mb": round(peak_rss_mb(), 1)}
    return record


def model_fit(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Scan, then one epoch of the model's own `fit` streamed from the file."""
    record: dict[str, Any] = {"rss_mb_after_imports": round(current_rss_mb(), 1)}
    start = time.perf_counter()
    source = ParquetInteractions(path, chunk_rows=args.chunk_rows)
    record["scan_seconds"] = round(time.perf_counter() - start, 2)
    record["rss_mb_after_scan"] = round(current_rss_mb(), 1)
    model = FIT_MODELS[args.fit](factors=args.factors, loss="bpr", negatives=args.negatives,
                                 epochs=1, train_batch_size=args.batch_size,
                                 learning_rate=0.001, threads=args.threads, device="cpu",
                                 seed=0)
    model.fit(source)
    record |= {"data": repr(source), "model": repr(model), "epoch": model.history_[0],
               "fit_seconds": round(time.perf_counter() - start - record["scan_seconds"], 1),
               "total_seconds": round(time.perf_counter() - start, 1),
               "cpu_seconds": round(time.process_time(), 1),
               "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
               "peak_rss_mb": round(peak_rss_mb(), 1)}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parquet", type=Path, default=Path("/tmp/recforge-stream-10m.parquet"))
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-rows", type=int, default=1 << 20)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit", choices=sorted(FIT_MODELS), default=None,
                        help="run this model's own fit streamed from the file")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.generate_only:
        write_parquet(args.parquet, chunk_users=ROW_GROUP_USERS, **DATA)
        return
    generated = None
    if not args.parquet.is_file():
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--generate-only", "--parquet",
                        str(args.parquet)], check=True)
        generated = round(time.perf_counter() - start, 1)
    record = {"benchmark": "bench_streaming", "synthetic": DATA,
              "row_group_users": ROW_GROUP_USERS, "generate_seconds": generated,
              "options": {k: v for k, v in vars(args).items()
                          if k in ("chunk_rows", "batch_size", "negatives", "factors",
                                   "threads", "fit")},
              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "cpus": os.cpu_count()},
              **(model_fit if args.fit else streamed_epoch)(args.parquet, args)}
    print(json.dumps(record, indent=2))
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
