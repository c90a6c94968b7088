"""bytes -> text: gzip (capped), byte-order marks, charset detection, mojibake repair, control characters."""

from __future__ import annotations

import codecs
import re
import re._parser as regex_parser  # the stdlib's own regex parser, to read ftfy's pattern
import unicodedata
import zlib

import charset_normalizer
import ftfy
from ftfy.badness import BADNESS_RE, is_bad
from ftfy.chardata import CONTROL_CHARS as FTFY_CONTROL_CHARS
from ftfy.chardata import LIGATURES

from shared.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
BINARY_SAMPLE_CHARS = 8192
BINARY_NOISE_RATIO = 0.1  # more replacement or control characters than this: not a text document
BOMS = (  # longest first: the UTF-32 LE mark begins with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Replacement characters and control characters other than white space (\t \n \f \r): signs of binary data.
BINARY_NOISE = re.compile("[\x00-\x08\x0b\x0e-\x1f\ufffd]")
# Keep tab and line feed; every other C0/C1 control character (NUL included) is noise in a document.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Typographic quotes are content: ftfy must not straighten them. HTML entities are the HTML parser's job.
FTFY_CONFIG = ftfy.TextFixerConfig(uncurl_quotes=False, unescape_html=False, fix_character_width=False)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip data, refusing output over `limit` bytes before it is all in memory."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise InputError(f"corrupt gzip data ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InputError(f"decompressed content exceeds the {limit} byte limit")
    if not inflater.eof:
        raise InputError("truncated gzip data")
    return out


def unwrap(name: str, data: bytes, limit: int) -> tuple[str, bytes]:
    """Strip a .gz layer (by name or by magic bytes); returns the inner name and bytes."""
    if name.lower().endswith(".gz"):
        return name[:-3], gunzip(data, limit)
    if data.startswith(GZIP_MAGIC):
        return name, gunzip(data, limit)
    return name, data


def _bom_decode(data: bytes) -> str | None:
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    return None


def _guess_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(data).best()
    if best is not None:
        return str(best)
    return data.decode("utf-8", errors="replace")


def _looks_binary(text: str) -> bool:
    sample = text[:BINARY_SAMPLE_CHARS]
    noise = len(BINARY_NOISE.findall(sample))
    return bool(sample) and noise / len(sample) > BINARY_NOISE_RATIO


# -- when ftfy would change nothing --------------------------------------------------------------
# fix_text costs about 1 µs a character even on clean text, most of it its chain of fixers run on
# each line. The checks below are cheaper and sound: when they all pass, fix_text with FTFY_CONFIG
# returns the text unchanged, so it need not run. Everything is derived from ftfy's own tables.

LINES_WITH_ENDS = re.compile(r"[^\n]*\n?")
# Characters one of ftfy's other fixers replaces or removes: C1 controls, ligatures, control and
# terminal-escape characters, line breaks other than \n, and lone surrogates.
FTFY_TOUCHED = re.compile(
    "["
    + "".join(re.escape(chr(code)) for code in sorted({*LIGATURES, *FTFY_CONTROL_CHARS}))
    + "\x80-\x9f\x1b\r\u2028\u2029\ud800-\udfff]"
)


def _charset(op, av) -> frozenset[str] | None:
    """The characters one regex item can match, or None when it puts no bound on them."""
    if op is regex_parser.LITERAL:
        return frozenset(chr(av))
    if op is not regex_parser.IN or any(kind not in (regex_parser.LITERAL, regex_parser.RANGE) for kind, _ in av):
        return None  # a negated set, \s, \w, `.`, an anchor: anything may match there
    chars = [
        chr(code)
        for kind, value in av
        for code in ((value,) if kind is regex_parser.LITERAL else range(value[0], value[1] + 1))
    ]
    return frozenset(chars)


def _needed_charsets(items) -> list[tuple[frozenset[str], ...]]:
    """Each way a pattern can match, as the sets it needs a character from (one set per item)."""
    ways: list[tuple[frozenset[str], ...]] = [()]
    for op, av in items:
        if op is regex_parser.BRANCH:
            options = [way for branch in av[1] for way in _needed_charsets(branch)]
        elif op is regex_parser.SUBPATTERN:
            options = _needed_charsets(av[-1]) if not av[1] & re.IGNORECASE else [()]
        elif op in (regex_parser.MAX_REPEAT, regex_parser.MIN_REPEAT) and av[0] >= 1:
            options = _needed_charsets(av[2])
        else:
            charset = _charset(op, av)
            options = [(charset,)] if charset is not None else [()]
        ways = [way + option for way in ways for option in options]
    return ways


def _rare_charsets(way: tuple[frozenset[str], ...]) -> tuple[frozenset[str], ...]:
    # A set holding an ASCII character (a letter, a space) is met by nearly every text: treating it as
    # met always keeps the test sound and leaves it only the rarer, non-ASCII sets to look for.
    return tuple(charset for charset in way if all(not char.isascii() for char in charset))


def _as_bitmasks(ways: list[tuple[frozenset[str], ...]]) -> tuple[dict[str, int], tuple[int, ...]]:
    """Each character -> the bits of the sets holding it; each way -> the bits of the sets it needs."""
    bit_of = {charset: 1 << index for index, charset in enumerate(dict.fromkeys(c for way in ways for c in way))}
    char_bits: dict[str, int] = {}
    for charset, bit in bit_of.items():
        for char in charset:
            char_bits[char] = char_bits.get(char, 0) | bit
    return char_bits, tuple(sum(bit_of[charset] for charset in set(way)) for way in ways)


# ftfy's mojibake detector (is_bad) is one regex of about 40 alternatives that costs 0.3 µs a character
# whatever the text; a text holding no character of some set each alternative needs can never match.
MOJIBAKE_CHAR_BITS, MOJIBAKE_WAY_BITS = _as_bitmasks(
    [_rare_charsets(way) for way in _needed_charsets(regex_parser.parse(BADNESS_RE.pattern, BADNESS_RE.flags))]
    if not BADNESS_RE.flags & re.IGNORECASE
    else [()]  # case-folded matching would defeat the character sets: always look closer
)
NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _mojibake_possible(text: str) -> bool:
    present = 0
    for char in set(NON_ASCII.findall(text)):
        present |= MOJIBAKE_CHAR_BITS.get(char, 0)
    return any(needed & present == needed for needed in MOJIBAKE_WAY_BITS)


def _segment_looks_bad(text: str) -> bool:
    # fix_text fixes each line (its \n included) on its own, and fixes no encoding in a line that is
    # ASCII or that is_bad finds clean.
    return any(not line.isascii() and is_bad(line) for line in LINES_WITH_ENDS.findall(text))


def needs_ftfy(text: str) -> bool:
    """False only when ftfy.fix_text(text, FTFY_CONFIG) would return the text unchanged."""
    if len(text) > FTFY_CONFIG.max_decode_length:
        return True  # fix_text would also cut long lines into segments: not worth modelling
    if FTFY_TOUCHED.search(text) or not unicodedata.is_normalized("NFC", text):
        return True
    return _mojibake_possible(text) and _segment_looks_bad(text)


def repair_mojibake(text: str) -> str:
    """ftfy's repair, run only when it can change something.

    Still fix_text, line by line: one call of fix_and_explain over the whole text is not the same. Mojibake
    is undone by re-encoding, which fails for the whole text when another line holds correct non-ASCII
    characters (a curly quote, say), so an article half clean and half mojibake stays broken.
    """
    return ftfy.fix_text(text, FTFY_CONFIG) if needs_ftfy(text) else text


def decode_text(data: bytes) -> str:
    """Bytes in any common encoding -> clean Unicode text with \\n line ends."""
    text = _bom_decode(data)
    if text is None:
        text = _guess_decode(data)
    if _looks_binary(text):
        raise InputError("binary content, not text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return CONTROL_CHARS.sub("", repair_mojibake(text))
