"""Feed provenance (issue 11): RSS/Atom <source> names the original outlet; an entry without an author
has its feed's; authors of every feed dialect are read, without the e-mail address around them."""

from __future__ import annotations

import pytest

from shared.parsers.feed import entries_to_items, parse_feed_bytes
from shared.parsers.fields import person_name

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Aggregator</title><link>http://agg.example/</link>
<description>d</description><managingEditor>editor@agg.example (Jane Editor)</managingEditor>
<item><title>One</title><description>Body one.</description>
<source url="http://www.wire.example/rss">The Wire</source></item>
<item><title>Two</title><description>Body two.</description><source url="http://www.wire.example/rss"></source>
<author>bob@x.example (Bob Smith)</author></item>
<item><title>Three</title><description>Body three.</description></item>
</channel></rss>"""
RSS_DC_CREATOR = b"""<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title>Blog</title><link>http://b.example/</link><description>d</description><dc:creator>Ana Lima</dc:creator>
<item><title>One</title><description>Body one.</description></item></channel></rss>"""
RSS_091 = b"""<?xml version="1.0"?><rss version="0.91"><channel><title>Old</title><link>http://o.example/</link>
<description>d</description><managingEditor>ed@o.example (Old Editor)</managingEditor>
<item><title>x</title><description>Body x.</description></item></channel></rss>"""
ATOM_03 = b"""<?xml version="1.0" encoding="utf-8"?><feed version="0.3" xmlns="http://purl.org/atom/ns#">
<title>Old Atom</title><author><name>Feed Author</name></author><modified>2004-01-01T00:00:00Z</modified>
<entry><title>E1</title><id>urn:1</id><issued>2004-01-01T00:00:00Z</issued><modified>2004-01-01T00:00:00Z</modified>
<content type="text/plain" mode="escaped">Body e1.</content><author><name>Entry Author</name></author></entry>
<entry><title>E2</title><id>urn:2</id><issued>2004-01-01T00:00:00Z</issued><modified>2004-01-01T00:00:00Z</modified>
<content type="text/plain" mode="escaped">Body e2.</content></entry></feed>"""
ATOM_10 = b"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
<id>urn:f</id><updated>2020-01-01T00:00:00Z</updated><author><name>Feed Person</name></author>
<entry><id>urn:1</id><title>T</title><updated>2020-01-01T00:00:00Z</updated><content>Body.</content>
<source><title>Origin Site</title><link href="http://origin.example/"/><id>urn:o</id></source></entry></feed>"""


def _items(data: bytes) -> list[tuple[str, str | None, str | None]]:
    feed, entries = parse_feed_bytes(data)
    return [(item.title, item.author, item.original_source) for item in entries_to_items(feed, entries)]


def test_rss_source_names_the_original_outlet_else_its_host():
    assert _items(RSS) == [
        ("One", "Jane Editor", "The Wire"),
        ("Two", "Bob Smith", "wire.example"),
        ("Three", "Jane Editor", None),
    ]


def test_atom_source_names_the_original_outlet_and_entries_inherit_the_feed_author():
    assert _items(ATOM_10) == [("T", "Feed Person", "Origin Site")]


def test_an_atom_source_title_in_html_is_read_as_text():
    """Entries are read unsanitized: a source name typed html is text through html_to_text, never markup."""
    atom = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Agg</title><id>a</id>
<entry><title>T</title><id>e</id><content>Body.</content><source><id>s</id>
<title type="html">The &lt;b&gt;Wire&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;
&lt;img src=x onerror=alert(2)&gt;</title>
</source></entry></feed>"""
    assert _items(atom) == [("T", None, "The Wire")]


@pytest.mark.parametrize(
    ("feed", "expected"),
    [
        (RSS_DC_CREATOR, [("One", "Ana Lima", None)]),
        (RSS_091, [("x", "Old Editor", None)]),
        (ATOM_03, [("E1", "Entry Author", None), ("E2", "Feed Author", None)]),
    ],
    ids=["rss dc:creator", "rss 0.91 managingEditor", "atom 0.3"],
)
def test_channel_level_authors_of_every_dialect_reach_entries_without_one(feed, expected):
    assert _items(feed) == expected


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("jane@example.com (Jane Smith)", "Jane Smith"),
        ("Jane Smith <jane@example.com>", "Jane Smith"),
        ("jane@example.com", "jane@example.com"),
        ("Jane Smith", "Jane Smith"),
        ("Smith (ed.)", "Smith (ed.)"),
    ],
)
def test_a_person_is_named_without_the_address_a_feed_writes_around_them(written, name):
    assert person_name(written) == name
