"""The model registry: versions, activation with the ACTIVE pointer, restart, other workers
following the pointer, rollback, refusals."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from test_app_support import VERSIONS, registry_dir, synthetic_data

from recforge.errors import CorruptFileError, InputError, OutputExistsError, UnknownNameError
from recforge.serving.registry import ModelRegistry, served_model_loader

LOADER = served_model_loader(data=synthetic_data())


def _registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(registry_dir(), LOADER, pointer=tmp_path / "ACTIVE")


def test_versions_and_default(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    assert registry.versions() == list(VERSIONS)
    assert registry.active.name == VERSIONS[-1] and registry.history() == []
    assert not (tmp_path / "ACTIVE").exists()  # nothing written until an activation
    with pytest.raises(UnknownNameError, match="did you mean"):
        registry.activate(VERSIONS[0] + "x")


def test_activation_pointer_restart_and_rollback(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    old = registry.active
    new = registry.activate(VERSIONS[0])
    assert registry.active is new and new is not old and new.name == VERSIONS[0]
    pointer = json.loads((tmp_path / "ACTIVE").read_text())
    assert pointer["active"] == VERSIONS[0] and pointer["history"] == [VERSIONS[1]]
    assert _registry(tmp_path).active.name == VERSIONS[0]  # a restart serves the same
    assert registry.rollback().name == VERSIONS[1]
    assert json.loads((tmp_path / "ACTIVE").read_text())["history"] == []
    with pytest.raises(InputError, match="no earlier version"):
        registry.rollback()


def test_other_workers_follow_the_pointer(tmp_path: Path) -> None:
    worker_a, worker_b = _registry(tmp_path), _registry(tmp_path)
    worker_a.activate(VERSIONS[0])
    assert worker_b.active.name == VERSIONS[1]  # until it looks
    deadline = time.monotonic() + 60
    while worker_b.active.name != VERSIONS[0] and time.monotonic() < deadline:
        worker_b.refresh()  # a stat per request; the load runs in the background
        time.sleep(0.05)
    assert worker_b.active.name == VERSIONS[0]


@pytest.mark.parametrize("content", ["my notes\n", '{"active": "tt-a"}'])
def test_a_foreign_pointer_file_is_never_followed_or_replaced(tmp_path: Path,
                                                             content: str) -> None:
    (tmp_path / "ACTIVE").write_text(content)
    with pytest.raises(CorruptFileError, match="ACTIVE"):
        _registry(tmp_path)
    assert (tmp_path / "ACTIVE").read_text() == content


def test_a_pointer_file_replaced_by_a_foreign_one_is_not_overwritten(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.activate(VERSIONS[0])
    (tmp_path / "ACTIVE").unlink()
    (tmp_path / "ACTIVE").write_text("mine")
    with pytest.raises((OutputExistsError, CorruptFileError)):
        registry.activate(VERSIONS[1])
    assert (tmp_path / "ACTIVE").read_text() == "mine"


def test_single_model_folder_and_bad_folders(tmp_path: Path) -> None:
    single = ModelRegistry(registry_dir() / VERSIONS[0], LOADER, pointer=tmp_path / "ACTIVE")
    assert single.versions() == [VERSIONS[0]] and single.active.name == VERSIONS[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no model.json"):
        ModelRegistry(empty, LOADER)
    with pytest.raises(InputError, match="no such folder"):
        ModelRegistry(tmp_path / "absent", LOADER)


def test_a_new_version_folder_is_found(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    shutil.copytree(registry_dir() / VERSIONS[0], root / "v1")
    registry = ModelRegistry(root, LOADER)
    assert registry.versions() == ["v1"]
    shutil.copytree(registry_dir() / VERSIONS[1], root / "v2")
    (root / ".hidden").mkdir()
    assert registry.versions() == ["v1", "v2"]
    assert registry.activate("v2").name == "v2" and (root / "ACTIVE").is_file()
