"""A synthetic Criteo-like CTR data set with a known logistic ground truth: data at any scale
for throughput runs, and for tests that must know the best achievable AUC.

The generative story (all of it seeded):

* ``n_categorical`` fields ``C1..`` with vocabularies of log-uniform sizes between
  ``vocab_min`` and ``vocab_max`` (a power law over sizes, as Criteo's range from a few values
  to millions); each value is 8 hex digits like Criteo's hashed categories. Values are drawn
  from a Zipf law (the value of popularity rank ``r`` has weight ``r ** -a``, ``a`` drawn
  around ``zipf_exponent`` per field) over a random order of the vocabulary.
* ``n_numeric`` fields ``I1..`` of log-normal counts ``floor(exp(mu + s z))``, ``z ~ N(0, 1)``.
* Every field is missing in a share of the rows drawn in ``[0, missing_rate]`` per field.
* The label is ``Bernoulli(sigmoid(bias + linear + pairs))``: ``linear`` sums a weight per
  categorical value and ``g_i (log1p(x_i) - mu_i) / s_i`` per numeric field (field
  importances log-normal, scaled so the linear part has standard deviation about
  ``linear_strength``); ``pairs`` sums ``<v_a, v_b>`` over ``n_pairs`` random pairs of
  categorical fields, ``v`` rank-``rank`` value embeddings (standard deviation of the sum
  about ``interaction_strength``). A missing value contributes nothing. The bias is solved
  on a fixed calibration sample so that the positive rate is about ``positive_rate``.

The true probabilities come with the data: ``roc_auc(labels, probability)`` is the AUC of
the ground-truth model (the ceiling for any model, up to sampling noise).

Rows are generated in blocks of `BLOCK_ROWS` rows, block ``k`` from its own random stream
(``SeedSequence(seed, spawn_key=(2, k))``), so a given seed gives the same rows whatever the
number of rows asked for (a shorter set is a prefix of a longer one) and however they are
chunked: `make_criteo_like` in memory, `write_criteo_like_parquet` (one row group per chunk,
the codec declarations stored in the file for `recforge.data.ctr_formats.ParquetEvents`,
memory bounded by one chunk) and `write_criteo_tsv` (the raw Criteo TSV format, for
`recforge.data.ctr_formats.read_criteo`) hold the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.ctr_formats import (
    LABEL,
    CTRData,
    categorical_names,
    criteo_data,
    criteo_events,
    criteo_fields,
    numeric_names,
    write_events_parquet,
)
from recforge.params import MAX_COUNT, SEED, Integer, Real, check_all

#: rows per random stream; chunks are cut from blocks of this size
BLOCK_ROWS = 1 << 16
_CALIBRATION_ROWS = 1 << 15
_WORLD, _VOCABULARY, _ROWS, _CALIBRATION = range(4)

WORLD_RULES = {
    "n_numeric": Integer(0, 1000), "n_categorical": Integer(1, 1000),
    "vocab_min": Integer(2, 10_000_000), "vocab_max": Integer(2, 10_000_000),
    "zipf_exponent": Real(0, 5), "linear_strength": Real(0, 10),
    "interaction_strength": Real(0, 10), "n_pairs": Integer(0, 10_000),
    "rank": Integer(1, 256), "missing_rate": Real(0, 0.9), "positive_rate": Real(0.001, 0.999),
    "seed": SEED,
}
DEFAULTS: dict[str, Any] = {
    "n_numeric": 13, "n_categorical": 26, "vocab_min": 10, "vocab_max": 100_000,
    "zipf_exponent": 1.1, "linear_strength": 1.0, "interaction_strength": 1.0, "n_pairs": 20,
    "rank": 4, "missing_rate": 0.1, "positive_rate": 0.25, "seed": 0,
}
ROWS = Integer(1, MAX_COUNT)


def make_criteo_like(n_rows: int, *, numeric: str = "log_squared", min_count: int = 10,
                     hashed_buckets: int | None = None,
                     **params: Any) -> tuple[CTRData, np.ndarray]:
    """``n_rows`` rows in memory as `CTRData` (as `read_criteo` would read them, numeric
    columns transformed by ``numeric``; fields declared by `criteo_fields`) and the true
    click probability of each row. ``params``: the generator's parameters (`DEFAULTS`)."""
    world = CriteoLikeWorld(**params)
    frame, probability = world.rows(0, ROWS.check("n_rows", n_rows))
    return criteo_data(frame, n_numeric=world.n_numeric, n_categorical=world.n_categorical,
                       numeric=numeric, min_count=min_count, hashed_buckets=hashed_buckets,
                       name="criteo-like"), probability


def criteo_like_chunks(n_rows: int, chunk_rows: int,
                       **params: Any) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """Raw frames (``label``, raw ``I*`` with NaN, ``C*`` categories) of at most
    ``chunk_rows`` rows and their true probabilities; memory bounded by one chunk."""
    world = CriteoLikeWorld(**params)
    n_rows = ROWS.check("n_rows", n_rows)
    chunk_rows = ROWS.check("chunk_rows", chunk_rows)
    for start in range(0, n_rows, chunk_rows):
        yield world.rows(start, min(n_rows, start + chunk_rows))


def write_criteo_like_parquet(path: str | Path, n_rows: int, *, chunk_rows: int = 1 << 18,
                              numeric: str = "log_squared", min_count: int = 10,
                              hashed_buckets: int | None = None, **params: Any) -> Path:
    """Stream ``n_rows`` rows to a Parquet file, one row group per chunk (atomic): ``label``,
    the transformed ``I*`` and the ``C*`` categories, with the `criteo_fields` declarations
    in the schema metadata. The true probabilities are not stored (regenerate them with
    `criteo_like_chunks`)."""
    world = CriteoLikeWorld(**params)
    fields = criteo_fields(world.n_numeric, world.n_categorical, numeric=numeric,
                           min_count=min_count, hashed_buckets=hashed_buckets)
    frames = (criteo_events(frame, world.n_numeric, numeric, "").context.assign(
        **{LABEL: frame[LABEL].to_numpy(np.int8)})
        for frame, _ in criteo_like_chunks(n_rows, chunk_rows, **params))
    return write_events_parquet(path, frames, fields)


def write_criteo_tsv(path: str | Path, n_rows: int, *, chunk_rows: int = 1 << 18,
                     **params: Any) -> Path:
    """Stream ``n_rows`` raw rows to a header-less Criteo TSV (label, integer ``I*``, hex
    ``C*``, missing values empty); atomic."""
    from recforge.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        for frame, _ in criteo_like_chunks(n_rows, chunk_rows, **params):
            frame = frame.astype({LABEL: np.int8, **{c: "Int64" for c in frame.columns
                                                     if c.startswith("I")}})
            frame.to_csv(out, sep="\t", header=False, index=False, na_rep="",
                         lineterminator="\n")
    return Path(path)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class CriteoLikeWorld:
    """The generator's fixed parameters (module docstring): vocabularies, popularity laws,
    weights, embeddings and bias; `rows` draws any range of rows."""

    def __init__(self, **params: Any):
        values = check_all(WORLD_RULES, {**DEFAULTS, **params})
        self.__dict__.update(values)
        if self.vocab_max < self.vocab_min:
            raise ValueError(f"vocab_max ({self.vocab_max}) must be at least vocab_min "
                             f"({self.vocab_min})")
        n_possible = self.n_categorical * (self.n_categorical - 1) // 2
        if self.n_pairs > n_possible:
            raise ValueError(f"n_pairs: {self.n_categorical} categorical fields make only "
                             f"{n_possible} pairs, got {self.n_pairs}")
        rng = _rng(self.seed, _WORLD)
        sizes = np.exp(rng.uniform(np.log(self.vocab_min), np.log(self.vocab_max),
                                   self.n_categorical))
        self.sizes = np.round(sizes).astype(np.int64)
        exponents = self.zipf_exponent * rng.uniform(0.8, 1.2, self.n_categorical)
        self.cdfs = [_zipf_cdf(size, a) for size, a in zip(self.sizes, exponents)]
        self.orders = [rng.permutation(size) for size in self.sizes]
        self.missing = rng.uniform(0, self.missing_rate, self.n_categorical + self.n_numeric)
        importance = rng.lognormal(0, 0.5, self.n_categorical + self.n_numeric)
        importance *= self.linear_strength / np.sqrt((importance ** 2).sum())
        self.weights = [rng.standard_normal(size) * g
                        for size, g in zip(self.sizes, importance)]
        self.mu = rng.uniform(0.5, 4.0, self.n_numeric)
        self.spread = rng.uniform(0.5, 1.5, self.n_numeric)
        self.numeric_weights = importance[self.n_categorical:] * rng.choice([-1, 1],
                                                                             self.n_numeric)
        pairs = np.array([(a, b) for a in range(self.n_categorical)
                          for b in range(a + 1, self.n_categorical)]).reshape(-1, 2)
        self.pairs = pairs[np.sort(rng.choice(len(pairs), self.n_pairs, replace=False))]
        scale = self.interaction_strength / np.sqrt(max(self.n_pairs, 1))
        self.embeddings = {int(j): (rng.standard_normal((self.sizes[j], self.rank))
                                    * (scale ** 0.5 / self.rank ** 0.25)).astype(np.float32)
                           for j in np.unique(self.pairs)}
        self.bias = self._calibrated_bias()
        self._last: tuple[int, Any] | None = None

    @cached_property
    def vocabularies(self) -> list[pd.Index]:
        """Each categorical field's values: distinct 8-digit hex strings."""
        out = []
        for j, size in enumerate(self.sizes):
            ints = _rng(self.seed, _VOCABULARY, j).choice(2**32, size, replace=False)
            out.append(pd.Index(np.char.mod("%08x", ints).astype(object)))
        return out

    def rows(self, start: int, stop: int) -> tuple[pd.DataFrame, np.ndarray]:
        """Rows ``[start, stop)``: the raw frame and the true probabilities."""
        first, last = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS
        parts = [self._cached_block(k) for k in range(first, last + 1)]
        codes = np.concatenate([p[0] for p in parts])
        raw = np.concatenate([p[1] for p in parts])
        logits = np.concatenate([p[2] for p in parts])
        draws = np.concatenate([p[3] for p in parts])
        cut = slice(start - first * BLOCK_ROWS, stop - first * BLOCK_ROWS)
        probability = _sigmoid(self.bias + logits[cut])
        columns: dict[str, Any] = {LABEL: (draws[cut] < probability).astype(np.float64)}
        columns |= dict(zip(numeric_names(self.n_numeric), raw[cut].T))
        for j, name in enumerate(categorical_names(self.n_categorical)):
            columns[name] = pd.Categorical.from_codes(codes[cut, j],
                                                      categories=self.vocabularies[j])
        return pd.DataFrame(columns), probability

    def _cached_block(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Block ``k`` (the last one drawn is kept: consecutive chunks often share one)."""
        if self._last is None or self._last[0] != k:
            self._last = (k, self._block(_rng(self.seed, _ROWS, k)))
        return self._last[1]

    def _block(self, rng: np.random.Generator,
               n: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One block: value codes (-1 missing), raw numeric values, logits without the bias
        and the uniform draws that decide the labels."""
        codes = np.empty((n, self.n_categorical), dtype=np.int32)
        logits = np.zeros(n)
        for j in range(self.n_categorical):
            rank = np.searchsorted(self.cdfs[j], rng.random(n), side="right")
            value = self.orders[j][np.minimum(rank, self.sizes[j] - 1)]
            gone = rng.random(n) < self.missing[j]
            codes[:, j] = np.where(gone, -1, value)
            logits += np.where(gone, 0.0, self.weights[j][value])
        raw = np.empty((n, self.n_numeric))
        for i in range(self.n_numeric):
            x = np.floor(np.exp(self.mu[i] + self.spread[i] * rng.standard_normal(n)))
            gone = rng.random(n) < self.missing[self.n_categorical + i]
            raw[:, i] = np.where(gone, np.nan, x)
            term = self.numeric_weights[i] * (np.log1p(x) - self.mu[i]) / self.spread[i]
            logits += np.where(gone, 0.0, term)
        for a, b in self.pairs.tolist():
            dot = (self.embeddings[a][codes[:, a]] * self.embeddings[b][codes[:, b]]).sum(1)
            logits += np.where((codes[:, a] < 0) | (codes[:, b] < 0), 0.0, dot)
        return codes, raw, logits, rng.random(n)

    def _calibrated_bias(self) -> float:
        """The bias whose mean probability on a calibration sample is ``positive_rate``
        (bisection; the mean is increasing in the bias)."""
        logits = self._block(_rng(self.seed, _CALIBRATION), _CALIBRATION_ROWS)[2]
        low, high = -30.0, 30.0
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if _sigmoid(mid + logits).mean() < self.positive_rate \
                else (low, mid)
        return (low + high) / 2


def _zipf_cdf(size: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, size + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _sigmoid(x: np.ndarray | float) -> Any:
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(x)))
