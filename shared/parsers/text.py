"""Plain-text articles: title line, optional publisher line, then the body.

Boilerplate, `Article Source:` and closing attributions are left to shared.normalise, which
every format shares.
"""

from __future__ import annotations

from shared.errors import InputError
from shared.parsers.model import Document, ParsedItem

PUBLISHER_MAX_WORDS = 8
# A line ending in one of these is a sentence, not a publisher's name.
CLOSING_PUNCTUATION = tuple(".!?:;,…\"'”’»)")


def looks_like_publisher(line: str) -> bool:
    """A short line with no closing punctuation names the publisher."""
    stripped = line.strip()
    return len(stripped.split()) <= PUBLISHER_MAX_WORDS and not stripped.endswith(CLOSING_PUNCTUATION)


def _next_content_line(lines: list[str], start: int) -> int | None:
    for index in range(start, len(lines)):
        if lines[index].strip():
            return index
    return None


def sniff(text: str) -> str | None:
    return None  # any text is a plain-text article


def parse(doc: Document) -> list[ParsedItem]:
    lines = doc.text.split("\n")
    title_at = _next_content_line(lines, 0)
    if title_at is None:
        raise InputError("empty document")
    title = lines[title_at].strip()
    body_from = title_at + 1
    source = None
    candidate_at = _next_content_line(lines, body_from)
    if candidate_at is not None and looks_like_publisher(lines[candidate_at]):
        # A short line with nothing after it is the body itself, not a publisher.
        if _next_content_line(lines, candidate_at + 1) is not None:
            source = lines[candidate_at].strip()
            body_from = candidate_at + 1
    body = "\n".join(lines[body_from:])
    if not body.strip():
        raise InputError("no body after the title")
    return [ParsedItem(title=title, body=body, source=source)]
