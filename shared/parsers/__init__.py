"""One parser per format behind one interface: parse(Document) -> list[ParsedItem | EntryFailure].

The registry picks a format by the input's extension, and the format confirms it by sniffing
the content; an unknown extension is a failure `unsupported format`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from shared.errors import InputError
from shared.parsers.model import Document, EntryFailure, Parsed, ParsedItem


@dataclass(frozen=True)
class Format:
    name: str
    parse: Callable[[Document], list[Parsed]]
    sniff: Callable[[Document], str | None]  # None when the content is of this format, else why not


def _lazy(module: str, function: str) -> Callable:
    """A parser module's function, imported on first call: the CLI should not load trafilatura."""

    def call(*args):
        return getattr(importlib.import_module(f"shared.parsers.{module}"), function)(*args)

    return call


TEXT = Format("text", _lazy("text", "parse"), lambda doc: None)
MARKDOWN = Format("markdown", _lazy("markdown", "parse"), lambda doc: None)
HTML = Format("html", _lazy("html", "parse"), lambda doc: _lazy("html", "sniff")(doc.text))
JSON = Format("json", _lazy("jsondoc", "parse"), lambda doc: _lazy("jsondoc", "sniff")(doc.text))
JSON_LINES = Format("jsonl", _lazy("jsondoc", "parse_lines"), lambda doc: _lazy("jsondoc", "sniff_lines")(doc.text))
FEED = Format("feed", _lazy("feed", "parse"), lambda doc: _lazy("feed", "sniff_bytes")(doc.data))

FORMATS_BY_EXTENSION: dict[str, Format] = {
    ".txt": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".json": JSON,
    ".jsonl": JSON_LINES,
    ".ndjson": JSON_LINES,
    ".xml": FEED,
    ".rss": FEED,
    ".atom": FEED,
    ".rdf": FEED,
}


def format_for(name: str) -> Format:
    """The format of a file name, or InputError('unsupported format')."""
    found = FORMATS_BY_EXTENSION.get(PurePosixPath(name).suffix.lower())
    if found is None:
        raise InputError("unsupported format")
    return found


def format_name(name: str) -> str:
    """The format a name points at (`.gz` looked through), or 'unknown': a metrics label."""
    inner = name[:-3] if name.lower().endswith(".gz") else name
    found = FORMATS_BY_EXTENSION.get(PurePosixPath(inner).suffix.lower())
    return found.name if found else "unknown"


def parse_document(doc: Document) -> tuple[Format, list[Parsed]]:
    """Pick the format by extension, confirm it by sniffing, parse."""
    fmt = format_for(doc.name)
    mismatch = fmt.sniff(doc)
    if mismatch:
        raise InputError(mismatch)
    return fmt, fmt.parse(doc)


__all__ = ["Document", "EntryFailure", "Format", "Parsed", "ParsedItem", "format_for", "parse_document"]
