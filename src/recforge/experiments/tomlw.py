"""TOML for experiment files: the reader (`tomllib`, or `tomli` before Python 3.11) and a
small writer for resolved experiment files (the standard library only reads TOML).

Top-level dict values become ``[tables]``, lists of dicts ``[[arrays of tables]]``; inside a
table, a dict holding further dicts becomes a sub-table and any other dict an inline table.
``None`` values are left out (TOML has no null).
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["dumps", "tomllib"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(document: dict[str, Any]) -> str:
    """The TOML text of ``document`` (``tomllib.loads`` reads it back equal, less ``None``)."""
    lines = _table_body(document, "")
    return "\n".join(lines).strip() + "\n"


def _table_body(table: dict[str, Any], prefix: str) -> list[str]:
    lines, tables = [], []
    for key, value in table.items():
        if value is None:
            continue
        sub_table = isinstance(value, dict) and (
            not prefix or any(isinstance(v, dict) for v in value.values()))
        table_array = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        if sub_table or table_array:
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables:
        name = f"{prefix}{_key(key)}"
        for item in value if isinstance(value, list) else [value]:
            header = f"[[{name}]]" if isinstance(value, list) else f"[{name}]"
            lines += ["", header, *_table_body(item, f"{name}.")]
    return lines


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = [f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}" if items else "{}"
    if hasattr(value, "item"):  # numpy scalars
        return _value(value.item())
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} as TOML")


def _float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    return text if any(c in text for c in ".en") else f"{text}.0"
