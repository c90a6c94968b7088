"""The store against real databases: SQLite always, PostgreSQL where INGEST_TEST_DATABASE_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared import store
from shared.db import session_scope
from shared.parsers.model import ParsedItem

ITEM = ParsedItem(title="A title", body="A body.", source="Wire", language="en")
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def arrival(key: str, ref: str = "a.txt", seen_at: datetime | None = None) -> store.Arrival:
    return store.Arrival(key=key, kind="file", ref=ref, entry_id=None, seen_at=seen_at or datetime.now(UTC))


def save(url: str, item: ParsedItem, content_hash: str, where: store.Arrival) -> store.Outcome:
    with session_scope(url) as session:
        return store.save_item(session, item, content_hash, "text", where)


def test_same_content_twice_is_one_item_with_two_origins(db_url):
    """The second arrival of stored content adds an origin, not an item."""
    first = save(db_url, ITEM, "sha256:aa", arrival("x:0", "a.txt"))
    second = save(db_url, ITEM, "sha256:aa", arrival("y:0", "sub/b.txt"))
    assert (first.outcome, second.outcome) == ("stored", "duplicate")
    assert first.item_id == second.item_id
    with session_scope(db_url) as session:
        [record] = store.export_records(session)
        assert store.counts(session) == {"items": 1, "origins": 2, "duplicates": 1, "clusters": 0, "failed": 0}
    assert [origin["ref"] for origin in record["origins"]] == ["a.txt", "sub/b.txt"]


def test_the_same_arrival_delivered_twice_writes_nothing_new(db_url):
    """A redelivered message is recognised by its arrival key."""
    save(db_url, ITEM, "sha256:aa", arrival("x:0"))
    again = save(db_url, ITEM, "sha256:aa", arrival("x:0"))
    assert again.outcome == "redelivered"
    with session_scope(db_url) as session:
        assert store.counts(session)["origins"] == 1


def test_failures_are_recorded_once_per_arrival(db_url):
    """A failure delivered twice is one failure."""
    with session_scope(db_url) as session:
        assert store.save_failure(session, arrival("f:0", "bad.pdf"), "unsupported format").outcome == "failed"
        assert store.save_failure(session, arrival("f:0", "bad.pdf"), "unsupported format").outcome == "redelivered"
    with session_scope(db_url) as session:
        [failure] = store.failure_records(session)
    assert (failure["ref"], failure["reason"], failure["entry_id"]) == ("bad.pdf", "unsupported format", None)


def test_export_is_oldest_first_with_every_field(db_url):
    """Records carry the interface's fields; cluster_id is the item's own id when it has no group."""
    published = datetime(2022, 3, 11, 12, 30, tzinfo=UTC)
    updated = datetime(2022, 3, 12, 8, 0, 5, tzinfo=UTC)
    save(db_url, ITEM.but(published_at=published, updated_at=updated), "sha256:01", arrival("a:0", seen_at=LATER))
    save(db_url, ITEM.but(title="Second"), "sha256:02", arrival("b:0"))
    with session_scope(db_url) as session:
        first, second = store.export_records(session)
    assert set(first) == {
        "id",
        "content_hash",
        "title",
        "body",
        "source",
        "original_source",
        "author",
        "published_at",
        "updated_at",
        "language",
        "url",
        "cluster_id",
        "ingested_at",
        "origins",
    }
    assert first["id"] < second["id"] and first["cluster_id"] == first["id"]
    assert first["published_at"] == "2022-03-11T12:30:00Z"
    assert first["updated_at"] == "2022-03-12T08:00:05Z"
    assert first["origins"] == [{"kind": "file", "ref": "a.txt", "entry_id": None, "seen_at": "2030-01-01T00:00:00Z"}]


def test_export_since_leaves_out_older_items(db_url):
    """--since compares with the time of ingestion."""
    save(db_url, ITEM, "sha256:01", arrival("a:0"))
    with session_scope(db_url) as session:
        assert len(list(store.export_records(session, datetime.now(UTC) - timedelta(minutes=1)))) == 1
        assert list(store.export_records(session, datetime.now(UTC) + timedelta(minutes=1))) == []


def test_raw_bytes_are_kept_once_per_content(db_url):
    """keep_raw stores each distinct input once, compressed."""
    import zlib

    from sqlmodel import select

    from shared.models import RawBlob

    with session_scope(db_url) as session:
        store.keep_raw(session, "ab" * 32, b"hello world")
        store.keep_raw(session, "ab" * 32, b"hello world")
    with session_scope(db_url) as session:
        [blob] = session.exec(select(RawBlob)).all()
    assert zlib.decompress(blob.data) == b"hello world" and blob.size == 11


def test_the_ledger_remembers_what_was_taken(db_url):
    """mark_taken upserts; taken_signatures reads back size and mtime."""
    with session_scope(db_url) as session:
        store.mark_taken(session, "a.txt", 10, 111, "aa")
    with session_scope(db_url) as session:
        store.mark_taken(session, "a.txt", 12, 222, "bb")
    with session_scope(db_url) as session:
        assert store.taken_signatures(session) == {"a.txt": (12, 222)}
        assert store.taken_file(session, "a.txt").sha256 == "bb"


def test_field_shares_per_format(db_url):
    """`ingest stats fields`: per format, the share of items having each field."""
    save(db_url, ITEM.but(author="Ana"), "sha256:f1", arrival("f1:0"))
    save(db_url, ITEM.but(language=None), "sha256:f2", arrival("f2:0"))
    with session_scope(db_url) as session:
        store.save_item(session, ITEM.but(url="https://x.example/"), "sha256:f3", "html", arrival("f3:0"))
        shares = store.field_shares(session)
    assert [(row["format"], row["items"]) for row in shares] == [("html", 1), ("text", 2)]
    html, text = (row["fields"] for row in shares)
    assert (html["url"], html["author"], html["source"]) == (1.0, 0.0, 1.0)
    assert (text["author"], text["language"], text["published_at"], text["updated_at"]) == (0.5, 0.5, 0.0, 0.0)
    assert set(text) == {"source", "original_source", "author", "published_at", "updated_at", "language", "url"}
