"""Render a `Document` as Markdown; figures are referenced as ``figures/*.png``."""

from __future__ import annotations

from recforge.report.document import Document, Section, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    """A pipe table."""
    lines = ["| " + " | ".join(map(_cell, table.header)) + " |",
             "|" + "|".join(" --- " for _ in table.header) + "|"]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in table.rows]
    return "\n".join(lines)


def _section(section: Section) -> list[str]:
    parts = [f"## {section.title}"] + section.paragraphs
    parts += [table_markdown(table) for table in section.tables]
    parts += [f"![{fig.path.stem}]({fig.path.as_posix()})\n\n*{fig.caption}*"
              for fig in section.figures]
    return parts


def render_markdown(doc: Document) -> str:
    """The report as one Markdown string."""
    parts = [f"# {doc.title}"] + doc.lead
    for section in doc.sections:
        parts += _section(section)
    return "\n\n".join(parts) + "\n"
