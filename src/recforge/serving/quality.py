"""Quality of the lists the service serves, over a sliding window of the last ``size`` lists.

Per list, at the time it is served (the offline definitions of
`recforge.evaluation.metrics`, so that online and offline figures agree):

* **diversity**: intra-list diversity, the mean ``1 - cosine`` over the list's item pairs on
  the items' genres (or any item feature matrix), `intra_list_diversity`;
* **popularity bias**: the list's average recommended popularity (`average_popularity`, the
  training counts) over the catalogue's mean popularity: 1 serves as popular as a random
  item, above 1 favours popular items (Abdollahpouri et al., 2019);
* **item age**: the mean age in days of the list's items, from their release year (taken as
  1 January of that year) to the time served; items without a year are left out.

The window's figures are the means over its lists, and **coverage** is the share of the
catalogue in at least one list of the window (`catalog_coverage` over the window). Adding a
list costs ``O(k^2)``; reading the figures ``O(1)``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import scipy.sparse as sp

from recforge.evaluation.metrics import average_popularity, intra_list_diversity

SECONDS_PER_DAY = 86_400.0
#: item feature matrices up to this many entries are kept dense (faster row look-ups)
DENSE_MAX = 50_000_000


@dataclass(frozen=True)
class ListQuality:
    """One served list's figures (NaN where undefined: one item, no features, no years)."""

    diversity: float
    popularity_bias: float
    age_days: float


class QualityWindow:
    """The quality gauges over the last ``size`` served lists (module docstring).

    ``features``: item feature rows for diversity (None: diversity undefined);
    ``popularity``: training counts per item; ``years``: release year per item (NaN
    unknown) or None. Thread-safe."""

    def __init__(self, size: int, n_items: int, popularity: np.ndarray,
                 features: np.ndarray | sp.spmatrix | None = None,
                 years: np.ndarray | None = None):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.size, self.n_items = size, n_items
        self.popularity = np.asarray(popularity, dtype=np.float64)
        if features is not None and sp.issparse(features):
            features = features.toarray() if np.prod(features.shape) <= DENSE_MAX else features
        self.features = features
        self._released = None if years is None else np.array(
            [datetime(int(y), 1, 1, tzinfo=timezone.utc).timestamp() if np.isfinite(y)
             else np.nan for y in np.asarray(years, dtype=np.float64)])
        mean = float(self.popularity.mean()) if len(self.popularity) else 0.0
        self._mean_popularity = mean if mean > 0 else 1.0
        self._lists: deque[tuple[np.ndarray, ListQuality]] = deque()
        self._counts = np.zeros(n_items, dtype=np.int64)
        self._covered = 0
        self._sums = np.zeros(3)
        self._defined = np.zeros(3, dtype=np.int64)
        self._lock = threading.Lock()

    def measure(self, items: np.ndarray, now: float) -> ListQuality:
        """The figures of one list of item indices served at ``now`` (epoch seconds)."""
        items = np.asarray(items, dtype=np.int64)
        if not len(items):
            return ListQuality(math.nan, math.nan, math.nan)
        row = items[None, :]
        diversity = math.nan
        if self.features is not None and len(items) > 1:
            diversity = float(intra_list_diversity(row, self.features, len(items))[0])
        bias = float(average_popularity(row, self.popularity, len(items))[0]
                     ) / self._mean_popularity
        return ListQuality(diversity, bias, self._age_days(items, now))

    def _age_days(self, items: np.ndarray, now: float) -> float:
        if self._released is None:
            return math.nan
        released = self._released[items]
        released = released[np.isfinite(released)]
        if not len(released):
            return math.nan
        return float(np.mean(now - released) / SECONDS_PER_DAY)

    def add(self, items: np.ndarray, now: float) -> ListQuality:
        """Measure a served list and slide the window over it; returns its figures."""
        items = np.unique(np.asarray(items, dtype=np.int64))
        quality = self.measure(items, now)
        with self._lock:
            self._push(items, quality, +1)
            self._lists.append((items, quality))
            if len(self._lists) > self.size:
                old_items, old_quality = self._lists.popleft()
                self._push(old_items, old_quality, -1)
        return quality

    def _push(self, items: np.ndarray, quality: ListQuality, sign: int) -> None:
        before = self._counts[items] > 0
        self._counts[items] += sign
        after = self._counts[items] > 0
        self._covered += int(after.sum()) - int(before.sum())
        values = np.array([quality.diversity, quality.popularity_bias, quality.age_days])
        defined = np.isfinite(values)
        self._sums[defined] += sign * values[defined]
        self._defined[defined] += sign

    def figures(self) -> dict[str, float]:
        """``diversity``, ``coverage``, ``popularity_bias``, ``age_days`` of the window (NaN
        for a figure no list in it defines)."""
        with self._lock:
            means = np.divide(self._sums, self._defined, out=np.full(3, np.nan),
                              where=self._defined > 0)
            coverage = self._covered / self.n_items if self.n_items else math.nan
            return {"diversity": float(means[0]), "coverage": float(coverage),
                    "popularity_bias": float(means[1]), "age_days": float(means[2])}

    def __len__(self) -> int:
        return len(self._lists)
