"""JSON (an object, an array of objects, or a JSON Feed document) and JSON Lines.

Each object is an item; its keys are read through the alias table (title/headline, body/content…).
A bad entry fails alone: in JSON Lines a line that is not an object fails with its line number.
"""

from __future__ import annotations

import json

from shared.dates import to_utc
from shared.errors import InputError
from shared.parsers.fields import as_text, body_text, title_from_body
from shared.parsers.model import Document, EntryFailure, Parsed, ParsedItem

JSON_FEED_VERSION_PREFIX = "https://jsonfeed.org/version/"


def sniff(text: str) -> str | None:
    return None if text.lstrip()[:1] in ("{", "[") else "not JSON: it does not start with { or ["


def sniff_lines(text: str) -> str | None:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return None if first.lstrip().startswith("{") else "not JSON Lines: the first line is not a JSON object"


def _pick(record: dict, aliases: dict[str, list[str]], name: str) -> object:
    for key in aliases.get(name, [name]):
        value = record.get(key)
        if value not in (None, "", [], {}):
            return value
    return None


def record_to_item(record: dict, aliases: dict[str, list[str]], source: str | None = None) -> Parsed:
    """One JSON object -> an item, or the reason it cannot be one."""
    entry_id = as_text(_pick(record, aliases, "entry_id"))
    body = body_text(_pick(record, aliases, "body"))
    title = as_text(_pick(record, aliases, "title"))
    if not body:
        return EntryFailure("no body: none of the body fields holds text", entry_id)
    return ParsedItem(
        title=title or title_from_body(body),
        body=body,
        source=as_text(_pick(record, aliases, "source")) or source,
        original_source=as_text(_pick(record, aliases, "original_source")),
        author=as_text(_pick(record, aliases, "author")),
        published_at=to_utc(_pick(record, aliases, "published_at")),
        updated_at=to_utc(_pick(record, aliases, "updated_at")),
        language=as_text(_pick(record, aliases, "language")),
        url=as_text(_pick(record, aliases, "url")),
        entry_id=entry_id,
    )


def is_json_feed(value: object) -> bool:
    return isinstance(value, dict) and str(value.get("version", "")).startswith(JSON_FEED_VERSION_PREFIX)


def json_feed_items(feed: dict) -> list[Parsed]:
    """JSON Feed 1.0/1.1: items with content_html or content_text; the feed's title is the source."""
    source = as_text(feed.get("title"))
    language = as_text(feed.get("language"))
    items = feed.get("items")
    if not isinstance(items, list):
        raise InputError("JSON Feed without an items list")
    parsed = []
    for entry in items:
        if not isinstance(entry, dict):
            parsed.append(EntryFailure("JSON Feed item is not an object"))
            continue
        record = {
            "entry_id": entry.get("id"),
            "title": entry.get("title"),
            "body": entry.get("content_html") or entry.get("content_text") or entry.get("summary"),
            "author": entry.get("authors") or entry.get("author") or feed.get("authors") or feed.get("author"),
            "published_at": entry.get("date_published") or entry.get("date_modified"),
            "updated_at": entry.get("date_modified"),
            "url": entry.get("url") or entry.get("external_url"),
            "language": entry.get("language") or language,
        }
        parsed.append(record_to_item(record, {}, source))
    return parsed


def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError("not valid JSON: nested too deeply") from None


def parse(doc: Document) -> list[Parsed]:
    value = _loads(doc.text)
    if is_json_feed(value):
        return json_feed_items(value)
    if isinstance(value, dict):
        return [record_to_item(value, doc.aliases)]
    if isinstance(value, list):
        return [
            record_to_item(entry, doc.aliases)
            if isinstance(entry, dict)
            else EntryFailure(f"entry {index + 1} is not a JSON object")
            for index, entry in enumerate(value)
        ]
    raise InputError("JSON that is neither an object nor an array of objects")


def _line_item(number: int, line: str, aliases: dict[str, list[str]]) -> Parsed:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        return EntryFailure(f"line {number}: not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})")
    if not isinstance(value, dict):
        return EntryFailure(f"line {number}: not a JSON object")
    parsed = record_to_item(value, aliases)
    if isinstance(parsed, EntryFailure):
        return EntryFailure(f"line {number}: {parsed.reason}", parsed.entry_id)
    return parsed


def parse_lines(doc: Document) -> list[Parsed]:
    return [
        _line_item(number, line, doc.aliases)
        for number, line in enumerate(doc.text.split("\n"), start=1)
        if line.strip()
    ]
