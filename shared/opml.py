"""OPML 2.0 in and out: the feed subscriptions as outlines (nested folders are read, flat is written)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from shared.errors import ServiceError

# Our own attribute for the poll interval, so that export then import keeps it.
EVERY_ATTRIBUTE = "ingestEvery"
DECLARATIONS = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(frozen=True)
class Outline:
    url: str
    title: str | None
    every: str | None


def read_opml(data: bytes) -> list[Outline]:
    """Every outline with an xmlUrl, however deep; ServiceError for what is not OPML."""
    if DECLARATIONS.search(data):
        raise ServiceError("OPML with a DOCTYPE or entity declarations is refused")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise ServiceError(f"not valid OPML ({exc})") from None
    if root.tag != "opml":
        raise ServiceError(f"not OPML: the root element is <{root.tag}>")
    return [_outline(node) for node in root.iter("outline") if node.get("xmlUrl", "").strip()]


def _outline(node: ElementTree.Element) -> Outline:
    url = node.get("xmlUrl").strip()
    text = node.get("text")
    title = node.get("title") or (text if text and text != url else None)
    return Outline(url=url, title=title, every=node.get(EVERY_ATTRIBUTE))


def write_opml(outlines: list[Outline], title: str = "ingest subscriptions") -> str:
    root = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(root, "head")
    ElementTree.SubElement(head, "title").text = title
    body = ElementTree.SubElement(root, "body")
    for outline in outlines:
        attributes = {"type": "rss", "text": outline.title or outline.url, "xmlUrl": outline.url}
        if outline.title:
            attributes["title"] = outline.title
        if outline.every:
            attributes[EVERY_ATTRIBUTE] = outline.every
        ElementTree.SubElement(body, "outline", attributes)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
