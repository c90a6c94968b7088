"""Which layout the near-duplicate index in a Redis is in, told without building the index (and so
without numpy): what `ingest up` and `ingest doctor` ask at start. The layouts are in shared.dedup."""

from __future__ import annotations

import redis

LIVE_KEY = "nd:live"  # the prefix placing reads and writes
FIRST_PREFIX = "nd:v2:"  # a Redis that never had an index starts one here, in the current layout
LEGACY_PREFIX = "nd:"  # layout 1's index before its first rebuild, `nd:live` unset
LAYOUT = 2
# A bucket is 64 bits: the low `shard_bits` pick the hash, the rest (with the band above) is the field.
# Layout 2's field is at most 5 + 46 bits: exact in the doubles of Redis's Lua, should it ever count.
SHARD_BITS = {1: 16, 2: 18}


def layout_of(prefix: str) -> int:
    return 2 if prefix.startswith("nd:v2") else 1


def legacy_index_in(client: redis.Redis) -> bool:
    """A layout 1 index never rebuilt: items under `nd:i:`."""
    return next(client.scan_iter(f"{LEGACY_PREFIX}i:*", 1000), None) is not None


def index_layout(client: redis.Redis) -> int:
    """The layout of the index in this Redis, read without changing anything."""
    live = client.get(LIVE_KEY)
    if live is not None:
        return layout_of(live.decode())
    return 1 if legacy_index_in(client) else LAYOUT
