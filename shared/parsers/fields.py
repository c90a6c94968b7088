"""Reading loosely shaped values (JSON objects, feed entries) into ParsedItem fields."""

from __future__ import annotations

import re

from shared.parsers.htmltext import html_to_text, looks_like_html


MAX_NESTING = 20  # deeper than any real field; a YAML alias can make a value that contains itself


def as_text(value: object, depth: int = 0) -> str | None:
    """A string, a number, {"name": …} or a list of those -> one string, or None."""
    if value is None or isinstance(value, bool) or depth > MAX_NESTING:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return as_text(value.get("name") or value.get("title") or value.get("value") or value.get("url"), depth + 1)
    if isinstance(value, list):
        names = [name for name in (as_text(v, depth + 1) for v in value) if name]
        return ", ".join(names) or None
    return None


# How feeds write a person: "jane@example.com (Jane Smith)" (RSS) or "Jane Smith <jane@example.com>".
EMAIL_THEN_NAME = re.compile(r"^\S+@\S+\s*\((?P<name>[^()]+)\)$")
NAME_THEN_EMAIL = re.compile(r"^(?P<name>[^<>@]+?)\s*<\S+@\S+>$")


def person_name(value: str | None) -> str | None:
    """A person's name without the e-mail address a feed may write around it; an address alone stays."""
    if not value:
        return value
    match = EMAIL_THEN_NAME.match(value) or NAME_THEN_EMAIL.match(value)
    return match.group("name").strip() if match else value


def body_text(value: object) -> str | None:
    """A body that may be HTML or plain text -> plain text with paragraphs kept."""
    text = as_text(value) if not isinstance(value, list) else "\n\n".join(filter(None, map(as_text, value)))
    if text is None:
        return None
    return html_to_text(text) if looks_like_html(text) else text


def title_from_body(body: str, limit: int = 100) -> str:
    """A title for an entry that has none: its first line, cut at a word boundary."""
    first = body.strip().split("\n", 1)[0]
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0] + "…"
