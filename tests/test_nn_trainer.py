"""The neural training core: schedules, device and precision selection, batching, the
optimiser step, checkpoint/resume, per-epoch JSON logs, determinism, torch.compile."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recforge.data.sampling import NegativeSampler
from recforge.data.splits import leave_last_out
from recforge.errors import InputError, ParameterError
from recforge.evaluation import early_stopping
from recforge.models import GMF, DotMF, NeuMF
from recforge.nn import TrainingConfig, lr_factor, resolve_device, resolve_precision
from recforge.nn.batching import pairwise_examples, pointwise_examples, shuffled_batches
from recforge.nn.checkpoint import STATE_FILE, TENSORS_FILE, load_checkpoint
from recforge.nn.device import runtime
from recforge.nn.trainer import Trainer, make_optimizer
from recforge.testing import contract_data

TINY = {"factors": 4, "train_batch_size": 256}


# ---------------------------------------------------------------------- schedules
def test_constant_and_step_schedules() -> None:
    assert lr_factor("constant", 7.3, 10) == 1.0
    assert lr_factor("step", 2.9, 10, step_epochs=3, gamma=0.5) == 1.0
    assert lr_factor("step", 3.0, 10, step_epochs=3, gamma=0.5) == 0.5
    assert lr_factor("step", 6.5, 10, step_epochs=3, gamma=0.5) == 0.25


def test_cosine_schedule_runs_from_one_to_zero() -> None:
    assert lr_factor("cosine", 0.0, 10) == 1.0
    assert lr_factor("cosine", 5.0, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 10.0, 10) == pytest.approx(0.0, abs=1e-12)


def test_linear_warmup_scales_any_schedule() -> None:
    assert lr_factor("constant", 1.0, 10, warmup_epochs=2) == pytest.approx(0.5)
    assert lr_factor("constant", 2.0, 10, warmup_epochs=2) == 1.0
    assert 0 < lr_factor("constant", 0.0, 10, warmup_epochs=2) < 0.01
    cosine = lr_factor("cosine", 1.0, 10)
    assert lr_factor("cosine", 1.0, 10, warmup_epochs=4) == pytest.approx(cosine / 4)


@pytest.mark.parametrize("bad", [{"schedule": "linear"}, {"warmup_epochs": -1},
                                 {"lr_step_epochs": 0}, {"lr_gamma": 0.0},
                                 {"optimizer": "adagrad"}, {"loss": "mse"},
                                 {"learning_rate": 0.0}, {"train_batch_size": 0},
                                 {"clip_norm": -1.0}, {"negatives": 0}, {"momentum": 1.0},
                                 {"chunk_rows": 0}, {"chunk_rows": 2.5}])
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        TrainingConfig(**bad)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_chunk_rows_must_be_a_positive_count_or_none(bad: object) -> None:
    with pytest.raises(ParameterError, match="^chunk_rows: "):
        GMF(chunk_rows=bad)
    assert GMF().chunk_rows is None and GMF(chunk_rows=10).chunk_rows == 10
    assert "chunk_rows" in GMF.param_names()


def test_unknown_training_parameter_raises() -> None:
    with pytest.raises(TypeError, match=r"^learning_rat: GMF has no parameter 'learning_rat' "
                                         r"\(did you mean 'learning_rate'\?\)"):
        GMF(learning_rat=0.1)


# ---------------------------------------------------------------------- device
def test_device_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_mixed_precision_is_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu).dtype is None
    with pytest.raises(ValueError, match="CUDA only"):
        resolve_precision("bf16", cpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", cuda).dtype == torch.bfloat16
    assert not resolve_precision("bf16", cuda).scale_loss
    fp16 = resolve_precision("fp16", cuda)
    assert fp16.dtype == torch.float16 and fp16.scale_loss
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", cuda).dtype == torch.float16
    assert resolve_precision("fp32", cuda).dtype is None
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", cuda)


def test_runtime_sets_and_restores_threads_and_determinism() -> None:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    with runtime(torch.device("cpu"), 1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_fit_leaves_global_torch_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    GMF(epochs=1, threads=1, **TINY).fit(contract_data())
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU in this environment")
def test_cuda_training_with_mixed_precision() -> None:
    data = contract_data()
    model = NeuMF(factors=4, layers=(8, 4), epochs=2, pretrain=False, device="cuda",
                  precision="fp16").fit(data)
    assert next(model.module_.parameters()).is_cuda
    assert np.isfinite(model.score(np.arange(5))).all()


# ---------------------------------------------------------------------- batching
@pytest.fixture(scope="module")
def sampler() -> NegativeSampler:
    return NegativeSampler(contract_data().binary_csr)


def test_pointwise_examples(sampler: NegativeSampler) -> None:
    ex = pointwise_examples(sampler, np.random.default_rng(0), negatives=3)
    n_pos = len(sampler.items)
    assert {k: len(v) for k, v in ex.items()} == dict.fromkeys(("user", "item", "label"),
                                                                4 * n_pos)
    assert ex["label"].sum().item() == n_pos
    positive = sampler.is_positive(ex["user"].numpy(), ex["item"].numpy())
    assert np.array_equal(positive, ex["label"].numpy() == 1)
    assert np.array_equal(ex["user"][n_pos:].numpy(), np.repeat(sampler.users, 3))


def test_pairwise_examples(sampler: NegativeSampler) -> None:
    ex = pairwise_examples(sampler, np.random.default_rng(0), negatives=2)
    assert len(ex["user"]) == 2 * len(sampler.items)
    assert sampler.is_positive(ex["user"].numpy(), ex["positive"].numpy()).all()
    assert not sampler.is_positive(ex["user"].numpy(), ex["negative"].numpy()).any()


def test_shuffled_batches_cover_every_example_once() -> None:
    examples = {"a": torch.arange(10), "b": torch.arange(10) * 2}
    gen = torch.Generator().manual_seed(0)
    batches = list(shuffled_batches(examples, 4, gen, torch.device("cpu")))
    assert [len(b["a"]) for b in batches] == [4, 4, 2]
    seen = torch.cat([b["a"] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert torch.equal(torch.cat([b["b"] for b in batches]), seen * 2)
    again = list(shuffled_batches(examples, 4, torch.Generator().manual_seed(0),
                                  torch.device("cpu")))
    assert torch.equal(torch.cat([b["a"] for b in again]), seen)
    with pytest.raises(ValueError, match="differ in length"):
        next(shuffled_batches({"a": torch.arange(3), "b": torch.arange(4)}, 2, gen,
                              torch.device("cpu")))


# ---------------------------------------------------------------------- optimiser step
class _Line(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


def _regression(**config: object) -> tuple[Trainer, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    examples = {"x": x, "y": x @ torch.tensor([2.0, -1.0])}
    module = _Line()
    return Trainer(module, TrainingConfig(**config), torch.device("cpu")), examples


def _mse(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return ((module(batch["x"]) - batch["y"]) ** 2).mean()


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_trainer_fits_a_regression(optimizer: str) -> None:
    trainer, examples = _regression(optimizer=optimizer, learning_rate=0.05, train_batch_size=8,
                                    epochs=60, momentum=0.5 if optimizer == "sgd" else 0.0)
    losses = [trainer.run_epoch(e, examples, _mse)["loss"] for e in range(60)]
    assert losses[-1] < 1e-3 < losses[0]
    assert torch.allclose(trainer.module.w, torch.tensor([2.0, -1.0]), atol=0.05)


def test_make_optimizer_types() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert type(make_optimizer(TrainingConfig(optimizer="adamw"), params)) is torch.optim.AdamW
    sgd = make_optimizer(TrainingConfig(optimizer="sgd", momentum=0.9), params)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.9


def test_gradient_clipping_bounds_the_update() -> None:
    trainer, examples = _regression(optimizer="sgd", learning_rate=1.0, train_batch_size=64,
                                    clip_norm=0.1)
    trainer.run_epoch(0, examples, _mse)
    assert torch.linalg.norm(trainer.module.w.grad) <= 0.1 + 1e-6
    assert torch.linalg.norm(trainer.module.w.detach()).item() == pytest.approx(0.1, rel=1e-5)


def test_weight_decay_shrinks_weights_without_a_gradient() -> None:
    trainer, examples = _regression(optimizer="sgd", learning_rate=0.1, weight_decay=0.5,
                                    train_batch_size=64)
    with torch.no_grad():
        trainer.module.w.fill_(1.0)
    trainer.run_epoch(0, examples, lambda m, b: (m.w * 0).sum())
    assert torch.allclose(trainer.module.w, torch.full((2,), 0.95))


def test_schedule_sets_the_learning_rate_per_step() -> None:
    trainer, examples = _regression(learning_rate=0.1, train_batch_size=16, epochs=4,
                                    schedule="cosine")
    trainer.run_epoch(1, examples, _mse)  # 4 steps; the last at progress 1.75
    expected = 0.1 * lr_factor("cosine", 1.75, 4)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_epochs_run_on_the_configured_threads_whatever_ran_before() -> None:
    """numba's OpenMP layer resets the shared OpenMP thread count after a parallel kernel
    (e.g. top-k during validation); every epoch must set it back."""
    trainer, examples = _regression(train_batch_size=64, threads=1)
    seen = []

    def loss(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return _mse(module, batch)

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trainer.run_epoch(0, examples, loss)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert seen == [1]


def test_divergence_raises() -> None:
    trainer, examples = _regression(train_batch_size=64)
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        trainer.run_epoch(0, examples, lambda m, b: _mse(m, b) * float("nan"))


def test_history_reports_samples_per_second() -> None:
    model = GMF(epochs=2, negatives=3, **TINY).fit(contract_data())
    n_pos = model.seen_.nnz
    for record in model.history_:
        assert record["samples"] == 4 * n_pos
        assert record["samples_per_second"] > 0 and record["seconds"] > 0


# ---------------------------------------------------------------------- determinism
def _weights(model: object) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.module_.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_differs() -> None:
    data = contract_data()
    a = _weights(NeuMF(factors=4, layers=(8, 4), epochs=2, seed=5, train_batch_size=128).fit(data))
    b = _weights(NeuMF(factors=4, layers=(8, 4), epochs=2, seed=5, train_batch_size=128).fit(data))
    c = _weights(NeuMF(factors=4, layers=(8, 4), epochs=2, seed=6, train_batch_size=128).fit(data))
    assert _same(a, b)
    assert not _same(a, c)


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_streamed_epochs_are_deterministic_by_seed(loss: str) -> None:
    data = contract_data()

    def fit(seed: int, **params: object) -> GMF:
        return GMF(epochs=2, loss=loss, negatives=2, seed=seed, **TINY, **params).fit(data)

    a, b, c = (fit(seed, chunk_rows=40) for seed in (5, 5, 6))
    assert _same(_weights(a), _weights(b)) and not _same(_weights(a), _weights(c))
    per_positive = 3 if loss == "bce" else 2
    assert [h["samples"] for h in a.history_] == [per_positive * data.binary_csr.nnz] * 2
    # other chunks, other epochs; the in-memory epoch (chunk_rows=None) is a third one
    assert not _same(_weights(a), _weights(fit(5, chunk_rows=41)))
    assert not _same(_weights(a), _weights(fit(5)))


def test_a_model_with_its_own_epoch_refuses_chunk_rows() -> None:
    class OwnEpoch(GMF):
        def _epoch_examples(self, sampler: NegativeSampler, rng: np.random.Generator):
            return super()._epoch_examples(sampler, rng)

    assert GMF.streams_epochs and not OwnEpoch.streams_epochs
    assert OwnEpoch(epochs=1, **TINY).fit(contract_data()).history_
    with pytest.raises(InputError, match="^OwnEpoch builds its epoch in memory; chunk_rows "
                                         "must be None, not 50$"):
        OwnEpoch(chunk_rows=50, epochs=1, **TINY).fit(contract_data())


def test_in_memory_epoch_is_the_chunk_builder_on_every_positive() -> None:
    data = contract_data()
    model = GMF(negatives=3, **TINY)
    sampler = NegativeSampler(data.binary_csr)
    whole = model._epoch_examples(sampler, np.random.default_rng(4))
    again = pointwise_examples(sampler, np.random.default_rng(4), 3)
    assert whole.keys() == again.keys() and all(torch.equal(whole[k], again[k]) for k in whole)


# ---------------------------------------------------------------------- checkpoints
class _Interrupted(Exception):
    """Stands for a crash or a killed job in the middle of training."""


@pytest.fixture(scope="module")
def split():
    return leave_last_out(contract_data())


@pytest.mark.parametrize("with_valid", [False, True], ids=["no-valid", "early-stopping"])
def test_resume_reproduces_uninterrupted_training(tmp_path: Path, split, with_valid: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    valid = early_stopping(split.train, split.test) if with_valid else None
    params = {"epochs": 5, "patience": 10, "schedule": "cosine", "seed": 2, **TINY}
    straight = GMF(**params).fit(split.train, valid)
    folder = tmp_path / "ckpt"
    run_epoch = Trainer.run_epoch

    def crash_in_epoch_4(self: Trainer, epoch: int, *args: object) -> dict[str, float]:
        if epoch == 3:
            raise _Interrupted
        return run_epoch(self, epoch, *args)

    monkeypatch.setattr(Trainer, "run_epoch", crash_in_epoch_4)
    with pytest.raises(_Interrupted):
        GMF(**params, checkpoint_dir=str(folder)).fit(split.train, valid)
    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)
    assert (folder / "checkpoint" / TENSORS_FILE).is_file()
    assert (folder / "checkpoint" / STATE_FILE).is_file()

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr("pickle.loads", no_unpickling)
    resumed = GMF(**params, checkpoint_dir=str(folder), resume=True).fit(split.train, valid)
    assert _same(_weights(straight), _weights(resumed))
    assert [h["loss"] for h in straight.history_] == [h["loss"] for h in resumed.history_]
    assert resumed.best_epoch_ == straight.best_epoch_


def test_checkpoint_holds_optimizer_and_rng_state(tmp_path: Path) -> None:
    GMF(epochs=2, checkpoint_dir=str(tmp_path), **TINY).fit(contract_data())
    tensors, state = load_checkpoint(tmp_path / "checkpoint")
    assert any(k.startswith("optim/") and k.endswith("exp_avg") for k in tensors)
    assert {"rng/shuffle", "rng/torch"} <= set(tensors)
    assert len(state["loop"]["history"]) == 2 and state["model"] == "gmf"
    assert "bit_generator" in state["numpy_rng"]


def test_checkpoint_every_n_epochs(tmp_path: Path) -> None:
    GMF(epochs=3, checkpoint_dir=str(tmp_path), checkpoint_every=2, **TINY).fit(contract_data())
    _, state = load_checkpoint(tmp_path / "checkpoint")
    assert len(state["loop"]["history"]) == 2


def test_resume_refuses_other_parameters_or_data(tmp_path: Path) -> None:
    data = contract_data()
    GMF(epochs=1, checkpoint_dir=str(tmp_path), **TINY).fit(data)
    with pytest.raises(ValueError, match="learning_rate"):
        GMF(epochs=2, learning_rate=0.5, checkpoint_dir=str(tmp_path), resume=True,
            **TINY).fit(data)
    with pytest.raises(ValueError, match="on data"):
        GMF(epochs=2, checkpoint_dir=str(tmp_path), resume=True,
            **TINY).fit(contract_data(seed=3))
    with pytest.raises(ValueError, match="written by 'gmf'"):
        DotMF(epochs=2, checkpoint_dir=str(tmp_path), resume=True, **TINY).fit(data)


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    data = contract_data()
    fresh = GMF(epochs=2, checkpoint_dir=str(tmp_path / "none"), resume=True, **TINY).fit(data)
    plain = GMF(epochs=2, **TINY).fit(data)
    assert _same(_weights(fresh), _weights(plain))


def test_neumf_resume_reuses_pretrained_checkpoints(tmp_path: Path) -> None:
    data = contract_data()
    params = {"factors": 4, "layers": (8, 4), "train_batch_size": 256, "gmf_params": {"epochs": 2},
              "mlp_params": {"epochs": 2}}
    straight = NeuMF(epochs=3, **params).fit(data)
    NeuMF(epochs=1, checkpoint_dir=str(tmp_path), **params).fit(data)
    assert {p.name for p in tmp_path.iterdir()} >= {"gmf", "mlp", "checkpoint"}
    resumed = NeuMF(epochs=3, checkpoint_dir=str(tmp_path), resume=True, **params).fit(data)
    assert _same(_weights(straight), _weights(resumed))
    assert [len(v) for v in resumed.pretrain_history_.values()] == [2, 2]


# ---------------------------------------------------------------------- logging
def test_one_json_line_per_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "train.jsonl"
    split = leave_last_out(contract_data())
    GMF(epochs=3, patience=10, log_file=str(log), verbose=True, **TINY).fit(
        split.train, early_stopping(split.train, split.test))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    for record in lines:
        assert {"model", "loss", "ndcg@10", "seconds", "samples_per_second"} <= set(record)
        assert math.isfinite(record["loss"])
    err = [json.loads(line) for line in capsys.readouterr().err.splitlines()
           if line.startswith("{")]
    assert err == lines


# ---------------------------------------------------------------------- torch.compile
def test_compile_wraps_the_training_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast check of the wiring: dynamo traces the module (eager backend, no code
    generation) and training through the wrapper updates the shared parameters."""
    real_compile = torch.compile
    calls = []

    def eager_compile(module: torch.nn.Module, **kwargs: object) -> torch.nn.Module:
        calls.append(module)
        return real_compile(module, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    data = contract_data()
    compiled = GMF(epochs=2, compile=True, **TINY).fit(data)
    plain = GMF(epochs=2, **TINY).fit(data)
    assert len(calls) == 1 and calls[0] is compiled.module_
    users = np.arange(data.n_users)
    assert np.allclose(compiled.score(users), plain.score(users), atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RECFORGE_TEST_INDUCTOR") != "1",
                    reason="a cold inductor compile takes about 2 minutes on 2 busy cores; "
                           "set RECFORGE_TEST_INDUCTOR=1 to run it")
def test_compile_with_inductor_runs() -> None:
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.exc import InductorError

    data = contract_data()
    try:
        model = GMF(epochs=1, train_batch_size=4096, compile=True, factors=4).fit(data)
    except (BackendCompilerFailed, InductorError) as exc:  # e.g. no usable C++ compiler
        pytest.skip(f"torch.compile cannot compile on this machine: {exc}")
    plain = GMF(epochs=1, train_batch_size=4096, factors=4).fit(data)
    assert np.allclose(model.score([0, 1]), plain.score([0, 1]), atol=1e-5)
