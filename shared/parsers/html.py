"""HTML pages: the article's main text (trafilatura), and its metadata from the page's own tags.

Title: og:title, then <title> (less a trailing " | Site"), then the first h1. Source: og:site_name,
else the host name. Dates: JSON-LD, then meta tags, then <time> (shared.parsers.htmldates), else
what trafilatura finds.
"""

from __future__ import annotations

import re

import lxml.etree
import lxml.html
import trafilatura

from shared.dates import to_utc
from shared.errors import InputError
from shared.fingerprint import canonical
from shared.parsers.htmldates import page_dates
from shared.parsers.htmltext import xml_element_to_text
from shared.parsers.model import Document, ParsedItem
from shared.urls import host_name

HTML_START = re.compile(r"<(!doctype\s+html|html|head|body|p|div|article|title|h1|meta)\b", re.IGNORECASE)
TITLE_SEPARATORS = re.compile(r"\s+[|\-–—·:]\s+")
# XHTML may open with `<?xml version="1.0" encoding="…"?>`. The text is decoded already, and lxml
# refuses a str that still declares an encoding, so the declaration goes.
XML_DECLARATION = re.compile(r"\A\s*<\?xml\b[^>]*\?>")


def sniff(text: str) -> str | None:
    return None if HTML_START.search(text[:4096]) else "not HTML: no HTML tags found"


def _first(tree, *xpaths: str) -> str | None:
    for xpath in xpaths:
        for value in tree.xpath(xpath):
            text = value.strip() if isinstance(value, str) else value.text_content().strip()
            if text:
                return text
    return None


def _strip_site_suffix(title: str, site: str | None) -> str:
    """'Story - The Chronicle' -> 'Story' when the suffix (or prefix) is the site's name."""
    if not site:
        return title
    parts = TITLE_SEPARATORS.split(title)
    if len(parts) > 1 and canonical(parts[-1]) == canonical(site):
        return title[: title.rfind(parts[-1])].rstrip(" |-–—·:")
    if len(parts) > 1 and canonical(parts[0]) == canonical(site):
        return title[len(parts[0]) :].lstrip(" |-–—·:")
    return title


def _page_title(page_title: str | None, site: str | None, headline: str | None) -> str | None:
    """<title> without the site's name: known from og:site_name, or seen as the part that is not the h1."""
    if not page_title:
        return None
    if headline and any(canonical(part) == canonical(headline) for part in TITLE_SEPARATORS.split(page_title)):
        return headline
    return _strip_site_suffix(page_title, site)


def _metadata(tree) -> dict:
    site = _first(tree, "//meta[@property='og:site_name']/@content", "//meta[@name='application-name']/@content")
    headline = _first(tree, "//h1")
    title = _first(tree, "//meta[@property='og:title']/@content", "//meta[@name='twitter:title']/@content")
    return {
        "title": title or _page_title(_first(tree, "//title"), site, headline) or headline,
        "site": site,
        "author": _first(tree, "//meta[@name='author']/@content", "//meta[@property='article:author']/@content"),
        "dates": page_dates(tree),
        "url": _first(tree, "//link[@rel='canonical']/@href", "//meta[@property='og:url']/@content"),
        "language": _first(tree, "/html/@lang", "//meta[@http-equiv='content-language']/@content"),
    }


def _main_text(html: str, title: str | None) -> tuple[str, lxml.etree._Element]:
    extracted = trafilatura.extract(
        html,
        output_format="xml",
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        include_formatting=False,
        include_links=False,
        include_images=False,
        favor_precision=True,
    )
    if not extracted:
        raise InputError("no article text found in the page")
    doc = lxml.etree.fromstring(extracted.encode())
    main = doc.find("main")
    first = main[0] if main is not None and len(main) else None
    # trafilatura keeps the headline as the first <head>: it is the title, not body.
    if first is not None and first.tag == "head" and title and canonical(first.text or "") == canonical(title):
        main.remove(first)
    return (xml_element_to_text(main) if main is not None else ""), doc


def parse(doc: Document) -> list[ParsedItem]:
    html = XML_DECLARATION.sub("", doc.text, count=1)
    try:
        tree = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise InputError(f"unreadable HTML ({exc})") from None
    meta = _metadata(tree)
    body, extracted = _main_text(html, meta["title"])
    title = meta["title"] or extracted.get("title")
    if not title:
        raise InputError("no title in the page")
    url = meta["url"] or extracted.get("url")
    return [
        ParsedItem(
            title=title,
            body=body,
            source=meta["site"] or extracted.get("sitename") or host_name(url),
            author=meta["author"] or extracted.get("author"),
            published_at=meta["dates"].published or to_utc(extracted.get("date")),
            updated_at=meta["dates"].updated,
            language=meta["language"],
            url=url,
        )
    ]
