"""Atomic writes (all or nothing, usual permissions) and saved-folder metadata."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from recforge.data.interactions import Interactions
from recforge.io import atomic_dir, atomic_path
from recforge.models import MostPopular, Recommender
from recforge.retrieval import ExactIndex, VectorIndex


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_files_get_umask_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_dir_replaces_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise ValueError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("saved", ["model", "index"])
def test_loading_checks_the_metadata_file_and_its_version(tmp_path: Path, saved: str) -> None:
    if saved == "model":
        folder = MostPopular().fit(Interactions.from_arrays([0, 1], [1, 0])).save(tmp_path / "m")
        load, filename = Recommender.load, "model.json"
    else:
        index = ExactIndex()
        index.build(np.eye(3, dtype=np.float32))
        folder = index.save(tmp_path / "i")
        load, filename = VectorIndex.load, "index.json"
    load(folder)  # round trip works
    meta = json.loads((folder / filename).read_text())
    (folder / filename).write_text(json.dumps(meta | {"format_version": 999}))
    with pytest.raises(ValueError, match=f"unsupported {saved} format version 999"):
        load(folder)
    (folder / filename).unlink()
    with pytest.raises(FileNotFoundError, match=f"not a saved recforge {saved} .no {filename}"):
        load(folder)
