"""Prometheus metrics. Every process writes its own; `ingest up` sums them and serves them.

With PROMETHEUS_MULTIPROC_DIR set (by `ingest up` for its children, when INGEST_METRICS_PORT is
set), prometheus_client keeps each process's values in files under that folder; without it they
stay in memory and nobody reads them.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ITEMS = Counter("ingest_items", "Inputs and entries by format and outcome", ["format", "outcome"])
FEED_POLLS = Counter("ingest_feed_polls", "Feed polls by HTTP status (error: no answer)", ["status"])
TASK_SECONDS = Histogram(
    "ingest_task_seconds",
    "Time spent in one task",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
