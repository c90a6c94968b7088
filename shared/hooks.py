"""Webhooks: every event of `ingest:events` that a hook's globs match, POSTed to its URL as signed
JSON, at least once and in order, without ever holding up ingestion. No database, no Celery.

Two steps, each a thin task of worker.tasks on the `hooks` queue, started by the scheduler's tick:
- fan_out() reads the new events with the stream's consumer group `hooks` and appends each one, as
  the very body it will be POSTed with, to the queue of every hook it matches: a Redis list a hook,
  capped at `max_pending` (the oldest dropped, and counted). Events are acknowledged to the group only
  once queued, so a fan-out that dies midway is done again (at least once).
- deliver() POSTs one hook's queued bodies oldest first and removes each once the receiver answered
  2xx. The first failure stops the round: the hook waits a capped, jittered, exponential backoff, its
  events wait with it, and its state (failures, last error) says so to `ingest status`.

A receiver checks `X-Ingest-Signature: sha256=<hex HMAC-SHA256 of the body with the hook's secret>`
and may drop repeats by `X-Ingest-Delivery` (the same for every try of one event to one hook).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis

from shared.events import STREAM, decoded
from shared.feeds import UnresolvableHost, UnsafeURL, check_url
from shared.redact import mask_secrets

GROUP = "hooks"  # the consumer group of the events stream that feeds every hook's queue
CONSUMER = "fan-out"
FAN_OUT_LOCK = "ingest:hooks:fan-out:lock"
FAN_OUT_COUNT = 1000  # events read a fan-out step
ROUND_SECONDS = 20.0  # a delivery round ends after this long, so one hook never keeps a worker process
ROUND_COUNT = 100  # bodies read from a hook's queue at a time

# Append bodies to a hook's queue, then drop its oldest beyond the cap and count them.
# KEYS: queue, state; ARGV: cap, body...; returns the number dropped.
_ENQUEUE = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
local over = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[1])
if over > 0 then
  redis.call('LTRIM', KEYS[1], over, -1)
  redis.call('HINCRBY', KEYS[2], 'dropped', over)
  return over
end
return 0
"""


@dataclass(frozen=True)
class HookRef:
    """What delivery needs of a hook row (shared.models.Hook)."""

    id: int
    url: str
    events: str
    secret: str

    @property
    def globs(self) -> list[str]:
        return parse_globs(self.events)


@dataclass(frozen=True)
class HookState:
    """Where one hook's deliveries stand, from Redis."""

    pending: int = 0
    failures: int = 0  # consecutive failed tries; 0 once one succeeds
    retry_at: float = 0.0  # epoch seconds before which no try is made
    last_error: str | None = None
    last_attempt: float | None = None
    last_delivered: float | None = None
    delivered: int = 0
    dropped: int = 0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def as_record(self) -> dict:
        return {
            "pending": self.pending,
            "failing": self.failing,
            "failures": self.failures,
            "last_error": self.last_error,
            "retry_at": _iso(self.retry_at) if self.failing else None,
            "last_delivered": _iso(self.last_delivered),
            "delivered": self.delivered,
            "dropped": self.dropped,
        }


@dataclass
class RoundReport:
    """One delivery round of one hook."""

    delivered: int = 0
    error: str | None = None
    retry_in: float | None = None
    failures: int = 0
    recovered: bool = False  # delivered after failing
    skipped: str | None = None  # why no round ran: "busy" (another holds the hook), "waiting" (backoff)


@dataclass
class FanOutReport:
    events: int = 0
    queued: dict[int, int] = field(default_factory=dict)  # hook id -> bodies queued
    dropped: dict[int, int] = field(default_factory=dict)  # hook id -> oldest dropped past the cap
    vanished: int = 0  # read once, then trimmed from the stream before they were queued


# -- pure pieces -----------------------------------------------------------------------------------


def parse_globs(events: str) -> list[str]:
    """`item.*,feed.failed` -> ["item.*", "feed.failed"]; empty means every event."""
    return [glob.strip() for glob in events.split(",") if glob.strip()] or ["*"]


def matches(globs: Sequence[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


def signature(secret: str, body: bytes) -> str:
    """The X-Ingest-Signature value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: the header matches the body's signature (constant-time comparison)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def body_of(event_id: str, fields: Mapping[str, str]) -> bytes:
    """The JSON a hook receives for one event: its stream id, its name and its fields."""
    data = {key: value for key, value in fields.items() if key != "event"}
    return json.dumps({"id": event_id, "event": fields.get("event"), "data": data}, ensure_ascii=False).encode()


def delivery_id(hook_id: int, body: bytes) -> str:
    """The same for every try of one event to one hook: `<hook id>-<event id>`."""
    return f"{hook_id}-{json.loads(body)['id']}"


def backoff_seconds(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Wait after the n-th failure in a row: base, 2 base, 4 base… capped, then jittered to between
    half and all of it, so hooks failing together do not retry together."""
    delay = min(cap, base * 2 ** min(failures - 1, 32))
    return delay * (0.5 + (rng or random).random() / 2)


def shown_url(url: str) -> str:
    """A hook URL as logs and lists show it: password masked and every query value `***`, since
    receivers often take their token there (`?token=…`)."""
    parts = urlsplit(mask_secrets(url))
    if not parts.query:
        return urlunsplit(parts)
    query = "&".join(f"{pair.split('=', 1)[0]}=***" if "=" in pair else pair for pair in parts.query.split("&"))
    return urlunsplit(parts._replace(query=query))


def _iso(epoch: float | None) -> str | None:
    if not epoch:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _one_line(text: str) -> str:
    return mask_secrets(text.strip().splitlines()[0] if text.strip() else text)


# -- Redis ------------------------------------------------------------------------------------------


def queue_key(hook_id: int) -> str:
    return f"ingest:hooks:{hook_id}:queue"


def state_key(hook_id: int) -> str:
    return f"ingest:hooks:{hook_id}:state"


def lock_key(hook_id: int) -> str:
    return f"ingest:hooks:{hook_id}:lock"


def start_group(client: redis.Redis) -> None:
    """The `hooks` group of the stream, at its end when new: a hook added now gets what comes next."""
    try:
        client.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def start_group_at_end(client: redis.Redis) -> None:
    """The `hooks` group at the stream's end, new or not: for the first hook after none, which must
    not be sent what happened while nobody listened."""
    start_group(client)
    client.xgroup_setid(STREAM, GROUP, id="$")


def stop_group(client: redis.Redis) -> None:
    """No hook left: the group goes, so the next first hook starts from its own moment, not from
    where the last one stopped."""
    try:
        client.xgroup_destroy(STREAM, GROUP)
    except redis.exceptions.ResponseError:
        pass  # no stream, or no group: nothing to stop


def forget(client: redis.Redis, hook_id: int) -> None:
    """A removed hook's queue and state go with it."""
    client.delete(queue_key(hook_id), state_key(hook_id), lock_key(hook_id))


def fan_out(
    client: redis.Redis, hooks: Sequence[HookRef], max_pending: int, count: int = FAN_OUT_COUNT
) -> FanOutReport:
    """Queue every new event for each hook that matches it; with no hooks, nothing (not even Redis)."""
    report = FanOutReport()
    if not hooks:
        return report
    # One fan-out at a time (ticks may overlap on a busy worker): a second would read the first's
    # unacknowledged entries as its own and queue them twice.
    lock = client.lock(FAN_OUT_LOCK, timeout=120, blocking=False)
    if not lock.acquire():
        return report
    try:
        start_group(client)
        enqueue = client.register_script(_ENQUEUE)
        # Entries read but not acknowledged (a fan-out that died) come first, then new ones.
        for cursor in ("0", ">"):
            while entries := _read_group(client, cursor, count):
                _queue_entries(client, enqueue, hooks, entries, max_pending, report)
                client.xack(STREAM, GROUP, *[entry_id for entry_id, _fields in entries])
                if cursor == "0" or len(entries) < count:
                    break
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # outlived its lease: harmless, the next fan-out takes it afresh
    return report


def _read_group(client: redis.Redis, cursor: str, count: int) -> list[tuple[str, dict | None]]:
    found = client.xreadgroup(GROUP, CONSUMER, {STREAM: cursor}, count=count) or []
    return [(decoded(entry_id), fields) for entry_id, fields in (found[0][1] if found else [])]


def _queue_entries(
    client: redis.Redis,
    enqueue,
    hooks: Sequence[HookRef],
    entries: list[tuple[str, dict | None]],
    max_pending: int,
    report: FanOutReport,
) -> None:
    bodies: dict[int, list[bytes]] = {hook.id: [] for hook in hooks}
    for entry_id, raw_fields in entries:
        if not raw_fields:  # trimmed from the stream (MAXLEN) between its read and now
            report.vanished += 1
            continue
        fields = {decoded(key): decoded(value) for key, value in raw_fields.items()}
        report.events += 1
        body = body_of(entry_id, fields)
        for hook in hooks:
            if matches(hook.globs, fields.get("event", "")):
                bodies[hook.id].append(body)
    pipe = client.pipeline(transaction=False)
    queued = [(hook_id, found) for hook_id, found in bodies.items() if found]
    for hook_id, found in queued:
        enqueue(keys=[queue_key(hook_id), state_key(hook_id)], args=[max_pending, *found], client=pipe)
    for (hook_id, found), dropped in zip(queued, pipe.execute()):
        report.queued[hook_id] = report.queued.get(hook_id, 0) + len(found)
        if dropped:
            report.dropped[hook_id] = report.dropped.get(hook_id, 0) + int(dropped)


def state(client: redis.Redis, hook_id: int) -> HookState:
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue_key(hook_id))
    pipe.hgetall(state_key(hook_id))
    pending, raw = pipe.execute()
    fields = {decoded(key): decoded(value) for key, value in raw.items()}
    return HookState(
        pending=pending,
        failures=int(fields.get("failures") or 0),
        retry_at=float(fields.get("retry_at") or 0),
        last_error=fields.get("last_error") or None,
        last_attempt=float(fields.get("last_attempt") or 0) or None,
        last_delivered=float(fields.get("last_delivered") or 0) or None,
        delivered=int(fields.get("delivered") or 0),
        dropped=int(fields.get("dropped") or 0),
    )


def due(client: redis.Redis, hook_id: int, now: float) -> bool:
    """Events wait for this hook, it is not backing off, and no round of it is running."""
    current = state(client, hook_id)
    return current.pending > 0 and current.retry_at <= now and not client.exists(lock_key(hook_id))


# -- delivering -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPolicy:
    backoff_base: float
    backoff_max: float
    allow_private: bool
    user_agent: str
    round_seconds: float = ROUND_SECONDS
    lease_seconds: float = 600.0  # a round's lock: longer than any round can run (the task's hard limit)


def deliver(
    client: redis.Redis,
    hook: HookRef,
    http: httpx.Client,
    policy: DeliveryPolicy,
    clock=time.time,
) -> RoundReport:
    """One round for one hook: its queued bodies POSTed oldest first until the queue is empty, a
    try fails, or the round's time is up. One round of a hook at a time (a lock in Redis)."""
    lock = client.lock(lock_key(hook.id), timeout=policy.lease_seconds, blocking=False)
    if not lock.acquire():
        return RoundReport(skipped="busy")
    try:
        current = state(client, hook.id)
        if current.retry_at > clock():
            return RoundReport(skipped="waiting", failures=current.failures)
        return _round(client, hook, http, policy, current, clock)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # it expired under a round longer than its lease: the next round takes it afresh


def _round(
    client: redis.Redis, hook: HookRef, http: httpx.Client, policy: DeliveryPolicy, current: HookState, clock
) -> RoundReport:
    report = RoundReport()
    ends = clock() + policy.round_seconds
    while clock() < ends:
        bodies = client.lrange(queue_key(hook.id), 0, ROUND_COUNT - 1)
        if not bodies:
            break
        for body in bodies:
            error = post(http, hook, body, policy)
            if error is not None:
                return _failed(client, hook, policy, current, report, error, clock)
            client.lrem(queue_key(hook.id), 1, body)  # by value: a cap trimming the head meanwhile is harmless
            report.delivered += 1
            if clock() >= ends:
                break
    if report.delivered:
        report.recovered = current.failing
        now = clock()
        client.hset(
            state_key(hook.id), mapping={"failures": 0, "retry_at": 0, "last_attempt": now, "last_delivered": now}
        )
        client.hincrby(state_key(hook.id), "delivered", report.delivered)
    return report


def _failed(
    client: redis.Redis,
    hook: HookRef,
    policy: DeliveryPolicy,
    current: HookState,
    report: RoundReport,
    error: str,
    clock,
) -> RoundReport:
    failures = (0 if report.delivered else current.failures) + 1
    wait = backoff_seconds(failures, policy.backoff_base, policy.backoff_max)
    now = clock()
    mapping = {"failures": failures, "retry_at": now + wait, "last_error": error, "last_attempt": now}
    if report.delivered:
        mapping["last_delivered"] = now
    client.hset(state_key(hook.id), mapping=mapping)
    if report.delivered:
        client.hincrby(state_key(hook.id), "delivered", report.delivered)
    report.error, report.retry_in, report.failures = error, wait, failures
    return report


def post(http: httpx.Client, hook: HookRef, body: bytes, policy: DeliveryPolicy) -> str | None:
    """POST one body, signed; None when the receiver took it (2xx), else the reason, one line."""
    event_name = json.loads(body).get("event") or ""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": policy.user_agent,
        "X-Ingest-Event": event_name,
        "X-Ingest-Delivery": delivery_id(hook.id, body),
        "X-Ingest-Signature": signature(hook.secret, body),
    }
    try:
        check_url(hook.url, policy.allow_private)
        with http.stream("POST", hook.url, content=body, headers=headers) as response:
            status = response.status_code  # the answer's body is not read: the status says it all
    except (UnsafeURL, UnresolvableHost) as exc:
        return _one_line(str(exc))
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        # InvalidURL is no HTTPError: a URL httpx cannot use must back the hook off like a failure.
        return _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status}: a webhook's redirects are not followed"
    return f"HTTP {status}"


def hook_refs(rows: Iterable) -> list[HookRef]:
    return [HookRef(row.id, row.url, row.events, row.secret) for row in rows]
