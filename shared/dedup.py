"""The near-duplicate index in Redis, shared by every worker, and its atomic claim.

Layout (small hashes, so Redis keeps them in its compact ziplist/listpack encoding), under the live
prefix (`nd:live` names it; `nd:` until the first rebuild):
- buckets: `<prefix>b:<bucket mod 65536>` field `<band, rest of bucket>` as one integer -> the first
  item id seen in that bucket
- items:   `<prefix>i:<item id // 256>`   field `<item id>` -> compact signature (48 bytes) + cluster id

A rebuild (`ingest reindex`, while workers run) fills a fresh prefix (`nd:g<N>:`, named by
`nd:building`) from the store, then makes it live in one step. While it builds, placing new items
is deferred: the script answers "later", the item is stored without a cluster, and the rebuild
places every such item against the finished index once it is live. So no item is placed against
a half-built index, and none is left out: nothing splits a cluster.

One Lua script looks up the item's buckets, verifies each candidate's estimated similarity, picks the
best match above the threshold, and inserts the item, all at once: two near-copies claimed at the same
moment by two workers run one after the other inside Redis, so the second sees the first.
A lookup touches BANDS buckets and a few candidates, whatever the number of items indexed.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.fingerprint import band_keys, compact, minhash

LIVE_KEY = "nd:live"  # the prefix placing reads and writes
BUILDING_KEY = "nd:building"  # the prefix a rebuild fills; while set, placing is deferred
GENERATION_KEY = "nd:generation"
FIRST_PREFIX = "nd:"
BUCKET_SHARDS = 1 << 16  # a bucket is 64 bits: 16 pick the key, 48 are the field
ITEMS_PER_KEY = 256
SIGNATURE_BYTES = 48
# Small hashes stay compact up to this many fields: set on the server by `ensure_compact_hashes`.
COMPACT_HASH_ENTRIES = 512

# Many items in one call (one round trip for a whole message), each placed in turn, so a near-copy
# later in the call sees the ones before it, exactly as if they had come one call each.
# Keys are built inside the script from compact arguments (five per item, not thirty): encoding
# arguments is most of a call's cost on the client. This needs a single Redis, not a cluster.
# ARGV: minimum matching bytes, the index to write ("live" | "building"), then per item: item id,
#       signature, mode ("claim" | "restore"), restore cluster id, its BANDS buckets as
#       "shard:field" separated by spaces.
# Returns per item: cluster id (0: deferred, a rebuild is on), matched item id (0: none), matching
# bytes (-1: not compared).
CLAIM = """
local needed = tonumber(ARGV[1])
local building = redis.call('GET', '%(building)s')
local prefix = redis.call('GET', '%(live)s') or '%(first)s'
local result = {}
if ARGV[2] == 'building' then
  if not building then return redis.error_reply('no index rebuild is running') end
  prefix = building
elseif building then
  for n = 3, #ARGV, 5 do
    table.insert(result, 0)
    table.insert(result, 0)
    table.insert(result, -1)
  end
  return result
end

local function record_key(item)
  return prefix .. 'i:' .. math.floor(tonumber(item) / %(per_key)d)
end

local function place(item, signature, mode, restore_cluster, bucket_list)
  local own_key = record_key(item)
  local sig_bytes = #signature
  local function cluster_of(record)
    return tonumber(string.sub(record, sig_bytes + 1))
  end

  local existing = redis.call('HGET', own_key, item)
  if existing then
    return cluster_of(existing), 0, -1
  end

  local buckets = {}
  for shard, field in string.gmatch(bucket_list, '(%%d+):(%%d+)') do
    table.insert(buckets, {prefix .. 'b:' .. shard, field})
  end

  local cluster, matched, best = tonumber(item), 0, -1
  if mode == 'restore' then
    cluster = tonumber(restore_cluster)
  else
    local seen = {}
    for _, bucket in ipairs(buckets) do
      local candidate = redis.call('HGET', bucket[1], bucket[2])
      if candidate and not seen[candidate] then
        seen[candidate] = true
        local record = redis.call('HGET', record_key(candidate), candidate)
        if record then
          local same = 0
          for p = 1, sig_bytes do
            if string.byte(signature, p) == string.byte(record, p) then same = same + 1 end
          end
          if same > best or (same == best and tonumber(candidate) < matched) then
            best, matched = same, tonumber(candidate)
            if same >= needed then cluster = cluster_of(record) end
          end
        end
      end
    end
    if best < needed then cluster, matched = tonumber(item), 0 end
  end

  for _, bucket in ipairs(buckets) do
    redis.call('HSETNX', bucket[1], bucket[2], item)
  end
  redis.call('HSET', own_key, item, signature .. cluster)
  return cluster, matched, best
end

for n = 3, #ARGV, 5 do
  local cluster, matched, best = place(ARGV[n], ARGV[n + 1], ARGV[n + 2], ARGV[n + 3], ARGV[n + 4])
  table.insert(result, cluster)
  table.insert(result, matched)
  table.insert(result, best)
end
return result
"""

# The rebuilt index made live in one step, if it is still the one being built; the old prefix.
SWITCH = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return false end
local old = redis.call('GET', KEYS[1]) or ARGV[2]
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return old
"""
CLAIM = CLAIM % {"per_key": ITEMS_PER_KEY, "live": LIVE_KEY, "building": BUILDING_KEY, "first": FIRST_PREFIX}


@dataclass(frozen=True)
class Placement:
    cluster_id: int
    matched_item_id: int | None  # the item whose similarity put this one in its cluster
    similarity: float | None


def _bucket_list(signature) -> str:
    """The item's BANDS buckets as "shard:field ...": key `nd:b:<shard>`, field `<field>`."""
    # The field is one integer (band in the top bits): Redis stores integer fields in a few bytes.
    return " ".join(
        f"{bucket % BUCKET_SHARDS}:{(band << 48) | (bucket // BUCKET_SHARDS)}"
        for band, bucket in enumerate(band_keys(signature))
    )


def matches_needed(threshold: float) -> int:
    """The matching signature bytes that mean an estimated Jaccard of at least `threshold`."""
    chance = 1 / 256
    return int(-(-(threshold * (1 - chance) + chance) * SIGNATURE_BYTES // 1))


def ensure_compact_hashes(client: redis.Redis) -> None:
    """Let the index's small hashes hold COMPACT_HASH_ENTRIES fields compactly (memory per item)."""
    try:
        client.config_set("hash-max-ziplist-entries", COMPACT_HASH_ENTRIES)
    except redis.exceptions.ResponseError:
        pass  # a managed Redis may forbid CONFIG: the index still works, it only takes more memory


@dataclass(frozen=True)
class Placing:
    """One item to place: claimed (its best match decides its cluster) or restored with its own cluster."""

    item_id: int
    body: str
    restore_cluster_id: int | None = None


def _placement(cluster: int, matched: int, best: int) -> Placement:
    if not matched:
        return Placement(int(cluster), None, None)
    similarity = max(0.0, (best / SIGNATURE_BYTES - 1 / 256) / (1 - 1 / 256))
    return Placement(int(cluster), int(matched), round(similarity, 3))


class RebuildError(RuntimeError):
    """A rebuild that cannot start (another runs) or cannot finish (its claim on the index expired)."""


class NearDuplicateIndex:
    def __init__(self, client: redis.Redis, threshold: float) -> None:
        self.client = client
        self.needed = matches_needed(threshold)
        self.script = client.register_script(CLAIM)
        self.switch = client.register_script(SWITCH)

    def place(self, placings: list[Placing], into: str = "live") -> list[Placement | None]:
        """Place many items in one atomic call, in the order given: the result for each, in that order;
        None for each while a rebuild is on (into="live"): the rebuild places them when it is done."""
        if not placings:
            return []
        args: list[object] = [self.needed, into]
        for placing in placings:
            signature = minhash(placing.body)
            restoring = placing.restore_cluster_id is not None
            args += [placing.item_id, compact(signature), "restore" if restoring else "claim"]
            args += [placing.restore_cluster_id or 0, _bucket_list(signature)]
        try:
            flat = self.script(keys=[], args=args)
        except redis.exceptions.ResponseError as exc:
            if "no index rebuild is running" in str(exc):
                raise RebuildError("the rebuild's hold on the index expired: run `ingest reindex` again") from None
            raise
        return [_placement(*flat[n : n + 3]) if flat[n] else None for n in range(0, len(flat), 3)]

    def claim(self, item_id: int, body: str) -> Placement | None:
        """Place a new item: in the cluster of its best match above the threshold, else its own."""
        return self.place([Placing(item_id, body)])[0]

    def restore(self, item_id: int, body: str, cluster_id: int) -> None:
        """Put a stored item back with the cluster it already has (after Redis lost the index)."""
        self.place([Placing(item_id, body, cluster_id)])

    def live_prefix(self) -> str:
        return (self.client.get(LIVE_KEY) or FIRST_PREFIX.encode()).decode()

    def begin_rebuild(self, hold_seconds: int) -> str:
        """A fresh, empty prefix to build into, held for hold_seconds (renew with keep_rebuilding);
        from now on placing into the live index is deferred. What a crashed rebuild left is removed."""
        prefix = f"{FIRST_PREFIX}g{self.client.incr(GENERATION_KEY)}:"
        if not self.client.set(BUILDING_KEY, prefix, nx=True, ex=hold_seconds):
            raise RebuildError("another `ingest reindex` is rebuilding the index")
        for stale in self._generations() - {self.live_prefix(), prefix}:
            self.drop(stale)
        return prefix

    def keep_rebuilding(self, prefix: str, hold_seconds: int) -> None:
        if self.client.get(BUILDING_KEY) != prefix.encode() or not self.client.expire(BUILDING_KEY, hold_seconds):
            raise RebuildError("the rebuild's hold on the index expired: run `ingest reindex` again")

    def finish_rebuild(self, prefix: str) -> None:
        """The rebuilt index live in one step (placing resumes, against it), the old one dropped."""
        old = self.switch(keys=[LIVE_KEY, BUILDING_KEY], args=[prefix, FIRST_PREFIX])
        if old is None:
            raise RebuildError("the rebuild's hold on the index expired: run `ingest reindex` again")
        self.drop(old.decode())

    def _generations(self) -> set[str]:
        """The prefixes of rebuilt indexes present in Redis."""
        found = set()
        for key in self.client.scan_iter(match=f"{FIRST_PREFIX}g*:*", count=1000):
            generation = key.decode().split(":")[1]
            if generation[1:].isdigit():
                found.add(f"{FIRST_PREFIX}{generation}:")
        return found

    def drop(self, prefix: str) -> int:
        """Delete one index's keys (never the live or building markers, which are not under a prefix)."""
        removed = 0
        for pattern in (f"{prefix}b:*", f"{prefix}i:*"):
            batch = []
            for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += self.client.delete(*batch)
                    batch = []
            if batch:
                removed += self.client.delete(*batch)
        return removed

    def clear(self) -> int:
        """Empty the live index (as a Redis that lost its data would have it)."""
        return self.drop(self.live_prefix())
