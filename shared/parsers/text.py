"""Plain-text articles, in the shapes people save them: STEPS, small rules read top to bottom.

The sample's shape: a title line, a publisher line, then the body. Also: a headline wrapped over
several lines; a setext underline (`===`, `---`) under the title; a top block of `Key: value` lines
(corpus dumps, exports); a byline (`By …`) and a date line (`Published …`, `Updated: …`, ISO 8601)
under the headline, which leave the body for `author` and the dates; a body hard-wrapped at a fixed
width (e-mail, wire copy, terminal editors), whose paragraphs are joined back into lines.

Boilerplate, `Article Source:`, closing attributions and datelines are left to shared.normalise,
which every format shares.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.dates import to_utc
from shared.errors import InputError
from shared.parsers.model import Document, ParsedItem, replaced

PUBLISHER_MAX_WORDS = 8
# A line ending in one of these is a sentence, not a publisher's name.
CLOSING_PUNCTUATION = tuple(".!?:;,…\"'”’»)")
SETEXT_UNDERLINE = re.compile(r"^\s*(=+|-+)\s*$")
HEADER_LINE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z ]{0,20}?)\s*:\s*(?P<value>\S.*)$")
HEADER_KEYS = {
    "title": "title",
    "headline": "title",
    "source": "source",
    "publisher": "source",
    "publication": "source",
    "author": "author",
    "by": "author",
    "byline": "author",
    "date": "published_at",
    "published": "published_at",
    "updated": "updated_at",
    "url": "url",
    "link": "url",
    "language": "language",
    "lang": "language",
}
BYLINE = re.compile(r"^(?i:by)\s+(?P<names>[A-Z].{0,120})$")
BYLINE_MAX_WORDS = 14
# "Published 12 March 2022, 14:05 GMT", "Updated: 3 May 2023", "Posted on 2022-03-12", a bare ISO 8601 line.
DATE_LINE = re.compile(
    r"^(?:(?P<label>published|posted|updated|last updated|date|first published)(?:\s+on)?\s*:?\s+)(?P<date>.{6,60})$",
    re.IGNORECASE,
)
ISO_DATE_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
WRAPPED_AT_HYPHEN = re.compile(r"\w-$")
LIST_LINE = re.compile(r"^(?:[—–•*·-]|\d+[.)])\s")
# A document is hard-wrapped when its lines within paragraphs stop near one width: at least this many
# such lines, this share of them within WRAP_SLACK characters of the widest line, which is at most
# WRAP_MAX_WIDTH (the sample's own lines, a sentence each, run to hundreds of characters).
WRAP_MIN_LINES = 3
WRAP_SHARE = 0.8
WRAP_SLACK = 20
WRAP_MAX_WIDTH = 100
HEADLINE_MAX_LINES = 4
HEADLINE_MAX_WORDS = 30


@dataclass(frozen=True)
class Draft:
    """An article being read: the lines not yet taken, and the fields found so far."""

    lines: list[str]
    width: int | None = None  # the width the body is hard-wrapped at, or None
    fields: dict[str, str] = field(default_factory=dict)

    def but(self, **changes: object) -> Draft:
        return replaced(self, changes)

    def taking(self, count: int, **found: str) -> Draft:
        """The first `count` lines (blank ones before them included) taken, with the fields they gave."""
        return self.but(lines=self.lines[count:], fields=self.fields | found)


def _first_content(lines: list[str], start: int = 0) -> int | None:
    for index in range(start, len(lines)):
        if lines[index].strip():
            return index
    return None


def _block(lines: list[str], start: int) -> list[str]:
    """The lines from `start` up to the next blank line."""
    end = start
    while end < len(lines) and lines[end].strip():
        end += 1
    return lines[start:end]


def _is_sentence(line: str) -> bool:
    return line.rstrip().endswith(CLOSING_PUNCTUATION)


def wrap_width(lines: list[str]) -> int | None:
    """The width a text is hard-wrapped at, or None when its lines are not cut at one width."""
    inner = [line.rstrip() for line, after in zip(lines, lines[1:]) if line.strip() and after.strip()]
    if len(inner) < WRAP_MIN_LINES:
        return None
    width = max(len(line.rstrip()) for line in lines)
    if width > WRAP_MAX_WIDTH:
        return None
    near = sum(1 for line in inner if len(line) >= width - WRAP_SLACK)
    return width if near >= WRAP_SHARE * len(inner) else None


def measure_wrapping(draft: Draft) -> Draft:
    return draft.but(width=wrap_width(draft.lines))


def read_header_block(draft: Draft) -> Draft:
    """A top block of `Key: value` lines (Title, Source, Author, Date, URL, Language…) gives those fields."""
    start = _first_content(draft.lines)
    if start is None:
        return draft
    block = _block(draft.lines, start)
    found = {}
    for line in block:
        match = HEADER_LINE.match(line.strip())
        key = match and HEADER_KEYS.get(match.group("key").strip().lower())
        if not key:
            return draft  # a line that is no header: the block is the article's own text
        found.setdefault(key, match.group("value").strip())
    if len(found) < 2 and "title" not in found:
        return draft  # one `Key: value` line alone opens many an article ("Update: the road is open.")
    return draft.taking(start + len(block), **found)


def take_title(draft: Draft) -> Draft:
    """The first line; a headline wrapped over a few lines of a wrapped text is one title, joined with
    spaces; a setext underline (`===`, `---`) below it goes with it."""
    if "title" in draft.fields:
        return draft
    start = _first_content(draft.lines)
    if start is None:
        raise InputError("empty document")
    block = _block(draft.lines, start)
    count = _headline_lines(block, draft.width)
    if count < len(block) and SETEXT_UNDERLINE.match(block[count]):
        return draft.taking(start + count + 1, title=" ".join(line.strip() for line in block[:count]))
    if count == 1 and len(block) > 1 and SETEXT_UNDERLINE.match(block[1]):
        return draft.taking(start + 2, title=block[0].strip())
    return draft.taking(start + count, title=" ".join(line.strip() for line in block[:count]))


def _headline_lines(block: list[str], width: int | None) -> int:
    """How many lines of the first block the headline fills: all of a short block in a wrapped text
    (or those above a setext underline), else one."""
    underline = next((n for n, line in enumerate(block) if SETEXT_UNDERLINE.match(line)), None)
    if underline is not None and 0 < underline <= HEADLINE_MAX_LINES:
        return underline
    if width is None or not 1 < len(block) <= HEADLINE_MAX_LINES:
        return 1
    words = sum(len(line.split()) for line in block)
    full = all(len(line.rstrip()) >= width - WRAP_SLACK for line in block[:-1])
    return len(block) if full and words <= HEADLINE_MAX_WORDS and not _is_sentence(block[-1]) else 1


def take_publisher(draft: Draft) -> Draft:
    """A short line with no closing punctuation after the title names the publisher; in a wrapped text
    only a line alone in its block, and never the first line of a paragraph cut at a width (a wrapped
    paragraph may begin with a short line)."""
    if "source" in draft.fields:
        return draft
    at = _first_content(draft.lines)
    if at is None or _next_after(draft.lines, at) is None:
        return draft  # a short line with nothing after it is the body itself
    line = draft.lines[at].strip()
    if not looks_like_publisher(line) or BYLINE.match(line) or _date_line(line):
        return draft
    block = _block(draft.lines, at)
    if len(block) > 1 and (draft.width is not None or _filled(block[0], block[1])):
        return draft
    return draft.taking(at + 1, source=line)


def _filled(line: str, after: str) -> bool:
    """Whether `line` was cut because the next word would not fit: a wrapped paragraph's first line,
    at least as wide as the line after it less that line's first word."""
    first_word = after.split()[0] if after.split() else ""
    return len(line.strip()) + 1 + len(first_word) > len(after.strip())


def looks_like_publisher(line: str) -> bool:
    """A short line with no closing punctuation names the publisher."""
    stripped = line.strip()
    return len(stripped.split()) <= PUBLISHER_MAX_WORDS and not stripped.endswith(CLOSING_PUNCTUATION)


def _next_after(lines: list[str], at: int) -> int | None:
    return _first_content(lines, at + 1)


def take_byline_and_dates(draft: Draft) -> Draft:
    """Under the headline: a byline (`By Jane Smith and Ali Khan, Political Reporter`) and date lines
    (`Published 12 March 2022, 14:05 GMT`, `Updated: …`, ISO 8601), in any order; they leave the body."""
    for _ in range(3):
        at = _first_content(draft.lines)
        if at is None or _next_after(draft.lines, at) is None:
            return draft
        line = draft.lines[at].strip()
        found = _byline(line) or _date_line(line)
        if not found:
            return draft
        draft = draft.taking(at + 1, **{k: v for k, v in found.items() if k not in draft.fields})
    return draft


def _byline(line: str) -> dict[str, str] | None:
    match = BYLINE.match(line)
    if not match or len(line.split()) > BYLINE_MAX_WORDS or line.endswith((".", "!", "?")):
        return None
    names = match.group("names").split(",")[0].strip()  # ", Political Reporter": a role, not a name
    if names.isupper():  # "BY MARIA LOPEZ": set in capitals, a name all the same
        names = names.title()
    return {"author": names} if names else None


def _date_line(line: str) -> dict[str, str] | None:
    if ISO_DATE_LINE.match(line):
        return {"published_at": line}
    match = DATE_LINE.match(line)
    if not match or to_utc(match.group("date")) is None:
        return None
    label = match.group("label").lower()
    return {"updated_at" if "updated" in label else "published_at": match.group("date")}


def unwrap_paragraphs(draft: Draft) -> Draft:
    """In a hard-wrapped text, the lines of a paragraph joined back with spaces; a list line starts a
    line of its own, as in a text that was never wrapped."""
    if draft.width is None:
        return draft
    joined: list[str] = []
    for line in draft.lines:
        stripped = line.strip()
        continues = joined and joined[-1] and stripped and not LIST_LINE.match(stripped)
        if continues:
            # "north-" + "west": wrapped at a hyphen (as Python's textwrap does), joined without a space.
            glue = "" if WRAPPED_AT_HYPHEN.search(joined[-1]) and stripped[0].isalpha() else " "
            joined[-1] = f"{joined[-1]}{glue}{stripped}"
        else:
            joined.append(stripped)
    return draft.but(lines=joined)


STEPS: tuple[Callable[[Draft], Draft], ...] = (
    measure_wrapping,
    read_header_block,
    take_title,
    take_publisher,
    take_byline_and_dates,
    unwrap_paragraphs,
)


def sniff(text: str) -> str | None:
    return None  # any text is a plain-text article


def parse(doc: Document) -> list[ParsedItem]:
    draft = Draft(doc.text.split("\n"))
    for step in STEPS:
        draft = step(draft)
    body = "\n".join(draft.lines)
    if not body.strip():
        raise InputError("no body after the title")
    found = draft.fields
    published = to_utc(found.get("published_at"))
    updated = to_utc(found.get("updated_at"))
    return [
        ParsedItem(
            title=found["title"],
            body=body,
            source=found.get("source"),
            author=found.get("author"),
            published_at=published or updated,
            updated_at=updated,
            language=found.get("language"),
            url=found.get("url"),
        )
    ]
