"""process(raw) -> outcomes: decode, parse, normalise, fingerprint, store, in that order.

`derive` is pure (bytes in, items out); `process` adds the one database transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from sqlmodel import Session

from shared import store
from shared.decode import decode_text, unwrap
from shared.errors import InputError
from shared.fingerprint import content_hash
from shared.dedup import NearDuplicateIndex, Placement
from shared.messages import RawInput
from shared.models import Item
from shared.normalise import Rules, normalise
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


def _finish(parsed: Parsed, fmt: str, rules: Rules) -> Derived | EntryFailure:
    """Normalise and fingerprint one parsed entry; an entry that ends empty fails alone."""
    if isinstance(parsed, EntryFailure):
        return parsed
    try:
        item = _checked(normalise(parsed, rules))
    except InputError as exc:
        return EntryFailure(str(exc), parsed.entry_id)
    return Derived(item, content_hash(item.title, item.body), fmt)


def derive(name: str, payload: bytes, context: Context) -> list[Derived | EntryFailure]:
    """The pure half: bytes of a named input -> normalised, fingerprinted items, or InputError."""
    if len(payload) > context.max_bytes:
        raise InputError(f"too large: {len(payload)} bytes exceeds the {context.max_bytes} byte limit")
    name, data = unwrap(name, payload, context.max_bytes)
    doc = Document(name, data, decode=decode_text, aliases=context.json_aliases)
    fmt, entries = parse_document(doc)
    if not entries:
        raise InputError("no items in the document")
    return [_finish(parsed, fmt.name, context.rules) for parsed in entries]


def _arrival(raw: RawInput, part: int, entry_id: str | None) -> store.Arrival:
    return store.Arrival(
        key=f"{raw.arrival_id}:{part}",
        kind=raw.kind,
        ref=raw.ref,
        entry_id=entry_id or raw.entry_id,
        seen_at=raw.seen_at,
        raw_sha256=raw.sha256,
    )


def _derive_or_reason(raw: RawInput, payload: bytes, context: Context) -> list[Derived] | str:
    try:
        return derive(raw.name or raw.ref, payload, context)
    except InputError as exc:
        return str(exc)
    except Exception as exc:  # a parser bug must end as a failure of this input, not a crashed task
        log.exception("parser.crashed", origin=raw.ref)
        return f"internal parser error: {type(exc).__name__}: {exc}"


def _store_one(session: Session, raw: RawInput, part: int, derived: Derived | EntryFailure) -> store.Outcome:
    if isinstance(derived, EntryFailure):
        return store.save_failure(session, _arrival(raw, part, derived.entry_id), derived.reason)
    return store.save_item(
        session, derived.item, derived.content_hash, derived.format, _arrival(raw, part, derived.item.entry_id)
    )


def process(session: Session, raw: RawInput, context: Context) -> list[store.Outcome]:
    """Store what one input holds; the same input processed twice writes nothing new."""
    payload = raw.payload()
    if context.keep_raw:
        store.keep_raw(session, raw.sha256, payload)
    derived = _derive_or_reason(raw, payload, context)
    if isinstance(derived, str):
        return [store.save_failure(session, _arrival(raw, 0, None), derived)]
    return [_store_one(session, raw, part, one) for part, one in enumerate(derived)]


def place(session: Session, index: NearDuplicateIndex, item_id: int) -> Placement | None:
    """Give a stored item its near-duplicate cluster, once: None when it has one already."""
    item = session.get(Item, item_id)
    if item is None or item.cluster_id is not None:
        return None
    placement = index.claim(item.id, item.body)
    item.cluster_id = placement.cluster_id
    item.matched_item_id = placement.matched_item_id
    item.similarity = placement.similarity
    return placement
