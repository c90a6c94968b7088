"""An HTML page's published and modified times, from the places a page states them, in order of trust:
JSON-LD (`datePublished`, `dateModified`), then meta tags (`article:published_time` and friends),
then `<time datetime>`. The caller falls back on trafilatura's guess when the page states nothing.

A value with a time and zone is kept to the second. A date alone counts as midnight UTC only when
no stated time falls on that date: a page whose JSON-LD says `2021-11-23` and whose `<time>` says
`2021-11-23T06:05+11:00` was published at 2021-11-22T19:05Z, not at midnight.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from shared.dates import carries_time, to_utc, written_date

JSON_LD = "//script[contains(@type, 'ld+json')]/text()"
PUBLISHED_KEYS = ("datePublished", "dateCreated", "uploadDate")
MODIFIED_KEYS = ("dateModified",)
PUBLISHED_TAGS = (
    "//meta[@property='article:published_time']/@content",
    "//meta[@name='article:published_time']/@content",
    "//meta[@itemprop='datePublished']/@content",
    "//meta[@name='date']/@content",
    "//meta[@name='pubdate']/@content",
    "//meta[@name='DC.date.issued']/@content",
    "//meta[@property='og:published_time']/@content",
    "//meta[@name='publish-date']/@content",
    "//meta[@name='parsely-pub-date']/@content",
    "//meta[@name='sailthru.date']/@content",
    "//meta[@name='dcterms.created']/@content",
    "//time[@itemprop='datePublished']/@datetime",
    "//time[@pubdate]/@datetime",
    "//article//time/@datetime",
    "//time/@datetime",
)
MODIFIED_TAGS = (
    "//meta[@property='article:modified_time']/@content",
    "//meta[@name='article:modified_time']/@content",
    "//meta[@property='og:updated_time']/@content",
    "//meta[@itemprop='dateModified']/@content",
    "//meta[@name='last-modified']/@content",
    "//meta[@name='dcterms.modified']/@content",
    "//time[@itemprop='dateModified']/@datetime",
)
# JSON-LD objects that describe the page's own article, looked at before any other object
# (a WebSite or an Organization block may carry dates of its own).
ARTICLE_TYPES = {
    "article",
    "newsarticle",
    "reportagenewsarticle",
    "analysisnewsarticle",
    "opinionnewsarticle",
    "backgroundnewsarticle",
    "blogposting",
    "liveblogposting",
    "socialmediaposting",
    "techarticle",
    "scholarlyarticle",
    "report",
    "webpage",
}


@dataclass(frozen=True)
class PageDates:
    published: datetime | None
    updated: datetime | None


def page_dates(tree) -> PageDates:
    """The page's stated published and modified times (None where it states none)."""
    objects = list(_json_ld_objects(tree))
    return PageDates(
        published=best_instant([*_json_ld_values(objects, PUBLISHED_KEYS), *_tag_values(tree, PUBLISHED_TAGS)]),
        updated=best_instant([*_json_ld_values(objects, MODIFIED_KEYS), *_tag_values(tree, MODIFIED_TAGS)]),
    )


def best_instant(candidates: list[str]) -> datetime | None:
    """The first readable candidate; when it is a date alone, the first later one that carries a time
    on that same date (as written, in its own zone), else that date at midnight UTC."""
    readable = [value for value in candidates if to_utc(value) is not None]
    if not readable:
        return None
    first = readable[0]
    if carries_time(first):
        return to_utc(first)
    day = written_date(first)
    for value in readable[1:]:
        if carries_time(value) and written_date(value) == day:
            return to_utc(value)
    return to_utc(first)


def _tag_values(tree, xpaths: tuple[str, ...]) -> Iterator[str]:
    for xpath in xpaths:
        for value in tree.xpath(xpath):
            if isinstance(value, str) and value.strip():
                yield value.strip()


def _json_ld_objects(tree) -> Iterator[dict]:
    """Every object of every JSON-LD block, the article's own first; blocks that are not JSON are skipped."""
    found: list[dict] = []
    for block in tree.xpath(JSON_LD):
        try:
            value = json.loads(block)
        except (json.JSONDecodeError, RecursionError):
            continue
        found.extend(_objects_in(value, depth=0))
    yield from (obj for obj in found if _is_article(obj))
    yield from (obj for obj in found if not _is_article(obj))


def _objects_in(value: object, depth: int) -> Iterator[dict]:
    if depth > 8:  # @graph inside @graph inside a list: no page nests deeper, a hostile one could
        return
    if isinstance(value, list):
        for element in value:
            yield from _objects_in(element, depth + 1)
    elif isinstance(value, dict):
        yield value
        for key in ("@graph", "mainEntity", "mainEntityOfPage"):
            if key in value:
                yield from _objects_in(value[key], depth + 1)


def _is_article(obj: dict) -> bool:
    kinds = obj.get("@type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return any(isinstance(kind, str) and kind.lower() in ARTICLE_TYPES for kind in kinds)


def _json_ld_values(objects: list[dict], keys: tuple[str, ...]) -> Iterator[str]:
    for obj in objects:
        for key in keys:
            value = obj.get(key)
            if isinstance(value, str) and value.strip():
                yield value.strip()
