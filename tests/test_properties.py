"""Hostile input at scale: property tests (hypothesis) of every parser, of decoding, of normalisation and
of the content hash, and the bad inputs they found, kept as a table of regression cases.

Deterministic in CI: the `ingest-ci` profile below derandomizes (every run tries the same examples) and
keeps no example database, so CI never meets an example nobody saw locally. To hunt for new bad inputs,
run with INGEST_HYPOTHESIS_HUNT=N: N random examples a property, a new draw every run. Each bad input a
hunt finds becomes a case of REGRESSIONS (or of the small tables beside it), not a fixture file: the
existing bad-input tables are inline too, and test_formats mutates every file under tests/fixtures.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import os
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from html import escape as html_escape
from xml.sax.saxutils import escape as xml_escape

import pytest
from hypothesis import Phase, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from shared.decode import decode_text
from shared.errors import InputError
from shared.fingerprint import content_hash
from shared.normalise import Rules, _split_attribution, normalise
from shared.parsers import FORMATS_BY_EXTENSION, EntryFailure, ParsedItem, format_for
from shared.pipeline import Context, Derived, derive
from shared.settings import DEFAULT_JSON_ALIASES, Settings
from shared.urls import canonical_url

HUNT = int(os.environ.get("INGEST_HYPOTHESIS_HUNT", "0"))
settings.register_profile("ingest-ci", derandomize=True, database=None, deadline=None, print_blob=False)
settings.register_profile("ingest-hunt", derandomize=False, database=None, deadline=None)
PROFILE = settings.get_profile("ingest-hunt" if HUNT else "ingest-ci")


def budget(examples: int, **more) -> settings:
    """`examples` examples a run in CI (HUNT instead when hunting), on the profile above."""
    return settings(PROFILE, max_examples=HUNT or examples, **more)


def known_bug(examples: int) -> settings:
    """For a property xfailed on a known bug: its explicit examples (the bug's inputs) fail it at once and
    alone, as one exception that xfail(raises=...) checks. A hunt skips them, to see what else it finds."""
    if HUNT:
        return budget(examples, phases=[phase for phase in Phase if phase is not Phase.explicit])
    return budget(examples, phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False)


CONTEXT = Context.from_settings(Settings(_env_file=None))
RULES: Rules = CONTEXT.rules
EXTENSIONS = sorted(FORMATS_BY_EXTENSION)
SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


# -- what every input must end as ------------------------------------------------------------------


def assert_reason(reason: str) -> None:
    """A failure's reason is what `ingest failures` shows: one non-empty line."""
    assert reason.strip() and "\n" not in reason, repr(reason)


def tally(what: str) -> None:
    """Count outcomes for --hypothesis-show-statistics: strategies must reach items, not only failures."""
    if currently_in_test_context():
        event(what)


def outcome(name: str, data: bytes) -> list[Derived | EntryFailure] | InputError:
    """derive(), which may give items and entry failures or raise InputError: any other exception is a bug."""
    try:
        results = derive(name, data, CONTEXT)
    except InputError as exc:
        assert_reason(str(exc))
        tally("InputError: " + str(exc).split(" (")[0].split(":")[0])
        return exc
    tally("items" if any(isinstance(result, Derived) for result in results) else "entry failures only")
    inner = name[:-3] if name.lower().endswith(".gz") else name
    assert results, "derive gave nothing and no reason"
    for result in results:
        if isinstance(result, EntryFailure):
            assert_reason(result.reason)
            continue
        assert isinstance(result, Derived), result
        assert result.item.title and result.item.body
        assert SHA256.fullmatch(result.content_hash)
        assert result.content_hash == content_hash(result.item.title, result.item.body)
        assert result.format == format_for(inner).name
    return results


# -- strategies: words, lines and article-shaped text ----------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéüßøçñåÉÖ"
word = st.text(LETTERS, min_size=1, max_size=10)
sentence = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(word, min_size=1, max_size=14),
    st.sampled_from([".", ".", "!", "?", "", ":", "…", "”", ","]),
)
# Lines the parsers and normalisation give a meaning to, and white space of every kind.
SPECIAL_LINES = [
    "Article Source: Example Wire",
    "article source:  The Chronicle ",
    "Enjoyed this post? Share it!",
    "Share this article",
    "Advertisement",
    "Read more at example.com",
    "Follow us on Mastodon",
    "\u2014 BBC News",
    "\u2013 Reuters",
    "- Associated Press",
    "(Reuters)",
    "AFP",
    "By Jane Doe",
    "Published 2024-03-01",
    "Updated: 1 March 2024",
    "Title: A headline of its own",
    "Source: The Chronicle",
    "Language: fr",
    "===",
    "---",
    "- a list line",
    "\u2014 a dash list line",
    "1. first",
    "\u00a9 2024 Example Media",
    "All rights reserved.",
    "LONDON (Reuters) - The talks ended.",
    "(Reporting by Jane Doe; editing by John Roe)",
    "",
    "",
    " ",
    "\t",
    "\u00a0",
    "\u200b",
]
any_line = st.text(max_size=40).map(lambda text: text.replace("\n", " ").replace("\r", " "))
line = st.one_of(st.sampled_from(SPECIAL_LINES), sentence, sentence, any_line)
lines = st.lists(line, max_size=14)
field_text = st.one_of(st.none(), sentence, any_line, st.sampled_from(SPECIAL_LINES))


@st.composite
def article_text(draw) -> str:
    """A plain-text article as people save it: title, maybe a publisher line, paragraphs, trimmings."""
    title = draw(st.one_of(sentence, any_line))
    parts = [title] + draw(st.lists(st.sampled_from(["", "===", "---"]), max_size=1))
    parts += draw(st.lists(st.sampled_from(["", "The Chronicle", "By Jane Doe", "Published 2024-03-01"]), max_size=2))
    parts += draw(lines)
    newline = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    return newline.join(parts)


ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252"]


@st.composite
def encoded(draw, texts) -> bytes:
    """A text in one of the encodings people save files in (characters the encoding lacks become '?')."""
    return draw(texts).encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


# -- dates and URLs --------------------------------------------------------------------------------

offsets = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60))
sane_datetimes = st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1), timezones=st.none() | st.just(UTC) | offsets)
FORMATS_OF_DATES = [
    datetime.isoformat,
    lambda value: value.isoformat().replace("+00:00", "Z"),
    lambda value: email.utils.format_datetime(value),
    lambda value: value.strftime("%d %B %Y"),
    lambda value: value.strftime("%Y-%m-%d"),
    lambda value: value.strftime("%B %d, %Y %H:%M"),
    lambda value: str(int(value.replace(tzinfo=value.tzinfo or UTC).timestamp())),
]
# Dates the parsers must read or leave null: well-formed, in the range of real articles.
sane_dates = st.builds(lambda value, fmt: fmt(value), sane_datetimes, st.sampled_from(FORMATS_OF_DATES))
# Anything in a date field: any text, numbers-like strings, datetimes at the edges of the calendar.
hostile_dates = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-{0,3}[0-9\u00b2\u00b3\u0660-\u0669.]{1,14}", fullmatch=True),
    st.builds(
        lambda value, fmt: fmt(value),
        st.datetimes(timezones=st.none() | st.just(UTC) | offsets),
        st.sampled_from(FORMATS_OF_DATES[:4]),
    ),
)

hosts = st.one_of(
    st.from_regex(r"(www\.)?[a-z][a-z0-9-]{0,12}\.(com|org|example|co\.uk)", fullmatch=True),
    st.sampled_from(["Example.COM", "localhost", "xn--caf-dma.example", "127.0.0.1"]),
)
ipv6_hosts = st.sampled_from(["[::1]", "[2001:db8::80]", "[2001:db8::1]", "[fe80::1ff:fe23:4567:890a]"])
url_parts = st.tuples(
    st.sampled_from(["http", "https", "HTTP", "Https", "ftp", "mailto", ""]),
    st.sampled_from(["", "user@", "user:secret@"]),
    st.sampled_from(["", ":80", ":443", ":8080", ":0"]),
    st.from_regex(r"(/[A-Za-z0-9._~%-]{0,8}){0,3}", fullmatch=True),
    st.lists(
        st.tuples(st.sampled_from(["utm_source", "fbclid", "id", "q", "a b", "%26", "gclid", "page"]), any_line),
        max_size=3,
    ),
    st.sampled_from(["", "#top", "#"]),
)


def url_from(host: str, parts: tuple) -> str:
    scheme, userinfo, port, path, query, fragment = parts
    joined = "&".join(f"{key}={value}" for key, value in query)
    return f"{scheme}://{userinfo}{host}{port}{path}{'?' + joined if query else ''}{fragment}"


urls = st.builds(url_from, hosts, url_parts)
any_urls = st.one_of(urls, st.builds(url_from, ipv6_hosts, url_parts), any_line)


# -- near-valid documents of each format ------------------------------------------------------------


@st.composite
def near(draw, documents) -> bytes:
    """A document as it is, or cut short, or with one byte changed: near-valid bytes."""
    data = draw(documents)
    how = draw(st.sampled_from(["as is", "as is", "cut", "byte"]))
    if how == "cut" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "byte" and data:
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


html_text = st.one_of(sentence, any_line, st.sampled_from(["&amp;", "&nbsp;", "&#0;", "&bogus;", "<", "]]>", "\u00a0"]))
BLOCK_TAGS = ["p", "div", "article", "main", "section", "h1", "h2", "blockquote", "pre", "ul", "ol", "li", "table"]
INLINE_TAGS = ["span", "a", "em", "strong", "b", "i", "br", "time", "img", "td", "tr"]
SKIPPED_TAGS = ["script", "style", "nav", "footer", "header", "form", "noscript", "svg", "template"]


def element(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        lambda tag, inner, closed: f"<{tag}>{''.join(inner)}" + (f"</{tag}>" if closed else ""),
        st.sampled_from(BLOCK_TAGS + INLINE_TAGS + SKIPPED_TAGS),
        st.lists(children, max_size=4),
        st.sampled_from([True, True, False]),  # closed, or left open as pages often do
    )


html_fragment = st.recursive(html_text.map(html_escape) | html_text, element, max_leaves=20)
META_NAMES = [
    ("property", "og:title"),
    ("property", "og:site_name"),
    ("property", "og:url"),
    ("property", "article:published_time"),
    ("name", "author"),
    ("name", "date"),
    ("name", "twitter:title"),
    ("itemprop", "datePublished"),
    ("http-equiv", "content-language"),
]
DATE_METAS = [("property", "article:published_time"), ("name", "date"), ("itemprop", "datePublished")]
META_NAMES = [key for key in META_NAMES if key not in DATE_METAS]


def html_page(date_values: st.SearchStrategy) -> st.SearchStrategy:
    meta_tag = lambda key, value: f'<meta {key[0]}="{key[1]}" content="{html_escape(value)}">'  # noqa: E731
    meta = st.one_of(
        st.builds(meta_tag, st.sampled_from(META_NAMES), st.one_of(field_text.map(lambda value: value or ""), urls)),
        st.builds(meta_tag, st.sampled_from(DATE_METAS), date_values),
    )
    return st.builds(
        lambda doctype, lang, title, metas, canonical, body: (
            f"{doctype}<html{lang}><head>{title}{''.join(metas)}{canonical}</head><body>{body}</body></html>"
        ),
        st.sampled_from(["", "", "<!DOCTYPE html>", "<!DOCTYPE html>", '<?xml version="1.0" encoding="utf-8"?>']),
        st.sampled_from(["", ' lang="en"', ' lang="de-DE"', ' lang=""', ' lang="x"']),
        st.one_of(st.just(""), field_text.map(lambda value: f"<title>{html_escape(value or '')}</title>")),
        st.lists(meta, max_size=4),
        st.one_of(st.just(""), any_urls.map(lambda url: f'<link rel="canonical" href="{html_escape(url)}">')),
        st.lists(html_fragment, max_size=5).map("".join),
    )


JSON_KEYS = sorted({key for keys in DEFAULT_JSON_ALIASES.values() for key in keys}) + [
    "version",
    "items",
    "content_html",
    "content_text",
    "date_published",
    "external_url",
    "name",
    "value",
    "random",
]
DATE_KEYS = DEFAULT_JSON_ALIASES["published_at"] + ["date_modified"]
JSON_KEYS = [key for key in JSON_KEYS if key not in DATE_KEYS]  # date fields get the dates under test
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(JSON_KEYS), children, max_size=3),
    max_leaves=8,
)


def json_documents(date_values: st.SearchStrategy) -> st.SearchStrategy:
    value = st.one_of(
        field_text, html_fragment, date_values, urls, json_values, st.sampled_from(["en", "fr-FR", "EN_us", ""])
    )
    dated = st.dictionaries(st.sampled_from(DATE_KEYS), date_values | st.integers(0, 4 * 10**9), max_size=2)
    record = st.builds(
        lambda some, dates: {**some, **dates}, st.dictionaries(st.sampled_from(JSON_KEYS), value, max_size=8), dated
    )
    entries = st.lists(record | json_values, max_size=4)
    feed = st.fixed_dictionaries(
        {"version": st.sampled_from(["https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1"])},
        optional={"title": field_text, "language": value, "author": value, "items": entries | json_values},
    )
    return st.one_of(record, entries, feed, json_values)


def unescaped_json(value: object) -> str:
    # Non-ASCII characters as they are: \uXXXX escapes have a property of their own (a known bug).
    return json.dumps(value, ensure_ascii=False)


def json_bytes(date_values: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        lambda document, indent: json.dumps(document, ensure_ascii=False, indent=indent).encode(),
        json_documents(date_values),
        st.sampled_from([None, 2]),
    )


def json_lines(date_values: st.SearchStrategy) -> st.SearchStrategy:
    one = st.one_of(json_documents(date_values).map(unescaped_json), any_line, st.just(""))
    return st.lists(one, min_size=1, max_size=5).map(lambda rows: "\n".join(rows).encode())


YAML_KEYS = ["title", "headline", "source", "publisher", "site", "author", "authors", "byline"]
YAML_KEYS += ["lang", "language", "url", "link", "canonical", "tags"]
YAML_DATE_KEYS = ["date", "published", "published_at"]


def front_matter(date_values: st.SearchStrategy) -> st.SearchStrategy:
    value = st.one_of(
        field_text.map(unescaped_json),  # a JSON string is a YAML scalar
        field_text.map(lambda value: value or ""),  # a plain scalar, maybe not valid YAML
        st.lists(word, max_size=3).map(lambda names: "[" + ", ".join(names) + "]"),
        st.sampled_from(["~", "null", "yes", "12", "-3.5", "{name: Jane}", "[]", "'", '"unclosed', "*alias"]),
    )
    entry = st.one_of(
        st.builds(lambda key, val: f"{key}: {val}", st.sampled_from(YAML_KEYS), value),
        st.builds(lambda key, val: f"{key}: {val}", st.sampled_from(YAML_DATE_KEYS), date_values),
    )
    return st.lists(entry, max_size=6).map(lambda rows: "---\n" + "\n".join(rows) + "\n---\n")


def markdown_documents(date_values: st.SearchStrategy) -> st.SearchStrategy:
    block = st.one_of(
        sentence,
        any_line,
        st.sampled_from(SPECIAL_LINES),
        st.builds(lambda hashes, text: f"{hashes} {text}", st.sampled_from(["#", "##", "######", "#######"]), sentence),
        sentence.map(lambda text: f"{text}\n{'=' * 3}"),
        st.lists(sentence, min_size=1, max_size=3).map(lambda items: "\n".join(f"- {text}" for text in items)),
        sentence.map(lambda text: f"```\n{text}\n```"),
        sentence.map(lambda text: f"> {text}"),
        html_fragment,
        st.builds(lambda text, url: f"[{text}]({url})", word, any_urls),
    )
    body = st.lists(block, max_size=6).map("\n\n".join)
    return st.builds(lambda head, text: head + text, st.just("") | front_matter(date_values), body)


FEED_ENCODINGS = ["utf-8", "utf-8", "iso-8859-1", "utf-16", "windows-1252"]
feed_text = st.one_of(
    sentence.map(xml_escape),
    html_fragment.map(xml_escape),
    html_fragment.map(lambda markup: f"<![CDATA[{markup}]]>"),
    any_line.map(xml_escape),
    any_line,  # unescaped: maybe not well-formed
)


@st.composite
def feed_bytes(draw, date_values: st.SearchStrategy) -> bytes:
    """An RSS 2.0, Atom 1.0 or RSS 1.0 (RDF) skeleton with hostile text in its elements."""
    kind = draw(st.sampled_from(["rss", "atom", "rdf"]))
    text = lambda: draw(feed_text)  # noqa: E731
    when = lambda: xml_escape(draw(date_values))  # noqa: E731
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        fields = {
            "rss": [
                f"<title>{text()}</title>",
                f"<description>{text()}</description>",
                f"<content:encoded>{text()}</content:encoded>",
                f"<pubDate>{when()}</pubDate>",
                f"<dc:date>{when()}</dc:date>",
                f"<guid>{text()}</guid>",
                f"<link>{xml_escape(draw(any_urls))}</link>",
                f"<author>{text()}</author>",
            ],
            "atom": [
                f'<title type="{draw(st.sampled_from(["text", "html", "xhtml"]))}">{text()}</title>',
                f'<content type="{draw(st.sampled_from(["text", "html", "xhtml", "text/plain"]))}">{text()}</content>',
                f"<summary>{text()}</summary>",
                f"<published>{when()}</published>",
                f"<updated>{when()}</updated>",
                f"<id>{text()}</id>",
                f'<link href="{xml_escape(draw(any_urls), {chr(34): "&quot;"})}"/>',
                f"<author><name>{text()}</name></author>",
            ],
            "rdf": [
                f"<title>{text()}</title>",
                f"<description>{text()}</description>",
                f"<dc:date>{when()}</dc:date>",
                f"<link>{xml_escape(draw(any_urls))}</link>",
            ],
        }[kind]
        chosen = draw(st.lists(st.sampled_from(fields), max_size=len(fields), unique=True))
        tag = "entry" if kind == "atom" else "item"
        entries.append(f"<{tag}>{''.join(chosen)}</{tag}>")
    head = f"<title>{text()}</title>" + draw(st.sampled_from(["", "<language>en-gb</language>", "<language/>"]))
    body = "".join(entries)
    document = {
        "rss": (
            '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            f'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>{head}{body}</channel></rss>'
        ),
        "atom": f'<feed xmlns="http://www.w3.org/2005/Atom">{head}{body}</feed>',
        "rdf": (
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" '
            f'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>{head}</channel>{body}</rdf:RDF>'
        ),
    }[kind]
    declared = draw(st.sampled_from(FEED_ENCODINGS + ["", "bogus-8", "utf-7"]))
    prolog = f'<?xml version="1.0" encoding="{declared}"?>\n' if declared else ""
    actual = declared if declared in FEED_ENCODINGS else "utf-8"
    return (prolog + document).encode(actual, errors="xmlcharrefreplace")


def documents(date_values: st.SearchStrategy) -> dict[str, st.SearchStrategy]:
    """For each format, near-valid documents whose date fields are drawn from date_values."""
    markdown = markdown_documents(date_values).map(str.encode)
    return {
        "text": article_text().map(str.encode),
        "markdown": markdown,
        "html": html_page(date_values).map(str.encode),
        "json": json_bytes(date_values),
        "jsonl": json_lines(date_values),
        "feed": feed_bytes(date_values),
    }


SANE_DOCUMENTS = documents(sane_dates)
HOSTILE_DATE_DOCUMENTS = documents(hostile_dates)


@st.composite
def named(draw, documents_by_format: dict[str, st.SearchStrategy]) -> tuple[str, bytes]:
    """A file name of a supported format (maybe .gz) and near-valid bytes of that format."""
    extension = draw(st.sampled_from(EXTENSIONS))
    data = draw(near(documents_by_format[FORMATS_BY_EXTENSION[extension].name]))
    if draw(st.integers(0, 9)) == 0:
        return f"doc{extension}.gz", gzip.compress(data, mtime=0)
    return f"doc{extension}", data


# -- 1. derive: any bytes end as items, entry failures or an InputError ------------------------------


@pytest.mark.parametrize("extension", [*EXTENSIONS, ".txt.gz", ".pdf", ""])
@budget(60)
@given(data=st.binary(max_size=600))
def test_any_bytes_end_as_items_or_an_input_error(extension, data):
    """Whatever the bytes, for every supported extension, derive gives items or InputError, nothing else."""
    outcome(f"doc{extension}", data)


@pytest.mark.parametrize("extension", EXTENSIONS)
@budget(60)
@given(data=encoded(st.one_of(st.text(max_size=300), article_text())))
def test_any_text_in_any_encoding_ends_as_items_or_an_input_error(extension, data):
    """Text-shaped bytes (UTF-8, UTF-16/32, Latin-1, cp1252) of any extension: items or InputError."""
    outcome(f"doc{extension}", data)


def near_valid(fmt: str, data) -> None:
    """A near-valid document of `fmt` (sane dates) under one of its extensions: items or InputError."""
    extensions = [ext for ext, found in FORMATS_BY_EXTENSION.items() if found.name == fmt]
    outcome(f"doc{data.draw(st.sampled_from(extensions))}", data.draw(near(SANE_DOCUMENTS[fmt])))


# One test a format, each with its own budget: an HTML page costs trafilatura some 10 ms, a JSON one 0.2 ms.
@budget(120)
@given(data=st.data())
def test_near_valid_text_ends_as_items_or_an_input_error(data):
    """Plain-text articles with publisher, byline, boilerplate and attribution lines: items or InputError."""
    near_valid("text", data)


@budget(100)
@given(data=st.data())
def test_near_valid_markdown_ends_as_items_or_an_input_error(data):
    """Markdown with front matter, headings, lists, code, quotes and inline HTML: items or InputError."""
    near_valid("markdown", data)


@budget(30)
@given(data=st.data())
def test_near_valid_html_ends_as_items_or_an_input_error(data):
    """HTML pages of random tags, metadata and text, some tags left open: items or InputError."""
    near_valid("html", data)


@budget(120)
@given(data=st.data())
def test_near_valid_json_ends_as_items_or_an_input_error(data):
    """JSON objects with the alias keys, arrays of them, JSON Feed documents and any JSON: items or InputError."""
    near_valid("json", data)


@budget(100)
@given(data=st.data())
def test_near_valid_json_lines_end_as_items_or_an_input_error(data):
    """JSON Lines of objects, other JSON, garbage and blank lines: items or InputError."""
    near_valid("jsonl", data)


@budget(40)
@given(data=st.data())
def test_near_valid_feeds_end_as_items_or_an_input_error(data):
    """RSS 2.0, Atom and RDF skeletons with hostile text, declared encodings and links: items or InputError."""
    near_valid("feed", data)


@budget(80)
@given(document=named(SANE_DOCUMENTS))
def test_near_valid_documents_under_any_supported_name_end_as_items_or_an_input_error(document):
    """A document of one format, maybe gzipped, under any supported extension: items or InputError."""
    outcome(*document)


@budget(150)  # HTML goes through trafilatura (~90 ms an example): the longest test of the suite at 300
@given(
    document=st.one_of(
        HOSTILE_DATE_DOCUMENTS["json"].map(lambda data: ("doc.json", data)),
        HOSTILE_DATE_DOCUMENTS["html"].map(lambda data: ("doc.html", data)),
        HOSTILE_DATE_DOCUMENTS["feed"].map(lambda data: ("doc.rss", data)),
    )
)
@example(document=("a.json", b'{"title": "T", "body": "B", "published": "--5"}'))
def test_any_date_field_ends_as_items_or_an_input_error(document):
    """Whatever a date field holds (any text, numbers, datetimes at the calendar's edges): items or InputError."""
    outcome(*document)


@budget(200)
@given(
    document=markdown_documents(hostile_dates | st.sampled_from(["!!float abc", "!!int", "2024-13-45", "0000-00-00"]))
)
@example(document="---\ntitle: T\ndate: 2024-13-45\n---\nbody\n")
def test_any_front_matter_ends_as_items_or_an_input_error(document):
    """Whatever the YAML front matter holds: items or InputError."""
    outcome("doc.md", document.encode())


# JSON and YAML strings may spell any code point as \uXXXX, lone surrogates included (JSON joins a
# pair of escapes into one character; PyYAML does not).
escaped_text = st.lists(
    st.one_of(
        st.sampled_from(LETTERS + " "),
        st.integers(0, 0xFFFF).map(lambda code: f"\\u{code:04x}"),
        st.sampled_from(["\\ud83d\\ude00", "\\ud800", "\\udfff"]),
    ),
    min_size=1,
    max_size=12,
).map("".join)
escaped_documents = st.one_of(
    st.builds(lambda title, body: f'{{"title": "{title}", "body": "B {body}"}}', escaped_text, escaped_text).map(
        lambda text: ("doc.json", text.encode())
    ),
    st.builds(lambda title: f'---\ntitle: "{title}"\n---\nbody\n', escaped_text).map(
        lambda text: ("doc.md", text.encode())
    ),
)


@budget(200)
@given(document=escaped_documents)
@example(document=("a.md", b'---\ntitle: "\\ud83d\\ude00"\n---\nbody\n'))
def test_any_escape_in_a_json_or_yaml_string_ends_as_items_or_an_input_error(document):
    """\\uXXXX escapes of any code point in JSON and in YAML front matter: items or InputError."""
    outcome(*document)


# -- the bad inputs found: each one a regression case ----------------------------------------------


def nested(depth: int) -> bytes:
    return ('{"title": "T", "body": ' + "[" * depth + '"x"' + "]" * depth + "}").encode()


def rss_dated(date: bytes) -> bytes:
    return b"<rss><channel><item><title>T</title><description>B</description><pubDate>%s</pubDate></item>" % date


def case(name: str, data: bytes):
    """One row: pytest's id is the file name."""
    return pytest.param(name, data, id=name)


TITLED = b'{"title": "T", "body": "B", "published": '
PAGE = b"<html><head><title>T</title><meta property='article:published_time' content='%s'></head><body><article>"
PAGE += b"<p>Some text here for the body of the page, long enough to be an article.</p></article></body></html>"
REGRESSIONS = [
    case("date-superscript-two.json", TITLED + b'"\\u00b2"}'),
    case("date-two-minus-signs.json", TITLED + b'"--5"}'),
    case("pubdate-two-minus-signs.rss", rss_dated(b"--1")),
    case("meta-date-superscript-two.html", PAGE % "²".encode()),
    case("date-past-9999.json", TITLED + b'"9999-12-31T23:00:00-05:00"}'),
    case("date-before-year-1.md", b"---\ntitle: T\ndate: 0001-01-01 00:00:00+01:00\n---\nbody\n"),
    case("pubdate-00.rss", rss_dated(b"00")),  # feedparser: year -99
    case("pubdate-year-0.rss", rss_dated(b"0000-01-01T00:00:00Z")),
    case("pubdate-year-10000.rss", rss_dated(b"9999-12-31T23:59:59-01:00")),
    case("date-month-13.md", b"---\ntitle: T\ndate: 2024-13-45\n---\nbody\n"),  # ValueError
    case("date-year-0.md", b"---\ntitle: T\ndate: 0000-00-00\n---\nbody\n"),  # ValueError
    case("float-tag-on-text.md", b"---\ntitle: T\nx: !!float abc\n---\nbody\n"),  # ValueError
    case("empty-int-tag.md", b"---\ntitle: T\nx: !!int\n---\nbody\n"),  # IndexError
    case("timestamp-tag-on-text.md", b"---\ntitle: T\nx: !!timestamp abc\n---\nbody\n"),  # AttributeError
    case("recursive-alias.md", b"---\ntitle: &a [*a]\n---\nbody\n"),
    case("recursive-mapping-alias.md", b"---\ntitle: {name: &a {name: *a}}\n---\nbody\n"),
    case("body-nested-400-deep.json", nested(400)),
    case("lone-surrogate.json", b'{"title": "T", "body": "B \\ud800"}'),
    case("lone-surrogate.md", b'---\ntitle: "\\ud800"\n---\nbody\n'),
    case("emoji-escaped-as-a-pair.md", b'---\ntitle: "\\ud83d\\ude00"\n---\nbody\n'),
    # Rows that pass, kept beside them: just inside the limits above.
    case("emoji-escaped-as-a-pair.json", b'{"title": "\\ud83d\\ude00", "body": "B"}'),
    case("body-nested-300-deep.json", nested(300)),
    case("date-overflowing-float.json", TITLED + b'"1e400"}'),
    case("date-nan.json", TITLED + b"NaN}"),
    case("date-arabic-indic-digits.json", TITLED + '"١٧٠٠٠٠٠٠٠٠"}'.encode()),
    case("pubdate-leap-second.rss", rss_dated(b"Sat, 31 Dec 2016 23:59:60 GMT")),
]


@pytest.mark.parametrize(("name", "data"), REGRESSIONS)
def test_bad_inputs_found_end_as_items_or_an_input_error(name, data):
    """Each bad input the properties found: items or InputError, never another exception."""
    outcome(name, data)


XHTML = b"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head><title>Storm closes the harbour</title></head>
<body><article><h1>Storm closes the harbour</h1><p>The harbour was closed on Monday after the storm damaged two
of its piers and a crane, the port authority said.</p><p>Repairs are expected to take several weeks, and ferries
will sail from the north quay until then.</p></article></body></html>"""


def test_an_xhtml_page_with_an_xml_declaration_is_an_item():
    """Found by the HTML strategy's statistics: a valid XHTML page that opens with an XML declaration."""
    [derived] = derive("page.html", XHTML, CONTEXT)
    [without_prolog] = derive("page.html", XHTML.split(b"\n", 1)[1], CONTEXT)
    assert derived.content_hash == without_prolog.content_hash


# -- 2. normalisation: normalising twice equals normalising once ------------------------------------


def parsed_items(text: st.SearchStrategy, body_lines: st.SearchStrategy, url: st.SearchStrategy):
    """ParsedItems as the parsers build them: title and body always, the other fields maybe."""
    return st.builds(
        ParsedItem,
        title=text,
        body=body_lines.map("\n".join),
        source=st.none() | text,
        original_source=st.none() | text,
        author=st.none() | text,
        language=st.none() | st.sampled_from(["en", "EN-us", "fr_FR", "de", "xx", "", "english"]),
        url=st.none() | url,
        entry_id=st.none() | st.text(max_size=10),
    )


def assert_idempotent(item: ParsedItem) -> None:
    once = normalise(item, RULES)
    assert normalise(once, RULES) == once


INVISIBLE = "\u200b\u2060\ufeff\u00ad"
ATTRIBUTION_LINES = {
    line for line in SPECIAL_LINES if line.startswith(("\u2014 ", "\u2013 ", "- ", "(")) or line == "AFP"
}
calm_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=INVISIBLE), max_size=40)
calm_line = st.one_of(st.sampled_from(sorted(set(SPECIAL_LINES) - ATTRIBUTION_LINES)), sentence, calm_text)


@budget(150)
@given(
    item=parsed_items(
        calm_text,
        st.tuples(
            st.lists(calm_line, max_size=12),
            sentence.map(lambda text: text.rstrip(",:") + "."),  # the last sentence
            st.lists(st.sampled_from(sorted(ATTRIBUTION_LINES)), max_size=1),  # and one closing attribution, maybe
        ).map(lambda parts: [*parts[0], parts[1], *parts[2]]),
        urls,
    )
)
def test_normalising_twice_equals_once(item):
    """normalise(normalise(x)) == normalise(x): bodies ending in a sentence and at most one attribution, text
    without invisible characters (the property below covers those too)."""
    assert_idempotent(item)


@budget(300)
@given(item=parsed_items(st.text(max_size=40), lines, st.none()).filter(lambda item: not stacked_credits(item.body)))
@example(item=ParsedItem(title="e\u200b\u0301", body="B"))  # fixed: invisible characters go before NFC
@example(item=ParsedItem(title="T", body="\u2014 BBC News\nAA"))  # fixed: a dash line alone is the text
@example(item=ParsedItem(title="T", body="\n\u2014 BBC News\n"))
def test_normalising_any_text_twice_equals_once(item):
    """normalise(normalise(x)) == normalise(x) for any text, invisible characters included, but for
    bodies ending in two stacked credits (the known bug below)."""
    assert_idempotent(item)


def stacked_credits(body: str) -> bool:
    """Whether the body, normalised once, still ends in a line the closing-credit rule would take
    (the trigger of the known bug below; any other step that is not idempotent still fails above)."""
    lines = normalise(ParsedItem(title="T", body=body), RULES).body.split("\n")
    return _split_attribution(lines, RULES.attribution_max_words) is not None


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known bug, kept on purpose: shared/normalise.py takes one closing credit a pass ('He said. (Reuters)\\n"
    "— BBC News' loses '(Reuters)' only the second time); taking them all would also take lines that are text "
    "(tickers in capitals, 'THE END', a quotation's speaker) from the bodies of stored items",
)
@known_bug(100)
@given(item=parsed_items(st.text(max_size=40), lines, st.none()))
@example(item=ParsedItem(title="T", body="He said. (Reuters)\n\u2014 BBC News"))
def test_normalising_text_ending_in_stacked_credits_twice_equals_once(item):
    """normalise(normalise(x)) == normalise(x) for any text, attributions and invisible characters included."""
    assert_idempotent(item)


@budget(200)
@given(url=any_urls)
@example(url="http://[2001:db8::80]/")
def test_canonical_url_twice_equals_once(url):
    """canonical_url(canonical_url(u)) == canonical_url(u), IPv6 hosts included."""
    once = canonical_url(url)
    assert canonical_url(once) == once


@budget(100)
@given(url=urls)
def test_canonical_url_of_a_named_host_twice_equals_once(url):
    """canonical_url is idempotent for URLs with a host name or IPv4 address."""
    once = canonical_url(url)
    assert canonical_url(once) == once


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known bug (the one above) reaching stored items: a .txt body ending 'It ended.\\n— BBC News\\n"
    "(Reuters)' is stored ending '— BBC News', which goes the second time",
)
@known_bug(200)
@given(
    document=st.one_of(
        SANE_DOCUMENTS["text"].map(lambda data: ("doc.txt", data)),
        SANE_DOCUMENTS["markdown"].map(lambda data: ("doc.md", data)),
        SANE_DOCUMENTS["json"].map(lambda data: ("doc.json", data)),
        SANE_DOCUMENTS["feed"].map(lambda data: ("doc.rss", data)),
    )
)
@example(document=("a.txt", "Title\n\nThe Chronicle\n\nIt ended.\n\u2014 BBC News\n(Reuters)\n".encode()))
def test_derived_items_are_normalised_already(document):
    """What derive gives is a fixed point of normalise."""
    results = outcome(*document)
    for result in results if isinstance(results, list) else []:
        if isinstance(result, Derived):
            assert normalise(result.item, RULES) == result.item


# -- 3. the content hash ignores what the interface says it ignores, and nothing more -------------
# INTERFACE.md, Duplicates: the same content "whatever differences in white space, line breaks, quote and
# dash styles, letter case"; Plain-text articles: "A body re-wrapped at any width is the same body."

hash_word = st.text(LETTERS + "0123456789'\"-.,;!?()", min_size=1, max_size=10)
paragraphs = st.lists(st.lists(hash_word, min_size=1, max_size=25), min_size=1, max_size=4)


def wrap(words: list[str], width: int) -> str:
    """Words filled greedily into lines of at most `width` characters (a longer word has a line alone)."""
    out, current = [], ""
    for one in words:
        if current and len(current) + 1 + len(one) > width:
            out.append(current)
            current = one
        else:
            current = f"{current} {one}" if current else one
    return "\n".join([*out, current])


def flat(paras: list[list[str]]) -> str:
    return "\n\n".join(" ".join(words) for words in paras)


@budget(200)
@given(title=st.lists(hash_word, min_size=1, max_size=8), paras=paragraphs, width=st.integers(1, 100))
def test_content_hash_ignores_rewrapping(title, paras, width):
    """A body re-wrapped at any width (line breaks moved between words) has the same hash."""
    rewrapped = "\n\n".join(wrap(words, width) for words in paras)
    assert content_hash(" ".join(title), rewrapped) == content_hash(" ".join(title), flat(paras))


SPACE_RUNS = st.text(" \t\n\u00a0\u2009\u3000", min_size=1, max_size=4)


@budget(200)
@given(paras=paragraphs, data=st.data())
def test_content_hash_ignores_white_space(paras, data):
    """Runs of spaces, tabs, line breaks and Unicode spaces between words, and at either end: the same hash."""
    words = [one for words in paras for one in words]
    spaced = data.draw(SPACE_RUNS | st.just("")) + "".join(one + data.draw(SPACE_RUNS) for one in words)
    assert content_hash("Title", spaced) == content_hash("Title", " ".join(words))


# What a person means by quote and dash styles: the straight character and its typographic forms.
TYPOGRAPHIC = {"'": "\u2018\u2019", '"': "\u201c\u201d\u201e\u00ab\u00bb", "-": "\u2013\u2014"}


@budget(100)
@given(paras=paragraphs, choice=st.randoms(use_true_random=False))
def test_content_hash_ignores_quote_and_dash_styles(paras, choice):
    """Straight quotes and hyphens against curly quotes, guillemets and en/em dashes: the same hash."""
    body = flat(paras)
    styled = "".join(choice.choice(char + TYPOGRAPHIC.get(char, "")) for char in body)
    assert content_hash("A 'title'", styled) == content_hash("A \u2018title\u2019", body)


cased_word = st.text(st.characters(categories=("Lu", "Ll")), min_size=1, max_size=10).filter(
    lambda text: text.upper().lower() == text.lower()  # case is a round trip here (not for ı, ſ, ß...)
)


@budget(200)
@given(
    words=st.lists(cased_word | hash_word, min_size=1, max_size=30), how=st.sampled_from(["upper", "lower", "title"])
)
def test_content_hash_ignores_letter_case(words, how):
    """The same words in upper, lower or title case: the same hash."""
    body = " ".join(words)
    assert content_hash("Title", getattr(body, how)()) == content_hash("TITLE", body)


@budget(200)
@given(paras=paragraphs, data=st.data())
def test_content_hash_differs_when_a_word_changes(paras, data):
    """Another word in place of one (not the same word in another case or style) is other content."""
    words = [one for words in paras for one in words]
    at = data.draw(st.integers(0, len(words) - 1))
    other = data.draw(hash_word.filter(lambda new: canonical_word(new) != canonical_word(words[at])))
    changed = [*words[:at], other, *words[at + 1 :]]
    assert content_hash("Title", " ".join(changed)) != content_hash("Title", " ".join(words))


def canonical_word(text: str) -> str:
    plain = text.translate({ord(fancy): plain for plain, styles in TYPOGRAPHIC.items() for fancy in styles})
    return unicodedata.normalize("NFKC", plain).casefold()


prose_word = st.text(LETTERS, min_size=1, max_size=10).filter(lambda text: text.casefold() != "advertisement")
prose = st.lists(
    st.lists(prose_word, min_size=2, max_size=30).map(lambda words: " ".join(words) + "."), min_size=1, max_size=4
)


@budget(100)
@given(paras=prose, width=st.integers(1, 100))
def test_a_text_article_rewrapped_at_any_width_is_the_same_content(paras, width):
    """A .txt article (title, publisher line, prose) with its body re-wrapped at any width: the same hash."""
    head = "Storm closes the harbour\n\nThe Chronicle\n\n"
    flat_body = "\n\n".join(paras)
    rewrapped = "\n\n".join(wrap(para.split(" "), width) for para in paras)
    [one] = derive("a.txt", (head + flat_body).encode(), CONTEXT)
    [other] = derive("b.txt", (head + rewrapped).encode(), CONTEXT)
    assert other.content_hash == one.content_hash


@budget(150)
@given(paras=prose, width=st.integers(1, 100))
@example(paras=["The harbour was closed on Monday after the storm damaged two piers.", "More follows."], width=30)
def test_a_text_article_without_a_publisher_line_rewrapped_at_any_width_is_the_same_content(paras, width):
    """A .txt article (title, prose, no publisher line) with its body re-wrapped at any width: the same hash."""
    head = "Storm closes the harbour\n\n"
    rewrapped = "\n\n".join(wrap(para.split(" "), width) for para in paras)
    [one] = derive("a.txt", (head + "\n\n".join(paras)).encode(), CONTEXT)
    [other] = derive("b.txt", (head + rewrapped).encode(), CONTEXT)
    assert other.content_hash == one.content_hash


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="bug: shared/decode.py repairs mojibake line by line, so a line that looks like mojibake alone "
    "('ßåÉ.' becomes 'ᆐ.') is left as it is inside a longer line: where a text is wrapped changes its hash",
)
def test_mojibake_repair_does_not_depend_on_where_lines_break():
    """Found by a hunt of the re-wrapping property (2026-12-06): the same words, wrapped or not."""
    [one] = derive("a.txt", "Storm closes the harbour\n\nÉ ßåÉ.".encode(), CONTEXT)
    [other] = derive("b.txt", "Storm closes the harbour\n\nÉ\nßåÉ.".encode(), CONTEXT)
    assert other.content_hash == one.content_hash


# -- 4. decoding: any bytes are text or an InputError ------------------------------------------------

BOM_ENCODINGS = ["utf-8-sig", "utf-16", "utf-32"]
LEFT_AFTER_DECODING = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # \t and \n only


def assert_clean_text(text: str) -> None:
    assert isinstance(text, str)
    assert not LEFT_AFTER_DECODING.search(text), repr(text)  # no \r, no control characters
    text.encode("utf-8")  # no lone surrogates: the text can be stored and hashed


@budget(300)
@given(data=st.binary(max_size=1000) | encoded(st.text(max_size=300)))
def test_any_bytes_decode_to_clean_text_or_an_input_error(data):
    """decode_text: any bytes give text with \\n line ends and no control characters, or InputError."""
    try:
        text = decode_text(data)
    except InputError as exc:
        assert_reason(str(exc))
        return
    assert_clean_text(text)


@budget(200)
# (A UTF-16 LE text that begins with U+0000 begins with the UTF-32 LE mark, FF FE 00 00: left out.)
@given(text=st.text(max_size=300).filter(lambda text: text[:1] != "\x00"), encoding=st.sampled_from(BOM_ENCODINGS))
def test_text_with_a_byte_order_mark_decodes_as_its_utf8(text, encoding):
    """The same text as UTF-8 or behind a byte-order mark (UTF-8, UTF-16, UTF-32) decodes the same."""

    def decoded(data: bytes) -> str | None:
        try:
            return decode_text(data)
        except InputError:
            return None

    assert decoded(text.encode(encoding)) == decoded(text.encode("utf-8"))


@pytest.mark.parametrize("extension", EXTENSIONS)
@budget(30)
@given(data=st.binary(min_size=1, max_size=200).map(lambda noise: b"\x1f\x8b" + noise))
def test_bytes_that_look_gzipped_end_as_items_or_an_input_error(extension, data):
    """Bytes starting with gzip's magic number, whatever follows, under any name: items or InputError."""
    outcome(f"doc{extension}", data)
