"""The /metrics endpoint of `ingest up`: every process's counters summed, and the queue read live."""

from __future__ import annotations

import base64
import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from worker.broker import queue_counts


def _seen_at_of(raw_message: bytes) -> float | None:
    """When the oldest input of a queued ingest message arrived (its seen_at), as a Unix time."""
    try:
        envelope = json.loads(raw_message)
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        seen = [datetime.fromisoformat(i["seen_at"]).timestamp() for i in args[0]["inputs"]]
    except (ValueError, KeyError, IndexError, TypeError):
        return None  # not an ingest message (a feed task): it carries no arrival time
    return min(seen) if seen else None


def oldest_pending_seconds(client: redis.Redis, queues: tuple[str, ...]) -> float:
    """Age of the oldest work not done: the oldest queued arrival, or the oldest delivery not acknowledged."""
    now = time.time()
    ages = [now - score for _tag, score in client.zrange("unacked_index", 0, 0, withscores=True)]
    for queue in queues:
        oldest = client.lindex(queue, -1)  # kombu pushes on the left and pops on the right
        seen_at = _seen_at_of(oldest) if oldest else None
        if seen_at is not None:
            ages.append(now - seen_at)
    return max(ages, default=0.0)


class QueueCollector:
    def __init__(self, redis_url: str, queues: tuple[str, ...]) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.queues = queues

    def collect(self):
        try:
            counts = queue_counts(self.client, self.queues)
            oldest = oldest_pending_seconds(self.client, self.queues)
        except redis.exceptions.RedisError:
            return  # Redis away: the gauges are absent rather than wrong
        yield GaugeMetricFamily("ingest_queue_depth", "Messages waiting in the queues", value=counts["queued"])
        yield GaugeMetricFamily(
            "ingest_oldest_pending_seconds", "Age of the oldest input not yet done, queued or in flight", value=oldest
        )


def prepare_folder(folder: Path) -> Path:
    """An empty folder for this run's per-process metric files (counts start at zero each run)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def summed_registry(folder: Path, redis_url: str, queues: tuple[str, ...]) -> CollectorRegistry:
    """Every process's metric files under `folder` summed, and the queue gauges read live at each scrape."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    registry.register(QueueCollector(redis_url, queues))
    return registry


def serve(port: int, folder: Path, redis_url: str, queues: tuple[str, ...]):
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=summed_registry(folder, redis_url, queues))
    return server
