"""The documentation site: `mkdocs build --strict` passes (a broken reference, a missing page
or an unresolved Markdown link fails it) and no internal link of the built HTML is broken.

The link checker reads every HTML page of the built site and follows each relative ``href`` and
``src``: the target file must exist (a folder means its ``index.html``) and a ``#fragment`` must
be the ``id`` of an element of the target page.
"""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import require_module

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))


class _Page(HTMLParser):
    """The ids and the link targets (``href``/``src``) of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif name in ("href", "src"):
                self.links.append(value)


def parse(page: Path) -> _Page:
    parsed = _Page()
    parsed.feed(page.read_text(encoding="utf-8"))
    return parsed


def resolve(site: Path, page: Path, link: str) -> tuple[Path, str] | None:
    """The file and fragment an internal link points at (None for an external link)."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:", "javascript:")):
        return None
    path = unquote(parts.path)
    if not path:
        return page, unquote(parts.fragment)
    target = (site / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
    target = target.resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def broken_links(site: Path) -> list[str]:
    """``page: link (why)`` for every internal link of the site that does not resolve."""
    pages = {page.resolve(): parse(page) for page in site.rglob("*.html")}
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            found = resolve(site, page, link)
            if found is None:
                continue
            target, fragment = found
            where = f"{page.relative_to(site.resolve())}: {link}"
            if not target.is_file():
                broken.append(f"{where} (no such file)")
            elif fragment and target.suffix == ".html" and fragment not in pages[target].ids:
                broken.append(f"{where} (no element with id {fragment!r})")
    return broken


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built by ``mkdocs build --strict`` into a temporary folder."""
    for name in ("mkdocs", "mkdocstrings", "material", "mkdocs_gen_files", "mkdocs_literate_nav"):
        require_module(name)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_strict_build_has_every_section_and_the_benchmark_tables(site: Path) -> None:
    for page in ("index.html", "getting-started/index.html", "concepts/protocols/index.html",
                 "how-to/own-model/index.html", "notebooks/index.html",
                 "reference/recforge/models/base/index.html"):
        assert (site / page).is_file(), page
    benchmarks = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    first_heading = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8").split("\n## ")[1]
    assert first_heading.splitlines()[0].split(":")[0] in benchmarks
    assert benchmarks.count("<table>") >= 10  # BENCHMARKS.md's tables, rendered


def test_api_reference_renders_docstrings(site: Path) -> None:
    page = (site / "reference/recforge/models/factorization/mf/index.html").read_text(
        encoding="utf-8")
    assert "BiasedMF" in page and "Gemulla" in page  # the class and its docstring


def test_no_broken_internal_link(site: Path) -> None:
    assert broken_links(site) == []


def test_link_checker_finds_a_broken_file_and_anchor(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text('<h1 id="top">A</h1><a href="#top">ok</a>')
    (tmp_path / "index.html").write_text(
        '<a href="a/">ok</a><a href="a/#top">ok</a><a href="a/#nope">bad anchor</a>'
        '<a href="b/">no page</a><img src="missing.png"><a href="https://example.org/x">ext</a>')
    assert sorted(broken_links(tmp_path)) == [
        "index.html: a/#nope (no element with id 'nope')",
        "index.html: b/ (no such file)",
        "index.html: missing.png (no such file)",
    ]


def test_reference_pages_cover_every_public_module() -> None:
    require_module("mkdocs_gen_files")
    from gen_ref import public_modules

    modules = {".".join(parts) for parts in public_modules()}
    assert {"recforge", "recforge.models.base", "recforge.testing",
            "recforge.models.factorization.mf"} <= modules
    assert not any(part.startswith("_") for name in modules for part in name.split("."))


def test_own_model_how_to_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model of "Add your own model" fits and recommends as the page says (registered in
    a copy of the registry, so that the name does not outlive the test)."""
    from recforge.models import registry
    from recforge.testing import contract_data

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    page = (ROOT / "docs" / "how-to" / "own-model.md").read_text(encoding="utf-8")
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {"__name__": "own_model_example"}
    exec(compile(code, "own-model.md", "exec"), namespace)  # noqa: S102 - our own page
    model = registry.get_model_class("cooccurrence")(shrink=5.0).fit(contract_data())
    items, scores = model.recommend([0, 1], k=5)
    assert items.shape == (2, 5) and (scores[:, :-1] >= scores[:, 1:]).all()
    assert issubclass(namespace["TestCooccurrence"], namespace["ModelContract"])


def test_every_model_docstring_states_paper_hyperparameters_defaults_and_consumes() -> None:
    """Each registered model under `recforge.models` documents, in its class docstring, its
    paper, every hyperparameter with its default value (the training parameters that differ
    from `recforge.nn.TrainingConfig`'s), how the defaults were chosen and what it consumes
    (as `Model.consumes` declares)."""
    import dataclasses
    import importlib

    from recforge.models.registry import BUILTIN
    from recforge.nn.trainer import TrainingConfig

    training = {field.name: field.default for field in dataclasses.fields(TrainingConfig)}
    problems = []
    for name, target in BUILTIN.items():
        module, cls_name = target.split(":")
        if not module.startswith("recforge.models."):
            continue
        cls = getattr(importlib.import_module(module), cls_name)
        doc = " ".join((cls.__doc__ or "").split())
        problems += [f"{name}: no {section!r}" for section in
                     ("Paper:", "Hyperparameters (defaults):", "Defaults:", "Consumes:")
                     if section not in doc]
        for param, value in cls().get_params().items():
            if param == "seed" or training.get(param, object()) == value:
                continue
            shown = repr(value).replace(", ", ",") if isinstance(value, tuple) else repr(value)
            if f"``{param}={shown}``" not in doc:
                problems.append(f"{name}: {param}={shown} not stated")
        consumes = doc.split("Consumes:", 1)[-1]
        problems += [f"{name}: consumes {c!r} not stated" for c in sorted(cls.consumes)
                     if c not in consumes]
    assert problems == []
