"""Redis's CPU per placed item with N items indexed, in each near-duplicate index layout.

    python -m bench.index_layouts 1000000

For each layout: a private Redis filled with N synthetic items (bench/dedup_bench.py's preload, in
that layout), then 2,000 articles placed 20 a call, as a worker places a message's items. Reported: the
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

from bench.dedup_bench import _preload
from shared.dedup import NearDuplicateIndex, Placing, ensure_compact_hashes
from tests.corpus import synthetic_stories
from worker.broker import start_redis_server

PLACED = 2000
PER_CALL = 20
PREFIXES = {1: "nd:", 2: "nd:v2:"}


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def measure(layout: int, items: int, bodies: list[str]) -> str:
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_redis_server(Path(folder), persistent=False)
        try:
            client = redis.Redis.from_url(url)
            ensure_compact_hashes(client)
            _preload(client, 1, items, np.random.default_rng(7), layout, PREFIXES[layout])
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
