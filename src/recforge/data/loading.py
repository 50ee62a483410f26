"""`load_dataset`: a registered dataset by name (`recforge.data.datasets`), synthetic data, or an
interaction file, as `Interactions`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recforge.data.datasets import DATASETS
from recforge.data.interactions import Interactions
from recforge.data.readers import read_interactions


def load_dataset(
    name_or_path: str | Path,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    columns: dict[str, str] | None = None,
    format: str | None = None,
    **kwargs: Any,
) -> Interactions:
    """Load a registered dataset by name, ``synthetic`` data, or an interaction file.

    Registered MovieLens names go to `recforge.data.movielens`; ``synthetic`` calls
    `recforge.data.synthetic.generate(**kwargs)`; an existing file path is read with
    `read_interactions(path, columns, **kwargs)`, or with ``format`` (``sequence``,
    ``sessions``, ``adjacency``) by `recforge.data.seq_formats.read_format(path, format,
    **kwargs)`.
    """
    key = str(name_or_path).lower()
    if format is not None:
        if columns is not None:
            raise ValueError(f"columns= does not apply to format={format!r} (fixed columns)")
        if isinstance(name_or_path, str) and key in DATASETS:
            raise ValueError(f"format= applies to files, not to the registered dataset {key!r}")
        from recforge.data.seq_formats import read_format

        return read_format(name_or_path, format, **kwargs)
    if isinstance(name_or_path, str) and key in DATASETS:
        if key == "synthetic":
            from recforge.data.synthetic import generate

            return generate(**kwargs)
        if columns is not None:
            raise ValueError("columns= applies to interaction files, not to registered datasets")
        from recforge.data.movielens import load_movielens

        return load_movielens(key, data_dir=data_dir, download=download, **kwargs)
    path = Path(name_or_path)
    if path.is_file():
        return read_interactions(path, columns, **kwargs)
    raise ValueError(f"unknown dataset {str(name_or_path)!r}: not an existing file and not a "
                     f"registered name ({', '.join(DATASETS)})")
