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

# KEYS: BANDS bucket keys, then the item's own record key.
# ARGV: item id, signature, minimum matching bytes, mode ("claim" | "restore"), restore cluster id,
#       then BANDS bucket fields.
CLAIM = """
local item = ARGV[1]
local signature = ARGV[2]
local needed = tonumber(ARGV[3])
local mode = ARGV[4]
local bands = #KEYS - 1
local own_key = KEYS[#KEYS]
local sig_bytes = #signature

local function cluster_of(record)
  return tonumber(string.sub(record, sig_bytes + 1))
end

local existing = redis.call('HGET', own_key, item)
if existing then
  return {cluster_of(existing), 0, -1}
end

local cluster, matched, best = tonumber(item), 0, -1
if mode == 'restore' then
  cluster = tonumber(ARGV[5])
else
  local seen = {}
  for i = 1, bands do
    local candidate = redis.call('HGET', KEYS[i], ARGV[5 + i])
    if candidate and not seen[candidate] then
      seen[candidate] = true
      local record = redis.call('HGET', 'nd:i:' .. math.floor(tonumber(candidate) / %(per_key)d), candidate)
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

for i = 1, bands do
  redis.call('HSETNX', KEYS[i], ARGV[5 + i], item)
end
redis.call('HSET', own_key, item, signature .. cluster)
return {cluster, matched, best}
""" % {"per_key": ITEMS_PER_KEY}


@dataclass(frozen=True)
class Placement:
    cluster_id: int
    matched_item_id: int | None  # the item whose similarity put this one in its cluster
    similarity: float | None


def _bucket_args(signature) -> tuple[list[str], list[str]]:
    keys, fields = [], []
    for band, bucket in enumerate(band_keys(signature)):
        keys.append(f"nd:b:{bucket % BUCKET_SHARDS}")
        # One integer (band in the top bits): Redis stores integer fields in a few bytes.
        fields.append(str((band << 48) | (bucket // BUCKET_SHARDS)))
    return keys, fields


def _item_key(item_id: int) -> str:
    return f"nd:i:{item_id // ITEMS_PER_KEY}"


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


class NearDuplicateIndex:
    def __init__(self, client: redis.Redis, threshold: float) -> None:
        self.client = client
        self.needed = matches_needed(threshold)
        self.script = client.register_script(CLAIM)

    def _call(self, item_id: int, body: str, mode: str, cluster_id: int = 0) -> Placement:
        signature = minhash(body)
        keys, fields = _bucket_args(signature)
        cluster, matched, best = self.script(
            keys=[*keys, _item_key(item_id)],
            args=[item_id, compact(signature), self.needed, mode, cluster_id, *fields],
        )
        if not matched:
            return Placement(int(cluster), None, None)
        similarity = max(0.0, (best / SIGNATURE_BYTES - 1 / 256) / (1 - 1 / 256))
        return Placement(int(cluster), int(matched), round(similarity, 3))

    def claim(self, item_id: int, body: str) -> Placement:
        """Place a new item: in the cluster of its best match above the threshold, else its own."""
        return self._call(item_id, body, "claim")

    def restore(self, item_id: int, body: str, cluster_id: int) -> None:
        """Put a stored item back with the cluster it already has (after Redis lost the index)."""
        self._call(item_id, body, "restore", cluster_id)

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
