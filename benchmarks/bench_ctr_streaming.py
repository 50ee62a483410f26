"""One epoch of a click model streamed from a Parquet file of synthetic Criteo-like rows:
peak memory and examples per second.

The rows come from `write_criteo_like_parquet` (13 numeric columns as floor(ln(x)^2)
categories, 26 categorical columns with power-law vocabularies, ``min_count`` 10; one row
group per 2^18 rows) and are written once to ``--path`` (kept for later runs). The model
(``--model``, default DeepFM with embedding 16 and MLP 256-128, batch 1024) trains one
epoch on a `ParquetEvents` of the file: row groups in a seeded random order, each chunk
encoded and shuffled on its own, the codec fitted on the first ``--codec-rows`` rows. Peak
memory is the process's maximum resident set size (``ru_maxrss``) over the whole run,
writing excluded (the file is written by a separate process when missing).

    .venv/bin/python benchmarks/bench_ctr_streaming.py --rows 10000000 \
        --path /tmp/criteo_like_10m.parquet --threads 2 \
        --json benchmarks/results/bench_ctr_streaming_10m.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from recforge.data.ctr_formats import ParquetEvents
from recforge.experiments.rundir import write_json
from recforge.models.registry import create_model


def write(path: Path, rows: int) -> float:
    """Write the file in a child process (so its memory is not counted here); seconds."""
    start = time.perf_counter()
    code = ("from recforge.data.synthetic_ctr import write_criteo_like_parquet as w; "
            f"w({str(path)!r}, {rows}, seed=0)")
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--path", type=Path, default=Path("/tmp/criteo_like_10m.parquet"))
    parser.add_argument("--model", default="deepfm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--codec-rows", type=int, default=1 << 20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    written = None
    if not args.path.exists():
        written = write(args.path, args.rows)
    stream = ParquetEvents(args.path, ["label"])
    if len(stream) != args.rows:
        raise SystemExit(f"{args.path} holds {len(stream)} rows, not {args.rows}")
    model = create_model(args.model, epochs=1, threads=args.threads, embedding_dim=16,
                         layers=(256, 128), train_batch_size=1024, codec_rows=args.codec_rows)
    start = time.perf_counter()
    model.fit(stream)
    seconds = time.perf_counter() - start
    epoch = model.history_[0]
    record = {
        "benchmark": "bench_ctr_streaming", "rows": len(stream), "model": args.model,
        "threads": args.threads, "codec_rows": args.codec_rows,
        "fields": len(stream.fields), "write_seconds": written,
        "fit_seconds": round(seconds, 1), "epoch_seconds": epoch["seconds"],
        "examples_per_second": round(len(stream) / epoch["seconds"], 1),
        "loss": epoch["loss"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(record, indent=1))
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
