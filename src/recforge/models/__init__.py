"""Recommendation models behind one API (see `recforge.models.base.Recommender`), grouped by
family: `baselines`, `neighbours` (kNN and EASE), `factorization`, `neural`, `retrieval`.

Importing this package imports no model (nor numba, nor PyTorch): the registry lists the
built-in names from a table, and a model class named here (``from recforge.models import
BPR``) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from recforge.models.base import NotFittedError, Recommender
from recforge.models.registry import BUILTIN, create_model, get_model_class, model_names, register

#: class name -> module of every built-in model, imported by `__getattr__` on first use
_LAZY = dict(reversed(path.split(":")) for path in BUILTIN.values())

__all__ = [
    "NotFittedError", "Recommender", "create_model", "get_model_class", "model_names",
    "register",
]


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
