"""Training checkpoints that load without unpickling.

A checkpoint is a folder with ``tensors.safetensors`` (weights, optimiser moments, random
generator states, the best epoch's weights) and ``state.json`` (epoch loop progress, the
optimiser's hyperparameters, the numpy generator state, the model's parameters). It is
written as one unit (`recforge.io.atomic_dir`): a crash mid-write leaves the previous
checkpoint intact, and a folder recforge did not write is never replaced.
`load_checkpoint` reads it with ``safetensors`` and ``json`` only, after checking the
files' sums in the folder's marker. Under ``torchrun`` (`recforge.nn.distributed`) rank 0
alone writes and every rank waits for it at a barrier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from recforge.errors import CorruptFileError
from recforge.io import MissingFileError, atomic_dir, first_line, has_metadata, read_metadata
from recforge.nn.distributed import barrier, is_main

CHECKPOINT_FORMAT = 2  # 2: the folder has a marker with its files' sums
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
V = TypeVar("V")


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor],
                    state: dict[str, Any]) -> Path:
    """Write ``tensors`` (moved to the CPU) and the JSON-able ``state`` to folder ``path`` as
    one unit: atomic, locked against a concurrent writer, and only over an absent or empty
    folder or an earlier recforge checkpoint (else `recforge.errors.OutputExistsError`).
    In a torchrun group only rank 0 writes; every rank returns once it has."""
    if is_main():
        cpu = {key: value.detach().to("cpu").contiguous().clone()
               for key, value in tensors.items()}
        with atomic_dir(path, "checkpoint",
                        legacy=lambda folder: has_metadata(folder, STATE_FILE)) as tmp:
            save_file(cpu, str(tmp / TENSORS_FILE))
            payload = {"format_version": CHECKPOINT_FORMAT, **state}
            (tmp / STATE_FILE).write_text(json.dumps(payload, indent=1))
    barrier()
    return Path(path)


def has_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` holds a complete checkpoint."""
    path = Path(path)
    return (path / TENSORS_FILE).is_file() and (path / STATE_FILE).is_file()


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, state)`` of the checkpoint in ``path`` (CPU tensors; never unpickles). A
    missing, damaged or modified file raises `recforge.errors.CorruptFileError` naming it."""
    path = Path(path)
    if not has_checkpoint(path):
        raise MissingFileError(f"no checkpoint in {path} (expected {TENSORS_FILE} and "
                               f"{STATE_FILE})")
    state = read_metadata(path, STATE_FILE, "checkpoint", CHECKPOINT_FORMAT, legacy_versions=(1,))
    try:
        return load_file(str(path / TENSORS_FILE)), state
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptFileError(f"{path / TENSORS_FILE}: unreadable ({first_line(exc)})") from None


def with_prefix(prefix: str, entries: dict[str, V]) -> dict[str, V]:
    """``{prefix + key: value}``."""
    return {prefix + key: value for key, value in entries.items()}


def strip_prefix(prefix: str, entries: dict[str, V]) -> dict[str, V]:
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in entries.items() if key.startswith(prefix)}


def split_optimizer_state(state_dict: dict[str, Any]
                          ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser ``state_dict`` as (tensors keyed ``"<param>/<name>"``, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, entries in state_dict["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{param}/{name}"] = value
            else:
                scalars.setdefault(str(param), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor],
                         rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        param, name = key.split("/", 1)
        state.setdefault(int(param), {})[name] = value
    for param, entries in rest["scalars"].items():
        state.setdefault(int(param), {}).update(entries)
    return {"state": state, "param_groups": rest["param_groups"]}
