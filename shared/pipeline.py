"""process(raw) -> outcomes: decode, parse, normalise, fingerprint, store, in that order.

`derive` is pure (bytes in, items out); `process` adds the one database transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlmodel import Session

from shared import store
from shared.decode import decode_text, unwrap
from shared.errors import InputError
from shared.fingerprint import content_hash
from shared.messages import RawInput
from shared.normalise import Rules, normalise
from shared.parsers import ParsedItem, format_for
from shared.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Context:
    rules: Rules
    max_bytes: int
    keep_raw: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        return cls(Rules.from_settings(settings), settings.max_file_bytes, settings.keep_raw)


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


def derive(name: str, payload: bytes, context: Context) -> list[Derived]:
    """The pure half: bytes of a named input -> normalised, fingerprinted items, or InputError."""
    if len(payload) > context.max_bytes:
        raise InputError(f"too large: {len(payload)} bytes exceeds the {context.max_bytes} byte limit")
    name, data = unwrap(name, payload, context.max_bytes)
    fmt = format_for(name)
    text = decode_text(data)
    derived = []
    for parsed in fmt.parse(text):
        item = _checked(normalise(parsed, context.rules))
        derived.append(Derived(item, content_hash(item.title, item.body), fmt.name))
    if not derived:
        raise InputError("no items in the document")
    return derived


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
        return derive(raw.ref, payload, context)
    except InputError as exc:
        return str(exc)
    except Exception as exc:  # a parser bug must end as a failure of this input, not a crashed task
        log.exception("parser.crashed", origin=raw.ref)
        return f"internal parser error: {type(exc).__name__}: {exc}"


def process(session: Session, raw: RawInput, context: Context) -> list[store.Outcome]:
    """Store what one input holds; the same input processed twice writes nothing new."""
    payload = raw.payload()
    if context.keep_raw:
        store.keep_raw(session, raw.sha256, payload)
    derived = _derive_or_reason(raw, payload, context)
    if isinstance(derived, str):
        return [store.save_failure(session, _arrival(raw, 0, None), derived)]
    return [
        store.save_item(session, d.item, d.content_hash, d.format, _arrival(raw, part, d.item.entry_id))
        for part, d in enumerate(derived)
    ]
