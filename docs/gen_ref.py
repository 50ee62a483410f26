"""Generate the API reference: one page per public module of ``src/recforge``.

Run by the ``gen-files`` plugin of MkDocs (``mkdocs.yml``) at every build. Each module
``recforge/a/b.py`` gets ``reference/recforge/a/b.md`` holding the mkdocstrings directive
``::: recforge.a.b``; a package's ``__init__.py`` gets its folder's ``index.md``. Modules whose
name (or a parent's) starts with an underscore are private and left out, and so are files in
a folder without ``__init__.py`` (not a package: setuptools does not ship it either). The section's
navigation is written to ``reference/SUMMARY.md`` for the ``literate-nav`` plugin, so adding a
module (or a whole package such as ``recforge.bandits``) needs no edit here or in ``mkdocs.yml``.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

SRC = Path(__file__).resolve().parent.parent / "src"


def public_modules(src: Path = SRC) -> list[tuple[str, ...]]:
    """Dotted-name parts of every public module and package under ``src/recforge``, sorted."""
    found = []
    for path in sorted((src / "recforge").rglob("*.py")):
        folders = path.parent.relative_to(src).parts
        if not all(src.joinpath(*folders[:i], "__init__.py").is_file()
                   for i in range(1, len(folders) + 1)):
            continue  # not inside a package
        name = path.stem
        parts = folders if name == "__init__" else (*folders, name)
        if name == "__main__" or any(part.startswith("_") for part in parts):
            continue
        found.append(parts)
    return sorted(found)


def page_path(parts: tuple[str, ...], is_package: bool) -> Path:
    """The reference page of a module (``index.md`` of its folder for a package)."""
    if is_package:
        return Path(*parts, "index.md")
    return Path(*parts).with_suffix(".md")


def main() -> None:
    """Write every module's page and ``reference/SUMMARY.md`` into the build's files."""
    nav = mkdocs_gen_files.Nav()
    for parts in public_modules():
        is_package = (SRC.joinpath(*parts) / "__init__.py").is_file()
        page = page_path(parts, is_package)
        nav[parts] = page.as_posix()
        with mkdocs_gen_files.open(Path("reference", page), "w") as out:
            out.write(f"::: {'.'.join(parts)}\n")
        source = SRC.joinpath(*parts, "__init__.py") if is_package else SRC.joinpath(
            *parts[:-1], parts[-1] + ".py")
        mkdocs_gen_files.set_edit_path(Path("reference", page), source.relative_to(SRC.parent))
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as summary:
        summary.writelines(nav.build_literate_nav())


if __name__ in ("__main__", "<run_path>"):  # run by gen-files (runpy), not on import
    main()
