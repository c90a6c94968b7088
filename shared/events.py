"""The stream of what happened, for the systems downstream: every outcome appended to the Redis Stream
`ingest:events` (capped with MAXLEN ~), read with consumer groups, at least once.

An event is flat string fields (`event`, then the ids and names a consumer needs), so a ten-line
redis-py consumer reads it without decoding anything: see the README.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import redis

STREAM = "ingest:events"
READ_COUNT = 1000  # events a read returns at most
Event = dict[str, str]


def event(name: str, **fields: object) -> Event:
    """One event: its name and its fields as strings; fields that are None are left out."""
    return {"event": name, **{key: str(value) for key, value in fields.items() if value is not None}}


def publish(client: redis.Redis, events: Iterable[Mapping[str, str]], maxlen: int) -> None:
    """Append events in one round trip, in order; the stream keeps about `maxlen` of the newest."""
    events = list(events)
    if not events:
        return
    pipe = client.pipeline(transaction=False)
    for one in events:
        pipe.xadd(STREAM, dict(one), maxlen=maxlen, approximate=True)
    pipe.execute()


def read(
    client: redis.Redis, after: str, count: int = READ_COUNT, block_ms: int | None = None
) -> list[tuple[str, Event]]:
    """Events after the id `after` ("0": from the first kept), oldest first; waits up to block_ms for one."""
    if block_ms is None:
        start = "-" if after in ("0", "0-0", "-") else f"({after}"
        found = client.xrange(STREAM, min=start, max="+", count=count)
    else:
        streams = client.xread({STREAM: after}, count=count, block=block_ms) or []
        found = streams[0][1] if streams else []
    return [(decoded(entry_id), {decoded(k): decoded(v) for k, v in fields.items()}) for entry_id, fields in found]


def decoded(value: bytes | str) -> str:
    """A Redis reply's bytes as text (clients made without decode_responses)."""
    return value.decode() if isinstance(value, bytes) else value
