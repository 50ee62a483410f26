"""The package's import structure: no cycles and no import from a lower layer to a higher
one, and importing recforge (or running ``recforge --help``) never imports PyTorch.

Every import counts, at module level or inside a function: a lazy import may defer an optional
or heavy dependency (PyTorch, optuna, faiss, a model module through the registry), never reach
up a layer or close a cycle. Imports under ``if TYPE_CHECKING:`` are annotations only and are
not counted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: lowest first; a module may import its own layer or lower ones (without cycles)
LAYERS: list[tuple[str, ...]] = [
    ("recforge", "recforge.errors", "recforge.params", "recforge.io", "recforge.topk",
     "recforge.numerics", "recforge.memory", "recforge.sqlitedb"),
    ("recforge.data", "recforge.abtest"),
    ("recforge.nn",),
    ("recforge.models",),
    ("recforge.evaluation",),
    ("recforge.retrieval", "recforge.rerank"),
    ("recforge.testing", "recforge.experiments"),
    ("recforge.report",),
    ("recforge.bandits", "recforge.serving"),
    ("recforge.cli",),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "recforge").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    """The layer of the longest prefix in `LAYERS` that names ``module`` or a package of it."""
    matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS)
               for prefix in prefixes
               if module == prefix or (prefix != "recforge" and module.startswith(prefix + "."))]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return max(matches)[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> set[str]:
    """The recforge modules ``module`` imports (a ``from package import name`` counts as the
    submodule when ``name`` is one, else as the package)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_no_import_reaches_up_a_layer() -> None:
    upward = [f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
              for module, targets in GRAPH.items() for target in sorted(targets)
              if _layer(target) > _layer(module)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                walk(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module, [module])
    assert not cycles, "\n".join(cycles)


def _torch_loaded_after(code: str) -> bool:
    script = f"{code}\nimport sys\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script],
                         capture_output=True, text=True, check=True, timeout=300)
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("code", [
    "import recforge",
    "import recforge.evaluation",
    "import recforge.models\nassert 'two-tower' in recforge.models.model_names()",
    "from recforge.cli import main\nassert main(['--help']) == 0",
])
def test_importing_recforge_does_not_import_torch(code: str) -> None:
    assert not _torch_loaded_after(code)


def test_help_imports_no_command_module_nor_the_numeric_stack() -> None:
    script = ("import contextlib, io, sys\nfrom recforge.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['--help']) == 0\n"
              "heavy = {'numpy', 'pandas', 'scipy', 'numba', 'torch'}\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
              "             or m.startswith('recforge.cli.') and m.endswith('_cmd')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "[]"
