"""Shared pytest fixtures for the recforge test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real MovieLens-100K folder, ``$RECFORGE_DATA_DIR/ml-100k``.

    Skips when the data is missing, except on CI (``CI=true``), where missing data fails.
    """
    base = os.environ.get("RECFORGE_DATA_DIR", "")
    folder = Path(base) / "ml-100k" if base else None
    if folder is not None and (folder / "u.data").is_file():
        return folder
    where = f"{folder}" if folder is not None else "RECFORGE_DATA_DIR (not set)"
    message = f"MovieLens-100K not found: expected u.data under {where}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
