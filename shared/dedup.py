"""The near-duplicate index in Redis, shared by every worker, and its atomic claim.

Layout (small hashes, so Redis keeps them in its compact ziplist/listpack encoding):
- buckets: `nd:b:<bucket mod 65536>` field `<band, rest of bucket>` as one integer -> the first item
  id seen in that bucket
- items:   `nd:i:<item id // 256>`   field `<item id>`      -> compact signature (48 bytes) + cluster id

One Lua script looks up the item's buckets, verifies each candidate's estimated similarity, picks the
best match above the threshold, and inserts the item, all at once: two near-copies claimed at the same
moment by two workers run one after the other inside Redis, so the second sees the first.
A lookup touches BANDS buckets and a few candidates, whatever the number of items indexed.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.fingerprint import band_keys, compact, minhash

BUCKET_SHARDS = 1 << 16  # a bucket is 64 bits: 16 pick the key, 48 are the field
ITEMS_PER_KEY = 256
SIGNATURE_BYTES = 48
# Small hashes stay compact up to this many fields: set on the server by `ensure_compact_hashes`.
COMPACT_HASH_ENTRIES = 512

# Many items in one call (one round trip for a whole message), each placed in turn, so a near-copy
# later in the call sees the ones before it, exactly as if they had come one call each.
# Keys are built inside the script from compact arguments (five per item, not thirty): encoding
# arguments is most of a call's cost on the client. This needs a single Redis, not a cluster.
# ARGV: minimum matching bytes, then per item: item id, signature, mode ("claim" | "restore"),
#       restore cluster id, its BANDS buckets as "shard:field" separated by spaces.
# Returns per item: cluster id, matched item id (0: none), matching bytes (-1: not compared).
CLAIM = """
local needed = tonumber(ARGV[1])
local result = {}

local function record_key(item)
  return 'nd:i:' .. math.floor(tonumber(item) / %(per_key)d)
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
    table.insert(buckets, {'nd:b:' .. shard, field})
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

for n = 2, #ARGV, 5 do
  local cluster, matched, best = place(ARGV[n], ARGV[n + 1], ARGV[n + 2], ARGV[n + 3], ARGV[n + 4])
  table.insert(result, cluster)
  table.insert(result, matched)
  table.insert(result, best)
end
return result
""" % {"per_key": ITEMS_PER_KEY}


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


class NearDuplicateIndex:
    def __init__(self, client: redis.Redis, threshold: float) -> None:
        self.client = client
        self.needed = matches_needed(threshold)
        self.script = client.register_script(CLAIM)

    def place(self, placings: list[Placing]) -> list[Placement]:
        """Place many items in one atomic call, in the order given: the result for each, in that order."""
        if not placings:
            return []
        args: list[object] = [self.needed]
        for placing in placings:
            signature = minhash(placing.body)
            restoring = placing.restore_cluster_id is not None
            args += [placing.item_id, compact(signature), "restore" if restoring else "claim"]
            args += [placing.restore_cluster_id or 0, _bucket_list(signature)]
        flat = self.script(keys=[], args=args)
        return [_placement(*flat[n : n + 3]) for n in range(0, len(flat), 3)]

    def claim(self, item_id: int, body: str) -> Placement:
        """Place a new item: in the cluster of its best match above the threshold, else its own."""
        return self.place([Placing(item_id, body)])[0]

    def restore(self, item_id: int, body: str, cluster_id: int) -> None:
        """Put a stored item back with the cluster it already has (after Redis lost the index)."""
        self.place([Placing(item_id, body, cluster_id)])

    def clear(self) -> int:
        removed = 0
        for pattern in ("nd:b:*", "nd:i:*"):
            batch = []
            for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += self.client.delete(*batch)
                    batch = []
            if batch:
                removed += self.client.delete(*batch)
        return removed
