"""The /metrics endpoints: `ingest up`'s (every child's counters summed) and each role's started alone
(`ingest watch`, `worker`, `beat` with INGEST_METRICS_PORT set), every sample labelled with its role.

A worker's prefork pool processes write their values to files (prometheus_client's multiprocess
mode), summed by the worker's main process when scraped. The queue gauges come from the roles that
see the whole service (`up`, the watcher, the scheduler), never from each worker: Prometheus would
count the same queue once a worker.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import redis
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from shared.errors import ServiceError
from worker.broker import queue_counts


def _body_of(envelope: dict) -> str | bytes:
    """A queued task's body: base64 where its envelope says so (kombu's default, which senders before
    the JSON-text setting used), else its JSON text as it is."""
    body = envelope["body"]
    return base64.b64decode(body) if envelope["properties"].get("body_encoding") == "base64" else body


def _seen_at_of(raw_message: bytes) -> float | None:
    """When the oldest input of a queued ingest message arrived (its seen_at), as a Unix time."""
    try:
        envelope = json.loads(raw_message)
        args = json.loads(_body_of(envelope))[0]
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


class RoleLabelled:
    """The metrics of some collectors, each sample with `role` added: one scrape configuration for
    every service of a stack, and sums by role or over all of them."""

    def __init__(self, role: str, sources: list) -> None:
        self.role = role
        self.sources = sources

    def collect(self):
        # Always one sample, so a role with nothing counted yet (an idle worker: its pool writes no
        # file before its first task) still says who it is, to Prometheus and to `doctor --role`.
        alive = GaugeMetricFamily("ingest_role", "1 for the role this endpoint serves", labels=["role"])
        alive.add_metric([self.role], 1)
        yield alive
        for source in self.sources:
            for family in source.collect():
                labelled = Metric(family.name, family.documentation, family.type, family.unit)
                for sample in family.samples:
                    labels = {**sample.labels, "role": self.role}
                    labelled.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
                yield labelled


def role_registry(role: str, folder: Path | None, redis_url: str | None, queues: tuple[str, ...]) -> CollectorRegistry:
    """What a role serves: its processes' files summed (folder) or its own values (no folder), plus
    the queue gauges when given a Redis URL; all labelled with the role."""
    own = CollectorRegistry()
    if folder is not None:
        MultiProcessCollector(own, path=str(folder))
    sources = [own if folder is not None else REGISTRY]
    if redis_url is not None:
        sources.append(QueueCollector(redis_url, queues))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RoleLabelled(role, sources))
    return registry


def serve(host: str, port: int, registry: CollectorRegistry):
    """/metrics on host:port from a thread; ServiceError in one line when the port is taken."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ServiceError(f"cannot serve metrics on {host}:{port} ({exc.strerror})") from None
    return server
