"""Markdown notes: YAML front matter for the fields, else the first heading as the title."""

from __future__ import annotations

import re

import yaml
from markdown_it import MarkdownIt

from shared.dates import to_utc
from shared.errors import InputError
from shared.parsers.fields import as_text
from shared.parsers.htmltext import html_to_text
from shared.parsers.model import Document, ParsedItem

FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<yaml>.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
# breaks=True: a line that follows another without a blank line stays a line of its own.
MARKDOWN = MarkdownIt("commonmark", {"breaks": True, "html": True}).enable("table")


def sniff(text: str) -> str | None:
    return None  # any text is valid Markdown


def split_front_matter(text: str) -> tuple[dict, str]:
    match = FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group("yaml"))
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML front matter ({str(exc).splitlines()[0]})") from None
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        # PyYAML's constructors raise these for a well-formed value they cannot build
        # (`date: 2024-13-45`, `!!float abc`, `!!int` with nothing): bad input all the same.
        detail = str(exc).splitlines()[0] if str(exc) else "a value it cannot read"
        raise InputError(f"invalid YAML front matter ({type(exc).__name__}: {detail})") from None
    return (meta if isinstance(meta, dict) else {}), text[match.end() :]


def _take_first_heading(tokens: list) -> tuple[str | None, list]:
    """The first heading's text, and the tokens without it."""
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            title = tokens[index + 1].content
            return title, tokens[:index] + tokens[index + 3 :]
        if token.type not in ("hr",) and token.block and token.type.endswith("_open"):
            return None, tokens  # content comes before any heading: no heading title
    return None, tokens


def _field(meta: dict, *names: str) -> object:
    for name in names:
        if meta.get(name) not in (None, ""):
            return meta[name]
    return None


def parse(doc: Document) -> list[ParsedItem]:
    meta, markdown = split_front_matter(doc.text)
    tokens = MARKDOWN.parse(markdown)
    title = as_text(_field(meta, "title", "headline"))
    if title is None:
        title, tokens = _take_first_heading(tokens)
    if not title:
        raise InputError("no title: neither front matter nor a heading names one")
    body = html_to_text(MARKDOWN.renderer.render(tokens, MARKDOWN.options, {}))
    return [
        ParsedItem(
            title=title,
            body=body,
            source=as_text(_field(meta, "source", "publisher", "site")),
            author=as_text(_field(meta, "author", "authors", "byline")),
            published_at=to_utc(_field(meta, "date", "published", "published_at")),
            updated_at=to_utc(_field(meta, "updated", "updated_at", "modified", "lastmod", "last_modified")),
            language=as_text(_field(meta, "lang", "language")),
            url=as_text(_field(meta, "url", "link", "canonical")),
        )
    ]
