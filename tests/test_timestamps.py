"""True timestamps: a time and zone stated anywhere an input offers one is kept to the second, in UTC;
a date alone is midnight UTC only when no time falls on that date (issue 11)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.pipeline import Context, derive
from shared.settings import Settings

BODY = (
    "<article><h1>Storm hits the coast</h1>"
    "<p>A powerful storm hit the coast on Monday night, bringing down trees and power lines across the region. "
    "Residents were told to stay indoors as winds reached 120 kilometres an hour.</p>"
    "<p>Emergency services received more than 500 calls for help overnight, the state emergency service said "
    "in a statement on Tuesday morning.</p>"
    "<p>Power was restored to most homes by midday, but some rural areas could wait until the weekend.</p>"
    "{extra}</article>"
)
INSTANT = datetime(2021, 11, 22, 19, 5, 0, tzinfo=UTC)  # 2021-11-23T06:05:00+11:00
MIDNIGHT = datetime(2021, 11, 23, tzinfo=UTC)


def _json_ld(**fields) -> str:
    return f'<script type="application/ld+json">{json.dumps({"@type": "NewsArticle", **fields})}</script>'


def _page(head: str = "", extra: str = "") -> bytes:
    return (
        f"<!doctype html><html lang='en'><head><title>Storm hits the coast</title>{head}</head>"
        f"<body>{BODY.format(extra=extra)}</body></html>"
    ).encode()


def _item(name: str, data: bytes):
    [derived] = derive(name, data, Context.from_settings(Settings()))
    return derived.item


ZONED = "2021-11-23T06:05:00+11:00"
HTML_PLACES = {
    "JSON-LD datePublished": _page(head=_json_ld(datePublished=ZONED)),
    "JSON-LD in an @graph": _page(
        head='<script type="application/ld+json">'
        + json.dumps(
            {
                "@context": "https://schema.org",
                "@graph": [{"@type": "WebSite"}, {"@type": "NewsArticle", "datePublished": ZONED}],
            }
        )
        + "</script>"
    ),
    "article:published_time": _page(head=f'<meta property="article:published_time" content="{ZONED}">'),
    "itemprop datePublished": _page(head=f'<meta itemprop="datePublished" content="{ZONED}">'),
    "parsely-pub-date": _page(head=f'<meta name="parsely-pub-date" content="{ZONED}">'),
    "time datetime": _page(extra=f'<p>Posted <time datetime="{ZONED}">Tuesday morning</time></p>'),
    "JSON-LD date alone, a time that day in <time>": _page(
        head=_json_ld(datePublished="2021-11-23"), extra=f'<p><time datetime="{ZONED}">6.05am</time></p>'
    ),
    "a date alone in the meta tag, the time in JSON-LD": _page(
        head=_json_ld(datePublished=ZONED) + '<meta property="article:published_time" content="2021-11-23">'
    ),
}


@pytest.mark.parametrize("place", HTML_PLACES)
def test_an_html_page_with_a_zoned_time_is_stored_at_that_instant(place):
    """Wherever the page states its time, published_at is that instant to the second, never midnight."""
    assert _item("storm.html", HTML_PLACES[place]).published_at == INSTANT


def test_json_ld_is_trusted_over_meta_tags():
    page = _page(
        head=_json_ld(datePublished=ZONED) + '<meta property="article:published_time" content="2020-01-01T00:00:00Z">'
    )
    assert _item("storm.html", page).published_at == INSTANT


def test_a_date_alone_is_midnight_only_when_no_time_falls_on_it():
    """A time on another day (a related story's, say) does not replace the page's own date."""
    page = _page(head=_json_ld(datePublished="2021-11-23"), extra='<p><time datetime="2021-10-02T09:00Z">x</time></p>')
    assert _item("storm.html", page).published_at == MIDNIGHT


def test_updated_at_from_date_modified_and_its_meta_tag():
    json_ld = _page(head=_json_ld(datePublished=ZONED, dateModified="2021-11-23T09:30:15+11:00"))
    meta = _page(head='<meta property="article:modified_time" content="2021-11-22T22:30:15Z">')
    expected = datetime(2021, 11, 22, 22, 30, 15, tzinfo=UTC)
    assert _item("storm.html", json_ld).updated_at == expected
    assert _item("storm.html", meta).updated_at == expected
    assert _item("storm.html", _page()).updated_at is None


def test_a_page_of_bad_json_ld_falls_back_on_its_meta_tags():
    page = _page(
        head='<script type="application/ld+json">{"datePublished": </script>'
        f'<meta property="article:published_time" content="{ZONED}">'
    )
    assert _item("storm.html", page).published_at == INSTANT


def test_feed_entries_keep_their_updated_time():
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Coast Herald</title>'
        "<id>urn:x</id><updated>2021-11-23T09:30:15+11:00</updated>"
        "<entry><id>urn:1</id><title>Storm hits the coast</title><published>2021-11-23T06:05:00+11:00</published>"
        "<updated>2021-11-23T09:30:15+11:00</updated><content>A powerful storm hit the coast.</content></entry></feed>"
    ).encode()
    item = _item("herald.atom", atom)
    assert (item.published_at, item.updated_at) == (INSTANT, datetime(2021, 11, 22, 22, 30, 15, tzinfo=UTC))


@pytest.mark.parametrize("key", ["updated_at", "dateModified", "modified", "date_modified"])
def test_json_records_give_updated_at_under_its_common_names(key):
    record = {
        "title": "Storm hits the coast",
        "body": "A powerful storm hit the coast.",
        key: "2021-11-23T09:30:15+11:00",
    }
    assert _item("storm.json", json.dumps(record).encode()).updated_at == datetime(2021, 11, 22, 22, 30, 15, tzinfo=UTC)


def test_markdown_front_matter_gives_updated_at():
    text = (
        "---\ntitle: Storm hits the coast\nupdated: 2021-11-23T09:30:15+11:00\n---\n\nA powerful storm hit the coast.\n"
    )
    assert _item("storm.md", text.encode()).updated_at == datetime(2021, 11, 22, 22, 30, 15, tzinfo=UTC)
