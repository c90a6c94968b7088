"""ParsedItem: what every parser returns and every normalisation step takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class ParsedItem:
    title: str
    body: str
    source: str | None = None
    original_source: str | None = None
    author: str | None = None
    published_at: datetime | None = None
    language: str | None = None
    url: str | None = None
    entry_id: str | None = None

    def but(self, **changes: object) -> ParsedItem:
        """A copy with some fields changed: steps never mutate what they are given."""
        return replace(self, **changes)
