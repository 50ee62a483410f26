"""Data-parallel training under torchrun (`recforge.nn.distributed`): two gloo processes on
the CPU against one, resumption with another number of processes, `recforge train --nproc`.

The torchrun runs are real: separate processes joined by the gloo backend (each launch costs
a few seconds of process start and imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recforge.cli import main
from recforge.models.base import Recommender

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker

WORKER = Path(__file__).parent / "ddp_worker.py"
EPOCHS = 3


def torchrun(nproc: int, *args: str, timeout: float = 240) -> None:
    """Run the worker as ``nproc`` ranks on this machine (a rendezvous on a free port)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0",
               str(WORKER), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two gloo ranks fitting ``EPOCHS`` epochs with checkpoints: each rank's record."""
    out = tmp_path_factory.mktemp("two")
    torchrun(2, str(out), str(EPOCHS), str(out / "ckpt"))
    return {"out": out, **{f"rank{r}": json.loads((out / f"rank{r}.json").read_text())
                           for r in (0, 1)}}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same fit in this process (no torchrun)."""
    out = tmp_path_factory.mktemp("one")
    return {"out": out, **ddp_worker.run(out, EPOCHS)}


def test_ranks_hold_identical_weights_and_rank0_alone_saves(two_ranks: dict[str, Any]) -> None:
    zero, one = two_ranks["rank0"], two_ranks["rank1"]
    assert (zero["world"], one["world"]) == (2, 2)
    assert zero["digest"] == one["digest"]
    def losses(record: dict[str, Any]) -> list[tuple[float, int]]:
        return [(h["loss"], h["samples"]) for h in record["history"]]

    assert losses(zero) == losses(one)  # the loss is averaged over both ranks' shards
    saved = Recommender.load(two_ranks["out"] / "model")
    assert ddp_worker.digest(ddp_worker.weights(saved)) == zero["digest"]
    assert sorted(p.name for p in two_ranks["out"].iterdir()) == \
        ["ckpt", "model", "rank0.json", "rank1.json"]


def test_two_ranks_train_as_one_process(two_ranks: dict[str, Any],
                                        one_process: dict[str, Any]) -> None:
    """Each DDP step averages the two half-batches' gradients: the step of one process on
    the whole batch, up to summation order, so weights and quality agree closely."""
    zero = two_ranks["rank0"]
    assert [h["samples"] for h in zero["history"]] == \
        [h["samples"] for h in one_process["history"]]
    np.testing.assert_allclose([h["loss"] for h in zero["history"]],
                               [h["loss"] for h in one_process["history"]], rtol=1e-4)
    two = ddp_worker.weights(Recommender.load(two_ranks["out"] / "model"))
    one = ddp_worker.weights(Recommender.load(one_process["out"] / "model"))
    for name in one:
        np.testing.assert_allclose(two[name], one[name], atol=1e-4, err_msg=name)
    assert zero["ndcg"] == pytest.approx(one_process["ndcg"], abs=0.005)
    assert one_process["history"][-1]["loss"] < 0.8 * one_process["history"][0]["loss"]


def test_resume_with_another_number_of_processes(two_ranks: dict[str, Any],
                                                 one_process: dict[str, Any],
                                                 tmp_path: Path) -> None:
    """A checkpoint written by two ranks resumes in one process: the first epochs come from
    the checkpoint, the next continues from its weights and optimiser state."""
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(two_ranks["out"] / "ckpt", ckpt)
    resumed = ddp_worker.run(tmp_path / "out", EPOCHS + 1, str(ckpt))
    assert resumed["history"][:EPOCHS] == two_ranks["rank0"]["history"]
    assert len(resumed["history"]) == EPOCHS + 1
    straight = ddp_worker.run(tmp_path / "straight", EPOCHS + 1)
    assert resumed["history"][-1]["loss"] == pytest.approx(straight["history"][-1]["loss"],
                                                           rel=1e-4)
    assert resumed["ndcg"] == pytest.approx(straight["ndcg"], abs=0.005)


def test_cli_train_nproc_saves_one_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "log.csv"
    rng = np.random.default_rng(0)
    rows = sorted({(int(u), int(i)) for u, i in zip(rng.integers(1, 40, 600),
                                                    rng.integers(1, 30, 600))})
    data.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    out = tmp_path / "model"
    code = main(["train", "--dataset", str(data), "--columns", "user=user,item=item",
                 "--model", "gmf", "--param", "epochs=2", "--param", "threads=1",
                 "--nproc", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    model = Recommender.load(out)
    assert model.history_ and len(model.history_) == 2
    assert f"wrote {out} (2 processes per machine)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "ials", "--nproc", "2"], "ials is not a PyTorch model"),
    (["--model", "gmf", "--nnodes", "2"], "--nnodes needs --rdzv-endpoint"),
    (["--model", "gmf", "--nproc", "0"], "argument --nproc"),
])
def test_cli_distributed_bad_input_is_one_line(argv: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--dataset", "synthetic", "--out", str(tmp_path / "m"), *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err and "\n" not in err and "Traceback" not in captured.err
    assert not (tmp_path / "m").exists()


def test_other_ranks_are_quiet_and_use_their_gpu() -> None:
    from recforge.nn.distributed import Shard, rank_params

    params = {"device": "cpu", "verbose": True, "log_file": "log.jsonl"}
    assert rank_params(params, Shard(0, 2, 0)) == params
    assert rank_params(params, Shard(1, 2, 1)) == {"device": "cpu", "verbose": False,
                                                    "log_file": None}
    assert rank_params(params, None) is params


def test_shard_take_gives_every_rank_the_same_count() -> None:
    import torch

    from recforge.nn.distributed import Shard

    batch = {"user": torch.arange(5), "item": torch.arange(5) * 10}
    parts = [Shard(r, 2, r).take(batch) for r in (0, 1)]
    assert parts[0]["user"].tolist() == [0, 2, 4] and parts[1]["user"].tolist() == [1, 3, 0]
    assert parts[1]["item"].tolist() == [10, 30, 0]
    everyone = torch.cat([p["user"] for p in parts]).tolist()
    assert set(everyone) == set(range(5))


def test_torchrun_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from recforge.errors import InputError
    from recforge.nn.distributed import env_shard

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert env_shard() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(InputError, match="RANK=5 is not in 0..WORLD_SIZE-1"):
        env_shard()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(InputError, match="must be integers"):
        env_shard()
