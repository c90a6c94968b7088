"""(b) The baseline: a no-op Celery task, one message each, on the same Redis and concurrency as the service.

Throughput: `docs` messages sent from this process, timed from the first send until the tasks' counter
reaches the number sent. Latency: one timed message every 20 ms, send -> task run. Both are what
Celery alone costs on this machine now, so the service's figures are printed as ratios to them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import redis

from bench import noop_app
from bench.corpus import ROOT
from bench.site import flush_redis, wait_for
from bench.stats import Baseline, Section, median, percentile, runs_text, say
from bench.suite import Context
from worker.lifetime import die_with_parent

LATENCY_MESSAGES = 200
LATENCY_SPACING = 0.02


def start_worker(redis_url: str, concurrency: int) -> subprocess.Popen:
    env = {**os.environ, "BENCH_NOOP_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "celery", "-A", "bench.noop_app", "worker", "--concurrency", str(concurrency)]
    # The same flags `ingest up` gives its worker.
    argv += ["--without-mingle", "--without-gossip", "--loglevel", "WARNING", "--queues", noop_app.QUEUE]
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent()
    )


def stop_worker(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tree_rss_mb(pid: int) -> float:
    """The largest resident set among a process and its children, in MB."""
    root = psutil.Process(pid)
    return max(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6


def measure_throughput(client: redis.Redis, messages: int, timeout: float) -> float:
    client.delete(noop_app.DONE_KEY)
    started = time.perf_counter()
    for _ in range(messages):
        noop_app.noop.apply_async(queue=noop_app.QUEUE)
    wait_for(lambda: int(client.get(noop_app.DONE_KEY) or 0) >= messages, timeout, "the no-op tasks", 0.01)
    return messages / (time.perf_counter() - started)


def measure_latency(client: redis.Redis, timeout: float) -> list[float]:
    client.delete(noop_app.LATENCY_KEY)
    next_send = time.monotonic()
    for _ in range(LATENCY_MESSAGES):
        time.sleep(max(0.0, next_send - time.monotonic()))  # a paced sender, not a wait on a condition
        noop_app.noop_timed.apply_async(args=[time.time()], queue=noop_app.QUEUE)
        next_send += LATENCY_SPACING
    wait_for(lambda: client.llen(noop_app.LATENCY_KEY) >= LATENCY_MESSAGES, timeout, "the timed no-op tasks")
    return [float(value) * 1000 for value in client.lrange(noop_app.LATENCY_KEY, 0, -1)]


@contextmanager
def ready_worker(context: Context) -> Iterator[tuple[redis.Redis, subprocess.Popen]]:
    """A no-op worker on a flushed Redis, ready when a first task has run: the pool is up and consuming."""
    flush_redis(context.redis_url)
    noop_app.app.conf.broker_url = context.redis_url
    client = redis.Redis.from_url(context.redis_url)
    worker = start_worker(context.redis_url, context.options.concurrency)
    try:
        noop_app.noop_timed.apply_async(args=[time.time()], queue=noop_app.QUEUE)
        wait_for(lambda: client.llen(noop_app.LATENCY_KEY) >= 1, 60, "the no-op worker to start")
        yield client, worker
    finally:
        stop_worker(worker)


def run_once(context: Context) -> tuple[float, list[float], float]:
    with ready_worker(context) as (client, worker):
        rate = measure_throughput(client, context.options.docs, context.options.timeout)
        latencies = measure_latency(client, 120)
        return rate, latencies, tree_rss_mb(worker.pid)


def paired_rate(context: Context) -> float:
    """The baseline's throughput once more, right before a burst: what the machine gave at that
    moment (its speed moves by a third within the hour here, more than a run of three lasts)."""
    with ready_worker(context) as (client, _worker):
        return measure_throughput(client, context.options.docs, context.options.timeout)


def run(context: Context) -> Section:
    rates, p50s, p99s, rss = [], [], [], []
    for number in range(context.options.runs):
        rate, latencies, worker_rss = run_once(context)
        rates.append(rate)
        p50s.append(percentile(latencies, 50))
        p99s.append(percentile(latencies, 99))
        rss.append(worker_rss)
        say(f"baseline run {number + 1}: {rate:,.0f} msg/s, p50 {p50s[-1]:.2f} ms, p99 {p99s[-1]:.2f} ms")
    context.baseline = Baseline(median(rates), median(p50s), median(p99s), median(rss))
    section = Section("(b) baseline: a no-op Celery task, one message each (bench/noop_app.py)")
    section.lines += [
        f"`celery -A bench.noop_app worker --concurrency {context.options.concurrency} --without-mingle "
        "--without-gossip`, JSON, late acknowledgement, prefetch 1, the same Redis as the service. "
        f"Throughput: {context.options.docs:,} messages sent from one process, first send to the last task run. "
        f"Latency: {LATENCY_MESSAGES} messages 20 ms apart, send to task run. Median of {len(rates)} runs.",
        "",
    ]
    section.table(
        ["figure", "median", "runs"],
        [
            ["messages/s", f"{median(rates):,.0f}", runs_text(rates)],
            ["latency p50 ms", f"{median(p50s):.2f}", runs_text(p50s, 2)],
            ["latency p99 ms", f"{median(p99s):.2f}", runs_text(p99s, 2)],
            ["largest worker process RSS MB", f"{median(rss):.0f}", runs_text(rss)],
        ],
    )
    return section
