"""The near-duplicate index in Redis, shared by every worker, and its atomic claim.

Layout (small hashes, so Redis keeps them in its compact ziplist/listpack encoding), under the live
prefix (`nd:live` names it; `nd:v2:` in a Redis that never had an index):
- buckets: `<prefix>b:<bucket mod 2^18>` field `<band, rest of bucket>` as one integer -> the first
  item id seen in that bucket
- items:   `<prefix>i:<item id // 256>`   field `<item id>` -> compact signature (48 bytes) + cluster id

Layout 1, before version 2, had 2^16 bucket hashes under `nd:` and `nd:g<N>:`: at a million items
that is ~366 fields a hash, and HGET scans a compact hash from one end, so a lookup cost five times
what it does at ~92. The layout is told by the prefix's name; the script serves both, and
`upgrade_layout` (run by `ingest migrate` and `ingest up`) rebuilds a layout 1 index as layout 2.

A rebuild (`ingest reindex`, while workers run) fills a fresh prefix (`nd:v2g<N>:`, named by
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

import re
from dataclasses import dataclass

import redis

from shared.fingerprint import band_keys, compact, minhash
from shared.index_layout import FIRST_PREFIX, LAYOUT, LEGACY_PREFIX, LIVE_KEY, SHARD_BITS, layout_of, legacy_index_in

BUILDING_KEY = "nd:building"  # the prefix a rebuild fills; while set, placing is deferred
GENERATION_KEY = "nd:generation"
BUCKET_SHARDS = 1 << SHARD_BITS[LAYOUT]
ITEMS_PER_KEY = 256
SIGNATURE_BYTES = 48
# Small hashes stay compact up to this many fields: set on the server by `ensure_compact_hashes`.
COMPACT_HASH_ENTRIES = 512

# Many items in one call (one round trip for a whole message), each placed in turn, so a near-copy
# later in the call sees the ones before it, exactly as if they had come one call each.
# Keys are built inside the script from compact arguments (five per item, not thirty): encoding
# arguments is most of a call's cost on the client. This needs a single Redis, not a cluster.
# ARGV: minimum matching bytes, the index to write ("live" | "building"), the layout the buckets were
#       computed for, then per item: item id, signature, mode ("claim" | "restore"), restore cluster
#       id, its BANDS buckets as "shard:field" separated by spaces.
# Returns per item: cluster id (0: deferred, a rebuild is on), matched item id (0: none), matching
# bytes (-1: not compared). An error naming the index's layout when the buckets are in another.
CLAIM = """
local needed = tonumber(ARGV[1])
local building = redis.call('GET', '%(building)s')
local prefix = redis.call('GET', '%(live)s') or '%(first)s'
local result = {}
if ARGV[2] == 'building' then
  if not building then return redis.error_reply('no index rebuild is running') end
  prefix = building
elseif building then
  for n = 4, #ARGV, 5 do
    table.insert(result, 0)
    table.insert(result, 0)
    table.insert(result, -1)
  end
  return result
end
local layout = string.find(prefix, '^nd:v2') and '2' or '1'
if ARGV[3] ~= layout then return redis.error_reply('index layout ' .. layout) end

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

  -- Each bucket is claimed first (HSETNX): where that succeeds the bucket was empty and holds no
  -- candidate, so only the buckets another item holds are read (HGET). The same buckets end set,
  -- with half the calls for an item unlike any other (most of them). The list is walked as it is
  -- parsed: no table a bucket (7 %% of the script's time).
  local cluster, matched, best = tonumber(item), 0, -1
  local seen = {}
  local bucket_prefix = prefix .. 'b:'
  for shard, field in string.gmatch(bucket_list, '(%%d+):(%%d+)') do
    local bucket = bucket_prefix .. shard
    if redis.call('HSETNX', bucket, field, item) == 0 and mode ~= 'restore' then
      local candidate = redis.call('HGET', bucket, field)
      if not seen[candidate] then
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
  end
  if mode == 'restore' then
    cluster = tonumber(restore_cluster)
  elseif best < needed then
    cluster, matched = tonumber(item), 0
  end
  redis.call('HSET', own_key, item, signature .. cluster)
  return cluster, matched, best
end

for n = 4, #ARGV, 5 do
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


def bucket_list(buckets: list[int], layout: int = LAYOUT) -> str:
    """An item's BANDS buckets as "shard:field ...": key `<prefix>b:<shard>`, field `<field>`."""
    # The field is one integer (band in the top bits): Redis stores integer fields in a few bytes.
    bits = SHARD_BITS[layout]
    mask = (1 << bits) - 1
    return " ".join(
        f"{bucket & mask}:{(band << (64 - bits)) | (bucket >> bits)}" for band, bucket in enumerate(buckets)
    )


# The prefixes a rebuild fills, in either layout: `nd:g<N>:` (1), `nd:v2g<N>:` (2).
GENERATION = re.compile(r"^nd:(?:v2)?g\d+:$")


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
        self.layout = LAYOUT  # of the index placing writes to, as last heard from the script
        self._adopt_legacy_index()

    def _adopt_legacy_index(self) -> None:
        """Name the live index once: a layout 1 index never rebuilt lives under `nd:` with `nd:live`
        unset, and must stay live (the script's default is a fresh layout 2 index) until upgraded."""
        if not self.client.exists(LIVE_KEY):
            self.client.set(LIVE_KEY, LEGACY_PREFIX if legacy_index_in(self.client) else FIRST_PREFIX, nx=True)

    def place(self, placings: list[Placing], into: str = "live") -> list[Placement | None]:
        """Place many items in one atomic call, in the order given: the result for each, in that order;
        None for each while a rebuild is on (into="live"): the rebuild places them when it is done."""
        if not placings:
            return []
        signed = [(placing, minhash(placing.body)) for placing in placings]
        signed = [(placing, compact(signature), band_keys(signature)) for placing, signature in signed]
        for _attempt in range(3):  # a rebuild may switch the layout between our calls, once or twice
            try:
                flat = self.script(keys=[], args=self._arguments(signed, into))
                break
            except redis.exceptions.ResponseError as exc:
                self._read_error(exc)
        else:
            raise RebuildError("the index's layout kept changing: is another `ingest reindex` looping?")
        return [_placement(*flat[n : n + 3]) if flat[n] else None for n in range(0, len(flat), 3)]

    def _arguments(self, signed: list[tuple[Placing, bytes, list[int]]], into: str) -> list[object]:
        args: list[object] = [self.needed, into, self.layout]
        for placing, signature, buckets in signed:
            restoring = placing.restore_cluster_id is not None
            args += [placing.item_id, signature, "restore" if restoring else "claim"]
            args += [placing.restore_cluster_id or 0, bucket_list(buckets, self.layout)]
        return args

    def _read_error(self, exc: redis.exceptions.ResponseError) -> None:
        """Learn the index's layout from the script's refusal (the caller tries again), or raise."""
        message = str(exc)
        if "no index rebuild is running" in message:
            raise RebuildError("the rebuild's hold on the index expired: run `ingest reindex` again") from None
        found = re.search(r"index layout (\d+)", message)
        if found is None:
            raise exc
        self.layout = int(found.group(1))

    def live_layout(self) -> int:
        return layout_of(self.live_prefix())

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
        prefix = f"nd:v{LAYOUT}g{self.client.incr(GENERATION_KEY)}:"
        if not self.client.set(BUILDING_KEY, prefix, nx=True, ex=hold_seconds):
            raise RebuildError("another `ingest reindex` is rebuilding the index")
        # Also a version 1 index an upgrade made stale but died before dropping it.
        legacy = {LEGACY_PREFIX} if legacy_index_in(self.client) else set()
        for stale in (self._generations() | legacy) - {self.live_prefix(), prefix}:
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
        """The prefixes of rebuilt indexes present in Redis, in either layout."""
        found = set()
        for pattern in ("nd:g*:*", "nd:v2g*:*"):
            for key in self.client.scan_iter(match=pattern, count=1000):
                prefix = key.decode().split(":")[1]
                if GENERATION.match(f"nd:{prefix}:"):
                    found.add(f"nd:{prefix}:")
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
