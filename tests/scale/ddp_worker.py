"""One rank of a data-parallel fit for tests/scale: run by ``torchrun`` (or in-process as one
process), it fits NeuMF-style GMF on a small seeded synthetic set, evaluates full-ranking
NDCG@10 on leave-last-out and writes ``rank<R>.json`` (its weights' digest, the metric, the
epoch history); rank 0 also saves the model to ``<out>/model``.

``python tests/scale/ddp_worker.py OUT EPOCHS [CHECKPOINT_DIR]``
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.splits import leave_last_out
from recforge.data.synthetic import generate
from recforge.evaluation import Evaluator
from recforge.models import create_model
from recforge.nn import distributed

#: the data and model every run uses
DATA = {"n_users": 400, "n_items": 200, "n_interactions": 12_000, "feedback": "implicit",
        "seed": 3}
PARAMS = {"factors": 16, "learning_rate": 0.01, "train_batch_size": 256, "negatives": 2,
          "weight_decay": 0.0, "threads": 1, "seed": 5}


def weights(model: Any) -> dict[str, np.ndarray]:
    """The module's weights as numpy arrays."""
    return {k: v.detach().cpu().numpy() for k, v in model.module_.state_dict().items()}


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the weights (names and bytes, in name order)."""
    sha = hashlib.sha256()
    for name in sorted(arrays):
        sha.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
    return sha.hexdigest()


def run(out: Path, epochs: int, checkpoint_dir: str | None = None) -> dict[str, Any]:
    """Fit, evaluate and write this rank's record (module docstring); the record."""
    shard = distributed.init_from_env("cpu")
    split = leave_last_out(generate(**DATA))
    params = {**PARAMS, "epochs": epochs, "checkpoint_dir": checkpoint_dir,
              "resume": checkpoint_dir is not None}
    model = create_model("gmf", **params).fit(split.train)
    ndcg = Evaluator(split.train, split.test, ["ndcg@10"]).evaluate(model).metrics["NDCG@10"]
    rank, world = (0, 1) if shard is None else (shard.rank, shard.world)
    record = {"rank": rank, "world": world, "ndcg": ndcg, "digest": digest(weights(model)),
              "history": model.history_}
    out.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        model.save(out / "model")
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    distributed.shutdown()
    return record


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
