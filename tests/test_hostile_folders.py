"""Property-based tests: saved model and index folders damaged or rewritten at random.

Whatever is done to a saved folder (files truncated, bytes flipped, members deleted or
renamed, JSON rewritten with random values, types and nesting), `Recommender.load`,
`load_retriever`, `load_index` and ``recforge recommend`` either give the original answer or
raise recforge's input error with one line (the command line: exit 2, one line on stderr):
never a traceback, never a different answer with exit 0."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hardening_persistence import make_legacy, train, write_log

from recforge.cli import main
from recforge.errors import InputError
from recforge.io import MARKER, sha256_file
from recforge.models import Recommender
from recforge.retrieval import ExactIndex, load_index
from recforge.retrieval.retriever import load_retriever

MODEL_FILES = ("model.json", "arrays.npz", "catalogue.npz", MARKER)
INDEX_FILES = ("index.json", "ids.npy", "vectors.npy", MARKER)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


#: a rewrite of a JSON file: the child numbers leading to a node, and its new value
rewrites = st.tuples(st.lists(st.integers(0, 50), max_size=4), json_values)


@st.composite
def mutations(draw: st.DrawFn, files: tuple[str, ...]) -> tuple[str, str, Any]:
    """One damage to one file: (file, operation, argument)."""
    file = draw(st.sampled_from(files))
    operations = ["truncate", "flip", "delete", "rename"]
    if file.endswith(".json"):
        operations.append("rewrite")
    operation = draw(st.sampled_from(operations))
    argument = {
        "truncate": st.floats(0, 0.999),
        "flip": st.lists(st.tuples(st.floats(0, 0.999), st.integers(1, 255)), min_size=1,
                         max_size=4),
        "delete": st.none(),
        "rename": st.sampled_from(["x", ".bak", "../moved"]),
        "rewrite": rewrites,
    }[operation]
    return file, operation, draw(argument)


def damage(folder: Path, mutation: tuple[str, str, Any]) -> None:
    """Apply a mutation drawn by `mutations` to ``folder``."""
    name, operation, argument = mutation
    file = folder / name
    data = file.read_bytes()
    if operation == "truncate":
        file.write_bytes(data[: int(len(data) * argument)])
    elif operation == "flip":
        buffer = bytearray(data)
        for where, mask in argument:
            buffer[int(len(buffer) * where)] ^= mask
        file.write_bytes(bytes(buffer))
    elif operation == "delete":
        file.unlink()
    elif operation == "rename":
        file.rename(folder / (name + argument if argument == ".bak" else argument))
    else:
        path, value = argument
        file.write_text(json.dumps(_replace(json.loads(data), path, value)))


def _replace(tree: Any, path: list[int], value: Any) -> Any:
    """``tree`` with the node reached by following child numbers ``path`` set to ``value``."""
    children = list(tree) if isinstance(tree, dict) else tree if isinstance(tree, list) else []
    if not path or not children:
        return value
    at = path[0] % len(children)
    if isinstance(tree, dict):
        key = children[at]
        return tree | {key: _replace(tree[key], path[1:], value)}
    return tree[:at] + [_replace(tree[at], path[1:], value)] + tree[at + 1:]


def reseal(folder: Path) -> None:
    """Rewrite the marker's sums for the folder's current files (a consistent but hostile
    folder: only the content checks stand between it and the user)."""
    marker = json.loads((folder / MARKER).read_text())
    marker["files"] = {name: sha256_file(folder / name) for name in marker["files"]
                       if (folder / name).is_file()}
    (folder / MARKER).write_text(json.dumps(marker))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    assert train(folder / "model", write_log(folder / "log.csv")) == 0
    return folder / "model"


@pytest.fixture(scope="module")
def expected(pristine: Path) -> tuple[list[Any], str]:
    """The original answer: ids from Python and the command line's JSON output."""
    ids = load_retriever(pristine).recommend("u3").ids.tolist()
    return ids, _cli(pristine)[1]


def _cli(folder: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["recommend", "--model", str(folder), "--user", "u3", "--json"])
    return code, out.getvalue() if code == 0 else err.getvalue()


@pytest.fixture
def copy_of(pristine: Path) -> Iterator[Any]:
    """A function giving a fresh copy of a saved folder for each Hypothesis example."""
    with tempfile.TemporaryDirectory() as scratch:
        counter = iter(range(10**6))

        def copy(source: Path = pristine) -> Path:
            target = Path(scratch) / f"copy{next(counter)}" / source.name
            shutil.copytree(source, target)
            return target

        yield copy


def assert_original_or_one_line_error(folder: Path, expected: tuple[list[Any], str]) -> None:
    """Python and the command line both give the original answer or a one-line input error."""
    try:
        ids = load_retriever(folder).recommend("u3").ids.tolist()
    except InputError as exc:
        assert len(str(exc).splitlines()) == 1, str(exc)
    else:
        assert ids == expected[0]
    code, text = _cli(folder)
    if code == 0:
        assert text == expected[1]
    else:
        assert code == 2 and len(text.strip().splitlines()) == 1 and "Traceback" not in text, text


@SETTINGS
@given(mutation=mutations(MODEL_FILES))
def test_damaged_model_folder(copy_of: Any, expected: tuple[list[Any], str],
                              mutation: tuple[str, str, Any]) -> None:
    folder = copy_of()
    damage(folder, mutation)
    assert_original_or_one_line_error(folder, expected)


@SETTINGS
@given(mutation=mutations(MODEL_FILES[:3]).filter(
    lambda m: not (m[0] == "catalogue.npz" and m[1] in ("delete", "rename"))))
def test_damaged_model_folder_of_the_format_before_markers(
        copy_of: Any, expected: tuple[list[Any], str], mutation: tuple[str, str, Any]) -> None:
    """Without the marker's sums, the content checks alone catch the damage. (Such a folder
    may lack a catalogue, so one deleted is not damage: it serves internal indices.)"""
    folder = copy_of()
    make_legacy(folder)
    damage(folder, mutation)
    assert_original_or_one_line_error(folder, expected)


@settings(SETTINGS, max_examples=40)
@given(mutation=st.tuples(st.just("model.json"), st.just("rewrite"), rewrites))
def test_rewritten_and_resealed_model_json(copy_of: Any, expected: tuple[list[Any], str],
                                           mutation: tuple[str, str, Any]) -> None:
    """The marker's sums match the rewritten file: the content checks of model.json alone
    must refuse (or harmlessly accept) any structure."""
    folder = copy_of()
    damage(folder, mutation)
    reseal(folder)
    assert_original_or_one_line_error(folder, expected)


@pytest.fixture(scope="module")
def saved_index(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    vectors = Recommender.load(pristine).item_embeddings()
    return ExactIndex().build(vectors).save(tmp_path_factory.mktemp("index") / "index")


@SETTINGS
@given(mutation=mutations(INDEX_FILES), reseal_after=st.booleans())
def test_damaged_index_folder(copy_of: Any, saved_index: Path, mutation: tuple[str, str, Any],
                              reseal_after: bool) -> None:
    """Damage to any file, or a rewritten ``index.json`` with matching sums: the original
    search results or a one-line input error."""
    queries = np.random.default_rng(0).normal(size=(3, load_index(saved_index).dim))
    original = load_index(saved_index).search(queries, 5)
    folder = copy_of(saved_index)
    damage(folder, mutation)
    if reseal_after and mutation[0] == "index.json":
        reseal(folder)
    try:
        found = load_index(folder).search(queries, 5)
    except InputError as exc:
        assert len(str(exc).splitlines()) == 1, str(exc)
        return
    assert all(np.array_equal(a, b) for a, b in zip(original, found))
