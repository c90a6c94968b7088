"""The subscriptions in the store: feeds (add, remove, list, claim the due ones, record a poll) and
webhooks (add, remove, list; their deliveries are shared.hooks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, select, update
from sqlmodel import Session

from shared import store
from shared.errors import ServiceError
from shared.feeds import Schedule
from shared.models import Feed, FeedEntry, Hook, utc_now
from shared.urls import canonical_url


def normalised_feed_url(url: str) -> str:
    """The spelling a subscription is kept under; ServiceError for what is not an http(s) URL."""
    canonical = canonical_url(url)
    if canonical is None:
        raise ServiceError(f"not an http or https URL: {url}")
    return canonical


def find_feed(session: Session, url: str) -> Feed | None:
    return session.execute(select(Feed).where(Feed.url == normalised_feed_url(url))).scalar_one_or_none()


def add_feed(session: Session, url: str, interval: float, title: str | None = None) -> tuple[Feed, bool]:
    """(the subscription, whether it is new). An existing one gets the new interval, enabled again."""
    existing = find_feed(session, url)
    if existing is not None:
        existing.interval_seconds = interval
        existing.enabled = True
        existing.title = existing.title or title
        return existing, False
    feed = Feed(url=normalised_feed_url(url), interval_seconds=interval, title=title, next_poll=utc_now())
    session.add(feed)
    session.flush()
    return feed, True


def remove_feed(session: Session, url: str) -> bool:
    feed = find_feed(session, url)
    if feed is None:
        return False
    session.execute(delete(FeedEntry).where(FeedEntry.feed_id == feed.id))
    session.delete(feed)
    return True


def remove_feed_by_id(session: Session, feed_id: int) -> bool:
    feed = session.get(Feed, feed_id)
    if feed is None:
        return False
    session.execute(delete(FeedEntry).where(FeedEntry.feed_id == feed.id))
    session.delete(feed)
    return True


def all_feeds(session: Session) -> list[Feed]:
    return list(session.execute(select(Feed).order_by(Feed.id)).scalars())


def claim_due(session: Session, now: datetime, lease_seconds: float) -> list[int]:
    """The enabled feeds due now, pushed `lease_seconds` ahead in the same statement, so that two
    schedulers, or a tick that comes again before the fetch ends, never queue a feed twice."""
    statement = (
        update(Feed)
        .where(Feed.enabled.is_(True), Feed.next_poll <= now)
        .values(next_poll=now + timedelta(seconds=lease_seconds))
        .returning(Feed.id)
    )
    return list(session.execute(statement).scalars())


def record_poll(
    session: Session,
    feed: Feed,
    *,
    now: datetime,
    status: int | None,
    error: str | None,
    schedule: Schedule,
    new_entries: int,
    etag: str | None,
    last_modified: str | None,
    title: str | None,
    moved_to: str | None,
) -> None:
    feed.last_polled = now
    feed.last_status = status
    feed.last_error = error
    feed.error_count = schedule.error_count
    feed.enabled = schedule.enabled
    feed.next_poll = schedule.next_poll
    feed.last_new_entries = new_entries
    if status == 200:
        feed.etag, feed.last_modified = etag, last_modified
    feed.title = title or feed.title
    if moved_to and find_feed(session, moved_to) is None:
        feed.url = normalised_feed_url(moved_to)


# -- entries --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryState:
    content_hash: str
    seen_at: datetime


def known_entries(session: Session, feed_id: int, keys: Iterable[str]) -> dict[str, EntryState]:
    # Columns, not entities: a hundred rows a poll need no ORM objects.
    columns = (FeedEntry.entry_key, FeedEntry.content_hash, FeedEntry.seen_at)
    where = (FeedEntry.feed_id == feed_id, FeedEntry.entry_key.in_(list(keys)))
    return {key: EntryState(content, seen) for key, content, seen in session.execute(select(*columns).where(*where))}


def remember_entries(session: Session, feed_id: int, entries: dict[str, str], now: datetime) -> None:
    """entry_key -> content_hash, inserted or updated: one statement for all of a poll's entries."""
    rows = [
        {"feed_id": feed_id, "entry_key": key, "content_hash": content, "seen_at": now}
        for key, content in entries.items()
    ]
    if store.upsert_many(session, FeedEntry, rows, ["feed_id", "entry_key"]):
        return
    known = {
        row.entry_key: row
        for row in session.execute(
            select(FeedEntry).where(FeedEntry.feed_id == feed_id, FeedEntry.entry_key.in_(list(entries)))
        ).scalars()
    }
    for key, content in entries.items():
        row = known.get(key)
        if row is None:
            session.add(FeedEntry(feed_id=feed_id, entry_key=key, content_hash=content, seen_at=now))
        else:
            row.content_hash, row.seen_at = content, now


def feed_record(feed: Feed) -> dict[str, Any]:
    """A subscription as `ingest status --json` and `ingest feeds list --json` show it."""
    iso = lambda value: value.isoformat().replace("+00:00", "Z") if value else None  # noqa: E731
    return {
        "id": feed.id,
        "url": feed.url,
        "title": feed.title,
        "every_seconds": feed.interval_seconds,
        "enabled": feed.enabled,
        "last_polled": iso(feed.last_polled),
        "last_status": feed.last_status,
        "last_error": feed.last_error,
        "error_count": feed.error_count,
        "new_entries": feed.last_new_entries,
        "next_poll": iso(feed.next_poll),
        "healthy": feed.enabled and feed.error_count == 0,
    }


# -- webhooks -----------------------------------------------------------------------------------------


def checked_hook_url(url: str) -> str:
    """A hook URL as given (its query may carry the receiver's token); ServiceError unless http(s)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError(f"not an http or https URL: {url}")
    try:
        parts.port  # noqa: B018  (raises for a port that is not a number in range)
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ServiceError(f"not a usable URL: {url} ({exc})") from None
    return url


def add_hook(session: Session, url: str, events: str, secret: str) -> tuple[Hook, bool]:
    """(the hook, whether it is new). An existing one takes the new events and secret."""
    url = checked_hook_url(url)
    existing = session.execute(select(Hook).where(Hook.url == url)).scalar_one_or_none()
    if existing is not None:
        existing.events, existing.secret = events, secret
        return existing, False
    hook = Hook(url=url, events=events, secret=secret)
    session.add(hook)
    session.flush()
    return hook, True


def remove_hook(session: Session, url_or_id: str) -> int | None:
    """The removed hook's id, or None when there was none with this URL (or this id)."""
    wanted = url_or_id.strip()
    if wanted.isdigit():
        hook = session.get(Hook, int(wanted))
    else:
        hook = session.execute(select(Hook).where(Hook.url == wanted)).scalar_one_or_none()
    if hook is None:
        return None
    session.delete(hook)
    return hook.id


def all_hooks(session: Session) -> list[Hook]:
    return list(session.execute(select(Hook).order_by(Hook.id)).scalars())
