"""What parsers take (Document) and give back (ParsedItem, or EntryFailure for one bad entry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TypeVar

Frozen = TypeVar("Frozen")


def replaced(instance: Frozen, changes: dict[str, object]) -> Frozen:
    """dataclasses.replace for the frozen dataclasses the pipeline steps pass along (no __post_init__,
    no slots, no init=False field): a copy of the instance's fields with `changes` over them.

    replace() calls __init__ again, which sets every field through object.__setattr__ (the class is
    frozen): 15 µs for a ParsedItem, where copying its dict takes 3, and a text item goes through
    a dozen steps. An unknown field is a TypeError, as with replace()."""
    unknown = changes.keys() - instance.__dataclass_fields__.keys()
    if unknown:
        raise TypeError(f"{type(instance).__name__} has no field {', '.join(sorted(unknown))}")
    copy = object.__new__(type(instance))
    copy.__dict__.update(instance.__dict__)
    copy.__dict__.update(changes)
    return copy


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
        return replaced(self, changes)


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
