"""process(raw) -> outcomes: decode, parse, normalise, fingerprint, store, in that order.

`derive` is pure (bytes in, items out); `process` adds the one database transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import structlog
from sqlalchemy.exc import OperationalError, StatementError
from sqlmodel import Session

from shared import store
from shared.decode import decode_text, unwrap
from shared.errors import InputError
from shared.fingerprint import content_hash
from shared.db import session_scope
from shared.dedup import LAYOUT, NearDuplicateIndex, Placement, Placing
from shared.messages import RawInput
from shared.normalise import Rules, identify_languages, normalise
from shared.parsers import Document, EntryFailure, Parsed, ParsedItem, parse_document
from shared.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Context:
    rules: Rules
    max_bytes: int
    keep_raw: bool
    json_aliases: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        return cls(Rules.from_settings(settings), settings.max_file_bytes, settings.keep_raw, settings.json_aliases)


@dataclass(frozen=True)
class Derived:
    item: ParsedItem
    content_hash: str
    format: str


def _checked(item: ParsedItem) -> ParsedItem:
    if not item.title:
        raise InputError("no title")
    if not item.body:
        raise InputError("no body left after removing boilerplate")
    return item


def _finish(parsed: Parsed, fmt: str, rules: Rules, identify_language: bool = True) -> Derived | EntryFailure:
    """Normalise and fingerprint one parsed entry; an entry that ends empty fails alone. (Neither
    the check nor the fingerprint reads the language, so it may be identified after them.)"""
    if isinstance(parsed, EntryFailure):
        return parsed
    try:
        item = _checked(normalise(parsed, rules, identify_language))
    except InputError as exc:
        return EntryFailure(str(exc), parsed.entry_id)
    return Derived(item, content_hash(item.title, item.body), fmt)


def derive(name: str, payload: bytes, context: Context, identify_language: bool = True) -> list[Derived | EntryFailure]:
    """The pure half: bytes of a named input -> normalised, fingerprinted items, or InputError.
    Without identify_language, the items' languages are left for identify_languages."""
    if len(payload) > context.max_bytes:
        raise InputError(f"too large: {len(payload)} bytes exceeds the {context.max_bytes} byte limit")
    name, data = unwrap(name, payload, context.max_bytes)
    doc = Document(name, data, decode=decode_text, aliases=context.json_aliases)
    fmt, entries = parse_document(doc)
    if not entries:
        raise InputError("no items in the document")
    return [_finish(parsed, fmt.name, context.rules, identify_language) for parsed in entries]


def _arrival(raw: RawInput, part: int, entry_id: str | None) -> store.Arrival:
    return store.Arrival(
        key=f"{raw.arrival_id}:{part}",
        kind=raw.kind,
        ref=raw.ref,
        entry_id=entry_id or raw.entry_id,
        seen_at=raw.seen_at,
        raw_sha256=raw.sha256,
    )


def _derive_or_reason(
    raw: RawInput, payload: bytes, context: Context, identify_language: bool = True
) -> list[Derived | EntryFailure] | str:
    try:
        return derive(raw.name or raw.ref, payload, context, identify_language)
    except InputError as exc:
        return str(exc)
    except Exception as exc:  # a parser bug must end as a failure of this input, not a crashed task
        log.exception("parser.crashed", origin=raw.ref)
        return f"internal parser error: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Prepared:
    """One input derived and ready to store: its writes (an item or a failure per part), in order."""

    raw: RawInput
    writes: list[store.Write]


def _write(raw: RawInput, part: int, derived: Derived | EntryFailure) -> store.Write:
    if isinstance(derived, EntryFailure):
        return store.FailureWrite(_arrival(raw, part, derived.entry_id), derived.reason)
    return store.ItemWrite(
        derived.item, derived.content_hash, derived.format, _arrival(raw, part, derived.item.entry_id)
    )


def prepare(raw: RawInput, context: Context) -> Prepared:
    """The pure half for one input of a message: never raises for bad input, which becomes a failure."""
    return _prepared(raw, _derive_or_reason(raw, raw.payload(), context))


def prepare_all(raws: list[RawInput], context: Context) -> list[Prepared]:
    """prepare() for each input of a message, the languages of all their items identified together
    (identify_languages): the same items as one by one, in a little less time."""
    derived = [_derive_or_reason(raw, raw.payload(), context, identify_language=False) for raw in raws]
    items = [
        one.item for result in derived if not isinstance(result, str) for one in result if isinstance(one, Derived)
    ]
    identified = iter(identify_languages(items, context.rules))
    return [
        _prepared(raw, result if isinstance(result, str) else [_with_language(one, identified) for one in result])
        for raw, result in zip(raws, derived)
    ]


def _with_language(derived: Derived | EntryFailure, identified: Iterator[ParsedItem]) -> Derived | EntryFailure:
    return replace(derived, item=next(identified)) if isinstance(derived, Derived) else derived


def _prepared(raw: RawInput, derived: list[Derived | EntryFailure] | str) -> Prepared:
    if isinstance(derived, str):
        return Prepared(raw, [store.FailureWrite(_arrival(raw, 0, None), derived)])
    return Prepared(raw, [_write(raw, part, one) for part, one in enumerate(derived)])


def killed_the_worker(raw: RawInput, kills: int) -> Prepared:
    """The failure of an input that killed the worker process handling it `kills` times: never parsed again."""
    return Prepared(raw, [store.FailureWrite(_arrival(raw, 0, None), f"killed the worker {kills} times")])


def store_all(session: Session, prepared: list[Prepared], keep_raw: bool) -> list[list[store.Outcome]]:
    """Store many prepared inputs in this session's one transaction; the outcomes of each input."""
    if keep_raw:
        # The message carries the bytes zlib-compressed already: kept as they came, not compressed again.
        blobs = {p.raw.sha256: (p.raw.size, p.raw.compressed()) for p in prepared}
        store.keep_raw_compressed(session, blobs)
    flat = iter(store.save_writes(session, [write for p in prepared for write in p.writes]))
    return [[next(flat) for _write in p.writes] for p in prepared]


def store_batch(url: str, prepared: list[Prepared], keep_raw: bool) -> list[list[store.Outcome]]:
    """One transaction for the whole batch; if the database refuses it, one per input, so that an input
    the database will not take (a value too long for a column, say) fails alone with the reason."""
    try:
        with session_scope(url) as session:
            return store_all(session, prepared, keep_raw)
    except StatementError as exc:
        if isinstance(exc, OperationalError):
            raise  # locked or away: transient, the whole task is retried
        if len(prepared) > 1:
            return [store_batch(url, [one], keep_raw)[0] for one in prepared]
        return [_store_refused(url, prepared[0], exc)]


def _store_refused(url: str, prepared: Prepared, exc: StatementError) -> list[store.Outcome]:
    reason = f"cannot be stored: {str(exc.orig or exc).splitlines()[0]}"
    log.error("store.refused", origin=prepared.raw.ref, error=reason)
    with session_scope(url) as session:
        return [store.save_failure(session, _arrival(prepared.raw, 0, None), reason)]


def process(session: Session, raw: RawInput, context: Context) -> list[store.Outcome]:
    """Store what one input holds; the same input processed twice writes nothing new."""
    return store_all(session, [prepare(raw, context)], context.keep_raw)[0]


def place_all(session: Session, index: NearDuplicateIndex, item_ids: list[int]) -> dict[int, Placement]:
    """Give each stored item without a cluster its cluster, all in one call to the index, in id order;
    items placed already are left alone (a redelivered message changes nothing), and so are items
    whose placing the index defers while `ingest reindex` rebuilds it (the rebuild places them)."""
    unplaced = store.unplaced_items(session, item_ids)
    placements = index.place([Placing(item_id, body) for item_id, body in unplaced])
    placed = {item_id: found for (item_id, _body), found in zip(unplaced, placements) if found is not None}
    store.set_clusters(session, placed)
    return placed


REBUILD_HOLD_SECONDS = 60  # a rebuild that stops renewing its hold for this long is given up on
REBUILD_PAGE = 500


@dataclass(frozen=True)
class Rebuilt:
    restored: int  # items put back with the cluster they have
    placed: int  # items without a cluster (never placed, or stored while the index was rebuilt) placed now


def rebuild_index(url: str, index: NearDuplicateIndex, advance: Callable[[int], None]) -> Rebuilt:
    """The near-duplicate index rebuilt from the store while workers run, every cluster keeping its id.

    Placed items are restored into a fresh index while new items wait unplaced; the fresh index
    goes live in one step; then every item without a cluster is placed against it, in id order,
    alongside the workers placing theirs. `advance` hears how many items each page handled.
    """
    prefix = index.begin_rebuild(REBUILD_HOLD_SECONDS)
    restored = after = 0
    while True:
        with session_scope(url) as session:
            rows = store.clustered_items(session, after, REBUILD_PAGE)
        if not rows:
            break
        index.place([Placing(item_id, body, cluster_id) for item_id, body, cluster_id in rows], into="building")
        index.keep_rebuilding(prefix, REBUILD_HOLD_SECONDS)
        restored, after = restored + len(rows), rows[-1][0]
        advance(len(rows))
    index.finish_rebuild(prefix)
    return Rebuilt(restored, place_unplaced(url, index, advance))


def upgrade_index(url: str, index: NearDuplicateIndex, advance: Callable[[int], None]) -> Rebuilt | None:
    """An index in an older layout rebuilt in the current one (as `rebuild_index`, workers running or
    not, every cluster kept); None when it is current already."""
    if index.live_layout() == LAYOUT:
        return None
    return rebuild_index(url, index, advance)


def place_unplaced(url: str, index: NearDuplicateIndex, advance: Callable[[int], None]) -> int:
    """Every item without a cluster placed in the live index, a page at a time, in id order."""
    placed = after = 0
    while True:
        with session_scope(url) as session:
            ids = store.unplaced_ids(session, after, REBUILD_PAGE)
            if not ids:
                return placed
            placed += len(place_all(session, index, ids))
        after = ids[-1]
        advance(len(ids))


def place(session: Session, index: NearDuplicateIndex, item_id: int) -> Placement | None:
    """Give a stored item its near-duplicate cluster, once: None when it has one already."""
    return place_all(session, index, [item_id]).get(item_id)
