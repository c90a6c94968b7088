"""What parsers take (Document) and give back (ParsedItem, or EntryFailure for one bad entry)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property


@dataclass(frozen=True)
class ParsedItem:
    title: str
    body: str
    source: str | None = None
    original_source: str | None = None
    author: str | None = None
    published_at: datetime | None = None
    updated_at: datetime | None = None
    language: str | None = None
    url: str | None = None
    entry_id: str | None = None

    def but(self, **changes: object) -> ParsedItem:
        """A copy with some fields changed: steps never mutate what they are given."""
        return replace(self, **changes)


@dataclass(frozen=True)
class EntryFailure:
    """One entry of a many-entry document that cannot be ingested; the others still are."""

    reason: str
    entry_id: str | None = None


@dataclass
class Document:
    """An input's bytes (gzip removed) and, decoded on first use, its text."""

    name: str
    data: bytes
    decode: object = field(repr=False, default=None)  # bytes -> str, injected to keep parsers pure
    # Field name -> the keys JSON records may use for it, first found wins (settings can add more).
    aliases: dict[str, list[str]] = field(repr=False, default_factory=dict)

    @cached_property
    def text(self) -> str:
        return self.decode(self.data)


Parsed = ParsedItem | EntryFailure
