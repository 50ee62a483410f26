"""The service's Prometheus metrics (``GET /metrics``, the text exposition format).

* ``recforge_requests_total{route,status}``: requests by route template and status code;
* ``recforge_request_latency_seconds{route}``: whole-request latency histogram;
* ``recforge_stage_latency_seconds{stage}``: the request path's stages (``features``,
  ``retrieve``, ``rank``, ``rerank``, ``filter``);
* ``recforge_model_info{version,arm}``: 1 for the version serving each arm (``default``:
  the active version, for users outside every experiment);
* ``recforge_feature_store_latency_seconds{op}``: feature-store reads and writes;
* ``recforge_event_lag_seconds``: ingestion time minus the event's own timestamp, of the
  latest ingested event;
* quality gauges over the sliding window of served lists (`recforge.serving.quality`):
  ``recforge_list_diversity``, ``recforge_catalogue_coverage``, ``recforge_item_age_days``,
  ``recforge_popularity_bias``.

Several uvicorn workers: with ``PROMETHEUS_MULTIPROC_DIR`` set (``recforge serve --workers
N`` sets it to a fresh folder before the workers start), every worker writes its values to
files there and a scrape of any worker aggregates them (prometheus_client's multiprocess
mode): counters and histograms are summed, the model info and event lag report the maximum
over workers, the quality gauges the most recently set worker's value.
"""

from __future__ import annotations

import math
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: request latency buckets (seconds): the 50 ms bar and the 200 ms alert fall on edges
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
                   0.2, 0.5, 1.0, 2.5)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
QUALITY_GAUGES = {"diversity": "recforge_list_diversity",
                  "coverage": "recforge_catalogue_coverage",
                  "age_days": "recforge_item_age_days",
                  "popularity_bias": "recforge_popularity_bias"}
_QUALITY_HELP = {
    "diversity": "mean intra-list diversity (1 - genre cosine) of the recently served lists",
    "coverage": "share of the catalogue in at least one recently served list",
    "age_days": "mean age in days (from release) of the recently served items",
    "popularity_bias": "average popularity of recently served items over the catalogue mean",
}


def multiprocess() -> bool:
    """Whether the metrics are shared between worker processes (module docstring)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The metrics of one app, in their own registry (several apps in one process, as in
    tests, do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter("recforge_requests_total", "requests by route and status",
                                ["route", "status"], registry=reg)
        self.latency = Histogram("recforge_request_latency_seconds", "request latency",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=reg)
        self.stage = Histogram("recforge_stage_latency_seconds", "latency of each stage of "
                               "the request path", ["stage"], buckets=STAGE_BUCKETS,
                               registry=reg)
        self.model_info = Gauge("recforge_model_info", "1 for the model version serving each "
                                "arm", ["version", "arm"], registry=reg,
                                multiprocess_mode="max")
        self.store_latency = Histogram("recforge_feature_store_latency_seconds",
                                       "feature store latency by operation", ["op"],
                                       buckets=STAGE_BUCKETS, registry=reg)
        self.event_lag = Gauge("recforge_event_lag_seconds", "ingestion time minus the event "
                               "time of the latest ingested event", registry=reg,
                               multiprocess_mode="max")
        self.quality = {key: Gauge(name, _QUALITY_HELP[key], registry=reg,
                                   multiprocess_mode="mostrecent")
                        for key, name in QUALITY_GAUGES.items()}
        self._info: dict[str, str] = {}

    def set_model(self, arm: str, version: str) -> None:
        """Record that ``version`` serves ``arm`` (the arm's earlier version goes to 0)."""
        old = self._info.get(arm)
        if old is not None and old != version:
            self.model_info.labels(version=old, arm=arm).set(0)
        self.model_info.labels(version=version, arm=arm).set(1)
        self._info[arm] = version

    def set_quality(self, figures: dict[str, float]) -> None:
        """The quality gauges from `QualityWindow.figures` (undefined figures are skipped)."""
        for key, value in figures.items():
            if not math.isnan(value):
                self.quality[key].set(value)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type: this process's metrics, or every
        worker's in multiprocess mode."""
        registry: Any = self.registry
        if multiprocess():
            from prometheus_client import multiprocess as mp

            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
