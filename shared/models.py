"""Every table of the store. Unique constraints make every write idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, LargeBinary, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (SQLite keeps no zone); always read back as an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give the store aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def utc_now() -> datetime:
    return datetime.now(UTC)


def _time(*, index: bool = False, nullable: bool = False):
    """A UTC timestamp column: null by default when nullable, else now."""
    column = Column(UTCDateTime(), index=index, nullable=nullable)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utc_now, sa_column=column)


class Item(SQLModel, table=True):
    __tablename__ = "items"

    id: int | None = Field(default=None, primary_key=True)
    content_hash: str = Field(max_length=80, unique=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    source: str | None = Field(default=None, sa_column=Column(Text))
    original_source: str | None = Field(default=None, sa_column=Column(Text))
    author: str | None = Field(default=None, sa_column=Column(Text))
    published_at: datetime | None = _time(nullable=True)
    updated_at: datetime | None = _time(nullable=True)
    language: str | None = Field(default=None, max_length=16)
    url: str | None = Field(default=None, sa_column=Column(Text))
    format: str = Field(max_length=32)
    # Near-duplicate grouping: the first item of the group, the item this one matched, and how well.
    cluster_id: int | None = Field(default=None, index=True)
    matched_item_id: int | None = None
    similarity: float | None = None
    ingested_at: datetime = _time(index=True)


class Origin(SQLModel, table=True):
    """One arrival of an item's content: a file taken, a file submitted, a feed entry."""

    __tablename__ = "origins"

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="items.id", index=True)
    # arrival_id:part: the same arrival delivered twice writes nothing new.
    arrival_key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=8)
    ref: str = Field(sa_column=Column(Text, nullable=False))
    entry_id: str | None = Field(default=None, sa_column=Column(Text))
    raw_sha256: str | None = Field(default=None, max_length=64)
    seen_at: datetime = _time()


class Failure(SQLModel, table=True):
    """An input, or one entry of it, that could not be ingested, with the reason."""

    __tablename__ = "failures"

    id: int | None = Field(default=None, primary_key=True)
    arrival_key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=8)
    ref: str = Field(sa_column=Column(Text, nullable=False))
    entry_id: str | None = Field(default=None, sa_column=Column(Text))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    raw_sha256: str | None = Field(default=None, max_length=64)
    at: datetime = _time(index=True)


class RawBlob(SQLModel, table=True):
    """An input's original bytes, zlib-compressed, so items can be derived again after a parser upgrade."""

    __tablename__ = "raw_blobs"

    sha256: str = Field(primary_key=True, max_length=64)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    stored_at: datetime = _time()


class TakenFile(SQLModel, table=True):
    """The watcher's ledger: what it took from the seeds folder, so a restart takes nothing twice."""

    __tablename__ = "taken_files"

    ref: str = Field(primary_key=True, max_length=1024)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    mtime_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str | None = Field(default=None, max_length=64)
    # The arrival sent for this file. Until the store holds it (an origin or a failure with this
    # key), the file is still pending: a broker can lose a message (kombu's Redis transport pops
    # before it records the delivery), and the watcher sends it again.
    arrival_key: str | None = Field(default=None, max_length=200)
    confirmed: bool = Field(default=False, index=True)
    taken_at: datetime = _time()


class Submission(SQLModel, table=True):
    """An input sent by `ingest submit`, kept until the store holds its arrival (an outbox).

    Like the watcher's ledger, it lets a message the broker lost be sent again; the bytes are
    dropped once the arrival is confirmed.
    """

    __tablename__ = "submissions"

    id: int | None = Field(default=None, primary_key=True)
    arrival_key: str = Field(max_length=200, unique=True)
    message: bytes | None = Field(default=None, sa_column=Column(LargeBinary))  # the RawInput, zlib'd JSON
    confirmed: bool = Field(default=False, index=True)
    sent_at: datetime = _time()


class Feed(SQLModel, table=True):
    """A feed subscription and where its polling stands."""

    __tablename__ = "feeds"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2048, unique=True)
    title: str | None = Field(default=None, sa_column=Column(Text))
    interval_seconds: float
    enabled: bool = Field(default=True, index=True)
    etag: str | None = Field(default=None, sa_column=Column(Text))
    last_modified: str | None = Field(default=None, max_length=64)
    last_polled: datetime | None = _time(nullable=True)
    last_status: int | None = None  # HTTP status; null when no answer came (network error)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    error_count: int = 0  # consecutive failed polls
    last_new_entries: int = 0
    next_poll: datetime | None = _time(index=True, nullable=True)
    added_at: datetime = _time()


class FeedEntry(SQLModel, table=True):
    """An entry a feed has shown, by its id (or link), and the content it had: new or changed is queued."""

    __tablename__ = "feed_entries"
    __table_args__ = (UniqueConstraint("feed_id", "entry_key"),)

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feeds.id", index=True)
    entry_key: str = Field(max_length=2048)
    content_hash: str = Field(max_length=80)
    seen_at: datetime = _time()


class Hook(SQLModel, table=True):
    """A webhook: events whose name matches `events` are POSTed to `url`, signed with `secret`.

    Where its deliveries stand (queued events, failures, backoff) lives in Redis beside the events
    stream, shared.hooks; this row is the subscription alone.
    """

    __tablename__ = "hooks"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2048, unique=True)
    events: str = Field(default="*", max_length=512)  # comma-separated globs of event names
    secret: str = Field(max_length=512)
    added_at: datetime = _time()
