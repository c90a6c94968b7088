"""One poll of one feed: fetch, read the entries, queue the new or changed ones, record the outcome.

No Celery here: the caller passes `send`, which puts a Batch on the queue.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
from sqlmodel import Session

from shared import store, subscriptions
from shared.errors import InputError
from shared.feeds import FetchLimits, FetchResult, fetch, next_poll
from shared.fingerprint import content_hash
from shared.messages import Batch, RawInput, sha256_hex
from shared.models import Feed
from shared.parsers import EntryFailure, ParsedItem
from shared.parsers.fields import as_text
from shared.redact import mask_secrets
from shared.settings import FeedPolicy

ENTRIES_PER_MESSAGE = 50
Send = Callable[[Batch], None]


@dataclass(frozen=True)
class PollReport:
    url: str
    status: int | None
    error: str | None
    network: bool
    new_entries: int
    duration_ms: float
    next_poll: datetime | None
    enabled: bool


@dataclass(frozen=True)
class FeedDocument:
    title: str | None
    ttl_seconds: float | None
    entries: list[ParsedItem | EntryFailure]


def read_feed(body: bytes) -> FeedDocument:
    """RSS, Atom, RDF (feedparser) or JSON Feed (told by content) -> title, ttl and entries."""
    from shared.parsers import feed as xml_feed
    from shared.parsers import jsondoc

    if body.lstrip()[:1] == b"{":
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InputError(f"not valid JSON ({exc})") from None
        if not jsondoc.is_json_feed(document):
            raise InputError("JSON that is not a JSON Feed document")
        return FeedDocument(as_text(document.get("title")), None, jsondoc.json_feed_items(document))
    feed, entries = xml_feed.parse_feed_bytes(body)
    source = as_text(feed.get("title"))
    ttl = feed.get("ttl")
    ttl_seconds = float(ttl) * 60 if isinstance(ttl, str) and ttl.strip().isdigit() else None
    return FeedDocument(source, ttl_seconds, xml_feed.entries_to_items(feed, entries))


def entry_key(item: ParsedItem) -> str:
    """Same feed and entry id, or the same link when there is no id, or else the same content."""
    return item.entry_id or item.url or content_hash(item.title, item.body)


def _arrival_id(feed: Feed, key: str, digest: str) -> str:
    """The same entry with the same content is the same arrival, at every poll."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"feed:{feed.id}:{key}:{digest}").hex


def _entry_message(feed: Feed, key: str, item: ParsedItem, digest: str) -> RawInput:
    record = {
        "title": item.title,
        "body": item.body,
        "source": item.source,
        "original_source": item.original_source,
        "author": item.author,
        "published_at": item.published_at.isoformat() if item.published_at else None,
        "updated_at": item.updated_at.isoformat() if item.updated_at else None,
        "url": item.url,
        "language": item.language,
        "entry_id": key,
    }
    return RawInput.from_bytes(
        json.dumps(record, ensure_ascii=False).encode(),
        kind="feed",
        ref=mask_secrets(feed.url),  # provenance, kept and exported: never a feed's password
        entry_id=key,
        arrival_id=_arrival_id(feed, key, digest),
        name="entry.json",
    )


def queue_entries(session: Session, feed: Feed, entries: list, send: Send, now: datetime, resend_after: float) -> int:
    """Queue entries not seen before or changed since, and seen ones whose message never landed."""
    candidates: dict[str, tuple[ParsedItem, str]] = {}
    for entry in entries:
        if isinstance(entry, EntryFailure):
            _record_entry_failure(session, feed, entry)
        else:
            candidates[entry_key(entry)] = (entry, content_hash(entry.title, entry.body))
    known = subscriptions.known_entries(session, feed.id, candidates)
    new = [key for key, (_item, digest) in candidates.items() if key not in known or known[key].content_hash != digest]
    # A known entry is sent again only when its message never landed: it is built only then.
    fresh = set(new)
    arrivals = {
        key: f"{_arrival_id(feed, key, digest)}:0" for key, (_item, digest) in candidates.items() if key not in fresh
    }
    landed = store.landed_keys(session, list(arrivals.values()))
    lost = [
        key
        for key, arrival in arrivals.items()
        if arrival not in landed and (now - known[key].seen_at).total_seconds() > resend_after
    ]
    outgoing = [_entry_message(feed, key, *candidates[key]) for key in new + lost]
    for start in range(0, len(outgoing), ENTRIES_PER_MESSAGE):
        send(Batch(inputs=outgoing[start : start + ENTRIES_PER_MESSAGE]))
    subscriptions.remember_entries(session, feed.id, {key: candidates[key][1] for key in new + lost}, now)
    return len(new)


def _record_entry_failure(session: Session, feed: Feed, failure: EntryFailure) -> None:
    key = failure.entry_id or failure.reason
    arrival = store.Arrival(
        key=uuid.uuid5(uuid.NAMESPACE_URL, f"feed:{feed.id}:{key}:failure").hex + ":0",
        kind="feed",
        ref=mask_secrets(feed.url),  # provenance, kept and exported: never a feed's password
        entry_id=failure.entry_id,
        seen_at=datetime.now(UTC),
    )
    store.save_failure(session, arrival, failure.reason)


def _hint(result: FetchResult, document: FeedDocument | None) -> float | None:
    hints = [h for h in (result.cache_seconds, document and document.ttl_seconds) if h]
    return max(hints) if hints else None


def poll_feed(
    session: Session,
    feed: Feed,
    client: httpx.Client,
    limits: FetchLimits,
    policy: FeedPolicy,
    send: Send,
    now: datetime,
    keep_raw: bool,
    resend_after: float,
) -> PollReport:
    started = time.perf_counter()
    # Nothing of the store is held while the feed answers (as long as the fetch timeout): the
    # caller's reads end here. So PostgreSQL keeps no session idle in transaction across the network,
    # and SQLite no read snapshot, which a write after a burst's commits would find stale.
    session.commit()
    result = fetch(client, feed.url, feed.etag, feed.last_modified, limits)
    document, new_entries = None, 0
    if result.ok:
        try:
            document = read_feed(result.body)
        except InputError as exc:
            result = replace(result, error=f"unusable feed: {exc}")
    if document is not None:
        if keep_raw:
            store.keep_raw(session, sha256_hex(result.body), result.body)
        new_entries = queue_entries(session, feed, document.entries, send, now, resend_after)
    schedule = next_poll(
        result, feed.interval_seconds, feed.error_count, _hint(result, document), policy, now, random.Random()
    )
    subscriptions.record_poll(
        session,
        feed,
        now=now,
        status=result.status,
        error=result.error,
        schedule=schedule,
        new_entries=new_entries,
        etag=result.etag,
        last_modified=result.last_modified,
        title=document.title if document else None,
        moved_to=result.permanent_url,
    )
    return PollReport(
        url=feed.url,
        status=result.status,
        error=result.error,
        network=result.network,
        new_entries=new_entries,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        next_poll=schedule.next_poll,
        enabled=schedule.enabled,
    )
