"""Normalisation shared by every format: STEPS, an ordered tuple of small functions.

Each step takes a ParsedItem and the Rules and returns a new ParsedItem; the order is this
one list, read top to bottom.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from shared.parsers.model import ParsedItem
from shared.settings import Settings
from shared.urls import canonical_url

ARTICLE_SOURCE = re.compile(r"^article source:\s*(?P<source>.+?)$", re.IGNORECASE)
# Unicode white space other than the line feed: tabs, NBSP, thin and ideographic spaces...
INLINE_SPACE = re.compile(r"[^\S\n]+")
INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad]")  # zero-width space, word joiner, BOM, soft hyphen
BLANK_RUN = re.compile(r"\n{3,}")
SENTENCE_END = "[.!?…\"'”’»)\\]]"
# "…last sentence. — BBC News" (em dash, en dash, or a hyphen between spaces)
TRAILING_ATTRIBUTION = re.compile(rf"^(?P<before>.*{SENTENCE_END})\s*(?:[—–]|\s-\s)\s*(?P<outlet>\S.*)$")
# "— BBC News" on a line of its own
LONE_ATTRIBUTION = re.compile(r"^(?:[—–]|-\s)\s*(?P<outlet>\S.*)$")
LIST_LINE = re.compile(r"^(?:[—–•*·-]|\d+[.)])\s")
# "…last sentence. (Reuters)" and "(Reuters)" or "AFP" on a line of their own
TRAILING_WIRE = re.compile(rf"^(?P<before>.*{SENTENCE_END})\s*\((?P<outlet>[A-Z][\w.&' -]{{1,40}})\)$")
LONE_WIRE = re.compile(r"^\((?P<paren>[A-Z][\w.&' -]{1,40})\)$|^(?P<caps>[A-Z]{2,}(?:[ /&-][A-Z]{2,})?)$")
# "LONDON (Reuters) -", "SYDNEY (AAP) —", "REYKJAVIK, Iceland (AP) —" opening the first paragraph.
DATELINE = re.compile(
    r"^[A-Z][A-Z.'’ -]{1,40}(?:,[^()\n]{1,40})?\s\((?P<agency>[A-Za-z][\w.&' -]{0,30})\)\s*(?:[—–]|-)\s"
)
NOT_AN_OUTLET = re.compile(r"[,;:!?]|\.$")  # a clause or a sentence, not a name
LANGUAGE_CODE = re.compile(r"[a-z]{2}")
# py3langid's cost grows with the text (its byte loop runs in Python); its answer settles long
# before 500 characters (some 80 words): the title and lead of an article. Cut from 1,000, which
# saves about 0.45 ms of the 1.4 ms a seed-style article takes to derive, with the same language
# on every fixture, on feedparser's corpus and on long English, German and French documents.
LANGUAGE_SAMPLE_CHARS = 500


SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Rules:
    boilerplate: tuple[re.Pattern[str], ...]
    attribution_max_words: int
    language_min_confidence: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        return cls(
            boilerplate=tuple(re.compile(p, re.IGNORECASE) for p in settings.boilerplate_patterns),
            attribution_max_words=settings.attribution_max_words,
            language_min_confidence=settings.language_min_confidence,
        )


def _visible(text: str) -> str:
    """The text less its invisible characters; ASCII has none (a flag CPython keeps: no scan)."""
    return text if text.isascii() else INVISIBLE.sub("", text)


def _tidy_line(line: str) -> str:
    return INLINE_SPACE.sub(" ", _visible(line)).strip()


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _tidy_lines(text: str) -> str:
    """_tidy_line on every line: split() and the regex \\s agree on white space, and a line holds no \\n,
    so splitting and joining each line gives the same at a fraction of two regex passes a line."""
    return "\n".join(" ".join(line.split()) for line in _lines(_visible(text)))


def _whole_characters(text: str) -> str:
    """Surrogates as JSON and YAML escapes can leave them (`\\ud83d\\ude00`): a pair joined into its
    character, a lone one replaced with U+FFFD; no store or hash can take them as they are."""
    if not SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def to_nfc(item: ParsedItem, rules: Rules) -> ParsedItem:
    # Invisible characters go first: one between a letter and its accent ('e\u200b\u0301') would
    # otherwise keep the two apart here and leave them uncomposed once it is removed.
    return item.but(
        title=_nfc(item.title),
        body=_nfc(item.body),
        source=_nfc(item.source),
        author=_nfc(item.author),
        original_source=_nfc(item.original_source),
    )


def _nfc(value: str | None) -> str | None:
    if not value or value.isascii():  # ASCII is whole, visible and composed already
        return value
    return unicodedata.normalize("NFC", INVISIBLE.sub("", _whole_characters(value)))


def tidy_spaces(item: ParsedItem, rules: Rules) -> ParsedItem:
    """One plain space between words, none at line ends; line breaks are kept."""
    body = _tidy_lines(item.body)
    title = _tidy_line(item.title.replace("\n", " "))
    source = item.source and _tidy_line(item.source)
    return item.but(title=title, body=body, source=source or None)


def take_article_source(item: ParsedItem, rules: Rules) -> ParsedItem:
    """`Article Source: X` lines leave the body; X is the source when none is known."""
    kept, named = [], []
    for line in _lines(item.body):
        match = ARTICLE_SOURCE.match(line)
        (named if match else kept).append(match.group("source") if match else line)
    if not named:
        return item
    return item.but(body="\n".join(kept), source=item.source or named[-1])


# A pattern whose meaning hangs on group numbers (a backreference, a conditional) or that sets flags
# for the whole expression cannot be one branch of a larger regex: such a list is tried pattern by pattern.
NOT_A_BRANCH = re.compile(r"\\[1-9]|\(\?P=|\(\?\(|\(\?[aiLmsux]+\)")


@lru_cache(maxsize=16)
def boilerplate_match(patterns: tuple[re.Pattern[str], ...]) -> Callable[[str], object]:
    """Whether a whole line is boilerplate: the patterns joined into one alternation, so a line costs
    one regex call instead of one a pattern (a fullmatch of the alternation matches where any one
    pattern's fullmatch does). Patterns that cannot be joined are tried one by one."""
    flags = {pattern.flags for pattern in patterns}
    if len(flags) == 1 and not any(NOT_A_BRANCH.search(pattern.pattern) for pattern in patterns):
        try:
            return re.compile("|".join(f"(?:{pattern.pattern})" for pattern in patterns), flags.pop()).fullmatch
        except re.error:
            pass  # e.g. a group name used twice
    return lambda line: any(pattern.fullmatch(line) for pattern in patterns)


def drop_boilerplate(item: ParsedItem, rules: Rules) -> ParsedItem:
    """Whole lines matching a boilerplate pattern (share prompts, newsletter and cookie lines) go."""
    is_boilerplate = boilerplate_match(rules.boilerplate)
    # Half the lines are the blank ones between paragraphs: asked about once, not once a line.
    keep_blank = not is_boilerplate("")
    kept = [line for line in _lines(item.body) if (keep_blank if not line else not is_boilerplate(line))]
    return item.but(body="\n".join(kept))


def _is_outlet(text: str, max_words: int) -> bool:
    words = text.split()
    return 0 < len(words) <= max_words and (text[0].isupper() or text[0].isdigit()) and not NOT_AN_OUTLET.search(text)


def _split_attribution(lines: list[str], max_words: int) -> tuple[str, str] | None:
    """(new last line, outlet) when the last line ends with a closing attribution."""
    last = lines[-1]
    for pattern in (TRAILING_ATTRIBUTION, TRAILING_WIRE):
        trailing = pattern.match(last)
        if trailing and _is_outlet(trailing.group("outlet"), max_words):
            return trailing.group("before").rstrip(), trailing.group("outlet")
    # A line of its own is a credit only below some text: alone, it is the text.
    text_above = any(line.strip() for line in lines[:-1])
    wire = LONE_WIRE.match(last)
    if wire and text_above and _is_outlet(wire.group("paren") or wire.group("caps"), max_words):
        return "", (wire.group("paren") or wire.group("caps")).strip()
    lone = LONE_ATTRIBUTION.match(last)
    # A dash line right below a list item is the next item, not a credit.
    if lone and text_above and not LIST_LINE.match(lines[-2]) and _is_outlet(lone.group("outlet"), max_words):
        return "", lone.group("outlet")
    return None


def take_closing_attribution(item: ParsedItem, rules: Rules) -> ParsedItem:
    """`…last sentence. — BBC News` sets original_source and leaves the body.

    One line a pass, on purpose: the lines above a credit are text more often than another credit
    (tickers in capitals, "THE END", a quotation's speaker), and a stored body must keep them. So a
    body ending in two stacked credits loses the second only if normalised again (a known, rare case)."""
    lines = item.body.rstrip("\n").split("\n")
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return item
    split = _split_attribution(lines, rules.attribution_max_words)
    if split is None:
        return item
    last, outlet = split
    body = "\n".join([*lines[:-1], last])
    return item.but(body=body, original_source=item.original_source or outlet)


def credit_dateline_agency(item: ParsedItem, rules: Rules) -> ParsedItem:
    """A dateline (`LONDON (Reuters) - …`) stays in the body; its agency is the original source when
    nothing closer to the text (a field of the input, a closing attribution) named one."""
    if item.original_source:
        return item
    match = DATELINE.match(item.body.lstrip())
    return item.but(original_source=match.group("agency").strip()) if match else item


def canonicalise_url(item: ParsedItem, rules: Rules) -> ParsedItem:
    """Scheme and host lower-cased; fragments and tracking parameters (utm_*, fbclid…) removed."""
    return item.but(url=canonical_url(item.url))


def tidy_fields(item: ParsedItem, rules: Rules) -> ParsedItem:
    """Short fields on one line, empty ones null."""
    one_line = lambda value: (value and _tidy_line(value.replace("\n", " "))) or None  # noqa: E731
    return item.but(
        source=one_line(item.source),
        original_source=one_line(item.original_source),
        author=one_line(item.author),
        entry_id=item.entry_id and item.entry_id.strip() or None,
    )


def tidy_paragraphs(item: ParsedItem, rules: Rules) -> ParsedItem:
    """Paragraphs apart by exactly one blank line; no blank lines at either end."""
    body = BLANK_RUN.sub("\n\n", item.body) if "\n\n\n" in item.body else item.body  # str's search: faster
    return item.but(body=body.strip("\n"))


@lru_cache(maxsize=1)
def _language_identifier():
    # Loading the bundled model takes a moment: once per process, on first use.
    from shared import language

    return language.load()


def warm_up() -> None:
    """Load what the first item would otherwise wait for."""
    _language_identifier()


def language_sample(text: str, limit: int = LANGUAGE_SAMPLE_CHARS) -> str:
    """The first `limit` characters, less a word cut in two (tidy_spaces left only spaces and line feeds)."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]  # one more: a space right at the limit is a boundary too
    boundary = max(head.rfind(" "), head.rfind("\n"))
    return text[:boundary] if boundary > 0 else text[:limit]


def _declared(item: ParsedItem) -> str | None:
    """The ISO 639-1 code the input declared (from `en-GB`, `en_US`, `EN`), or None."""
    declared = (item.language or "").strip().replace("_", "-").split("-")[0].lower()
    return declared if LANGUAGE_CODE.fullmatch(declared) else None


def _sample(item: ParsedItem) -> str:
    return language_sample(f"{item.title}\n{item.body}")


def detect_language(item: ParsedItem, rules: Rules) -> ParsedItem:
    """ISO 639-1 code from the text when the parser found none and the guess is confident."""
    declared = _declared(item)
    if declared is not None:
        return item.but(language=declared)
    language, confidence = _language_identifier().classify(_sample(item))
    return item.but(language=language if confidence >= rules.language_min_confidence else None)


STEPS = (
    to_nfc,
    tidy_spaces,
    take_article_source,
    drop_boilerplate,
    take_closing_attribution,
    credit_dateline_agency,
    tidy_paragraphs,
    tidy_fields,
    canonicalise_url,
    detect_language,
)


def normalise(item: ParsedItem, rules: Rules, identify_language: bool = True) -> ParsedItem:
    """Every step in turn; without identify_language, all but the last (identify_languages does it
    later for many items at once)."""
    for step in STEPS if identify_language else STEPS[:-1]:
        item = step(item, rules)
    return item


def identify_languages(items: list[ParsedItem], rules: Rules) -> list[ParsedItem]:
    """detect_language, the last step, for many items: the model's automaton walks all their samples
    at once (numpy's per-call cost paid once for a message, not once an article); the same answers."""
    _language_identifier().find_ahead([_sample(item) for item in items if _declared(item) is None])
    return [detect_language(item, rules) for item in items]
