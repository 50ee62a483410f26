"""A renderer-neutral report: sections of paragraphs, tables and figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    """A table of preformatted cells; ``header`` names the columns."""

    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    """A PNG written under the report folder (``path`` is relative to it) with a caption."""

    path: Path
    caption: str


@dataclass
class Section:
    """A titled block: paragraphs, then tables, then figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Document:
    """The whole report: a title, a lead paragraph list and the sections in order."""

    title: str
    lead: list[str]
    sections: list[Section]
