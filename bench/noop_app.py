"""The baseline: a Celery app whose tasks do nothing but tell the benchmark they ran.

Run as `celery -A bench.noop_app worker --concurrency 2`, on the same Redis as the service. It uses the
transport settings the service uses (JSON only: a root worker refuses pickle; late acknowledgement,
prefetch 1, no results), so the difference between a figure of the service and this one is the
service's own work, not Celery's per-message cost.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache

import redis
from celery import Celery

QUEUE = "bench-noop"
DONE_KEY = "bench:noop:done"
LATENCY_KEY = "bench:noop:latency"

app = Celery("bench_noop")
app.conf.update(
    broker_url=os.environ.get("BENCH_NOOP_REDIS_URL"),
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    result_backend=None,
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
)


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url)


@app.task(name="bench.noop")
def noop() -> None:
    """Counts itself: the benchmark stops its clock when the counter reaches the number sent."""
    _redis().incr(DONE_KEY)


@app.task(name="bench.noop_timed")
def noop_timed(sent_at: float) -> None:
    """Records send -> run in seconds: the bare Celery latency, compared with rename -> committed row."""
    _redis().rpush(LATENCY_KEY, time.time() - sent_at)
