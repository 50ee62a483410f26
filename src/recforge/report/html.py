"""Render a `Document` as one self-contained HTML page (inline CSS, PNGs as data URIs)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from recforge.report.document import Document, Figure, Section, Table

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-style: italic; color: #555; }
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(figure: Figure, root: Path) -> str:
    data = base64.b64encode((root / figure.path).read_bytes()).decode("ascii")
    caption = escape(figure.caption)
    return (f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _section(section: Section, root: Path) -> str:
    parts = [f"<h2>{escape(section.title)}</h2>"]
    parts += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    parts += [_table(t) for t in section.tables]
    parts += [_figure(f, root) for f in section.figures]
    return "\n".join(parts)


def render_html(doc: Document, root: Path) -> str:
    """The report as one HTML page; figure files are read from under ``root``."""
    body = [f"<h1>{escape(doc.title)}</h1>"] + [f"<p>{escape(p)}</p>" for p in doc.lead]
    body += [_section(s, root) for s in doc.sections]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(doc.title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
