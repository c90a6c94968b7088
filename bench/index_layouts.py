"""Redis's CPU per placed item with N items indexed, in each near-duplicate index layout.

    python -m bench.index_layouts 1000000

For each layout: a private Redis filled with N synthetic items (bench/dedup_bench.py's fill, in that
layout), then 2,000 articles placed 20 a call, as a worker places a message's items. Reported: the
server's own CPU (INFO cpu) per item, the client's wall time per item, and Redis's per-command
figures (INFO commandstats), which show where a listpack's length costs. A one-off comparison
(layout 1 is what version 1 wrote), not part of `make bench`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from shared.dedup import ITEMS_PER_KEY, NearDuplicateIndex, Placing, ensure_compact_hashes
from shared.fingerprint import BANDS, HASHES, ROWS
from shared.index_layout import LIVE_KEY, SHARD_BITS
from tests.corpus import synthetic_stories
from worker.broker import start_redis_server

CHUNK = 50_000
PLACED = 2000
PER_CALL = 20
PREFIXES = {1: "nd:", 2: "nd:v2:"}


def fill(client: redis.Redis, layout: int, count: int, rng: np.random.Generator) -> None:
    bits, prefix = SHARD_BITS[layout], PREFIXES[layout]
    for start in range(1, count + 1, CHUNK):
        ids = np.arange(start, min(start + CHUNK, count + 1), dtype=np.uint64)
        signatures = rng.integers(0, 2**32, (len(ids), HASHES), dtype=np.uint64)
        rows = signatures.reshape(len(ids), BANDS, ROWS)
        with np.errstate(over="ignore"):
            buckets = rows[:, :, 0] * np.uint64(0x9E3779B97F4A7C15) ^ rows[:, :, 1] * np.uint64(0xBF58476D1CE4E5B9)
        shards = buckets % np.uint64(1 << bits)
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
    client.set(LIVE_KEY, prefix)


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def measure(layout: int, items: int, bodies: list[str]) -> str:
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_redis_server(Path(folder), persistent=False)
        try:
            client = redis.Redis.from_url(url)
            ensure_compact_hashes(client)
            fill(client, layout, items, np.random.default_rng(7))
            index = NearDuplicateIndex(client, 0.4)
            index.layout = layout
            client.config_resetstat()
            before, started = server_cpu(client), time.perf_counter()
            for first in range(0, PLACED, PER_CALL):
                index.place([Placing(10_000_000 + n, bodies[n]) for n in range(first, first + PER_CALL)])
            wall, used = time.perf_counter() - started, server_cpu(client) - before
            stats = client.info("commandstats")
        finally:
            process.terminate()
            process.wait()
    per_command = ", ".join(
        f"{name.removeprefix('cmdstat_').upper()} {stats[name]['usec_per_call']:.1f} µs"
        for name in ("cmdstat_hget", "cmdstat_hsetnx")
        if name in stats
    )
    return f"| {layout} | {items:,} | {used / PLACED * 1e6:,.0f} | {wall / PLACED * 1e6:,.0f} | {per_command} |"


def main() -> None:
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    bodies = ["\n\n".join(story["paragraphs"]) for story in synthetic_stories(PLACED, seed=5)]
    print("| layout | items indexed | Redis CPU µs/item | client wall µs/item | per command |")
    print("| --- | --- | --- | --- | --- |")
    for layout in (1, 2):
        print(measure(layout, items, bodies), flush=True)


if __name__ == "__main__":
    main()
