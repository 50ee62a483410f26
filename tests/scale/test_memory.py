"""Memory needs stated before allocation (`recforge.memory`): the estimates against what the
models really allocate (tracemalloc peaks, numpy arrays being traced), and the one-line
refusals with a suggestion when the machine or the configured limit cannot hold them."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from recforge.cli import main
from recforge.data.interactions import Interactions
from recforge.data.synthetic import generate
from recforge.errors import InputError
from recforge.memory import (
    LIMIT_VAR,
    InsufficientMemoryError,
    Need,
    check_memory,
    ease_need,
    ials_need,
    knn_need,
    memory_bound,
    parse_size,
)
from recforge.models import create_model
from recforge.models.neighbours.similarity import BLOCK_BYTES


@pytest.fixture(scope="module")
def data() -> Interactions:
    """2,000 users x 1,500 items, 80,000 implicit interactions (explicit ratings kept)."""
    return generate(n_users=2000, n_items=1500, n_interactions=80_000, seed=1)


def traced_peak(name: str, data: Interactions, **params: object) -> int:
    """Peak bytes traced while fitting (the data's own views built first)."""
    model = create_model(name, **params)
    model.fit(data)  # compile the kernels once: their compiler's memory is not the model's
    model = create_model(name, **params)
    tracemalloc.start()
    try:
        model.fit(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("name", "params", "need"), [
    ("ials", {"factors": 64, "epochs": 1}, lambda d: ials_need(d.n_users, d.n_items,
                                                                  d.binary_csr.nnz, 64)),
    ("ease", {}, lambda d: ease_need(d.n_items, 8)),
    ("item-knn-implicit", {}, lambda d: knn_need(d.n_items, 200, 3, BLOCK_BYTES)),
])
def test_estimates_match_what_the_fit_allocates(data: Interactions, name: str,
                                                params: dict, need: object) -> None:
    estimate = need(data).bytes  # type: ignore[operator]
    peak = traced_peak(name, data, **params)
    assert 0.75 * estimate <= peak <= 1.5 * estimate, (name, estimate, peak)


@pytest.mark.parametrize(("name", "params", "expected"), [
    ("ials", {"factors": 64}, (r"^ials needs about .* but .* is allowed by the limit "
                              r"RECFORGE_MEMORY_LIMIT=1M; use fewer factors")),
    ("ease", {}, (r"^EASE needs about .*1,500 x 1,500 matrix of 8-byte floats.*; restrict the "
                 r"catalogue")),
    ("item-knn-implicit", {"k": 1000}, r"^item-knn-implicit needs about .*; lower k"),
    ("item-knn", {"max_neighbors": None}, (r"^item-knn needs about .*1,500 rows x 1,499 "
                                          r"neighbours.*; set max_neighbors")),
])
def test_refused_before_allocating_with_a_suggestion(data: Interactions, name: str,
                                                     params: dict, expected: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIMIT_VAR, "1M")
    model = create_model(name, **params)
    with pytest.raises(InsufficientMemoryError, match=expected) as caught:
        model.fit(data)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, MemoryError) and isinstance(caught.value, InputError)
    assert not hasattr(model, "user_factors_") and not hasattr(model, "similarity_")


def test_the_limit_lowers_the_bound_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIMIT_VAR, raising=False)
    available, source = memory_bound()
    assert source == "available" and available > 0
    monkeypatch.setenv(LIMIT_VAR, "1.5G")
    assert memory_bound() == (3 << 29, f"the limit {LIMIT_VAR}=1.5G")
    assert memory_bound(limit=1000) == (1000, "the machine's memory")
    check_memory("m", Need(3 << 29, "x"), "s")  # exactly at the bound: fits
    with pytest.raises(InsufficientMemoryError, match=r"^m needs about 1.5 GiB \(x\)"):
        check_memory("m", Need((3 << 29) + 1, "x"), "s")
    assert [parse_size(t) for t in ("512", "2k", "3M", "1G", "1.5T", "4GiB")] == \
        [512, 2048, 3 << 20, 1 << 30, 3 << 39, 4 << 30]
    for bad in ("", "12X", "-1G", "G"):
        with pytest.raises(InputError, match=f"^{LIMIT_VAR}="):
            parse_size(bad)


def test_estimates_grow_with_the_data() -> None:
    small, large = ials_need(10**6, 2 * 10**5, 10**8, 64), ials_need(10**6, 2 * 10**5, 10**9, 64)
    assert large.bytes - small.bytes == 9 * 10**8 * 20  # 20 bytes per nonzero
    assert ease_need(50_000, 4).bytes == 50_000**2 * 4 + 2048 * 50_000 * 4
    assert knn_need(10, 200, 1, BLOCK_BYTES).bytes == 10 * 9 * 8 + 11 * 8 + 2 * 100 * 4


def test_cli_reports_the_refusal_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    rows = np.random.default_rng(0).integers(1, 200, size=(3000, 2))
    path = tmp_path / "log.csv"
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    monkeypatch.setenv(LIMIT_VAR, "10K")
    code = main(["train", "--dataset", str(path), "--columns", "user=user,item=item",
                 "--model", "ials", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and "ials needs about" in err and "use fewer factors" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
