"""Writes and reads of the store. Identity is decided by unique constraints, so every write is idempotent."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from shared.messages import RawInput, compress
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


def _insert_ignore_many(
    session: Session, model: type, rows: list[dict[str, Any]], keys: list[str], *returning: str
) -> list[tuple]:
    """INSERT … ON CONFLICT DO NOTHING for many rows at once: the `returning` columns of the rows added.

    One statement executed with many parameter sets: SQLAlchemy's "insertmanyvalues" sends them as
    multi-row INSERTs from one cached compilation, several times cheaper than building a VALUES list.
    """
    if not rows:
        return []
    insert = DIALECT_INSERTS.get(session.get_bind().dialect.name)
    if insert is None:
        return [added for row in rows if (added := _insert_ignore_portable(session, model, row, returning)) is not None]
    table = model.__table__
    # RETURNING, not rowcount: some drivers report -1 rows for ON CONFLICT statements.
    columns = [table.columns[name] for name in returning]
    statement = insert(table).on_conflict_do_nothing(index_elements=keys).returning(*columns)
    return [tuple(row) for row in session.connection().execute(statement, rows)]


def _insert_ignore(session: Session, model: type, values: dict[str, Any], keys: list[str]) -> Any:
    """One row: the new row's primary key, or None when the row was there."""
    key = model.__table__.primary_key.columns.values()[0].key
    added = _insert_ignore_many(session, model, [values], keys, key)
    return added[0][0] if added else None


def _insert_ignore_portable(session: Session, model: type, values: dict[str, Any], returning: tuple[str, ...]):
    # For databases without ON CONFLICT: a savepoint turns the unique violation into "already there".
    try:
        with session.begin_nested():
            row = model(**values)
            session.add(row)
    except IntegrityError:
        return None
    return tuple(getattr(row, name) for name in returning)


def _item_values(item: ParsedItem, content_hash: str, fmt: str) -> dict[str, Any]:
    return {
        "content_hash": content_hash,
        "title": item.title,
        "body": item.body,
        "source": item.source,
        "original_source": item.original_source,
        "author": item.author,
        "published_at": item.published_at,
        "updated_at": item.updated_at,
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


@dataclass(frozen=True)
class ItemWrite:
    """A derived item arriving: a new item with this origin, or one more origin on the item holding it."""

    item: ParsedItem
    content_hash: str
    format: str
    arrival: Arrival


@dataclass(frozen=True)
class FailureWrite:
    arrival: Arrival
    reason: str


Write = ItemWrite | FailureWrite


def save_writes(session: Session, writes: list[Write]) -> list[Outcome]:
    """Every write of a batch in a few bulk statements; the outcome of each, in order.

    Idempotent: items are unique by content hash, origins and failures by arrival key, so the
    same batch written twice adds nothing (every outcome then `redelivered`).
    """
    items = [write for write in writes if isinstance(write, ItemWrite)]
    failures = [write for write in writes if isinstance(write, FailureWrite)]
    new_ids = _insert_items(session, items)
    item_ids = new_ids | _existing_item_ids(session, {w.content_hash for w in items} - new_ids.keys())
    origin_rows = [_origin_values(item_ids[w.content_hash], w.arrival) for w in items]
    added = {key for (key,) in _insert_ignore_many(session, Origin, origin_rows, ["arrival_key"], "arrival_key")}
    failure_rows = [_failure_values(w.arrival, w.reason) for w in failures]
    added |= {key for (key,) in _insert_ignore_many(session, Failure, failure_rows, ["arrival_key"], "arrival_key")}
    return _outcomes(writes, item_ids, set(new_ids.values()), added)


def _insert_items(session: Session, writes: list[ItemWrite]) -> dict[str, int]:
    """content_hash -> id of the items this call added (the first write of each content wins)."""
    rows: dict[str, dict[str, Any]] = {}
    for write in writes:
        rows.setdefault(write.content_hash, _item_values(write.item, write.content_hash, write.format))
    # RETURNING both: which content each new id holds, without reading the rows back.
    added = _insert_ignore_many(session, Item, list(rows.values()), ["content_hash"], "content_hash", "id")
    return dict(added)


def _existing_item_ids(session: Session, hashes: set[str]) -> dict[str, int]:
    if not hashes:
        return {}
    found = session.execute(select(Item.content_hash, Item.id).where(Item.content_hash.in_(list(hashes))))
    return {content_hash: item_id for content_hash, item_id in found}


def _outcomes(writes: list[Write], item_ids: dict[str, int], new_items: set[int], added: set[str]) -> list[Outcome]:
    """Stored for the arrival that brought new content, Duplicate for later new arrivals of it,
    Redelivered for an arrival already recorded (also when a batch repeats an arrival)."""
    outcomes: list[Outcome] = []
    unclaimed_keys, unclaimed_items = set(added), set(new_items)
    for write in writes:
        first_arrival = write.arrival.key in unclaimed_keys
        unclaimed_keys.discard(write.arrival.key)
        if isinstance(write, FailureWrite):
            outcomes.append(Failed(write.reason) if first_arrival else Redelivered(None))
            continue
        item_id = item_ids[write.content_hash]
        if not first_arrival:
            outcomes.append(Redelivered(item_id))
        elif item_id in unclaimed_items:
            unclaimed_items.discard(item_id)
            outcomes.append(Stored(item_id))
        else:
            outcomes.append(Duplicate(item_id))
    return outcomes


def save_item(session: Session, item: ParsedItem, content_hash: str, fmt: str, arrival: Arrival) -> Outcome:
    """A new item with its first origin, or one more origin on the item that holds this content."""
    return save_writes(session, [ItemWrite(item, content_hash, fmt, arrival)])[0]


def save_failure(session: Session, arrival: Arrival, reason: str) -> Outcome:
    return save_writes(session, [FailureWrite(arrival, reason)])[0]


def _failure_values(arrival: Arrival, reason: str) -> dict[str, Any]:
    return {
        "arrival_key": arrival.key,
        "kind": arrival.kind,
        "ref": arrival.ref,
        "entry_id": arrival.entry_id,
        "reason": reason,
        "raw_sha256": arrival.raw_sha256,
        "at": utc_now(),
    }


def keep_raw_compressed(session: Session, blobs: dict[str, tuple[int, bytes]]) -> None:
    """Keep inputs' original bytes, each once: sha256 -> (size, zlib-compressed bytes)."""
    now = utc_now()
    rows = [{"sha256": sha, "size": size, "data": data, "stored_at": now} for sha, (size, data) in blobs.items()]
    _insert_ignore_many(session, RawBlob, rows, ["sha256"], "sha256")


def keep_raw(session: Session, sha256: str, payload: bytes) -> None:
    """A fetched feed document kept, compressed as the watcher compresses files (a whole feed is
    compressed at every changed fetch)."""
    keep_raw_compressed(session, {sha256: (len(payload), compress(payload))})


# -- the watcher's ledger ---------------------------------------------------------------------------


def taken_file(session: Session, ref: str) -> TakenFile | None:
    return session.get(TakenFile, ref)


# Refs per ledger query: within every driver's bound-parameter limit.
LEDGER_CHUNK = 500


def taken_files(session: Session, refs: list[str]) -> dict[str, TakenFile]:
    """The ledger rows of these refs (those it has), in one query per LEDGER_CHUNK refs."""
    found: dict[str, TakenFile] = {}
    for start in range(0, len(refs), LEDGER_CHUNK):
        chunk = refs[start : start + LEDGER_CHUNK]
        found.update(
            (row.ref, row) for row in session.execute(select(TakenFile).where(TakenFile.ref.in_(chunk))).scalars()
        )
    return found


def taken_row(ref: str, size: int, mtime_ns: int, sha256: str | None, arrival_key: str | None) -> dict[str, Any]:
    """A ledger row; with an arrival_key it stays unconfirmed until the store holds that arrival."""
    return {
        "ref": ref,
        "size": size,
        "mtime_ns": mtime_ns,
        "sha256": sha256,
        "arrival_key": arrival_key,
        "confirmed": arrival_key is None,
        "taken_at": utc_now(),
    }


def upsert_many(session: Session, model: type, rows: list[dict[str, Any]], keys: list[str]) -> bool:
    """INSERT … ON CONFLICT (keys) DO UPDATE the other columns, for many rows in one statement; each
    row's keys must differ (a row is updated once). False where the database has no such statement:
    the caller then writes row by row."""
    dialect = session.get_bind().dialect.name
    if dialect not in DIALECT_INSERTS:
        return False
    if rows:
        statement = _upsert_statement(dialect, model, tuple(keys), tuple(rows[0]))
        session.connection().execute(statement, rows)
    return True


@lru_cache(maxsize=64)
def _upsert_statement(dialect: str, model: type, keys: tuple[str, ...], columns: tuple[str, ...]):
    # Made once: building `excluded` (an alias of the whole table) and the statement cost about
    # 0.15 ms a call, at every feed poll and every watcher pass.
    statement = DIALECT_INSERTS[dialect](model.__table__)
    updated = {name: statement.excluded[name] for name in columns if name not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=updated)


def mark_taken_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Record many files as taken (insert, or update the row of the same ref) in bulk statements."""
    latest = list({row["ref"]: row for row in rows}.values())  # one row per ref: a row is updated once
    if not upsert_many(session, TakenFile, latest, ["ref"]):
        for row in latest:
            session.merge(TakenFile(**row))


def mark_taken(
    session: Session, ref: str, size: int, mtime_ns: int, sha256: str | None, arrival_key: str | None = None
) -> None:
    """Record a file as taken; with an arrival_key it stays unconfirmed until the store holds that arrival."""
    mark_taken_many(session, [taken_row(ref, size, mtime_ns, sha256, arrival_key)])


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
    rows = list(session.execute(query).scalars())
    landed: set[str] = set()
    for start in range(0, len(rows), LEDGER_CHUNK):
        landed |= landed_keys(session, [row.arrival_key for row in rows[start : start + LEDGER_CHUNK]])
    missing = []
    for taken in rows:
        if taken.arrival_key in landed:
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
        "updated_at": _iso(item.updated_at),
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


@dataclass(frozen=True)
class ItemFilter:
    """What `GET /items` narrows by; None: any."""

    since: datetime | None = None
    source: str | None = None
    language: str | None = None
    cluster: int | None = None
    format: str | None = None


def item_page(session: Session, after: int, limit: int, where: ItemFilter) -> list[dict[str, Any]]:
    """Up to `limit` items with an id above `after`, in id order, as exported: a cursor that new
    items never disturb (they get higher ids)."""
    query = select(Item).where(Item.id > after).order_by(Item.id).limit(limit)
    if where.since is not None:
        query = query.where(Item.ingested_at >= where.since)
    if where.source is not None:
        query = query.where(Item.source == where.source)
    if where.language is not None:
        query = query.where(Item.language == where.language)
    if where.cluster is not None:
        query = query.where(or_(Item.cluster_id == where.cluster, Item.id == where.cluster))
    if where.format is not None:
        query = query.where(Item.format == where.format)
    items = list(session.execute(query).scalars())
    origins = _origins_of(session, [item.id for item in items])
    return [item_record(item, origins[item.id]) for item in items]


def one_item(session: Session, item_id: int) -> dict[str, Any] | None:
    item = session.get(Item, item_id)
    return item_record(item, _origins_of(session, [item_id])[item_id]) if item is not None else None


def arrival_state(session: Session, arrival_id: str) -> dict[str, Any] | None:
    """Where one arrival stands: stored or duplicate (with the item), failed (with the reason), pending
    (submitted, not stored yet), per part for a document of many entries; None when unknown."""
    prefix = f"{arrival_id}:"
    parts: list[dict[str, Any]] = []
    origins = session.execute(select(Origin).where(Origin.arrival_key.startswith(prefix, autoescape=True)))
    origins = list(origins.scalars())
    first = first_arrivals(session, [origin.item_id for origin in origins])
    for origin in origins:
        outcome = "stored" if first.get(origin.item_id) == origin.arrival_key else "duplicate"
        parts.append({"part": _part(origin.arrival_key), "state": outcome, "item_id": origin.item_id})
    failures = session.execute(select(Failure).where(Failure.arrival_key.startswith(prefix, autoescape=True)))
    for failure in failures.scalars():
        parts.append({"part": _part(failure.arrival_key), "state": "failed", "reason": failure.reason})
    if parts:
        parts.sort(key=lambda part: part["part"])
        return {"arrival_id": arrival_id, "state": parts[0]["state"], "parts": parts}
    submitted = session.execute(select(Submission.id).where(Submission.arrival_key == f"{arrival_id}:0")).first()
    return {"arrival_id": arrival_id, "state": "pending", "parts": []} if submitted else None


def _part(arrival_key: str) -> int:
    return int(arrival_key.rsplit(":", 1)[1])


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


def cluster_records(session: Session, cluster_id: int | None = None) -> list[dict[str, Any]]:
    """Groups of two or more items (or the one group `cluster_id`), largest first, each item with its
    title, source and why it joined."""
    grouped = Item.cluster_id.is_not(None) if cluster_id is None else Item.cluster_id == cluster_id
    sizes = (
        select(Item.cluster_id, func.count().label("size"))
        .where(grouped)
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


def clustered_items(session: Session, after_id: int, limit: int) -> list[tuple[int, str, int]]:
    """(id, body, cluster_id) of placed items after `after_id`, in id order: a page for `ingest reindex`."""
    rows = session.execute(
        select(Item.id, Item.body, Item.cluster_id)
        .where(Item.id > after_id, Item.cluster_id.is_not(None))
        .order_by(Item.id)
        .limit(limit)
    )
    return [tuple(row) for row in rows]


def unplaced_ids(session: Session, after_id: int, limit: int) -> list[int]:
    """Ids of items without a cluster after `after_id`, in id order: a page for `ingest reindex`."""
    rows = session.execute(
        select(Item.id).where(Item.id > after_id, Item.cluster_id.is_(None)).order_by(Item.id).limit(limit)
    )
    return list(rows.scalars())


def set_cluster(session: Session, item_id: int, cluster_id: int, matched: int | None, similarity: float | None) -> None:
    item = session.get(Item, item_id)
    item.cluster_id, item.matched_item_id, item.similarity = cluster_id, matched, similarity


def unplaced_items(session: Session, item_ids: Iterable[int]) -> list[tuple[int, str]]:
    """(id, body) of those items that have no cluster yet, in id order."""
    ids = sorted(set(item_ids))
    if not ids:
        return []
    rows = session.execute(
        select(Item.id, Item.body).where(Item.id.in_(ids), Item.cluster_id.is_(None)).order_by(Item.id)
    )
    return [(item_id, body) for item_id, body in rows]


def first_arrivals(session: Session, item_ids: Iterable[int]) -> dict[int, str]:
    """item id -> the arrival key of its first origin (the arrival that stored it)."""
    ids = sorted(set(item_ids))
    if not ids:
        return {}
    first = select(Origin.item_id, func.min(Origin.id).label("first_id")).where(Origin.item_id.in_(ids))
    first = first.group_by(Origin.item_id).subquery()
    rows = session.execute(select(first.c.item_id, Origin.arrival_key).join(Origin, Origin.id == first.c.first_id))
    return {item_id: key for item_id, key in rows}


def set_clusters(session: Session, placements: dict[int, Any]) -> None:
    """Record many items' placements (cluster_id, matched_item_id, similarity) in one bulk UPDATE."""
    if not placements:
        return
    rows = [
        {"item": item_id, "cluster": p.cluster_id, "matched": p.matched_item_id, "similarity_": p.similarity}
        for item_id, p in placements.items()
    ]
    session.connection().execute(_SET_CLUSTER, rows)


# Core, not the ORM's bulk update by primary key: the same UPDATE a row, without the ORM's work a
# row (a third of the cost, on every message a worker handles).
_items = Item.__table__
_SET_CLUSTER = (
    _items.update()
    .where(_items.c.id == bindparam("item"))
    .values(cluster_id=bindparam("cluster"), matched_item_id=bindparam("matched"), similarity=bindparam("similarity_"))
)


# -- the metadata report ---------------------------------------------------------------------------

# The fields an input may or may not give (title and body every item has).
REPORTED_FIELDS = ("source", "original_source", "author", "published_at", "updated_at", "language", "url")


def field_shares(session: Session) -> list[dict[str, Any]]:
    """Per format, oldest format name first: how many items, and the share (0 to 1) having each field."""
    present = [func.count(getattr(Item, name)) for name in REPORTED_FIELDS]
    rows = session.execute(select(Item.format, func.count(), *present).group_by(Item.format).order_by(Item.format))
    return [
        {
            "format": fmt,
            "items": total,
            "fields": {name: round(found / total, 3) for name, found in zip(REPORTED_FIELDS, counts)},
        }
        for fmt, total, *counts in rows
    ]
