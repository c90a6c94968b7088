"""Writes and reads of the store. Identity is decided by unique constraints, so every write is idempotent."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from shared.messages import RawInput
from shared.models import Failure, Item, Origin, RawBlob, Submission, TakenFile, utc_now
from shared.parsers.model import ParsedItem

DIALECT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
EXPORT_BATCH = 500


@dataclass(frozen=True)
class Arrival:
    """One arrival of one item: `key` is unique per arrival, whatever the message deliveries."""

    key: str
    kind: str
    ref: str
    entry_id: str | None
    seen_at: datetime
    raw_sha256: str | None = None


@dataclass(frozen=True)
class Stored:
    item_id: int
    outcome: str = "stored"


@dataclass(frozen=True)
class Duplicate:
    item_id: int
    outcome: str = "duplicate"


@dataclass(frozen=True)
class Redelivered:
    """The same arrival seen again (a message delivered twice): nothing new was written."""

    item_id: int | None
    outcome: str = "redelivered"


@dataclass(frozen=True)
class Failed:
    reason: str
    outcome: str = "failed"


Outcome = Stored | Duplicate | Redelivered | Failed


def _insert_ignore(session: Session, model: type, values: dict[str, Any], keys: list[str]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING: the new row's primary key, or None when the row was there."""
    key_column = model.__table__.primary_key.columns.values()[0]
    insert = DIALECT_INSERTS.get(session.get_bind().dialect.name)
    if insert is None:
        return _insert_ignore_portable(session, model, values, key_column.key)
    # RETURNING, not rowcount: some drivers report -1 rows for ON CONFLICT statements.
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=keys).returning(key_column)
    return session.execute(statement).scalar_one_or_none()


def _insert_ignore_portable(session: Session, model: type, values: dict[str, Any], key: str) -> Any:
    # For databases without ON CONFLICT: a savepoint turns the unique violation into "already there".
    try:
        with session.begin_nested():
            row = model(**values)
            session.add(row)
    except IntegrityError:
        return None
    return getattr(row, key)


def _item_values(item: ParsedItem, content_hash: str, fmt: str) -> dict[str, Any]:
    return {
        "content_hash": content_hash,
        "title": item.title,
        "body": item.body,
        "source": item.source,
        "original_source": item.original_source,
        "author": item.author,
        "published_at": item.published_at,
        "language": item.language,
        "url": item.url,
        "format": fmt,
        "ingested_at": utc_now(),
    }


def _origin_values(item_id: int, arrival: Arrival) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "arrival_key": arrival.key,
        "kind": arrival.kind,
        "ref": arrival.ref,
        "entry_id": arrival.entry_id,
        "raw_sha256": arrival.raw_sha256,
        "seen_at": arrival.seen_at,
    }


def save_item(session: Session, item: ParsedItem, content_hash: str, fmt: str, arrival: Arrival) -> Outcome:
    """A new item with its first origin, or one more origin on the item that holds this content."""
    new_id = _insert_ignore(session, Item, _item_values(item, content_hash, fmt), ["content_hash"])
    item_id = new_id or session.execute(select(Item.id).where(Item.content_hash == content_hash)).scalar_one()
    origin_added = _insert_ignore(session, Origin, _origin_values(item_id, arrival), ["arrival_key"]) is not None
    if new_id is not None:
        return Stored(item_id)
    return Duplicate(item_id) if origin_added else Redelivered(item_id)


def save_failure(session: Session, arrival: Arrival, reason: str) -> Outcome:
    values = {
        "arrival_key": arrival.key,
        "kind": arrival.kind,
        "ref": arrival.ref,
        "entry_id": arrival.entry_id,
        "reason": reason,
        "raw_sha256": arrival.raw_sha256,
        "at": utc_now(),
    }
    added = _insert_ignore(session, Failure, values, ["arrival_key"]) is not None
    return Failed(reason) if added else Redelivered(None)


def keep_raw(session: Session, sha256: str, payload: bytes) -> None:
    values = {"sha256": sha256, "size": len(payload), "data": zlib.compress(payload, 6), "stored_at": utc_now()}
    _insert_ignore(session, RawBlob, values, ["sha256"])


# -- the watcher's ledger ---------------------------------------------------------------------------


def taken_file(session: Session, ref: str) -> TakenFile | None:
    return session.get(TakenFile, ref)


def mark_taken(
    session: Session, ref: str, size: int, mtime_ns: int, sha256: str | None, arrival_key: str | None = None
) -> None:
    """Record a file as taken; with an arrival_key it stays unconfirmed until the store holds that arrival."""
    session.merge(
        TakenFile(
            ref=ref,
            size=size,
            mtime_ns=mtime_ns,
            sha256=sha256,
            arrival_key=arrival_key,
            confirmed=arrival_key is None,
            taken_at=utc_now(),
        )
    )


def _landed(key_column):
    """Whether an origin or a failure records this arrival."""
    return or_(
        select(Origin.id).where(Origin.arrival_key == key_column).exists(),
        select(Failure.id).where(Failure.arrival_key == key_column).exists(),
    )


def landed_keys(session: Session, arrival_keys: Iterable[str]) -> set[str]:
    """Which of these arrivals the store holds, as an origin or a failure (the bulk form of _landed)."""
    keys = list(arrival_keys)
    origins = session.execute(select(Origin.arrival_key).where(Origin.arrival_key.in_(keys))).scalars()
    failures = session.execute(select(Failure.arrival_key).where(Failure.arrival_key.in_(keys))).scalars()
    return set(origins) | set(failures)


def unconfirmed_taken(session: Session, taken_before: datetime | None = None) -> list[TakenFile]:
    """Files sent whose arrival the store does not hold yet; confirms, on the way, those it does."""
    query = select(TakenFile).where(TakenFile.confirmed.is_(False), TakenFile.arrival_key.is_not(None))
    if taken_before is not None:
        query = query.where(TakenFile.taken_at < taken_before)
    missing = []
    for taken in session.execute(query).scalars():
        landed = session.execute(select(_landed(literal(taken.arrival_key)))).scalar_one()
        if landed:
            taken.confirmed = True
        else:
            missing.append(taken)
    return missing


def count_unlanded(session: Session) -> int:
    """How many files taken or submitted have an arrival not in the store yet (read-only: for status and wait)."""
    taken = (
        select(func.count())
        .select_from(TakenFile)
        .where(TakenFile.confirmed.is_(False), TakenFile.arrival_key.is_not(None), ~_landed(TakenFile.arrival_key))
    )
    submitted = (
        select(func.count())
        .select_from(Submission)
        .where(Submission.confirmed.is_(False), ~_landed(Submission.arrival_key))
    )
    return session.execute(taken).scalar_one() + session.execute(submitted).scalar_one()


# -- the submit outbox ----------------------------------------------------------------------------


def record_submission(session: Session, raw: RawInput) -> None:
    """Keep a submitted input until its arrival is stored, so that a lost message can be sent again."""
    message = zlib.compress(raw.model_dump_json().encode(), 6)
    _insert_ignore(
        session,
        Submission,
        {"arrival_key": f"{raw.arrival_id}:0", "message": message, "confirmed": False, "sent_at": utc_now()},
        ["arrival_key"],
    )


def unconfirmed_submissions(session: Session, sent_before: datetime) -> list[RawInput]:
    """Submitted inputs the store does not hold yet; confirms (and drops the bytes of) those it does."""
    query = select(Submission).where(Submission.confirmed.is_(False), Submission.sent_at < sent_before)
    missing = []
    for row in session.execute(query).scalars():
        if session.execute(select(_landed(literal(row.arrival_key)))).scalar_one():
            row.confirmed, row.message = True, None
        else:
            row.sent_at = utc_now()
            missing.append(RawInput.model_validate_json(zlib.decompress(row.message)))
    return missing


def taken_signatures(session: Session) -> dict[str, tuple[int, int]]:
    """ref -> (size, mtime_ns) of everything the watcher took."""
    rows = session.execute(select(TakenFile.ref, TakenFile.size, TakenFile.mtime_ns))
    return {ref: (size, mtime_ns) for ref, size, mtime_ns in rows}


# -- reads ------------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _origin_record(origin: Origin) -> dict[str, Any]:
    return {"kind": origin.kind, "ref": origin.ref, "entry_id": origin.entry_id, "seen_at": _iso(origin.seen_at)}


def item_record(item: Item, origins: list[Origin]) -> dict[str, Any]:
    """An item as `ingest export` prints it."""
    return {
        "id": item.id,
        "content_hash": item.content_hash,
        "title": item.title,
        "body": item.body,
        "source": item.source,
        "original_source": item.original_source,
        "author": item.author,
        "published_at": _iso(item.published_at),
        "language": item.language,
        "url": item.url,
        "cluster_id": item.cluster_id or item.id,
        "ingested_at": _iso(item.ingested_at),
        "origins": [_origin_record(origin) for origin in origins],
    }


def _origins_of(session: Session, item_ids: list[int]) -> dict[int, list[Origin]]:
    found: dict[int, list[Origin]] = {item_id: [] for item_id in item_ids}
    rows = session.execute(select(Origin).where(Origin.item_id.in_(item_ids)).order_by(Origin.seen_at, Origin.id))
    for origin in rows.scalars():
        found[origin.item_id].append(origin)
    return found


def export_records(session: Session, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every item, oldest first, in pages so memory stays flat however large the store."""
    last_id = 0
    while True:
        query = select(Item).where(Item.id > last_id).order_by(Item.id).limit(EXPORT_BATCH)
        if since is not None:
            query = query.where(Item.ingested_at >= since)
        items = list(session.execute(query).scalars())
        if not items:
            return
        origins = _origins_of(session, [item.id for item in items])
        for item in items:
            yield item_record(item, origins[item.id])
        last_id = items[-1].id


def failure_records(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(Failure).order_by(Failure.at, Failure.id)).scalars()
    return [{"ref": f.ref, "entry_id": f.entry_id, "reason": f.reason, "at": _iso(f.at)} for f in rows]


def counts(session: Session) -> dict[str, int]:
    items = session.execute(select(func.count()).select_from(Item)).scalar_one()
    origins = session.execute(select(func.count()).select_from(Origin)).scalar_one()
    failed = session.execute(select(func.count()).select_from(Failure)).scalar_one()
    grouped = select(Item.cluster_id).where(Item.cluster_id.is_not(None)).group_by(Item.cluster_id)
    clusters = session.execute(
        select(func.count()).select_from(grouped.having(func.count() >= 2).subquery())
    ).scalar_one()
    # An arrival whose content was already stored is an origin beyond its item's first.
    return {"items": items, "origins": origins, "duplicates": origins - items, "clusters": clusters, "failed": failed}


# -- near-duplicate clusters ----------------------------------------------------------------------


def cluster_records(session: Session) -> list[dict[str, Any]]:
    """Groups of two or more items, largest first, each item with its title, source and why it joined."""
    sizes = (
        select(Item.cluster_id, func.count().label("size"))
        .where(Item.cluster_id.is_not(None))
        .group_by(Item.cluster_id)
        .having(func.count() >= 2)
        .subquery()
    )
    rows = session.execute(
        select(Item, sizes.c.size)
        .join(sizes, Item.cluster_id == sizes.c.cluster_id)
        .order_by(sizes.c.size.desc(), Item.cluster_id, Item.id)
    )
    groups: dict[int, dict[str, Any]] = {}
    for item, size in rows:
        group = groups.setdefault(item.cluster_id, {"cluster_id": item.cluster_id, "size": size, "items": []})
        group["items"].append(
            {
                "id": item.id,
                "title": item.title,
                "source": item.source,
                "original_source": item.original_source,
                "matched_item_id": item.matched_item_id,
                "similarity": item.similarity,
            }
        )
    return list(groups.values())


def items_for_index(session: Session, after_id: int, limit: int) -> list[tuple[int, str, int | None]]:
    """(id, body, cluster_id) of items after `after_id`, in id order: a page for `ingest reindex`."""
    rows = session.execute(
        select(Item.id, Item.body, Item.cluster_id).where(Item.id > after_id).order_by(Item.id).limit(limit)
    )
    return [tuple(row) for row in rows]


def set_cluster(session: Session, item_id: int, cluster_id: int, matched: int | None, similarity: float | None) -> None:
    item = session.get(Item, item_id)
    item.cluster_id, item.matched_item_id, item.similarity = cluster_id, matched, similarity
