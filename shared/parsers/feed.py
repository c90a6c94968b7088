"""Feed documents (RSS 0.9x/1.0/2.0, Atom 0.3/1.0, RDF) through feedparser; each entry is an item.

feedparser is given bytes, never a string it could take for a path or URL. Documents that declare
XML entities are refused before parsing: entity expansion is how feeds attack parsers.
"""

from __future__ import annotations

import re

import feedparser

from shared.dates import to_utc
from shared.errors import InputError
from shared.parsers.fields import as_text, body_text, person_name, title_from_body
from shared.parsers.htmltext import html_to_text
from shared.parsers.model import Document, EntryFailure, Parsed, ParsedItem
from shared.urls import host_name

FEED_ROOT = re.compile(rb"<(?:[\w-]+:)?(rss|feed|RDF|rdf:RDF|channel)\b")
ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.IGNORECASE)
PROLOG_BYTES = 65536
HTML_TYPES = ("text/html", "application/xhtml+xml")


def _ascii_view(data: bytes) -> bytes:
    # UTF-16/32 feeds interleave NULs: drop them so the byte patterns below still match.
    return data[:PROLOG_BYTES].replace(b"\x00", b"")


def sniff_bytes(data: bytes) -> str | None:
    return None if FEED_ROOT.search(_ascii_view(data)) else "not a feed document: no rss, feed or RDF root element"


def _text_of(detail: dict | None, fallback: object) -> str | None:
    """A feedparser text construct -> plain text, reading HTML when its type says so."""
    if detail and detail.get("value"):
        value = detail["value"]
        return html_to_text(value) if detail.get("type") in HTML_TYPES else value.strip()
    return body_text(fallback)


def _entry_body(entry: dict) -> str | None:
    contents = [c for c in entry.get("content") or [] if c.get("value")]
    if contents:
        longest = max(contents, key=lambda c: len(c["value"]))
        return _text_of(longest, None)
    return _text_of(entry.get("summary_detail"), entry.get("summary"))


def _author(holder: dict) -> str | None:
    """An entry's or a feed's author: Atom's <author>, RSS's <author> or managingEditor, dc:creator."""
    return person_name(as_text(holder.get("author")) or as_text(holder.get("authors")))


def _original_source(entry: dict) -> str | None:
    """The outlet an entry first came from: RSS 2.0's <source url="…">Name</source> or Atom's <source>;
    its name, else its address's host."""
    source = entry.get("source")
    if not isinstance(source, dict):
        return None
    # Its title through _text_of: an Atom title of type html is markup, read as text, never kept as it is.
    name = _text_of(source.get("title_detail"), source.get("title"))
    return name or host_name(as_text(source.get("href")) or as_text(source.get("link")))


def _entry_item(entry: dict, source: str | None, language: str | None, feed_author: str | None) -> Parsed:
    entry_id = as_text(entry.get("id")) or as_text(entry.get("link"))
    body = _entry_body(entry)
    if not body:
        return EntryFailure("entry has no content", entry_id)
    title = _text_of(entry.get("title_detail"), entry.get("title"))
    detail = (entry.get("content") or [{}])[0]
    return ParsedItem(
        title=title or title_from_body(body),
        body=body,
        source=source,
        original_source=_original_source(entry),
        author=_author(entry) or feed_author,  # Atom: an entry without an author has its feed's
        published_at=_entry_date(entry),
        updated_at=_entry_updated(entry),
        language=as_text(detail.get("language")) or language,
        url=as_text(entry.get("link")),
        entry_id=entry_id,
    )


def _entry_date(entry: dict):
    present = set(entry.keys())  # asking for an absent key makes feedparser warn about its fallbacks
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        if key in present and entry[key]:
            return to_utc(entry[key])
    return to_utc(entry.get("published") or entry.get("updated"))


def _entry_updated(entry: dict):
    """Atom's <updated> (and RSS's dcterms:modified): when the entry last changed, to the second."""
    if "updated_parsed" in entry.keys() and entry["updated_parsed"]:
        return to_utc(entry["updated_parsed"])
    return None


def parse_feed_bytes(data: bytes) -> tuple[dict, list[dict]]:
    """feedparser's view of a feed: (feed, entries). InputError when it is not a usable feed."""
    if ENTITY_DECLARATION.search(_ascii_view(data)):
        raise InputError("XML entity declarations are refused (entity expansion attacks)")
    try:
        # No sanitizing: every HTML value becomes plain text through html_to_text, which drops what
        # the sanitizer would (script, style, embedded objects) and keeps no markup; the sanitizer
        # was a third of feedparser's time.
        parsed = feedparser.parse(data, resolve_relative_uris=False, sanitize_html=False)
    except Exception as exc:  # feedparser crashes on some hostile bytes (e.g. a non-UTF-8 encoding name)
        raise InputError(
            f"unreadable feed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not parsed.entries:
        if parsed.get("bozo") and parsed.get("bozo_exception") is not None:
            reason = str(parsed.bozo_exception).splitlines()[0] or type(parsed.bozo_exception).__name__
            raise InputError(f"not a well-formed feed ({reason})")
        raise InputError("feed has no entries")
    return parsed.feed, parsed.entries


def entries_to_items(feed: dict, entries: list[dict]) -> list[Parsed]:
    source = _text_of(feed.get("title_detail"), feed.get("title"))
    language = as_text(feed.get("language"))
    return [_entry_item(entry, source, language, _author(feed)) for entry in entries]


def parse(doc: Document) -> list[Parsed]:
    feed, entries = parse_feed_bytes(doc.data)
    return entries_to_items(feed, entries)
