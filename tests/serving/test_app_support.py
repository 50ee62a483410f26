"""Shared helpers of the service tests (no tests here): small two-tower model versions in a
registry, trained once per test process on synthetic data, and an app over them."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

TOKEN = "test-token-0123456789abcdef"
#: the two versions of the test registry (different seeds: different lists)
VERSIONS = ("tt-a", "tt-b")


@functools.lru_cache(maxsize=1)
def synthetic_data() -> Any:
    """A small implicit data set with titles, genres and release years."""
    from recforge.data.synthetic import generate

    return generate(n_users=300, n_items=200, n_interactions=6000, feedback="implicit",
                    seed=3)


@functools.lru_cache(maxsize=1)
def registry_dir() -> Path:
    """A registry folder holding `VERSIONS`, two-tower models as ``recforge train`` writes
    them (model + catalogue), trained once per process."""
    from recforge.models.base import model_output
    from recforge.models.registry import create_model
    from recforge.retrieval.retriever import write_catalogue

    data = synthetic_data()
    root = Path(tempfile.mkdtemp(prefix="recforge-serve-test-")) / "registry"
    for seed, name in enumerate(VERSIONS):
        model = create_model("two-tower", epochs=2, layers=[32, 16], id_dim=16,
                             text_method="hashed", seed=seed)
        with model_output(root / name) as folder:
            model.fit(data)
            model.write_files(folder)
            write_catalogue(folder, data)
    return root


def make_app(state_dir: Path, *, data: Any = None, root: Path | None = None,
             **sections: dict[str, Any]) -> Any:
    """An app over the test registry (or ``root``) with its state under ``state_dir``; the
    ``sections`` override the configuration."""
    from recforge.serving.app import create_app
    from recforge.serving.config import load_config

    serve = {"state_dir": str(state_dir), "index": "ivf-flat",
             "index_settings": {"nlist": 4, "nprobe": 2}} | sections.pop("serve", {})
    config = load_config(root or registry_dir(), None, serve=serve, **sections)
    return create_app(config, data=synthetic_data() if data is None else data)


def auth(token: str = TOKEN) -> dict[str, str]:
    """The Authorization header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}
