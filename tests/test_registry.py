"""The lazy model registry: the built-in table agrees with the classes, renamed models and
parameters fail saying their new names, and models saved under the old names still load."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import recforge.models
from recforge.errors import ParameterError, UnknownNameError
from recforge.io import MARKER, sha256_file
from recforge.models import Recommender, create_model, get_model_class, model_names, register
from recforge.models.base import RENAMED_PARAMS
from recforge.models.registry import BUILTIN, RENAMED
from recforge.testing import contract_data


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_table_names_the_class_that_registers_under_that_name(name: str) -> None:
    cls = get_model_class(name)
    assert cls.name == name
    assert f"{cls.__module__}:{cls.__qualname__}" == BUILTIN[name]


def test_every_registered_builtin_is_in_the_table() -> None:
    """A ``@register`` anywhere in recforge (model modules, the pipeline) needs its line in
    `BUILTIN` (else the name would be unknown until something imported its module)."""
    package = Path(recforge.__file__).parent
    decorated = {}
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for deco in node.decorator_list:
                    if (isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "register"
                            and deco.args and isinstance(deco.args[0], ast.Constant)):
                        decorated[deco.args[0].value] = f"{module}:{node.name}"
    assert decorated == BUILTIN


def test_model_names_lists_the_builtin_table() -> None:
    assert set(BUILTIN) <= set(model_names())
    assert not set(RENAMED) & set(model_names())


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_old_model_name_fails_with_the_new_one(old: str, new: str) -> None:
    assert new in BUILTIN
    with pytest.raises(UnknownNameError, match=f"^unknown model '{old}': renamed to '{new}'$"):
        create_model(old)


def test_builtin_and_old_names_cannot_be_taken_by_another_class() -> None:
    for name in ("bpr", "svd"):
        with pytest.raises(ValueError, match="already registered"):
            register(name)(type("Other", (Recommender,), {}))


def _models_with(param: str) -> list[str]:
    return [name for name in sorted(BUILTIN) if param in get_model_class(name).param_names()]


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED_PARAMS.items()))
def test_old_parameter_name_fails_with_the_new_one(old: str, new: str) -> None:
    users = _models_with(new)
    assert users, f"no model takes {new!r}"
    for name in users:
        with pytest.raises(ParameterError, match=f"^{old}: .* has no parameter '{old}': "
                                                 f"renamed to '{new}'; valid: "):
            create_model(name, **{old: 1})
        assert old not in get_model_class(name).param_names()


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Replace a saved model's ``model.json`` (and its digest in the folder's marker)."""
    (folder / "model.json").write_text(json.dumps(meta))
    marker = json.loads((folder / MARKER).read_text())
    marker["files"]["model.json"] = sha256_file(folder / "model.json")
    (folder / MARKER).write_text(json.dumps(marker))


def _rename_saved(folder: Path, model: str, params: dict[str, str]) -> None:
    """Rewrite a saved model's ``model.json`` as an older recforge wrote it."""
    meta = json.loads((folder / "model.json").read_text())
    meta["model"] = model
    meta["params"] = {params.get(k, k): v for k, v in meta["params"].items()}
    _write_meta(folder, meta)


def test_models_saved_under_old_names_load(tmp_path: Path) -> None:
    data = contract_data()
    users = np.arange(data.n_users)
    svd = create_model("truncated-svd", factors=3).fit(data)
    svd.save(tmp_path / "svd")
    _rename_saved(tmp_path / "svd", "svd", {})
    loaded = Recommender.load(tmp_path / "svd")
    assert loaded.name == "truncated-svd"
    assert np.array_equal(loaded.score(users), svd.score(users))

    bpr = create_model("bpr", factors=4, epochs=2, reg=0.02, reg_bias=0.03, init_std=0.2,
                       threads=1).fit(data)
    bpr.save(tmp_path / "bpr")
    old = {new: old for old, new in RENAMED_PARAMS.items() if new != "learning_rate"}
    _rename_saved(tmp_path / "bpr", "bpr", old)
    loaded = Recommender.load(tmp_path / "bpr")
    assert loaded.get_params() == bpr.get_params()
    assert np.array_equal(loaded.score(users), bpr.score(users))


def test_blend_saved_with_old_member_names_loads(tmp_path: Path) -> None:
    data = contract_data()
    blend = create_model("blend", models=["truncated-svd", "biased-mf"], refit=False,
                         params={"truncated-svd": {"factors": 2},
                                 "biased-mf": {"factors": 2, "epochs": 2,
                                               "learning_rate": 0.01}}).fit(data)
    blend.save(tmp_path / "blend")
    meta = json.loads((tmp_path / "blend" / "model.json").read_text())
    meta["params"]["models"] = ["svd", "biased-mf"]
    meta["params"]["params"] = {"svd": {"factors": 2},
                                "biased-mf": {"factors": 2, "epochs": 2, "lr": 0.01}}
    _write_meta(tmp_path / "blend", meta)
    loaded = Recommender.load(tmp_path / "blend")
    assert loaded.get_params() == blend.get_params()
    users = np.arange(data.n_users)
    assert np.array_equal(loaded.score(users), blend.score(users))
