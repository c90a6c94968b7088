"""Markup -> text with paragraphs and line breaks kept: HTML fragments, and trafilatura's XML.

A paragraph break is one blank line; a line break (<br>, a list item, a table row) is one newline.
White space inside text runs collapses to one space, as a browser shows it (except in <pre>).
"""

from __future__ import annotations

import re

import lxml.etree
import lxml.html

LINE, PARA = 1, 2
BULLETS = ("-", "—", "–", "•", "*", "·")
SPACE_RUN = re.compile(r"[ \t\r\n\f\v]+")
BLANK_RUN = re.compile(r"\n{3,}")
HTML_TAG = re.compile(r"<(p|br|div|span|a|em|strong|b|i|ul|ol|li|h[1-6]|img|blockquote|table)\b[^>]*>", re.IGNORECASE)

HTML_RULES = {
    **dict.fromkeys(
        (
            "p",
            "div",
            "section",
            "article",
            "main",
            "header",
            "footer",
            "blockquote",
            "figure",
            "figcaption",
            "address",
            "ul",
            "ol",
            "dl",
            "table",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "pre",
            "hr",
            "details",
            "summary",
        ),
        PARA,
    ),
    **dict.fromkeys(("br", "tr", "dt", "dd"), LINE),
}
HTML_SKIP = {
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "object",
    # Not "embed": it is void, but libxml2's HTML parser gives it what follows as children, so it
    # is rendered as a transparent element (it has no text of its own).
    "applet",
    "frameset",
    "svg",
    "canvas",
    "form",
    "button",
    "select",
    "input",
    "textarea",
    "nav",
    "head",
    "title",
    "meta",
    "link",
}
# trafilatura's XML output (a TEI-like dialect)
XML_RULES = {
    **dict.fromkeys(("p", "head", "quote", "list", "table", "code"), PARA),
    **dict.fromkeys(("lb", "row"), LINE),
}
XML_SKIP = {"comments", "graphic"}


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str | int] = []

    def text(self, value: str | None, preformatted: bool) -> None:
        if not value:
            return
        if not value.strip() and self.parts and isinstance(self.parts[-1], int):
            return
        self.parts.append(value if preformatted else SPACE_RUN.sub(" ", value))

    def brk(self, kind: int) -> None:
        # White space between blocks (source indentation) is not text: breaks swallow it.
        while self.parts and isinstance(self.parts[-1], str) and not self.parts[-1].strip():
            self.parts.pop()
        if self.parts and isinstance(self.parts[-1], int):
            self.parts[-1] = max(self.parts[-1], kind)
        else:
            self.parts.append(kind)

    def result(self) -> str:
        text = "".join("\n\n" if p == PARA else "\n" if p == LINE else p for p in self.parts)
        lines = [line.strip() for line in text.split("\n")]
        return BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()


def _tag(element) -> str | None:
    return element.tag.lower() if isinstance(element.tag, str) else None  # comments and PIs have no str tag


def _is_item(tag: str) -> bool:
    return tag in ("li", "item")


def _render(element, out: _Writer, rules: dict, skip: set, preformatted: bool = False) -> None:
    tag = _tag(element)
    if tag is None or tag in skip:
        out.text(element.tail, preformatted)
        return
    kind = LINE if _is_item(tag) else rules.get(tag)
    preformatted = preformatted or tag == "pre"
    if kind:
        out.brk(kind)
    if _is_item(tag) and not (element.text or "").lstrip().startswith(BULLETS):
        out.text("- ", True)
    out.text(element.text, preformatted)
    for child in element:
        _render(child, out, rules, skip, preformatted)
    if kind:
        out.brk(kind)
    out.text(element.tail, preformatted)


def html_to_text(markup: str) -> str:
    """An HTML fragment or page -> text."""
    if not markup.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(markup, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return ""
    out = _Writer()
    _render(root, out, HTML_RULES, HTML_SKIP)
    return out.result()


def xml_element_to_text(element) -> str:
    """One element of trafilatura's XML output -> text."""
    out = _Writer()
    _render(element, out, XML_RULES, XML_SKIP)
    return out.result()


def looks_like_html(text: str) -> bool:
    """Whether a text field holds markup rather than plain text."""
    return bool(HTML_TAG.search(text))
