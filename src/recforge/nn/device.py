"""Where and how a neural model runs: device, mixed precision, CPU threads, determinism.

``device="auto"`` picks CUDA when a GPU is visible, else the CPU. Mixed precision
(``torch.autocast`` in bfloat16 or float16, with a ``GradScaler`` for float16) is a CUDA-only
option; the CPU always trains in float32. On the CPU training is deterministic (same seed,
same thread count: same weights): `runtime` turns on ``torch.use_deterministic_algorithms``
for the duration of a fit. On CUDA it stays off (deterministic CUDA kernels are slower and
some need ``CUBLAS_WORKSPACE_CONFIG``), so GPU runs are not bit-reproducible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

DeviceName = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cpu"``; ``"cuda"`` or ``"cuda:N"``
    (raises when no GPU is visible)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={name!r} but PyTorch sees no CUDA GPU "
                               f"(torch {torch.__version__}); use device='cpu' or 'auto'")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")


@dataclass(frozen=True)
class Amp:
    """Mixed-precision settings: the autocast dtype (None: float32) and loss scaling."""

    dtype: torch.dtype | None
    scale_loss: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for the training forward pass, or a no-op in float32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def resolve_precision(precision: str, device: torch.device) -> Amp:
    """``"auto"``: bfloat16 on a CUDA GPU that supports it, else float16 on CUDA, float32 on
    the CPU. ``"bf16"``/``"fp16"`` need CUDA; ``"fp32"`` turns mixed precision off."""
    if precision not in ("auto", "fp32", *_DTYPES):
        raise ValueError(f"unknown precision {precision!r}; valid: auto, fp32, bf16, fp16")
    if device.type != "cuda":
        if precision in _DTYPES:
            raise ValueError(f"precision={precision!r} is for CUDA only (mixed precision is "
                             f"not used on {device.type}); use 'fp32' or 'auto'")
        return Amp(None, False)
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp32":
        return Amp(None, False)
    return Amp(_DTYPES[precision], precision == "fp16")


@contextlib.contextmanager
def threads_limit(threads: int) -> Iterator[None]:
    """Inside the block PyTorch uses ``threads`` intra-op CPU threads (0: leave its setting)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def runtime(device: torch.device, threads: int) -> Iterator[None]:
    """`threads_limit` and, on the CPU, deterministic algorithms inside the block (the
    previous setting is restored afterwards)."""
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    with threads_limit(threads):
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def rng_devices(device: torch.device) -> list[int]:
    """CUDA devices whose random state `torch.random.fork_rng` should fork."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]
