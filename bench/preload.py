"""A large store made quickly for (f) scale: items, origins and ledger rows by bulk Core inserts, the
files of the ledger really present in seeds/, and the near-duplicate index filled to match.

What `ingest up` would leave after taking `files` files and storing `items` items, without running it
that long: every ledger row confirmed (its arrival is an origin), with the size and mtime the file on
disk has, so the watcher's re-scan walks them all and finds nothing to take.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import redis
from sqlalchemy import create_engine, text

from bench.corpus import Writer
from shared.db import dispose_engines
from shared.schema import upgrade_schema
from shared.dedup import FIRST_PREFIX, ITEMS_PER_KEY, ensure_compact_hashes
from shared.messages import file_arrival_id, sha256_hex
from shared.models import Item, Origin, TakenFile

CHUNK = 20_000
FILES_PER_FOLDER = 1_000
PRELOAD_FOLDER = "preload"
SENTENCES = 4_000


def sentence_pool() -> list[str]:
    writer = Writer(900)
    return [writer.sentence() for _ in range(SENTENCES)]


def file_text(number: int, pool: list[str]) -> str:
    paragraphs = [" ".join(pool[(number * 5 + k) % SENTENCES] for k in range(j, j + 3)) for j in (0, 3)]
    return f"Archived story number {number}\n\nThe Archive\n\n" + "\n\n".join(paragraphs) + "\n"


def write_files(seeds: Path, count: int, pool: list[str]) -> list[dict]:
    """`count` small articles under seeds/preload/NNN/; the ledger row of each, as the watcher writes it."""
    rows, now = [], datetime.now(UTC) - timedelta(days=1)
    for number in range(count):
        ref = f"{PRELOAD_FOLDER}/{number // FILES_PER_FOLDER:03d}/archived-{number:07d}.txt"
        path = seeds / ref
        if number % FILES_PER_FOLDER == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        payload = file_text(number, pool).encode()
        path.write_bytes(payload)
        info = os.stat(path)
        digest = sha256_hex(payload)
        arrival = file_arrival_id(ref, digest) + ":0"
        rows.append(
            {
                "ref": ref,
                "size": info.st_size,
                "mtime_ns": info.st_mtime_ns,
                "sha256": digest,
                "arrival_key": arrival,
                "confirmed": True,
                "taken_at": now,
            }
        )
    return rows


def item_rows(first: int, last: int, pool: list[str]) -> Iterator[tuple[dict, dict]]:
    """(item, origin) rows for ids first..last-1; the origin of item n < files is the ledger's file n."""
    stored_at = datetime.now(UTC) - timedelta(days=1)
    for item_id in range(first, last):
        body = " ".join(pool[(item_id * 7 + k) % SENTENCES] for k in range(3))
        item = {
            "id": item_id,
            "content_hash": "sha256:" + hashlib.sha256(f"preloaded item {item_id}".encode()).hexdigest(),
            "title": f"Archived story number {item_id}",
            "body": body,
            "source": "The Archive",
            "language": "en",
            "format": "text",
            "cluster_id": item_id,
            "ingested_at": stored_at,
        }
        origin = {"item_id": item_id, "kind": "file", "seen_at": stored_at}
        yield item, origin


def fill_store(url: str, items: int, ledger: list[dict], pool: list[str]) -> None:
    """Bulk Core inserts (executemany), CHUNK rows a statement; the ledger's files are the first origins."""
    upgrade_schema(url)
    dispose_engines()
    engine = create_engine(url)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("PRAGMA synchronous=OFF"))  # a template made once: durability is not needed
        for start in range(1, items + 1, CHUNK):
            pairs = list(item_rows(start, min(start + CHUNK, items + 1), pool))
            origins = []
            for item, origin in pairs:
                number = item["id"] - 1
                if number < len(ledger):
                    taken = ledger[number]
                    origin |= {"arrival_key": taken["arrival_key"], "ref": taken["ref"], "raw_sha256": taken["sha256"]}
                else:
                    origin |= {
                        "arrival_key": f"preloaded-{item['id']}:0",
                        "ref": f"archive/{item['id']}.txt",
                        "raw_sha256": None,
                    }
                origins.append(origin)
            connection.execute(Item.__table__.insert(), [item for item, _ in pairs])
            connection.execute(Origin.__table__.insert(), origins)
        for start in range(0, len(ledger), CHUNK):
            connection.execute(TakenFile.__table__.insert(), ledger[start : start + CHUNK])
    engine.dispose()


def fill_index(redis_url: str, items: int) -> None:
    """The near-duplicate index holding `items` items (synthetic signatures, bench/dedup_bench.py's layout)."""
    from bench.dedup_bench import _preload

    client = redis.Redis.from_url(redis_url)
    ensure_compact_hashes(client)
    _preload(client, 1, items, np.random.default_rng(7))


def forget_index_above(redis_url: str, first: int, last: int) -> None:
    """Drop the index records of items first..last: the next run's store reuses those ids for other items."""
    client = redis.Redis.from_url(redis_url)
    with client.pipeline(transaction=False) as pipe:
        for item_id in range(first, last + 1):
            pipe.hdel(f"{FIRST_PREFIX}i:{item_id // ITEMS_PER_KEY}", item_id)
        pipe.execute()
