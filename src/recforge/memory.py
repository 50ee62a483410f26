"""Memory needs stated before a model allocates, and refused when the machine cannot hold them.

A model whose training state grows with the data in a way that can exceed a machine (iALS's
factor and confidence matrices, EASE's dense item x item matrix, the neighbourhood models'
similarity lists) computes its need in bytes from the data's shape (`ials_need`,
`ease_need`, `knn_need`) and calls `check_memory` before it allocates anything large. The
bound is the memory the operating system says is available now (``psutil``, else
``MemAvailable`` in ``/proc/meminfo``), lowered by ``RECFORGE_MEMORY_LIMIT`` when set (bytes,
or a number with ``K``, ``M``, ``G`` or ``T``: ``12G``) and by a bound the caller passes.
Over it, `InsufficientMemoryError` (an `InputError` and a ``MemoryError``) says in one line
what needs how much, what there is, and what to change (fewer factors, a sparse
approximation, pruning), so the command line reports it as bad input (exit 2) instead of the
process being killed half-way through.

The figures are estimates of the largest arrays (to a few per cent), not of every
temporary; they ignore memory already held (the training data is loaded by then and is not
counted in the available memory).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from recforge.errors import InputError

#: environment variable that caps the memory a model may plan to use
LIMIT_VAR = "RECFORGE_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_INDEX = 4  # int32 sparse indices
_VALUE = 4  # float32 values


class InsufficientMemoryError(InputError, MemoryError):
    """A model would need more memory than the machine (or the configured limit) offers."""


@dataclass(frozen=True)
class Need:
    """Bytes a model plans to allocate and what they are (``detail``, for the message)."""

    bytes: int
    detail: str


def gib(n: float) -> str:
    """``n`` bytes as GiB with one decimal (``"9.3 GiB"``; small sizes in MiB)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**29 else f"{n / 2**20:.1f} MiB"


def parse_size(text: str) -> int:
    """``"12G"``, ``"512M"``, ``"1.5T"`` or a number of bytes, as bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise InputError(f"{LIMIT_VAR}={text!r}: expected bytes or a size like 12G or 512M")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def available_memory() -> int | None:
    """Bytes the operating system can give now without swapping (None when unknown)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_bound(limit: int | None = None) -> tuple[int | None, str]:
    """(the smallest of the available memory, ``RECFORGE_MEMORY_LIMIT`` and ``limit``, where
    it comes from); None when none is known."""
    bounds: list[tuple[int, str]] = []
    available = available_memory()
    if available is not None:
        bounds.append((available, "available"))
    configured = os.environ.get(LIMIT_VAR)
    if configured:
        bounds.append((parse_size(configured), f"the limit {LIMIT_VAR}={configured}"))
    if limit is not None:
        bounds.append((int(limit), "the machine's memory"))
    if not bounds:
        return None, "unknown"
    return min(bounds)


def check_memory(model: str, need: Need, suggestion: str, limit: int | None = None) -> None:
    """Return if ``need`` fits in `memory_bound`; else `InsufficientMemoryError` naming the
    model, its need and the bound, with ``suggestion`` (what to change)."""
    bound, source = memory_bound(limit)
    if bound is None or need.bytes <= bound:
        return
    raise InsufficientMemoryError(
        f"{model} needs about {gib(need.bytes)} ({need.detail}) but {gib(bound)} is "
        f"{'available' if source == 'available' else f'allowed by {source}'}; {suggestion}")


def ials_need(n_users: int, n_items: int, nnz: int, factors: int) -> Need:
    """iALS (`recforge.models.factorization.ials`): float32 user and item factors, the
    confidence values of the user x item matrix (its indices are shared with the data), the
    two temporaries that compute them, and its item x user transpose (values, indices, row
    pointers)."""
    factor_bytes = (n_users + n_items) * factors * _VALUE
    confidence = 3 * nnz * _VALUE + nnz * (_VALUE + _INDEX) + (n_items + 1) * 8
    return Need(factor_bytes + confidence,
                f"{n_users:,} + {n_items:,} factor rows x {factors} float32 and two "
                f"{nnz:,}-entry confidence matrices")


def ease_need(n_items: int, itemsize: int, block_rows: int = 2048) -> Need:
    """EASE (`recforge.models.neighbours.ease`): the dense ``n_items x n_items`` Gram matrix
    inverted in place, the ``block_rows x n_items`` temporary of its symmetrisation, and the
    float32 copy ``B`` when solved in float64."""
    square = n_items * n_items
    extra = square * _VALUE if itemsize != _VALUE else 0
    block = min(block_rows, n_items) * n_items * itemsize
    return Need(square * itemsize + block + extra,
                f"a dense {n_items:,} x {n_items:,} matrix of {itemsize}-byte floats"
                + (" and its float32 copy" if extra else ""))


def knn_need(n_rows: int, neighbours: int, copies: int, block_bytes: int) -> Need:
    """A neighbourhood model (`recforge.models.neighbours.knn`): ``n_rows`` similarity rows
    of at most ``neighbours`` entries (int32 index, float32 value), held ``copies`` times
    (the pruned pieces, the assembled matrix, a transposed copy for scoring), plus the dense
    similarity block: at most ``block_bytes``, at most two float32 ``n_rows x n_rows``."""
    entries = n_rows * min(neighbours, max(n_rows - 1, 0))
    block = min(block_bytes, 2 * n_rows * n_rows * _VALUE)
    return Need(entries * (_INDEX + _VALUE) * copies + (n_rows + 1) * 8 * copies + block,
                f"{n_rows:,} rows x {min(neighbours, max(n_rows - 1, 0)):,} neighbours")
